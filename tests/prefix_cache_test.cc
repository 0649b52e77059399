// Prefix caching through the real anyprec-server on the TinyStories-656K image: requests that
// share prompt prefixes of several lengths, at several widths, plain and speculative, run
// concurrently with chunked prefill and a pool small enough to force preemption, and their
// greedy output equals each request run alone on a server without the cache. Blocks computed
// at one width are never reused at another.
#include <future>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/server_process.h"
#include "tests/test_server.h"
#include "tests/test_image.h"

namespace anyprec {
namespace {

namespace pb = anyprec::v1;
using testing::Generate;
using testing::Result;

// The server on the 656K image with `args`.
class ServerProcess : public testing::TestServer {
 public:
  explicit ServerProcess(std::vector<std::string> args) : testing::TestServer(WithImage(std::move(args))) {}

 private:
  static std::vector<std::string> WithImage(std::vector<std::string> args) {
    args.insert(args.begin(), {"--model", testing::TinyStoriesImage()});
    return args;
  }
};

// Small blocks, chunked prefill and a pool of a few requests' worth.
const std::vector<std::string> kTightPool = {"--kv-block-tokens", "8", "--step-tokens", "32", "--kv-cache-tokens", "512",
                                             "--max-running", "12", "--max-queued", "256"};

constexpr char kStory[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. One "
    "day, she saw a big red ball under a tree. She ran to the ball and picked it up. It was soft and shiny. Lily wanted to "
    "show the ball to her mom, so she ran home as fast as she could. Her mom smiled and said, \"What a pretty ball! Where "
    "did you find it?\" Lily told her mom about the tree in the park. Then they went back together to look for the owner "
    "of the ball.";
constexpr char kOther[] =
    "Tom had a small dog called Max. Every morning Max barked at the birds in the garden, and every morning the birds flew "
    "away. One day a bird did not fly away.";

// Prompts that share prefixes of three lengths (the whole story, its first half, another
// text), each with three endings.
std::vector<std::string> SharedPrefixPrompts() {
  const std::string story = kStory;
  const std::vector<std::string> prefixes = {story, story.substr(0, story.size() / 2), kOther};
  std::vector<std::string> prompts;
  for (const std::string& prefix : prefixes) {
    for (const char* ending : {" Lily said", " The dog", " Then"}) prompts.push_back(prefix + ending);
  }
  return prompts;
}

constexpr int kTokens = 40;

pb::GenerateRequest Request(const std::string& prompt, int bits, bool speculative) {
  pb::GenerateRequest r = testing::Greedy(prompt, bits, kTokens);
  r.set_ignore_eos(true);
  if (speculative) {
    r.mutable_speculative()->set_draft_bits(3);
    r.mutable_speculative()->set_lookahead(3);
  }
  return r;
}

TEST(PrefixCacheTest, GreedyOutputIsTheSameWithAndWithoutTheCacheUnderPreemption) {
  struct Case {
    std::string prompt;
    int bits;
    bool speculative;
  };
  std::vector<Case> cases;
  for (const std::string& prompt : SharedPrefixPrompts()) {
    for (int bits : {3, 4, 8}) cases.push_back({prompt, bits, false});
    cases.push_back({prompt, 8, true});
  }

  // Each request alone, on a server without the cache.
  std::vector<std::vector<int>> expected;
  {
    std::vector<std::string> args = kTightPool;
    args.push_back("--no-prefix-cache");
    ServerProcess reference(args);
    const auto stub = reference.Stub();
    for (const Case& c : cases) {
      const Result r = Generate(*stub, Request(c.prompt, c.bits, c.speculative));
      ASSERT_TRUE(r.status.ok()) << r.status.error_message();
      ASSERT_EQ(r.ids.size(), static_cast<size_t>(kTokens));
      EXPECT_EQ(r.messages.back().usage().cached_prompt_tokens(), 0u);
      expected.push_back(r.ids);
    }
    EXPECT_EQ(testing::Scrape(reference, "anyprec_prefix_cache_blocks"), 0) << "--no-prefix-cache registers nothing";
  }

  // All at once, twice: the first round shares what concurrent requests have registered so
  // far, the second finds every prefix cached (unless evicted for the running ones' blocks).
  ServerProcess server(kTightPool);
  const auto stub = server.Stub();
  long cached_tokens = 0;
  for (int round = 0; round < 2; ++round) {
    std::vector<std::future<Result>> results;
    for (const Case& c : cases) {
      results.push_back(std::async(std::launch::async, [&] { return Generate(*stub, Request(c.prompt, c.bits, c.speculative)); }));
    }
    for (size_t i = 0; i < cases.size(); ++i) {
      const Result r = results[i].get();
      SCOPED_TRACE(::testing::Message() << "round " << round << ": " << cases[i].bits << " bits" << (cases[i].speculative ? ", speculative" : "")
                                        << ", prompt " << i / 4);
      ASSERT_TRUE(r.status.ok()) << r.status.error_message();
      EXPECT_EQ(r.ids, expected[i]);
      cached_tokens += r.messages.back().usage().cached_prompt_tokens();
    }
  }
  const std::map<std::string, double> metrics = testing::ScrapeAll(server);
  EXPECT_GT(testing::SumOf(metrics, "anyprec_preemptions_total"), 0) << "the pool was meant to force preemption";
  for (int bits : {3, 4, 8}) {
    const std::string label = "{bits=\"" + std::to_string(bits) + "\"}";
    EXPECT_GT(metrics.at("anyprec_prefix_cache_hit_tokens_total" + label), 0) << bits << " bits";
    EXPECT_GT(metrics.at("anyprec_prefix_cache_query_tokens_total" + label), metrics.at("anyprec_prefix_cache_hit_tokens_total" + label));
  }
  EXPECT_GT(cached_tokens, 0) << "the requests' usage reports their cached prompt tokens";
  // Idle: no block held, the cached ones counted apart.
  EXPECT_TRUE(testing::ScrapeUntil(server, "anyprec_kv_cache_usage_ratio", 0, std::chrono::seconds(2)));
  EXPECT_GT(testing::Scrape(server, "anyprec_prefix_cache_blocks"), 0);
}

TEST(PrefixCacheTest, BlocksAreNeverSharedAcrossWidths) {
  const std::string prompt = std::string(kStory) + " Lily said";
  ServerProcess server({"--kv-block-tokens", "8"});
  const auto stub = server.Stub();
  // The prompt at 3 bits on a fresh server: the reference, computed from scratch.
  const Result fresh3 = Generate(*stub, Request(prompt, 3, false));
  ASSERT_TRUE(fresh3.status.ok()) << fresh3.status.error_message();
  ASSERT_EQ(fresh3.messages.back().usage().cached_prompt_tokens(), 0u);
  // At 8 bits it finds nothing cached: the 3-bit blocks hold other keys and values.
  const Result at8 = Generate(*stub, Request(prompt, 8, false));
  ASSERT_TRUE(at8.status.ok()) << at8.status.error_message();
  EXPECT_EQ(at8.messages.back().usage().cached_prompt_tokens(), 0u);
  EXPECT_NE(at8.ids, fresh3.ids) << "the widths differ in output, so sharing would show";
  // Again at each width: its own blocks, and the same output.
  const Result again3 = Generate(*stub, Request(prompt, 3, false));
  const Result again8 = Generate(*stub, Request(prompt, 8, false));
  ASSERT_TRUE(again3.status.ok() && again8.status.ok());
  EXPECT_GT(again3.messages.back().usage().cached_prompt_tokens(), 0u);
  EXPECT_GT(again8.messages.back().usage().cached_prompt_tokens(), 0u);
  EXPECT_EQ(again3.ids, fresh3.ids);
  EXPECT_EQ(again8.ids, at8.ids);
  const uint32_t prompt_tokens = again3.messages.back().usage().prompt_tokens();
  EXPECT_EQ(again3.messages.back().usage().cached_prompt_tokens(), (prompt_tokens - 1) / 8 * 8)
      << "every whole block but the one holding the last prompt token, which is computed for its logits";
}

}  // namespace
}  // namespace anyprec

// Self-speculative requests through the real anyprec-server: their greedy output equals plain
// output at the request's width, alone and in a continuous batch with plain requests, on the
// real TinyStories-656K and stories260K images; cancellation and preemption mid-cycle lose
// nothing and free every KV block; defaults come from the request, the tenant, then the server.
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <map>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/server_process.h"
#include "tests/test_server.h"
#include "tests/test_image.h"

namespace anyprec {
namespace {

namespace pb = anyprec::v1;
using testing::Generate;
using testing::Greedy;
using testing::Result;
using testing::Scrape;
using testing::ScrapeUntil;

using ServerProcess = testing::TestServer;

constexpr int kTokens = 24;

pb::GenerateRequest Speculative(int target, int draft, int lookahead, int tokens = kTokens) {
  pb::GenerateRequest r = Greedy("Once upon a time", target, tokens);
  r.set_ignore_eos(true);
  r.mutable_speculative()->set_draft_bits(draft);
  r.mutable_speculative()->set_lookahead(lookahead);
  return r;
}

class SpeculativeServerTest : public ::testing::TestWithParam<std::string> {
 protected:
  std::string Image() const { return GetParam() == "656K" ? testing::TinyStoriesImage() : testing::Stories260KImage(); }
};

// Every target 4..8, draft 3..t-1 and lookahead 1..8, first one request at a time, then all of
// them at once beside plain requests of every width.
TEST_P(SpeculativeServerTest, GreedyEqualsPlainAloneAndInAMixedBatch) {
  ServerProcess server({"--model", Image(), "--max-running", "64", "--max-queued", "512"});
  const auto stub = server.Stub();
  std::map<int, std::vector<int>> plain;
  for (int target = 4; target <= 8; ++target) {
    pb::GenerateRequest r = Greedy("Once upon a time", target, kTokens);
    r.set_ignore_eos(true);
    const Result result = Generate(*stub, r);
    ASSERT_TRUE(result.status.ok()) << result.status.error_message();
    plain[target] = result.ids;
  }
  struct Case {
    int target, draft, lookahead;
  };
  std::vector<Case> cases;
  for (int target = 4; target <= 8; ++target) {
    for (int draft = 3; draft < target; ++draft) {
      for (int lookahead = 1; lookahead <= 8; ++lookahead) cases.push_back({target, draft, lookahead});
    }
  }
  long drafted = 0, accepted = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "alone: target " << c.target << ", draft " << c.draft << ", lookahead " << c.lookahead);
    const Result r = Generate(*stub, Speculative(c.target, c.draft, c.lookahead));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids, plain[c.target]);
    const pb::Usage& usage = r.messages.back().usage();
    EXPECT_GT(usage.drafted_tokens(), 0u);
    EXPECT_LE(usage.accepted_tokens(), usage.drafted_tokens());
    drafted += usage.drafted_tokens();
    accepted += usage.accepted_tokens();
  }
  EXPECT_GT(accepted, drafted / 4) << "the low widths of real weights agree with the high ones often";
  // The server counted the same, by draft and target width, and a histogram of tokens per verify step.
  const std::map<std::string, double> metrics = testing::ScrapeAll(server);
  EXPECT_EQ(testing::SumOf(metrics, "anyprec_speculative_drafted_tokens_total"), drafted);
  EXPECT_EQ(testing::SumOf(metrics, "anyprec_speculative_accepted_tokens_total"), accepted);
  EXPECT_GT(metrics.at("anyprec_speculative_drafted_tokens_total{bits=\"8\",draft_bits=\"3\"}"), 0);
  EXPECT_GT(testing::SumOf(metrics, "anyprec_speculative_tokens_per_verify_step_count"), 0);

  std::vector<std::future<Result>> speculative, plain_again;
  for (const Case& c : cases) {
    speculative.push_back(std::async(std::launch::async, [&server, c] { return Generate(*server.Stub(), Speculative(c.target, c.draft, c.lookahead)); }));
  }
  for (int target = 4; target <= 8; ++target) {
    plain_again.push_back(std::async(std::launch::async, [&server, target] {
      pb::GenerateRequest r = Greedy("Once upon a time", target, kTokens);
      r.set_ignore_eos(true);
      return Generate(*server.Stub(), r);
    }));
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const Result r = speculative[i].get();
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids, plain[cases[i].target]) << "mixed batch: target " << cases[i].target << ", draft " << cases[i].draft << ", lookahead "
                                             << cases[i].lookahead;
  }
  for (int target = 4; target <= 8; ++target) EXPECT_EQ(plain_again[target - 4].get().ids, plain[target]) << target;
  EXPECT_TRUE(ScrapeUntil(server, "anyprec_kv_cache_usage_ratio", 0, std::chrono::seconds(1)));
}

INSTANTIATE_TEST_SUITE_P(Images, SpeculativeServerTest, ::testing::Values("656K", "260K"));

// A pool far too small preempts speculative requests mid-cycle, and cancelling them mid-cycle
// ends them; their answers are still plain decoding's and every block comes back.
TEST(SpeculativeServer, PreemptedAndCancelledCyclesLoseNothing) {
  const std::string image = testing::TinyStoriesImage();
  ServerProcess server({"--model", image, "--kv-cache-tokens", "96", "--kv-block-tokens", "8", "--max-running", "4"});
  const auto stub = server.Stub();
  pb::GenerateRequest plain_request = Greedy("Once upon a time", 8, 60);
  plain_request.set_ignore_eos(true);
  const Result plain = Generate(*stub, plain_request);
  ASSERT_TRUE(plain.status.ok());
  std::vector<std::future<Result>> futures;
  for (int i = 0; i < 4; ++i) {
    futures.push_back(std::async(std::launch::async, [&server, i] { return Generate(*server.Stub(), Speculative(8, 3 + i, 2 + 2 * i, 60)); }));
  }
  for (auto& f : futures) {
    const Result r = f.get();
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids, plain.ids);
  }
  EXPECT_GT(Scrape(server, "anyprec_preemptions_total"), 0);
  EXPECT_TRUE(ScrapeUntil(server, "anyprec_kv_cache_usage_ratio", 0, std::chrono::seconds(1)));

  // Seeded sampling too: a cycle cut short by preemption draws its drafts again as before, so
  // each request gives what it gives alone.
  const auto sampled = [](int seed) {
    pb::GenerateRequest r = Speculative(8, 3 + seed % 2, 3, 60);
    r.mutable_sampling()->set_temperature(1.0f);
    r.mutable_sampling()->set_seed(seed);
    return r;
  };
  std::vector<std::vector<int>> alone;
  for (int seed = 0; seed < 4; ++seed) alone.push_back(Generate(*stub, sampled(seed)).ids);
  const double preempted_before = Scrape(server, "anyprec_preemptions_total");
  std::vector<std::future<Result>> together;
  for (int seed = 0; seed < 4; ++seed) {
    together.push_back(std::async(std::launch::async, [&server, &sampled, seed] { return Generate(*server.Stub(), sampled(seed)); }));
  }
  for (int seed = 0; seed < 4; ++seed) {
    const Result r = together[seed].get();
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids, alone[seed]) << "seed " << seed;
  }
  EXPECT_GT(Scrape(server, "anyprec_preemptions_total"), preempted_before);

  // Cancelled after their first tokens, mid-cycle.
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<pb::GenerateResponse>>> readers;
  for (int i = 0; i < 4; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    readers.push_back(stub->Generate(contexts.back().get(), Speculative(8, 3, 8, 60)));
  }
  pb::GenerateResponse response;
  for (auto& reader : readers) EXPECT_TRUE(reader->Read(&response));
  for (auto& context : contexts) context->TryCancel();
  for (auto& reader : readers) {
    while (reader->Read(&response)) {
    }
    reader->Finish();
  }
  EXPECT_TRUE(ScrapeUntil(server, "anyprec_kv_cache_usage_ratio", 0, std::chrono::seconds(1)));
}

// --group-by-bits runs each width as a batch of its own: a verify step's rows (one per token)
// come back in place beside the draft rows and plain rows of other widths.
TEST(SpeculativeServer, GroupedByWidthVerifyRowsStayInPlace) {
  ServerProcess server({"--model", testing::TinyStoriesImage(), "--group-by-bits", "--max-running", "8"});
  std::map<int, std::vector<int>> plain;
  for (const int target : {4, 8}) {
    pb::GenerateRequest r = Greedy("Once upon a time", target, kTokens);
    r.set_ignore_eos(true);
    plain[target] = Generate(*server.Stub(), r).ids;
  }
  std::vector<std::pair<int, std::future<Result>>> answers;
  for (int i = 0; i < 8; ++i) {
    const int target = i % 2 == 0 ? 8 : 4;
    answers.emplace_back(target, std::async(std::launch::async, [&server, i, target] {
                           if (i < 4) return Generate(*server.Stub(), Speculative(target, 3, 2 + i));
                           pb::GenerateRequest r = Greedy("Once upon a time", target, kTokens);
                           r.set_ignore_eos(true);
                           return Generate(*server.Stub(), r);
                         }));
  }
  for (auto& [target, answer] : answers) {
    const Result r = answer.get();
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids, plain[target]) << target;
  }
}

// Sampling end to end: a seeded speculative request gives the same text twice, at temperature 1
// with top-k, top-p and a repetition penalty applied to both distributions.
TEST(SpeculativeServer, ASeededSampledRequestRepeatsItself) {
  ServerProcess server({"--model", testing::TinyStoriesImage()});
  const auto stub = server.Stub();
  pb::GenerateRequest r = Speculative(8, 4, 4, 64);
  r.mutable_sampling()->set_temperature(1.0f);
  r.mutable_sampling()->set_top_k(40);
  r.mutable_sampling()->set_top_p(0.9f);
  r.mutable_sampling()->set_repetition_penalty(1.1f);
  r.mutable_sampling()->set_seed(99);
  const Result first = Generate(*stub, r);
  const Result second = Generate(*stub, r);
  ASSERT_TRUE(first.status.ok() && second.status.ok());
  EXPECT_EQ(first.ids, second.ids);
  EXPECT_EQ(first.ids.size(), 64u);
  EXPECT_GT(first.messages.back().usage().accepted_tokens(), 0u);
}

// Who decides: the request (a draft width, or 0 for plain), else its tenant's default, else the
// server's; a default applies only where the draft is below the request's width, and never
// refuses one. Through the HTTP front too, with the drafts in OpenAI's usage fields.
TEST(SpeculativeServer, DefaultsComeFromTheTenantThenTheServer) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("anyprec-speculative-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string tenants = (dir / "tenants.toml").string();
  std::ofstream(tenants) << "[tenants.fast]\napi_key_sha256 = [\"" << testing::HashKey(ANYPREC_SERVER, "fast-key")
                         << "\"]\ndefault_bits = 8\nspeculative = { draft_bits = 3, lookahead = 2 }\n\n[tenants.plain]\napi_key_sha256 = [\""
                         << testing::HashKey(ANYPREC_SERVER, "plain-key") << "\"]\ndefault_bits = 8\n";
  ServerProcess server({"--model", testing::TinyStoriesImage(), "--tenants", tenants, "--speculative-draft-bits", "4",
                        "--speculative-lookahead", "3"});
  const auto stub = server.Stub();
  pb::GenerateRequest request = Greedy("Once upon a time", 0, kTokens);
  request.set_ignore_eos(true);
  pb::GenerateRequest plain_request = request;
  plain_request.mutable_speculative()->set_draft_bits(0);
  const Result plain = Generate(*stub, plain_request, "plain-key");
  ASSERT_TRUE(plain.status.ok()) << plain.status.error_message();
  EXPECT_EQ(plain.messages.back().usage().drafted_tokens(), 0u) << "draft_bits 0 asks for plain decoding";
  for (const std::string key : {"fast-key", "plain-key"}) {
    const Result r = Generate(*stub, request, key);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids, plain.ids) << key;
    EXPECT_GT(r.messages.back().usage().drafted_tokens(), 0u) << key << ": its tenant's default, else the server's";
  }
  const std::map<std::string, double> metrics = testing::ScrapeAll(server);
  EXPECT_GT(metrics.at("anyprec_speculative_drafted_tokens_total{bits=\"8\",draft_bits=\"3\"}"), 0) << "fast's own default";
  EXPECT_GT(metrics.at("anyprec_speculative_drafted_tokens_total{bits=\"8\",draft_bits=\"4\"}"), 0) << "the server's default";
  pb::GenerateRequest narrow = request;
  narrow.set_bits(3);
  const Result at_three = Generate(*stub, narrow, "fast-key");
  ASSERT_TRUE(at_three.status.ok()) << "a default that cannot draft below 3 bits leaves the request plain";
  EXPECT_EQ(at_three.messages.back().usage().drafted_tokens(), 0u);

  httplib::Client http("http://" + server.http_address());
  http.set_bearer_token_auth("plain-key");
  const auto post = [&](const nlohmann::json& body) {
    const httplib::Result r = http.Post("/v1/completions", body.dump(), "application/json");
    EXPECT_TRUE(r);
    return r ? std::make_pair(r->status, nlohmann::json::parse(r->body, nullptr, false)) : std::make_pair(0, nlohmann::json());
  };
  const nlohmann::json body = {{"model", "TinyStories-656K@8"}, {"prompt", "Once upon a time"}, {"max_tokens", kTokens},
                               {"temperature", 0}, {"ignore_eos", true}};
  nlohmann::json off = body, on = body;
  off["speculative"] = {{"draft_bits", 0}};
  on["speculative"] = {{"draft_bits", 5}, {"lookahead", 4}};
  const auto [off_status, off_answer] = post(off);
  const auto [on_status, on_answer] = post(on);
  ASSERT_EQ(off_status, 200) << off_answer.dump();
  ASSERT_EQ(on_status, 200) << on_answer.dump();
  EXPECT_EQ(on_answer["choices"][0]["text"], off_answer["choices"][0]["text"]);
  EXPECT_FALSE(off_answer["usage"].contains("completion_tokens_details"));
  const nlohmann::json& details = on_answer["usage"]["completion_tokens_details"];
  EXPECT_GE(details.value("accepted_prediction_tokens", -1) + details.value("rejected_prediction_tokens", -1), 1) << on_answer.dump();
  nlohmann::json bad = body;
  bad["speculative"] = {{"draft_bits", 8}};
  const auto [bad_status, bad_answer] = post(bad);
  EXPECT_EQ(bad_status, 400) << bad_answer.dump();
  std::filesystem::remove_all(dir);
}

// What cannot run is refused with the reason: a draft at or above the request's width, outside
// the image's widths, or a lookahead out of range.
TEST(SpeculativeServer, RefusesDraftsItCannotRun) {
  ServerProcess server({"--model", testing::TinyStoriesImage()});
  const auto stub = server.Stub();
  for (const auto& [request, words] : std::vector<std::pair<pb::GenerateRequest, std::string>>{
           {Speculative(5, 5, 4), "must be below the target width 5"},
           {Speculative(5, 2, 4), "draft width 2 is outside the model's widths 3..8"},
           {Speculative(8, 3, 17), "lookahead must be in 1..16"}}) {
    const Result r = Generate(*stub, request);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(r.status.error_message().find(words), std::string::npos) << r.status.error_message();
  }
}

}  // namespace
}  // namespace anyprec

// Adaptive width through the real anyprec-server on the TinyStories-656K image: requests whose
// width the server chooses under load stay within their tenant's and their own range, report
// every width they ran at (gRPC and HTTP), drop under an overload made by anyprec-loadtest's
// runner while fixed-width requests keep theirs, and come back to the top when the load stops.
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "loadtest/load_runner.h"
#include "proto/openai_client.h"
#include "tests/server_process.h"
#include "tests/shared_data.h"
#include "tests/test_image.h"

namespace anyprec {
namespace {

namespace fs = std::filesystem;
namespace pb = anyprec::v1;
using testing::Generate;
using testing::Greedy;
using testing::Result;
using testing::ServerProcess;

std::string Key(const std::string& key) { return testing::HashKey(ANYPREC_SERVER, key); }

// Tokens by width as the final message reports them, checked against the tokens' own widths.
std::map<int, int> TokensByWidth(const Result& r) {
  std::map<int, int> reported, seen;
  for (const pb::GenerateResponse& m : r.messages) {
    for (const pb::Token& t : m.tokens()) ++seen[static_cast<int>(t.bits())];
  }
  for (const pb::WidthTokens& w : r.messages.back().usage().tokens_by_width()) reported[static_cast<int>(w.bits())] = static_cast<int>(w.tokens());
  EXPECT_EQ(reported, seen) << "the usage's widths differ from the tokens'";
  return reported;
}

class AdaptiveServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("anyprec-adaptive-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    tenants_ = (dir_ / "tenants.toml").string();
  }
  void TearDown() override { fs::remove_all(dir_); }
  void WriteTenants(const std::string& elastic_extra) {
    std::ofstream(tenants_ + ".new") << "[tenants.elastic]\napi_key_sha256 = [\"" << Key("elastic-key") << "\"]\n"
                                     << "adaptive = { min_bits = 4 }\n"
                                     << elastic_extra << "\n[tenants.fixed]\napi_key_sha256 = [\"" << Key("fixed-key") << "\"]\n"
                                     << "default_bits = 4\n\n[tenants.narrow]\napi_key_sha256 = [\"" << Key("narrow-key") << "\"]\n"
                                     << "min_bits = 3\nmax_bits = 4\n";
    fs::rename(tenants_ + ".new", tenants_);
  }
  fs::path dir_;
  std::string tenants_;
};

pb::GenerateRequest Ranged(int bits, std::optional<int> min_bits, std::optional<int> max_bits, int tokens = 12) {
  pb::GenerateRequest request = Greedy("Once upon a time", bits, tokens);
  if (min_bits) request.set_min_bits(*min_bits);
  if (max_bits) request.set_max_bits(*max_bits);
  return request;
}

TEST_F(AdaptiveServerTest, RequestsRunWithinTheirRangesAndReportTheirWidths) {
  WriteTenants("");
  ServerProcess server(ANYPREC_SERVER, {"--model", testing::TinyStoriesImage(), "--tenants", tenants_}, (dir_ / "server.log").string());
  ASSERT_TRUE(server.started());
  auto stub = server.Stub();
  const auto within = [](const std::map<int, int>& widths, int min, int max) {
    for (const auto& [bits, tokens] : widths) {
      if (bits < min || bits > max) return false;
    }
    return !widths.empty();
  };

  // The tenant's adaptive range, 4..8; the final message names its top.
  Result r = Generate(*stub, Ranged(0, std::nullopt, std::nullopt), "elastic-key");
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.messages.back().bits(), 8u);
  EXPECT_TRUE(within(TokensByWidth(r), 4, 8));
  // Narrowed by the request.
  r = Generate(*stub, Ranged(0, 5, 6), "elastic-key");
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.messages.back().bits(), 6u);
  EXPECT_TRUE(within(TokensByWidth(r), 5, 6));
  // A tenant without an adaptive range: a request may adapt within its allowed widths.
  r = Generate(*stub, Ranged(0, 3, 4), "narrow-key");
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_TRUE(within(TokensByWidth(r), 3, 4));
  // Fixed widths keep theirs, and report them too.
  r = Generate(*stub, Ranged(0, std::nullopt, std::nullopt), "fixed-key");
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(TokensByWidth(r), (std::map<int, int>{{4, 12}}));

  const auto refused = [&](const pb::GenerateRequest& request, const std::string& key, grpc::StatusCode code, const std::string& says) {
    const Result result = Generate(*stub, request, key);
    EXPECT_EQ(result.status.error_code(), code) << result.status.error_message();
    EXPECT_NE(result.status.error_message().find(says), std::string::npos) << result.status.error_message();
  };
  refused(Ranged(0, 3, std::nullopt), "elastic-key", grpc::StatusCode::PERMISSION_DENIED, "may adapt within widths 4..8, not 3..8");
  refused(Ranged(0, 3, 8), "narrow-key", grpc::StatusCode::PERMISSION_DENIED, "may adapt within widths 3..4, not 3..8");
  refused(Ranged(8, std::nullopt, 8), "elastic-key", grpc::StatusCode::INVALID_ARGUMENT, "set one or the other");
  refused(Ranged(0, 6, 5), "elastic-key", grpc::StatusCode::INVALID_ARGUMENT, "min_bits 6 exceeds max_bits 5");
  refused(Ranged(0, 2, std::nullopt), "narrow-key", grpc::StatusCode::INVALID_ARGUMENT, "min_bits 2 is outside the served widths");

  // Through the OpenAI front: the extension fields, and the usage's tokens by width.
  OpenAIServer http;
  http.address = server.http_address();
  http.api_key = "elastic-key";
  const nlohmann::json body = {{"model", "TinyStories-656K"}, {"prompt", "Once upon a time"}, {"max_tokens", 10}, {"temperature", 0},
                               {"ignore_eos", true},         {"min_bits", 5},                  {"max_bits", 7}};
  nlohmann::json usage;
  const StreamEnd end = StreamOpenAI(http, "/v1/completions", body, [&](const nlohmann::json& event) {
    if (event.contains("usage")) usage = event["usage"];
    return true;
  });
  ASSERT_EQ(end.http_status, 200) << end.error.dump();
  int counted = 0;
  for (const auto& [bits, tokens] : usage["tokens_by_width"].items()) {
    EXPECT_TRUE(std::stoi(bits) >= 5 && std::stoi(bits) <= 7) << bits;
    counted += tokens.get<int>();
  }
  EXPECT_EQ(counted, 10) << usage.dump();
  const StreamEnd fixed_and_ranged = StreamOpenAI(http, "/v1/completions", {{"model", "TinyStories-656K@8"}, {"prompt", "Once"}, {"max_bits", 8}},
                                                  [](const nlohmann::json&) { return true; });
  EXPECT_EQ(fixed_and_ranged.http_status, 400);
  EXPECT_EQ(server.Terminate(), 0);
  std::ifstream log(dir_ / "server.log");
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("tokens_by_width"), std::string::npos) << "the access log records the widths used";
}

TEST_F(AdaptiveServerTest, AnOverloadLowersAdaptiveWidthsOnlyAndTheyComeBackAfter) {
  // Objectives nobody can miss while this machine's speed is measured.
  WriteTenants("slo = { ttft_ms = 600000, tpot_ms = 600000 }\n");
  constexpr int kMaxRunning = 8;
  ServerProcess server(ANYPREC_SERVER,
                       {"--model", testing::TinyStoriesImage(), "--tenants", tenants_, "--max-running", std::to_string(kMaxRunning),
                        "--max-queued", "100000"},
                       (dir_ / "server.log").string());
  ASSERT_TRUE(server.started());
  auto stub = server.Stub();

  // Light load: one request alone; its time per step (the prompt's and 32 tokens'), call included.
  double light_step = 0;
  {
    const auto start = std::chrono::steady_clock::now();
    const Result r = Generate(*stub, Ranged(0, std::nullopt, std::nullopt, 32), "elastic-key");
    ASSERT_TRUE(r.status.ok());
    light_step = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 33;
  }
  // Capacity: a closed loop that keeps every slot busy, half each tenant.
  loadtest::RunOptions run;
  auto prompts = loadtest::ReadPrompts(testing::SharedPath("data/tinystories/tinystories_val_head.txt"), loadtest::PromptSplit::kParagraphs);
  ASSERT_TRUE(prompts.ok()) << prompts.status();
  run.workload.prompts = *prompts;
  run.workload.prompt_words = {5, 30};
  run.workload.output_tokens = {32, 32};
  run.workload.tenant_mix = {{0, 1.0}, {1, 1.0}};
  run.api_keys = {"elastic-key", "fixed-key"};
  run.concurrency = kMaxRunning;
  run.duration = 3;
  const auto channel = grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials());
  double seconds = 0;
  const std::vector<loadtest::RequestRecord> warm = loadtest::RunLoad(channel, run, &seconds);
  const double capacity = static_cast<double>(warm.size()) / seconds;
  ASSERT_GT(capacity, 1) << "the server barely serves";

  // Objectives a light load meets and an overload cannot, from what this machine measured.
  WriteTenants("slo = { ttft_ms = " + std::to_string(20e3 * light_step) + ", tpot_ms = " + std::to_string(4e3 * light_step) + " }\n");
  server.Signal(SIGHUP);
  ASSERT_TRUE(testing::ScrapeUntil(server, "anyprec_tenant_reloads_total{result=\"ok\"}", 1, std::chrono::seconds(10)));

  // Three times what the server sustains, for four seconds.
  run.concurrency = 0;
  run.workload.rate = 3 * capacity;
  run.workload.seed = 7;
  run.duration = 4;
  const std::vector<loadtest::RequestRecord> load = loadtest::RunLoad(channel, run, &seconds);
  long elastic_below_top = 0, elastic_tokens = 0;
  for (const loadtest::RequestRecord& r : load) {
    ASSERT_EQ(r.status, "OK") << "every request completes (the queue takes them all)";
    int counted = 0;
    for (const auto& [bits, tokens] : r.tokens_by_width) {
      counted += tokens;
      if (r.tenant == 1) {
        EXPECT_EQ(bits, 4) << "a fixed-width request ran at another width";
      } else {
        EXPECT_TRUE(bits >= 4 && bits <= 8) << bits;
        elastic_tokens += tokens;
        if (bits < 8) elastic_below_top += tokens;
      }
    }
    EXPECT_EQ(counted, r.output_tokens);
  }
  EXPECT_GT(elastic_below_top, 0) << "no adaptive request dropped below 8 bits under the overload (" << elastic_tokens << " tokens)";
  EXPECT_GT(testing::Scrape(server, "anyprec_width_changes_total{direction=\"down\",tenant=\"elastic\"}"), 0);
  EXPECT_EQ(testing::Scrape(server, "anyprec_width_changes_total{direction=\"down\",tenant=\"fixed\"}"), -1);

  // With the load gone, the top width again: a request now and then, until the controller's
  // windows have let the overload go.
  bool at_top = false;
  for (int attempt = 0; attempt < 40 && !at_top; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    const Result r = Generate(*stub, Ranged(0, std::nullopt, std::nullopt, 16), "elastic-key");
    ASSERT_TRUE(r.status.ok());
    at_top = TokensByWidth(r) == std::map<int, int>{{8, 16}};
  }
  EXPECT_TRUE(at_top) << "adaptive requests did not return to 8 bits after the load";
  EXPECT_EQ(testing::Scrape(server, "anyprec_width_ceiling_bits{tenant=\"elastic\"}"), 8);
  EXPECT_TRUE(testing::ScrapeUntil(server, "anyprec_kv_cache_usage_ratio", 0, std::chrono::seconds(2)));
  std::printf("adaptive: capacity %.1f requests/s, overload %zu requests, %ld of %ld adaptive tokens below 8 bits\n", capacity,
              load.size(), elastic_below_top, elastic_tokens);
  EXPECT_EQ(server.Terminate(), 0);
}

}  // namespace
}  // namespace anyprec

// anyprec-server as clients meet it: the real binary on a free loopback port, a real gRPC
// client, an image quantized from the real TinyStories-656K.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "anyprec/v1/admin.grpc.pb.h"
#include "anyprec/v1/generation.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/server_process.h"
#include "tests/test_server.h"
#include "tests/shared_data.h"
#include "tests/test_image.h"

namespace anyprec {
namespace {

namespace fs = std::filesystem;
namespace pb = anyprec::v1;
using testing::Capture;
using testing::Generate;
using testing::Greedy;
using testing::Result;
using testing::Scrape;
using testing::ScrapeUntil;
using testing::SharedPath;

// The real server binary, checked to have started.
using ServerProcess = testing::TestServer;

std::string RunGenerate(const std::string& image, const std::string& prompt, int bits, int max_new_tokens) {
  return Capture(std::string(ANYPREC_CLI) + " generate --model " + image + " --bits " + std::to_string(bits) +
                 " --temperature 0 --max-new-tokens " + std::to_string(max_new_tokens) + " --prompt '" + prompt + "'");
}

// A port nothing listens on now: bind port 0 on loopback, read it back, release it.
int FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  ::close(fd);
  return ntohs(address.sin_port);
}

// The value of an unlabelled series (or the first one of a family) on /metrics; -1 if absent.
class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { image_ = testing::TinyStoriesImage(); }
  static inline std::string image_;
};

TEST_F(ServerTest, StreamsTokensAndEndsWithUsage) {
  ServerProcess server({"--model", image_});
  const auto stub = server.Stub();
  const Result r = Generate(*stub, Greedy("Once upon a time", 3, 20));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_GE(r.messages.size(), 2u) << "tokens arrive before the request finishes";
  EXPECT_EQ(r.messages.front().finish_reason(), pb::FINISH_REASON_UNSPECIFIED);
  const pb::GenerateResponse& last = r.messages.back();
  EXPECT_EQ(last.finish_reason(), pb::LENGTH);
  EXPECT_EQ(last.usage().prompt_tokens(), 6u);
  EXPECT_EQ(last.usage().completion_tokens(), 20u);
  EXPECT_EQ(last.bits(), 3u);
  EXPECT_EQ(last.model(), "TinyStories-656K@3");
  EXPECT_EQ(r.ids.size(), 20u);

  // bits 0 takes the default (the widest); ListModels names every width.
  const Result d = Generate(*stub, Greedy("Once upon a time", 0, 2));
  ASSERT_TRUE(d.status.ok());
  EXPECT_EQ(d.messages.back().bits(), 8u);
  grpc::ClientContext context;
  pb::ListModelsResponse models;
  ASSERT_TRUE(stub->ListModels(&context, {}, &models).ok());
  ASSERT_EQ(models.models_size(), 6);
  EXPECT_EQ(models.models(0).name(), "TinyStories-656K@3");
  EXPECT_EQ(models.default_bits(), 8u);
}

// Twelve concurrent greedy requests over widths {3, 4, 8} each get exactly the text that
// `anyprec generate` gives for the same request alone.
TEST_F(ServerTest, ConcurrentMixedWidthsMatchRunningAlone) {
  ServerProcess server({"--model", image_, "--step-tokens", "4"});
  const std::vector<std::string> prompts = {"Once upon a time", "The little dog", "Tom and Sue went to the park", "One day"};
  std::vector<std::future<Result>> futures;
  std::vector<std::pair<std::string, int>> cases;
  for (int i = 0; i < 12; ++i) {
    const std::string& prompt = prompts[i % prompts.size()];
    const int bits = std::vector<int>{3, 4, 8}[i % 3];
    cases.emplace_back(prompt, bits);
    futures.push_back(std::async(std::launch::async, [&server, prompt, bits] {
      const auto stub = server.Stub();
      return Generate(*stub, Greedy(prompt, bits, 24));
    }));
  }
  for (size_t i = 0; i < futures.size(); ++i) {
    const Result r = futures[i].get();
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    const std::string alone = RunGenerate(image_, cases[i].first, cases[i].second, 24);
    EXPECT_EQ(cases[i].first + r.text + "\n", alone) << "bits " << cases[i].second;
  }
}

// Every model family (../shared/models/synthetic-arch, quantized with Fisher sensitivity):
// the server serves each width, in one mixed batch, as `anyprec generate` runs it alone.
TEST(FamilyServerTest, EveryFamilyServesEveryWidthAsGenerateDoes) {
  for (const std::string variant : {"llama", "llama31", "llama32-bf16", "llama-linear", "llama-dynamic", "qwen2", "qwen2-yarn", "qwen3",
                                    "mistral", "mistral-nemo", "gemma", "phi3"}) {
    SCOPED_TRACE(variant);
    const std::string& image = testing::SyntheticArchImage(variant);
    ServerProcess server({"--model", image});
    std::vector<std::future<Result>> futures;
    for (int bits = 3; bits <= 8; ++bits) {
      futures.push_back(std::async(std::launch::async, [&server, bits] {
        const auto stub = server.Stub();
        return Generate(*stub, Greedy("Once upon a time", bits, 6));
      }));
    }
    for (int bits = 3; bits <= 8; ++bits) {
      const Result r = futures[bits - 3].get();
      ASSERT_TRUE(r.status.ok()) << r.status.error_message();
      EXPECT_EQ(r.messages.back().bits(), static_cast<unsigned>(bits));
      EXPECT_EQ(r.ids.size(), 6u);
      EXPECT_EQ("Once upon a time" + r.text + "\n", RunGenerate(image, "Once upon a time", bits, 6)) << "bits " << bits;
    }
  }
}

// A model whose config.json names no BOS id: the server and `anyprec generate` both open a
// prompt with the BOS its tokenizer's template adds (one rule, engine/runtime/prompt.h), so they
// agree with each other and with the image that names it.
TEST_F(ServerTest, PromptsWithoutAConfiguredBosGetTheTemplatesBos) {
  const fs::path dir = fs::temp_directory_path() / ("anyprec-no-bos-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::copy(image_, dir, fs::copy_options::recursive);
  nlohmann::json config = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  ASSERT_EQ(config.value("bos_token_id", -1), 1);
  config.erase("bos_token_id");
  std::ofstream(dir / "config.json") << config.dump(2);

  const std::string with_bos = RunGenerate(image_, "Once upon a time", 3, 12);
  EXPECT_EQ(RunGenerate(dir.string(), "Once upon a time", 3, 12), with_bos);
  ServerProcess server({"--model", dir.string()});
  const Result r = Generate(*server.Stub(), Greedy("Once upon a time", 3, 12));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.messages.back().usage().prompt_tokens(), 6u) << "the prompt of StreamsTokensAndEndsWithUsage, BOS included";
  EXPECT_EQ("Once upon a time" + r.text + "\n", with_bos);
  fs::remove_all(dir);
}

// A stop sequence ends the stream where it begins and nothing of it is streamed (text that
// could begin it is held back), as `anyprec generate --stop` ends the same story.
TEST_F(ServerTest, StopSequencesEndTheStreamAsGenerateDoes) {
  const std::string prompt = "Once upon a time";
  const std::string alone = RunGenerate(image_, prompt, 8, 24);
  ASSERT_TRUE(alone.starts_with(prompt)) << alone;
  const std::string story = alone.substr(prompt.size());
  // The stop sequence: the fourth word of the story, with the space before it.
  size_t cut = 0;
  for (int spaces = 0; spaces < 4; ++spaces) cut = story.find(' ', cut + 1);
  ASSERT_NE(cut, std::string::npos) << story;
  const std::string stop = story.substr(cut, story.find(' ', cut + 1) - cut);
  ServerProcess server({"--model", image_});
  pb::GenerateRequest request = Greedy(prompt, 8, 24);
  request.add_stop(stop);
  const Result r = Generate(*server.Stub(), request);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.messages.back().finish_reason(), pb::STOP_SEQUENCE);
  EXPECT_EQ(r.text, story.substr(0, cut)) << "stop '" << stop << "'";
  EXPECT_EQ(Capture(std::string(ANYPREC_CLI) + " generate --model " + image_ + " --bits 8 --temperature 0 --max-new-tokens 24 --prompt '" +
                    prompt + "' --stop '" + stop + "'"),
            prompt + r.text + "\n");
}

TEST_F(ServerTest, BadRequestsSayWhatIsWrong) {
  ServerProcess server({"--model", image_});
  const auto stub = server.Stub();
  const auto expect_invalid = [&](const pb::GenerateRequest& request, const std::string& fragment) {
    const Result r = Generate(*stub, request);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << fragment;
    EXPECT_NE(r.status.error_message().find(fragment), std::string::npos) << r.status.error_message();
  };
  expect_invalid(Greedy("", 3, 5), "prompt is empty");
  expect_invalid(Greedy(std::string(3000, 'a') + " b c d e f g h i j k l m n o p q r s t u v w x y z", 3, 5), "context");
  expect_invalid(Greedy("hi", 3, 0), "max_new_tokens");
  expect_invalid(Greedy("hi", 3, 1000000), "max_new_tokens");
  expect_invalid(Greedy("hi", 2, 5), "bits 2");
  expect_invalid(Greedy("hi", 9, 5), "bits 9 is outside the served widths 3..8");
  pb::GenerateRequest bad_sampling = Greedy("hi", 3, 5);
  bad_sampling.mutable_sampling()->set_temperature(-1);
  expect_invalid(bad_sampling, "temperature");
  bad_sampling = Greedy("hi", 3, 5);
  bad_sampling.mutable_sampling()->set_top_p(1.5f);
  expect_invalid(bad_sampling, "top_p");
  bad_sampling = Greedy("hi", 3, 5);
  bad_sampling.mutable_sampling()->set_top_k(-2);
  expect_invalid(bad_sampling, "top_k");
  bad_sampling = Greedy("hi", 3, 5);
  bad_sampling.mutable_sampling()->set_repetition_penalty(-1);
  expect_invalid(bad_sampling, "repetition_penalty");
  expect_invalid(Greedy("caf\xc3", 3, 5), "not valid UTF-8");
  pb::GenerateRequest bad_stop = Greedy("hi", 3, 5);
  bad_stop.add_stop("\xff");
  expect_invalid(bad_stop, "stop sequence");
  pb::GenerateRequest bad_ids = Greedy("", 3, 5);
  bad_ids.mutable_token_ids()->add_ids(99999);
  expect_invalid(bad_ids, "outside the vocabulary");
  // The server is still up.
  EXPECT_TRUE(Generate(*stub, Greedy("hi", 3, 2)).status.ok());
}

TEST_F(ServerTest, OverloadIsRejectedAndAdmittedRequestsComplete) {
  ServerProcess server({"--model", image_, "--max-running", "2", "--max-queued", "2"});
  std::vector<std::future<Result>> futures;
  for (int i = 0; i < 12; ++i) {
    futures.push_back(std::async(std::launch::async, [&server] {
      const auto stub = server.Stub();
      pb::GenerateRequest r = Greedy("Once upon a time", 3, 300);
      r.set_ignore_eos(true);
      return Generate(*stub, r);
    }));
  }
  int completed = 0;
  int rejected = 0;
  for (auto& f : futures) {
    const Result r = f.get();
    if (r.status.ok()) {
      ++completed;
      EXPECT_EQ(r.messages.back().usage().completion_tokens(), 300u);
    } else {
      EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << r.status.error_message();
      ++rejected;
    }
  }
  // At least the queue's worth is admitted (more when running requests free slots while
  // others are still arriving); the rest are turned away, none is lost.
  EXPECT_GE(completed, 2);
  EXPECT_GE(rejected, 1);
  EXPECT_EQ(completed + rejected, 12);
  EXPECT_TRUE(Generate(*server.Stub(), Greedy("hi", 3, 2)).status.ok()) << "the server stays up";
}

TEST_F(ServerTest, CancelledStreamsStopWithoutDisturbingOthers) {
  ServerProcess server({"--model", image_, "--max-running", "1"});
  const auto stub = server.Stub();
  {
    grpc::ClientContext context;
    pb::GenerateRequest r = Greedy("Once upon a time", 3, 4000);
    r.set_ignore_eos(true);
    auto reader = stub->Generate(&context, r);
    pb::GenerateResponse response;
    ASSERT_TRUE(reader->Read(&response));
    context.TryCancel();
    while (reader->Read(&response)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // With one sequence slot, this only runs once the cancelled request has let go of it.
  const Result next = Generate(*stub, Greedy("Once upon a time", 3, 5));
  EXPECT_TRUE(next.status.ok()) << next.status.error_message();

  grpc::ClientContext short_deadline;
  short_deadline.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(2));
  pb::GenerateRequest long_request = Greedy("Once upon a time", 3, 4000);
  long_request.set_ignore_eos(true);
  auto reader = stub->Generate(&short_deadline, long_request);
  pb::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(Generate(*stub, Greedy("Once upon a time", 3, 5)).status.ok());
}

// With one sequence slot, eight long requests keep the server draining for a while after
// SIGTERM: health says NOT_SERVING, new requests get UNAVAILABLE, every admitted one ends
// complete, and the exit code is 0.
TEST_F(ServerTest, SigtermDrainsInFlightRequestsAndExitsZero) {
  ServerProcess server({"--model", image_, "--max-running", "1"});
  EXPECT_EQ(Capture(std::string(ANYPREC_CLI) + " client --health --addr " + server.address()), "SERVING\n");
  std::vector<std::future<Result>> in_flight;
  for (int i = 0; i < 8; ++i) {
    in_flight.push_back(std::async(std::launch::async, [&server] {
      pb::GenerateRequest r = Greedy("Once upon a time", 8, 400);
      r.set_ignore_eos(true);
      return Generate(*server.Stub(), r);
    }));
  }
  while (Scrape(server, "anyprec_requests_running") < 1) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  server.Signal(SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // The drain starts with GOAWAY and a closed listener: no new client finds it healthy or gets served.
  EXPECT_NE(Capture(std::string(ANYPREC_CLI) + " client --health --addr " + server.address() + " 2>/dev/null"), "SERVING\n");
  EXPECT_EQ(Generate(*server.Stub(), Greedy("hi", 3, 2)).status.error_code(), grpc::StatusCode::UNAVAILABLE);
  for (auto& f : in_flight) {
    const Result r = f.get();
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids.size(), 400u);
  }
  EXPECT_EQ(server.Wait(), 0);
}

// A real Prometheus scrapes the server; what it stored equals what the client received.
TEST_F(ServerTest, PrometheusSeesTheTokensClientsReceived) {
  ServerProcess server({"--model", image_});
  std::map<std::string, int> received;
  for (const auto& [bits, tokens] : std::vector<std::pair<int, int>>{{3, 7}, {8, 5}, {3, 4}}) {
    const Result r = Generate(*server.Stub(), Greedy("Once upon a time", bits, tokens));
    ASSERT_TRUE(r.status.ok());
    received[std::to_string(bits)] += static_cast<int>(r.ids.size());
  }
  EXPECT_EQ(std::system(("curl -sf http://" + server.metrics_address() + "/metrics | promtool check metrics").c_str()), 0);

  const fs::path dir = fs::temp_directory_path() / ("anyprec-prometheus-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "prometheus.yml") << "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: anyprec\n"
                                        << "    static_configs:\n      - targets: ['" << server.metrics_address() << "']\n";
  const std::string api = "127.0.0.1:" + std::to_string(FreeLoopbackPort());
  const std::string prometheus = "prometheus --config.file=" + (dir / "prometheus.yml").string() + " --storage.tsdb.path=" +
                                 (dir / "data").string() + " --web.listen-address=" + api + " > " + (dir / "log").string() +
                                 " 2>&1 & echo $!";
  const std::string pid = Capture(prometheus);
  std::map<std::string, int> stored;
  for (int attempt = 0; attempt < 60 && stored != received; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const std::string body = Capture("curl -sf 'http://" + api + "/api/v1/query?query=sum%20by%20(bits)(anyprec_generation_tokens_total)'");
    const auto json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded() || !json.contains("data")) continue;
    stored.clear();
    for (const auto& series : json["data"]["result"]) {
      stored[series["metric"]["bits"].get<std::string>()] = std::stoi(series["value"][1].get<std::string>());
    }
  }
  std::system(("kill " + pid).c_str());
  EXPECT_EQ(stored, received) << Capture("cat " + (dir / "log").string());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  fs::remove_all(dir);
}

std::string HashKey(const std::string& key) { return testing::HashKey(ANYPREC_SERVER, key); }

class TenantServerTest : public ServerTest {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("anyprec-tenant-server-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    tenants_ = (dir_ / "tenants.toml").string();
    good_ = "[admin]\napi_key_sha256 = [\"" + HashKey("admin-key") + "\"]\n\n" +
            "[tenants.fast]\napi_key_sha256 = [\"" + HashKey("fast-key") + "\"]\ndefault_bits = 3\nmin_bits = 3\nmax_bits = 4\n\n" +
            "[tenants.exact]\napi_key_sha256 = [\"" + HashKey("exact-key") + "\"]\ndefault_bits = 8\nweight = 2\n";
    std::ofstream(tenants_) << good_;
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  std::string tenants_;
  std::string good_;
};

TEST_F(TenantServerTest, TenantsGetTheirWidthsAndAdminChangesSurviveARestart) {
  const std::vector<std::string> args = {"--model", image_, "--tenants", tenants_};
  auto server = std::make_unique<ServerProcess>(args);
  auto stub = server->Stub();
  const auto bits_of = [&](const std::string& key, int bits) {
    const Result r = Generate(*stub, Greedy("Once upon a time", bits, 2), key);
    return r.status.ok() ? static_cast<int>(r.messages.back().bits()) : -static_cast<int>(r.status.error_code());
  };
  EXPECT_EQ(bits_of("fast-key", 0), 3);
  EXPECT_EQ(bits_of("exact-key", 0), 8);
  EXPECT_EQ(bits_of("exact-key", 3), 3);
  EXPECT_EQ(bits_of("fast-key", 4), 4);
  EXPECT_EQ(bits_of("fast-key", 8), -grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(bits_of("fast-key", 9), -grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(bits_of("wrong-key", 0), -grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(bits_of("", 0), -grpc::StatusCode::UNAUTHENTICATED);  // the file allows no anonymous use
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer fast-key");
    pb::ListModelsResponse models;
    ASSERT_TRUE(stub->ListModels(&context, {}, &models).ok());
    EXPECT_EQ(models.tenant(), "fast");
    EXPECT_EQ(models.default_bits(), 3u);
    EXPECT_EQ(models.max_bits(), 4u);
  }
  // Only the admin key may use Admin.
  const auto update = [&](const std::string& key, int default_bits) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + key);
    pb::UpdateTenantRequest request;
    request.set_name("fast");
    request.set_default_bits(default_bits);
    pb::TenantInfo info;
    return server->AdminStub()->UpdateTenant(&context, request, &info).error_code();
  };
  EXPECT_EQ(update("fast-key", 4), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(update("wrong-key", 4), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(update("admin-key", 8), grpc::StatusCode::INVALID_ARGUMENT);  // outside fast's 3..4
  EXPECT_EQ(update("admin-key", 4), grpc::StatusCode::OK);
  EXPECT_EQ(bits_of("fast-key", 0), 4) << "the change applies to the next request";
  EXPECT_EQ(Capture("curl -sf http://" + server->metrics_address() + "/metrics").find("tenant=\"fast\"") != std::string::npos, true);

  server = std::make_unique<ServerProcess>(args);
  stub = server->Stub();
  EXPECT_EQ(bits_of("fast-key", 0), 4) << "the change survives a restart";
  EXPECT_EQ(bits_of("exact-key", 0), 8);
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer admin-key");
  pb::ListTenantsResponse tenants;
  ASSERT_TRUE(server->AdminStub()->ListTenants(&context, {}, &tenants).ok());
  ASSERT_EQ(tenants.tenants_size(), 2);
  EXPECT_EQ(tenants.tenants(0).name(), "exact");
  EXPECT_EQ(tenants.tenants(0).weight(), 2);
  EXPECT_EQ(tenants.tenants(1).api_keys(), 1u);
}

TEST_F(TenantServerTest, SighupReloadsAndAMalformedFileKeepsTheOldPolicy) {
  ServerProcess server({"--model", image_, "--tenants", tenants_});
  const auto stub = server.Stub();
  std::ofstream(tenants_) << "[tenants.fast\n";  // malformed
  server.Signal(SIGHUP);
  ASSERT_TRUE(ScrapeUntil(server, "anyprec_tenant_reloads_total{result=\"error\"}", 1, std::chrono::seconds(5)));
  EXPECT_TRUE(Generate(*stub, Greedy("Once upon a time", 0, 2), "fast-key").status.ok()) << "the old tenants stay";

  std::ofstream(tenants_) << "anonymous_tenant = \"open\"\n[tenants.open]\ndefault_bits = 5\n";
  server.Signal(SIGHUP);
  ASSERT_TRUE(ScrapeUntil(server, "anyprec_tenant_reloads_total{result=\"ok\"}", 1, std::chrono::seconds(5)));
  const Result anonymous = Generate(*stub, Greedy("Once upon a time", 0, 2));
  ASSERT_TRUE(anonymous.status.ok()) << anonymous.status.error_message();
  EXPECT_EQ(anonymous.messages.back().bits(), 5u);
  EXPECT_EQ(Generate(*stub, Greedy("Once upon a time", 0, 2), "fast-key").status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

// Cancelled streams and expired deadlines give their KV blocks back: the usage metric
// returns to its idle value (0) within one second. Sixteen requests run together so that
// they are still running when the client gives up on them.
TEST_F(ServerTest, CancelAndDeadlineFreeKvBlocksWithinASecond) {
  ServerProcess server({"--model", image_});
  ASSERT_EQ(Scrape(server, "anyprec_kv_cache_usage_ratio"), 0);
  const auto run_all = [&](bool cancel) {
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    std::vector<std::unique_ptr<grpc::ClientReader<pb::GenerateResponse>>> readers;
    const auto stub = server.Stub();
    for (int i = 0; i < 16; ++i) {
      contexts.push_back(std::make_unique<grpc::ClientContext>());
      if (!cancel) contexts.back()->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(50));
      pb::GenerateRequest r = Greedy("Once upon a time", std::vector<int>{3, 4, 8}[i % 3], 4000);
      r.set_ignore_eos(true);
      readers.push_back(stub->Generate(contexts.back().get(), r));
    }
    pb::GenerateResponse response;
    if (cancel) {
      for (auto& reader : readers) EXPECT_TRUE(reader->Read(&response));
      EXPECT_GT(Scrape(server, "anyprec_kv_cache_usage_ratio"), 0) << "running requests hold blocks";
      for (auto& context : contexts) context->TryCancel();
    }
    int stopped = 0;
    for (auto& reader : readers) {
      while (reader->Read(&response)) {
      }
      const grpc::StatusCode code = reader->Finish().error_code();
      stopped += code == (cancel ? grpc::StatusCode::CANCELLED : grpc::StatusCode::DEADLINE_EXCEEDED);
    }
    EXPECT_GT(stopped, 8);
    EXPECT_TRUE(ScrapeUntil(server, "anyprec_kv_cache_usage_ratio", 0, std::chrono::seconds(1)));
  };
  run_all(/*cancel=*/true);
  run_all(/*cancel=*/false);
}

// A pool far smaller than the requests' needs preempts and recomputes; every request still
// gets exactly the tokens it gets alone.
TEST_F(ServerTest, SmallKvPoolPreemptsAndStillMatchesRunningAlone) {
  ServerProcess server({"--model", image_, "--kv-cache-tokens", "96", "--kv-block-tokens", "8", "--max-running", "4"});
  std::vector<std::future<Result>> futures;
  for (int i = 0; i < 4; ++i) {
    futures.push_back(std::async(std::launch::async, [&server] {
      pb::GenerateRequest r = Greedy("Once upon a time", 4, 60);
      r.set_ignore_eos(true);
      return Generate(*server.Stub(), r);
    }));
  }
  // `anyprec generate` stops at an end of story; the server, told to ignore it, goes on.
  std::string alone = RunGenerate(image_, "Once upon a time", 4, 60);
  alone.pop_back();
  for (auto& f : futures) {
    const Result r = f.get();
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids.size(), 60u);
    EXPECT_TRUE(("Once upon a time" + r.text).starts_with(alone)) << r.text << "\nalone: " << alone;
  }
  EXPECT_GT(Scrape(server, "anyprec_preemptions_total"), 0);
  EXPECT_TRUE(ScrapeUntil(server, "anyprec_kv_cache_usage_ratio", 0, std::chrono::seconds(1)));
}

TEST_F(ServerTest, ServesOverTlsAndLogsJson) {
  const fs::path dir = fs::temp_directory_path() / ("anyprec-tls-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string cert = (dir / "cert.pem").string();
  const std::string key = (dir / "key.pem").string();
  ASSERT_EQ(std::system(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -addext "
                         "subjectAltName=IP:127.0.0.1 -keyout " + key + " -out " + cert + " 2>/dev/null").c_str()),
            0);
  const std::string log = (dir / "server.log").string();
  {
    ServerProcess server({"--model", image_, "--tls-cert", cert, "--tls-key", key, "--log-format", "json"}, log);
    std::stringstream roots;
    roots << std::ifstream(cert).rdbuf();
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = roots.str();
    const auto stub = pb::Generation::NewStub(grpc::CreateChannel(server.address(), grpc::SslCredentials(tls)));
    const Result r = Generate(*stub, Greedy("Once upon a time", 3, 5));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.ids.size(), 5u);
    EXPECT_NE(Generate(*server.Stub(), Greedy("Once upon a time", 3, 5)).status.error_code(), grpc::StatusCode::OK)
        << "plaintext is refused";
    EXPECT_EQ(std::system((std::string(ANYPREC_CLI) + " client --health --tls-ca " + cert + " --addr " + server.address() +
                           " > /dev/null").c_str()),
              0);
  }
  // Every line is one JSON object; the request left one access line with its numbers.
  std::ifstream in(log);
  int access_lines = 0;
  std::set<std::string> messages;
  for (std::string line; std::getline(in, line);) {
    const auto json = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(json.is_discarded()) << line;
    ASSERT_TRUE(json.contains("time") && json.contains("level") && json.contains("msg")) << line;
    messages.insert(json["msg"].get<std::string>());
    if (json["msg"] == "request" && json["completion_tokens"] == 5) {
      ++access_lines;
      EXPECT_EQ(json["tenant"], "anonymous");
      EXPECT_EQ(json["bits"], 3);
      EXPECT_EQ(json["finish"], "LENGTH");
      EXPECT_TRUE(json.contains("ttft_ms") && json.contains("total_ms") && json.contains("id")) << line;
    }
  }
  EXPECT_EQ(access_lines, 1);
  EXPECT_TRUE(messages.contains("serving") && messages.contains("draining") && messages.contains("stopped"));
  fs::remove_all(dir);
}

// Each listener refuses an address another server holds, with a clear line and a non-zero
// exit, rather than sharing it (gRPC's and httplib's SO_REUSEPORT would have split the traffic).
TEST_F(ServerTest, EveryListenerRefusesAPortInUse) {
  ServerProcess first({"--model", image_});
  ASSERT_TRUE(first.started());
  // Bounded: a server that shared the port would serve on, and the test must fail, not hang.
  const std::string grpc_taken = Capture("timeout 60 " + std::string(ANYPREC_SERVER) + " --model " + image_ + " --listen " +
                                         first.address() + " --metrics-listen 127.0.0.1:0 2>&1; echo exit=$?");
  EXPECT_NE(grpc_taken.find("cannot listen: the address is in use"), std::string::npos) << grpc_taken;
  EXPECT_NE(grpc_taken.find(first.address()), std::string::npos) << grpc_taken;
  EXPECT_NE(grpc_taken.find("exit=1"), std::string::npos) << grpc_taken;
  const std::string metrics_taken = Capture("timeout 60 " + std::string(ANYPREC_SERVER) + " --model " + image_ +
                                            " --listen 127.0.0.1:0 --metrics-listen " + first.metrics_address() + " 2>&1; echo exit=$?");
  EXPECT_NE(metrics_taken.find("cannot serve metrics on " + first.metrics_address()), std::string::npos) << metrics_taken;
  EXPECT_NE(metrics_taken.find("exit=1"), std::string::npos) << metrics_taken;
  const std::string http_taken = Capture("timeout 60 " + std::string(ANYPREC_SERVER) + " --model " + image_ +
                                         " --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --http-listen " + first.http_address() +
                                         " 2>&1; echo exit=$?");
  EXPECT_NE(http_taken.find("cannot serve HTTP on " + first.http_address() + ": the address is in use"), std::string::npos) << http_taken;
  EXPECT_NE(http_taken.find("exit=1"), std::string::npos) << http_taken;
  // The first server still answers alone.
  EXPECT_EQ(Scrape(first, "anyprec_kv_cache_usage_ratio"), 0) << "metrics still served";
  EXPECT_EQ(first.Terminate(), 0);
}

TEST_F(ServerTest, AnonymousServingNeedsLoopbackOrATenantsFile) {
  const std::string refused =
      Capture(std::string(ANYPREC_SERVER) + " --model " + image_ + " --listen 0.0.0.0:0 --metrics-listen 127.0.0.1:0 2>&1; echo exit=$?");
  EXPECT_NE(refused.find("loopback only"), std::string::npos) << refused;
  EXPECT_NE(refused.find("exit=2"), std::string::npos) << refused;
  const std::string http_refused = Capture(std::string(ANYPREC_SERVER) + " --model " + image_ +
                                           " --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --http-listen 0.0.0.0:0 2>&1; echo exit=$?");
  EXPECT_NE(http_refused.find("loopback only (--http-listen 0.0.0.0:0)"), std::string::npos) << http_refused;
  EXPECT_NE(http_refused.find("exit=2"), std::string::npos) << http_refused;
}

}  // namespace
}  // namespace anyprec

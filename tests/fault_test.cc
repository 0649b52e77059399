// Faults the server must survive, each against the real anyprec-server binary: killed under
// load, stopped under load, a damaged image at start-up, clients that stop reading. (A
// malformed tenants file on SIGHUP is TenantServerTest.SighupReloadsAndAMalformedFileKeepsTheOldPolicy.)
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "loadtest/load_runner.h"
#include "tests/server_process.h"
#include "tests/shared_data.h"
#include "tests/test_image.h"

namespace anyprec {
namespace {

namespace fs = std::filesystem;
namespace pb = anyprec::v1;
using Clock = std::chrono::steady_clock;
using testing::ServerProcess;

loadtest::RunOptions ClosedLoop(int concurrency, long requests, int output_tokens) {
  loadtest::RunOptions run;
  run.concurrency = concurrency;
  run.requests = requests;
  run.workload.prompts = {"Once upon a time, there was a little girl named Lily.", "The sun was shining and the birds sang."};
  run.workload.output_tokens = {output_tokens, output_tokens};
  run.workload.width_mix = {{loadtest::Width::Fixed(3), 1}, {loadtest::Width::Fixed(4), 1}, {loadtest::Width::Fixed(8), 1}};
  return run;
}

std::map<std::string, long> Outcomes(const std::vector<loadtest::RequestRecord>& records) {
  std::map<std::string, long> outcomes;
  for (const loadtest::RequestRecord& r : records) ++outcomes[r.status];
  return outcomes;
}

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("anyprec-fault-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<std::string> Args(const std::string& image) const { return {"--model", image, "--max-running", "4"}; }

  fs::path dir_;
};

TEST_F(FaultTest, SigkillUnderLoadFailsClientsPromptlyAndARestartServes) {
  auto server = std::make_unique<ServerProcess>(ANYPREC_SERVER, Args(testing::TinyStoriesImage()), (dir_ / "server.log").string());
  ASSERT_TRUE(server->started());
  const auto channel = grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials());
  auto load = std::async(std::launch::async, [&] {
    double seconds = 0;
    return loadtest::RunLoad(channel, ClosedLoop(8, 400, 400), &seconds);
  });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  server->Signal(SIGKILL);
  const Clock::time_point killed = Clock::now();
  ASSERT_EQ(load.wait_for(std::chrono::seconds(20)), std::future_status::ready) << "clients hang after the server died";
  const std::vector<loadtest::RequestRecord> records = load.get();
  const double seconds_to_fail = std::chrono::duration<double>(Clock::now() - killed).count();
  EXPECT_EQ(server->Wait(), -1) << "killed by a signal";

  const std::map<std::string, long> outcomes = Outcomes(records);
  EXPECT_GT(outcomes.count("UNAVAILABLE") ? outcomes.at("UNAVAILABLE") : 0, 0) << ::testing::PrintToString(outcomes);
  for (const auto& [status, count] : outcomes) EXPECT_TRUE(status == "OK" || status == "UNAVAILABLE") << status << " x" << count;
  EXPECT_LT(seconds_to_fail, 10) << "400 requests took " << seconds_to_fail << " s to fail after the kill";

  server = std::make_unique<ServerProcess>(ANYPREC_SERVER, Args(testing::TinyStoriesImage()));
  ASSERT_TRUE(server->started()) << "a restart after SIGKILL serves again";
  double seconds = 0;
  const auto after = loadtest::RunLoad(grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials()),
                                       ClosedLoop(2, 4, 16), &seconds);
  EXPECT_EQ(Outcomes(after), (std::map<std::string, long>{{"OK", 4}}));
}

TEST_F(FaultTest, SigtermUnderLoadLosesNoRequestInFlight) {
  ServerProcess server(ANYPREC_SERVER, Args(testing::TinyStoriesImage()), (dir_ / "server.log").string());
  ASSERT_TRUE(server.started());
  const auto channel = grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials());
  auto load = std::async(std::launch::async, [&] {
    double seconds = 0;
    return loadtest::RunLoad(channel, ClosedLoop(8, 200, 200), &seconds);
  });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  server.Signal(SIGTERM);
  ASSERT_EQ(load.wait_for(std::chrono::seconds(120)), std::future_status::ready) << "clients hang during the drain";
  const std::vector<loadtest::RequestRecord> records = load.get();
  EXPECT_EQ(server.Wait(), 0) << "a drained SIGTERM exits 0";

  // Requests the server had accepted finish whole; the rest were refused before a token. A call
  // that reaches the server on the same instant as its GOAWAY, before gRPC has handed it to a
  // handler, is ended CANCELLED by gRPC's own Shutdown: it never ran, and no tokens were lost.
  long completed = 0;
  for (const loadtest::RequestRecord& r : records) {
    if (r.status == "OK") {
      ++completed;
      EXPECT_EQ(r.output_tokens, 200);
    } else {
      EXPECT_TRUE(r.status == "UNAVAILABLE" || r.status == "CANCELLED") << r.status;
      EXPECT_EQ(r.output_tokens, 0) << "a started request was cut off";
    }
  }
  EXPECT_GE(completed, 8) << "the 8 in flight at SIGTERM completed";
}

TEST_F(FaultTest, DamagedImageIsRefusedAtStartWithAClearError) {
  const fs::path original = testing::TinyStoriesImage();
  const auto damaged_copy = [&](const std::string& name, const std::function<void(const fs::path&)>& damage) {
    const fs::path copy = dir_ / name;
    fs::copy(original, copy, fs::copy_options::recursive);
    damage(copy / "anyprec.safetensors");
    return copy.string();
  };
  const std::string truncated = damaged_copy("truncated", [](const fs::path& f) { fs::resize_file(f, fs::file_size(f) - 4096); });
  const std::string flipped = damaged_copy("flipped", [](const fs::path& f) {
    std::fstream file(f, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(fs::file_size(f) - 1000));
    file.put('\x5a');
  });
  for (const auto& [image, words] : {std::pair{truncated, std::string("anyprec.safetensors")}, std::pair{flipped, std::string("checksum")}}) {
    const std::string log = (dir_ / "server.log").string();
    ServerProcess server(ANYPREC_SERVER, Args(image), log);
    if (server.started()) {
      ADD_FAILURE() << image << " was served";
      server.Terminate();
      continue;
    }
    EXPECT_NE(server.Wait(), 0);
    const std::string text = testing::Capture("cat " + log);
    EXPECT_NE(text.find(words), std::string::npos) << "the log does not name the damage: " << text;
  }
}

TEST_F(FaultTest, ClientsThatStopReadingDoNotStallOthers) {
  ServerProcess server(ANYPREC_SERVER, {"--model", testing::TinyStoriesImage(), "--max-running", "8"}, (dir_ / "server.log").string());
  ASSERT_TRUE(server.started());
  const auto channel = grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials());
  double alone = 0;
  EXPECT_EQ(Outcomes(loadtest::RunLoad(channel, ClosedLoop(4, 16, 64), &alone)), (std::map<std::string, long>{{"OK", 16}}));

  // Four streams that ask for long outputs and never read a message.
  const auto stub = server.Stub();
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<pb::GenerateResponse>>> stalled;
  for (int i = 0; i < 4; ++i) {
    pb::GenerateRequest request;
    request.set_text("Once upon a time");
    request.set_max_new_tokens(480);
    request.set_ignore_eos(true);
    request.set_return_logprobs(true);
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    stalled.push_back(stub->Generate(contexts.back().get(), request));
  }
  // The same load again, beside them: the engine loop shares its steps with the stalled
  // streams, so it may be slower, but not held up by them.
  double beside = 0;
  const auto records = loadtest::RunLoad(channel, ClosedLoop(4, 16, 64), &beside);
  EXPECT_EQ(Outcomes(records), (std::map<std::string, long>{{"OK", 16}}));
  EXPECT_LT(beside, 3 * alone + 2) << "alone " << alone << " s, beside clients that stopped reading " << beside << " s";

  for (auto& context : contexts) context->TryCancel();
  for (auto& reader : stalled) reader->Finish();
  EXPECT_TRUE(testing::ScrapeUntil(server, "anyprec_kv_cache_usage_ratio", 0, std::chrono::seconds(5)));
  EXPECT_EQ(server.Terminate(), 0);
}

}  // namespace
}  // namespace anyprec

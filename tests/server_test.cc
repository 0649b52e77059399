// anyprec-server as clients meet it: the real binary on a free loopback port, a real gRPC
// client, an image quantized from the real TinyStories-656K.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <sstream>
#include <thread>

#include "anyprec/v1/generation.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "quantizer/quantizer.h"
#include "tests/shared_data.h"

extern char** environ;

namespace anyprec {
namespace {

namespace fs = std::filesystem;
namespace pb = anyprec::v1;
using testing::SharedPath;

// The server binary, started with `args`, stopped with SIGTERM when the object dies.
class ServerProcess {
 public:
  explicit ServerProcess(const std::vector<std::string>& args) {
    int out[2];
    EXPECT_EQ(::pipe(out), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    std::vector<std::string> argv_storage = {ANYPREC_SERVER, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    EXPECT_EQ(posix_spawn(&pid_, ANYPREC_SERVER, &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    // The server prints "listening on HOST:PORT, metrics on HOST:PORT" once it serves.
    FILE* stream = ::fdopen(out[0], "r");
    char line[256] = {};
    if (std::fgets(line, sizeof(line), stream) != nullptr) {
      const std::string text(line);
      const size_t comma = text.find(", metrics on ");
      if (text.starts_with("listening on ") && comma != std::string::npos) {
        address_ = text.substr(13, comma - 13);
        metrics_address_ = text.substr(comma + 13, text.size() - comma - 14);
      }
    }
    std::fclose(stream);
    EXPECT_FALSE(address_.empty()) << "the server did not start";
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      Wait();
    }
  }
  // Sends SIGTERM and returns the exit status.
  int Terminate() {
    ::kill(pid_, SIGTERM);
    return Wait();
  }
  int Wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  const std::string& metrics_address() const { return metrics_address_; }
  std::unique_ptr<pb::Generation::Stub> Stub() const {
    return pb::Generation::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }

 private:
  pid_t pid_ = -1;
  std::string address_;
  std::string metrics_address_;
};

struct Result {
  grpc::Status status;
  std::vector<pb::GenerateResponse> messages;
  std::string text;
  std::vector<int> ids;
};

Result Generate(pb::Generation::Stub& stub, const pb::GenerateRequest& request) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = stub.Generate(&context, request);
  Result result;
  pb::GenerateResponse response;
  while (reader->Read(&response)) {
    for (const auto& t : response.tokens()) {
      result.text += t.text();
      result.ids.push_back(t.id());
    }
    result.messages.push_back(response);
  }
  result.status = reader->Finish();
  return result;
}

pb::GenerateRequest Greedy(const std::string& prompt, int bits, int max_new_tokens) {
  pb::GenerateRequest r;
  r.set_text(prompt);
  r.set_bits(bits);
  r.set_max_new_tokens(max_new_tokens);
  return r;
}

// Standard output of a shell command.
std::string Capture(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string out;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) out.append(buffer, n);
  ::pclose(pipe);
  return out;
}

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

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    image_ = (fs::temp_directory_path() / ("anyprec-server-test-" + std::to_string(::getpid()))).string();
    quant::ModelQuantizeOptions options;
    options.sensitivity = quant::Sensitivity::kNone;
    ASSERT_TRUE(quant::QuantizeModel(SharedPath("models/TinyStories-656K"), image_, options, [](const std::string&) {}).ok());
  }
  static void TearDownTestSuite() { fs::remove_all(image_); }
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
  expect_invalid(Greedy("hi", 9, 5), "bits 9");
  pb::GenerateRequest bad_sampling = Greedy("hi", 3, 5);
  bad_sampling.mutable_sampling()->set_temperature(-1);
  expect_invalid(bad_sampling, "temperature");
  bad_sampling = Greedy("hi", 3, 5);
  bad_sampling.mutable_sampling()->set_top_p(1.5f);
  expect_invalid(bad_sampling, "top_p");
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

TEST_F(ServerTest, SigtermFinishesInFlightRequestsAndExitsZero) {
  ServerProcess server({"--model", image_});
  auto in_flight = std::async(std::launch::async, [&server] {
    pb::GenerateRequest r = Greedy("Once upon a time", 8, 400);
    r.set_ignore_eos(true);
    return Generate(*server.Stub(), r);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const int exit_code = server.Terminate();
  const Result r = in_flight.get();
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.ids.size(), 400u);
  EXPECT_EQ(exit_code, 0);
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
    const std::string body = Capture("curl -sf 'http://" + api + "/api/v1/query?query=anyprec_generation_tokens_total'");
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

}  // namespace
}  // namespace anyprec

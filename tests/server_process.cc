#include "tests/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "grpcpp/grpcpp.h"

extern char** environ;

namespace anyprec::testing {

ServerProcess::ServerProcess(const std::string& binary, const std::vector<std::string>& args, const std::string& log_path) {
  int out[2];
  if (::pipe(out) != 0) return;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, out[0]);
  if (!log_path.empty()) {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  std::vector<std::string> argv_storage = {binary, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  // The server prints "listening on HOST:PORT, metrics on HOST:PORT[, http on HOST:PORT]" once
  // it serves.
  FILE* stream = ::fdopen(out[0], "r");
  char line[256] = {};
  if (pid_ > 0 && std::fgets(line, sizeof(line), stream) != nullptr) {
    std::string text(line);
    if (text.ends_with("\n")) text.pop_back();
    const size_t metrics = text.find(", metrics on ");
    const size_t http = text.find(", http on ");
    if (text.starts_with("listening on ") && metrics != std::string::npos) {
      address_ = text.substr(13, metrics - 13);
      metrics_address_ = text.substr(metrics + 13, http == std::string::npos ? std::string::npos : http - metrics - 13);
      if (http != std::string::npos) http_address_ = text.substr(http + 10);
    }
  }
  std::fclose(stream);
}

Result Generate(anyprec::v1::Generation::Stub& stub, const anyprec::v1::GenerateRequest& request, const std::string& api_key) {
  grpc::ClientContext context;
  if (!api_key.empty()) context.AddMetadata("authorization", "Bearer " + api_key);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto reader = stub.Generate(&context, request);
  Result result;
  anyprec::v1::GenerateResponse response;
  while (reader->Read(&response)) {
    for (const auto& t : response.tokens()) {
      result.text += t.text();
      result.ids.push_back(t.id());
    }
    result.text += response.text();
    result.messages.push_back(response);
  }
  result.status = reader->Finish();
  return result;
}

anyprec::v1::GenerateRequest Greedy(const std::string& prompt, int bits, int max_new_tokens) {
  anyprec::v1::GenerateRequest r;
  r.set_text(prompt);
  r.set_bits(bits);
  r.set_max_new_tokens(max_new_tokens);
  return r;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) Terminate();
}

void ServerProcess::Signal(int signal) const { ::kill(pid_, signal); }

int ServerProcess::Terminate() {
  ::kill(pid_, SIGTERM);
  return Wait();
}

int ServerProcess::Wait() {
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::unique_ptr<anyprec::v1::Generation::Stub> ServerProcess::Stub() const {
  return anyprec::v1::Generation::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
}

std::unique_ptr<anyprec::v1::Admin::Stub> ServerProcess::AdminStub() const {
  return anyprec::v1::Admin::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
}

std::string Capture(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string out;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) out.append(buffer, n);
  ::pclose(pipe);
  return out;
}

std::map<std::string, double> ScrapeAll(const ServerProcess& server) {
  std::istringstream text(Capture("curl -sf http://" + server.metrics_address() + "/metrics"));
  std::map<std::string, double> samples;
  for (std::string line; std::getline(text, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return samples;
}

double SumOf(const std::map<std::string, double>& metrics, const std::string& name) {
  double sum = 0;
  for (const auto& [series, value] : metrics) sum += series == name || series.starts_with(name + "{") ? value : 0;
  return sum;
}

double Scrape(const ServerProcess& server, const std::string& series) {
  for (const auto& [name, value] : ScrapeAll(server)) {
    if (name == series || name.starts_with(series + "{")) return value;
  }
  return -1;
}

bool ScrapeUntil(const ServerProcess& server, const std::string& series, double value, std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  do {
    if (Scrape(server, series) == value) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < end);
  return false;
}

std::string HashKey(const std::string& server_binary, const std::string& key) {
  return Capture("printf '%s' '" + key + "' | " + server_binary + " hash-key").substr(0, 64);
}

long ResidentBytes(pid_t pid) {
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

}  // namespace anyprec::testing

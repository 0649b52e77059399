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
  std::vector<std::string> argv_storage = {binary, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  // The server prints "listening on HOST:PORT, metrics on HOST:PORT" once it serves.
  FILE* stream = ::fdopen(out[0], "r");
  char line[256] = {};
  if (pid_ > 0 && std::fgets(line, sizeof(line), stream) != nullptr) {
    const std::string text(line);
    const size_t comma = text.find(", metrics on ");
    if (text.starts_with("listening on ") && comma != std::string::npos) {
      address_ = text.substr(13, comma - 13);
      metrics_address_ = text.substr(comma + 13, text.size() - comma - 14);
    }
  }
  std::fclose(stream);
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

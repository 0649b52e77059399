// anyprec-server as a child process on free loopback ports, for tests and benchmarks that
// talk to the real binary.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "anyprec/v1/admin.grpc.pb.h"
#include "anyprec/v1/generation.grpc.pb.h"

namespace anyprec::testing {

// Starts `binary` with `args` (after --listen/--metrics-listen/--http-listen on port 0, which
// `args` may override) and waits for its
// "listening on" line; stops it with SIGTERM when destroyed. Its log (stderr) goes to
// `log_path` when given.
class ServerProcess {
 public:
  ServerProcess(const std::string& binary, const std::vector<std::string>& args, const std::string& log_path = "");
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  bool started() const { return !address_.empty(); }
  pid_t pid() const { return pid_; }
  void Signal(int signal) const;
  // Sends SIGTERM and returns the exit status.
  int Terminate();
  // Waits for the process to end; its exit status, or -1 when a signal ended it.
  int Wait();

  const std::string& address() const { return address_; }
  const std::string& metrics_address() const { return metrics_address_; }
  // The OpenAI-compatible HTTP front's HOST:PORT; empty when it is off.
  const std::string& http_address() const { return http_address_; }
  std::unique_ptr<anyprec::v1::Generation::Stub> Stub() const;
  std::unique_ptr<anyprec::v1::Admin::Stub> AdminStub() const;

 private:
  pid_t pid_ = -1;
  std::string address_;
  std::string metrics_address_;
  std::string http_address_;
};

// One Generate call as a client saw it: every message, the text and ids they carried, and how
// the call ended.
struct Result {
  grpc::Status status;
  std::vector<anyprec::v1::GenerateResponse> messages;
  std::string text;
  std::vector<int> ids;
};
// Runs `request` to its end (deadline 60 s), as `api_key`'s tenant when one is given.
Result Generate(anyprec::v1::Generation::Stub& stub, const anyprec::v1::GenerateRequest& request, const std::string& api_key = "");
// A greedy request for `prompt` at `bits` (0: the default width).
anyprec::v1::GenerateRequest Greedy(const std::string& prompt, int bits, int max_new_tokens);

// The standard output of a shell command.
std::string Capture(const std::string& command);

// Every sample of the server's /metrics: "name{labels}" (as exposed) -> value.
std::map<std::string, double> ScrapeAll(const ServerProcess& server);
// The sum of every sample of the series `name` in `metrics`, whatever their labels.
double SumOf(const std::map<std::string, double>& metrics, const std::string& name);
// The first sample of `series` (a name, or a name with its labels' opening brace); -1 when absent.
double Scrape(const ServerProcess& server, const std::string& series);
// Polls `series` until it equals `value` or `timeout` passes; true when it did.
bool ScrapeUntil(const ServerProcess& server, const std::string& series, double value, std::chrono::milliseconds timeout);

// The SHA-256 the tenants file holds for `key`, as `anyprec-server hash-key` prints it.
std::string HashKey(const std::string& server_binary, const std::string& key);

// Resident memory of a process, in bytes (from /proc).
long ResidentBytes(pid_t pid);

}  // namespace anyprec::testing

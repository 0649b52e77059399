// anyprec-server as a child process on free loopback ports, for tests and benchmarks that
// talk to the real binary.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "anyprec/v1/admin.grpc.pb.h"
#include "anyprec/v1/generation.grpc.pb.h"

namespace anyprec::testing {

// Starts `binary` with `args` (after --listen/--metrics-listen on port 0) and waits for its
// "listening on" line; stops it with SIGTERM when destroyed. Its log (stderr) goes to
// `log_path` when given.
class ServerProcess {
 public:
  ServerProcess(const std::string& binary, const std::vector<std::string>& args, const std::string& log_path = "");
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  bool started() const { return !address_.empty(); }
  void Signal(int signal) const;
  // Sends SIGTERM and returns the exit status.
  int Terminate();
  // Waits for the process to end; its exit status, or -1 when a signal ended it.
  int Wait();

  const std::string& address() const { return address_; }
  const std::string& metrics_address() const { return metrics_address_; }
  std::unique_ptr<anyprec::v1::Generation::Stub> Stub() const;
  std::unique_ptr<anyprec::v1::Admin::Stub> AdminStub() const;

 private:
  pid_t pid_ = -1;
  std::string address_;
  std::string metrics_address_;
};

}  // namespace anyprec::testing

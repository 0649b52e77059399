// Watches the engine loop: when one step runs longer than a limit, the loop is taken to be
// stalled (a hung kernel, a deadlock) and the server reports NOT_SERVING until it moves on,
// so that load balancers and orchestrators route around it or restart it.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "server/scheduler.h"

namespace anyprec::server {

class Watchdog {
 public:
  // Polls `step_started` (when the running step began, or nullopt between steps) every
  // `poll`; calls `on_change(true)` once a step has run longer than `limit`, and
  // `on_change(false)` once steps move again.
  Watchdog(std::function<std::optional<Clock::time_point>()> step_started, Clock::duration limit, Clock::duration poll,
           std::function<void(bool stalled)> on_change);
  ~Watchdog();

 private:
  void Run();

  const std::function<std::optional<Clock::time_point>()> step_started_;
  const Clock::duration limit_;
  const Clock::duration poll_;
  const std::function<void(bool)> on_change_;
  std::mutex mutex_;
  std::condition_variable stop_;
  bool stopping_ = false;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace anyprec::server

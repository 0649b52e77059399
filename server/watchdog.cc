#include "server/watchdog.h"

namespace anyprec::server {

Watchdog::Watchdog(std::function<std::optional<Clock::time_point>()> step_started, Clock::duration limit, Clock::duration poll,
                   std::function<void(bool stalled)> on_change)
    : step_started_(std::move(step_started)), limit_(limit), poll_(poll), on_change_(std::move(on_change)) {
  thread_ = std::thread([this] { Run(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  stop_.notify_all();
  thread_.join();
}

void Watchdog::Run() {
  bool stalled = false;
  std::unique_lock lock(mutex_);
  while (!stop_.wait_for(lock, poll_, [this] { return stopping_; })) {
    const std::optional<Clock::time_point> started = step_started_();
    const bool now_stalled = started && Clock::now() - *started > limit_;
    if (now_stalled != stalled) {
      stalled = now_stalled;
      on_change_(stalled);
    }
  }
}

}  // namespace anyprec::server

// SPDX-License-Identifier: MIT
#include "interrupt_watch.h"

#include "dev_ioasid/caller_signals.h"

#include <spdlog/spdlog.h>

#include <signal.h>
#include <string.h>

#include <algorithm>
#include <string>

namespace ioasid::daemon {
namespace {

std::string signal_name(int signal) {
  const char* abbreviation = sigabbrev_np(signal);
  return abbreviation ? std::string("SIG") + abbreviation : "signal " + std::to_string(signal);
}

}  // namespace

InterruptWatch::~InterruptWatch() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

bool InterruptWatch::should_cancel(const Call& call, bool first_look) {
  const auto masks = dev_ioasid::read_signal_masks(call.caller_tid);
  if (!masks) {
    // Nothing to go by: do what an interrupt always did rather than hold a caller
    // that may be going away.
    spdlog::info("ctx {} tid {}: interrupted, and its signals cannot be read ({}): the call ends with EINTR",
                 call.context, call.caller_tid, masks.error().why);
    return true;
  }
  if (const auto signal = dev_ioasid::signal_ending_the_call(*masks)) {
    spdlog::info("ctx {} tid {}: {} pending{}: the call ends with EINTR", call.context, call.caller_tid,
                 signal_name(*signal), first_look ? "" : " (after an interrupt that did not end it)");
    return true;
  }
  if (first_look)
    spdlog::info("ctx {} tid {}: interrupted by no signal that runs a handler or ends it (a stop or a continue): "
                 "the call goes on",
                 call.context, call.caller_tid);
  return false;
}

void InterruptWatch::cancel(Call& call) {
  call.cancelled.store(true, std::memory_order_release);
  if (call.wake) call.wake();
}

void InterruptWatch::interrupted(Call& call) noexcept {
  try {
    if (should_cancel(call, /*first_look=*/true)) {
      cancel(call);
      return;
    }
    std::lock_guard lock(mutex_);
    if (!thread_.joinable()) thread_ = std::jthread([this](std::stop_token stop) { run(stop); });
    watched_.push_back(&call);
    changed_.notify_all();
  } catch (const std::exception& error) {
    // No thread to watch with (or no memory): end the call as before, never hang it.
    spdlog::warn("ctx {} tid {}: cannot watch the interrupted call ({}): it ends with EINTR", call.context,
                 call.caller_tid, error.what());
    cancel(call);
  }
}

void InterruptWatch::forget(Call& call) noexcept {
  std::lock_guard lock(mutex_);  // run() cancels only under it: after this, never again
  std::erase(watched_, &call);
}

void InterruptWatch::run(std::stop_token stop) {
  std::unique_lock lock(mutex_);
  while (!stop.stop_requested()) {
    if (watched_.empty()) {
      changed_.wait(lock, stop, [&] { return !watched_.empty(); });
      continue;
    }
    changed_.wait_for(lock, stop, kPeriod, [] { return false; });
    // Under the lock, so forget() cannot return while a Call is being looked at.
    // Reading a few /proc files takes microseconds; at most the session threads' count
    // of calls is watched.
    std::erase_if(watched_, [](Call* call) {
      if (!should_cancel(*call, /*first_look=*/false)) return false;
      cancel(*call);
      return true;
    });
  }
}

}  // namespace ioasid::daemon

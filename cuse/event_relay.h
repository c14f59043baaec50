// SPDX-License-Identifier: MIT
// Moves engine events off the ioctl threads and hands them to the daemon's outputs
// (netlink multicast, admin-socket event streams).
//
// Why a queue and a timer: the engine calls the event sink on the thread that served
// the ioctl, and the ioctl round trip must stay within 10% of a null server. So the
// sink does no syscall at all: it copies the Event into a mutex-protected vector
// (the lock is held for one push_back; the drain swaps the whole vector out, so
// contention is a few instructions long) and returns. Waking the io_context from
// there would cost an eventfd write per event, so nobody is woken: a steady_timer on
// the io_context drains the queue every kDrainPeriod instead.
//
// Latency bound: an event reaches the outputs at most kDrainPeriod (5 ms) after the
// sink queued it, plus the time the io_context needs to run the timer handler (its
// threads are shared with the front ends, so under heavy load add one handler's
// queueing delay). Outputs see events in sequence order, one call at a time.
//
// Memory bound: at most kMaxQueued events wait between two drains; more are dropped
// and counted (dropped()), and the drain logs how many were lost.
#pragma once

#include "engine/events.h"
#include "dev_ioasid/service.h"

#include <utility>  // before Boost.Asio: g++ 12 with -std=c++20 needs it
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace ioasid::daemon {

class EventRelay {
 public:
  // Receives each event with its wire form (engine::to_json, one line, no newline).
  // Runs on an io_context thread; must not block for long (no waiting on peers).
  using Output = std::function<void(const dev_ioasid::Event& event, const std::string& json)>;

  static constexpr std::chrono::milliseconds kDrainPeriod{5};
  static constexpr size_t kMaxQueued = 16384;

  EventRelay(boost::asio::io_context& io, dev_ioasid::Service& service);
  ~EventRelay();  // stops (and drains) if still running
  EventRelay(const EventRelay&) = delete;
  EventRelay& operator=(const EventRelay&) = delete;

  // May be called before or after start(), from any thread. An output added while
  // running sees events from the next drain on.
  void add_output(Output output);

  // Subscribes to the service and arms the drain timer. Idempotent.
  void start();
  // Unsubscribes, cancels the timer and hands what is still queued to the outputs on
  // the calling thread. Idempotent. Call it before the outputs' owners go away.
  void stop();
  // For shutdown, after the loop has stopped: the releases that follow queue every
  // context's last events with no drain until stop(), so none may be dropped.
  void keep_all_events();

  uint64_t relayed() const;  // events handed to the outputs so far
  uint64_t dropped() const;  // events lost because the queue was full

 private:
  struct Core;  // shared with the sink and the timer handler, so neither outlives it
  std::shared_ptr<Core> core_;
  dev_ioasid::Service& service_;
  dev_ioasid::EventSubscription subscription_;
};

}  // namespace ioasid::daemon

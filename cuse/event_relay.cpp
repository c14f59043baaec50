// SPDX-License-Identifier: MIT
#include "event_relay.h"

#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <exception>
#include <mutex>
#include <vector>

namespace ioasid::daemon {

namespace {
// Room kept in both buffers so a steady trickle of events never allocates in the
// sink (an allocation may end in brk/mmap, which is a syscall on the ioctl path).
constexpr size_t kReservedEvents = 1024;
}  // namespace

struct EventRelay::Core : std::enable_shared_from_this<Core> {
  explicit Core(boost::asio::io_context& io) : timer(io) {
    queue.reserve(kReservedEvents);
    draining.reserve(kReservedEvents);
  }

  // ---- the sink side: ioctl threads ----
  void enqueue(const dev_ioasid::Event& event) noexcept {
    std::lock_guard lock(queue_mutex);
    if (queue.size() >= kMaxQueued && !keep_all.load(std::memory_order_relaxed)) {
      ++lost_since_drain;
      return;
    }
    try {
      queue.push_back(event);
    } catch (...) {  // bad_alloc: losing an event beats failing the ioctl
      ++lost_since_drain;
    }
  }

  // ---- the timer side: io_context threads ----
  void arm() {  // control_mutex held
    timer.expires_after(kDrainPeriod);
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
      self->on_timer(error);
    });
  }

  void on_timer(const boost::system::error_code& error) {
    if (error == boost::asio::error::operation_aborted) return;
    drain(/*final=*/false);
    std::lock_guard lock(control_mutex);
    if (running) arm();
  }

  // Hands everything queued to the outputs. The final drain (stop) runs even though
  // running is false; a periodic drain that lost the race with stop() does nothing,
  // so no output is called once stop() has returned.
  void drain(bool final) {
    std::lock_guard serial(drain_mutex);
    if (!final && !running.load(std::memory_order_acquire)) return;
    uint64_t lost = 0;
    {
      std::lock_guard lock(queue_mutex);
      draining.swap(queue);
      lost = std::exchange(lost_since_drain, 0);
    }
    if (lost != 0) {
      dropped_total.fetch_add(lost, std::memory_order_relaxed);
      spdlog::warn("events: {} event(s) lost, more than {} queued within {} ms", lost,
                   kMaxQueued, kDrainPeriod.count());
    }
    if (draining.empty()) return;

    std::shared_ptr<const std::vector<Output>> current;
    {
      std::lock_guard lock(outputs_mutex);
      current = outputs;
    }
    for (const dev_ioasid::Event& event : draining) {
      const std::string json = engine::to_json(event);
      for (const Output& output : *current) {
        // An exception escaping a handler would end io_context::run for the daemon.
        try {
          output(event, json);
        } catch (const std::exception& e) {
          spdlog::error("events: an output failed on event {}: {}", event.seq, e.what());
        }
      }
    }
    relayed_total.fetch_add(draining.size(), std::memory_order_relaxed);
    draining.clear();  // keeps the capacity for the next swap
  }

  std::mutex queue_mutex;
  std::vector<dev_ioasid::Event> queue;  // filled by the sink
  uint64_t lost_since_drain = 0;   // under queue_mutex

  std::mutex drain_mutex;             // one drain at a time, in order
  std::vector<dev_ioasid::Event> draining;  // under drain_mutex

  std::mutex outputs_mutex;
  // Copied on write so a drain iterates a snapshot without holding the lock.
  std::shared_ptr<const std::vector<Output>> outputs = std::make_shared<std::vector<Output>>();

  std::mutex control_mutex;  // the timer is not thread-safe: every use is under it
  boost::asio::steady_timer timer;
  std::atomic<bool> running{false};
  std::atomic<bool> keep_all{false};  // shutting down: no drain until stop(), drop nothing

  std::atomic<uint64_t> relayed_total{0};
  std::atomic<uint64_t> dropped_total{0};
};

EventRelay::EventRelay(boost::asio::io_context& io, dev_ioasid::Service& service)
    : core_(std::make_shared<Core>(io)), service_(service) {}

EventRelay::~EventRelay() { stop(); }

void EventRelay::add_output(Output output) {
  std::lock_guard lock(core_->outputs_mutex);
  auto next = std::make_shared<std::vector<Output>>(*core_->outputs);
  next->push_back(std::move(output));
  core_->outputs = std::move(next);
}

void EventRelay::keep_all_events() { core_->keep_all = true; }

void EventRelay::start() {
  {
    std::lock_guard lock(core_->control_mutex);
    if (core_->running) return;
    core_->running = true;
    core_->arm();
  }
  // The sink holds the core, not this object: the bus may still call a sink that
  // was being unsubscribed while stop() ran.
  subscription_ = service_.subscribe(
      [core = core_](const dev_ioasid::Event& event) { core->enqueue(event); });
  spdlog::debug("events: relay started, drained every {} ms", kDrainPeriod.count());
}

void EventRelay::stop() {
  {
    std::lock_guard lock(core_->control_mutex);
    if (!core_->running) return;
    core_->running = false;
    core_->timer.cancel();
  }
  subscription_.reset();
  core_->drain(/*final=*/true);
  spdlog::debug("events: relay stopped after {} event(s), {} dropped", relayed(), dropped());
}

uint64_t EventRelay::relayed() const {
  return core_->relayed_total.load(std::memory_order_relaxed);
}

uint64_t EventRelay::dropped() const {
  return core_->dropped_total.load(std::memory_order_relaxed);
}

}  // namespace ioasid::daemon

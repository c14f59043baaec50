// SPDX-License-Identifier: MIT
// Where devices run their work: the daemon hands the engine its Asio pool; tests and
// tools without one use ThreadPoolExecutor. Work may run on any thread, in any order
// relative to other posts; a device that needs order keeps it itself.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace ioasid {

class Executor {
 public:
  virtual ~Executor() = default;
  virtual void post(std::function<void()> work) = 0;
  // Runs `work` once `delay` has passed (timeouts).
  virtual void post_after(std::chrono::milliseconds delay, std::function<void()> work) = 0;
};

// A fixed pool of threads and one timer thread. Destruction runs what was posted and
// drops timers not yet due.
class ThreadPoolExecutor final : public Executor {
 public:
  explicit ThreadPoolExecutor(size_t threads = 2) {
    for (size_t i = 0; i < threads; ++i) workers_.emplace_back([this](std::stop_token stop) { work(stop); });
    timer_ = std::jthread([this](std::stop_token stop) { fire_timers(stop); });
  }
  ~ThreadPoolExecutor() override {
    {
      std::lock_guard lock(timer_mutex_);  // so the timer thread cannot miss the wake-up
      timer_.request_stop();
    }
    timer_due_.notify_all();
    timer_.join();
    {
      std::lock_guard lock(mutex_);
      for (auto& worker : workers_) worker.request_stop();
    }
    posted_.notify_all();
    workers_.clear();  // joins, after the queue is empty
  }

  void post(std::function<void()> work) override {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(work));
    }
    posted_.notify_one();
  }

  void post_after(std::chrono::milliseconds delay, std::function<void()> work) override {
    {
      std::lock_guard lock(timer_mutex_);
      timers_.emplace(std::chrono::steady_clock::now() + delay, std::move(work));
    }
    timer_due_.notify_all();
  }

 private:
  void work(std::stop_token stop) {
    std::unique_lock lock(mutex_);
    for (;;) {
      posted_.wait(lock, [&] { return !queue_.empty() || stop.stop_requested(); });
      if (queue_.empty()) return;
      auto next = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      next();
      lock.lock();
    }
  }

  void fire_timers(std::stop_token stop) {
    std::unique_lock lock(timer_mutex_);
    while (!stop.stop_requested()) {
      if (timers_.empty()) {
        timer_due_.wait(lock, [&] { return !timers_.empty() || stop.stop_requested(); });
        continue;
      }
      auto first = timers_.begin();
      if (first->first > std::chrono::steady_clock::now()) {
        timer_due_.wait_until(lock, first->first);
        continue;
      }
      auto work = std::move(first->second);
      timers_.erase(first);
      post(std::move(work));
    }
  }

  std::mutex mutex_;
  std::condition_variable posted_;
  std::deque<std::function<void()>> queue_;
  std::mutex timer_mutex_;
  std::condition_variable timer_due_;
  std::multimap<std::chrono::steady_clock::time_point, std::function<void()>> timers_;
  std::jthread timer_;
  std::vector<std::jthread> workers_;
};

}  // namespace ioasid

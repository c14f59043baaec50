// SPDX-License-Identifier: MIT
// The threads that serve a libfuse session: each blocks in read() on the session
// fd and runs the request it got to completion, as libfuse's own multi-threaded
// loop does. No hand-off between threads on the ioctl path: a hop through a queue
// costs a wake-up, which is a large share of a ~14 us round trip.
#pragma once

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace ioasid::daemon {

class SessionThreads {
 public:
  // on_session_end runs once if the kernel ends the session (unmount, device gone).
  SessionThreads(fuse_session* session, unsigned count, std::function<void()> on_session_end);
  ~SessionThreads();
  SessionThreads(const SessionThreads&) = delete;
  SessionThreads& operator=(const SessionThreads&) = delete;

  // Called by a thread about to wait inside a request (a DMA waiting for a page
  // response): if no other thread is free to read the session, one more is started,
  // so the request that ends the wait can be served. Grows up to kMaxThreads.
  void ensure_free_reader();

  // Stops taking requests and joins every thread.
  void stop();

  static constexpr unsigned kMaxThreads = 64;

 private:
  struct Worker {
    std::thread thread;
    std::atomic<bool> done{false};
  };
  void serve(Worker& worker);
  bool start_worker_locked();  // false, logged, when no thread could be started

  fuse_session* session_;
  std::function<void()> on_session_end_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> ended_{false};
  std::mutex workers_mutex_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<unsigned> busy_{0};  // threads inside a request
};

}  // namespace ioasid::daemon

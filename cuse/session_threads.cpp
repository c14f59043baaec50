// SPDX-License-Identifier: MIT
#include "session_threads.h"

#include <spdlog/spdlog.h>

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <system_error>

namespace ioasid::daemon {
namespace {

// SIGUSR1 without SA_RESTART interrupts a worker's blocking read() on the session
// fd; closing the fd would not wake it.
constexpr int kWakeSignal = SIGUSR1;

void install_wake_handler() {
  struct sigaction action{};
  action.sa_handler = [](int) {};
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;
  sigaction(kWakeSignal, &action, nullptr);
}

// Workers leave SIGINT/SIGTERM to the Asio signal_set.
void block_termination_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

}  // namespace

SessionThreads::SessionThreads(fuse_session* session, unsigned count, std::function<void()> on_session_end)
    : session_(session), on_session_end_(std::move(on_session_end)) {
  install_wake_handler();
  std::lock_guard lock(workers_mutex_);
  for (unsigned i = 0; i < count; ++i) start_worker_locked();
}

bool SessionThreads::start_worker_locked() {
  auto worker = std::make_unique<Worker>();
  Worker& ref = *worker;
  workers_.push_back(std::move(worker));
  try {
    ref.thread = std::thread([this, &ref] { serve(ref); });
  } catch (const std::system_error& error) {
    // Out of threads, memory or memory maps (vm.max_map_count): the threads there are
    // keep serving; a daemon that ended here would take every client's state with it.
    workers_.pop_back();
    spdlog::error("cannot start session thread {}: {}; serving with {}", workers_.size() + 1, error.what(),
                  workers_.size());
    return false;
  }
  return true;
}

void SessionThreads::ensure_free_reader() {
  std::lock_guard lock(workers_mutex_);
  if (stopping_.load(std::memory_order_acquire)) return;
  // This thread is one of the busy ones; the others may all be waiting too.
  if (busy_.load(std::memory_order_acquire) < workers_.size()) return;
  if (workers_.size() >= kMaxThreads) {
    spdlog::warn("{} session threads are all busy: a new request waits for one (page responses time out)",
                 workers_.size());
    return;
  }
  if (start_worker_locked())
    spdlog::info("session thread {} started: the others are busy or waiting for page responses", workers_.size());
}

SessionThreads::~SessionThreads() { stop(); }

void SessionThreads::serve(Worker& worker) {
  block_termination_signals();
  fuse_buf buf{};
  while (!stopping_.load(std::memory_order_acquire)) {
    const int received = fuse_session_receive_buf(session_, &buf);
    if (received == -EINTR) continue;
    if (received <= 0) {
      if (!stopping_.load() && !ended_.exchange(true)) {
        spdlog::warn("the kernel ended the session ({})", received == 0 ? "EOF" : std::strerror(-received));
        if (on_session_end_) on_session_end_();
      }
      break;
    }
    busy_.fetch_add(1, std::memory_order_acq_rel);
    fuse_session_process_buf(session_, &buf);
    busy_.fetch_sub(1, std::memory_order_acq_rel);
  }
  std::free(buf.mem);
  worker.done.store(true, std::memory_order_release);
}

void SessionThreads::stop() {
  std::vector<std::unique_ptr<Worker>> workers;
  {
    std::lock_guard lock(workers_mutex_);
    if (stopping_.exchange(true)) return;
    workers.swap(workers_);
  }
  // A signal may land just before a worker enters read(); keep knocking until each has left.
  for (auto& worker : workers) {
    while (!worker->done.load(std::memory_order_acquire)) {
      pthread_kill(worker->thread.native_handle(), kWakeSignal);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    worker->thread.join();
  }
}

}  // namespace ioasid::daemon

// SPDX-License-Identifier: MIT
// The daemon's executor for device work (the dsa engine's work queues): a Boost.Asio
// thread pool of its own, so device work never waits behind the node's session
// threads or the admin loop, and still runs while the daemon releases its files at
// shutdown.
#pragma once

#include "base/executor.h"

#include <utility>  // before Asio: g++ 12 with -std=c++20

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include <memory>

namespace ioasid::daemon {

class AsioExecutor final : public Executor {
 public:
  explicit AsioExecutor(size_t threads) : pool_(threads) {}
  // Timers not yet due and work not yet started are dropped: destroy the Service
  // (whose engines drain into this pool) first.
  ~AsioExecutor() override {
    pool_.stop();
    pool_.join();
  }

  void post(std::function<void()> work) override { boost::asio::post(pool_, std::move(work)); }

  void post_after(std::chrono::milliseconds delay, std::function<void()> work) override {
    auto timer = std::make_shared<boost::asio::steady_timer>(pool_, delay);
    timer->async_wait([timer, work = std::move(work)](const boost::system::error_code& error) {
      if (!error) work();
    });
  }

 private:
  boost::asio::thread_pool pool_;
};

}  // namespace ioasid::daemon

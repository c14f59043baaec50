// SPDX-License-Identifier: MIT
// A reader-writer lock for data read on every DMA and changed rarely (the segment
// table). A reader touches one counter in a cache line shared with few other threads
// (threads are spread over shards) plus a read-mostly flag, so readers on different
// CPUs do not bounce one line between them as with std::shared_mutex. A writer
// announces itself, new readers step back, and it waits for the readers already
// inside to leave: writers cannot starve (glibc's rwlock prefers readers), and once
// lock() returns no reader is inside, which is what lets remove_segment promise that
// nothing touches a segment after it returns.
//
// Meets SharedMutex, so std::shared_lock / std::unique_lock work. Not recursive: a
// thread holding it shared must not take it again while a writer may be waiting.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>

namespace ioasid {

class ShardedSharedMutex {
 public:
  void lock_shared() {
    std::atomic<uint32_t>& readers = shards_[shard_of_this_thread()].readers;
    for (;;) {
      // seq_cst on both sides (here and in lock()): either the writer sees this
      // reader's count or this reader sees the writer's flag.
      readers.fetch_add(1, std::memory_order_seq_cst);
      if (!writer_inside_.load(std::memory_order_seq_cst)) [[likely]]
        return;
      leave(readers);  // step back: the writer may be waiting for this very count
      writer_inside_.wait(true, std::memory_order_seq_cst);
    }
  }
  void unlock_shared() { leave(shards_[shard_of_this_thread()].readers); }

  void lock();
  void unlock();

 private:
  static constexpr size_t kShards = 16;
  struct alignas(64) Shard {
    std::atomic<uint32_t> readers{0};  // futex-sized for wait/notify
  };

  void leave(std::atomic<uint32_t>& readers) {
    // The last reader out of a shard wakes a writer waiting for it.
    if (readers.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
        writer_inside_.load(std::memory_order_seq_cst)) [[unlikely]]
      readers.notify_all();
  }

  static size_t shard_of_this_thread() {
    static std::atomic<size_t> next_thread{0};
    thread_local const size_t shard = next_thread.fetch_add(1, std::memory_order_relaxed) % kShards;
    return shard;
  }

  std::array<Shard, kShards> shards_;
  alignas(64) std::atomic<bool> writer_inside_{false};
  std::mutex writers_;
};

}  // namespace ioasid

// SPDX-License-Identifier: MIT
#include "memory/sharded_shared_mutex.h"

namespace ioasid {

void ShardedSharedMutex::lock() {
  writers_.lock();
  writer_inside_.store(true, std::memory_order_seq_cst);
  // Readers inside finish one access each (a DMA copy at most): wait for every
  // shard to drain; the last reader out of a shard wakes us (unlock_shared).
  for (Shard& shard : shards_) {
    for (uint32_t inside = shard.readers.load(std::memory_order_seq_cst); inside != 0;
         inside = shard.readers.load(std::memory_order_seq_cst))
      shard.readers.wait(inside, std::memory_order_seq_cst);
  }
}

void ShardedSharedMutex::unlock() {
  writer_inside_.store(false, std::memory_order_release);
  writer_inside_.notify_all();
  writers_.unlock();
}

}  // namespace ioasid

// SPDX-License-Identifier: MIT
// Event counters bumped on hot paths by many threads (IOTLB and PASID-cache hits): one
// row of counters per thread on a cache line of its own, summed when read. The first
// kRows threads own a row each and bump it with a plain load and store (a locked
// add costs as much as the lookup it counts); later threads share rows with atomic adds.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ioasid {

template <size_t Counters>
class ShardedCounters {
 public:
  void add(size_t counter, uint64_t amount = 1) {
    const Slot slot = this_thread_slot();
    std::atomic<uint64_t>& value = rows_[slot.row].values[counter];
    if (slot.owned)
      value.store(value.load(std::memory_order_relaxed) + amount, std::memory_order_relaxed);
    else
      value.fetch_add(amount, std::memory_order_relaxed);
  }
  uint64_t total(size_t counter) const {
    uint64_t sum = 0;
    for (const auto& row : rows_) sum += row.values[counter].load(std::memory_order_relaxed);
    return sum;
  }

 private:
  static constexpr size_t kRows = 16;
  struct Slot {
    size_t row;
    bool owned;
  };
  static Slot this_thread_slot() {
    static std::atomic<size_t> next_thread{0};
    thread_local const size_t index = next_thread.fetch_add(1, std::memory_order_relaxed);
    return {index % kRows, index < kRows};
  }
  struct alignas(64) Row {
    std::array<std::atomic<uint64_t>, Counters> values{};
  };
  std::array<Row, kRows> rows_;
};

}  // namespace ioasid

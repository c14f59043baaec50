// SPDX-License-Identifier: MIT
// The daemon's page-table pages: zeroed 4 KiB pages, each with an HPA in a window of
// its own, [window_base, window_base + max_pages * 4 KiB).
//
// Walkers read these words on every IOTLB miss, so read64/write64/compare_exchange64
// take no lock: the HPA indexes a directory of 2 MiB slabs (slab = index / 512), a
// slab is never freed while the pool lives, and the words are real atomics
// (acquire loads, release stores: a table filled in and then linked into its parent
// is seen filled in by a walker that follows the link). A live-page bitmap per slab
// makes an HPA that is not a live table fail, even inside a slab.
//
// Memory: slabs are reserved, not committed (MAP_NORESERVE, no transparent huge
// pages), so a table costs its 4 KiB once touched; bookkeeping is one bit per page
// and 4 bytes per page on the free lists. Freed pages are zeroed at once and reused
// last-freed first. At most kResidentFreePages of them stay resident, for quick reuse:
// past that the older half goes back to the system (MADV_DONTNEED on the private
// mapping, a call per run of adjacent pages), so a daemon that once held many tables
// does not keep their memory. A released page keeps its place and HPA in its slab and
// reads as zeros; it is reused after the resident ones and before fresh ones.
//
// A walker reading a table that is being freed gets zeros or a failure, never a
// crash; not reading freed tables is the page-table code's job (flush, then free).
#pragma once

#include "base/result.h"
#include "memory/mapping.h"
#include "memory/physical_memory.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace ioasid {

class TablePool {
 public:
  static constexpr uint64_t kPagesPerSlab = 512;
  // Freed pages kept resident (2 MiB): enough that a map/unmap churn reuses warm pages
  // without a syscall, little beside a daemon's own few MiB.
  static constexpr uint64_t kResidentFreePages = 512;

  // max_pages: the limit (ENOMEM past it), at least 1.
  TablePool(Hpa window_base, uint64_t max_pages);
  TablePool(const TablePool&) = delete;
  TablePool& operator=(const TablePool&) = delete;
  ~TablePool();

  bool contains(Hpa hpa) const { return hpa - window_base_ < window_size_; }
  Hpa window_base() const { return window_base_; }
  uint64_t window_size() const { return window_size_; }

  // A zeroed page. ENOMEM at the limit.
  Result<Hpa> alloc();
  // Returns the page to the pool; an HPA that is not a live table is ignored and
  // counted (invalid_frees), since the interface gives free no way to fail.
  void free(Hpa table);

  // An aligned word of a live table page (EINVAL misaligned, EFAULT otherwise).
  Result<uint64_t> read64(Hpa hpa) const {
    uint64_t* word = live_word(hpa);
    if (word == nullptr) [[unlikely]]
      return not_a_table(hpa);
    return std::atomic_ref(*word).load(std::memory_order_acquire);
  }
  Result<void> write64(Hpa hpa, uint64_t value) {
    uint64_t* word = live_word(hpa);
    if (word == nullptr) [[unlikely]]
      return not_a_table(hpa);
    std::atomic_ref(*word).store(value, std::memory_order_release);
    return success();
  }
  Result<bool> compare_exchange64(Hpa hpa, uint64_t& expected, uint64_t desired) {
    uint64_t* word = live_word(hpa);
    if (word == nullptr) [[unlikely]]
      return not_a_table(hpa);
    return std::atomic_ref(*word).compare_exchange_strong(expected, desired,
                                                          std::memory_order_acq_rel);
  }

  uint64_t live_pages() const { return live_pages_.load(std::memory_order_relaxed); }
  uint64_t max_pages() const { return max_pages_; }
  uint64_t invalid_frees() const { return invalid_frees_.load(std::memory_order_relaxed); }
  // Freed pages given back to the system and not reused since.
  uint64_t released_pages() const {
    std::lock_guard lock(mutex_);
    return released_pages_.size();
  }

 private:
  struct Slab {
    Mapping memory;  // kPagesPerSlab pages
    std::array<std::atomic<uint64_t>, kPagesPerSlab / 64> live{};
  };

  // The word at `hpa` if it is an aligned word of a live page, else nullptr.
  uint64_t* live_word(Hpa hpa) const {
    const uint64_t offset = hpa - window_base_;
    if (offset >= window_size_ || (hpa & 7) != 0) return nullptr;
    const uint64_t index = offset >> kPageShift;
    const Slab* slab = slabs_[index / kPagesPerSlab].load(std::memory_order_acquire);
    if (slab == nullptr) return nullptr;
    const uint64_t in_slab = index % kPagesPerSlab;
    if (((slab->live[in_slab / 64].load(std::memory_order_relaxed) >> (in_slab % 64)) & 1) == 0)
      return nullptr;
    return reinterpret_cast<uint64_t*>(slab->memory.data() +
                                       (offset % (kPagesPerSlab * kPageSize)));
  }
  [[gnu::cold]] Error not_a_table(Hpa hpa) const;
  // Under mutex_: gives the older half of free_pages_ back to the system.
  void release_free_pages();

  const Hpa window_base_;
  const uint64_t max_pages_;
  const uint64_t window_size_;
  // One entry per possible slab; an entry, once set, never changes.
  std::unique_ptr<std::atomic<Slab*>[]> slabs_;

  mutable std::mutex mutex_;  // allocation state below
  std::vector<std::unique_ptr<Slab>> owned_slabs_;
  std::vector<uint32_t> free_pages_;      // resident page indices, oldest first, reused last first
  std::vector<uint32_t> released_pages_;  // given back to the system, reused when free_pages_ is empty
  uint64_t next_fresh_page_ = 0;      // pages below it have been handed out before
  std::atomic<uint64_t> live_pages_{0};
  std::atomic<uint64_t> invalid_frees_{0};
};

}  // namespace ioasid

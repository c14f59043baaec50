// SPDX-License-Identifier: MIT
#include "memory/table_pool.h"

#include "base/fail_nth.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>

namespace ioasid {
namespace {

// Indices live in 32 bits on the free list: up to 16 TiB of tables, far beyond need.
constexpr uint64_t kMaxPagesCap = 1ull << 32;

}  // namespace

TablePool::TablePool(Hpa window_base, uint64_t max_pages)
    : window_base_(window_base),
      max_pages_(std::clamp<uint64_t>(max_pages, 1, kMaxPagesCap)),
      window_size_(max_pages_ << kPageShift),
      slabs_(std::make_unique<std::atomic<Slab*>[]>((max_pages_ + kPagesPerSlab - 1) /
                                                    kPagesPerSlab)) {}

TablePool::~TablePool() = default;

Error TablePool::not_a_table(Hpa hpa) const {
  if ((hpa & 7) != 0) return fail(EINVAL, "misaligned 64-bit access at HPA {:#x}", hpa);
  return fail(EFAULT, "HPA {:#x} is not a live page-table page", hpa);
}

Result<Hpa> TablePool::alloc() {
  IOASID_TRY(fail_nth::point(fail_nth::Site::kTablePage, "a page-table page"));
  std::lock_guard lock(mutex_);
  const uint64_t live = live_pages_.load(std::memory_order_relaxed);
  if (live >= max_pages_)
    return fail(ENOMEM, "the page-table pool is full: {} pages ({} KiB) in use, the limit", live,
                (live * kPageSize) >> 10);
  uint64_t index;
  if (!free_pages_.empty()) {
    index = free_pages_.back();
    free_pages_.pop_back();
  } else if (!released_pages_.empty()) {  // zero again when touched: the kernel gives a fresh page
    index = released_pages_.back();
    released_pages_.pop_back();
  } else {
    // live < max_pages and every page below next_fresh_page_ is live or free: a fresh
    // page below the limit exists.
    index = next_fresh_page_++;
    const uint64_t slab_index = index / kPagesPerSlab;
    if (slabs_[slab_index].load(std::memory_order_relaxed) == nullptr) {
      auto memory = Mapping::anonymous(kPagesPerSlab * kPageSize);
      if (!memory) {
        --next_fresh_page_;
        Error error = std::move(memory).error();
        return fail(ENOMEM, "page-table pool: {}", error.why);
      }
      // One table touched must cost 4 KiB, not a 2 MiB huge page.
      ::madvise(memory->data(), memory->size(), MADV_NOHUGEPAGE);
      auto slab = std::make_unique<Slab>();
      slab->memory = std::move(*memory);
      slabs_[slab_index].store(slab.get(), std::memory_order_release);
      owned_slabs_.push_back(std::move(slab));
    }
  }
  // Fresh and released pages are zero (anonymous memory); freed ones were zeroed by free().
  Slab& slab = *slabs_[index / kPagesPerSlab].load(std::memory_order_relaxed);
  const uint64_t in_slab = index % kPagesPerSlab;
  slab.live[in_slab / 64].fetch_or(1ull << (in_slab % 64), std::memory_order_release);
  live_pages_.fetch_add(1, std::memory_order_relaxed);
  return window_base_ + (index << kPageShift);
}

void TablePool::free(Hpa table) {
  const uint64_t offset = table - window_base_;
  std::lock_guard lock(mutex_);
  Slab* slab = offset < window_size_ && offset % kPageSize == 0
                   ? slabs_[(offset >> kPageShift) / kPagesPerSlab].load(std::memory_order_relaxed)
                   : nullptr;
  const uint64_t index = offset >> kPageShift;
  const uint64_t in_slab = index % kPagesPerSlab;
  const uint64_t bit = 1ull << (in_slab % 64);
  if (slab == nullptr || (slab->live[in_slab / 64].load(std::memory_order_relaxed) & bit) == 0) {
    invalid_frees_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  slab->live[in_slab / 64].fetch_and(~bit, std::memory_order_relaxed);
  // Atomic stores: a stale walker may still be reading this page (see the header).
  auto* words = reinterpret_cast<uint64_t*>(slab->memory.data() + in_slab * kPageSize);
  for (size_t i = 0; i < kPageSize / sizeof(uint64_t); ++i)
    std::atomic_ref(words[i]).store(0, std::memory_order_relaxed);
  free_pages_.push_back(static_cast<uint32_t>(index));
  live_pages_.fetch_sub(1, std::memory_order_relaxed);
  if (free_pages_.size() > kResidentFreePages) release_free_pages();
}

void TablePool::release_free_pages() {
  // The older half: the recently freed ones are the likeliest to be reused soon. Sorted,
  // so that pages freed together (an IOASID's tables) go back in few calls.
  const auto released = free_pages_.begin() + static_cast<std::ptrdiff_t>(free_pages_.size() / 2);
  std::sort(free_pages_.begin(), released);
  for (auto run = free_pages_.begin(); run != released;) {
    auto end = run + 1;
    while (end != released && *end == *(end - 1) + 1 && *end % kPagesPerSlab != 0) ++end;  // one slab's mapping
    const Slab& slab = *slabs_[*run / kPagesPerSlab].load(std::memory_order_relaxed);
    std::byte* first = slab.memory.data() + (*run % kPagesPerSlab) * kPageSize;
    // A stale walker reading these pages meanwhile sees zeros either way. Should the
    // call fail, the pages merely stay resident: they are zeroed already.
    ::madvise(first, static_cast<size_t>(end - run) * kPageSize, MADV_DONTNEED);
    run = end;
  }
  released_pages_.insert(released_pages_.end(), free_pages_.begin(), released);
  free_pages_.erase(free_pages_.begin(), released);
}

}  // namespace ioasid

#include "memory/table_pool.h"

#include "base/fail_nth.h"

#include <sys/mman.h>

#include <algorithm>

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
  // Fresh pages are zero (anonymous memory); freed ones were zeroed by free().
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
}

}  // namespace ioasid

#include "iommu/iotlb.h"

#include <bit>
#include <thread>

namespace ioasid::iommu {
namespace {

// An entry is three words, so a reader copies it under the set's sequence counter.
// tag:   valid (63) | page shift (42:36) | domain (35:20) | PASID (19:0)
// page:  iova >> page shift
// value: page HPA | permissions (low bits; the HPA is page aligned)
constexpr uint64_t kValid = 1ull << 63;
constexpr int kShiftBit = 36;
constexpr int kDomainBit = 20;
constexpr uint64_t kPasidMask = (1ull << 20) - 1;
constexpr uint64_t kPermissionMask = 0x7;
constexpr uint8_t kPageShifts[] = {12, 21, 30};

enum Counter : size_t { kHits, kMisses, kFills, kEvictions, kInvalidated };

constexpr uint64_t make_tag(uint16_t domain, uint32_t pasid, uint8_t page_shift) {
  return kValid | (uint64_t{page_shift} << kShiftBit) | (uint64_t{domain} << kDomainBit) | (pasid & kPasidMask);
}
constexpr uint16_t tag_domain(uint64_t tag) { return static_cast<uint16_t>(tag >> kDomainBit); }
constexpr uint32_t tag_pasid(uint64_t tag) { return static_cast<uint32_t>(tag & kPasidMask); }
constexpr uint8_t tag_shift(uint64_t tag) { return static_cast<uint8_t>((tag >> kShiftBit) & 0x7f); }

uint64_t mix(uint64_t x) {
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ull;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dull;
  return x ^ (x >> 33);
}

bool overlaps(uint64_t page, uint8_t shift, uint64_t iova, uint64_t length) {
  const uint64_t first = page << shift;
  const uint64_t last = first + ((1ull << shift) - 1);
  const uint64_t range_last = length == 0 ? iova : iova + (length - 1);
  const uint64_t end = range_last < iova ? ~0ull : range_last;  // a range wrapping past 2^64 ends there
  return first <= end && iova <= last;
}

}  // namespace

struct alignas(64) Iotlb::Set {
  struct Way {
    std::atomic<uint64_t> tag{0};
    std::atomic<uint64_t> page{0};
    std::atomic<uint64_t> value{0};
  };
  std::atomic<uint32_t> sequence{0};  // odd while a writer changes the set
  std::atomic<bool> locked{false};
  uint8_t next_victim = 0;  // under the lock
  std::array<Way, kWays> ways;

  void lock() {
    while (locked.exchange(true, std::memory_order_acquire))
      while (locked.load(std::memory_order_relaxed)) std::this_thread::yield();
  }
  void unlock() { locked.store(false, std::memory_order_release); }

  // Runs change(way) for writers: readers see the set before or after, never between.
  template <typename Change>
  void write(Change change) {
    lock();
    const uint32_t before = sequence.load(std::memory_order_relaxed);
    sequence.store(before + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    change(*this);
    sequence.store(before + 2, std::memory_order_release);
    unlock();
  }
};

Iotlb::Iotlb(size_t capacity)
    : set_count_(std::bit_ceil(std::max<size_t>(1, (capacity + kWays - 1) / kWays))),
      sets_(std::make_unique<Set[]>(set_count_)) {}

Iotlb::~Iotlb() = default;

Iotlb::Set& Iotlb::set_for(uint16_t domain, uint32_t pasid, uint64_t page_number, uint8_t page_shift) const {
  const uint64_t key = page_number ^ (uint64_t{pasid} << 40) ^ (uint64_t{domain} << 24) ^ page_shift;
  return sets_[mix(key) & (set_count_ - 1)];
}

void Iotlb::count(size_t counter) const {
  counters_.add(counter);
}

std::optional<IotlbTranslation> Iotlb::lookup(uint16_t domain, uint32_t pasid, uint64_t iova, uint8_t required) {
  for (const uint8_t shift : kPageShifts) {
    const uint64_t page = iova >> shift;
    const uint64_t want = make_tag(domain, pasid, shift);
    Set& set = set_for(domain, pasid, page, shift);
    for (;;) {
      const uint32_t before = set.sequence.load(std::memory_order_acquire);
      if (before & 1) continue;  // a writer is in the set
      std::optional<uint64_t> found;
      for (const auto& way : set.ways) {
        if (way.tag.load(std::memory_order_relaxed) == want && way.page.load(std::memory_order_relaxed) == page) {
          found = way.value.load(std::memory_order_relaxed);
          break;
        }
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      if (set.sequence.load(std::memory_order_relaxed) != before) continue;
      if (!found || (*found & required) != required) break;
      count(kHits);
      const uint64_t offset = iova & ((1ull << shift) - 1);
      return IotlbTranslation{(*found & ~((1ull << shift) - 1)) + offset, shift,
                              static_cast<uint8_t>(*found & kPermissionMask)};
    }
  }
  count(kMisses);
  return std::nullopt;
}

void Iotlb::fill(uint16_t domain, uint32_t pasid, uint64_t iova, uint8_t page_shift, uint64_t page_hpa,
                 uint8_t permissions) {
  const uint64_t page = iova >> page_shift;
  const uint64_t tag = make_tag(domain, pasid, page_shift);
  for (size_t i = 0; i < std::size(kPageShifts); ++i)
    if (kPageShifts[i] == page_shift && !size_used_[i].load(std::memory_order_relaxed))
      size_used_[i].store(true, std::memory_order_seq_cst);
  const uint64_t value = (page_hpa & ~((1ull << page_shift) - 1)) | (permissions & kPermissionMask);
  bool evicted = false;
  set_for(domain, pasid, page, page_shift).write([&](Set& set) {
    Set::Way* target = nullptr;
    for (auto& way : set.ways) {
      const uint64_t current = way.tag.load(std::memory_order_relaxed);
      if (current == tag && way.page.load(std::memory_order_relaxed) == page) {
        target = &way;  // refresh in place
        break;
      }
      if (!target && !(current & kValid)) target = &way;
    }
    if (!target) {
      target = &set.ways[set.next_victim];
      set.next_victim = static_cast<uint8_t>((set.next_victim + 1) % kWays);
      evicted = true;
    }
    target->tag.store(tag, std::memory_order_relaxed);
    target->page.store(page, std::memory_order_relaxed);
    target->value.store(value, std::memory_order_relaxed);
  });
  count(kFills);
  if (evicted) count(kEvictions);
}

bool Iotlb::fill_if_current(uint64_t epoch, uint16_t domain, uint32_t pasid, uint64_t iova, uint8_t page_shift,
                            uint64_t page_hpa, uint8_t permissions) {
  if (epoch_.load(std::memory_order_seq_cst) != epoch) return false;
  fill(domain, pasid, iova, page_shift, page_hpa, permissions);
  // Pairs with the fence in invalidate_where(): either that scan sees the entry and
  // removes it, or this load sees its epoch and the entry is withdrawn here.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (epoch_.load(std::memory_order_relaxed) == epoch) return true;
  invalidate_range(domain, pasid, iova, 1);
  return false;
}

template <typename Match>
void Iotlb::invalidate_where(Match match) {
  epoch_.fetch_add(1, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  uint64_t removed = 0;
  for (size_t i = 0; i < set_count_; ++i) {
    Set& set = sets_[i];
    bool any = false;
    for (const auto& way : set.ways) {
      const uint64_t tag = way.tag.load(std::memory_order_relaxed);
      any = any || ((tag & kValid) && match(tag, way.page.load(std::memory_order_relaxed)));
    }
    if (!any) continue;  // a fill racing with this scan is the caller's ordering problem, as in hardware
    set.write([&](Set& locked) {
      for (auto& way : locked.ways) {
        const uint64_t tag = way.tag.load(std::memory_order_relaxed);
        if ((tag & kValid) && match(tag, way.page.load(std::memory_order_relaxed))) {
          way.tag.store(0, std::memory_order_relaxed);
          ++removed;
        }
      }
    });
  }
  if (removed) {
    counters_.add(kInvalidated, removed);
  }
}

void Iotlb::invalidate_all() {
  invalidate_where([](uint64_t, uint64_t) { return true; });
}

void Iotlb::invalidate_domain(uint16_t domain) {
  invalidate_where([domain](uint64_t tag, uint64_t) { return tag_domain(tag) == domain; });
}

void Iotlb::invalidate_pasid(uint16_t domain, uint32_t pasid) {
  invalidate_where([domain, pasid](uint64_t tag, uint64_t) {
    return tag_domain(tag) == domain && tag_pasid(tag) == (pasid & kPasidMask);
  });
}

void Iotlb::begin_invalidations() {
  epoch_.fetch_add(1, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

void Iotlb::invalidate_range(uint16_t domain, uint32_t pasid, uint64_t iova, uint64_t length, Epoch epoch) {
  // A small range (a guest's page invalidations) visits only the sets its pages hash
  // to, at each page size, instead of the whole IOTLB.
  constexpr uint64_t kProbedPages = 64;
  if (length != 0 && length <= kProbedPages * (1ull << kPageShifts[0]) && iova + (length - 1) >= iova) {
    if (epoch == Epoch::kBump) begin_invalidations();
    uint64_t removed = 0;
    const uint64_t last = iova + (length - 1);
    for (size_t size = 0; size < std::size(kPageShifts); ++size) {
      if (!size_used_[size].load(std::memory_order_relaxed)) continue;
      const uint8_t shift = kPageShifts[size];
      const uint64_t want = make_tag(domain, pasid, shift);
      for (uint64_t page = iova >> shift; page <= (last >> shift); ++page) {
        Set& candidate = set_for(domain, pasid, page, shift);
        // Unlocked look first: a fill racing with it is undone by the epoch (see
        // fill_if_current), so a set without the page needs no lock.
        bool present = false;
        for (const auto& way : candidate.ways)
          present = present || (way.tag.load(std::memory_order_relaxed) == want &&
                                way.page.load(std::memory_order_relaxed) == page);
        if (!present) continue;
        candidate.write([&](Set& set) {
          for (auto& way : set.ways) {
            if (way.tag.load(std::memory_order_relaxed) == want && way.page.load(std::memory_order_relaxed) == page) {
              way.tag.store(0, std::memory_order_relaxed);
              ++removed;
            }
          }
        });
      }
    }
    if (removed) counters_.add(kInvalidated, removed);
    return;
  }
  invalidate_where([=](uint64_t tag, uint64_t page) {
    return tag_domain(tag) == domain && tag_pasid(tag) == (pasid & kPasidMask) &&
           overlaps(page, tag_shift(tag), iova, length);
  });
}

void Iotlb::invalidate_domain_range(uint16_t domain, uint64_t iova, uint64_t length) {
  invalidate_where([=](uint64_t tag, uint64_t page) {
    return tag_domain(tag) == domain && overlaps(page, tag_shift(tag), iova, length);
  });
}

IotlbStats Iotlb::stats() const {
  return IotlbStats{counters_.total(kHits),      counters_.total(kMisses),      counters_.total(kFills),
                    counters_.total(kEvictions), counters_.total(kInvalidated), capacity()};
}

}  // namespace ioasid::iommu

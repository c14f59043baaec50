// SPDX-License-Identifier: MIT
#include "iommu/iotlb.h"

#include <algorithm>
#include <bit>
#include <thread>

namespace ioasid::iommu {
namespace {

// An entry is three words, so a reader copies it under the set's sequence counter.
// tag:   valid (63) | page shift (42:36) | domain (35:20) | PASID (19:0)
// page:  iova >> page shift of the entry's (first) page
// value: page HPA | (pages - 1) << 3 | permissions (the HPA is page aligned; a run
//        has at most 512 pages: 9 bits)
constexpr uint64_t kValid = 1ull << 63;
constexpr int kShiftBit = 36;
constexpr int kDomainBit = 20;
constexpr uint64_t kPasidMask = (1ull << 20) - 1;
constexpr uint64_t kPermissionMask = 0x7;
constexpr int kPagesBit = 3;
constexpr uint64_t kPagesMask = 0x1ffull << kPagesBit;
constexpr uint8_t kPageShifts[] = {12, 21, 30};
constexpr uint8_t kRunShift = 12;
constexpr size_t kRunKind = std::size(kPageShifts);  // kind_used_: after the page sizes
constexpr uint8_t kRunSalt = 0x80;  // run_set_for's hash key, unlike any page size's
constexpr int kLeafTableBits = 9;   // a run stays in one leaf table: 512 pages

enum Counter : size_t { kHits, kMisses, kFills, kEvictions, kInvalidated };

constexpr uint64_t make_tag(uint16_t domain, uint32_t pasid, uint8_t page_shift) {
  return kValid | (uint64_t{page_shift} << kShiftBit) | (uint64_t{domain} << kDomainBit) | (pasid & kPasidMask);
}
constexpr uint16_t tag_domain(uint64_t tag) { return static_cast<uint16_t>(tag >> kDomainBit); }
constexpr uint32_t tag_pasid(uint64_t tag) { return static_cast<uint32_t>(tag & kPasidMask); }
constexpr uint8_t tag_shift(uint64_t tag) { return static_cast<uint8_t>((tag >> kShiftBit) & 0x7f); }
constexpr uint64_t pages_of(uint64_t value) { return ((value & kPagesMask) >> kPagesBit) + 1; }
constexpr size_t kind_of(uint8_t page_shift) { return page_shift == 12 ? 0 : page_shift == 21 ? 1 : 2; }

uint64_t mix(uint64_t x) {
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ull;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dull;
  return x ^ (x >> 33);
}

// Whether an entry's pages [page, page + pages) of 2^shift bytes meet [iova, iova + length).
bool overlaps(uint64_t page, uint64_t pages, uint8_t shift, uint64_t iova, uint64_t length) {
  const uint64_t first = page << shift;
  const uint64_t last = first + ((pages << shift) - 1);
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

// Every run of a leaf table in one set: found from any of its pages.
Iotlb::Set& Iotlb::run_set_for(uint16_t domain, uint32_t pasid, uint64_t page_number) const {
  return set_for(domain, pasid, page_number >> kLeafTableBits, kRunSalt);
}

void Iotlb::count(size_t counter) const {
  counters_.add(counter);
}

std::optional<IotlbTranslation> Iotlb::lookup(uint16_t domain, uint32_t pasid, uint64_t iova, uint8_t required) {
  // The entry of `set` tagged for `shift` that covers iova's page and grants `required`.
  auto probe = [&](Set& set, uint8_t shift) -> std::optional<IotlbTranslation> {
    const uint64_t page = iova >> shift;
    const uint64_t want = make_tag(domain, pasid, shift);
    for (;;) {
      const uint32_t before = set.sequence.load(std::memory_order_acquire);
      if (before & 1) continue;  // a writer is in the set
      uint64_t first = 0;
      std::optional<uint64_t> found;
      for (const auto& way : set.ways) {
        if (way.tag.load(std::memory_order_relaxed) != want) continue;
        const uint64_t way_page = way.page.load(std::memory_order_relaxed);
        const uint64_t value = way.value.load(std::memory_order_relaxed);
        if (page - way_page < pages_of(value) && (value & required) == required) {
          first = way_page;
          found = value;
          break;
        }
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      if (set.sequence.load(std::memory_order_relaxed) != before) continue;
      if (!found) return std::nullopt;
      const uint64_t page_size = 1ull << shift;
      const uint64_t offset = iova & (page_size - 1);
      const uint64_t frame = (*found & ~(page_size - 1)) + ((page - first) << shift);
      return IotlbTranslation{frame + offset, shift, static_cast<uint8_t>(*found & kPermissionMask),
                              ((first + pages_of(*found) - page) << shift) - offset};
    }
  };
  std::optional<IotlbTranslation> hit;
  if (kind_used_[kRunKind].load(std::memory_order_relaxed))
    hit = probe(run_set_for(domain, pasid, iova >> kRunShift), kRunShift);
  for (const uint8_t shift : kPageShifts) {
    if (hit) break;
    if (kind_used_[kind_of(shift)].load(std::memory_order_relaxed))
      hit = probe(set_for(domain, pasid, iova >> shift, shift), shift);
  }
  count(hit ? kHits : kMisses);
  return hit;
}

void Iotlb::mark_used(size_t kind) {
  if (!kind_used_[kind].load(std::memory_order_relaxed)) kind_used_[kind].store(true, std::memory_order_seq_cst);
}

void Iotlb::store(Set& set, uint64_t tag, uint64_t page, uint64_t value) {
  bool evicted = false;
  set.write([&](Set& locked) {
    Set::Way* target = nullptr;
    for (auto& way : locked.ways) {
      const uint64_t current = way.tag.load(std::memory_order_relaxed);
      if (current == tag && way.page.load(std::memory_order_relaxed) == page) {
        target = &way;  // refresh in place
        break;
      }
      if (!target && !(current & kValid)) target = &way;
    }
    if (!target) {
      target = &locked.ways[locked.next_victim];
      locked.next_victim = static_cast<uint8_t>((locked.next_victim + 1) % kWays);
      evicted = true;
    }
    target->tag.store(tag, std::memory_order_relaxed);
    target->page.store(page, std::memory_order_relaxed);
    target->value.store(value, std::memory_order_relaxed);
  });
  count(kFills);
  if (evicted) count(kEvictions);
}

void Iotlb::fill(uint16_t domain, uint32_t pasid, uint64_t iova, uint8_t page_shift, uint64_t page_hpa,
                 uint8_t permissions, uint64_t pages) {
  const uint64_t page = iova >> page_shift;
  const uint64_t tag = make_tag(domain, pasid, page_shift);
  const uint64_t frame = page_hpa & ~((1ull << page_shift) - 1);
  const uint64_t rights = permissions & kPermissionMask;
  // A run never leaves its leaf table: range invalidations look for it only in the
  // run sets of the leaf tables they cover.
  const uint64_t table_pages = 1ull << kLeafTableBits;
  pages = std::clamp<uint64_t>(pages, 1, table_pages - (page & (table_pages - 1)));
  if (page_shift == kRunShift && pages >= kMinRunPages) {
    mark_used(kRunKind);
    store(run_set_for(domain, pasid, page), tag, page, frame | ((pages - 1) << kPagesBit) | rights);
    return;
  }
  mark_used(kind_of(page_shift));
  for (uint64_t i = 0; i < pages; ++i)
    store(set_for(domain, pasid, page + i, page_shift), tag, page + i, (frame + (i << page_shift)) | rights);
}

bool Iotlb::fill_if_current(uint64_t epoch, uint16_t domain, uint32_t pasid, uint64_t iova, uint8_t page_shift,
                            uint64_t page_hpa, uint8_t permissions, uint64_t pages) {
  if (epoch_.load(std::memory_order_seq_cst) != epoch) return false;
  fill(domain, pasid, iova, page_shift, page_hpa, permissions, pages);
  // Pairs with the fence in invalidate_where(): either that scan sees the entry and
  // removes it, or this load sees its epoch and the entry is withdrawn here.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (epoch_.load(std::memory_order_relaxed) == epoch) return true;
  const uint64_t page_size = 1ull << page_shift;
  invalidate_range(domain, pasid, iova & ~(page_size - 1), pages * page_size);
  return false;
}

// match(tag, first page, value) for each valid entry.
template <typename Match>
void Iotlb::invalidate_where(Match match) {
  epoch_.fetch_add(1, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  auto matches = [&](const Set::Way& way) {
    const uint64_t tag = way.tag.load(std::memory_order_relaxed);
    return (tag & kValid) &&
           match(tag, way.page.load(std::memory_order_relaxed), way.value.load(std::memory_order_relaxed));
  };
  uint64_t removed = 0;
  for (size_t i = 0; i < set_count_; ++i) {
    Set& set = sets_[i];
    if (std::none_of(set.ways.begin(), set.ways.end(), matches))
      continue;  // a fill racing with this scan is the caller's ordering problem, as in hardware
    set.write([&](Set& locked) {
      for (auto& way : locked.ways) {
        if (!matches(way)) continue;
        way.tag.store(0, std::memory_order_relaxed);
        ++removed;
      }
    });
  }
  if (removed) counters_.add(kInvalidated, removed);
}

void Iotlb::invalidate_all() {
  invalidate_where([](uint64_t, uint64_t, uint64_t) { return true; });
}

void Iotlb::invalidate_domain(uint16_t domain) {
  invalidate_where([domain](uint64_t tag, uint64_t, uint64_t) { return tag_domain(tag) == domain; });
}

void Iotlb::invalidate_pasid(uint16_t domain, uint32_t pasid) {
  invalidate_where([domain, pasid](uint64_t tag, uint64_t, uint64_t) {
    return tag_domain(tag) == domain && tag_pasid(tag) == (pasid & kPasidMask);
  });
}

void Iotlb::begin_invalidations() {
  epoch_.fetch_add(1, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

uint64_t Iotlb::remove_overlapping(Set& set, uint64_t want, uint64_t first, uint64_t last) {
  auto overlapping = [&](const Set::Way& way) {
    if (way.tag.load(std::memory_order_relaxed) != want) return false;
    const uint64_t page = way.page.load(std::memory_order_relaxed);
    return page <= last && page + pages_of(way.value.load(std::memory_order_relaxed)) > first;
  };
  // Unlocked look first: a fill racing with it is undone by the epoch (see
  // fill_if_current), so a set without the page needs no lock.
  if (std::none_of(set.ways.begin(), set.ways.end(), overlapping)) return 0;
  uint64_t removed = 0;
  set.write([&](Set& locked) {
    for (auto& way : locked.ways) {
      if (!overlapping(way)) continue;
      way.tag.store(0, std::memory_order_relaxed);
      ++removed;
    }
  });
  return removed;
}

void Iotlb::invalidate_range(uint16_t domain, uint32_t pasid, uint64_t iova, uint64_t length, Epoch epoch) {
  // A small range (a guest's page invalidations) visits only the sets its pages hash
  // to, at each page size, and the run sets of its leaf tables, instead of the whole
  // IOTLB.
  constexpr uint64_t kProbedPages = 64;
  if (length != 0 && length <= kProbedPages * (1ull << kPageShifts[0]) && iova + (length - 1) >= iova) {
    if (epoch == Epoch::kBump) begin_invalidations();
    uint64_t removed = 0;
    const uint64_t last = iova + (length - 1);
    for (const uint8_t shift : kPageShifts) {
      if (!kind_used_[kind_of(shift)].load(std::memory_order_relaxed)) continue;
      const uint64_t want = make_tag(domain, pasid, shift);
      for (uint64_t page = iova >> shift; page <= (last >> shift); ++page)
        removed += remove_overlapping(set_for(domain, pasid, page, shift), want, page, page);
    }
    if (kind_used_[kRunKind].load(std::memory_order_relaxed)) {
      const uint64_t first_page = iova >> kRunShift;
      const uint64_t last_page = last >> kRunShift;
      const uint64_t want = make_tag(domain, pasid, kRunShift);
      for (uint64_t table = first_page >> kLeafTableBits; table <= (last_page >> kLeafTableBits); ++table)
        removed += remove_overlapping(run_set_for(domain, pasid, table << kLeafTableBits), want,
                                      std::max(first_page, table << kLeafTableBits), last_page);
    }
    if (removed) counters_.add(kInvalidated, removed);
    return;
  }
  invalidate_where([=](uint64_t tag, uint64_t page, uint64_t value) {
    return tag_domain(tag) == domain && tag_pasid(tag) == (pasid & kPasidMask) &&
           overlaps(page, pages_of(value), tag_shift(tag), iova, length);
  });
}

void Iotlb::invalidate_domain_range(uint16_t domain, uint64_t iova, uint64_t length) {
  invalidate_where([=](uint64_t tag, uint64_t page, uint64_t value) {
    return tag_domain(tag) == domain && overlaps(page, pages_of(value), tag_shift(tag), iova, length);
  });
}

IotlbStats Iotlb::stats() const {
  return IotlbStats{counters_.total(kHits),      counters_.total(kMisses),      counters_.total(kFills),
                    counters_.total(kEvictions), counters_.total(kInvalidated), capacity()};
}

}  // namespace ioasid::iommu

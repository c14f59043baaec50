// SPDX-License-Identifier: MIT
#include "iommu/pasid_cache.h"

#include <bit>
#include <thread>

namespace ioasid::iommu {
namespace {

// key:  valid (63) | table (51:20) | PASID (19:0)
// info: ioasid (63:32) | domain (31:16) | type (15:8) | levels (7:0)
// nest: second-level domain (31:16) | first-level levels (15:8) | first-level flags (7:0)
constexpr uint64_t kValid = 1ull << 63;
constexpr uint64_t kPasidMask = (1ull << 20) - 1;

constexpr uint64_t make_key(uint32_t table, uint32_t pasid) {
  return kValid | (uint64_t{table} << 20) | (pasid & kPasidMask);
}
constexpr uint64_t pack(const PasidEntry& entry) {
  return (uint64_t{entry.ioasid} << 32) | (uint64_t{entry.domain} << 16) |
         (uint64_t{static_cast<uint8_t>(entry.type)} << 8) | entry.levels;
}
constexpr uint64_t pack_nest(const PasidEntry& entry) {
  return (uint64_t{entry.second_level_domain} << 16) | (uint64_t{entry.first_level_levels} << 8) |
         entry.first_level_flags;
}
constexpr PasidEntry unpack(uint64_t info, uint64_t root, uint64_t nest, uint64_t first_level_root) {
  return PasidEntry{.ioasid = static_cast<uint32_t>(info >> 32),
                    .domain = static_cast<uint16_t>(info >> 16),
                    .type = static_cast<TranslationType>((info >> 8) & 0xff),
                    .levels = static_cast<uint8_t>(info & 0xff),
                    .root = root,
                    .second_level_domain = static_cast<uint16_t>(nest >> 16),
                    .first_level_levels = static_cast<uint8_t>(nest >> 8),
                    .first_level_flags = static_cast<uint8_t>(nest),
                    .first_level_root = first_level_root};
}
constexpr uint16_t info_domain(uint64_t info) { return static_cast<uint16_t>(info >> 16); }

enum LookupCounter : size_t { kHits, kMisses };

}  // namespace

struct alignas(64) PasidCache::Slot {
  std::atomic<uint32_t> sequence{0};  // odd while a writer changes the slot
  std::atomic<bool> locked{false};
  std::atomic<uint64_t> key{0};
  std::atomic<uint64_t> info{0};
  std::atomic<uint64_t> root{0};
  std::atomic<uint64_t> nest{0};
  std::atomic<uint64_t> first_level_root{0};

  template <typename Change>
  void write(Change change) {
    while (locked.exchange(true, std::memory_order_acquire))
      while (locked.load(std::memory_order_relaxed)) std::this_thread::yield();
    const uint32_t before = sequence.load(std::memory_order_relaxed);
    sequence.store(before + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    change(*this);
    sequence.store(before + 2, std::memory_order_release);
    locked.store(false, std::memory_order_release);
  }
};

PasidCache::PasidCache(size_t capacity)
    : slot_count_(std::bit_ceil(std::max<size_t>(1, capacity))), slots_(std::make_unique<Slot[]>(slot_count_)) {}

PasidCache::~PasidCache() = default;

PasidCache::Slot& PasidCache::slot_for(uint32_t table, uint32_t pasid) const {
  uint64_t x = (uint64_t{table} << 20 | (pasid & kPasidMask)) * 0x9e3779b97f4a7c15ull;
  return slots_[(x >> 32) & (slot_count_ - 1)];
}

std::optional<PasidEntry> PasidCache::lookup(uint32_t table, uint32_t pasid) {
  const uint64_t want = make_key(table, pasid);
  Slot& slot = slot_for(table, pasid);
  for (;;) {
    const uint32_t before = slot.sequence.load(std::memory_order_acquire);
    if (before & 1) continue;
    const uint64_t key = slot.key.load(std::memory_order_relaxed);
    const uint64_t info = slot.info.load(std::memory_order_relaxed);
    const uint64_t root = slot.root.load(std::memory_order_relaxed);
    const uint64_t nest = slot.nest.load(std::memory_order_relaxed);
    const uint64_t first_level_root = slot.first_level_root.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (slot.sequence.load(std::memory_order_relaxed) != before) continue;
    if (key != want) break;
    count_lookup(true);
    return unpack(info, root, nest, first_level_root);
  }
  count_lookup(false);
  return std::nullopt;
}

void PasidCache::count_lookup(bool hit) { lookups_.add(hit ? kHits : kMisses); }

void PasidCache::fill(uint32_t table, uint32_t pasid, const PasidEntry& entry) {
  slot_for(table, pasid).write([&](Slot& slot) {
    slot.key.store(make_key(table, pasid), std::memory_order_relaxed);
    slot.info.store(pack(entry), std::memory_order_relaxed);
    slot.root.store(entry.root, std::memory_order_relaxed);
    slot.nest.store(pack_nest(entry), std::memory_order_relaxed);
    slot.first_level_root.store(entry.first_level_root, std::memory_order_relaxed);
  });
}

void PasidCache::invalidate(uint32_t table, uint32_t pasid) {
  const uint64_t key = make_key(table, pasid);
  Slot& slot = slot_for(table, pasid);
  slot.write([&](Slot& locked) {
    if (locked.key.load(std::memory_order_relaxed) != key) return;
    locked.key.store(0, std::memory_order_relaxed);
    invalidated_.fetch_add(1, std::memory_order_relaxed);
  });
}

template <typename Match>
void PasidCache::invalidate_where(Match match) {
  for (size_t i = 0; i < slot_count_; ++i) {
    slots_[i].write([&](Slot& slot) {
      const uint64_t key = slot.key.load(std::memory_order_relaxed);
      if (!(key & kValid) || !match(key, slot.info.load(std::memory_order_relaxed))) return;
      slot.key.store(0, std::memory_order_relaxed);
      invalidated_.fetch_add(1, std::memory_order_relaxed);
    });
  }
}

void PasidCache::invalidate_table(uint32_t table) {
  invalidate_where([table](uint64_t key, uint64_t) { return ((key >> 20) & 0xffffffffu) == table; });
}

void PasidCache::invalidate_domain(uint16_t domain) {
  invalidate_where([domain](uint64_t, uint64_t info) { return info_domain(info) == domain; });
}

void PasidCache::invalidate_all() {
  invalidate_where([](uint64_t, uint64_t) { return true; });
}

PasidCacheStats PasidCache::stats() const {
  return {lookups_.total(kHits), lookups_.total(kMisses), invalidated_.load(std::memory_order_relaxed), slot_count_};
}

}  // namespace ioasid::iommu

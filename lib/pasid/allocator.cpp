// SPDX-License-Identifier: MIT
// PASID allocator. Layout (see allocator.h for the contract):
//
// - Every PASID has a 32-byte Entry in a lazily allocated chunk of 1024; the chunk
//   directory is sized for the whole space up front and chunks are never freed while
//   the Allocator lives, so lock-free readers can always dereference what they load.
// - Entry::state packs lifecycle, reference count and owning set into one 64-bit
//   atomic, so find() validates with one load and get()/put() are CAS loops.
// - Free numbers are found in a hierarchical bitmap (a "full" summary per level).
// - Guest PASIDs (spid) are indexed by a lock-free-readable open-addressing table.
// - Set ids name a slot plus a generation, so set lookup is an index, not a hash.
// - One mutex serialises every mutation. Notifications are collected under it into an
//   Outbox and delivered once it is dropped; chains are immutable snapshots, so a
//   callback may re-enter the allocator in any way.
#include "pasid/allocator.h"

#include "base/fail_nth.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace ioasid {
namespace {

// PCIe carries at most 20 PASID bits; it also bounds the directory to 1024 chunks.
constexpr uint32_t kMaxPasidBits = 20;

// ---- Entry state word: [63..32] set id | [31..2] reference count | [1..0] lifecycle ----

enum Lifecycle : uint64_t { kUnallocated = 0, kLive = 1, kFreePending = 2 };
constexpr uint64_t kLifecycleMask = 3;
constexpr uint64_t kOneReference = 4;
constexpr uint32_t kMaxReferences = (1u << 30) - 1;

constexpr uint64_t pack_state(Lifecycle lifecycle, uint32_t references, SetId set) {
  return uint64_t{set} << 32 | uint64_t{references} << 2 | lifecycle;
}
constexpr Lifecycle lifecycle_of(uint64_t state) { return Lifecycle(state & kLifecycleMask); }
constexpr uint32_t references_of(uint64_t state) { return uint32_t(state >> 2) & kMaxReferences; }
constexpr SetId set_of(uint64_t state) { return SetId(state >> 32); }
constexpr uint64_t with_lifecycle(uint64_t state, Lifecycle lifecycle) {
  return (state & ~kLifecycleMask) | lifecycle;
}

// A guest PASID mapping as one word: set ids are never 0, so 0 means "no spid".
constexpr uint64_t spid_key(SetId set, uint32_t spid) { return uint64_t{set} << 32 | spid; }
constexpr std::optional<uint32_t> spid_of_key(uint64_t key) {
  return key ? std::optional<uint32_t>(uint32_t(key)) : std::nullopt;
}

struct Entry {
  std::atomic<uint64_t> state{0};
  // spid_key(set, spid) exactly while the mapping exists, which is only while the
  // PASID is live: stored after the state goes live, cleared before it leaves.
  std::atomic<uint64_t> spid_key{0};
  std::atomic<uintptr_t> private_data{0};
  Pasid prev_member = 0;  // the set's member list; guarded by the mutex
  Pasid next_member = 0;
};
static_assert(sizeof(Entry) == 32, "keeps a fully allocated space at 32 bytes per PASID");

constexpr uint32_t kChunkShift = 10;
constexpr uint32_t kChunkEntries = 1u << kChunkShift;
using Chunk = std::array<Entry, kChunkEntries>;

// Directory of chunks: find() is wait-free, ensure() runs under the mutex.
class EntryTable {
 public:
  explicit EntryTable(uint32_t capacity)
      : capacity_(capacity),
        directory_size_((capacity >> kChunkShift) + 1),
        directory_(std::make_unique<std::atomic<Chunk*>[]>(directory_size_)) {}

  // nullptr when the number is out of range or its chunk was never needed.
  Entry* find(Pasid pasid) const {
    if (pasid > capacity_) return nullptr;
    Chunk* chunk = directory_[pasid >> kChunkShift].load(std::memory_order_acquire);
    return chunk ? &(*chunk)[pasid & (kChunkEntries - 1)] : nullptr;
  }

  Entry& ensure(Pasid pasid) {
    auto& slot = directory_[pasid >> kChunkShift];
    Chunk* chunk = slot.load(std::memory_order_relaxed);
    if (!chunk) {
      chunk = chunks_.emplace_back(std::make_unique<Chunk>()).get();
      slot.store(chunk, std::memory_order_release);
    }
    return (*chunk)[pasid & (kChunkEntries - 1)];
  }

 private:
  const uint32_t capacity_;
  const size_t directory_size_;
  std::unique_ptr<std::atomic<Chunk*>[]> directory_;
  std::vector<std::unique_ptr<Chunk>> chunks_;  // owns what the directory points to
};

// Hierarchical bitmap of taken numbers. Level 0 has a bit per number; a bit of level
// k+1 is set when word i of level k is full. Finding the lowest free number at or
// after a position reads one word per level up and one per level down.
class TakenMap {
 public:
  // Numbers 0..size-1; padding bits past the end read as taken.
  explicit TakenMap(uint64_t size) {
    uint64_t bits = size;
    do {
      const uint64_t words = (bits + 63) / 64;
      auto& level = levels_.emplace_back(words, 0);
      if (bits % 64) level.back() = ~uint64_t{0} << (bits % 64);
      bits = words;
    } while (bits > 1);
    // A padding-only word could already be full one level down.
    for (size_t k = 0; k + 1 < levels_.size(); ++k)
      for (size_t w = 0; w < levels_[k].size(); ++w)
        if (levels_[k][w] == ~uint64_t{0}) levels_[k + 1][w / 64] |= uint64_t{1} << (w % 64);
  }

  void set(uint64_t index) {
    for (auto& level : levels_) {
      uint64_t& word = level[index / 64];
      word |= uint64_t{1} << (index % 64);
      if (word != ~uint64_t{0}) return;
      index /= 64;
    }
  }

  void clear(uint64_t index) {
    for (auto& level : levels_) {
      uint64_t& word = level[index / 64];
      const bool was_full = word == ~uint64_t{0};
      word &= ~(uint64_t{1} << (index % 64));
      if (!was_full) return;
      index /= 64;
    }
  }

  std::optional<uint32_t> first_clear(uint32_t from, uint32_t to) const {
    const auto found = first_clear_at(0, from);
    if (!found || *found > to) return std::nullopt;
    return uint32_t(*found);
  }

 private:
  std::optional<uint64_t> first_clear_at(size_t depth, uint64_t from) const {
    const auto& level = levels_[depth];
    uint64_t word = from / 64;
    if (word >= level.size()) return std::nullopt;
    uint64_t candidates = ~level[word] & (~uint64_t{0} << (from % 64));
    if (!candidates) {
      if (depth + 1 == levels_.size()) return std::nullopt;  // the top level is one word
      const auto next = first_clear_at(depth + 1, word + 1);
      if (!next) return std::nullopt;
      word = *next;
      candidates = ~level[word];
    }
    return word * 64 + std::countr_zero(candidates);
  }

  std::vector<std::vector<uint64_t>> levels_;
};

// Guest PASID index: linear probing over PASIDs, keyed by each entry's spid_key.
// Written under the mutex, read without it. A reader accepts a slot only if the
// entry's spid_key matches, so every hit is right; a deletion's backward shift can
// make a concurrent reader miss, and a miss is retried under the mutex. Outgrown
// tables stay alive for readers still probing them (their total is below the
// current table's size).
class SpidIndex {
 public:
  explicit SpidIndex(const EntryTable& entries) : entries_(entries) {}

  // 0 when not found. Exact under the mutex; without it only hits are definitive.
  Pasid lookup(uint64_t key) const {
    const Table* table = current_.load(std::memory_order_acquire);
    if (!table) return 0;
    for (uint32_t slot = home(*table, key);; slot = (slot + 1) & table->mask) {
      const Pasid pasid = table->slots[slot].load(std::memory_order_acquire);
      if (pasid == 0) return 0;
      if (key_of(pasid) == key) return pasid;
    }
  }

  void insert(uint64_t key, Pasid pasid) {
    if (!current_.load(std::memory_order_relaxed) || (size_ + 1) * 2 > capacity()) grow();
    Table& table = *tables_.back();
    uint32_t slot = home(table, key);
    while (table.slots[slot].load(std::memory_order_relaxed) != 0) slot = (slot + 1) & table.mask;
    table.slots[slot].store(pasid, std::memory_order_release);
    ++size_;
  }

  // The entry's spid_key must still hold `key`: slots are rehomed by their keys.
  void erase(uint64_t key, Pasid pasid) {
    Table& table = *tables_.back();
    uint32_t hole = home(table, key);
    while (table.slots[hole].load(std::memory_order_relaxed) != pasid)
      hole = (hole + 1) & table.mask;
    // Backward-shift deletion: pull later members of the probe run into the hole.
    for (uint32_t next = (hole + 1) & table.mask;; next = (next + 1) & table.mask) {
      const Pasid moved = table.slots[next].load(std::memory_order_relaxed);
      if (moved == 0) break;
      const uint32_t want = home(table, key_of(moved));
      const bool stays = hole <= next ? (hole < want && want <= next) : (hole < want || want <= next);
      if (stays) continue;
      table.slots[hole].store(moved, std::memory_order_release);
      hole = next;
    }
    table.slots[hole].store(0, std::memory_order_release);
    --size_;
  }

 private:
  struct Table {
    explicit Table(uint32_t size)
        : mask(size - 1), slots(std::make_unique<std::atomic<Pasid>[]>(size)) {}
    uint32_t mask;
    std::unique_ptr<std::atomic<Pasid>[]> slots;
  };

  static uint32_t home(const Table& table, uint64_t key) {
    key ^= key >> 33;  // murmur3's finaliser
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return uint32_t(key) & table.mask;
  }

  uint64_t key_of(Pasid pasid) const {
    const Entry* entry = entries_.find(pasid);
    return entry ? entry->spid_key.load(std::memory_order_acquire) : 0;
  }

  uint32_t capacity() const { return tables_.empty() ? 0 : tables_.back()->mask + 1; }

  void grow() {
    const uint32_t size = std::max<uint32_t>(64, capacity() * 2);
    auto& table = *tables_.emplace_back(std::make_unique<Table>(size));
    if (const Table* old = current_.load(std::memory_order_relaxed)) {
      for (uint32_t slot = 0; slot <= old->mask; ++slot) {
        const Pasid pasid = old->slots[slot].load(std::memory_order_relaxed);
        if (!pasid) continue;
        uint32_t target = home(table, key_of(pasid));
        while (table.slots[target].load(std::memory_order_relaxed)) target = (target + 1) & table.mask;
        table.slots[target].store(pasid, std::memory_order_relaxed);
      }
    }
    current_.store(&table, std::memory_order_release);
  }

  const EntryTable& entries_;
  std::atomic<const Table*> current_{nullptr};
  std::vector<std::unique_ptr<Table>> tables_;  // the current one is last
  uint32_t size_ = 0;
};

// ---- notifier chains ----

struct Subscriber {
  Subscriber(uint64_t id, int priority, NotifierCallback callback)
      : id(id), priority(priority), callback(std::move(callback)) {}
  const uint64_t id;
  const int priority;
  const NotifierCallback callback;
  // Cleared on unsubscribe so snapshots taken earlier stop calling it.
  std::atomic<bool> active{true};
};

// Sorted by priority (higher first), registration order within a priority. Never
// modified once published; nullptr stands for an empty chain.
using Chain = std::vector<std::shared_ptr<Subscriber>>;
using ChainSnapshot = std::shared_ptr<const Chain>;

ChainSnapshot with_subscriber(const ChainSnapshot& chain, std::shared_ptr<Subscriber> subscriber) {
  auto next = std::make_shared<Chain>(chain ? *chain : Chain{});
  const auto position = std::find_if(next->begin(), next->end(), [&](const auto& existing) {
    return existing->priority < subscriber->priority;
  });
  next->insert(position, std::move(subscriber));
  return next;
}

// nullptr when the subscriber was the last one.
ChainSnapshot without_subscriber(const ChainSnapshot& chain, uint64_t id) {
  auto next = std::make_shared<Chain>();
  for (const auto& subscriber : *chain) {
    if (subscriber->id == id) {
      subscriber->active.store(false, std::memory_order_release);
    } else {
      next->push_back(subscriber);
    }
  }
  return next->empty() ? nullptr : ChainSnapshot(std::move(next));
}

struct SetRecord {
  uint64_t token;
  SetType type;
  uint32_t quota;
  uint32_t allocated = 0;  // charged PASIDs, FREE_PENDING included
  uint32_t refcount = 1;   // the creator's
  // free_set ran or the last reference went: no new PASIDs, no new references; the
  // record lives on until its last PASID is reclaimed.
  bool released = false;
  Pasid first_member = 0;  // head of the intrusive member list
  ChainSnapshot subscribers = nullptr;
};

// Sets by id. An id is [31..20] generation | [19..0] slot. A slot's generation moves
// on (skipping 0, so no id is kAnySet) each time it is reused, so a stale id finds
// nothing; free slots are reused oldest first so generations wrap as late as possible.
class SetTable {
 public:
  SetRecord* find(SetId id) {
    const uint32_t slot = id & kSlotMask;
    if (slot >= slots_.size() || slots_[slot].generation != id >> kSlotBits) return nullptr;
    return slots_[slot].record.get();
  }
  const SetRecord* find(SetId id) const { return const_cast<SetTable&>(*this).find(id); }

  // nullopt when every slot is in use.
  std::optional<SetId> insert(SetRecord record) {
    uint32_t slot;
    if (!free_slots_.empty()) {
      slot = free_slots_.front();
      free_slots_.pop_front();
    } else if (slots_.size() <= kSlotMask) {
      slot = uint32_t(slots_.size());
      slots_.emplace_back();
    } else {
      return std::nullopt;
    }
    Slot& entry = slots_[slot];
    entry.generation = entry.generation % kMaxGeneration + 1;
    entry.record = std::make_unique<SetRecord>(std::move(record));
    return entry.generation << kSlotBits | slot;
  }

  void erase(SetId id) {
    const uint32_t slot = id & kSlotMask;
    slots_[slot].record.reset();
    free_slots_.push_back(slot);
  }

  // fn(SetId, const SetRecord&) for every set, in slot order.
  template <typename Fn>
  void for_each(Fn&& fn) const {
    for (uint32_t slot = 0; slot < slots_.size(); ++slot)
      if (const auto& entry = slots_[slot]; entry.record) fn(entry.generation << kSlotBits | slot, *entry.record);
  }

 private:
  static constexpr uint32_t kSlotBits = 20;
  static constexpr uint32_t kSlotMask = (1u << kSlotBits) - 1;
  static constexpr uint32_t kMaxGeneration = (1u << (32 - kSlotBits)) - 1;
  struct Slot {
    uint32_t generation = 0;
    std::unique_ptr<SetRecord> record;  // null while free; boxed so records never move
  };
  std::vector<Slot> slots_;
  std::deque<uint32_t> free_slots_;
};

PasidState public_state(uint64_t state) {
  if (lifecycle_of(state) == kFreePending) return PasidState::FreePending;
  return references_of(state) > 1 ? PasidState::Active : PasidState::Idle;
}

}  // namespace

struct Allocator::Impl {
  explicit Impl(uint32_t bits)
      : pasid_bits(std::clamp<uint32_t>(bits, 1, kMaxPasidBits)),
        capacity((1u << pasid_bits) - 1),
        entries(capacity),
        taken(uint64_t{capacity} + 1),
        spids(entries) {
    taken.set(0);  // reserved
  }

  // Work gathered under the mutex and done after it is dropped: declare the Outbox
  // before the lock so its destructor runs once the lock is released. Also holds
  // chains retired under the mutex so subscribers' callbacks (and whatever they
  // capture) are destroyed outside it.
  class Outbox {
   public:
    explicit Outbox(Impl& impl) : impl_(impl) {}
    Outbox(const Outbox&) = delete;
    Outbox& operator=(const Outbox&) = delete;
    ~Outbox() {
      for (const auto& announcement : announcements_) deliver(announcement);
      // Owners' references outlive their FREE announcements, so a PASID cannot be
      // reclaimed (and handed out again) before its FREE reached every subscriber.
      for (const Pasid pasid : owner_releases_) impl_.put(pasid);
    }

    void announce(Notification note, ChainSnapshot global, ChainSnapshot set) {
      announcements_.push_back({note, std::move(global), std::move(set)});
    }
    void release_owner_after(Pasid pasid) { owner_releases_.push_back(pasid); }
    void retire(ChainSnapshot chain) { retired_.push_back(std::move(chain)); }

   private:
    struct Announcement {
      Notification note;
      ChainSnapshot global;
      ChainSnapshot set;
    };
    static void deliver(const Announcement& announcement) noexcept {
      for (const ChainSnapshot* chain : {&announcement.global, &announcement.set}) {
        if (!*chain) continue;
        for (const auto& subscriber : **chain)
          if (subscriber->active.load(std::memory_order_acquire)) subscriber->callback(announcement.note);
      }
    }

    Impl& impl_;
    std::vector<ChainSnapshot> retired_;  // destroyed last
    std::vector<Announcement> announcements_;
    std::vector<Pasid> owner_releases_;
  };

  // ---- helpers; *_locked ones need the mutex ----

  Result<SetRecord*> open_set_locked(SetId id) {
    SetRecord* set = sets.find(id);
    if (!set || set->released) return fail(ENOENT, "no PASID set {}", id);
    return set;
  }

  // The live entry of `pasid` if `set` may use it (kAnySet may use any).
  Result<Entry*> live_entry(SetId set, Pasid pasid) const {
    Entry* entry = entries.find(pasid);
    const uint64_t state = entry ? entry->state.load(std::memory_order_acquire) : 0;
    if (lifecycle_of(state) != kLive) return fail(ENOENT, "PASID {} is not allocated", pasid);
    if (set != kAnySet && set_of(state) != set)
      return fail(EACCES, "PASID {} belongs to set {}, not {}", pasid, set_of(state), set);
    return entry;
  }

  bool has_subscribers(const SetRecord& set) const { return global_subscribers || set.subscribers; }

  void announce_locked(Outbox& outbox, PasidEvent event, Pasid pasid, const Entry& entry, SetId set_id,
                       const SetRecord& set) const {
    outbox.announce({.event = event,
                     .pasid = pasid,
                     .set = set_id,
                     .set_token = set.token,
                     .spid = spid_of_key(entry.spid_key.load(std::memory_order_relaxed)),
                     .private_data = entry.private_data.load(std::memory_order_relaxed)},
                    global_subscribers, set.subscribers);
  }

  void unmap_spid_locked(Pasid pasid, Entry& entry) {
    if (const uint64_t key = entry.spid_key.load(std::memory_order_relaxed)) {
      spids.erase(key, pasid);
      entry.spid_key.store(0, std::memory_order_release);
    }
  }

  // The owner's release of a live PASID: FREE_PENDING, FREE announced, the owner's
  // reference dropped (after the announcement when there is one).
  void begin_free_locked(Outbox& outbox, Pasid pasid, Entry& entry) {
    const SetId set_id = set_of(entry.state.load(std::memory_order_relaxed));
    const SetRecord& set = *sets.find(set_id);
    const bool announcing = has_subscribers(set);
    if (announcing) announce_locked(outbox, PasidEvent::Free, pasid, entry, set_id, set);
    unmap_spid_locked(pasid, entry);
    // Only lock-free get()/put() race with us, and they change just the count.
    uint64_t state = entry.state.load(std::memory_order_relaxed);
    while (!entry.state.compare_exchange_weak(state, with_lifecycle(state, kFreePending),
                                              std::memory_order_acq_rel)) {
    }
    if (announcing) {
      outbox.release_owner_after(pasid);
    } else {
      drop_reference_locked(outbox, pasid, entry);
    }
  }

  // Drops one reference; the last one of a FREE_PENDING PASID reclaims it. The
  // owner's reference of a live PASID is only dropped through free.
  bool drop_reference_locked(Outbox& outbox, Pasid pasid, Entry& entry) {
    uint64_t state = entry.state.load(std::memory_order_acquire);
    for (;;) {
      if (lifecycle_of(state) == kUnallocated) return false;
      if (references_of(state) == 1) {
        if (lifecycle_of(state) == kLive) return false;
        if (entry.state.compare_exchange_weak(state, pack_state(kUnallocated, 0, 0), std::memory_order_acq_rel)) {
          reclaim_locked(outbox, pasid, entry, set_of(state));
          return true;
        }
      } else if (entry.state.compare_exchange_weak(state, state - kOneReference, std::memory_order_acq_rel)) {
        return false;
      }
    }
  }

  void reclaim_locked(Outbox& outbox, Pasid pasid, Entry& entry, SetId set_id) {
    SetRecord& set = *sets.find(set_id);
    unlink_member_locked(set, entry);
    entry.private_data.store(0, std::memory_order_relaxed);
    taken.clear(pasid);
    --set.allocated;
    --charged;
    destroy_set_if_done_locked(outbox, set_id, set);
  }

  void link_member_locked(SetRecord& set, Pasid pasid, Entry& entry) {
    entry.prev_member = 0;
    entry.next_member = set.first_member;
    if (set.first_member) entries.find(set.first_member)->prev_member = pasid;
    set.first_member = pasid;
  }

  void unlink_member_locked(SetRecord& set, Entry& entry) {
    if (entry.prev_member) {
      entries.find(entry.prev_member)->next_member = entry.next_member;
    } else {
      set.first_member = entry.next_member;
    }
    if (entry.next_member) entries.find(entry.next_member)->prev_member = entry.prev_member;
    entry.prev_member = entry.next_member = 0;
  }

  // Stops new PASIDs and references and frees every live member.
  void release_set_locked(Outbox& outbox, SetId set_id, SetRecord& set) {
    set.released = true;
    if (const auto it = mm_sets.find(set.token); it != mm_sets.end() && it->second == set_id) mm_sets.erase(it);
    for (Pasid pasid = set.first_member; pasid;) {
      Entry& entry = *entries.find(pasid);
      const Pasid next = entry.next_member;  // begin_free_locked may reclaim and unlink
      if (lifecycle_of(entry.state.load(std::memory_order_relaxed)) == kLive) begin_free_locked(outbox, pasid, entry);
      pasid = next;
    }
  }

  // Drops a set reference; callers hold one, so the record survives until here.
  void put_set_locked(Outbox& outbox, SetId set_id, SetRecord& set) {
    if (set.refcount == 1 && !set.released) release_set_locked(outbox, set_id, set);
    --set.refcount;
    destroy_set_if_done_locked(outbox, set_id, set);
  }

  void destroy_set_if_done_locked(Outbox& outbox, SetId set_id, SetRecord& set) {
    if (set.refcount > 0 || set.allocated > 0) return;
    carved -= set.quota;
    if (set.subscribers) {
      for (const auto& subscriber : *set.subscribers) {
        subscriber->active.store(false, std::memory_order_release);
        subscriber_sets.erase(subscriber->id);
      }
      outbox.retire(std::move(set.subscribers));
    }
    sets.erase(set_id);
  }

  PasidInfo info_locked(Pasid pasid, const Entry& entry) const {
    const uint64_t state = entry.state.load(std::memory_order_relaxed);
    return {.pasid = pasid,
            .set = set_of(state),
            .state = public_state(state),
            .refcount = references_of(state),
            .spid = spid_of_key(entry.spid_key.load(std::memory_order_relaxed)),
            .private_data = entry.private_data.load(std::memory_order_relaxed)};
  }

  SetInfo set_info_locked(SetId id, const SetRecord& set) const {
    return {.id = id,
            .token = set.token,
            .type = set.type,
            .quota = set.quota,
            .allocated = set.allocated,
            .refcount = set.refcount};
  }

  // Takes a user reference without the mutex.
  Result<void> get(SetId set, Pasid pasid) {
    Entry* entry = entries.find(pasid);
    uint64_t state = entry ? entry->state.load(std::memory_order_acquire) : 0;
    for (;;) {
      if (lifecycle_of(state) != kLive) return fail(ENOENT, "PASID {} is not allocated", pasid);
      if (set != kAnySet && set_of(state) != set)
        return fail(EACCES, "PASID {} belongs to set {}, not {}", pasid, set_of(state), set);
      if (references_of(state) == kMaxReferences) return fail(EOVERFLOW, "PASID {} has too many users", pasid);
      if (entry->state.compare_exchange_weak(state, state + kOneReference, std::memory_order_acq_rel))
        return success();
    }
  }

  bool put(Pasid pasid) {
    Entry* entry = entries.find(pasid);
    if (!entry) return false;
    uint64_t state = entry->state.load(std::memory_order_acquire);
    for (;;) {
      if (lifecycle_of(state) == kUnallocated) return false;
      if (references_of(state) == 1) break;  // a last reference: decided under the mutex
      if (entry->state.compare_exchange_weak(state, state - kOneReference, std::memory_order_acq_rel))
        return false;
    }
    Outbox outbox(*this);
    std::lock_guard lock(mutex);
    return drop_reference_locked(outbox, pasid, *entry);
  }

  const uint32_t pasid_bits;
  const uint32_t capacity;

  mutable std::mutex mutex;
  EntryTable entries;  // read without the mutex
  TakenMap taken;
  SpidIndex spids;  // read without the mutex
  SetTable sets;
  std::unordered_map<uint64_t, SetId> mm_sets;  // token -> the one unreleased Mm set
  uint32_t carved = 0;   // sum of the sets' quotas
  uint32_t charged = 0;  // sum of the sets' allocated
  ChainSnapshot global_subscribers;
  std::unordered_map<uint64_t, SetId> subscriber_sets;  // subscription id -> set (kAnySet: global)
  uint64_t last_subscriber_id = 0;
};

// ---- Allocator ----

Allocator::Allocator(uint32_t pasid_bits) : impl_(std::make_unique<Impl>(pasid_bits)) {}
Allocator::~Allocator() = default;

uint32_t Allocator::pasid_bits() const { return impl_->pasid_bits; }
uint32_t Allocator::capacity() const { return impl_->capacity; }

uint32_t Allocator::allocated() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->charged;
}

uint32_t Allocator::quota_available() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->capacity - impl_->carved;
}

Result<SetId> Allocator::create_set(uint64_t token, SetType type, uint32_t quota) {
  if (quota == 0) return fail(EINVAL, "a PASID set needs a quota above 0");
  std::lock_guard lock(impl_->mutex);
  if (quota > impl_->capacity - impl_->carved)
    return fail(ENOSPC, "quota {} exceeds the {} PASIDs not yet carved into sets", quota,
                impl_->capacity - impl_->carved);
  if (type == SetType::Mm && impl_->mm_sets.contains(token))
    return fail(EEXIST, "address space {:#x} already has PASID set {}", token, impl_->mm_sets.at(token));
  IOASID_TRY(fail_nth::point(fail_nth::Site::kAllocation, "a PASID set"));
  const auto id = impl_->sets.insert({.token = token, .type = type, .quota = quota});
  if (!id) return fail(ENOSPC, "too many PASID sets");
  if (type == SetType::Mm) impl_->mm_sets.emplace(token, *id);
  impl_->carved += quota;
  return *id;
}

Result<SetId> Allocator::find_set(uint64_t token, SetType type) {
  std::lock_guard lock(impl_->mutex);
  switch (type) {
    case SetType::Null:
      return fail(EINVAL, "Null sets have no token to look up");
    case SetType::Mm:
      if (const auto it = impl_->mm_sets.find(token); it != impl_->mm_sets.end()) {
        ++impl_->sets.find(it->second)->refcount;
        return it->second;
      }
      break;
    case SetType::File: {
      std::optional<SetId> found;
      impl_->sets.for_each([&](SetId id, const SetRecord& set) {
        if (!found && set.type == SetType::File && set.token == token && !set.released) found = id;
      });
      if (found) {
        ++impl_->sets.find(*found)->refcount;
        return *found;
      }
      break;
    }
  }
  return fail(ENOENT, "no {} PASID set with token {:#x}", to_string(type), token);
}

Result<void> Allocator::get_set(SetId set) {
  std::lock_guard lock(impl_->mutex);
  auto record = impl_->open_set_locked(set);
  if (!record) return std::move(record).error();
  ++(*record)->refcount;
  return success();
}

void Allocator::put_set(SetId set_id) {
  Impl::Outbox outbox(*impl_);
  std::lock_guard lock(impl_->mutex);
  SetRecord* set = impl_->sets.find(set_id);
  if (!set || set->refcount == 0) return;
  impl_->put_set_locked(outbox, set_id, *set);
}

Result<void> Allocator::free_set(SetId set_id) {
  Impl::Outbox outbox(*impl_);
  std::lock_guard lock(impl_->mutex);
  auto set = impl_->open_set_locked(set_id);
  if (!set) return std::move(set).error();
  impl_->release_set_locked(outbox, set_id, **set);
  impl_->put_set_locked(outbox, set_id, **set);
  return success();
}

Result<void> Allocator::adjust_quota(SetId set_id, uint32_t quota) {
  std::lock_guard lock(impl_->mutex);
  auto found = impl_->open_set_locked(set_id);
  if (!found) return std::move(found).error();
  SetRecord& set = **found;
  if (quota < set.allocated)
    return fail(EINVAL, "quota {} is below the {} PASIDs set {} has charged", quota, set.allocated, set_id);
  const uint32_t uncarved = impl_->capacity - impl_->carved;
  if (quota > set.quota && quota - set.quota > uncarved)
    return fail(ENOSPC, "raising set {} to {} needs {} more PASIDs, {} are uncarved", set_id, quota,
                quota - set.quota, uncarved);
  impl_->carved = impl_->carved - set.quota + quota;
  set.quota = quota;
  return success();
}

Result<SetInfo> Allocator::set_info(SetId set_id) const {
  std::lock_guard lock(impl_->mutex);
  const SetRecord* set = impl_->sets.find(set_id);
  if (!set) return fail(ENOENT, "no PASID set {}", set_id);
  return impl_->set_info_locked(set_id, *set);
}

std::vector<SetInfo> Allocator::sets() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<SetInfo> out;
  impl_->sets.for_each([&](SetId id, const SetRecord& set) { out.push_back(impl_->set_info_locked(id, set)); });
  return out;
}

Result<void> Allocator::for_each(SetId set_id, const std::function<void(const PasidInfo&)>& fn) const {
  std::vector<PasidInfo> members;
  {
    std::lock_guard lock(impl_->mutex);
    const SetRecord* set = impl_->sets.find(set_id);
    if (!set) return fail(ENOENT, "no PASID set {}", set_id);
    members.reserve(set->allocated);
    for (Pasid pasid = set->first_member; pasid;) {
      const Entry& entry = *impl_->entries.find(pasid);
      members.push_back(impl_->info_locked(pasid, entry));
      pasid = entry.next_member;
    }
  }
  std::sort(members.begin(), members.end(), [](const PasidInfo& a, const PasidInfo& b) { return a.pasid < b.pasid; });
  for (const auto& member : members) fn(member);
  return success();
}

Result<Pasid> Allocator::alloc(SetId set_id, Pasid min, Pasid max, uintptr_t private_data,
                               std::optional<uint32_t> spid) {
  if (min == 0 || min > max || max > impl_->capacity)
    return fail(EINVAL, "PASID range [{}, {}] is not within [1, {}]", min, max, impl_->capacity);
  Impl::Outbox outbox(*impl_);
  std::lock_guard lock(impl_->mutex);
  auto found = impl_->open_set_locked(set_id);
  if (!found) return std::move(found).error();
  SetRecord& set = **found;
  if (set.allocated >= set.quota) return fail(ENOSPC, "set {} has used its quota of {}", set_id, set.quota);
  const uint64_t key = spid ? spid_key(set_id, *spid) : 0;
  if (key && impl_->spids.lookup(key))
    return fail(EEXIST, "guest PASID {} is already mapped in set {}", *spid, set_id);
  const auto free_number = impl_->taken.first_clear(min, max);
  if (!free_number) return fail(ENOSPC, "no free PASID in [{}, {}]", min, max);
  IOASID_TRY(fail_nth::point(fail_nth::Site::kAllocation, "a PASID"));

  const Pasid pasid = *free_number;
  Entry& entry = impl_->entries.ensure(pasid);
  entry.private_data.store(private_data, std::memory_order_relaxed);
  impl_->link_member_locked(set, pasid, entry);
  entry.state.store(pack_state(kLive, 1, set_id), std::memory_order_release);
  if (key) {
    entry.spid_key.store(key, std::memory_order_release);
    impl_->spids.insert(key, pasid);
  }
  impl_->taken.set(pasid);
  ++set.allocated;
  ++impl_->charged;
  if (impl_->has_subscribers(set)) impl_->announce_locked(outbox, PasidEvent::Alloc, pasid, entry, set_id, set);
  return pasid;
}

Result<void> Allocator::free(SetId set, Pasid pasid) {
  Impl::Outbox outbox(*impl_);
  std::lock_guard lock(impl_->mutex);
  auto entry = impl_->live_entry(set, pasid);
  if (!entry) return std::move(entry).error();
  impl_->begin_free_locked(outbox, pasid, **entry);
  return success();
}

Result<void> Allocator::get(SetId set, Pasid pasid) { return impl_->get(set, pasid); }

bool Allocator::put(Pasid pasid) { return impl_->put(pasid); }

Result<uintptr_t> Allocator::find(SetId set, Pasid pasid, PrivateGetter getter) const {
  const Entry* entry = impl_->entries.find(pasid);
  if (!entry) return fail(ENOENT, "PASID {} is not allocated", pasid);
  constexpr uint64_t kIdentity = ~(uint64_t{kMaxReferences} << 2);  // lifecycle and set, not the count
  uint64_t state = entry->state.load(std::memory_order_acquire);
  uintptr_t data;
  for (;;) {
    if (lifecycle_of(state) != kLive) return fail(ENOENT, "PASID {} is not allocated", pasid);
    if (set != kAnySet && set_of(state) != set)
      return fail(EACCES, "PASID {} belongs to set {}, not {}", pasid, set_of(state), set);
    data = entry->private_data.load(std::memory_order_acquire);
    // The data must belong to the life we validated: retry if it ended meanwhile.
    const uint64_t again = entry->state.load(std::memory_order_acquire);
    if ((again & kIdentity) == (state & kIdentity)) break;
    state = again;
  }
  if (getter && !getter(data)) return fail(ENOENT, "PASID {} was rejected by the getter", pasid);
  return data;
}

Result<PasidInfo> Allocator::info(Pasid pasid) const {
  std::lock_guard lock(impl_->mutex);
  const Entry* entry = impl_->entries.find(pasid);
  if (!entry || lifecycle_of(entry->state.load(std::memory_order_relaxed)) == kUnallocated)
    return fail(ENOENT, "PASID {} is not allocated", pasid);
  return impl_->info_locked(pasid, *entry);
}

Result<void> Allocator::attach_data(SetId set, Pasid pasid, uintptr_t private_data) {
  std::lock_guard lock(impl_->mutex);
  auto entry = impl_->live_entry(set, pasid);
  if (!entry) return std::move(entry).error();
  (*entry)->private_data.store(private_data, std::memory_order_release);
  return success();
}

Result<void> Allocator::detach_data(SetId set, Pasid pasid) { return attach_data(set, pasid, 0); }

Result<void> Allocator::attach_spid(SetId set, Pasid pasid, uint32_t spid) {
  if (set == kAnySet) return fail(EINVAL, "guest PASIDs are mapped per set; kAnySet has none");
  std::lock_guard lock(impl_->mutex);
  auto entry = impl_->live_entry(set, pasid);
  if (!entry) return std::move(entry).error();
  if (const auto existing = spid_of_key((*entry)->spid_key.load(std::memory_order_relaxed)))
    return fail(EEXIST, "PASID {} already has guest PASID {}", pasid, *existing);
  const uint64_t key = spid_key(set, spid);
  if (const Pasid other = impl_->spids.lookup(key))
    return fail(EEXIST, "guest PASID {} is already mapped to PASID {} in set {}", spid, other, set);
  (*entry)->spid_key.store(key, std::memory_order_release);
  impl_->spids.insert(key, pasid);
  return success();
}

Result<void> Allocator::detach_spid(SetId set, Pasid pasid) {
  if (set == kAnySet) return fail(EINVAL, "guest PASIDs are mapped per set; kAnySet has none");
  std::lock_guard lock(impl_->mutex);
  auto entry = impl_->live_entry(set, pasid);
  if (!entry) return std::move(entry).error();
  if (!(*entry)->spid_key.load(std::memory_order_relaxed)) return fail(ENOENT, "PASID {} has no guest PASID", pasid);
  impl_->unmap_spid_locked(pasid, **entry);
  return success();
}

Result<Pasid> Allocator::find_by_spid(SetId set, uint32_t spid, bool take_reference) {
  if (set == kAnySet) return fail(EINVAL, "guest PASIDs are mapped per set; kAnySet has none");
  const uint64_t key = spid_key(set, spid);
  // Fast path: a hit is verified by the entry's key, which is only set while live.
  if (const Pasid pasid = impl_->spids.lookup(key)) {
    if (!take_reference) return pasid;
    if (impl_->get(set, pasid)) {
      const Entry& entry = *impl_->entries.find(pasid);
      if (entry.spid_key.load(std::memory_order_acquire) == key) return pasid;
      impl_->put(pasid);  // remapped while we took it; decide under the mutex
    }
  }
  std::lock_guard lock(impl_->mutex);
  const Pasid pasid = impl_->spids.lookup(key);
  if (!pasid) return fail(ENOENT, "no guest PASID {} in set {}", spid, set);
  if (take_reference) IOASID_TRY(impl_->get(set, pasid));
  return pasid;
}

Subscription Allocator::subscribe(NotifierCallback callback, int priority) {
  Impl::Outbox outbox(*impl_);
  std::lock_guard lock(impl_->mutex);
  const uint64_t id = ++impl_->last_subscriber_id;
  auto chain = with_subscriber(impl_->global_subscribers,
                               std::make_shared<Subscriber>(id, priority, std::move(callback)));
  outbox.retire(std::exchange(impl_->global_subscribers, std::move(chain)));
  impl_->subscriber_sets.emplace(id, kAnySet);
  return Subscription(this, id);
}

Result<Subscription> Allocator::subscribe(SetId set_id, NotifierCallback callback, int priority) {
  Impl::Outbox outbox(*impl_);
  std::lock_guard lock(impl_->mutex);
  auto set = impl_->open_set_locked(set_id);
  if (!set) return std::move(set).error();
  const uint64_t id = ++impl_->last_subscriber_id;
  auto chain = with_subscriber((*set)->subscribers, std::make_shared<Subscriber>(id, priority, std::move(callback)));
  outbox.retire(std::exchange((*set)->subscribers, std::move(chain)));
  impl_->subscriber_sets.emplace(id, set_id);
  return Subscription(this, id);
}

void Allocator::unsubscribe(uint64_t id) {
  Impl::Outbox outbox(*impl_);
  std::lock_guard lock(impl_->mutex);
  const auto it = impl_->subscriber_sets.find(id);
  if (it == impl_->subscriber_sets.end()) return;  // its set is gone, and the chain with it
  ChainSnapshot& chain = it->second == kAnySet ? impl_->global_subscribers : impl_->sets.find(it->second)->subscribers;
  outbox.retire(std::exchange(chain, without_subscriber(chain, id)));
  impl_->subscriber_sets.erase(it);
}

Result<void> Allocator::notify(Pasid pasid, PasidEvent event) {
  if (event != PasidEvent::Bind && event != PasidEvent::Unbind)
    return fail(EINVAL, "only BIND and UNBIND may be announced, not {}", to_string(event));
  Impl::Outbox outbox(*impl_);
  std::lock_guard lock(impl_->mutex);
  const Entry* entry = impl_->entries.find(pasid);
  const uint64_t state = entry ? entry->state.load(std::memory_order_relaxed) : 0;
  // Teardown after FREE may still unbind; nothing binds a PASID that is going away.
  const bool announceable =
      lifecycle_of(state) == kLive || (lifecycle_of(state) == kFreePending && event == PasidEvent::Unbind);
  if (!announceable) return fail(ENOENT, "PASID {} is not allocated", pasid);
  const SetRecord& set = *impl_->sets.find(set_of(state));
  if (impl_->has_subscribers(set)) impl_->announce_locked(outbox, event, pasid, *entry, set_of(state), set);
  return success();
}

const char* to_string(PasidState state) {
  switch (state) {
    case PasidState::Idle: return "idle";
    case PasidState::Active: return "active";
    case PasidState::FreePending: return "free_pending";
  }
  return "unknown";
}

const char* to_string(PasidEvent event) {
  switch (event) {
    case PasidEvent::Alloc: return "alloc";
    case PasidEvent::Free: return "free";
    case PasidEvent::Bind: return "bind";
    case PasidEvent::Unbind: return "unbind";
  }
  return "unknown";
}

const char* to_string(SetType type) {
  switch (type) {
    case SetType::Null: return "null";
    case SetType::Mm: return "mm";
    case SetType::File: return "file";
  }
  return "unknown";
}

}  // namespace ioasid

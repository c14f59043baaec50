// SPDX-License-Identifier: MIT
// The system-wide PASID (IOASID) space: the IOASID extensions of the Linux 2020-21
// series, complete. PASIDs belong to sets; a set has a token, a type and a quota
// carved out of the capacity. Every PASID is reference counted:
//
//   alloc -> 1 (IDLE); get -> n+1 (ACTIVE while users hold it); free by the owner
//   -> FREE_PENDING, FREE is announced and the owner's reference dropped; the last
//   put reclaims the number, which a later alloc may hand out again.
//
// find() and find_by_spid()'s fast path are lock-free; every mutation takes one
// mutex; notifier callbacks run after that mutex is dropped, so a callback may call
// back into the allocator (free, put, subscribe, unsubscribe) without deadlock.
#pragma once

#include "base/result.h"
#include "base/subscription.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace ioasid {

using Pasid = uint32_t;
using SetId = uint32_t;

inline constexpr uint32_t kDefaultPasidBits = 20;
inline constexpr SetId kAnySet = 0;  // find() across all sets; never a real set id

enum class SetType : uint8_t {
  Null,  // no token semantics
  Mm,    // token is an address space; at most one set per token
  File,  // token is an open file (a daemon Context id)
};

enum class PasidState : uint8_t {
  Idle,         // allocated, only the owner's reference
  Active,       // allocated, users hold references (get)
  FreePending,  // freed by the owner, waiting for the last put
};

enum class PasidEvent : uint8_t { Alloc, Free, Bind, Unbind };

struct Notification {
  PasidEvent event;
  Pasid pasid;
  SetId set;
  uint64_t set_token;
  std::optional<uint32_t> spid;  // the guest PASID mapped to it, if any
  uintptr_t private_data;
};

using NotifierCallback = std::function<void(const Notification&)>;

struct SetInfo {
  SetId id;
  uint64_t token;
  SetType type;
  uint32_t quota;
  uint32_t allocated;  // PASIDs charged to the set, including FREE_PENDING ones
  uint32_t refcount;
};

struct PasidInfo {
  Pasid pasid;
  SetId set;
  PasidState state;
  uint32_t refcount;
  std::optional<uint32_t> spid;
  uintptr_t private_data;
};

// Validates private data inside find(); a false return makes find answer ENOENT.
using PrivateGetter = bool (*)(uintptr_t private_data);

class Allocator;

// Keeps a notifier registered; unregisters on destruction (also from inside a callback).
using Subscription = ScopedSubscription<Allocator>;

class Allocator {
 public:
  // capacity: how many PASIDs exist, 1..2^pasid_bits-1 usable (0 is reserved).
  explicit Allocator(uint32_t pasid_bits = kDefaultPasidBits);
  ~Allocator();
  Allocator(const Allocator&) = delete;
  Allocator& operator=(const Allocator&) = delete;

  uint32_t pasid_bits() const;
  uint32_t capacity() const;         // usable PASIDs: 2^pasid_bits - 1
  uint32_t allocated() const;        // charged PASIDs over all sets
  uint32_t quota_available() const;  // capacity not yet carved into sets

  // ---- sets ----
  // quota is carved from the capacity: ENOSPC if not enough is left, EINVAL if 0.
  // Mm sets are unique per token: EEXIST for a second one (use find_set).
  Result<SetId> create_set(uint64_t token, SetType type, uint32_t quota);
  // Takes a reference on the Mm/File set with this token: ENOENT if none.
  Result<SetId> find_set(uint64_t token, SetType type);
  Result<void> get_set(SetId set);
  // Drops a reference; the set is destroyed (quota returned) at zero, which
  // requires every PASID of it reclaimed (free_set does that).
  void put_set(SetId set);
  // Frees every PASID in the set (each announced FREE once) and drops the
  // creator's reference.
  Result<void> free_set(SetId set);
  // EINVAL below what the set has charged, ENOSPC beyond the uncarved capacity.
  Result<void> adjust_quota(SetId set, uint32_t quota);
  Result<SetInfo> set_info(SetId set) const;
  std::vector<SetInfo> sets() const;
  // Calls fn for each PASID charged to the set (snapshot taken under the lock,
  // fn called after it is dropped).
  Result<void> for_each(SetId set, const std::function<void(const PasidInfo&)>& fn) const;

  // ---- PASIDs ----
  // A free PASID in [min, max] (inclusive, lowest first). EINVAL for min 0,
  // min > max or max beyond capacity; ENOSPC when the range is full or the set's
  // quota is reached; EEXIST when spid is given and already mapped in the set.
  // The spid mapping is made in the same critical section as the allocation.
  Result<Pasid> alloc(SetId set, Pasid min, Pasid max, uintptr_t private_data = 0,
                      std::optional<uint32_t> spid = std::nullopt);
  // The owner's release: FREE_PENDING, FREE announced, owner's reference dropped.
  // ENOENT if not allocated or already freed, EACCES if another set's.
  Result<void> free(SetId set, Pasid pasid);
  // Takes a user reference. ENOENT if unallocated or FREE_PENDING, EACCES for
  // another set's PASID (kAnySet skips the set check).
  Result<void> get(SetId set, Pasid pasid);
  // Drops a reference; returns true if this put reclaimed the PASID.
  bool put(Pasid pasid);
  // Lock-free. Returns the private data. ENOENT if unallocated, FREE_PENDING or
  // rejected by getter; EACCES if set is not kAnySet and the PASID is another set's.
  Result<uintptr_t> find(SetId set, Pasid pasid, PrivateGetter getter = nullptr) const;
  Result<PasidInfo> info(Pasid pasid) const;
  Result<void> attach_data(SetId set, Pasid pasid, uintptr_t private_data);
  Result<void> detach_data(SetId set, Pasid pasid);

  // ---- guest PASID (spid) map, per set ----
  // EEXIST if the spid is mapped in this set or the PASID already has one.
  Result<void> attach_spid(SetId set, Pasid pasid, uint32_t spid);
  Result<void> detach_spid(SetId set, Pasid pasid);  // ENOENT if none
  // ENOENT if the set has no such spid; with take_reference the PASID is get()'d.
  Result<Pasid> find_by_spid(SetId set, uint32_t spid, bool take_reference = false);

  // ---- notifiers ----
  // Higher priority runs first; equal priorities in registration order. Global
  // subscribers see every set's events, before the set's own subscribers.
  Subscription subscribe(NotifierCallback callback, int priority = 0);
  Result<Subscription> subscribe(SetId set, NotifierCallback callback, int priority = 0);
  // Announces BIND or UNBIND for an allocated PASID (used by the IOMMU layer).
  // EINVAL for Alloc/Free (the allocator announces those itself), ENOENT if unallocated.
  Result<void> notify(Pasid pasid, PasidEvent event);

 private:
  friend Subscription;
  void unsubscribe(uint64_t id);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

const char* to_string(PasidState state);
const char* to_string(PasidEvent event);
const char* to_string(SetType type);

}  // namespace ioasid

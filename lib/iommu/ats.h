// SPDX-License-Identifier: MIT
// ATS for device models: what one file's devices were handed by ATS_TRANSLATE (their
// ATC, as the IOMMU knows it), the invalidation requests the IOMMU's flushes owe
// them, and the wait that keeps the flushing ioctl from returning before they are
// acknowledged (or the device is failed).
//
// A translation is recorded before its walk (a reservation), so a flush racing with
// it sends an invalidation too; the device model discards a translation whose
// request overlapped an invalidation it received before the answer (PCIe asks the
// same of a device). Records are kept per (dev_id, domain, PASID) as merged
// intervals; past kMaxRanges per file a key's intervals collapse into one, which
// only costs extra invalidations.
#pragma once

#include "base/result.h"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace ioasid::iommu {

struct AtsInvalidationRequest {
  uint32_t dev_id = 0;
  uint32_t pasid = 0;  // kRidPasid: the requests without PASID
  uint32_t itag = 0;
  uint64_t iova = 0;
  uint64_t length = 0;
};

class AtsHolder : public std::enable_shared_from_this<AtsHolder> {
 public:
  static constexpr size_t kMaxRanges = 4096;

  // Queues one request to the file; false when it cannot (its fault queue is full).
  using Send = std::function<bool(const AtsInvalidationRequest&)>;
  // Told when a device is failed, with why (for the daemon's log).
  using Failed = std::function<void(uint32_t dev_id, const std::string& why)>;

  AtsHolder(Send send, Failed failed) : send_(std::move(send)), failed_(std::move(failed)) {}
  AtsHolder(const AtsHolder&) = delete;
  AtsHolder& operator=(const AtsHolder&) = delete;

  // A translation about to walk [iova, iova + length) at (domain, pasid) for dev_id:
  // EIO when the device failed an invalidation. keep() ends it, recording the first
  // `handed` bytes as the device's.
  Result<uint64_t> reserve(uint32_t dev_id, uint16_t domain, uint32_t pasid, uint64_t iova, uint64_t length);
  void keep(uint64_t reservation, uint64_t handed);

  // The IOMMU's flush of `domain` (at `pasid` when given) over [iova, iova + length):
  // every device whose records or reservations overlap gets one request per PASID,
  // covering what overlapped, and the records go. Requests sent inside an
  // AtsWaitScope are waited for by it.
  void invalidate(uint16_t domain, std::optional<uint32_t> pasid, uint64_t iova, uint64_t length);

  // ATS_INV_ACK: EINVAL when `itag` is not outstanding for dev_id.
  Result<void> acknowledge(uint32_t dev_id, uint32_t itag);
  bool failed(uint32_t dev_id) const;
  // The device was unbound: its records and its failure are gone. What it owes stays
  // owed: the UNBIND that detached it waits for those acknowledgements.
  void forget(uint32_t dev_id);

  size_t ranges() const;
  size_t outstanding() const;

 private:
  friend class AtsWaitScope;
  struct Key {
    uint32_t dev_id;
    uint16_t domain;
    uint32_t pasid;
    auto operator<=>(const Key&) const = default;
  };
  struct Reservation {
    Key key;
    uint64_t first;
    uint64_t last;  // inclusive: a range may end at 2^64
  };
  using Intervals = std::map<uint64_t, uint64_t>;  // first -> last, inclusive, disjoint

  // Waits until `itag` is acknowledged or `deadline` passes; then its device fails.
  void wait(uint32_t itag, std::chrono::steady_clock::time_point deadline);
  void add_locked(const Key& key, uint64_t first, uint64_t last);
  void fail_locked(uint32_t dev_id);
  void drop_locked(uint32_t dev_id);  // records and reservations

  const Send send_;
  const Failed failed_;
  mutable std::mutex mutex_;
  std::condition_variable acknowledged_;
  std::map<Key, Intervals> records_;
  size_t ranges_ = 0;
  std::map<uint64_t, Reservation> reservations_;
  uint64_t next_reservation_ = 1;
  std::map<uint32_t, uint32_t> outstanding_;  // itag -> dev_id
  uint32_t next_itag_ = 1;
  std::set<uint32_t> failed_devices_;
};

// The invalidations sent while one ioctl ran: complete() (or the destructor) waits for
// each, for at most `timeout` after it was sent. One per thread at a time; flushes
// made outside any (a file's release, the admin) do not wait.
class AtsWaitScope {
 public:
  explicit AtsWaitScope(std::chrono::milliseconds timeout);
  ~AtsWaitScope();
  AtsWaitScope(const AtsWaitScope&) = delete;
  AtsWaitScope& operator=(const AtsWaitScope&) = delete;
  void complete();
  // As complete() with every deadline past: a device that has not acknowledged fails.
  void complete_without_waiting();
  bool waiting() const { return !sent_.empty(); }

 private:
  friend class AtsHolder;
  struct Sent {
    std::weak_ptr<AtsHolder> holder;
    uint32_t itag;
    std::chrono::steady_clock::time_point deadline;
  };
  static AtsWaitScope* current();
  const std::chrono::milliseconds timeout_;
  AtsWaitScope* const outer_;
  std::vector<Sent> sent_;
};

}  // namespace ioasid::iommu

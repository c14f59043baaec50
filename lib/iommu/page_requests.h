// SPDX-License-Identifier: MIT
// A file's outstanding page requests (PCIe PRI, VT-d's page request queue): each
// group a device raised waits for the owner's PAGE_RESP. A DMA that raised one can
// wait for the answer; closing the file, unbinding the device or detaching the PASID
// answers what is pending with INVALID, and a wait has a time limit, so no caller
// waits for ever.
#pragma once

#include <linux/ioasid.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

namespace ioasid::iommu {

enum class PageResponse : uint32_t {
  kSuccess = IOASID_PAGE_RESP_SUCCESS,
  kInvalid = IOASID_PAGE_RESP_INVALID,
  kFailure = IOASID_PAGE_RESP_FAILURE,
  kTimedOut = 100,     // no response within the limit (the daemon's own outcomes)
  kInterrupted = 101,  // the waiting caller got a signal
};

class PageRequests {
 public:
  // A group index is 9 bits (PCIe PRG index); each device has its own.
  static constexpr uint32_t kGroups = 512;

  struct Group {
    uint32_t dev_id;
    uint32_t grpid;
    uint64_t serial = 0;  // tells this request from a later one given the same grpid
  };

  // Queues the record that announces group `grpid` (the owner's fault queue); false
  // when it could not be queued. Runs under this object's lock, so it must only queue
  // (FaultQueue::enqueue) and take no lock that is held while calling in here.
  using Announce = std::function<bool(uint32_t grpid)>;

  // Opens a group for a device's request at `pasid` (std::nullopt: without PASID), and
  // announces it: the group exists only once its record is queued, so no group is ever
  // outstanding that no record named, and no PAGE_RESP can answer one before it is.
  // With `will_wait` the caller wait()s for it, which closes it; otherwise the
  // response closes it. Fails (nullopt) when all 512 indexes of the device are
  // outstanding (announce is not called), or when announce fails (the queue is full:
  // the caller answers the device itself, as VT-d does on a page-request-queue overflow).
  std::optional<Group> open(uint32_t dev_id, std::optional<uint32_t> pasid, bool will_wait, const Announce& announce);
  // Waits until the group is answered, `limit` passes or *interrupted is set (then
  // kInterrupted); the group is closed after.
  PageResponse wait(const Group& group, std::chrono::milliseconds limit, const std::atomic<bool>* interrupted);
  // A group for a device that does not wait in a thread (a DSA work queue parks
  // instead): the answer — the owner's, a cancel's INVALID, expire()'s kTimedOut — is
  // given to on_answer exactly once, on the answering thread, without this object's
  // lock held (the caller of respond/cancel may hold its own).
  using OnAnswer = std::function<void(PageResponse)>;
  // Announced as open() is; when that fails on_answer is dropped unused.
  std::optional<Group> open_async(uint32_t dev_id, std::optional<uint32_t> pasid, OnAnswer on_answer,
                                  const Announce& announce);
  // Answers an async group kTimedOut if it is still outstanding (then true).
  bool expire(const Group& group);
  // Makes waiters look at their interrupted flag.
  void wake();
  // The owner's PAGE_RESP: EINVAL-worthy (false) when no such group is outstanding,
  // or the PASID does not match the request's.
  bool respond(uint32_t dev_id, uint32_t grpid, std::optional<uint32_t> pasid, PageResponse code);
  // Answers INVALID every outstanding group the predicate selects (dev_id, pasid).
  void cancel(const std::function<bool(uint32_t dev_id, std::optional<uint32_t> pasid)>& which);
  void cancel_all();
  // The file is going away: cancel_all(), and open()/open_async() fail from now on, so
  // no request raised later is left with nobody to answer it.
  void close();
  size_t outstanding() const;

 private:
  struct Pending {
    std::optional<uint32_t> pasid;
    std::optional<PageResponse> answer;
    bool answered_by_owner = false;  // a second PAGE_RESP is an error
    bool waited = false;             // a DMA waits for it and closes it
    OnAnswer on_answer;              // open_async
    uint64_t serial = 0;
  };
  std::optional<Group> open_locked(uint32_t dev_id, Pending pending, const Announce& announce);
  using Key = std::pair<uint32_t, uint32_t>;  // dev_id, grpid
  mutable std::mutex mutex_;
  std::condition_variable answered_;
  std::map<Key, Pending> pending_;
  std::map<uint32_t, uint32_t> next_grpid_;  // per dev_id
  uint64_t next_serial_ = 1;
  bool closed_ = false;
};

}  // namespace ioasid::iommu

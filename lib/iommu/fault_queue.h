// SPDX-License-Identifier: MIT
// A context's bounded queue of fault records, read whole with read(2). When it is
// full, new records are dropped and one LOST record, after the survivors, stands
// for all of them; recording resumes once the reader has taken the LOST record.
// push() says whether the record was queued: a page request that was not must not
// leave its group open (the caller answers it as VT-d does on a page-request-queue
// overflow).
#pragma once

#include <linux/ioasid.h>

#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

namespace ioasid::iommu {

class FaultQueue {
 public:
  explicit FaultQueue(size_t depth) : depth_(depth) {}

  // Queues a record and runs the arrival listener (outside the lock); false when the
  // queue was full and the record was dropped (the LOST record stands for it).
  bool push(const ioasid_fault& fault);
  // push() without the listener, for a caller holding a lock of its own; it calls
  // notify() once that lock is released.
  bool enqueue(const ioasid_fault& fault);
  void notify();
  // Moves up to out.size() records out; returns how many.
  size_t pop(std::span<ioasid_fault> out);
  size_t size() const;
  // Called after each push, e.g. to complete parked reads and notify pollers.
  void set_listener(std::function<void()> listener);

 private:
  const size_t depth_;
  mutable std::mutex mutex_;
  std::deque<ioasid_fault> records_;
  bool lost_pending_ = false;
  std::function<void()> listener_;
};

}  // namespace ioasid::iommu

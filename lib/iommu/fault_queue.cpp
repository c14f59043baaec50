// SPDX-License-Identifier: MIT
#include "iommu/fault_queue.h"

#include <algorithm>

namespace ioasid::iommu {

bool FaultQueue::push(const ioasid_fault& fault) {
  const bool queued = enqueue(fault);
  notify();
  return queued;
}

bool FaultQueue::enqueue(const ioasid_fault& fault) {
  std::lock_guard lock(mutex_);
  // The last slot is kept for the LOST record, so the reader learns of the gap
  // and the queue never holds more than depth records.
  if (!lost_pending_ && records_.size() + 1 < depth_) {
    records_.push_back(fault);
    return true;
  }
  lost_pending_ = true;
  return false;
}

void FaultQueue::notify() {
  std::function<void()> listener;
  {
    std::lock_guard lock(mutex_);
    listener = listener_;
  }
  if (listener) listener();
}

size_t FaultQueue::pop(std::span<ioasid_fault> out) {
  std::lock_guard lock(mutex_);
  size_t n = 0;
  while (n < out.size() && !records_.empty()) {
    out[n++] = records_.front();
    records_.pop_front();
  }
  if (n < out.size() && lost_pending_) {
    ioasid_fault lost{};
    lost.type = IOASID_FAULT_LOST;
    out[n++] = lost;
    lost_pending_ = false;
  }
  return n;
}

size_t FaultQueue::size() const {
  std::lock_guard lock(mutex_);
  return records_.size() + (lost_pending_ ? 1 : 0);
}

void FaultQueue::set_listener(std::function<void()> listener) {
  std::lock_guard lock(mutex_);
  listener_ = std::move(listener);
}

}  // namespace ioasid::iommu

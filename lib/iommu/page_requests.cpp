// SPDX-License-Identifier: MIT
#include "iommu/page_requests.h"

#include <vector>

namespace ioasid::iommu {

std::optional<PageRequests::Group> PageRequests::open(uint32_t dev_id, std::optional<uint32_t> pasid, bool will_wait,
                                                      const Announce& announce) {
  std::lock_guard lock(mutex_);
  return open_locked(dev_id, Pending{pasid, std::nullopt, false, will_wait, {}}, announce);
}

std::optional<PageRequests::Group> PageRequests::open_async(uint32_t dev_id, std::optional<uint32_t> pasid,
                                                            OnAnswer on_answer, const Announce& announce) {
  std::lock_guard lock(mutex_);
  return open_locked(dev_id, Pending{pasid, std::nullopt, false, false, std::move(on_answer)}, announce);
}

bool PageRequests::expire(const Group& group) {
  OnAnswer on_answer;
  {
    std::lock_guard lock(mutex_);
    auto it = pending_.find({group.dev_id, group.grpid});
    if (it == pending_.end() || !it->second.on_answer || it->second.serial != group.serial) return false;
    on_answer = std::move(it->second.on_answer);
    pending_.erase(it);
  }
  on_answer(PageResponse::kTimedOut);
  return true;
}

std::optional<PageRequests::Group> PageRequests::open_locked(uint32_t dev_id, Pending pending,
                                                             const Announce& announce) {
  if (closed_) return std::nullopt;
  uint32_t& next = next_grpid_[dev_id];
  for (uint32_t tried = 0; tried < kGroups; ++tried) {
    const uint32_t grpid = (next + tried) % kGroups;
    if (pending_.contains({dev_id, grpid})) continue;
    // Not announced: no group was opened, and the index stays free for the next request.
    if (!announce(grpid)) return std::nullopt;
    pending.serial = next_serial_;
    pending_.emplace(Key{dev_id, grpid}, std::move(pending));
    next = (grpid + 1) % kGroups;
    return Group{dev_id, grpid, next_serial_++};
  }
  return std::nullopt;
}

PageResponse PageRequests::wait(const Group& group, std::chrono::milliseconds limit,
                                const std::atomic<bool>* interrupted) {
  std::unique_lock lock(mutex_);
  const Key key{group.dev_id, group.grpid};
  auto is_interrupted = [&] { return interrupted && interrupted->load(std::memory_order_acquire); };
  answered_.wait_for(lock, limit, [&] {
    auto it = pending_.find(key);
    return it == pending_.end() || it->second.answer.has_value() || is_interrupted();
  });
  auto it = pending_.find(key);
  PageResponse answer = is_interrupted() ? PageResponse::kInterrupted : PageResponse::kTimedOut;
  if (it != pending_.end()) {
    if (it->second.answer) answer = *it->second.answer;
    pending_.erase(it);
  }
  return answer;
}

void PageRequests::wake() {
  std::lock_guard lock(mutex_);
  answered_.notify_all();
}

bool PageRequests::respond(uint32_t dev_id, uint32_t grpid, std::optional<uint32_t> pasid, PageResponse code) {
  std::unique_lock lock(mutex_);
  auto it = pending_.find({dev_id, grpid});
  if (it == pending_.end() || it->second.answered_by_owner) return false;
  if (it->second.pasid != pasid) return false;
  if (it->second.on_answer) {
    OnAnswer on_answer = std::move(it->second.on_answer);
    pending_.erase(it);
    lock.unlock();
    on_answer(code);
    return true;
  }
  if (!it->second.waited) {
    pending_.erase(it);
    return true;
  }
  it->second.answer = code;
  it->second.answered_by_owner = true;
  answered_.notify_all();
  return true;
}

void PageRequests::cancel(const std::function<bool(uint32_t, std::optional<uint32_t>)>& which) {
  std::vector<OnAnswer> parked;
  std::unique_lock lock(mutex_);
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.answer || !which(it->first.first, it->second.pasid)) {
      ++it;
    } else if (it->second.on_answer) {
      parked.push_back(std::move(it->second.on_answer));
      it = pending_.erase(it);
    } else if (!it->second.waited) {
      it = pending_.erase(it);
    } else {
      it->second.answer = PageResponse::kInvalid;
      ++it;
    }
  }
  answered_.notify_all();
  lock.unlock();
  for (auto& on_answer : parked) on_answer(PageResponse::kInvalid);
}

void PageRequests::cancel_all() {
  cancel([](uint32_t, std::optional<uint32_t>) { return true; });
}

void PageRequests::close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  cancel_all();
}

size_t PageRequests::outstanding() const {
  std::lock_guard lock(mutex_);
  return pending_.size();
}

}  // namespace ioasid::iommu

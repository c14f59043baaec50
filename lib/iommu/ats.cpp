// SPDX-License-Identifier: MIT
#include "iommu/ats.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>

namespace ioasid::iommu {
namespace {

thread_local AtsWaitScope* tls_scope = nullptr;

constexpr uint64_t kLast = std::numeric_limits<uint64_t>::max();

uint64_t last_of(uint64_t iova, uint64_t length) {
  const uint64_t last = iova + (length - 1);
  return last < iova ? kLast : last;
}

// The extent of what a flush hit for one (device, PASID).
struct Extent {
  uint64_t first = kLast;
  uint64_t last = 0;
  void add(uint64_t from, uint64_t to) {
    first = std::min(first, from);
    last = std::max(last, to);
  }
};

}  // namespace

Result<uint64_t> AtsHolder::reserve(uint32_t dev_id, uint16_t domain, uint32_t pasid, uint64_t iova,
                                    uint64_t length) {
  std::lock_guard lock(mutex_);
  if (failed_devices_.contains(dev_id))
    return fail(EIO, "dev_id {} failed an ATS invalidation: unbind and bind it again", dev_id);
  const uint64_t id = next_reservation_++;
  reservations_.emplace(id, Reservation{{dev_id, domain, pasid}, iova, last_of(iova, length)});
  return id;
}

void AtsHolder::keep(uint64_t reservation, uint64_t handed) {
  std::lock_guard lock(mutex_);
  const auto found = reservations_.find(reservation);
  if (found == reservations_.end()) return;  // the device was unbound or failed meanwhile
  const Reservation r = found->second;
  reservations_.erase(found);
  if (handed > 0) add_locked(r.key, r.first, last_of(r.first, handed));
}

void AtsHolder::add_locked(const Key& key, uint64_t first, uint64_t last) {
  Intervals& intervals = records_[key];
  // Merge with every interval that overlaps or touches [first, last].
  auto it = intervals.upper_bound(first);
  if (it != intervals.begin() && (std::prev(it)->second >= first || std::prev(it)->second + 1 == first)) --it;
  while (it != intervals.end() && (last == kLast || it->first <= last + 1)) {
    first = std::min(first, it->first);
    last = std::max(last, it->second);
    it = intervals.erase(it);
    --ranges_;
  }
  if (ranges_ >= kMaxRanges && !intervals.empty()) {
    // Over the bound: the key's intervals collapse into one, which is still exact
    // about what must be invalidated, only coarser.
    first = std::min(first, intervals.begin()->first);
    for (const auto& [from, to] : intervals) last = std::max(last, to);
    ranges_ -= intervals.size();
    intervals.clear();
  }
  intervals.emplace(first, last);
  ++ranges_;
}

void AtsHolder::invalidate(uint16_t domain, std::optional<uint32_t> pasid, uint64_t iova, uint64_t length) {
  if (length == 0) return;
  const uint64_t a = iova;
  const uint64_t b = last_of(iova, length);
  const auto matches = [&](const Key& key) { return key.domain == domain && (!pasid || key.pasid == *pasid); };
  std::vector<AtsInvalidationRequest> requests;
  {
    std::lock_guard lock(mutex_);
    std::map<std::pair<uint32_t, uint32_t>, Extent> hits;
    for (auto key_it = records_.begin(); key_it != records_.end();) {
      auto& [key, intervals] = *key_it;
      if (!matches(key)) {
        ++key_it;
        continue;
      }
      auto it = intervals.upper_bound(a);
      if (it != intervals.begin() && std::prev(it)->second >= a) --it;
      while (it != intervals.end() && it->first <= b) {
        const auto [from, to] = *it;
        hits[{key.dev_id, key.pasid}].add(std::max(from, a), std::min(to, b));
        it = intervals.erase(it);
        --ranges_;
        if (from < a) {
          intervals.emplace(from, a - 1);
          ++ranges_;
        }
        if (to > b) {
          it = intervals.emplace(b + 1, to).first;
          ++ranges_;
        }
      }
      key_it = intervals.empty() ? records_.erase(key_it) : std::next(key_it);
    }
    // A translation walking now may have read what the flush changed: its device is
    // told too, and discards the answer when it comes.
    for (const auto& [id, r] : reservations_)
      if (matches(r.key) && r.first <= b && r.last >= a)
        hits[{r.key.dev_id, r.key.pasid}].add(std::max(r.first, a), std::min(r.last, b));
    for (const auto& [where, extent] : hits) {
      const uint32_t itag = next_itag_++;
      outstanding_.emplace(itag, where.first);
      const uint64_t span = extent.last - extent.first + 1;
      requests.push_back({where.first, where.second, itag, extent.first, span == 0 ? kLast : span});
    }
  }
  AtsWaitScope* scope = AtsWaitScope::current();
  for (const AtsInvalidationRequest& request : requests) {
    if (send_(request)) {
      if (scope)
        scope->sent_.push_back({weak_from_this(), request.itag, std::chrono::steady_clock::now() + scope->timeout_});
      continue;
    }
    {
      std::lock_guard lock(mutex_);
      if (!outstanding_.contains(request.itag)) continue;
      fail_locked(request.dev_id);
    }
    failed_(request.dev_id, fmt::format("its invalidation request (itag {}) could not be queued: the file's "
                                        "fault queue is full",
                                        request.itag));
  }
}

void AtsHolder::wait(uint32_t itag, std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  if (acknowledged_.wait_until(lock, deadline, [&] { return !outstanding_.contains(itag); })) return;
  const uint32_t dev_id = outstanding_.at(itag);
  fail_locked(dev_id);
  lock.unlock();
  failed_(dev_id, fmt::format("it did not acknowledge invalidation itag {} in time", itag));
}

void AtsHolder::fail_locked(uint32_t dev_id) {
  failed_devices_.insert(dev_id);
  drop_locked(dev_id);
  std::erase_if(outstanding_, [&](const auto& entry) { return entry.second == dev_id; });
  acknowledged_.notify_all();
}

void AtsHolder::drop_locked(uint32_t dev_id) {
  for (auto it = records_.begin(); it != records_.end();) {
    if (it->first.dev_id == dev_id) {
      ranges_ -= it->second.size();
      it = records_.erase(it);
    } else {
      ++it;
    }
  }
  std::erase_if(reservations_, [&](const auto& entry) { return entry.second.key.dev_id == dev_id; });
}

Result<void> AtsHolder::acknowledge(uint32_t dev_id, uint32_t itag) {
  std::lock_guard lock(mutex_);
  const auto found = outstanding_.find(itag);
  if (found == outstanding_.end() || found->second != dev_id)
    return fail(EINVAL, "dev_id {} owes no invalidation itag {} (never sent, acknowledged already, or timed out)",
                dev_id, itag);
  outstanding_.erase(found);
  acknowledged_.notify_all();
  return success();
}

bool AtsHolder::failed(uint32_t dev_id) const {
  std::lock_guard lock(mutex_);
  return failed_devices_.contains(dev_id);
}

void AtsHolder::forget(uint32_t dev_id) {
  std::lock_guard lock(mutex_);
  drop_locked(dev_id);
  failed_devices_.erase(dev_id);
}

size_t AtsHolder::ranges() const {
  std::lock_guard lock(mutex_);
  return ranges_;
}

size_t AtsHolder::outstanding() const {
  std::lock_guard lock(mutex_);
  return outstanding_.size();
}

AtsWaitScope::AtsWaitScope(std::chrono::milliseconds timeout) : timeout_(timeout), outer_(tls_scope) {
  tls_scope = this;
}

AtsWaitScope::~AtsWaitScope() {
  complete();
  tls_scope = outer_;
}

AtsWaitScope* AtsWaitScope::current() { return tls_scope; }

void AtsWaitScope::complete() {
  for (const Sent& sent : sent_)
    if (auto holder = sent.holder.lock()) holder->wait(sent.itag, sent.deadline);
  sent_.clear();
}

void AtsWaitScope::complete_without_waiting() {
  for (Sent& sent : sent_) sent.deadline = std::chrono::steady_clock::time_point{};
  complete();
}

}  // namespace ioasid::iommu

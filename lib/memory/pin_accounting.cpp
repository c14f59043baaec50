#include "memory/pin_accounting.h"

namespace ioasid {

struct PinCharge::State {
  mutable std::mutex mutex;
  uint64_t limit_pages;
  uint64_t total_pages = 0;
  std::map<uid_t, uint64_t> pinned;  // only users with pages pinned
};

PinCharge::PinCharge(PinCharge&& other) noexcept
    : state_(std::move(other.state_)), uid_(other.uid_), pages_(std::exchange(other.pages_, 0)) {}

PinCharge& PinCharge::operator=(PinCharge&& other) noexcept {
  if (this != &other) {
    release();
    state_ = std::move(other.state_);
    uid_ = other.uid_;
    pages_ = std::exchange(other.pages_, 0);
  }
  return *this;
}

void PinCharge::release() {
  if (state_ != nullptr && pages_ != 0) {
    std::lock_guard lock(state_->mutex);
    auto entry = state_->pinned.find(uid_);
    if (entry != state_->pinned.end()) {
      entry->second -= pages_;
      if (entry->second == 0) state_->pinned.erase(entry);
    }
    state_->total_pages -= pages_;
  }
  state_.reset();
  pages_ = 0;
}

PinAccounting::PinAccounting(uint64_t limit_pages) : state_(std::make_shared<PinCharge::State>()) {
  state_->limit_pages = limit_pages;
}

Result<PinCharge> PinAccounting::charge(uid_t uid, uint64_t pages) {
  if (pages == 0) return PinCharge();
  std::lock_guard lock(state_->mutex);
  const auto entry = state_->pinned.find(uid);
  const uint64_t already = entry == state_->pinned.end() ? 0 : entry->second;
  const uint64_t limit = state_->limit_pages;
  if (limit != 0 && (pages > limit || already > limit - pages))
    return fail(ENOMEM,
                "uid {} cannot pin {} more pages ({} KiB): {} already pinned, the limit is {} "
                "pages ({} MiB) per user",
                uid, pages, pages << (kPageShift - 10), already, limit,
                (limit << kPageShift) >> 20);
  state_->pinned[uid] = already + pages;
  state_->total_pages += pages;
  return PinCharge(state_, uid, pages);
}

uint64_t PinAccounting::pinned_pages(uid_t uid) const {
  std::lock_guard lock(state_->mutex);
  const auto entry = state_->pinned.find(uid);
  return entry == state_->pinned.end() ? 0 : entry->second;
}

uint64_t PinAccounting::total_pinned_pages() const {
  std::lock_guard lock(state_->mutex);
  return state_->total_pages;
}

std::map<uid_t, uint64_t> PinAccounting::pinned_by_uid() const {
  std::lock_guard lock(state_->mutex);
  return state_->pinned;
}

uint64_t PinAccounting::limit_pages() const {
  std::lock_guard lock(state_->mutex);
  return state_->limit_pages;
}

void PinAccounting::set_limit_pages(uint64_t limit_pages) {
  std::lock_guard lock(state_->mutex);
  state_->limit_pages = limit_pages;
}

}  // namespace ioasid

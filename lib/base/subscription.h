// SPDX-License-Identifier: MIT
// A registration with an owner (a notifier chain, an event bus) that ends when the
// handle is destroyed or reset. Move-only; safe to destroy from inside the
// registered callback.
#pragma once

#include <cstdint>
#include <utility>

namespace ioasid {

template <typename Owner>
class ScopedSubscription {
 public:
  ScopedSubscription() = default;
  ScopedSubscription(ScopedSubscription&& other) noexcept
      : owner_(std::exchange(other.owner_, nullptr)), id_(other.id_) {}
  ScopedSubscription& operator=(ScopedSubscription&& other) noexcept {
    if (this != &other) {
      reset();
      owner_ = std::exchange(other.owner_, nullptr);
      id_ = other.id_;
    }
    return *this;
  }
  ScopedSubscription(const ScopedSubscription&) = delete;
  ScopedSubscription& operator=(const ScopedSubscription&) = delete;
  ~ScopedSubscription() { reset(); }

  void reset() {
    if (Owner* owner = std::exchange(owner_, nullptr)) owner->unsubscribe(id_);
  }
  bool active() const { return owner_ != nullptr; }

 private:
  friend Owner;
  ScopedSubscription(Owner* owner, uint64_t id) : owner_(owner), id_(id) {}
  Owner* owner_ = nullptr;
  uint64_t id_ = 0;
};

}  // namespace ioasid

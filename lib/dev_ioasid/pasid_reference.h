// SPDX-License-Identifier: MIT
// A user reference on a PASID (Allocator::get/put) held by an object that may outlive
// the ioctl that made it: a queued descriptor, a dedicated work queue. While one is
// held a FREE of the PASID detaches it and leaves it FREE_PENDING, so the number is
// never given to another file under something still using it.
#pragma once

#include "pasid/allocator.h"

#include <cstdint>
#include <utility>

namespace ioasid::dev_ioasid {

class PasidReference {
 public:
  // Takes over a reference the caller got.
  PasidReference(Allocator& allocator, uint32_t pasid) : allocator_(&allocator), pasid_(pasid) {}
  PasidReference(PasidReference&& other) noexcept
      : allocator_(std::exchange(other.allocator_, nullptr)), pasid_(other.pasid_) {}
  PasidReference& operator=(PasidReference&&) = delete;
  PasidReference(const PasidReference&) = delete;
  ~PasidReference() {
    if (allocator_) allocator_->put(pasid_);
  }
  uint32_t pasid() const { return pasid_; }

 private:
  Allocator* allocator_;
  uint32_t pasid_;
};

}  // namespace ioasid::dev_ioasid

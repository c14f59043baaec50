// SPDX-License-Identifier: MIT
// An owned mmap() region: unmapped exactly once, movable, never copied.
#pragma once

#include "base/result.h"

#include <cstddef>
#include <cstdint>
#include <utility>

namespace ioasid {

class Mapping {
 public:
  Mapping() = default;
  Mapping(Mapping&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { reset(); }

  // MAP_SHARED view of [offset, offset + size) of `fd`; `writable` adds PROT_WRITE.
  // It reserves nothing (MAP_NORESERVE, which of shared mappings only hugetlbfs
  // heeds): a view may span parts of a hugetlbfs file the client never mapped, and
  // reserving their huge pages would drain the pool, or fail when it is short. A page
  // the pool cannot supply once touched is a SIGBUS, which accesses survive
  // (sigbus_guard.h).
  static Result<Mapping> map_shared(int fd, uint64_t offset, size_t size, bool writable);
  // Private zero-filled memory, reserved lazily (MAP_NORESERVE): pages cost memory
  // only once touched.
  static Result<Mapping> anonymous(size_t size);

  std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  explicit operator bool() const { return data_ != nullptr; }
  void reset();

 private:
  Mapping(std::byte* data, size_t size) : data_(data), size_(size) {}

  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ioasid

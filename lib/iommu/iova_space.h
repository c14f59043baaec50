// SPDX-License-Identifier: MIT
// The IOVA bookkeeping of one I/O address space: which IOVAs may be mapped (the
// address width minus reserved windows such as the MSI range) and which are taken
// by areas. Areas are claimed and released whole; UNMAP's rules build on overlapping().
#pragma once

#include "base/result.h"

#include <cstdint>
#include <map>
#include <vector>

namespace ioasid::iommu {

struct IovaRange {
  uint64_t start;
  uint64_t last;  // inclusive
  bool operator==(const IovaRange&) const = default;
};

// The x86 interrupt window: DMA writes there are MSIs, never memory.
inline constexpr IovaRange kMsiWindow{0xfee00000, 0xfeefffff};

class IovaSpace {
 public:
  // Every IOVA in [0, last_iova] outside `reserved` may be mapped.
  IovaSpace(uint64_t last_iova, std::vector<IovaRange> reserved);

  std::vector<IovaRange> allowed_ranges() const;

  // Claims [iova, iova + length) as one area. EOVERFLOW if it wraps; EINVAL if any
  // of it is outside the allowed ranges; EEXIST if it overlaps an area.
  Result<void> claim(uint64_t iova, uint64_t length);
  // Claims the lowest hole of `length` bytes aligned to `alignment` (a power of two),
  // never at IOVA 0. ENOSPC if there is none.
  Result<uint64_t> claim_any(uint64_t length, uint64_t alignment);
  // Releases the area that starts at iova (no-op if none).
  void release(uint64_t iova);

  // Areas with at least one byte in [first, last], in order.
  std::vector<IovaRange> overlapping(uint64_t first, uint64_t last) const;
  std::vector<IovaRange> areas() const;

 private:
  bool allowed(uint64_t first, uint64_t last) const;
  uint64_t last_iova_;
  std::vector<IovaRange> reserved_;    // sorted, merged
  std::map<uint64_t, uint64_t> areas_;  // start -> last
};

}  // namespace ioasid::iommu

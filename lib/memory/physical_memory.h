// SPDX-License-Identifier: MIT
// The emulated host-physical address (HPA) space as hardware walkers see it: 64-bit
// reads, writes and compare-and-swap at an HPA, plus the pool of page-table pages the
// daemon owns. Page-table code depends only on this interface, so tests can back it
// with plain memory and the IOMMU with client segments and the table pool.
#pragma once

#include "base/result.h"

#include <cstdint>

namespace ioasid {

using Hpa = uint64_t;

inline constexpr uint64_t kPageShift = 12;
inline constexpr uint64_t kPageSize = 1ull << kPageShift;

class PhysicalMemory {
 public:
  virtual ~PhysicalMemory() = default;

  // An aligned 64-bit word. An HPA that nothing backs is an error (the walker turns
  // it into a fault); so is a misaligned one.
  virtual Result<uint64_t> read64(Hpa hpa) = 0;
  virtual Result<void> write64(Hpa hpa, uint64_t value) = 0;
  // Atomic where the memory allows it (daemon tables, mapped client files). On a
  // mismatch returns false and stores the current value in `expected`.
  virtual Result<bool> compare_exchange64(Hpa hpa, uint64_t& expected, uint64_t desired) = 0;

  // A zeroed 4 KiB page-table page owned by the daemon. ENOMEM when the pool's limit
  // is reached.
  virtual Result<Hpa> alloc_table() = 0;
  virtual void free_table(Hpa table) = 0;
};

}  // namespace ioasid

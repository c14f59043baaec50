// An IOASID object of a file: today a kernel-managed I/O address space (the daemon's
// second-level table, changed with MAP/UNMAP).
#pragma once

#include "iommu/io_pagetable.h"

#include <atomic>
#include <memory>

namespace ioasid::uapi {

struct Ioas {
  std::unique_ptr<iommu::IoPageTable> table;
  // Devices attached and nested IOASIDs on top: FREE is EBUSY while any.
  std::atomic<uint32_t> users{0};
};

}  // namespace ioasid::uapi

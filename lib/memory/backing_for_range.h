// SPDX-License-Identifier: MIT
// How the daemon reaches a client's virtual range for MAP_DMA (DESIGN.md, memory
// model): a shared file mapping is mapped into the daemon (zero copy, coherent,
// atomic); anything else is reached through /proc/<pid>/mem.
#pragma once

#include "memory/address_space.h"
#include "memory/backing.h"
#include "memory/process_maps.h"

#include <sys/types.h>

#include <memory>
#include <span>

namespace ioasid {

// The backing for [va, va + length) of process `pid` (the calling thread's id is
// fine: threads share the address space).
//
// - va and length must be 4 KiB aligned and length non-zero (EINVAL); va + length
//   must not wrap (EOVERFLOW).
// - The range must be covered by mappings without a hole, each readable for
//   MapAccess::kRead and writable for MapAccess::kWrite, as pinning pages would demand
//   (EFAULT otherwise, naming the first address at fault).
// - If the mappings covering it are all MAP_SHARED views of one regular file at
//   contiguous file offsets (one mapping, or several that mprotect split), the
//   result is a MappedFileBacking of that file, opened through
//   /proc/<pid>/map_files/. If the daemon may not open map_files (it needs
//   CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE) the range falls back to the remote path.
// - Otherwise (private memory, or a range spanning different mappings, e.g. a shared
//   one followed by a private one) the result is a RemoteBacking: coherent for data,
//   not zero copy, no cross-process atomics.
// No ptrace rights over pid: EPERM with the reason; no such process: ESRCH.
//
// Either way the backing's location() of a page is what locate_pages() said of it
// when the backing was made, and the backing pins it (pinned_pages.h). A hugetlbfs
// range (MAP_HUGETLB) takes the same paths: a shared one is mapped (the daemon's view
// is in whole huge pages, so any 4 KiB-aligned sub-range works), a private one is
// remote.
Result<std::shared_ptr<Backing>> backing_for_range(pid_t pid, uint64_t va, uint64_t length,
                                                   MapAccess access);
// The same in an address space the caller holds already (its pid's memory as that
// handle reaches it): no second look-up of the process's identity.
Result<std::shared_ptr<Backing>> backing_for_range(std::shared_ptr<AddressSpace> space, uint64_t va,
                                                   uint64_t length, MapAccess access);

// The same decision made on an already parsed maps listing: the mappings covering
// the range, in order, after the hole and permission checks, or the EFAULT.
Result<std::span<const MapsEntry>> mappings_covering(std::span<const MapsEntry> maps, uint64_t va,
                                                     uint64_t length, MapAccess access);
// True when `covering` (as returned above) is one shared regular-file view.
bool is_one_shared_file(std::span<const MapsEntry> covering);

}  // namespace ioasid

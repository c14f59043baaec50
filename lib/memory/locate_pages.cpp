// SPDX-License-Identifier: MIT
#include "memory/locate_pages.h"

#include "memory/address_space.h"
#include "memory/backing_for_range.h"
#include "memory/physical_memory.h"

#include <sys/sysmacros.h>

#include <algorithm>

namespace ioasid {

std::vector<LocatedRun> locate_runs(std::span<const MapsEntry> covering, uint64_t va, uint64_t length,
                                    const std::shared_ptr<const AddressSpace>& space, HugetlbDevices* huge) {
  std::vector<LocatedRun> runs;
  const uint64_t end = va + length;
  for (const MapsEntry& mapping : covering) {
    const uint64_t start = std::max(va, mapping.start);
    const uint64_t stop = std::min(end, mapping.end);
    if (start >= stop) continue;
    LocatedRun run{.offset = start - va, .length = stop - start, .first = {}, .huge = false};
    // Every MAP_SHARED mapping has a file (shared anonymous memory a shmem one); a
    // SysV segment's inode number is its id, which may be 0, so the device decides too.
    const bool file = mapping.shared && (mapping.inode != 0 || mapping.device_major != 0 || mapping.device_minor != 0);
    run.first = file ? PageLocation::file(makedev(mapping.device_major, mapping.device_minor), mapping.inode,
                                          mapping.offset + (start - mapping.start))
                     : PageLocation::private_page(space, start);
    run.huge = huge != nullptr && huge->is_huge(mapping);
    runs.push_back(std::move(run));
  }
  return runs;
}

Result<std::vector<LocatedPage>> locate_pages(pid_t pid, uint64_t va, uint64_t length) {
  if (length == 0 || va % kPageSize != 0 || length % kPageSize != 0)
    return fail(EINVAL, "client range {:#x}+{:#x}: both must be non-zero multiples of 4 KiB", va, length);
  if (va + length < va) return fail(EOVERFLOW, "client range {:#x}+{:#x} wraps around", va, length);
  // Bound first, as backing_for_range does: the maps read next are of this mm.
  auto space = AddressSpace::of(pid, MapAccess::kRead);
  IOASID_TRY(space);
  auto maps = read_process_maps(pid);
  if (!maps) return std::move(maps).error();
  auto covering = mappings_covering(*maps, va, length, MapAccess::kRead);
  if (!covering) {
    Error error = std::move(covering).error();
    error.why = fmt::format("pid {}: {}", pid, error.why);
    return error;
  }
  HugetlbDevices huge(pid);
  std::vector<LocatedPage> pages;
  pages.reserve(length / kPageSize);
  for (const LocatedRun& run : locate_runs(*covering, va, length, *space, &huge))
    for (uint64_t at = 0; at < run.length; at += kPageSize)
      pages.push_back(LocatedPage{.location = run.first.plus(at), .huge = run.huge});
  return pages;
}

}  // namespace ioasid

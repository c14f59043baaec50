// SPDX-License-Identifier: MIT
// Where the pages of a client's virtual range live now (page_location.h), read from
// /proc/<pid>/maps: what iommufd's mock driver compares an IOVA's page with, and
// where it looks up pin counts (pinned_pages.h).
#pragma once

#include "base/result.h"
#include "memory/hugetlb_devices.h"
#include "memory/page_location.h"
#include "memory/process_maps.h"

#include <sys/types.h>

#include <memory>
#include <span>
#include <vector>

namespace ioasid {

// Each 4 KiB page of [va, va + length) of process `pid` as it maps it now, in order:
// a page of a MAP_SHARED mapping is a page of its file (MAP_SHARED|MAP_ANONYMOUS and
// SysV segments included: their shmem file), any other page a private page of the
// address space (the handle AddressSpace::of(pid) gives). `huge` marks pages of
// hugetlbfs mappings.
// - va and length must be 4 KiB aligned and length non-zero (EINVAL); a wrap is
//   EOVERFLOW.
// - A page nothing maps, or that the process may not read (PROT_NONE), is EFAULT, as
//   the kernel's get_user_pages would fail on it.
// - No ptrace rights over pid: EPERM; no such process: ESRCH.
Result<std::vector<LocatedPage>> locate_pages(pid_t pid, uint64_t va, uint64_t length);

// The same, as runs, for [va, va + length) covered by `covering` (as
// mappings_covering returns it) in the address space `space`. `huge` may be null when
// the caller does not need the flags (they are then false): telling them may read the
// client's mountinfo.
std::vector<LocatedRun> locate_runs(std::span<const MapsEntry> covering, uint64_t va, uint64_t length,
                                    const std::shared_ptr<const AddressSpace>& space, HugetlbDevices* huge);

}  // namespace ioasid

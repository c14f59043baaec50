// SPDX-License-Identifier: MIT
// Which mappings of a client are hugetlbfs huge pages, told from /proc/<pid>/maps
// without opening or statfs-ing the client's files (either could be a request to a
// FUSE server, this daemon's own included, that never answers).
//
// A hugetlbfs mapping shows the device of its superblock: MAP_HUGETLB, SHM_HUGETLB
// and memfd_create(MFD_HUGETLB) use the kernel's internal mount of each huge page
// size, whose devices the daemon learns once by making a memfd of each size; a file
// of a mounted hugetlbfs shows that mount's device, listed in the client's
// /proc/<pid>/mountinfo, which is read only when a mapping could be one (an
// anonymous device, boundaries aligned to a huge page).
#pragma once

#include "memory/process_maps.h"

#include <sys/types.h>

#include <optional>
#include <vector>

namespace ioasid {

class HugetlbDevices {
 public:
  // For the mappings of process `pid` (its mount namespace names the mounts).
  explicit HugetlbDevices(pid_t pid) : pid_(pid) {}

  bool is_huge(const MapsEntry& mapping);

 private:
  const pid_t pid_;
  std::optional<std::vector<dev_t>> mounted_;  // pid's hugetlbfs mounts, read on demand
};

}  // namespace ioasid

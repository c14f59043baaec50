// SPDX-License-Identifier: MIT
// /proc/<pid>/maps, parsed: which mappings cover a client's virtual range and how
// (shared or private, which file, at what offset, with which permissions).
#pragma once

#include "base/result.h"

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ioasid {

struct MapsEntry {
  uint64_t start = 0;  // [start, end)
  uint64_t end = 0;
  bool readable = false;
  bool writable = false;
  bool executable = false;
  bool shared = false;  // 's' (MAP_SHARED); 'p' is private
  uint64_t offset = 0;  // file offset of `start`
  uint32_t device_major = 0;
  uint32_t device_minor = 0;
  uint64_t inode = 0;  // 0 for anonymous private memory
  std::string path;    // may be empty, "[heap]", or end in " (deleted)"

  // The name of this mapping under /proc/<pid>/map_files/.
  std::string map_files_name() const;
};

// One line, e.g. "7f00a000-7f00b000 rw-s 00000000 00:01 1234  /memfd:x (deleted)".
Result<MapsEntry> parse_maps_line(std::string_view line);

// Every mapping of pid, in address order. No such process: ESRCH; no ptrace read
// rights over it: EPERM.
Result<std::vector<MapsEntry>> read_process_maps(pid_t pid);

}  // namespace ioasid

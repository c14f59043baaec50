// SPDX-License-Identifier: MIT
#include "memory/caller_view.h"

#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

namespace ioasid {

bool CallerView::same_address_space(pid_t pid) {
  if (auto known = same_.find(pid); known != same_.end()) return known->second;
  // One syscall, no file: the kernel compares the two mm pointers.
  const bool same = ::syscall(SYS_kcmp, tid_, pid, KCMP_VM, 0, 0) == 0;
  same_.emplace(pid, same);
  return same;
}

std::variant<CallerPlace, Unreachable> CallerView::place(const ClientOrigin& origin, uint64_t length, bool write) {
  if (origin.kind == ClientOrigin::Kind::kProcess) {
    if (!same_address_space(origin.pid)) return Unreachable::kOtherProcess;
    return CallerPlace{origin.at, length};
  }
  if (!maps_) {
    auto maps = read_process_maps(tid_);
    maps_ = maps ? std::move(*maps) : std::vector<MapsEntry>{};
  }
  // The lowest-addressed shared mapping of the file holding the first byte.
  for (const MapsEntry& entry : *maps_) {
    if (!entry.shared || entry.inode != origin.file_inode || entry.device_major != origin.file_major ||
        entry.device_minor != origin.file_minor || !entry.readable || (write && !entry.writable))
      continue;
    const uint64_t size = entry.end - entry.start;
    if (origin.at < entry.offset || origin.at - entry.offset >= size) continue;
    const uint64_t into = origin.at - entry.offset;
    return CallerPlace{entry.start + into, std::min(length, size - into)};
  }
  return Unreachable::kFileNotMapped;
}

}  // namespace ioasid

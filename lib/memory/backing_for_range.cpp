// SPDX-License-Identifier: MIT
#include "memory/backing_for_range.h"

#include "memory/client_file.h"
#include "memory/locate_pages.h"
#include "memory/mapped_file_backing.h"
#include "memory/physical_memory.h"
#include "memory/remote_backing.h"
#include "base/unique_fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>

namespace ioasid {

Result<std::span<const MapsEntry>> mappings_covering(std::span<const MapsEntry> maps, uint64_t va,
                                                     uint64_t length, MapAccess access) {
  const uint64_t end = va + length;
  // The first mapping that ends after va; maps are sorted and do not overlap.
  const auto first = std::upper_bound(
      maps.begin(), maps.end(), va,
      [](uint64_t address, const MapsEntry& entry) { return address < entry.end; });
  uint64_t covered_to = va;
  auto last = first;
  for (; last != maps.end() && last->start < end; ++last) {
    if (last->start > covered_to) break;  // a hole
    if (allows_read(access) && !last->readable)
      return fail(EFAULT, "client memory at {:#x} is not readable ({})", covered_to,
                  last->path.empty() ? "anonymous" : last->path);
    if (allows_write(access) && !last->writable)
      return fail(EFAULT, "client memory at {:#x} is not writable ({})", covered_to,
                  last->path.empty() ? "anonymous" : last->path);
    covered_to = last->end;
  }
  if (covered_to < end)
    return fail(EFAULT, "nothing is mapped at client address {:#x} (in [{:#x}, {:#x}))", covered_to,
                va, end);
  return std::span<const MapsEntry>(first, last);
}

bool is_one_shared_file(std::span<const MapsEntry> covering) {
  if (covering.empty()) return false;
  const MapsEntry& head = covering.front();
  if (!head.shared || head.inode == 0) return false;
  for (size_t i = 1; i < covering.size(); ++i) {
    const MapsEntry& previous = covering[i - 1];
    const MapsEntry& entry = covering[i];
    if (!entry.shared || entry.inode != head.inode || entry.device_major != head.device_major ||
        entry.device_minor != head.device_minor || entry.start != previous.end ||
        entry.offset != previous.offset + (previous.end - previous.start))
      return false;
  }
  return true;
}

namespace {

// Opens the file behind `mapping` through map_files and maps [va, va + length) of it.
// An error means "use the remote path instead", except for those that also concern
// the remote path (the file is too short: the pages do not exist).
//
// The client may replace the mapping between the maps listing and the open, so the
// file is first taken as an O_PATH reference (which opens nothing: no request to a
// FUSE server, this daemon included) and checked to be the regular file the listing
// named; only that reference, never the client's path, is then opened for access.
Result<std::shared_ptr<Backing>> map_shared_file(pid_t pid, const MapsEntry& mapping, uint64_t va,
                                                 uint64_t length, MapAccess access) {
  const std::string path = fmt::format("/proc/{}/map_files/{}", pid, mapping.map_files_name());
  UniqueFd reference(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!reference) return fail(errno, "open {}", path);
  auto status = cached_status(reference.get());
  IOASID_TRY(status);
  if (!S_ISREG(status->stx_mode) || status->stx_ino != mapping.inode ||
      status->stx_dev_major != mapping.device_major || status->stx_dev_minor != mapping.device_minor ||
      is_served_device(makedev(status->stx_dev_major, status->stx_dev_minor)))
    return fail(ENOTSUP, "{} is not the regular file the maps listing names", path);
  const std::string own = fmt::format("/proc/self/fd/{}", reference.get());
  UniqueFd file(::open(own.c_str(), (allows_write(access) ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY));
  if (!file) return fail(errno, "open {}", path);
  auto backing = MappedFileBacking::create(
      file.get(), mapping.offset + (va - mapping.start), length, access,
      fmt::format("pid {} memory [{:#x}, {:#x}) = {}", pid, va, va + length,
                  mapping.path.empty() ? path : mapping.path));
  if (!backing) return std::move(backing).error();
  return std::shared_ptr<Backing>(std::move(*backing));
}

}  // namespace

Result<std::shared_ptr<Backing>> backing_for_range(pid_t pid, uint64_t va, uint64_t length,
                                                   MapAccess access) {
  if (length == 0 || va % kPageSize != 0 || length % kPageSize != 0)
    return fail(EINVAL, "client range {:#x}+{:#x}: both must be non-zero multiples of 4 KiB", va,
                length);
  if (va + length < va) return fail(EOVERFLOW, "client range {:#x}+{:#x} wraps around", va, length);

  // Bind the address space before looking at it: whatever is decided below, the
  // handle refers to this mm and no other.
  auto space = AddressSpace::of(pid, access);
  IOASID_TRY(space);
  return backing_for_range(std::move(*space), va, length, access);
}

Result<std::shared_ptr<Backing>> backing_for_range(std::shared_ptr<AddressSpace> space, uint64_t va,
                                                   uint64_t length, MapAccess access) {
  if (length == 0 || va % kPageSize != 0 || length % kPageSize != 0)
    return fail(EINVAL, "client range {:#x}+{:#x}: both must be non-zero multiples of 4 KiB", va,
                length);
  if (va + length < va) return fail(EOVERFLOW, "client range {:#x}+{:#x} wraps around", va, length);
  if (allows_write(access) && !space->writable())
    return fail(EACCES, "a read-only handle of pid {} cannot back a writable range", space->pid());
  const pid_t pid = space->pid();
  auto maps = read_process_maps(pid);
  if (!maps) return std::move(maps).error();
  auto covering = mappings_covering(*maps, va, length, access);
  if (!covering) {
    Error error = std::move(covering).error();
    error.why = fmt::format("pid {}: {}", pid, error.why);
    return error;
  }

  // Touching these pages would make the daemon fault in its own node (a private mmap
  // of it): a request to itself.
  for (const MapsEntry& mapping : *covering)
    if (mapping.inode != 0 && is_served_device(makedev(mapping.device_major, mapping.device_minor)))
      return fail(EINVAL, "pid {}: client memory at {:#x} is a mapping of a node this daemon serves ({})", pid,
                  std::max(va, mapping.start), mapping.path);

  const ClientOrigin origin{.kind = ClientOrigin::Kind::kProcess, .pid = pid, .at = va};
  if (is_one_shared_file(*covering)) {
    auto mapped = map_shared_file(pid, covering->front(), va, length, access);
    if (mapped) {
      (*mapped)->set_origin(origin);
      return std::move(*mapped);
    }
    // Pages past the end of the file do not exist for pinning either.
    if (mapped.code() == EINVAL) return fail(EFAULT, "pid {}: {}", pid, mapped.error().why);
    // Anything else (no CAP_SYS_ADMIN for map_files, a non-regular file): remote.
  }
  // What the pages are (a shared file's pages stay the file's, reached this way too),
  // from the same listing: the backing pins those.
  std::vector<LocatedRun> layout = locate_runs(*covering, va, length, space, nullptr);
  auto remote = std::make_shared<RemoteBacking>(std::move(space), va, length, allows_write(access),
                                               fmt::format("pid {} memory [{:#x}, {:#x})", pid, va, va + length),
                                               std::move(layout));
  remote->set_origin(origin);
  return std::shared_ptr<Backing>(std::move(remote));
}

}  // namespace ioasid

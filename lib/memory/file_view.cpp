// SPDX-License-Identifier: MIT
#include "memory/file_view.h"

#include "memory/physical_memory.h"

#include <sys/sysmacros.h>

#include <algorithm>
#include <bit>
#include <map>
#include <mutex>
#include <tuple>

namespace ioasid {
namespace {

// Beyond this a view is sized to the request exactly: doubling would waste address space.
constexpr uint64_t kLargestRoundedView = 1ull << 40;
constexpr uint64_t kSmallestView = 1ull << 21;

struct ViewKey {
  dev_t device;
  uint64_t inode;
  bool writable;
  auto operator<=>(const ViewKey&) const = default;
};

std::mutex views_mutex;
std::map<ViewKey, std::weak_ptr<FileView>> views;  // guarded by views_mutex

// The granule mmap insists on: a huge page on hugetlbfs (st_blksize), else a page.
uint64_t mapping_granule(const struct statx& status) {
  const uint64_t block = status.stx_blksize;
  if (block > kPageSize && std::has_single_bit(block) && block <= (1ull << 30)) return block;
  return kPageSize;
}

uint64_t round_up(uint64_t value, uint64_t granule) { return (value + granule - 1) & ~(granule - 1); }

uint64_t view_size(uint64_t end, uint64_t granule, uint64_t file_size) {
  const uint64_t wanted = std::max({end, kSmallestView, granule});
  const uint64_t rounded = wanted > kLargestRoundedView ? round_up(wanted, granule) : std::bit_ceil(wanted);
  if (granule == kPageSize) return rounded;
  // hugetlbfs (see the header): up to the end of the file (whole huge pages: a
  // hugetlbfs file's size is), however little that leaves for later requests.
  return std::max(round_up(end, granule), std::min(rounded, file_size & ~(granule - 1)));
}

}  // namespace

Result<std::shared_ptr<FileView>> FileView::of(int fd, const struct statx& status, uint64_t end, bool writable) {
  const ViewKey key{makedev(status.stx_dev_major, status.stx_dev_minor), status.stx_ino, writable};
  std::lock_guard lock(views_mutex);
  if (auto found = views.find(key); found != views.end()) {
    if (auto view = found->second.lock(); view && view->size() >= end && !view->broken().load()) return view;
  }
  auto mapping = Mapping::map_shared(fd, 0, view_size(end, mapping_granule(status), status.stx_size), writable);
  IOASID_TRY(mapping);
  auto view = std::make_shared<FileView>(std::move(*mapping), writable, key.device, key.inode);
  std::erase_if(views, [](const auto& entry) { return entry.second.expired(); });
  views[key] = view;
  return view;
}

}  // namespace ioasid

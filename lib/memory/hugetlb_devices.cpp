// SPDX-License-Identifier: MIT
#include "memory/hugetlb_devices.h"

#include "base/unique_fd.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <fstream>
#include <string>
#include <string_view>

namespace ioasid {
namespace {

struct InternalMounts {
  std::vector<dev_t> devices;
  uint64_t smallest_page = 0;  // 0: the kernel has no huge pages
};

// The kernel's internal hugetlbfs mount of each size in /sys/kernel/mm/hugepages
// ("hugepages-2048kB"). Making a memfd needs no huge page, only the mount.
InternalMounts find_internal_mounts() {
  InternalMounts found;
  DIR* directory = ::opendir("/sys/kernel/mm/hugepages");
  if (directory == nullptr) return found;
  while (const dirent* entry = ::readdir(directory)) {
    std::string_view name = entry->d_name;
    if (!name.starts_with("hugepages-") || !name.ends_with("kB")) continue;
    name.remove_prefix(10);
    name.remove_suffix(2);
    uint64_t kib = 0;
    if (std::from_chars(name.data(), name.data() + name.size(), kib).ec != std::errc() ||
        !std::has_single_bit(kib))
      continue;
    const uint64_t bytes = kib << 10;
    if (found.smallest_page == 0 || bytes < found.smallest_page) found.smallest_page = bytes;
    const unsigned size_flag = static_cast<unsigned>(std::countr_zero(bytes)) << MFD_HUGE_SHIFT;
    UniqueFd memfd(::memfd_create("ioasid-hugetlb-probe", MFD_CLOEXEC | MFD_HUGETLB | size_flag));
    struct stat status {};
    if (memfd && ::fstat(memfd.get(), &status) == 0) found.devices.push_back(status.st_dev);
  }
  ::closedir(directory);
  return found;
}

const InternalMounts& internal_mounts() {
  static const InternalMounts mounts = find_internal_mounts();
  return mounts;
}

// The devices of the hugetlbfs mounts in pid's mount namespace. A mountinfo line is
// "36 35 0:33 / /dev/hugepages rw,relatime shared:16 - hugetlbfs hugetlbfs rw,pagesize=2M",
// its device in decimal (maps shows it in hex).
std::vector<dev_t> read_mounted(pid_t pid) {
  std::vector<dev_t> devices;
  std::ifstream mountinfo("/proc/" + std::to_string(pid) + "/mountinfo");
  std::string line;
  while (std::getline(mountinfo, line)) {
    const size_t separator = line.find(" - ");
    if (separator == std::string::npos || line.compare(separator + 3, 10, "hugetlbfs ") != 0) continue;
    // The third field.
    size_t begin = 0;
    for (int field = 0; field < 2 && begin != std::string::npos; ++field) {
      begin = line.find(' ', begin);
      if (begin != std::string::npos) ++begin;
    }
    if (begin == std::string::npos) continue;
    const std::string_view device = std::string_view(line).substr(begin, line.find(' ', begin) - begin);
    const size_t colon = device.find(':');
    unsigned device_major = 0, device_minor = 0;
    if (colon == std::string_view::npos ||
        std::from_chars(device.data(), device.data() + colon, device_major).ec != std::errc() ||
        std::from_chars(device.data() + colon + 1, device.data() + device.size(), device_minor).ec !=
            std::errc())
      continue;
    devices.push_back(makedev(device_major, device_minor));
  }
  return devices;
}

}  // namespace

bool HugetlbDevices::is_huge(const MapsEntry& mapping) {
  const InternalMounts& internal = internal_mounts();
  if (internal.smallest_page == 0) return false;
  const dev_t device = makedev(mapping.device_major, mapping.device_minor);
  if (std::ranges::find(internal.devices, device) != internal.devices.end()) return true;
  // hugetlbfs has an anonymous device (major 0), and maps only whole huge pages.
  if (device == 0 || mapping.device_major != 0 || mapping.start % internal.smallest_page != 0 ||
      mapping.end % internal.smallest_page != 0)
    return false;
  if (!mounted_) mounted_ = read_mounted(pid_);
  return std::ranges::find(*mounted_, device) != mounted_->end();
}

}  // namespace ioasid

// SPDX-License-Identifier: MIT
// The iommu node as the iommufd examples open it: written against the kernel's uAPI
// only, they share nothing of libioasid but this.
#pragma once

#include <linux/iommufd.h>
#include "iommufd_test/iommufd_test.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace ioasid::examples {

// The node to open: --dev if given, else $IOMMU_DEV, else /dev/iommu.
inline std::string iommu_node_path(const std::string& dev_option) {
  if (!dev_option.empty()) return dev_option;
  const char* env = std::getenv("IOMMU_DEV");
  return env && *env ? env : "/dev/iommu";
}

// IOMMU_TEST_CMD with one op; the op's fields are filled by the caller.
inline iommu_test_cmd iommu_test_op(uint32_t op, uint32_t id) {
  iommu_test_cmd cmd;
  std::memset(&cmd, 0, sizeof cmd);
  cmd.op = op;
  cmd.id = id;
  return cmd;
}

// Opens it, or says why not (as `program`) and returns -1.
inline int open_iommu_node(const char* program, const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0)
    std::fprintf(stderr, "%s: cannot open %s: %s (is ioasidd serving it? set IOMMU_DEV or --dev)\n", program,
                 path.c_str(), std::strerror(errno));
  else
    std::printf("%s: opened %s\n", program, path.c_str());
  return fd;
}

}  // namespace ioasid::examples

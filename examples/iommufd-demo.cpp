// SPDX-License-Identifier: MIT
// iommufd-demo: Linux's iommufd uAPI on the daemon's iommu node, with nothing but
// <linux/iommufd.h> and the mock driver's IOMMU_TEST_CMD (iommufd_test/iommufd_test.h):
// an I/O address space, a mock device attached to it, a buffer mapped at an IOVA the
// IOAS chooses, proof that the device's domain translates that IOVA to the buffer,
// then unmap and destroy. Every step prints what it did; any failure exits 1.
//
// Two rules hold for every iommufd command: the ioctl number is _IO(';', nr) (it
// carries no size), and the struct begins with a __u32 holding its own size, which is
// how the daemon (like the kernel) knows how much of it to read from this process.
#include "common/iommu_node.h"
#include <linux/iommufd.h>
#include "iommufd_test/iommufd_test.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

constexpr size_t kBufferSize = 64 * 1024;

int step_number = 0;

void step(const char* what) { std::printf("[%d] %s\n", ++step_number, what); }

// Issues one iommufd command: sets the struct's leading size, prints a failure.
template <typename Struct>
bool issue(int fd, unsigned long cmd, const char* name, Struct& arg) {
  arg.size = sizeof arg;
  if (ioctl(fd, cmd, &arg) == 0) return true;
  std::printf("    -> %s failed: %s (errno %d)\n", name, std::strerror(errno), errno);
  return false;
}
#define ISSUE(fd, cmd, arg) issue(fd, cmd, #cmd, arg)

iommu_test_cmd test_op(uint32_t op, uint32_t id) { return ioasid::examples::iommu_test_op(op, id); }

bool destroy(int fd, uint32_t id) {
  iommu_destroy cmd = {.size = 0, .id = id};
  return ISSUE(fd, IOMMU_DESTROY, cmd);
}

// IOMMU_IOAS_IOVA_RANGES into an array of 8; EMSGSIZE would say how many there are.
bool print_iova_ranges(int fd, uint32_t ioas_id) {
  iommu_iova_range ranges[8] = {};
  iommu_ioas_iova_ranges cmd = {.size = 0,
                                .ioas_id = ioas_id,
                                .num_iovas = 8,
                                .__reserved = 0,
                                .allowed_iovas = reinterpret_cast<uintptr_t>(ranges),
                                .out_iova_alignment = 0};
  if (!ISSUE(fd, IOMMU_IOAS_IOVA_RANGES, cmd)) return false;
  std::printf("    -> %u usable range(s), IOVAs aligned to %" PRIu64 " bytes:", cmd.num_iovas,
              static_cast<uint64_t>(cmd.out_iova_alignment));
  for (uint32_t i = 0; i < cmd.num_iovas; ++i)
    std::printf(" [%#" PRIx64 ", %#" PRIx64 "]", static_cast<uint64_t>(ranges[i].start),
                static_cast<uint64_t>(ranges[i].last));
  std::printf("\n");
  return true;
}

int run(int fd, bool pause) {
  step("IOMMU_IOAS_ALLOC: an empty I/O address space");
  iommu_ioas_alloc alloc = {.size = 0, .flags = 0, .out_ioas_id = 0};
  if (!ISSUE(fd, IOMMU_IOAS_ALLOC, alloc)) return 1;
  const uint32_t ioas_id = alloc.out_ioas_id;
  std::printf("    -> IOAS %u\n", ioas_id);

  step("IOMMU_IOAS_IOVA_RANGES: with no domain every IOVA is usable");
  if (!print_iova_ranges(fd, ioas_id)) return 1;

  // The mock device comes before the MAP: its domain's aperture reserves the IOVAs it
  // cannot translate, so the automatic IOVA of the MAP lands inside it.
  step("IOMMU_TEST_CMD MOCK_DOMAIN: a mock device, bound to this file and attached to the IOAS");
  iommu_test_cmd mock = test_op(IOMMU_TEST_OP_MOCK_DOMAIN, ioas_id);
  if (!ISSUE(fd, IOMMU_TEST_CMD, mock)) return 1;
  const uint32_t stdev_id = mock.mock_domain.out_stdev_id;
  const uint32_t hwpt_id = mock.mock_domain.out_hwpt_id;
  const uint32_t dev_id = mock.mock_domain.out_idev_id;
  std::printf("    -> mock object %u, device %u, attached to the automatic paging HWPT %u\n", stdev_id, dev_id,
              hwpt_id);

  step("IOMMU_IOAS_IOVA_RANGES: now only the mock domain's aperture");
  if (!print_iova_ranges(fd, ioas_id)) return 1;

  step("IOMMU_GET_HW_INFO: what the IOMMU behind the device reports");
  iommu_test_hw_info hw = {};
  iommu_hw_info info;
  std::memset(&info, 0, sizeof info);
  info.dev_id = dev_id;
  info.data_len = sizeof hw;
  info.data_uptr = reinterpret_cast<uintptr_t>(&hw);
  if (!ISSUE(fd, IOMMU_GET_HW_INFO, info)) return 1;
  std::printf("    -> type %#x%s, %u bytes of driver data (test_reg %#x), capabilities %#" PRIx64
              "%s, PASID width %u\n",
              info.out_data_type, info.out_data_type == IOMMU_HW_INFO_TYPE_SELFTEST ? " (the mock IOMMU)" : "",
              info.data_len, hw.test_reg, static_cast<uint64_t>(info.out_capabilities),
              (info.out_capabilities & IOMMU_HW_CAP_DIRTY_TRACKING) ? " (DIRTY_TRACKING)" : "",
              info.out_max_pasid_log2);
  if (info.out_data_type != IOMMU_HW_INFO_TYPE_SELFTEST || hw.test_reg != IOMMU_HW_INFO_SELFTEST_REGVAL) {
    std::printf("    -> expected type %#x with test_reg %#x\n", IOMMU_HW_INFO_TYPE_SELFTEST,
                IOMMU_HW_INFO_SELFTEST_REGVAL);
    return 1;
  }

  void* mapped = mmap(nullptr, kBufferSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) {
    std::printf("mmap: %s\n", std::strerror(errno));
    return 1;
  }
  auto* buffer = static_cast<unsigned char*>(mapped);
  std::memset(buffer, 0x5a, kBufferSize);

  step("IOMMU_IOAS_MAP: the buffer, readable and writeable, at an IOVA the IOAS picks");
  iommu_ioas_map map = {.size = 0,
                        .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
                        .ioas_id = ioas_id,
                        .__reserved = 0,
                        .user_va = reinterpret_cast<uintptr_t>(buffer),
                        .length = kBufferSize,
                        .iova = 0};
  if (!ISSUE(fd, IOMMU_IOAS_MAP, map)) return 1;
  const uint64_t iova = map.iova;
  std::printf("    -> %zu bytes at user address %p are IOVA %#" PRIx64 "\n", kBufferSize, mapped, iova);

  step("IOMMU_TEST_CMD MD_CHECK_MAP: the domain translates every page of that IOVA to the buffer");
  iommu_test_cmd check = test_op(IOMMU_TEST_OP_MD_CHECK_MAP, hwpt_id);
  check.check_map.iova = iova;
  check.check_map.length = kBufferSize;
  check.check_map.uptr = reinterpret_cast<uintptr_t>(buffer);
  if (!ISSUE(fd, IOMMU_TEST_CMD, check)) return 1;
  std::printf("    -> HWPT %u maps [%#" PRIx64 ", +%#zx) onto the buffer's pages\n", hwpt_id, iova, kBufferSize);

  if (pause) {
    std::printf("\nthe mock device is an engine device now: 'ioasidctl devices' lists it (mock<N>).\n"
                "press Enter to go on ...");
    std::fflush(stdout);
    for (int c = std::getchar(); c != '\n' && c != EOF; c = std::getchar()) {
    }
    std::printf("\n");
  }

  step("IOMMU_IOAS_UNMAP: the whole area");
  iommu_ioas_unmap unmap = {.size = 0, .ioas_id = ioas_id, .iova = iova, .length = kBufferSize};
  if (!ISSUE(fd, IOMMU_IOAS_UNMAP, unmap)) return 1;
  std::printf("    -> %" PRIu64 " bytes unmapped\n", static_cast<uint64_t>(unmap.length));

  step("IOMMU_TEST_CMD MD_CHECK_MAP again: the IOVA must no longer translate");
  check = test_op(IOMMU_TEST_OP_MD_CHECK_MAP, hwpt_id);
  check.check_map.iova = iova;
  check.check_map.length = kBufferSize;
  check.check_map.uptr = reinterpret_cast<uintptr_t>(buffer);
  check.size = sizeof check;
  if (ioctl(fd, IOMMU_TEST_CMD, &check) == 0) {
    std::printf("    -> the domain still maps IOVA %#" PRIx64 "\n", iova);
    return 1;
  }
  std::printf("    -> refused as it should be: %s\n", std::strerror(errno));

  step("IOMMU_DESTROY: the mock device (its automatic HWPT goes with it), then the IOAS");
  if (!destroy(fd, stdev_id) || !destroy(fd, ioas_id)) return 1;
  std::printf("    -> mock object %u and IOAS %u destroyed\n", stdev_id, ioas_id);
  munmap(mapped, kBufferSize);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  bool pause = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--dev" && i + 1 < argc) {
      path = argv[++i];
    } else if (arg == "--pause") {
      pause = true;
    } else if (arg == "-h" || arg == "--help") {
      std::printf(
          "Usage: iommufd-demo [--dev PATH] [--pause]\n"
          "Drives Linux's iommufd uAPI on the daemon's iommu node: IOAS_ALLOC, a mock device\n"
          "(IOMMU_TEST_CMD MOCK_DOMAIN), GET_HW_INFO, IOVA_RANGES, IOAS_MAP of a buffer at an\n"
          "automatic IOVA, MD_CHECK_MAP, IOAS_UNMAP and DESTROY. Exits 1 if any step fails.\n\n"
          "Options:\n"
          "  -h, --help    print this help and exit\n"
          "  --version     print the version and exit\n"
          "  --dev PATH    the node to open (default: $IOMMU_DEV, else /dev/iommu)\n"
          "  --pause       wait for Enter while the buffer is mapped (to look with ioasidctl)\n");
      return 0;
    } else if (arg == "--version") {
      std::printf("iommufd-demo %s\n", IOASID_VERSION);
      return 0;
    } else {
      std::fprintf(stderr, "iommufd-demo: %s: unknown option\nTry 'iommufd-demo --help'.\n", arg.c_str());
      return 2;
    }
  }
  path = ioasid::examples::iommu_node_path(path);
  const int fd = ioasid::examples::open_iommu_node("iommufd-demo", path);
  if (fd < 0) return 1;
  // On a failure the objects made so far are left to close(): it destroys them all.
  const int status = run(fd, pause);
  close(fd);
  std::printf(status == 0 ? "\niommufd-demo: every step succeeded\n" : "\niommufd-demo: FAILED\n");
  return status;
}

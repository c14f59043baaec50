// SPDX-License-Identifier: MIT
// Helpers of the iommufd node's conformance tests (iommu_node_test.cpp, iommu_fd_test.cpp):
// the node beside the ioasid node, an open file of it, ioctl wrappers returning errno,
// mock devices and the mock driver's checks, the selftest's buffer.
#pragma once

#include "harness.hpp"

#include <linux/iommufd.h>
#include "iommufd_test/iommufd_test.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

namespace conf::iommu {

constexpr uint64_t k4K = 4096;
constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
constexpr uint32_t kMapRW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

// The iommufd node of a daemon whose ioasid node is `ioasid_node`: its sibling.
inline std::string iommu_beside(const std::string& ioasid_node) {
  return ioasid_node.substr(0, ioasid_node.rfind('/') + 1) + "iommu";
}

inline std::string file_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}
inline bool contains(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

// An open file of an iommufd node; the fd closes with it.
class IommuFile {
 public:
  explicit IommuFile(const std::string& path = iommu_beside(node_path()))
      : fd_(::open(path.c_str(), O_RDWR | O_CLOEXEC)), errno_(fd_ < 0 ? errno : 0) {}
  ~IommuFile() { close(); }
  IommuFile(const IommuFile&) = delete;
  IommuFile& operator=(const IommuFile&) = delete;
  int fd() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  int open_errno() const { return errno_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
  int errno_;
};

#define SKIP_WITHOUT_IOMMU_NODE()                                                                   \
  if (::access(iommu_beside(node_path()).c_str(), F_OK) != 0)                                      \
  GTEST_SKIP() << "no iommufd node beside " << node_path()

// ---------------------------------------------------------------- ioctl helpers

template <class T>
T command() {
  T cmd{};
  cmd.size = sizeof(T);
  return cmd;
}

inline Errno ioas_alloc(int fd, uint32_t* id) {
  auto cmd = command<iommu_ioas_alloc>();
  const Errno err = ioctl_errno(fd, IOMMU_IOAS_ALLOC, &cmd);
  if (id) *id = cmd.out_ioas_id;
  return err;
}
inline uint32_t must_ioas(int fd) {
  uint32_t id = 0;
  const Errno err = ioas_alloc(fd, &id);
  if (err != kOk) throw SetupFailed("IOMMU_IOAS_ALLOC: " + errno_name(err.value));
  return id;
}
inline Errno destroy(int fd, uint32_t id) {
  auto cmd = command<iommu_destroy>();
  cmd.id = id;
  return ioctl_errno(fd, IOMMU_DESTROY, &cmd);
}

inline iommu_test_cmd test_command(uint32_t op, uint32_t id) {
  auto cmd = command<iommu_test_cmd>();
  cmd.op = op;
  cmd.id = id;
  return cmd;
}

// A mock device attached to `pt_id` (an IOAS: its automatic domain).
struct Mock {
  uint32_t stdev = 0, hwpt = 0, idev = 0;
};
inline Errno mock_domain(int fd, uint32_t pt_id, Mock* out) {
  auto cmd = test_command(IOMMU_TEST_OP_MOCK_DOMAIN, pt_id);
  const Errno err = ioctl_errno(fd, IOMMU_TEST_CMD, &cmd);
  if (out) *out = {cmd.mock_domain.out_stdev_id, cmd.mock_domain.out_hwpt_id, cmd.mock_domain.out_idev_id};
  return err;
}
inline Mock must_mock(int fd, uint32_t pt_id) {
  Mock mock;
  const Errno err = mock_domain(fd, pt_id, &mock);
  if (err != kOk) throw SetupFailed("IOMMU_TEST_OP_MOCK_DOMAIN: " + errno_name(err.value));
  return mock;
}

inline Errno check_map(int fd, uint32_t hwpt, uint64_t iova, uint64_t length, const void* uptr) {
  auto cmd = test_command(IOMMU_TEST_OP_MD_CHECK_MAP, hwpt);
  cmd.check_map = {.iova = iova, .length = length, .uptr = reinterpret_cast<uint64_t>(uptr)};
  return ioctl_errno(fd, IOMMU_TEST_CMD, &cmd);
}
inline Errno check_refs(int fd, const void* uptr, uint64_t length, uint32_t refs) {
  auto cmd = test_command(IOMMU_TEST_OP_MD_CHECK_REFS, 0);
  cmd.check_refs = {.length = length, .uptr = reinterpret_cast<uint64_t>(uptr), .refs = refs};
  return ioctl_errno(fd, IOMMU_TEST_CMD, &cmd);
}

inline Errno ioas_map(int fd, uint32_t ioas, const void* va, uint64_t length, uint64_t* iova, uint32_t flags = kMapRW) {
  auto cmd = command<iommu_ioas_map>();
  cmd.flags = flags;
  cmd.ioas_id = ioas;
  cmd.user_va = reinterpret_cast<uint64_t>(va);
  cmd.length = length;
  cmd.iova = iova ? *iova : 0;
  const Errno err = ioctl_errno(fd, IOMMU_IOAS_MAP, &cmd);
  if (iova) *iova = cmd.iova;
  return err;
}
inline Errno ioas_unmap(int fd, uint32_t ioas, uint64_t iova, uint64_t length, uint64_t* unmapped = nullptr) {
  auto cmd = command<iommu_ioas_unmap>();
  cmd.ioas_id = ioas;
  cmd.iova = iova;
  cmd.length = length;
  const Errno err = ioctl_errno(fd, IOMMU_IOAS_UNMAP, &cmd);
  if (unmapped) *unmapped = cmd.length;
  return err;
}

// The selftest's buffer: 16 pages of MAP_SHARED anonymous memory, unmapped on scope exit.
struct Buffer {
  explicit Buffer(uint64_t bytes = 16 * k4K) : size(bytes) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED) << std::strerror(errno);
    data = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
    if (data) std::memset(data, 0x5a, size);
  }
  ~Buffer() {
    if (data) ::munmap(data, size);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  uint64_t size;
  uint8_t* data = nullptr;
};

// A page of this process followed by nothing: a struct placed at its end has an
// unmapped tail. (Unmapped, not PROT_NONE: /proc/PID/mem would read through that.)
struct PageBeforeAHole {
  PageBeforeAHole() {
    void* p = ::mmap(nullptr, 2 * k4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED) << std::strerror(errno);
    if (p == MAP_FAILED) return;
    page = static_cast<uint8_t*>(p);
    ::munmap(page + k4K, k4K);
    std::memset(page, 0, k4K);
  }
  ~PageBeforeAHole() {
    if (page) ::munmap(page, k4K);
  }
  PageBeforeAHole(const PageBeforeAHole&) = delete;
  PageBeforeAHole& operator=(const PageBeforeAHole&) = delete;
  // A T at the end of the page, its fields as given; its size field left to the caller.
  template <class T>
  T* at_end(const T& value) {
    auto* slot = reinterpret_cast<T*>(page + k4K - sizeof(T));
    std::memcpy(static_cast<void*>(slot), &value, sizeof(T));
    return slot;
  }
  uint8_t* page = nullptr;
};

}  // namespace conf::iommu

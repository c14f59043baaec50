// SPDX-License-Identifier: MIT
// iommufd's commands that hand the caller a file (uapi/linux/ioasid_iommu_fd.h):
// IOASID_IOMMU_FD_CMD makes the object and a token, a file of the companion node
// given the token becomes the object, closing that file ends it. Here the selftest's
// access object, driven by hand through the protocol's rows, and its operations
// (ACCESS_RW, ACCESS_PAGES, DESTROY_ACCESS_PAGES, REPLACE_IOAS) with iommufd's rules.
#include "harness.hpp"
#include "iommu_helpers.hpp"

#include <linux/ioasid_iommu_fd.h>

#include <poll.h>

#include <thread>

namespace conf {
namespace {

using namespace conf::iommu;

std::string companion_path() { return iommu_beside(node_path()) + "-fd"; }

#define SKIP_WITHOUT_COMPANION_NODE()                                                   \
  SKIP_WITHOUT_IOMMU_NODE();                                                            \
  if (::access(companion_path().c_str(), F_OK) != 0)                                    \
  GTEST_SKIP() << "no companion node " << companion_path()

// Step 1: the command, with the token it returns.
Errno fd_cmd(int fd, uint32_t cmd, void* arg, uint64_t* token) {
  auto outer = command<ioasid_iommu_fd_cmd>();
  outer.cmd = cmd;
  outer.cmd_uptr = reinterpret_cast<uint64_t>(arg);
  const Errno err = ioctl_errno(fd, IOASID_IOMMU_FD_CMD, &outer);
  if (token) *token = outer.out_token;
  return err;
}

Errno attach(int companion, uint64_t token, int fd_number) {
  ioasid_iommu_fd_attach cmd{.token = token, .fd_number = fd_number, .__reserved = 0};
  return ioctl_errno(companion, IOASID_IOMMU_FD_ATTACH, &cmd);
}

// An object made through both steps, as its companion file (closed on scope exit).
class ObjectFile {
 public:
  ObjectFile(int iommu_fd, uint32_t cmd, void* arg) {
    uint64_t token = 0;
    make_errno_ = fd_cmd(iommu_fd, cmd, arg, &token);
    if (make_errno_ != kOk) return;
    fd_ = ::open(companion_path().c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) throw SetupFailed("open " + companion_path() + ": " + std::strerror(errno));
    if (const Errno err = attach(fd_, token, fd_); err != kOk)
      throw SetupFailed("IOASID_IOMMU_FD_ATTACH: " + errno_name(err.value));
  }
  ~ObjectFile() { close(); }
  ObjectFile(const ObjectFile&) = delete;
  ObjectFile& operator=(const ObjectFile&) = delete;
  Errno make_errno() const { return make_errno_; }
  int fd() const { return fd_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  Errno make_errno_{kOk};
  int fd_ = -1;
};

iommu_test_cmd create_access_command(uint32_t ioas, uint32_t flags) {
  auto cmd = test_command(IOMMU_TEST_OP_CREATE_ACCESS, ioas);
  cmd.create_access.flags = flags;
  return cmd;
}

// An access: the selftest names it by its file's number.
class AccessFile : public ObjectFile {
 public:
  AccessFile(int iommu_fd, uint32_t ioas, uint32_t flags = 0)
      : AccessFile(iommu_fd, create_access_command(ioas, flags)) {}
  uint32_t id() const { return static_cast<uint32_t>(fd()); }

 private:
  AccessFile(int iommu_fd, iommu_test_cmd cmd) : ObjectFile(iommu_fd, IOMMU_TEST_CMD, &cmd) {}
};

Errno access_rw(int fd, uint32_t access, uint64_t iova, void* buffer, uint64_t length, uint32_t flags) {
  auto cmd = test_command(IOMMU_TEST_OP_ACCESS_RW, access);
  cmd.access_rw = {.iova = iova, .length = length, .uptr = reinterpret_cast<uint64_t>(buffer), .flags = flags};
  return ioctl_errno(fd, IOMMU_TEST_CMD, &cmd);
}
Errno access_pages(int fd, uint32_t access, uint64_t iova, uint64_t length, const void* uptr, uint32_t* id,
                   uint32_t flags = 0) {
  auto cmd = test_command(IOMMU_TEST_OP_ACCESS_PAGES, access);
  cmd.access_pages = {.flags = flags, .iova = iova, .length = length, .uptr = reinterpret_cast<uint64_t>(uptr)};
  const Errno err = ioctl_errno(fd, IOMMU_TEST_CMD, &cmd);
  if (id) *id = cmd.access_pages.out_access_pages_id;
  return err;
}
Errno destroy_access_pages(int fd, uint32_t access, uint32_t pages_id) {
  auto cmd = test_command(IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, access);
  cmd.destroy_access_pages.access_pages_id = pages_id;
  return ioctl_errno(fd, IOMMU_TEST_CMD, &cmd);
}

// A fault queue: its object id beside its file.
class FaultFile : public ObjectFile {
 public:
  explicit FaultFile(int iommu_fd) : FaultFile(iommu_fd, command<iommu_fault_alloc>()) {}
  uint32_t id = 0;

 private:
  FaultFile(int iommu_fd, iommu_fault_alloc cmd) : ObjectFile(iommu_fd, IOMMU_FAULT_QUEUE_ALLOC, &cmd) {
    id = cmd.out_fault_id;
  }
};

Errno hwpt_alloc(int fd, uint32_t dev, uint32_t pt, uint32_t flags, uint32_t* out, uint32_t data_type = 0,
                 const void* data = nullptr, uint32_t data_len = 0, uint32_t fault_id = 0) {
  auto cmd = command<iommu_hwpt_alloc>();
  cmd.flags = flags;
  cmd.dev_id = dev;
  cmd.pt_id = pt;
  cmd.data_type = data_type;
  cmd.data_len = data_len;
  cmd.data_uptr = reinterpret_cast<uint64_t>(data);
  cmd.fault_id = fault_id;
  const Errno err = ioctl_errno(fd, IOMMU_HWPT_ALLOC, &cmd);
  if (out) *out = cmd.out_hwpt_id;
  return err;
}

Errno check_iotlb(int fd, uint32_t hwpt, uint32_t entry, uint32_t value) {
  auto cmd = test_command(IOMMU_TEST_OP_MD_CHECK_IOTLB, hwpt);
  cmd.check_iotlb = {.id = entry, .iotlb = value};
  return ioctl_errno(fd, IOMMU_TEST_CMD, &cmd);
}

Errno invalidate(int fd, uint32_t hwpt, const iommu_hwpt_invalidate_selftest* entries, uint32_t entry_len,
                 uint32_t* entry_num, uint32_t data_type = IOMMU_HWPT_INVALIDATE_DATA_SELFTEST) {
  auto cmd = command<iommu_hwpt_invalidate>();
  cmd.hwpt_id = hwpt;
  cmd.data_uptr = reinterpret_cast<uint64_t>(entries);
  cmd.data_type = data_type;
  cmd.entry_len = entry_len;
  cmd.entry_num = *entry_num;
  const Errno err = ioctl_errno(fd, IOMMU_HWPT_INVALIDATE, &cmd);
  *entry_num = cmd.entry_num;
  return err;
}

Errno replace(int fd, uint32_t stdev, uint32_t pt) {
  auto cmd = test_command(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev);
  cmd.mock_domain_replace.pt_id = pt;
  return ioctl_errno(fd, IOMMU_TEST_CMD, &cmd);
}

Errno trigger_iopf(int fd, uint32_t dev, uint32_t pasid, uint32_t grpid, uint64_t addr) {
  auto cmd = test_command(IOMMU_TEST_OP_TRIGGER_IOPF, 0);
  cmd.trigger_iopf = {.dev_id = dev, .pasid = pasid, .grpid = grpid, .perm = IOMMU_PGFAULT_PERM_READ, .addr = addr};
  return ioctl_errno(fd, IOMMU_TEST_CMD, &cmd);
}

// A FUSE release reaches the daemon after close(2) returned: what a close frees is
// looked for until it is (bounded).
template <typename Check>
bool eventually(Check check) {
  for (int i = 0; i < 200; ++i) {
    if (check()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return check();
}

// ================================================================ the protocol's rows

TEST(IommuFdObjects, ThePlainIoctlCannotHandOutAFile) {
  SKIP_WITHOUT_IOMMU_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok());
  const uint32_t ioas = must_ioas(file.fd());
  auto cmd = test_command(IOMMU_TEST_OP_CREATE_ACCESS, ioas);
  EXPECT_EQ(ioctl_errno(file.fd(), IOMMU_TEST_CMD, &cmd), Errno{EOPNOTSUPP});
  // Nothing was made: the IOAS has no user.
  EXPECT_EQ(destroy(file.fd(), ioas), kOk);
}

TEST(IommuFdObjects, FdCmdRows) {
  SKIP_WITHOUT_COMPANION_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok());
  const uint32_t ioas = must_ioas(file.fd());
  auto create = test_command(IOMMU_TEST_OP_CREATE_ACCESS, ioas);
  // A command that hands out no file, and a test op that makes none: EINVAL, nothing run.
  auto alloc = command<iommu_ioas_alloc>();
  EXPECT_EQ(fd_cmd(file.fd(), IOMMU_IOAS_ALLOC, &alloc, nullptr), Errno{EINVAL});
  auto add = test_command(IOMMU_TEST_OP_ADD_RESERVED, ioas);
  add.add_reserved = {.start = 1ull << 40, .length = k4K};
  EXPECT_EQ(fd_cmd(file.fd(), IOMMU_TEST_CMD, &add, nullptr), Errno{EINVAL});
  uint64_t iova = 1ull << 40;
  Buffer buffer(k4K);
  EXPECT_EQ(ioas_map(file.fd(), ioas, buffer.data, k4K, &iova, kMapRW | IOMMU_IOAS_MAP_FIXED_IOVA), kOk)
      << "ADD_RESERVED ran inside a refused IOASID_IOMMU_FD_CMD";
  // Flags and reserved bits, as iommufd's own structs.
  auto outer = command<ioasid_iommu_fd_cmd>();
  outer.cmd = IOMMU_TEST_CMD;
  outer.cmd_uptr = reinterpret_cast<uint64_t>(&create);
  outer.flags = 1;
  EXPECT_EQ(ioctl_errno(file.fd(), IOASID_IOMMU_FD_CMD, &outer), Errno{EOPNOTSUPP});
  outer.flags = 0;
  outer.size = offsetof(ioasid_iommu_fd_cmd, cmd_uptr);
  EXPECT_EQ(ioctl_errno(file.fd(), IOASID_IOMMU_FD_CMD, &outer), Errno{EINVAL});
  // The inner command's own rows: no such IOAS.
  create.id = ioas + 100;
  EXPECT_EQ(fd_cmd(file.fd(), IOMMU_TEST_CMD, &create, nullptr), Errno{ENOENT});
}

TEST(IommuFdObjects, AttachRows) {
  SKIP_WITHOUT_COMPANION_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok());
  const uint32_t ioas = must_ioas(file.fd());
  auto create = test_command(IOMMU_TEST_OP_CREATE_ACCESS, ioas);
  uint64_t token = 0;
  ASSERT_EQ(fd_cmd(file.fd(), IOMMU_TEST_CMD, &create, &token), kOk);
  EXPECT_NE(token, 0u);
  EXPECT_EQ(create.create_access.out_access_fd, ~0u) << "the file comes with the token, not from the daemon";
  const int companion = ::open(companion_path().c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(companion, 0) << std::strerror(errno);
  EXPECT_EQ(attach(companion, token ^ 1, -1), Errno{ENOENT}) << "a token nobody issued";
  ioasid_iommu_fd_attach reserved{.token = token, .fd_number = -1, .__reserved = 1};
  EXPECT_EQ(ioctl_errno(companion, IOASID_IOMMU_FD_ATTACH, &reserved), Errno{EINVAL});
  ASSERT_EQ(attach(companion, token, -1), kOk);
  EXPECT_EQ(attach(companion, token, -1), Errno{EBUSY}) << "the file is an object already";
  const int second = ::open(companion_path().c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(second, 0);
  EXPECT_EQ(attach(second, token, -1), Errno{ENOENT}) << "a token is good once";
  // Unnamed yet: the selftest's id (the file's number) finds no access.
  Buffer buffer(k4K);
  uint64_t iova = 0;
  ASSERT_EQ(ioas_map(file.fd(), ioas, buffer.data, k4K, &iova), kOk);
  uint8_t byte = 0;
  EXPECT_EQ(access_rw(file.fd(), companion, iova, &byte, 1, 0), Errno{EBADFD});
  int32_t number = companion;
  EXPECT_EQ(ioctl_errno(companion, IOASID_IOMMU_FD_SET_NUMBER, &number), kOk);
  EXPECT_EQ(access_rw(file.fd(), companion, iova, &byte, 1, 0), kOk);
  EXPECT_EQ(byte, 0x5a);
  EXPECT_EQ(ioctl_errno(second, IOASID_IOMMU_FD_SET_NUMBER, &number), Errno{EINVAL}) << "not attached";
  ::close(second);
  ::close(companion);
}

TEST(IommuFdObjects, TheAccessLivesAsLongAsItsFile) {
  SKIP_WITHOUT_COMPANION_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok());
  const uint32_t ioas = must_ioas(file.fd());
  AccessFile access(file.fd(), ioas);
  ASSERT_EQ(access.make_errno(), kOk);
  // The access holds its IOAS; DESTROY of the access itself is EBUSY, as iommufd's.
  EXPECT_EQ(destroy(file.fd(), ioas), Errno{EBUSY});
  EXPECT_EQ(destroy(file.fd(), ioas + 1), Errno{EBUSY}) << "the access took the next id";
  access.close();
  EXPECT_TRUE(eventually([&] { return destroy(file.fd(), ioas) == kOk; })) << "the closed access still holds the IOAS";
}

TEST(IommuFdObjects, AnotherFilesAccessIsNotFound) {
  SKIP_WITHOUT_COMPANION_NODE();
  IommuFile mine, theirs;
  ASSERT_TRUE(mine.ok() && theirs.ok());
  AccessFile access(theirs.fd(), must_ioas(theirs.fd()));
  ASSERT_EQ(access.make_errno(), kOk);
  must_ioas(mine.fd());
  uint8_t byte = 0;
  EXPECT_EQ(access_rw(mine.fd(), access.id(), 0, &byte, 1, 0), Errno{EBADFD});
}

// ================================================================ the access's operations

TEST(IommuFdObjects, ReadAndWriteByIova) {
  SKIP_WITHOUT_COMPANION_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok());
  const uint32_t ioas = must_ioas(file.fd());
  AccessFile access(file.fd(), ioas);
  ASSERT_EQ(access.make_errno(), kOk);
  Buffer buffer(4 * k4K);
  for (uint64_t i = 0; i < buffer.size; ++i) buffer.data[i] = static_cast<uint8_t>(i * 13);
  uint64_t iova = 0;
  ASSERT_EQ(ioas_map(file.fd(), ioas, buffer.data, buffer.size, &iova, IOMMU_IOAS_MAP_READABLE), kOk);
  std::vector<uint8_t> out(3 * k4K);
  ASSERT_EQ(access_rw(file.fd(), access.id(), iova + 100, out.data(), out.size(), 0), kOk);
  EXPECT_EQ(std::memcmp(out.data(), buffer.data + 100, out.size()), 0);
  // The area is read-only: a write is EPERM; past the area ENOENT; length 0 EINVAL.
  EXPECT_EQ(access_rw(file.fd(), access.id(), iova, out.data(), 1, MOCK_ACCESS_RW_WRITE), Errno{EPERM});
  EXPECT_EQ(access_rw(file.fd(), access.id(), iova + buffer.size - 1, out.data(), 2, 0), Errno{ENOENT});
  EXPECT_EQ(access_rw(file.fd(), access.id(), iova, out.data(), 0, 0), Errno{EINVAL});
  EXPECT_EQ(access_rw(file.fd(), access.id(), iova, out.data(), 1, 1u << 5), Errno{EOPNOTSUPP});
  EXPECT_EQ(access_rw(file.fd(), access.id(), iova, out.data(), (16ull << 20) + 1, 0), Errno{ENOMEM});
  // A writeable area takes the caller's bytes.
  ASSERT_EQ(ioas_unmap(file.fd(), ioas, iova, buffer.size), kOk);
  ASSERT_EQ(ioas_map(file.fd(), ioas, buffer.data, buffer.size, &iova), kOk);
  std::memset(out.data(), 0xc3, out.size());
  ASSERT_EQ(access_rw(file.fd(), access.id(), iova + k4K - 7, out.data(), 20, MOCK_ACCESS_RW_WRITE), kOk);
  EXPECT_EQ(buffer.data[k4K - 7], 0xc3);
  EXPECT_EQ(buffer.data[k4K + 12], 0xc3);
  EXPECT_NE(buffer.data[k4K + 13], 0xc3);
}

TEST(IommuFdObjects, PinnedPagesCountAndUnmapTakesThem) {
  SKIP_WITHOUT_COMPANION_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok());
  const uint32_t ioas = must_ioas(file.fd());
  AccessFile plain(file.fd(), ioas);
  AccessFile access(file.fd(), ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
  ASSERT_EQ(access.make_errno(), kOk);
  Buffer buffer(4 * k4K);
  uint64_t iova = 0;
  ASSERT_EQ(ioas_map(file.fd(), ioas, buffer.data, buffer.size, &iova), kOk);
  uint32_t id = 0;
  EXPECT_EQ(access_pages(file.fd(), plain.id(), iova, k4K, nullptr, &id), Errno{EOPNOTSUPP}) << "no NEEDS_PIN_PAGES";
  EXPECT_EQ(access_pages(file.fd(), access.id(), iova + 1, k4K, nullptr, &id), Errno{EINVAL}) << "not whole pages";
  EXPECT_EQ(access_pages(file.fd(), access.id(), iova, 2 * k4K, buffer.data + k4K, &id), Errno{EBADE})
      << "uptr maps other pages";
  EXPECT_EQ(check_refs(file.fd(), buffer.data, buffer.size, 0), kOk) << "a failed pin keeps nothing";
  ASSERT_EQ(access_pages(file.fd(), access.id(), iova, 2 * k4K, buffer.data, &id), kOk);
  EXPECT_EQ(check_refs(file.fd(), buffer.data, 2 * k4K, 1), kOk);
  EXPECT_EQ(check_refs(file.fd(), buffer.data + 2 * k4K, 2 * k4K, 0), kOk);
  // UNMAP tells the access first: its pins go, and so does its item.
  ASSERT_EQ(ioas_unmap(file.fd(), ioas, iova, buffer.size), kOk);
  EXPECT_EQ(destroy_access_pages(file.fd(), access.id(), id), Errno{ENOENT});
  EXPECT_EQ(check_refs(file.fd(), buffer.data, buffer.size, 0), kOk);
  // Pinned again, then given back by id; a closed access gives back what it held.
  ASSERT_EQ(ioas_map(file.fd(), ioas, buffer.data, buffer.size, &iova), kOk);
  ASSERT_EQ(access_pages(file.fd(), access.id(), iova, k4K, buffer.data, &id), kOk);
  EXPECT_EQ(destroy_access_pages(file.fd(), access.id(), id), kOk);
  ASSERT_EQ(access_pages(file.fd(), access.id(), iova, k4K, buffer.data, &id), kOk);
  access.close();
  EXPECT_EQ(check_refs(file.fd(), buffer.data, k4K, 0), kOk);
}

TEST(IommuFdObjects, AnAccessAlignsItsIoas) {
  SKIP_WITHOUT_COMPANION_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok());
  const uint32_t ioas = must_ioas(file.fd());
  Buffer buffer(2 * k4K);
  uint64_t iova = 1ull << 30;
  // An area at a 2 KiB offset is fine until an access that pins pages needs 4 KiB.
  ASSERT_EQ(ioas_map(file.fd(), ioas, buffer.data + 2048, 2048, &iova, kMapRW | IOMMU_IOAS_MAP_FIXED_IOVA), kOk);
  AccessFile pinning(file.fd(), ioas, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
  EXPECT_EQ(pinning.make_errno(), Errno{EADDRINUSE});
  AccessFile plain(file.fd(), ioas);
  EXPECT_EQ(plain.make_errno(), kOk);
}

TEST(IommuFdObjects, ReplaceIoasReleasesTheOldOnesPins) {
  SKIP_WITHOUT_COMPANION_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok());
  const uint32_t first = must_ioas(file.fd()), second = must_ioas(file.fd());
  AccessFile access(file.fd(), first, MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
  ASSERT_EQ(access.make_errno(), kOk);
  Buffer buffer(k4K);
  uint64_t iova = 0;
  ASSERT_EQ(ioas_map(file.fd(), first, buffer.data, k4K, &iova), kOk);
  uint32_t id = 0;
  ASSERT_EQ(access_pages(file.fd(), access.id(), iova, k4K, buffer.data, &id), kOk);
  auto replace = test_command(IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, access.id());
  replace.access_replace_ioas.ioas_id = second + 100;
  EXPECT_EQ(ioctl_errno(file.fd(), IOMMU_TEST_CMD, &replace), Errno{ENOENT});
  replace.access_replace_ioas.ioas_id = second;
  ASSERT_EQ(ioctl_errno(file.fd(), IOMMU_TEST_CMD, &replace), kOk);
  EXPECT_EQ(check_refs(file.fd(), buffer.data, k4K, 0), kOk);
  EXPECT_EQ(destroy(file.fd(), first), kOk) << "the access left the first IOAS";
  EXPECT_EQ(destroy(file.fd(), second), Errno{EBUSY});
}

// ================================================================ nested HWPTs

TEST(IommuNested, AllocRows) {
  SKIP_WITHOUT_IOMMU_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok());
  const uint32_t ioas = must_ioas(file.fd());
  const Mock mock = must_mock(file.fd(), ioas);
  uint32_t parent = 0, plain = 0, nested = 0, other = 0;
  ASSERT_EQ(hwpt_alloc(file.fd(), mock.idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent), kOk);
  ASSERT_EQ(hwpt_alloc(file.fd(), mock.idev, ioas, 0, &plain), kOk);
  const iommu_hwpt_selftest data{.iotlb = IOMMU_TEST_IOTLB_DEFAULT};
  const uint32_t type = IOMMU_HWPT_DATA_SELFTEST, len = sizeof data;
  EXPECT_EQ(hwpt_alloc(file.fd(), mock.idev, parent, 0, &nested, IOMMU_HWPT_DATA_NONE, &data, len), Errno{EINVAL});
  EXPECT_EQ(hwpt_alloc(file.fd(), mock.idev, parent, 0, &nested, type + 1, &data, len), Errno{EOPNOTSUPP});
  EXPECT_EQ(hwpt_alloc(file.fd(), mock.idev, parent, 0, &nested, type, &data, len - 1), Errno{EINVAL});
  EXPECT_EQ(hwpt_alloc(file.fd(), mock.idev, parent, 0, &nested, type, &data, len + 1), Errno{EINVAL});
  EXPECT_EQ(hwpt_alloc(file.fd(), mock.idev, parent, 0, &nested, type, nullptr, len), Errno{EFAULT});
  EXPECT_EQ(hwpt_alloc(file.fd(), mock.idev, parent, IOMMU_HWPT_ALLOC_NEST_PARENT, &nested, type, &data, len),
            Errno{EOPNOTSUPP});
  EXPECT_EQ(hwpt_alloc(file.fd(), mock.idev, plain, 0, &nested, type, &data, len), Errno{EINVAL})
      << "a parent without NEST_PARENT";
  EXPECT_EQ(hwpt_alloc(file.fd(), mock.idev, ioas, IOMMU_HWPT_FAULT_ID_VALID, &nested), Errno{EOPNOTSUPP})
      << "a paging HWPT takes no fault queue";
  ASSERT_EQ(hwpt_alloc(file.fd(), mock.idev, parent, 0, &nested, type, &data, len), kOk);
  EXPECT_EQ(hwpt_alloc(file.fd(), mock.idev, nested, 0, &other, type, &data, len), Errno{EINVAL}) << "nested on nested";
  EXPECT_EQ(hwpt_alloc(file.fd(), mock.idev, parent, IOMMU_HWPT_FAULT_ID_VALID, &other, type, &data, len, 999),
            Errno{ENOENT});
  for (uint32_t entry = 0; entry < 4; ++entry) EXPECT_EQ(check_iotlb(file.fd(), nested, entry, IOMMU_TEST_IOTLB_DEFAULT), kOk);
  EXPECT_EQ(check_iotlb(file.fd(), nested, 4, IOMMU_TEST_IOTLB_DEFAULT), Errno{EINVAL});
  EXPECT_EQ(destroy(file.fd(), parent), Errno{EBUSY}) << "the nested HWPT holds its parent";
  // A device on the nested HWPT is translated by the parent's table.
  ASSERT_EQ(replace(file.fd(), mock.stdev, nested), kOk);
  EXPECT_EQ(destroy(file.fd(), nested), Errno{EBUSY});
  Buffer buffer(k4K);
  uint64_t iova = MOCK_APERTURE_START;
  ASSERT_EQ(ioas_map(file.fd(), ioas, buffer.data, k4K, &iova, kMapRW | IOMMU_IOAS_MAP_FIXED_IOVA), kOk);
  EXPECT_EQ(check_map(file.fd(), parent, iova, k4K, buffer.data), kOk);
  ASSERT_EQ(replace(file.fd(), mock.stdev, ioas), kOk);
  EXPECT_EQ(destroy(file.fd(), nested), kOk);
  EXPECT_EQ(destroy(file.fd(), parent), kOk);
}

TEST(IommuNested, InvalidateStopsAtTheFirstBadEntry) {
  SKIP_WITHOUT_IOMMU_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok());
  const uint32_t ioas = must_ioas(file.fd());
  const Mock mock = must_mock(file.fd(), ioas);
  uint32_t parent = 0, nested = 0;
  ASSERT_EQ(hwpt_alloc(file.fd(), mock.idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent), kOk);
  const iommu_hwpt_selftest data{.iotlb = IOMMU_TEST_IOTLB_DEFAULT};
  ASSERT_EQ(hwpt_alloc(file.fd(), mock.idev, parent, 0, &nested, IOMMU_HWPT_DATA_SELFTEST, &data, sizeof data), kOk);
  iommu_hwpt_invalidate_selftest entries[2] = {};
  const uint32_t len = sizeof entries[0];
  uint32_t num = 1;
  EXPECT_EQ(invalidate(file.fd(), parent, entries, len, &num), Errno{ENOENT}) << "only nested HWPTs";
  EXPECT_EQ(num, 0u);
  num = 1;
  EXPECT_EQ(invalidate(file.fd(), nested, entries, len, &num, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID),
            Errno{EINVAL});
  num = 1;
  EXPECT_EQ(invalidate(file.fd(), nested, entries, len + 1, &num), Errno{EINVAL}) << "longer than the driver knows";
  num = 1;
  EXPECT_EQ(invalidate(file.fd(), nested, nullptr, len, &num), Errno{EINVAL});
  num = 1u << 20;
  EXPECT_EQ(invalidate(file.fd(), nested, entries, len, &num), Errno{EINVAL}) << "above the kernel's 2^19 entries";
  EXPECT_EQ(num, 0u);
  // The first entry is done, the second refused: entry_num says 1.
  entries[0] = {.flags = 0, .iotlb_id = 0};
  entries[1] = {.flags = 0, .iotlb_id = MOCK_NESTED_DOMAIN_IOTLB_ID_MAX + 1};
  num = 2;
  EXPECT_EQ(invalidate(file.fd(), nested, entries, len, &num), Errno{EINVAL});
  EXPECT_EQ(num, 1u);
  EXPECT_EQ(check_iotlb(file.fd(), nested, 0, 0), kOk);
  EXPECT_EQ(check_iotlb(file.fd(), nested, 1, IOMMU_TEST_IOTLB_DEFAULT), kOk);
  entries[1] = {.flags = 0x80, .iotlb_id = 1};
  num = 2;
  EXPECT_EQ(invalidate(file.fd(), nested, entries, len, &num), Errno{EOPNOTSUPP});
  EXPECT_EQ(num, 1u);
  entries[0] = {.flags = IOMMU_TEST_INVALIDATE_FLAG_ALL, .iotlb_id = 0};
  num = 1;
  EXPECT_EQ(invalidate(file.fd(), nested, entries, len, &num), kOk);
  for (uint32_t entry = 0; entry < 4; ++entry) EXPECT_EQ(check_iotlb(file.fd(), nested, entry, 0), kOk);
}

// ================================================================ fault queues

TEST(IommuFault, RecordsAreReadAndAnswered) {
  SKIP_WITHOUT_COMPANION_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok());
  auto plain = command<iommu_fault_alloc>();
  EXPECT_EQ(ioctl_errno(file.fd(), IOMMU_FAULT_QUEUE_ALLOC, &plain), Errno{EOPNOTSUPP}) << "needs the two steps";
  const uint32_t ioas = must_ioas(file.fd());
  const Mock mock = must_mock(file.fd(), ioas);
  FaultFile fault(file.fd());
  ASSERT_EQ(fault.make_errno(), kOk);
  uint32_t parent = 0, nested = 0;
  ASSERT_EQ(hwpt_alloc(file.fd(), mock.idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT, &parent), kOk);
  const iommu_hwpt_selftest data{.iotlb = IOMMU_TEST_IOTLB_DEFAULT};
  ASSERT_EQ(hwpt_alloc(file.fd(), mock.idev, parent, IOMMU_HWPT_FAULT_ID_VALID, &nested, IOMMU_HWPT_DATA_SELFTEST,
                       &data, sizeof data, fault.id),
            kOk);
  EXPECT_EQ(destroy(file.fd(), fault.id), Errno{EBUSY}) << "the nested HWPT uses it";
  ASSERT_EQ(replace(file.fd(), mock.stdev, nested), kOk);

  iommu_hwpt_pgfault record{};
  EXPECT_EQ(::read(fault.fd(), &record, sizeof record), 0) << "nothing to read";
  EXPECT_EQ(::read(fault.fd(), &record, sizeof record - 1), -1);
  EXPECT_EQ(errno, ESPIPE);
  pollfd waiting{.fd = fault.fd(), .events = POLLIN, .revents = 0};
  EXPECT_EQ(::poll(&waiting, 1, 0), 0);
  ASSERT_EQ(trigger_iopf(file.fd(), mock.idev, 0x11, 7, 0x1234000), kOk);
  EXPECT_EQ(::poll(&waiting, 1, 2000), 1);
  ASSERT_EQ(::read(fault.fd(), &record, sizeof record), static_cast<ssize_t>(sizeof record));
  EXPECT_EQ(record.dev_id, mock.idev);
  EXPECT_EQ(record.pasid, 0x11u);
  EXPECT_EQ(record.grpid, 7u);
  EXPECT_EQ(record.addr, 0x1234000u);
  EXPECT_EQ(record.flags, unsigned{IOMMU_PGFAULT_FLAGS_PASID_VALID | IOMMU_PGFAULT_FLAGS_LAST_PAGE});
  iommu_hwpt_page_response response{.cookie = record.cookie + 1, .code = IOMMUFD_PAGE_RESP_SUCCESS};
  EXPECT_EQ(::write(fault.fd(), &response, sizeof response), -1) << "no group has that cookie";
  EXPECT_EQ(errno, EINVAL);
  response = {.cookie = record.cookie, .code = 7};
  EXPECT_EQ(::write(fault.fd(), &response, sizeof response), -1) << "no such code";
  EXPECT_EQ(errno, EINVAL);
  response.code = IOMMUFD_PAGE_RESP_SUCCESS;
  EXPECT_EQ(::write(fault.fd(), &response, sizeof response), static_cast<ssize_t>(sizeof response));
  EXPECT_EQ(::write(fault.fd(), &response, sizeof response), -1) << "answered already";

  // A device that leaves the HWPT takes its unread groups along.
  ASSERT_EQ(trigger_iopf(file.fd(), mock.idev, 0, 8, 0x2000), kOk);
  ASSERT_EQ(replace(file.fd(), mock.stdev, ioas), kOk);
  EXPECT_EQ(::read(fault.fd(), &record, sizeof record), 0);
  // Its open file holds the queue; closed, it can go.
  ASSERT_EQ(destroy(file.fd(), nested), kOk);
  EXPECT_EQ(destroy(file.fd(), fault.id), Errno{EBUSY}) << "its file is open";
  fault.close();
  EXPECT_EQ(destroy(file.fd(), fault.id), kOk);
}

// ================================================================ bounds

TEST(IommuFdObjects, ObjectsWaitingForTheirFilesAreBounded) {
  SKIP_WITHOUT_COMPANION_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok());
  const uint32_t ioas = must_ioas(file.fd());
  int made = 0;
  Errno last{kOk};
  for (; made < 64; ++made) {
    auto create = test_command(IOMMU_TEST_OP_CREATE_ACCESS, ioas);
    last = fd_cmd(file.fd(), IOMMU_TEST_CMD, &create, nullptr);
    if (last != kOk) break;
  }
  EXPECT_EQ(made, 16);
  EXPECT_EQ(last, Errno{ENOSPC});
  // Closing the file ends them all: its IOAS and objects go with it.
  file.close();
  IommuFile next;
  EXPECT_TRUE(next.ok());
}

}  // namespace
}  // namespace conf

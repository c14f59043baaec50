// END TO END, needs the daemon side of <linux/ioasid_iommu_fd.h>: the iommufd commands
// that return a file descriptor (IOMMU_FAULT_QUEUE_ALLOC, IOMMU_TEST_OP_CREATE_ACCESS)
// through the companion node, done by libioasid's iommufd_fd_command and, for an
// unchanged program, by ioasid-run. Every test skips, saying so, while the daemon serves
// no companion node (iommu-fd beside the iommu node).
#include "harness.hpp"

#include <linux/ioasid_iommu_fd.h>
#include <linux/iommufd.h>
#include "iommufd_test/iommufd_test.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

namespace conf {
namespace {

std::string beside_node(const std::string& name) {
  const std::string& node = node_path();
  return node.substr(0, node.rfind('/') + 1) + name;
}
std::string iommu_node() { return beside_node("iommu"); }
std::string companion_node() { return beside_node("iommu-fd"); }

#define SKIP_WITHOUT_COMPANION_NODE()                                                          \
  if (::access(iommu_node().c_str(), F_OK) != 0 || ::access(companion_node().c_str(), F_OK) != 0) \
  GTEST_SKIP() << "the daemon serves no " << companion_node()                                  \
               << " (the daemon side of ioasid_iommu_fd.h): end-to-end test not run"

// An open /dev/iommu file, closed with the object.
class IommuFd {
 public:
  IommuFd() : fd_(::open(iommu_node().c_str(), O_RDWR | O_CLOEXEC)) {}
  ~IommuFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  IommuFd(const IommuFd&) = delete;
  IommuFd& operator=(const IommuFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

bool is_open_cloexec(int fd) {
  const int flags = ::fcntl(fd, F_GETFD);
  return flags >= 0 && (flags & FD_CLOEXEC);
}

uint32_t allocate_ioas(int iommu) {
  iommu_ioas_alloc alloc{.size = sizeof alloc};
  EXPECT_EQ(ioctl_errno(iommu, IOMMU_IOAS_ALLOC, &alloc), Err(0));
  return alloc.out_ioas_id;
}

TEST(IommuFdCommand, LibioasidAllocatesAFaultQueueFile) {
  SKIP_WITHOUT_COMPANION_NODE();
  IommuFd iommu;
  ASSERT_GE(iommu.get(), 0);
  iommu_fault_alloc alloc{.size = sizeof alloc};
  auto fd = client::iommufd_fd_command(iommu.get(), IOMMU_FAULT_QUEUE_ALLOC, &alloc, companion_node().c_str());
  ASSERT_TRUE(fd) << fd.error().what;
  EXPECT_EQ(static_cast<int>(alloc.out_fault_fd), *fd);
  EXPECT_NE(alloc.out_fault_id, 0u);
  EXPECT_TRUE(is_open_cloexec(*fd));
  ::close(*fd);
}

TEST(IommuFdCommand, LibioasidCreatesAnAccessNamedByItsFd) {
  SKIP_WITHOUT_COMPANION_NODE();
  IommuFd iommu;
  ASSERT_GE(iommu.get(), 0);
  iommu_test_cmd cmd{.size = sizeof cmd, .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = allocate_ioas(iommu.get())};
  auto fd = client::iommufd_fd_command(iommu.get(), IOMMU_TEST_CMD, &cmd, companion_node().c_str());
  ASSERT_TRUE(fd) << fd.error().what;
  EXPECT_EQ(static_cast<int>(cmd.create_access.out_access_fd), *fd);
  EXPECT_TRUE(is_open_cloexec(*fd));
  // The selftest names the access by its fd number: an unknown access_pages_id of this
  // access is ENOENT (as in the kernel), not EBADF for an unknown access.
  iommu_test_cmd destroy{.size = sizeof destroy, .op = IOMMU_TEST_OP_DESTROY_ACCESS_PAGES,
                         .id = static_cast<uint32_t>(*fd)};
  destroy.destroy_access_pages.access_pages_id = 0x7fffffff;
  EXPECT_EQ(ioctl_errno(iommu.get(), IOMMU_TEST_CMD, &destroy), Err(ENOENT));
  ::close(*fd);
}

TEST(IommuFdCommand, ATokenIsGoodOnce) {
  SKIP_WITHOUT_COMPANION_NODE();
  IommuFd iommu;
  ASSERT_GE(iommu.get(), 0);
  iommu_fault_alloc alloc{.size = sizeof alloc};
  auto object = client::iommu_fd::make_object(iommu.get(), IOMMU_FAULT_QUEUE_ALLOC, &alloc);
  ASSERT_TRUE(object) << object.error().what;
  auto first = client::iommu_fd::open_object_file(companion_node().c_str(), object->token,
                                                  client::iommu_fd::FdNumber::this_process);
  ASSERT_TRUE(first) << first.error().what;
  auto second = client::iommu_fd::open_object_file(companion_node().c_str(), object->token,
                                                   client::iommu_fd::FdNumber::this_process);
  EXPECT_FALSE(second) << "a token attached twice";
  if (second) ::close(*second);
  ::close(*first);
}

#if defined(IOASID_RUN_PATH) && defined(IOASID_RUN_PROBE_PATH)
// The probe (tests/unit/ioasid_run_probe.cpp) under ioasid-run: exit 0 when the command
// returned an open O_CLOEXEC fd (and, for an access, the daemon knows its number).
int under_launcher(const char* probe_command) {
  const std::string node = iommu_node(), companion = companion_node();
  const pid_t child = ::fork();
  if (child == 0) {
    ::execl(IOASID_RUN_PATH, IOASID_RUN_PATH, "--iommu-node", node.c_str(), "--companion", companion.c_str(),
            IOASID_RUN_PROBE_PATH, probe_command, node.c_str(), nullptr);
    ::_exit(255);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(IommuFdCommand, AnUnchangedProgramGetsAFaultQueueUnderIoasidRun) {
  SKIP_WITHOUT_COMPANION_NODE();
  EXPECT_EQ(under_launcher("fault-queue"), 0);
}

TEST(IommuFdCommand, AnUnchangedProgramCreatesAnAccessUnderIoasidRun) {
  SKIP_WITHOUT_COMPANION_NODE();
  EXPECT_EQ(under_launcher("create-access"), 0);
}
#endif

}  // namespace
}  // namespace conf

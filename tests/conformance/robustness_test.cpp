// SPDX-License-Identifier: MIT
// Hostile or unusual use of the node and the daemon: ioctls the daemon does not
// own, concurrent blocking reads, and the daemon's own lifecycle on SIGHUP.
#include "harness.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

namespace conf {
namespace {

bool mounted(const std::string& dir) {
  std::ifstream mounts("/proc/self/mounts");
  std::string device, point, rest;
  while (mounts >> device >> point && std::getline(mounts, rest))
    if (point == dir) return true;
  return false;
}

// An ioctl on the FUSE mount's root directory reaches the daemon too (the kernel
// forwards directory ioctls); it must be refused without harm, from any user.
TEST(Robustness, IoctlsOnTheMountDirectoryAreRefused) {
  const std::string dir = fuse_mount_dir();
  if (dir.empty()) GTEST_SKIP() << "the node is not a harness-owned FUSE mount";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  long flags = 0;
  EXPECT_EQ(ioctl_errno(fd, FS_IOC_GETFLAGS, &flags), Err(ENOTTY));  // what lsattr -d does
  EXPECT_EQ(ioctl_errno(fd, IOASID_GET_API_VERSION, nullptr), Err(ENOTTY));
  ioasid_info info{};
  EXPECT_EQ(ioctl_errno(fd, IOASID_GET_INFO, &info), Err(ENOTTY));
  ::close(fd);
  expect_daemon_alive();
  EXPECT_TRUE(node_is_live(node_path()));
}

// A command that is not ours gets ENOTTY and nothing written into the caller's memory.
TEST(Robustness, ForeignIoctlLeavesTheCallersBufferAlone) {
  Node node;
  ASSERT_TRUE(node.ok());
  long flags = 0;
  EXPECT_EQ(ioctl_errno(node.fd(), FS_IOC_GETFLAGS, &flags), Err(ENOTTY));  // lsattr
  std::vector<uint8_t> foreign(64, 0xAA);
  EXPECT_EQ(raw_ioctl(node.fd(), _IOC_READ, 1, foreign, 'x'), Err(ENOTTY));
  for (uint8_t byte : foreign) EXPECT_EQ(byte, 0xAA);
  std::vector<uint8_t> ours(sizeof(ioasid_info), 0xAA);
  EXPECT_EQ(raw_ioctl(node.fd(), _IOC_READ, IOASID_BASE + 2, ours), Err(ENOTTY));  // _IOR only
  for (uint8_t byte : ours) EXPECT_EQ(byte, 0xAA);
}

// Two threads blocked in read() on one file are each interrupted by a signal.
TEST(Robustness, ConcurrentBlockingReadsOfOneFileAreEachInterruptible) {
  Node node;
  ASSERT_TRUE(node.ok());
  const int fd = node.fd();
  std::string why;
  const int code = run_in_child(
      [fd] {
        struct sigaction action{};
        action.sa_handler = [](int) {};
        sigaction(SIGUSR2, &action, nullptr);  // no SA_RESTART
        std::atomic<int> interrupted{0};
        auto reader = [&] {
          char record[sizeof(ioasid_fault)];
          if (::read(fd, record, sizeof record) < 0 && errno == EINTR) ++interrupted;
        };
        std::thread first(reader), second(reader);
        for (int round = 0; round < 100 && interrupted < 2; ++round) {
          std::this_thread::sleep_for(50ms);
          pthread_kill(first.native_handle(), SIGUSR2);
          pthread_kill(second.native_handle(), SIGUSR2);
        }
        first.join();
        second.join();
        return interrupted == 2 ? 0 : 1;
      },
      10s, &why);
  EXPECT_EQ(code, 0) << "both readers must return EINTR " << why;
}

// SIGHUP (a closed terminal) stops the daemon like SIGTERM: contexts released,
// node unmounted, exit 0.
TEST(Robustness, SighupStopsTheDaemonCleanly) {
  const std::string binary = ioasidd_binary();
  if (binary.empty() || fuse_mount_dir().empty()) GTEST_SKIP() << "needs the ioasidd binary and FUSE";
  char pattern[] = "/tmp/ioasid-sighup.XXXXXX";
  const std::string dir = ::mkdtemp(pattern);
  const std::string mount = dir + "/mnt", node = mount + "/ioasid", log = dir + "/ioasidd.log";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl(binary.c_str(), binary.c_str(), "--frontend", "fuse", "--fuse", mount.c_str(), "--no-netlink",
            "--admin-socket", "none", "--log-file", log.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ChildGuard guard;
  guard.add(pid);
  ASSERT_TRUE(eventually([&] { return node_is_live(node); }, 10s)) << "second daemon did not come up";
  {
    const auto file = must(client::File::open(node));
    must(client::Pasid::allocate(file, client::PasidRange{slot(60).lo, slot(60).hi})).release();
    ASSERT_EQ(::kill(pid, SIGHUP), 0);
    int status = 0;
    ASSERT_TRUE(wait_pid_for(pid, 10s, &status)) << "the daemon did not stop on SIGHUP";
    guard.reaped(pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << describe_status(status);
  }
  EXPECT_FALSE(mounted(mount)) << "the node is still mounted";
  std::ifstream text(log);
  const std::string contents((std::istreambuf_iterator<char>(text)), {});
  EXPECT_NE(contents.find("released"), std::string::npos) << contents;
  ::umount2(mount.c_str(), MNT_DETACH);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace conf

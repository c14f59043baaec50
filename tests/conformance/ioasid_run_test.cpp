// SPDX-License-Identifier: MIT
// END TO END, needs the daemon side of <linux/ioasid_iommu_fd.h>: the iommufd commands
// that return a file descriptor (IOMMU_FAULT_QUEUE_ALLOC, IOMMU_TEST_OP_CREATE_ACCESS)
// through the companion node, done by libioasid's iommufd_fd_command and, for an
// unchanged program, by ioasid-run (the probe, and examples/iommufd-fault-demo reading
// and answering a fault queue's page requests). Every test skips, saying so, while the
// daemon serves no companion node (iommu-fd beside the iommu node).
#include "harness.hpp"

#include <linux/ioasid_iommu_fd.h>
#include <linux/iommufd.h>
#include "iommufd_test/iommufd_test.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <regex>
#include <cstdlib>
#include <string>

namespace conf {
namespace {

std::string beside_node(const std::string& name) {
  const std::string& node = node_path();
  return node.substr(0, node.rfind('/') + 1) + name;
}
std::string iommu_node() { return beside_node("iommu"); }
std::string companion_node() { return beside_node("iommu-fd"); }

#if defined(IOASID_RUN_PATH)
// A program the tests run: $ENV when set (the VM stage installs them elsewhere than the
// build tree, which the guest cannot see under /tmp), else the path built in.
std::string program(const char* env, const char* built) {
  const char* given = std::getenv(env);
  return given && *given ? given : built;
}
#endif

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
  const std::string run = program("IOASID_RUN", IOASID_RUN_PATH), probe = program("IOASID_RUN_PROBE", IOASID_RUN_PROBE_PATH);
  const pid_t child = ::fork();
  if (child == 0) {
    ::execl(run.c_str(), run.c_str(), "--iommu-node", node.c_str(), "--companion", companion.c_str(), probe.c_str(),
            probe_command, node.c_str(), nullptr);
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

#if defined(IOASID_RUN_PATH) && defined(IOMMUFD_FAULT_DEMO_PATH)
// examples/iommufd-fault-demo, written against the kernel's uAPI headers alone, run as
// it is; returns its exit code and what it printed (stdout and stderr).
struct Ran {
  int exit_code = -1;
  std::string output;
};

Ran run_fault_demo(bool under_ioasid_run) {
  const std::string node = iommu_node(), companion = companion_node();
  const std::string run = program("IOASID_RUN", IOASID_RUN_PATH);
  const std::string demo = program("IOMMUFD_FAULT_DEMO", IOMMUFD_FAULT_DEMO_PATH);
  Ran ran;
  int output[2];
  if (::pipe2(output, O_CLOEXEC) != 0) {
    ran.output = std::string("pipe2: ") + std::strerror(errno);
    return ran;
  }
  const pid_t child = ::fork();
  if (child == 0) {
    ::dup2(output[1], STDOUT_FILENO);
    ::dup2(output[1], STDERR_FILENO);
    if (under_ioasid_run)
      ::execl(run.c_str(), run.c_str(), "--iommu-node", node.c_str(), "--companion", companion.c_str(), demo.c_str(),
              "--dev", node.c_str(), nullptr);
    else
      ::execl(demo.c_str(), demo.c_str(), "--dev", node.c_str(), nullptr);
    ::_exit(255);
  }
  ::close(output[1]);
  // Read until the program and the launcher are gone, for at most 30 s.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    using std::chrono::milliseconds;
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd readable{.fd = output[0], .events = POLLIN, .revents = 0};
    if (left.count() <= 0 || ::poll(&readable, 1, static_cast<int>(left.count())) == 0) {
      ::kill(child, SIGKILL);
      ran.output += "\n[killed: still running after 30 s]";
      break;
    }
    char buffer[4096];
    const ssize_t got = ::read(output[0], buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    ran.output.append(buffer, static_cast<size_t>(got));
  }
  ::close(output[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  ran.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return ran;
}

bool says(const Ran& ran, const std::string& text) { return ran.output.find(text) != std::string::npos; }

// Issue 14: the example runs an unchanged program that uses a fault queue through the
// launcher: the queue's fd arrives, three page requests are polled for, read, answered.
TEST(IommufdFaultDemo, RunsUnchangedUnderIoasidRun) {
  SKIP_WITHOUT_COMPANION_NODE();
  const Ran ran = run_fault_demo(true);
  ASSERT_EQ(ran.exit_code, 0) << ran.output;
  EXPECT_TRUE(says(ran, "opened " + iommu_node())) << ran.output;
  EXPECT_TRUE(std::regex_search(ran.output, std::regex(R"(-> fault queue \d+, its file is fd \d+)"))) << ran.output;
  EXPECT_TRUE(says(ran, "-> poll: POLLIN")) << ran.output;
  // The three requests as raised, each its own group (LAST_PAGE), PASID_VALID with a PASID.
  EXPECT_TRUE(std::regex_search(ran.output, std::regex(R"(fault: device \d+ pasid 0 grpid 1 addr 0x1000000 perm r )"
                                                       R"(length \d+ flags LAST_PAGE cookie \d+)")))
      << ran.output;
  EXPECT_TRUE(std::regex_search(ran.output, std::regex(R"(fault: device \d+ pasid 1 grpid 2 addr 0x1003000 perm rw )"
                                                       R"(length \d+ flags PASID_VALID\|LAST_PAGE cookie \d+)")))
      << ran.output;
  EXPECT_TRUE(std::regex_search(ran.output, std::regex(R"(fault: device \d+ pasid 5 grpid 3 addr 0x40000000 perm wx )"
                                                       R"(length \d+ flags PASID_VALID\|LAST_PAGE cookie \d+)")))
      << ran.output;
  EXPECT_TRUE(says(ran, "every record is the request raised, in order")) << ran.output;
  for (const char* grpid : {"(grpid 1) answered", "(grpid 2) answered", "(grpid 3) answered"})
    EXPECT_TRUE(says(ran, grpid)) << ran.output;
  EXPECT_TRUE(says(ran, "a cookie already answered is refused\n    -> refused as it should be: Invalid argument"))
      << ran.output;
  EXPECT_TRUE(says(ran, "iommufd-fault-demo: every step succeeded")) << ran.output;
}

// Without the launcher the daemon cannot hand out the queue's file: the demo says which
// call failed, and why, and exits 1.
TEST(IommufdFaultDemo, NamesTheFailingCallWithoutIoasidRun) {
  SKIP_WITHOUT_COMPANION_NODE();
  const Ran ran = run_fault_demo(false);
  EXPECT_EQ(ran.exit_code, 1) << ran.output;
  EXPECT_TRUE(says(ran, "IOMMU_FAULT_QUEUE_ALLOC failed: Operation not supported")) << ran.output;
  EXPECT_TRUE(says(ran, "run it under ioasid-run")) << ran.output;
  EXPECT_TRUE(says(ran, "iommufd-fault-demo: FAILED at IOMMU_FAULT_QUEUE_ALLOC")) << ran.output;
}
#endif

}  // namespace
}  // namespace conf

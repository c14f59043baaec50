// SPDX-License-Identifier: MIT
// ioasid-run without a daemon: the seccomp plumbing seen from the program it runs
// (ioasid_run_probe, whose exit code is the errno its ioctl got), the exit codes, the
// signals it passes on, and its command line.
//
// The "iommu node" here is a regular file or /dev/null, so a command the launcher serves
// is told apart from one it lets run natively by its errno: natively an ioctl on such a
// file is ENOTTY, while the launcher refuses a struct of 8 KiB with E2BIG and an unmapped
// argument with EFAULT before it asks any daemon.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr const char* kLauncher = IOASID_RUN_PATH;
constexpr const char* kProbe = IOASID_RUN_PROBE_PATH;
constexpr const char* kCreateAccess = "5";      // IOMMU_TEST_OP_CREATE_ACCESS
constexpr const char* kCheckMap = "3";          // IOMMU_TEST_OP_MD_CHECK_MAP: returns no fd
constexpr const char* kOversized = "8192";      // above the launcher's 4096-byte bound
constexpr int kDescriptorLeft = 100;            // the probe's: a failed ioctl left an fd

struct Outcome {
  int exit_code = -1;  // as a shell reports it: 128+N for signal N
  std::string output;  // stdout and stderr
};

// Runs argv (a path, no PATH search), its output captured.
Outcome run(const std::vector<std::string>& words) {
  int pipe_ends[2];
  if (::pipe2(pipe_ends, O_CLOEXEC) < 0) return {};
  const pid_t child = ::fork();
  if (child == 0) {
    ::dup2(pipe_ends[1], STDOUT_FILENO);
    ::dup2(pipe_ends[1], STDERR_FILENO);
    std::vector<char*> argv;
    for (const std::string& word : words) argv.push_back(const_cast<char*>(word.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::_Exit(255);
  }
  ::close(pipe_ends[1]);
  Outcome outcome;
  char buffer[4096];
  for (ssize_t got; (got = ::read(pipe_ends[0], buffer, sizeof buffer)) > 0;) outcome.output.append(buffer, got);
  ::close(pipe_ends[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return outcome;
}

class IoasidRun : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ = std::filesystem::temp_directory_path() / ("ioasid-run-test." + std::to_string(::getpid()));
    std::filesystem::create_directories(directory_);
    node_ = directory_ / "iommu";
    other_ = directory_ / "other";
    for (const auto& path : {node_, other_}) std::fclose(std::fopen(path.c_str(), "w"));
  }
  void TearDown() override { std::filesystem::remove_all(directory_); }

  // The probe under ioasid-run with node_ as the iommu node.
  Outcome under_launcher(std::vector<std::string> probe_words, const std::string& iommu_node = "") {
    std::vector<std::string> words{kLauncher, "--iommu-node", iommu_node.empty() ? node_.string() : iommu_node,
                                   kProbe};
    words.insert(words.end(), probe_words.begin(), probe_words.end());
    return run(words);
  }

  std::filesystem::path directory_, node_, other_;
};

// ---------------------------------------------------------------- what it serves

TEST_F(IoasidRun, WithoutTheLauncherTheProbesCommandsAreNativeEnotty) {
  EXPECT_EQ(run({kProbe, "ioctl", node_, "test-cmd", kCreateAccess, kOversized}).exit_code, ENOTTY);
  EXPECT_EQ(run({kProbe, "bad-pointer", node_, "fault-alloc"}).exit_code, ENOTTY);
}

TEST_F(IoasidRun, ATestCmdWithAnotherOpContinuesNatively) {
  EXPECT_EQ(under_launcher({"ioctl", node_, "test-cmd", kCheckMap, kOversized}).exit_code, ENOTTY);
  EXPECT_EQ(under_launcher({"bad-pointer", node_, "test-cmd"}).exit_code, ENOTTY)
      << "an op it cannot read is the daemon's to refuse";
}

TEST_F(IoasidRun, AFdCommandOnAnotherFileContinuesNatively) {
  EXPECT_EQ(under_launcher({"ioctl", other_, "test-cmd", kCreateAccess, kOversized}).exit_code, ENOTTY);
  EXPECT_EQ(under_launcher({"ioctl", other_, "fault-alloc", "0", kOversized}).exit_code, ENOTTY);
  EXPECT_EQ(under_launcher({"bad-pointer", "/dev/null", "fault-alloc"}).exit_code, ENOTTY);
}

TEST_F(IoasidRun, AFdCommandOnTheIommuNodeIsServed) {
  EXPECT_EQ(under_launcher({"ioctl", node_, "test-cmd", kCreateAccess, kOversized}).exit_code, E2BIG);
  EXPECT_EQ(under_launcher({"ioctl", node_, "fault-alloc", "0", kOversized}).exit_code, E2BIG);
  EXPECT_EQ(under_launcher({"bad-pointer", node_, "fault-alloc"}).exit_code, EFAULT);
}

TEST_F(IoasidRun, TheNodeIsKnownByItsIdentityNotItsPath) {
  const auto link = directory_ / "link";
  std::filesystem::create_hard_link(node_, link);
  EXPECT_EQ(under_launcher({"ioctl", link, "fault-alloc", "0", kOversized}).exit_code, E2BIG);
  // A char device by its device number.
  EXPECT_EQ(under_launcher({"ioctl", "/dev/null", "fault-alloc", "0", kOversized}, "/dev/null").exit_code, E2BIG);
  EXPECT_EQ(under_launcher({"ioctl", "/dev/zero", "fault-alloc", "0", kOversized}, "/dev/null").exit_code, ENOTTY);
}

TEST_F(IoasidRun, AFailedCommandLeavesNoDescriptorInTheProgram) {
  // The launcher runs IOASID_IOMMU_FD_CMD on the file, which is no ioasidd node: it fails
  // before any companion file is opened, and the probe checks its descriptor table.
  const Outcome outcome = under_launcher({"ioctl", node_, "fault-alloc"});
  EXPECT_NE(outcome.exit_code, kDescriptorLeft);
  EXPECT_EQ(outcome.exit_code, ENOTTY) << outcome.output;
  EXPECT_EQ(under_launcher({"ioctl", node_, "test-cmd", kCreateAccess}).exit_code, ENOTTY);
}

TEST_F(IoasidRun, AStructTooSmallForItsFdFieldIsEinval) {
  EXPECT_EQ(under_launcher({"ioctl", node_, "fault-alloc", "0", "12"}).exit_code, EINVAL);
}

TEST_F(IoasidRun, ForkedChildrenAndThreadsAreServedToo) {
  EXPECT_EQ(under_launcher({"fork", "ioctl", node_, "fault-alloc", "0", kOversized}).exit_code, E2BIG);
  EXPECT_EQ(under_launcher({"thread", "ioctl", node_, "fault-alloc", "0", kOversized}).exit_code, E2BIG);
  EXPECT_EQ(under_launcher({"fork", "thread", "ioctl", node_, "test-cmd", kCreateAccess, kOversized}).exit_code,
            E2BIG);
}

// ---------------------------------------------------------------- exit codes and signals

TEST_F(IoasidRun, ExitsAsTheProgramDid) {
  EXPECT_EQ(under_launcher({"exit", "0"}).exit_code, 0);
  EXPECT_EQ(under_launcher({"exit", "7"}).exit_code, 7);
  EXPECT_EQ(under_launcher({"raise", std::to_string(SIGKILL)}).exit_code, 128 + SIGKILL);
  EXPECT_EQ(under_launcher({"raise", std::to_string(SIGSEGV)}).exit_code, 128 + SIGSEGV);
}

TEST_F(IoasidRun, AProgramThatCannotRunIs127Or126) {
  const Outcome missing = run({kLauncher, "--iommu-node", node_, (directory_ / "missing").string()});
  EXPECT_EQ(missing.exit_code, 127);
  EXPECT_NE(missing.output.find("No such file or directory"), std::string::npos) << missing.output;
  EXPECT_EQ(run({kLauncher, "--iommu-node", node_, other_}).exit_code, 126) << "not executable";
}

TEST_F(IoasidRun, ASignalSentToTheLauncherReachesTheProgram) {
  int pipe_ends[2];
  ASSERT_EQ(::pipe2(pipe_ends, O_CLOEXEC), 0);
  const std::string node = node_.string();
  const pid_t launcher = ::fork();
  if (launcher == 0) {
    ::dup2(pipe_ends[1], STDOUT_FILENO);
    ::execl(kLauncher, kLauncher, "--iommu-node", node.c_str(), kProbe, "wait-signal", nullptr);
    std::_Exit(255);
  }
  ::close(pipe_ends[1]);
  char ready[6] = {};
  ASSERT_EQ(::read(pipe_ends[0], ready, 6), 6) << "the probe did not start";
  ::close(pipe_ends[0]);
  ::kill(launcher, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(launcher, &status, 0), launcher);
  ASSERT_TRUE(WIFEXITED(status)) << "the launcher itself died";
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);
}

// ---------------------------------------------------------------- the command line

TEST_F(IoasidRun, WordsFromProgramOnAreTheProgramsOwn) {
  const Outcome outcome = under_launcher({"args", "--help", "--iommu-node", "x"});
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(outcome.output, "--help\n--iommu-node\nx\n");
  EXPECT_EQ(run({kLauncher, "--iommu-node=" + node_.string(), "--", kProbe, "exit", "3"}).exit_code, 3);
}

TEST_F(IoasidRun, BadOptionsAreUsageErrors) {
  const Outcome unknown = run({kLauncher, "--no-such-option", kProbe, "exit", "0"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.output.find("ioasid-run: --no-such-option: unknown option"), std::string::npos) << unknown.output;
  EXPECT_NE(unknown.output.find("Try 'ioasid-run --help'."), std::string::npos) << unknown.output;
  const Outcome no_program = run({kLauncher, "--iommu-node", node_});
  EXPECT_EQ(no_program.exit_code, 2);
  EXPECT_NE(no_program.output.find("no PROGRAM given"), std::string::npos) << no_program.output;
  EXPECT_EQ(run({kLauncher, "--iommu-node"}).exit_code, 2) << "an option without its value";
}

TEST_F(IoasidRun, HelpExitsZero) {
  const Outcome help = run({kLauncher, "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("--companion"), std::string::npos) << help.output;
}

TEST_F(IoasidRun, AMissingIommuNodeIs125) {
  const Outcome outcome = run({kLauncher, "--iommu-node", (directory_ / "none").string(), kProbe, "exit", "0"});
  EXPECT_EQ(outcome.exit_code, 125);
  EXPECT_NE(outcome.output.find("is ioasidd running?"), std::string::npos) << outcome.output;
}

}  // namespace

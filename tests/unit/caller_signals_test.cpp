// SPDX-License-Identifier: MIT
// Which signals end a client's blocking ioctl (EINTR) and which let it go on: a stop
// and a continue must not cancel a call, a handler or a fatal default must.
#include "dev_ioasid/caller_signals.h"

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include <sys/syscall.h>

#include <atomic>
#include <thread>

namespace ioasid::dev_ioasid {
namespace {

uint64_t bit(int signal) { return uint64_t{1} << (signal - 1); }

// A /proc/<pid>/status text as this kernel prints it, with the masks given.
std::string status_text(const SignalMasks& m) {
  return fmt::format(
      "Name:\tclient\nState:\tD (disk sleep)\nTgid:\t4242\nPid:\t4243\nSigQ:\t1/96367\nSigPnd:\t{:016x}\n"
      "ShdPnd:\t{:016x}\nSigBlk:\t{:016x}\nSigIgn:\t{:016x}\nSigCgt:\t{:016x}\nCapInh:\t0000000000000000\n",
      m.thread_pending, m.shared_pending, m.blocked, m.ignored, m.caught);
}

std::optional<int> decide(const SignalMasks& masks) {
  auto parsed = parse_signal_masks(status_text(masks));
  EXPECT_TRUE(parsed.ok()) << parsed.error().why;
  return parsed ? signal_ending_the_call(*parsed) : std::optional<int>(-1);
}

TEST(CallerSignals, ParsesTheMasksOfAStatusText) {
  const SignalMasks in{.thread_pending = bit(SIGSTOP),
                       .shared_pending = bit(SIGTERM) | bit(64),
                       .blocked = bit(SIGUSR2),
                       .ignored = bit(SIGPIPE),
                       .caught = bit(SIGINT) | bit(33)};
  const auto out = parse_signal_masks(status_text(in));
  ASSERT_TRUE(out.ok()) << out.error().why;
  EXPECT_EQ(out->thread_pending, in.thread_pending);
  EXPECT_EQ(out->shared_pending, in.shared_pending);
  EXPECT_EQ(out->blocked, in.blocked);
  EXPECT_EQ(out->ignored, in.ignored);
  EXPECT_EQ(out->caught, in.caught);
}

TEST(CallerSignals, AStatusTextWithoutEveryMaskIsRefused) {
  EXPECT_EQ(parse_signal_masks("").code(), EINVAL);
  EXPECT_EQ(parse_signal_masks("SigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n").code(), EINVAL);
  const std::string good = status_text({});
  std::string bad = good;
  bad.replace(bad.find("SigCgt:\t0000000000000000"), 24, "SigCgt:\t00000000000000zz");
  EXPECT_EQ(parse_signal_masks(bad).code(), EINVAL);
  bad = good;
  bad.replace(bad.find("SigBlk:\t0000000000000000"), 24, "SigBlk:\t0");
  EXPECT_EQ(parse_signal_masks(bad).code(), EINVAL);
}

// Ctrl-Z, fg, strace and gdb send these: none runs a handler or ends the process.
TEST(CallerSignals, StopsAndContinuesLetTheCallGoOn) {
  EXPECT_EQ(decide({}), std::nullopt) << "nothing pending (a SIGCONT flushed the stop)";
  for (const int signal : {SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGCONT}) {
    EXPECT_EQ(decide({.thread_pending = bit(signal)}), std::nullopt) << strsignal(signal);
    EXPECT_EQ(decide({.shared_pending = bit(signal)}), std::nullopt) << strsignal(signal);
  }
  for (const int signal : {SIGCHLD, SIGURG, SIGWINCH})
    EXPECT_EQ(decide({.shared_pending = bit(signal)}), std::nullopt) << strsignal(signal) << " is ignored by default";
}

TEST(CallerSignals, AHandlerOrAFatalDefaultEndsTheCall) {
  EXPECT_EQ(decide({.thread_pending = bit(SIGUSR1), .caught = bit(SIGUSR1)}), SIGUSR1) << "a handler runs";
  EXPECT_EQ(decide({.shared_pending = bit(SIGTERM)}), SIGTERM) << "terminates by default";
  EXPECT_EQ(decide({.shared_pending = bit(SIGQUIT)}), SIGQUIT) << "dumps core by default";
  EXPECT_EQ(decide({.thread_pending = bit(SIGKILL)}), SIGKILL);
  EXPECT_EQ(decide({.shared_pending = bit(40)}), 40) << "a real-time signal terminates by default";
  EXPECT_EQ(decide({.thread_pending = bit(SIGTSTP), .caught = bit(SIGTSTP)}), SIGTSTP) << "a handled stop signal";
  EXPECT_EQ(decide({.shared_pending = bit(SIGCHLD), .caught = bit(SIGCHLD)}), SIGCHLD) << "a handled SIGCHLD";
  EXPECT_EQ(decide({.thread_pending = bit(SIGSTOP) | bit(SIGKILL)}), SIGKILL) << "killed while stopping";
  EXPECT_EQ(decide({.thread_pending = bit(SIGSTOP) | bit(SIGINT), .caught = bit(SIGINT)}), SIGINT);
}

TEST(CallerSignals, BlockedAndIgnoredSignalsLetTheCallGoOn) {
  EXPECT_EQ(decide({.thread_pending = bit(SIGUSR1), .blocked = bit(SIGUSR1), .caught = bit(SIGUSR1)}), std::nullopt)
      << "blocked: the handler runs later, or in another thread";
  EXPECT_EQ(decide({.shared_pending = bit(SIGTERM), .blocked = bit(SIGTERM)}), std::nullopt);
  EXPECT_EQ(decide({.shared_pending = bit(SIGPIPE), .ignored = bit(SIGPIPE)}), std::nullopt);
  EXPECT_EQ(decide({.thread_pending = bit(SIGKILL), .blocked = ~uint64_t{0}}), SIGKILL) << "cannot be blocked";
}

// read_signal_masks on a real thread: one that blocks SIGUSR2 and has it pending.
TEST(CallerSignals, ReadsARealThreadsMasks) {
  std::atomic<pid_t> tid{0};
  std::atomic<bool> done{false};
  std::thread thread([&] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    tid = static_cast<pid_t>(::syscall(SYS_gettid));
    while (!done) std::this_thread::yield();
    int taken = 0;
    sigwait(&set, &taken);  // consume it before the thread ends
  });
  while (tid == 0) std::this_thread::yield();
  ASSERT_EQ(::syscall(SYS_tgkill, ::getpid(), tid.load(), SIGUSR2), 0);
  const auto masks = read_signal_masks(tid);
  done = true;
  thread.join();
  ASSERT_TRUE(masks.ok()) << masks.error().why;
  EXPECT_TRUE(masks->thread_pending & bit(SIGUSR2));
  EXPECT_TRUE(masks->blocked & bit(SIGUSR2));
  EXPECT_EQ(signal_ending_the_call(*masks), std::nullopt);
  EXPECT_EQ(read_signal_masks(0).code(), ESRCH) << "a caller outside the daemon's pid namespace";
}

}  // namespace
}  // namespace ioasid::dev_ioasid

// SPDX-License-Identifier: MIT
// ioasid-run: runs an unchanged iommufd program against ioasidd's /dev/iommu, serving the
// commands that return a file descriptor (IOMMU_FAULT_QUEUE_ALLOC, the selftest's
// IOMMU_TEST_OP_CREATE_ACCESS), which a CUSE/FUSE daemon cannot answer by itself.
//
// The child installs a seccomp filter that stops those two ioctls, hands its listener to
// the parent and execs the program; the parent runs each stopped command in the two steps
// of <linux/ioasid_iommu_fd.h> and places the object's file in the program
// (fd_command_trap.h). It exits as the program did, as a shell reports it.
#include "common/cli.h"
#include "fd_command_trap.h"

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

namespace po = boost::program_options;
using namespace ioasid;

namespace {

// Exit codes of ioasid-run's own failures, as env(1) and timeout(1) have them: 125 when
// ioasid-run failed, 126 when PROGRAM could not be run, 127 when it was not found.
constexpr int kExitLauncherFailed = 125;
constexpr int kExitCannotExecute = 126;
constexpr int kExitNotFound = 127;

void report(const Error& error) { fmt::print(stderr, "ioasid-run: {}: {}\n", error.why, std::strerror(error.code)); }

// Where the program's command line starts: at the first word that is neither an option
// of ioasid-run nor an option's value, or after "--". Everything from there on is the
// program's, options included (`ioasid-run PROGRAM --help` is PROGRAM's help).
struct CommandLineSplit {
  int own_words = 0;   // argv[0, own_words) is ioasid-run's
  int program_at = 0;  // argv[program_at] is PROGRAM, argc when none was given
};

CommandLineSplit split_command_line(int argc, char** argv, const po::options_description& options) {
  int index = 1;
  while (index < argc) {
    const std::string_view word = argv[index];
    if (word == "--") return {index, index + 1};
    if (word.size() < 2 || word[0] != '-') break;
    ++index;
    const bool long_form = word.starts_with("--");
    // --name=VALUE and -nVALUE carry their value; --name VALUE and -n VALUE take the next word.
    if (word.find('=') != std::string_view::npos || (!long_form && word.size() > 2)) continue;
    const std::string name(long_form ? word.substr(2) : word);
    try {
      const po::option_description* option = options.find_nothrow(name, true);
      if (option && option->semantic()->max_tokens() > 0 && index < argc) ++index;
    } catch (const po::error&) {
      // An ambiguous abbreviation: the parser reports it.
    }
  }
  return {index, index};
}

int exit_code_of(int status) {
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

// The signals a kill(1) of ioasid-run passes on to the program, so that ioasid-run keeps
// serving it until it exits.
sigset_t forwarded_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int signal : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2}) sigaddset(&set, signal);
  return set;
}

// In the child: the filter, its listener to the parent, then the program. Never returns.
[[noreturn]] void exec_under_trap(UniqueFd socket, const sigset_t& original_mask, char** program) {
  ::sigprocmask(SIG_SETMASK, &original_mask, nullptr);
  auto listener = run::install_fd_command_trap();
  if (!listener) {
    report(listener.error());
    ::_exit(kExitLauncherFailed);
  }
  if (auto sent = run::send_fd(socket.get(), listener->get()); !sent) {
    report(sent.error());
    ::_exit(kExitLauncherFailed);
  }
  listener->reset();
  socket.reset();
  ::execvp(program[0], program);
  const int code = errno;
  fmt::print(stderr, "ioasid-run: {}: {}\n", program[0], std::strerror(code));
  ::_exit(code == ENOENT ? kExitNotFound : kExitCannotExecute);
}

void forward_signal(int signals, pid_t child) {
  signalfd_siginfo info;
  if (::read(signals, &info, sizeof info) != sizeof info) return;
  // What the kernel sends (the terminal's ^C to the foreground group) reached the
  // program by itself: passing it on would deliver it twice.
  if (info.ssi_code == SI_KERNEL) return;
  ::kill(child, static_cast<int>(info.ssi_signo));
}

int wait_for(pid_t child) {
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) {
      report(fail(errno, "waitpid"));
      return kExitLauncherFailed;
    }
  }
  return exit_code_of(status);
}

// Serves the program's stopped commands until it exits; returns its exit code.
int serve_until_exit(std::optional<run::FdCommandServer> server, pid_t child, int child_pidfd, int signals) {
  enum { kListener, kSignals, kChild };
  std::array<pollfd, 3> watched{{{server->listener(), POLLIN, 0}, {signals, POLLIN, 0}, {child_pidfd, POLLIN, 0}}};
  for (;;) {
    if (::poll(watched.data(), watched.size(), -1) < 0) {
      if (errno == EINTR) continue;
      report(fail(errno, "poll"));
      break;
    }
    if (watched[kListener].revents & POLLIN) {
      if (auto served = server->serve_one(); !served) {
        // Closing the listener fails the stopped calls (ENOSYS) instead of leaving them waiting.
        report(served.error());
        server.reset();
        watched[kListener].fd = -1;
      }
    } else if (watched[kListener].revents & (POLLHUP | POLLERR)) {
      watched[kListener].fd = -1;  // nothing runs under the filter any more
    }
    if (watched[kSignals].revents & POLLIN) forward_signal(signals, child);
    if (watched[kChild].revents & POLLIN) break;
  }
  return wait_for(child);
}

int run_program(const run::IommuNode& node, const std::string& companion, char** program) {
  int ends[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) < 0) {
    report(fail(errno, "socketpair"));
    return kExitLauncherFailed;
  }
  UniqueFd parent_end(ends[0]), child_end(ends[1]);
  // Blocked before fork, so that none is lost before the parent reads them.
  const sigset_t forwarded = forwarded_signals();
  sigset_t original_mask;
  ::sigprocmask(SIG_BLOCK, &forwarded, &original_mask);
  const UniqueFd signals(::signalfd(-1, &forwarded, SFD_CLOEXEC));
  if (!signals) {
    report(fail(errno, "signalfd"));
    return kExitLauncherFailed;
  }

  const pid_t child = ::fork();
  if (child < 0) {
    report(fail(errno, "fork"));
    return kExitLauncherFailed;
  }
  if (child == 0) {
    parent_end.reset();
    exec_under_trap(std::move(child_end), original_mask, program);
  }
  child_end.reset();
  const UniqueFd child_pidfd = run::open_pidfd(child);
  if (!child_pidfd) {
    report(fail(errno, "pidfd_open"));
    ::kill(child, SIGKILL);
    return wait_for(child);
  }
  auto listener = run::receive_fd(parent_end.get());
  if (!listener) {
    // EPROTO: the child closed its end unsent; it failed, said why and exits with 125.
    if (listener.code() != EPROTO) {
      report(listener.error());
      ::kill(child, SIGKILL);
    }
    return wait_for(child);
  }
  return serve_until_exit(run::FdCommandServer(std::move(*listener), node, companion), child, child_pidfd.get(),
                          signals.get());
}

}  // namespace

int main(int argc, char** argv) {
  std::string iommu_node = "/dev/iommu";
  std::string companion;
  po::options_description options(
      "Usage: ioasid-run [--iommu-node PATH] [--companion PATH] PROGRAM [ARG]...\n"
      "Runs PROGRAM against ioasidd's iommufd node, serving the ioctls that return a file\n"
      "descriptor (IOMMU_FAULT_QUEUE_ALLOC, IOMMU_TEST_CMD's CREATE_ACCESS), which the\n"
      "daemon cannot answer alone. Exits as PROGRAM did (128+N when signal N ended it).\n\nOptions");
  options.add_options()
      ("help,h", "print this help and exit")
      ("iommu-node", po::value(&iommu_node)->value_name("PATH")->default_value(iommu_node),
       "ioasidd's iommufd node (DIR/iommu under FUSE)")
      ("companion", po::value(&companion)->value_name("PATH"),
       "its companion node (default: iommu-fd beside the iommu node)");
  const CommandLineSplit split = split_command_line(argc, argv, options);
  po::variables_map values;
  if (auto exit_code = examples::parse_command_line(split.own_words, argv, "ioasid-run", options, values))
    return *exit_code;
  if (split.program_at >= argc) {
    std::cerr << "ioasid-run: no PROGRAM given\n\n" << options << "\n";
    return 2;
  }
  if (companion.empty()) companion = iommu_node.substr(0, iommu_node.rfind('/') + 1) + "iommu-fd";

  auto node = run::identify_iommu_node(iommu_node);
  if (!node) {
    fmt::print(stderr, "ioasid-run: --iommu-node {}\n", node.error().why);
    return kExitLauncherFailed;
  }
  return run_program(*node, companion, argv + split.program_at);
}

// SPDX-License-Identifier: MIT
// ioasid-wait-ready: starts a program (ioasidd) with NOTIFY_SOCKET set, as systemd's
// Type=notify does, and returns once it has sent READY=1, leaving it running. Scripts
// that start a daemon wait on this rather than grepping its log or polling its node.
//
//   ioasid-wait-ready [--timeout SECONDS] [--pid-file FILE] -- PROGRAM [ARG]...
//
// Exit 0: ready (FILE holds the program's pid; its STATUS= line is printed). Exit 1: it exited first (its status
// and last STATUS= line are printed) or did not get ready in time (it is then sent
// SIGTERM, and SIGKILL 5 s later). Exit 2: a bad command line.
#include "notify_listener.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

namespace {

int usage(const char* why) {
  std::fprintf(stderr,
               "ioasid-wait-ready: %s\nUsage: ioasid-wait-ready [--timeout SECONDS] [--pid-file FILE] -- PROGRAM "
               "[ARG]...\n",
               why);
  return 2;
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by ") + strsignal(WTERMSIG(status));
  return "stopped";
}

}  // namespace

int main(int argc, char** argv) {
  unsigned timeout_s = 10;
  const char* pid_file = nullptr;
  int at = 1;
  for (; at < argc; ++at) {
    const std::string_view arg = argv[at];
    if (arg == "--") {
      ++at;
      break;
    }
    if (arg == "--version") {
      std::printf("ioasid-wait-ready %s\n", IOASID_VERSION);
      return 0;
    }
    if (at + 1 >= argc) return usage("an option needs a value, or '--' is missing");
    const std::string_view value = argv[++at];
    if (arg == "--timeout") {
      const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), timeout_s);
      if (error != std::errc{} || end != value.data() + value.size() || timeout_s == 0 || timeout_s > 3600)
        return usage("--timeout: must be 1..3600 seconds");
    } else if (arg == "--pid-file") {
      pid_file = argv[at];
    } else {
      return usage("unknown option");
    }
  }
  if (at >= argc) return usage("no program to start");

  ioasid::test::NotifyListener listener;
  if (!listener.ok()) {
    std::fprintf(stderr, "ioasid-wait-ready: %s\n", listener.error().c_str());
    return 1;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("ioasid-wait-ready: fork");
    return 1;
  }
  if (pid == 0) {
    ::setenv("NOTIFY_SOCKET", listener.socket_env().c_str(), 1);
    ::execvp(argv[at], argv + at);
    std::fprintf(stderr, "ioasid-wait-ready: cannot run %s: %s\n", argv[at], std::strerror(errno));
    ::_exit(127);
  }
  using Outcome = ioasid::test::NotifyListener::Outcome;
  const Outcome outcome = listener.wait_ready(pid, std::chrono::seconds(timeout_s));
  if (outcome == Outcome::Ready) {
    if (pid_file) std::ofstream(pid_file) << pid << "\n";
    // What it says it serves, for the caller's log.
    std::printf("%s (pid %d) is ready%s%s\n", argv[at], static_cast<int>(pid), listener.status().empty() ? "" : ": ",
                listener.status().c_str());
    return 0;
  }
  const std::string last = listener.status().empty() ? "" : " (its last status: " + listener.status() + ")";
  if (outcome == Outcome::Exited) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::fprintf(stderr, "ioasid-wait-ready: %s %s before it was ready%s\n", argv[at], describe(status).c_str(),
                 last.c_str());
    return 1;
  }
  if (outcome == Outcome::TimedOut)
    std::fprintf(stderr, "ioasid-wait-ready: %s was not ready within %u s%s; stopping it\n", argv[at], timeout_s,
                 last.c_str());
  else
    std::fprintf(stderr, "ioasid-wait-ready: %s; stopping %s\n", listener.error().c_str(), argv[at]);
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 50; ++i) {
    if (::waitpid(pid, nullptr, WNOHANG) == pid) return 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return 1;
}

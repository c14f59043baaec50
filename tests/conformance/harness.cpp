// SPDX-License-Identifier: MIT
// The conformance harness: the gtest Environment that finds or starts the daemon, a
// watchdog so that no test can hang, and the helpers declared in harness.hpp.
#include "harness.hpp"

#include "base/names.h"
#include "notify_listener.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

namespace conf {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Globals {
  std::string node;
  bool owns_daemon = false;
  pid_t daemon_pid = -1;
  bool daemon_reaped = false;
  int daemon_status = 0;
  std::string tmp_dir, mount_dir, log_path, out_path, admin_sock;
  char mount_dir_c[512] = {};  // for the watchdog (no allocation there)
} g;

std::string read_tail(const std::string& path, size_t max_lines) {
  std::ifstream in(path);
  if (!in) return "(cannot read " + path + ")\n";
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(std::move(line));
    if (lines.size() > max_lines) lines.erase(lines.begin());
  }
  std::string out;
  for (auto& l : lines) out += "  | " + l + "\n";
  return out;
}

bool is_mounted(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    std::string id, parent, devno, root, mnt;
    ls >> id >> parent >> devno >> root >> mnt;
    if (mnt == dir) return true;
  }
  return false;
}

// Reaps the harness-owned daemon if it has exited; true if it is gone.
bool daemon_gone() {
  if (!g.owns_daemon || g.daemon_pid <= 0) return false;
  if (g.daemon_reaped) return true;
  int st = 0;
  pid_t r = ::waitpid(g.daemon_pid, &st, WNOHANG);
  if (r == g.daemon_pid) {
    g.daemon_reaped = true;
    g.daemon_status = st;
    return true;
  }
  return false;
}

// ---------------------------------------------------------------- watchdog

// A thread that ends the process when one test (or the environment set-up/tear-down)
// runs too long. A blocked FUSE request is not interruptible by a plain signal, so an
// alarm() handler would never run; the thread kills the daemon (which aborts every
// pending request) and exits.
class Watchdog {
 public:
  static Watchdog& get() {
    static Watchdog* w = new Watchdog;  // never destroyed: its thread waits on cv_ forever
    return *w;
  }
  void arm(std::chrono::seconds limit, const std::string& what) {
    std::lock_guard lk(mu_);
    deadline_ = Clock::now() + limit;
    what_ = what;
    cv_.notify_all();
  }
  void disarm() {
    std::lock_guard lk(mu_);
    deadline_.reset();
    cv_.notify_all();
  }

 private:
  Watchdog() {
    std::thread([this] { run(); }).detach();
  }
  void run() {
    std::unique_lock lk(mu_);
    for (;;) {
      if (!deadline_) {
        cv_.wait(lk);
        continue;
      }
      auto d = *deadline_;
      if (cv_.wait_until(lk, d) == std::cv_status::timeout && deadline_ && *deadline_ == d) {
        std::fprintf(stderr, "\nWATCHDOG: %s did not finish in time; killing the daemon and exiting\n",
                     what_.c_str());
        if (g.owns_daemon && g.daemon_pid > 0 && !g.daemon_reaped) ::kill(g.daemon_pid, SIGKILL);
        if (g.mount_dir_c[0]) ::umount2(g.mount_dir_c, MNT_DETACH);
        std::fflush(stderr);
        ::_exit(3);
      }
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Clock::time_point> deadline_;
  std::string what_;
};

std::chrono::seconds test_time_limit() {
  if (const char* s = std::getenv("IOASID_TEST_TIMEOUT"); s && *s) return std::chrono::seconds(std::atoi(s));
  return std::chrono::seconds(120);  // generous: the suite also runs in a TCG VM
}

class WatchdogListener : public ::testing::EmptyTestEventListener {
  void OnEnvironmentsSetUpStart(const ::testing::UnitTest&) override {
    Watchdog::get().arm(std::chrono::seconds(60), "the environment set-up");
  }
  void OnEnvironmentsSetUpEnd(const ::testing::UnitTest&) override { Watchdog::get().disarm(); }
  void OnTestStart(const ::testing::TestInfo& t) override {
    Watchdog::get().arm(test_time_limit(), std::string("test ") + t.test_suite_name() + "." + t.name());
  }
  void OnTestEnd(const ::testing::TestInfo&) override { Watchdog::get().disarm(); }
  void OnEnvironmentsTearDownStart(const ::testing::UnitTest&) override {
    Watchdog::get().arm(std::chrono::seconds(60), "the environment tear-down");
  }
  void OnEnvironmentsTearDownEnd(const ::testing::UnitTest&) override { Watchdog::get().disarm(); }
};

// ---------------------------------------------------------------- the environment

std::string daemon_binary() {
  if (const char* s = std::getenv("IOASIDD"); s && *s) return s;
#ifdef IOASIDD_PATH
  return IOASIDD_PATH;
#else
  return {};
#endif
}

// Opens the node and asks for the API version; true when it answers 1.
bool node_answers(const std::string& path) {
  const auto file = client::File::open(path);
  if (!file) return false;
  const auto version = file->api_version();
  return version && *version == IOASID_API_VERSION;
}

class DaemonEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (const char* dev = std::getenv("IOASID_DEV"); dev && *dev) {
      g.node = dev;
      g.owns_daemon = false;
      // The daemon's log, when whoever started it says where (the VM stage does).
      if (const char* log = std::getenv("IOASID_DAEMON_LOG"); log && *log) g.log_path = log;
      std::cout << "[ harness  ] using IOASID_DEV=" << g.node
                << (g.log_path.empty() ? " (log checks skipped)\n" : ", daemon log " + g.log_path + "\n");
      ASSERT_TRUE(node_answers(g.node)) << g.node << " does not open or does not answer GET_API_VERSION with 1";
      return;
    }
    const std::string bin = daemon_binary();
    ASSERT_FALSE(bin.empty()) << "no daemon: set IOASID_DEV to a running node, or IOASIDD to the ioasidd binary";
    ASSERT_EQ(::access(bin.c_str(), X_OK), 0) << bin << " is not executable";

    char tmpl[] = "/tmp/ioasid-conformance.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr) << std::strerror(errno);
    g.tmp_dir = tmpl;
    g.mount_dir = g.tmp_dir + "/mnt";
    g.log_path = g.tmp_dir + "/ioasidd.log";
    g.out_path = g.tmp_dir + "/ioasidd.out";
    g.admin_sock = g.tmp_dir + "/admin.sock";
    g.node = g.mount_dir + "/ioasid";
    ASSERT_EQ(::mkdir(g.mount_dir.c_str(), 0755), 0) << std::strerror(errno);
    std::snprintf(g.mount_dir_c, sizeof g.mount_dir_c, "%s", g.mount_dir.c_str());

    std::vector<std::string> args = {bin,           "--frontend",   "fuse",       "--fuse",   g.mount_dir,
                                     "--no-netlink", "--admin-socket", g.admin_sock, "--log-file", g.log_path,
                                     "--log-level",  "debug", "--page-timeout", "1500"};
    std::string cmdline;
    for (auto& a : args) cmdline += a + " ";
    std::cout << "[ harness  ] starting " << cmdline << "\n";
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    // The daemon says READY=1 once its node answers (sd_notify), as it would to systemd.
    ioasid::test::NotifyListener ready;
    ASSERT_TRUE(ready.ok()) << ready.error();
    const std::string notify_socket = ready.socket_env();
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the suite
      if (::getppid() != parent) ::_exit(126);
      int out = ::open(g.out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (out >= 0) {
        ::dup2(out, 1);
        ::dup2(out, 2);
      }
      int null = ::open("/dev/null", O_RDONLY);
      if (null >= 0) ::dup2(null, 0);
      ::setenv("NOTIFY_SOCKET", notify_socket.c_str(), 1);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    g.owns_daemon = true;
    g.daemon_pid = pid;

    using Outcome = ioasid::test::NotifyListener::Outcome;
    const Outcome outcome = ready.wait_ready(pid, 10s);
    if (outcome == Outcome::Exited && daemon_gone()) {
      FAIL() << "ioasidd exited during start-up: " << describe_status(g.daemon_status) << "\nstdout/stderr:\n"
             << read_tail(g.out_path, 40) << "log:\n"
             << read_tail(g.log_path, 40);
    }
    if (outcome != Outcome::Ready) {
      FAIL() << "ioasidd sent no READY=1 within 10 s (" << ready.error() << ready.status() << ")\nstdout/stderr:\n"
             << read_tail(g.out_path, 40) << "log:\n"
             << read_tail(g.log_path, 40);
    }
    // Ready means answering: the first ioctl must succeed at once.
    if (!node_answers(g.node)) {
      FAIL() << g.node << " did not answer GET_API_VERSION == 1 once ioasidd was ready\nlog:\n"
             << read_tail(g.log_path, 40);
    }
    std::cout << "[ harness  ] ioasidd pid " << pid << " serves " << g.node << "\n";
  }

  void TearDown() override {
    if (!g.owns_daemon) return;
    const bool any_failed = ::testing::UnitTest::GetInstance()->failed_test_count() > 0;
    bool ok = true;
    if (daemon_gone()) {
      ADD_FAILURE() << "ioasidd exited before the end of the suite: " << describe_status(g.daemon_status);
      ok = false;
    } else {
      ::kill(g.daemon_pid, SIGTERM);
      int st = 0;
      if (!wait_pid_for(g.daemon_pid, 10s, &st)) {
        ADD_FAILURE() << "ioasidd did not exit within 10 s of SIGTERM";
        ::kill(g.daemon_pid, SIGKILL);
        wait_pid_for(g.daemon_pid, 5s, &st);
        ok = false;
      } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        ADD_FAILURE() << "ioasidd did not exit with status 0 after SIGTERM: " << describe_status(st);
        ok = false;
      }
      g.daemon_reaped = true;
      g.daemon_status = st;
    }
    // A sanitized daemon that recovers from a report still must not have produced one.
    {
      std::ifstream out(g.out_path);
      std::string reports;
      int n = 0;
      for (std::string line; std::getline(out, line);) {
        if (line.find("runtime error:") != std::string::npos || line.find("Sanitizer") != std::string::npos) {
          if (++n <= 10) reports += "  | " + line + "\n";
        }
      }
      if (n) {
        ADD_FAILURE() << "ioasidd's stderr has " << n << " sanitizer report line(s):\n" << reports;
        ok = false;
      }
    }
    if (is_mounted(g.mount_dir)) {
      if (ok) ADD_FAILURE() << "ioasidd exited but left " << g.mount_dir << " mounted";
      ok = false;
      ::umount2(g.mount_dir.c_str(), MNT_DETACH);
    }
    if (!ok || any_failed) {
      std::cout << "[ harness  ] ioasidd stdout/stderr (tail):\n"
                << read_tail(g.out_path, 30) << "[ harness  ] ioasidd log (tail):\n"
                << read_tail(g.log_path, 60);
    }
    g.mount_dir_c[0] = 0;
    if (const char* keep = std::getenv("IOASID_KEEP_TMP"); keep && *keep) {
      std::cout << "[ harness  ] kept " << g.tmp_dir << "\n";
    } else {
      std::error_code ec;
      fs::remove_all(g.tmp_dir, ec);
    }
  }
};

}  // namespace

// ---------------------------------------------------------------- harness.hpp API

std::string ioasidd_binary() { return daemon_binary(); }
std::string fuse_mount_dir() { return g.owns_daemon ? g.mount_dir : std::string(); }
std::string admin_socket_path() { return g.owns_daemon ? g.admin_sock : std::string(); }

std::string admin_request(const std::string& json_line) {
  const std::string path = admin_socket_path();
  sockaddr_un address{};
  if (path.empty() || path.size() >= sizeof address.sun_path) return {};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  std::string reply;
  const std::string request = json_line + "\n";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
    char c;
    while (::read(fd, &c, 1) == 1 && c != '\n') reply.push_back(c);
  }
  ::close(fd);
  return reply;
}
AdminEvents::AdminEvents() {
  const std::string path = admin_socket_path();
  sockaddr_un address{};
  if (path.empty() || path.size() >= sizeof address.sun_path) return;
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const std::string request = "{\"cmd\":\"events\"}\n";
  if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::write(fd_, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    return;
  }
  const auto reply = line(std::chrono::steady_clock::now() + 5s);  // {"ok":true,"result":{"stream":...}}
  if (!reply || reply->find("\"ok\":true") == std::string::npos) {
    ::close(fd_);
    fd_ = -1;
  }
}

AdminEvents::~AdminEvents() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<std::string> AdminEvents::line(std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    if (const size_t end = pending_.find('\n'); end != std::string::npos) {
      std::string out = pending_.substr(0, end);
      pending_.erase(0, end + 1);
      return out;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd_, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) != 1) return std::nullopt;
    char chunk[4096];
    const ssize_t got = ::read(fd_, chunk, sizeof chunk);
    if (got <= 0) return std::nullopt;
    pending_.append(chunk, static_cast<size_t>(got));
  }
}

std::string AdminEvents::wait_for(std::initializer_list<std::string> needles, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (auto event = line(deadline)) {
    if (std::all_of(needles.begin(), needles.end(),
                    [&](const std::string& needle) { return event->find(needle) != std::string::npos; }))
      return *event;
  }
  return {};
}

size_t AdminEvents::count(std::initializer_list<std::string> needles, std::chrono::milliseconds quiet,
                          std::vector<std::string>* matched) {
  size_t found = 0;
  while (auto event = line(std::chrono::steady_clock::now() + quiet)) {
    if (std::all_of(needles.begin(), needles.end(),
                    [&](const std::string& needle) { return event->find(needle) != std::string::npos; })) {
      ++found;
      if (matched) matched->push_back(*event);
    }
  }
  return found;
}

void let_the_event_budget_refill() { std::this_thread::sleep_for(1100ms); }

bool node_is_live(const std::string& path) { return node_answers(path); }

const std::string& node_path() { return g.node; }
bool harness_owns_daemon() { return g.owns_daemon; }
std::optional<std::string> daemon_log_path() {
  if (g.log_path.empty()) return std::nullopt;
  return g.log_path;
}
void expect_daemon_alive() {
  if (g.owns_daemon && daemon_gone()) {
    static bool reported = false;
    if (!reported) {
      reported = true;
      ADD_FAILURE() << "ioasidd died during this test: " << describe_status(g.daemon_status) << "\nlog tail:\n"
                    << read_tail(g.log_path, 30) << "stderr tail:\n"
                    << read_tail(g.out_path, 30);
    }
  }
}

std::string errno_name(int e) { return e == 0 ? "OK" : ioasid::errno_name(e); }
std::ostream& operator<<(std::ostream& os, Errno e) { return os << errno_name(e.value); }

Node::Node(int extra_flags) {
  auto opened = client::File::open(node_path(), extra_flags);
  if (opened)
    file_.emplace(std::move(opened).value());
  else
    ADD_FAILURE() << opened.error().what;
}
const client::File& Node::file() const {
  if (!file_) throw SetupFailed(node_path() + " is not open");
  return *file_;
}

long ioctl_value(int fd, unsigned long cmd, unsigned long arg, Errno* err) {
  errno = 0;
  long r = ::ioctl(fd, cmd, arg);
  if (err) *err = r < 0 ? Errno{errno} : kOk;
  return r;
}

Errno raw_ioctl(int fd, unsigned dir, unsigned nr, std::span<uint8_t> buf, unsigned type) {
  static uint8_t dummy[8];
  void* arg = buf.empty() ? dummy : buf.data();
  return ioctl_errno(fd, make_cmd(dir, nr, buf.size(), type), arg);
}

ioasid_info get_info(int fd) {
  ioasid_info info{};
  Errno e = ioctl_errno(fd, IOASID_GET_INFO, &info);
  if (e != kOk) ADD_FAILURE() << "IOASID_GET_INFO: " << e;
  return info;
}
uint32_t pasids_allocated(int fd) { return get_info(fd).pasids_allocated; }

ioasid_pasid_request req_alloc(uint32_t min, uint32_t max) {
  ioasid_pasid_request r{};
  r.flags = IOASID_PASID_ALLOC;
  r.min = min;
  r.max = max;
  return r;
}
ioasid_pasid_request req_alloc_gpasid(uint32_t min, uint32_t max, uint32_t gpasid) {
  ioasid_pasid_request r = req_alloc(min, max);
  r.flags |= IOASID_PASID_GPASID;
  r.gpasid = gpasid;
  return r;
}
ioasid_pasid_request req_free(uint32_t min, uint32_t max) {
  ioasid_pasid_request r{};
  r.flags = IOASID_PASID_FREE;
  r.min = min;
  r.max = max;
  return r;
}
ioasid_pasid_lookup req_lookup(uint32_t gpasid) {
  ioasid_pasid_lookup l{};
  l.gpasid = gpasid;
  return l;
}

static PasidResult do_request(int fd, ioasid_pasid_request r) {
  PasidResult res;
  res.err = ioctl_errno(fd, IOASID_PASID_REQUEST, &r);
  res.pasid = r.pasid;
  return res;
}
PasidResult pasid_alloc(int fd, uint32_t min, uint32_t max) { return do_request(fd, req_alloc(min, max)); }
PasidResult pasid_alloc_gpasid(int fd, uint32_t min, uint32_t max, uint32_t gpasid) {
  return do_request(fd, req_alloc_gpasid(min, max, gpasid));
}
PasidResult pasid_free(int fd, uint32_t min, uint32_t max) { return do_request(fd, req_free(min, max)); }
PasidResult pasid_lookup(int fd, uint32_t gpasid) {
  ioasid_pasid_lookup l = req_lookup(gpasid);
  PasidResult res;
  res.err = ioctl_errno(fd, IOASID_PASID_LOOKUP, &l);
  res.pasid = l.out_pasid;
  return res;
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
}

PasidResult pasid_alloc_retry(int fd, uint32_t min, uint32_t max, std::chrono::milliseconds timeout) {
  PasidResult r;
  eventually(
      [&] {
        r = pasid_alloc(fd, min, max);
        return r.err != Err(ENOSPC);
      },
      timeout);
  return r;
}

bool State::operator==(const State& o) const {
  if (allocated != o.allocated || lookups.size() != o.lookups.size()) return false;
  for (size_t i = 0; i < lookups.size(); ++i) {
    const auto& a = lookups[i];
    const auto& b = o.lookups[i];
    if (a.first != b.first || a.second.err != b.second.err) return false;
    if (a.second.err == kOk && a.second.pasid != b.second.pasid) return false;
  }
  return true;
}
std::ostream& operator<<(std::ostream& os, const State& s) {
  os << "{allocated " << s.allocated;
  for (auto& [g, r] : s.lookups) {
    os << ", gpasid " << g << " -> ";
    if (r.err == kOk)
      os << r.pasid;
    else
      os << r.err;
  }
  return os << "}";
}
State snapshot(int fd, std::initializer_list<uint32_t> gpasids) {
  State s;
  s.allocated = pasids_allocated(fd);
  for (uint32_t gp : gpasids) s.lookups.emplace_back(gp, pasid_lookup(fd, gp));
  return s;
}

bool wait_pid_for(pid_t pid, std::chrono::milliseconds timeout, int* status) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      if (status) *status = st;
      return true;
    }
    if (r < 0 && errno != EINTR) return false;
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by signal ") + ::sigabbrev_np(WTERMSIG(status));
  return "status " + std::to_string(status);
}

int run_in_child(const std::function<int()>& fn, std::chrono::milliseconds timeout, std::string* why) {
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = ::fork();
  if (pid < 0) {
    if (why) *why = std::string("fork: ") + std::strerror(errno);
    return -2;
  }
  if (pid == 0) {
    int rc = 99;
    try {
      rc = fn();
    } catch (...) {
      rc = 98;
    }
    ::_exit(rc);
  }
  int st = 0;
  if (!wait_pid_for(pid, timeout, &st)) {
    ::kill(pid, SIGKILL);
    wait_pid_for(pid, 5s, &st);
    if (why) *why = "child timed out and was killed";
    return -1;
  }
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (why) *why = describe_status(st);
  return -(128 + WTERMSIG(st));
}

ChildGuard::~ChildGuard() {
  for (pid_t p : pids_) {
    ::kill(p, SIGKILL);
    wait_pid_for(p, 5s, nullptr);
  }
}
void ChildGuard::reaped(pid_t pid) { pids_.erase(std::remove(pids_.begin(), pids_.end(), pid), pids_.end()); }


// ---------------------------------------------------------------- objects

std::string own_context_id() {
  // The entry of `contexts` with our pid (the daemon's JSON keys are sorted: id first).
  const std::string contexts = admin_request(R"({"cmd":"contexts"})");
  const std::string pid_field = "\"pid\":" + std::to_string(::getpid());
  size_t at = contexts.find(pid_field);
  while (at != std::string::npos && contexts[at + pid_field.size()] != ',' && contexts[at + pid_field.size()] != '}')
    at = contexts.find(pid_field, at + 1);
  if (at == std::string::npos) return {};
  const size_t id = contexts.find("\"id\":", contexts.rfind('{', at));
  if (id == std::string::npos || id > at) return {};
  return std::to_string(std::stoul(contexts.substr(id + 5)));
}

client::Device bound_device(const Node& node, std::string_view name) {
  client::Result<client::Device> device = client::Error{EBUSY, "IOASID_DEVICE_BIND: not tried"};
  eventually(
      [&] {
        device = client::Device::bind(node.file(), name);
        return device.code() != EBUSY;
      },
      kReleaseTimeout);
  return must(std::move(device));
}
uint32_t bind_device(const Node& node, std::string_view name) { return bound_device(node, name).release(); }

uint32_t alloc_ioas(const Node& node) {
  const uint32_t ioasid = must(client::Ioas::allocate(node.file())).release();
  EXPECT_NE(ioasid, 0u) << "IOASID_ALLOC gave IOASID 0";
  return ioasid;
}

uint32_t alloc_pasid(const Node& node, Range r, std::optional<uint32_t> gpasid) {
  return must(client::Pasid::allocate(node.file(), client::PasidRange{r.lo, r.hi}, gpasid)).release();
}

uint64_t map_memory(const client::Ioas& ioas, std::span<std::byte> memory, client::MapOptions options) {
  auto mapping = must(client::Mapping::map_dma(ioas, memory, options));
  mapping.release();
  return mapping.iova();
}
uint64_t map_memfd(const client::Ioas& ioas, const Memfd& memfd, client::MapOptions options) {
  auto mapping = must(client::Mapping::map_file(ioas, memfd.fd, 0, memfd.size, options));
  mapping.release();
  return mapping.iova();
}

std::vector<ioasid_fault> drain_faults(const Node& node) {
  std::vector<ioasid_fault> out;
  ioasid_fault records[8];
  for (;;) {
    const auto got = node.file().read_faults(records);
    if (!got || *got == 0) return out;
    out.insert(out.end(), records, records + *got);
  }
}

Memfd::Memfd(uint64_t size, bool map_it) : size(size) {
  fd = memfd_create("conformance", MFD_CLOEXEC);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
  if (map_it) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    EXPECT_NE(p, MAP_FAILED);
    va = p == MAP_FAILED ? 0 : reinterpret_cast<uint64_t>(p);
  }
}

Memfd::~Memfd() {
  if (va) munmap(reinterpret_cast<void*>(va), size);
  ::close(fd);
}

}  // namespace conf

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::signal(SIGPIPE, SIG_IGN);
  conf::Watchdog::get();
  ::testing::AddGlobalTestEnvironment(new conf::DaemonEnvironment);
  ::testing::UnitTest::GetInstance()->listeners().Append(new conf::WatchdogListener);
  return RUN_ALL_TESTS();

}

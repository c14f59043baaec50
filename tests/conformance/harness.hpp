// SPDX-License-Identifier: MIT
// Helpers of the /dev/ioasid conformance suite: the node under test, an open file of it,
// ioctl wrappers that return errno, PASID request helpers, set-up through libioasid,
// child processes with timeouts. Everything here issues real syscalls on a real node;
// there is no in-process engine.
#pragma once

#include <ioasid/client.hpp>
#include <linux/ioasid.h>

#include <gtest/gtest.h>

#include <sys/ioctl.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <algorithm>
#include <functional>
#include <initializer_list>
#include <optional>
#include <ostream>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace conf {

using namespace std::chrono_literals;
namespace client = ioasid::client;

// ---------------------------------------------------------------- the node under test

// Path of the node: $IOASID_DEV, or DIR/ioasid of the daemon the harness started.
const std::string& node_path();
// True when the harness started ioasidd itself (FUSE mode); false with $IOASID_DEV.
bool harness_owns_daemon();
// The daemon's log file when the harness started it.
std::optional<std::string> daemon_log_path();
// The ioasidd binary ($IOASIDD or the one built with the suite); empty if unknown.
std::string ioasidd_binary();
// The mount directory of the harness-owned FUSE daemon; empty with $IOASID_DEV.
std::string fuse_mount_dir();
// The admin socket of the harness-owned daemon; empty with $IOASID_DEV.
std::string admin_socket_path();
// One admin request (a JSON object, one line); returns the reply line, or empty on error.
std::string admin_request(const std::string& json_line);
// The admin socket's event stream ({"cmd":"events"}), one JSON line per event.
class AdminEvents {
 public:
  AdminEvents();  // connects and subscribes; ok() tells whether it worked
  ~AdminEvents();
  AdminEvents(const AdminEvents&) = delete;
  AdminEvents& operator=(const AdminEvents&) = delete;
  bool ok() const { return fd_ >= 0; }
  // The next event line containing every one of `needles`, waiting up to `timeout`;
  // empty if none came.
  std::string wait_for(std::initializer_list<std::string> needles, std::chrono::milliseconds timeout);
  // How many event lines contain every one of `needles`, reading until no line came
  // for `quiet`. With `matched`, those lines.
  size_t count(std::initializer_list<std::string> needles, std::chrono::milliseconds quiet,
               std::vector<std::string>* matched = nullptr);

 private:
  std::optional<std::string> line(std::chrono::steady_clock::time_point deadline);
  int fd_ = -1;
  std::string pending_;
};

// The per-user bound on map/unmap/ioasid/dsa_fault events (docs/EVENTS.md) refills in
// a second: a test that expects one of them waits that long first, so that an earlier
// test's maps cannot have spent this process's budget.
void let_the_event_budget_refill();

// The admin's id of this process's open file (its only one), from `contexts`; empty
// if there is none or no admin socket.
std::string own_context_id();
// Opens path and asks for the API version; true when it answers 1.
bool node_is_live(const std::string& path);

// Fails the current test if the harness-owned daemon has exited.
void expect_daemon_alive();

// ---------------------------------------------------------------- errno values

struct Errno {
  int value = 0;
  friend bool operator==(Errno, Errno) = default;
};
std::string errno_name(int e);
std::ostream& operator<<(std::ostream& os, Errno e);
constexpr Errno Err(int e) { return Errno{e}; }
inline constexpr Errno kOk{0};

// ---------------------------------------------------------------- the fd

// A set-up step that failed: must() and Node::file() throw it to end the test, and
// gtest reports its message ("IOASID_ALLOC: Cannot allocate memory").
struct SetupFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An open file of the node: a libioasid File, so that set-up can use libioasid.
class Node {
 public:
  // Opens node_path() with O_RDWR | O_CLOEXEC | extra_flags; ADD_FAILURE on error.
  explicit Node(int extra_flags = 0);
  int fd() const { return file_ ? file_->fd() : -1; }
  bool ok() const { return file_.has_value(); }
  // For libioasid calls; throws SetupFailed when the node did not open.
  const client::File& file() const;
  void close() { file_.reset(); }

 private:
  std::optional<client::File> file_;
};

// ---------------------------------------------------------------- ioctl wrappers

// ioctl(fd, cmd, arg): 0 on success, else errno.
inline Errno ioctl_errno(int fd, unsigned long cmd, void* arg) {
  return ::ioctl(fd, cmd, arg) < 0 ? Errno{errno} : kOk;
}
// For the integer-argument commands: the ioctl's return value, errno in *err.
long ioctl_value(int fd, unsigned long cmd, unsigned long arg, Errno* err = nullptr);

// The ioctl command _IOC(dir, type, nr, size) issued with buf as argument;
// buf.size() is the encoded size.
Errno raw_ioctl(int fd, unsigned dir, unsigned nr, std::span<uint8_t> buf, unsigned type = IOASID_TYPE);
inline unsigned long make_cmd(unsigned dir, unsigned nr, size_t size, unsigned type = IOASID_TYPE) {
  return _IOC(dir, type, nr, size);
}
inline constexpr unsigned kRW = _IOC_READ | _IOC_WRITE;

// The bytes of v, zero-extended (or truncated) to size.
template <class T>
std::vector<uint8_t> bytes_of(const T& v, size_t size = sizeof(T)) {
  std::vector<uint8_t> b(size, 0);
  if (size) std::memcpy(b.data(), &v, std::min(size, sizeof(T)));
  return b;
}
template <class T>
T struct_from(std::span<const uint8_t> b) {
  T v{};
  if (!b.empty()) std::memcpy(&v, b.data(), std::min(b.size(), sizeof(T)));
  return v;
}

// ---------------------------------------------------------------- uAPI helpers

ioasid_info get_info(int fd);  // ADD_FAILURE on error
uint32_t pasids_allocated(int fd);

ioasid_pasid_request req_alloc(uint32_t min, uint32_t max);
ioasid_pasid_request req_alloc_gpasid(uint32_t min, uint32_t max, uint32_t gpasid);
ioasid_pasid_request req_free(uint32_t min, uint32_t max);
ioasid_pasid_lookup req_lookup(uint32_t gpasid);

struct PasidResult {
  Errno err;
  uint32_t pasid = 0;  // ALLOC: the PASID; FREE: the count; LOOKUP: out_pasid
};
PasidResult pasid_alloc(int fd, uint32_t min, uint32_t max);
PasidResult pasid_alloc_gpasid(int fd, uint32_t min, uint32_t max, uint32_t gpasid);
PasidResult pasid_free(int fd, uint32_t min, uint32_t max);
PasidResult pasid_lookup(int fd, uint32_t gpasid);

// On FUSE, release after close is asynchronous (the kernel sends RELEASE after close
// has returned; CUSE's is done before it returns, docs/UAPI.md): how long a test waits
// for it.
inline constexpr auto kReleaseTimeout = 3s;
// ALLOC, retried while it fails with ENOSPC, up to timeout.
PasidResult pasid_alloc_retry(int fd, uint32_t min, uint32_t max, std::chrono::milliseconds timeout = kReleaseTimeout);
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

// What the other ioctls can observe of one file's PASID state.
struct State {
  uint32_t allocated = 0;
  std::vector<std::pair<uint32_t, PasidResult>> lookups;  // gpasid -> lookup result
  bool operator==(const State& o) const;
};
std::ostream& operator<<(std::ostream& os, const State& s);
State snapshot(int fd, std::initializer_list<uint32_t> gpasids);

// ---------------------------------------------------------------- memory

// A memfd of `size` bytes (sparse) and, optionally, a shared mapping of it.
struct Memfd {
  explicit Memfd(uint64_t size, bool map_it = false);
  ~Memfd();
  Memfd(const Memfd&) = delete;
  Memfd& operator=(const Memfd&) = delete;
  uint8_t* bytes() const { return reinterpret_cast<uint8_t*>(va); }
  std::span<std::byte> mapped() const { return {reinterpret_cast<std::byte*>(va), va ? size : 0}; }
  uint64_t size;
  int fd = -1;
  uint64_t va = 0;
};

// ---------------------------------------------------------------- PASID ranges

struct Range {
  uint32_t lo, hi;
};
// Each test owns a slot of 16384 PASIDs (k in 1..63) so that a PASID still being
// released by an earlier test never disturbs it.
constexpr Range slot(unsigned k) { return {k * 16384u, k * 16384u + 16383u}; }

// ---------------------------------------------------------------- set-up through libioasid

// Set-up that no test checks goes through libioasid; what a test checks stays a raw
// ioctl. What these make is left to the daemon (release()d), which undoes it when the
// file closes, unless they return the libioasid object.

// The value of a set-up call; a failure ends the test (SetupFailed).
template <class T>
T must(client::Result<T> result) {
  if (!result) throw SetupFailed(result.error().what);
  return std::move(result).value();
}
inline void must(const client::Result<void>& result) {
  if (!result) throw SetupFailed(result.error().what);
}

// DEVICE_BIND by name or PCI address, retrying while an earlier test's file that held
// the device is still being released.
client::Device bound_device(const Node& node, std::string_view name);
// The same, left bound: its dev_id.
uint32_t bind_device(const Node& node, std::string_view name);
// ALLOC of a kernel-managed IOASID: its id.
uint32_t alloc_ioas(const Node& node);
// PASID_REQUEST ALLOC of the lowest free PASID in r, mapped from `gpasid` when given.
uint32_t alloc_pasid(const Node& node, Range r, std::optional<uint32_t> gpasid = std::nullopt);
// MAP_DMA of this process's memory; MAP_FILE of a whole memfd. The IOVA.
uint64_t map_memory(const client::Ioas& ioas, std::span<std::byte> memory, client::MapOptions options = {});
uint64_t map_memfd(const client::Ioas& ioas, const Memfd& memfd, client::MapOptions options = {});

// Every fault record queued on a file opened O_NONBLOCK.
std::vector<ioasid_fault> drain_faults(const Node& node);
// The next fault record or page request, waiting up to 5 s; ETIMEDOUT if none came.
inline client::Result<ioasid_fault> next_fault(const Node& node) { return node.file().next_fault(5s); }

// ---------------------------------------------------------------- processes

// Runs fn in a forked child and returns its exit code; fn must only use syscalls (no
// gtest assertions). On timeout the child is SIGKILLed and -1 returned; killed by a
// signal: -(128 + signo). *why describes abnormal ends.
int run_in_child(const std::function<int()>& fn, std::chrono::milliseconds timeout, std::string* why = nullptr);

// Waits for pid with a timeout; true when reaped, status in *status.
bool wait_pid_for(pid_t pid, std::chrono::milliseconds timeout, int* status);

// SIGKILLs and reaps every pid still registered when it goes out of scope.
class ChildGuard {
 public:
  ~ChildGuard();
  void add(pid_t pid) { pids_.push_back(pid); }
  void reaped(pid_t pid);

 private:
  std::vector<pid_t> pids_;
};

std::string describe_status(int status);

}  // namespace conf

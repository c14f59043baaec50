// SPDX-License-Identifier: MIT
#include "fd_command_trap.h"

#include <ioasid/client.hpp>
#include <linux/iommufd.h>
#include "iommufd_test/iommufd_test.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace ioasid::run {

namespace client = ioasid::client;
namespace iommu_fd = ioasid::client::iommu_fd;

namespace {

// The ABI the filter admits: a program of another one (i386 under x86_64) has other
// system-call numbers, so its calls pass untouched and run natively.
#if defined(__x86_64__)
constexpr uint32_t kNativeAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kNativeAuditArch = AUDIT_ARCH_AARCH64;
#else
constexpr uint32_t kNativeAuditArch = 0;  // unknown: install_fd_command_trap refuses
#endif

// ioctl(2)'s request is an unsigned int in the kernel (fs/ioctl.c): its low 32 bits
// decide, whatever the upper half of the register holds.
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
constexpr uint32_t kRequestLowHalf = offsetof(seccomp_data, args[1]);
#else
constexpr uint32_t kRequestLowHalf = offsetof(seccomp_data, args[1]) + sizeof(uint32_t);
#endif

// iommufd structs are a few dozen bytes; a larger size is refused as the kernel refuses
// a struct it cannot take (copy_struct_from_user).
constexpr uint32_t kMaxStructSize = 4096;

Error from_client(client::Error error) { return Error{error.code, std::move(error.what)}; }

// The struct as the kernel knows it: what it writes back (iommufd_ucmd_respond copies
// min(user size, its own size)).
size_t kernel_struct_size(uint32_t request) {
  return request == IOMMU_FAULT_QUEUE_ALLOC ? sizeof(iommu_fault_alloc) : sizeof(iommu_test_cmd);
}

Result<void> read_memory(pid_t pid, uint64_t address, std::span<std::byte> into) {
  iovec local{into.data(), into.size()};
  iovec remote{reinterpret_cast<void*>(address), into.size()};
  const ssize_t done = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
  if (done < 0) return fail(errno, "process_vm_readv of {} bytes at {:#x}", into.size(), address);
  if (static_cast<size_t>(done) != into.size()) return fail(EFAULT, "{:#x} is partly unmapped", address);
  return {};
}

Result<void> write_memory(pid_t pid, uint64_t address, std::span<const std::byte> from) {
  iovec local{const_cast<std::byte*>(from.data()), from.size()};
  iovec remote{reinterpret_cast<void*>(address), from.size()};
  const ssize_t done = ::process_vm_writev(pid, &local, 1, &remote, 1, 0);
  if (done < 0) return fail(errno, "process_vm_writev of {} bytes at {:#x}", from.size(), address);
  if (static_cast<size_t>(done) != from.size()) return fail(EFAULT, "{:#x} is partly unmapped", address);
  return {};
}

uint32_t first_u32(std::span<const std::byte> bytes) {
  uint32_t value;
  std::memcpy(&value, bytes.data(), sizeof value);
  return value;
}

}  // namespace

UniqueFd open_pidfd(pid_t pid) { return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))); }

namespace {

// A notification names the thread that called (its TID). pidfd_open takes a thread only
// with PIDFD_THREAD (Linux 6.9); before, the pidfd of its thread group has to do, whose
// descriptor table a thread shares unless it was cloned without CLONE_FILES.
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

pid_t thread_group_of(pid_t tid) {
  std::ifstream status(fmt::format("/proc/{}/status", tid));
  std::string line;
  while (std::getline(status, line))
    if (line.starts_with("Tgid:")) return static_cast<pid_t>(std::stol(line.substr(5)));
  return tid;
}

UniqueFd open_thread_pidfd(pid_t tid) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, tid, PIDFD_THREAD)));
  if (!pidfd && errno == EINVAL) return open_pidfd(thread_group_of(tid));
  return pidfd;
}

}  // namespace

// ---------------------------------------------------------------- the filter

Result<UniqueFd> install_fd_command_trap() {
  if (kNativeAuditArch == 0) return fail(ENOTSUP, "ioasid-run knows the system calls of x86_64 and aarch64 only");
  // Jumps count the instructions skipped: a miss goes to ALLOW, a hit to USER_NOTIF.
  sock_filter instructions[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kNativeAuditArch, 0, 5),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kRequestLowHalf),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IOMMU_FAULT_QUEUE_ALLOC, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IOMMU_TEST_CMD, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
  };
  const sock_fprog program{.len = std::size(instructions), .filter = instructions};
  // Without privileges a filter needs no_new_privs; it also keeps a set-user-ID program
  // from running under a filter its owner did not choose.
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return fail(errno, "prctl(PR_SET_NO_NEW_PRIVS)");
  const long listener = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &program);
  if (listener < 0) return fail(errno, "seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER)");
  return UniqueFd(static_cast<int>(listener));
}

Result<void> send_fd(int socket, int fd) {
  char byte = 0;
  iovec data{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr message{.msg_iov = &data, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(header), &fd, sizeof fd);
  if (::sendmsg(socket, &message, MSG_NOSIGNAL) < 0) return fail(errno, "sendmsg of the seccomp listener");
  return {};
}

Result<UniqueFd> receive_fd(int socket) {
  char byte;
  iovec data{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr message{.msg_iov = &data, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  const ssize_t got = ::recvmsg(socket, &message, MSG_CMSG_CLOEXEC);
  if (got < 0) return fail(errno, "recvmsg of the seccomp listener");
  const cmsghdr* header = CMSG_FIRSTHDR(&message);
  if (got == 0 || !header || header->cmsg_type != SCM_RIGHTS || header->cmsg_len != CMSG_LEN(sizeof(int)))
    return fail(EPROTO, "the child sent no seccomp listener");
  int fd;
  std::memcpy(&fd, CMSG_DATA(header), sizeof fd);
  return UniqueFd(fd);
}

// ---------------------------------------------------------------- the node

Result<IommuNode> identify_iommu_node(const std::string& path) {
  struct stat status;
  if (::stat(path.c_str(), &status) < 0) return fail(errno, "{}: {} (is ioasidd running?)", path, std::strerror(errno));
  IommuNode node{.path = path, .char_device = S_ISCHR(status.st_mode)};
  if (node.char_device) {
    node.rdev = status.st_rdev;
  } else {
    node.dev = status.st_dev;
    node.ino = status.st_ino;
  }
  return node;
}

bool FdCommandServer::is_iommu_node(int fd) const {
  // Never fstat(2): on a FUSE file that asks the daemon, which may be the one the
  // program is waiting for. statx without sync answers from the inode the kernel holds.
  struct statx status;
  if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE | STATX_INO, &status) < 0) return false;
  if (node_.char_device)
    return S_ISCHR(status.stx_mode) && makedev(status.stx_rdev_major, status.stx_rdev_minor) == node_.rdev;
  return makedev(status.stx_dev_major, status.stx_dev_minor) == node_.dev && status.stx_ino == node_.ino;
}

// ---------------------------------------------------------------- serving

// How a trapped ioctl ends.
struct FdCommandServer::Reply {
  enum class Kind { run_natively, fail, succeed } kind = Kind::run_natively;
  int error = 0;  // Kind::fail: the errno the program sees

  static Reply natively() { return {}; }
  static Reply failed(const Error& why) { return {Kind::fail, why.code}; }
  static Reply succeeded() { return {Kind::succeed, 0}; }
};

bool FdCommandServer::still_waiting(uint64_t notification_id) const {
  return ::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_ID_VALID, &notification_id) == 0;
}

Result<void> FdCommandServer::serve_one() {
  seccomp_notif notification{};  // RECV wants it zeroed
  if (::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_RECV, &notification) < 0) {
    // ENOENT: the caller was interrupted or died before we received it.
    if (errno == ENOENT || errno == EINTR) return {};
    return fail(errno, "SECCOMP_IOCTL_NOTIF_RECV");
  }
  const Reply reply = answer(notification);
  seccomp_notif_resp response{.id = notification.id};
  switch (reply.kind) {
    case Reply::Kind::run_natively: response.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE; break;
    case Reply::Kind::fail: response.error = -reply.error; break;
    case Reply::Kind::succeed: break;
  }
  if (::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_SEND, &response) < 0 && errno != ENOENT)
    return fail(errno, "SECCOMP_IOCTL_NOTIF_SEND");
  return {};
}

// Continuing is no security decision here: it lets the call run as it would have without
// ioasid-run. Only a command on ioasidd's node that returns an fd is run for the program.
FdCommandServer::Reply FdCommandServer::answer(const seccomp_notif& notification) {
  const auto request = static_cast<uint32_t>(notification.data.args[1]);
  const auto program_fd = static_cast<int>(notification.data.args[0]);
  const uint64_t cmd_struct = notification.data.args[2];

  if (request == IOMMU_TEST_CMD) {
    // Most test ops return no fd: look at the op before anything else.
    std::array<std::byte, 8> head;
    if (!read_memory(notification.pid, cmd_struct, head) || !still_waiting(notification.id) ||
        !iommu_fd::fd_field_offset(request, head.data()))
      return Reply::natively();
  }
  const UniqueFd pidfd = open_thread_pidfd(notification.pid);
  if (!pidfd || !still_waiting(notification.id)) return Reply::natively();
  // The program's open file itself: the same file ioasidd knows, so the object is made in
  // the program's /dev/iommu context.
  const UniqueFd iommu_file(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), program_fd, 0)));
  if (!iommu_file || !is_iommu_node(iommu_file.get())) return Reply::natively();
  return run_for(notification, iommu_file.get());
}

FdCommandServer::Reply FdCommandServer::run_for(const seccomp_notif& notification, int iommu_fd) {
  const auto request = static_cast<uint32_t>(notification.data.args[1]);
  const uint64_t address = notification.data.args[2];
  const pid_t pid = notification.pid;

  std::array<std::byte, sizeof(uint32_t)> size_field;
  if (auto read = read_memory(pid, address, size_field); !read) return Reply::failed(fail(EFAULT, "{}", read.error().why));
  const uint32_t size = first_u32(size_field);
  if (size > kMaxStructSize) return Reply::failed(fail(E2BIG, "struct size {}", size));
  // At least the head fd_field_offset reads (size and op), zero beyond what the program gave.
  std::vector<std::byte> copy(std::max<size_t>(size, 8));
  if (auto read = read_memory(pid, address, std::span(copy).first(size)); !read)
    return Reply::failed(fail(EFAULT, "{}", read.error().why));
  std::memcpy(copy.data(), &size, sizeof size);  // a size shrunk meanwhile must not be trusted
  if (!still_waiting(notification.id)) return Reply::natively();

  // The launcher's copy goes to ioasidd; the program's struct is written once all went well.
  auto object = iommu_fd::make_object(iommu_fd, request, copy.data());
  if (!object) return Reply::failed(from_client(std::move(object).error()));
  auto opened = iommu_fd::open_object_file(companion_path_.c_str(), object->token, iommu_fd::FdNumber::set_later);
  if (!opened) return Reply::failed(from_client(std::move(opened).error()));
  const UniqueFd object_file(*opened);

  // The program's copy is O_CLOEXEC, as iommufd makes its fault and access fds.
  seccomp_notif_addfd placement{.id = notification.id, .srcfd = static_cast<uint32_t>(object_file.get()),
                                .newfd_flags = O_CLOEXEC};
  const int number = ::ioctl(listener_.get(), SECCOMP_IOCTL_NOTIF_ADDFD, &placement);
  if (number < 0) return Reply::failed(fail(errno, "SECCOMP_IOCTL_NOTIF_ADDFD"));
  // From here the file is in the program. These two fail only when the daemon or the
  // program's memory went away under us; the program then owns a descriptor it was
  // not told about, closed when it exits.
  if (auto told = iommu_fd::set_fd_number(object_file.get(), number); !told)
    return Reply::failed(from_client(std::move(told).error()));
  iommu_fd::store_fd(copy.data(), *object, number);
  const size_t written = std::min<size_t>(size, kernel_struct_size(request));
  if (auto stored = write_memory(pid, address, std::span(copy).first(written)); !stored)
    return Reply::failed(fail(EFAULT, "{}", stored.error().why));
  return Reply::succeeded();
}

}  // namespace ioasid::run

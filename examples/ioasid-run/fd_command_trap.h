// SPDX-License-Identifier: MIT
// ioasid-run's seccomp half: the filter that stops a program's fd-returning iommufd
// commands (IOMMU_FAULT_QUEUE_ALLOC, IOMMU_TEST_CMD) before they reach ioasidd, and the
// server that runs them for it in two steps (<linux/ioasid_iommu_fd.h>) and places the
// object's file in the program with SECCOMP_IOCTL_NOTIF_ADDFD.
#pragma once

#include "base/result.h"
#include "base/unique_fd.h"

#include <sys/types.h>

#include <string>

struct seccomp_notif;  // <linux/seccomp.h>

namespace ioasid::run {

// Installs the filter on the calling thread (and so on everything it execs and forks)
// after PR_SET_NO_NEW_PRIVS, and returns its listener. ENOTSUP on an architecture whose
// system-call ABI the filter does not know.
Result<UniqueFd> install_fd_command_trap();

// Passing the listener from the child that installed the filter to the parent serving it.
Result<void> send_fd(int socket, int fd);
Result<UniqueFd> receive_fd(int socket);

// pidfd_open(2); an invalid UniqueFd with errno set on failure. (glibc 2.36's
// <sys/pidfd.h> declares its wrappers without C linkage, so they cannot be called from C++.)
UniqueFd open_pidfd(pid_t pid);

// The file whose commands are served: ioasidd's iommufd node, known by its identity so
// that a program may reach it by any path (a char device by its device number).
struct IommuNode {
  std::string path;
  bool char_device = false;
  dev_t rdev = 0;           // char_device
  dev_t dev = 0;            // otherwise (a FUSE mount's file)
  ino_t ino = 0;
};
Result<IommuNode> identify_iommu_node(const std::string& path);

class FdCommandServer {
 public:
  FdCommandServer(UniqueFd listener, IommuNode node, std::string companion_path)
      : listener_(std::move(listener)), node_(std::move(node)), companion_path_(std::move(companion_path)) {}

  int listener() const { return listener_.get(); }

  // Receives one notification (the listener is readable) and answers it. An error means
  // the listener itself failed; a notification whose process went away is no error.
  Result<void> serve_one();

 private:
  struct Reply;
  Reply answer(const ::seccomp_notif& notification);
  Reply run_for(const ::seccomp_notif& notification, int iommu_fd);
  bool is_iommu_node(int fd) const;
  bool still_waiting(uint64_t notification_id) const;

  UniqueFd listener_;
  IommuNode node_;
  std::string companion_path_;
};

}  // namespace ioasid::run

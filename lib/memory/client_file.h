// SPDX-License-Identifier: MIT
// A client's open file, as the daemon may hold it. The daemon takes the very open file
// description the client named (pidfd_getfd(2)), never reopens anything by a /proc
// path: a client can swap fd N for another file between a check and a reopen, and a
// reopen runs with the daemon's rights, not the client's. The access mode checked is
// the one the kernel granted the client.
//
// Files the daemon serves itself (its FUSE node, its CUSE device) are refused: every
// syscall that reaches one of them comes back to the daemon's own session threads, and
// with all of them doing so nobody answers (a deadlock of the whole daemon).
#pragma once

#include "base/result.h"
#include "base/unique_fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <string>

namespace ioasid {

// The device numbers of the daemon's own nodes: its FUSE mount's st_dev, its CUSE
// device's st_rdev. Process-wide, as serving is.
void add_served_device(dev_t device);
void remove_served_device(dev_t device);
bool is_served_device(dev_t device);

// The thread group (process) of thread `tid`, from /proc; 0 if it is gone.
pid_t thread_group_of(pid_t tid);

struct ClientFile {
  UniqueFd fd;              // the daemon's own reference to the client's open file
  int access_mode = 0;      // O_RDONLY, O_WRONLY or O_RDWR, as the client opened it
  struct statx status {};   // from the kernel's cache (see cached_status)
  std::string name;         // for logs
};

// Takes fd `fd` of thread `tid` (its fd table: a thread created without CLONE_FILES
// has its own).
// - No such process: ESRCH; no such fd: EBADF; no ptrace rights over it: EPERM.
// - An O_PATH descriptor (it grants no access to the contents): EBADF.
// - Not a regular file, or a node this daemon serves: EINVAL (the daemon's reference
//   to its own CUSE node is dropped off the session threads: close_off_session_thread).
Result<ClientFile> take_client_file(pid_t tid, int fd);

// Whether fd `fd` of thread `tid` is a file of a node this daemon serves (false: no
// such fd, or another file). ESRCH, EPERM as take_client_file.
Result<bool> holds_served_node(pid_t tid, int fd);

// The type, identity and size of an open file from the kernel's cache
// (AT_STATX_DONT_SYNC): no request to a FUSE server, which may be this daemon or a
// user's that never answers.
Result<struct statx> cached_status(int fd);

// Closes `fd` on a thread of its own. The last close of a CUSE device sends a
// synchronous RELEASE to its server: if that server is this daemon, a session thread
// must be free to answer, so the closing one must not be a session thread.
void close_off_session_thread(UniqueFd fd);

}  // namespace ioasid

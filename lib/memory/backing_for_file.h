// SPDX-License-Identifier: MIT
// How the daemon reaches a client's file for MAP_FILE: it takes the client's own open
// file (client_file.h) and maps it through the file's shared view, zero copy.
#pragma once

#include "memory/backing.h"

#include <sys/types.h>

#include <memory>

namespace ioasid {

// The backing for [offset, offset + length) of file descriptor `fd` of thread `pid`
// (the calling thread's id: it names that thread's fd table).
//
// - No such fd, or an O_PATH one: EBADF. Not a regular file (memfd, shm, hugetlbfs,
//   tmpfs or disk files are), or a node this daemon serves: EINVAL.
// - offset/length not 4 KiB multiples or length 0: EINVAL; wrap: EOVERFLOW; beyond the
//   end of the file: EINVAL.
// - The access mode is the client's open file description's: MapAccess::kWrite needs
//   it O_RDWR, reading needs it not O_WRONLY (EACCES otherwise), as mmap would demand
//   of the client itself.
// - No ptrace rights over pid: EPERM; no such process: ESRCH.
Result<std::shared_ptr<Backing>> backing_for_file(pid_t pid, int fd, uint64_t offset,
                                                  uint64_t length, MapAccess access);

}  // namespace ioasid

// How the daemon reaches a client's file for MAP_FILE: the file is reopened through
// /proc/<pid>/fd/<fd> and mapped MAP_SHARED (a MappedFileBacking), zero copy.
#pragma once

#include "memory/backing.h"

#include <sys/types.h>

#include <memory>

namespace ioasid {

// The backing for [offset, offset + length) of file descriptor `fd` of process `pid`
// (the calling thread's id: it names that thread's fd table).
//
// - No such fd, or an O_PATH one: EBADF. Not a regular file (memfd, shm, hugetlbfs,
//   tmpfs or disk files are): EINVAL; it is never opened, so device nodes and FIFOs
//   see no open() from the daemon.
// - offset/length not 4 KiB multiples or length 0: EINVAL; wrap: EOVERFLOW; beyond the
//   end of the file: EINVAL.
// - Reopening goes through the daemon's own rights, so the client's are checked
//   against its open file description (/proc/<pid>/fdinfo): MapAccess::kWrite needs the
//   client's fd open O_RDWR, reading needs it not O_WRONLY (EACCES otherwise), as
//   mmap would demand of the client itself. The fdinfo inode must match the reopened
//   file (EBADF if the client swapped the fd meanwhile).
// - No ptrace rights over pid: EPERM.
Result<std::shared_ptr<Backing>> backing_for_file(pid_t pid, int fd, uint64_t offset,
                                                  uint64_t length, MapAccess access);

}  // namespace ioasid

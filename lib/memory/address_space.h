// SPDX-License-Identifier: MIT
// One open /proc/<pid>/mem per client address space, shared by every backing of that
// space's private memory: the daemon's fds grow with the processes that map memory,
// not with their MAP calls.
//
// An open /proc/<pid>/mem is bound to the address space (mm) it was opened on: after
// an exec or exit it reaches nothing, and a reused pid never gets its DMA. Sharing must
// keep that, so a handle is reused only for the same address space, recognised by a
// key read through the handle itself: the process (thread-group id and start time),
// its auxiliary vector (mm->saved_auxv, new at every exec) and the 16 random bytes
// the kernel put at AT_RANDOM for that exec. Every lookup opens a fresh handle to read
// the key (a fork copies the bytes, but not the thread-group id; an exec replaces
// them) and keeps it only when no live handle has the same key.
//
// A read-only and a read-write handle of one address space are two handles (a MAP
// for reading gets no write access to the client), but they name the same memory:
// mm_id() is one number for both, which page locations (page_location.h) compare.
#pragma once

#include "base/result.h"
#include "base/unique_fd.h"
#include "memory/backing.h"

#include <sys/types.h>

#include <memory>
#include <string>

namespace ioasid {

class AddressSpace {
 public:
  // The handle on the address space thread `tid` runs in now, writable for
  // MapAccess::kWrite. No ptrace rights: EPERM; no such process: ESRCH.
  static Result<std::shared_ptr<AddressSpace>> of(pid_t tid, MapAccess access);

  AddressSpace(UniqueFd memory, pid_t pid, bool writable, uint64_t mm_id)
      : memory_(std::move(memory)), pid_(pid), writable_(writable), mm_id_(mm_id) {}
  int fd() const { return memory_.get(); }
  pid_t pid() const { return pid_; }  // the thread group it was opened for
  bool writable() const { return writable_; }
  // The address space this handle reaches: equal for every live handle of one mm
  // (whatever its access), different for any other mm, never reused. A handle whose
  // mm could not be recognised (its identity was unreadable) has a number of its own.
  uint64_t mm_id() const { return mm_id_; }

 private:
  UniqueFd memory_;
  const pid_t pid_;
  const bool writable_;
  const uint64_t mm_id_;
};

}  // namespace ioasid

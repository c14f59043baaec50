// SPDX-License-Identifier: MIT
// A range of a client's private memory reached through /proc/<pid>/mem, opened when
// the range is mapped and shared with every other range of the same address space
// (address_space.h). The open file holds the client's address space (mm), not its
// pid: after the client exits every access fails (EFAULT) and a process that later
// gets the same pid can never be touched. Reads and writes are pread/pwrite (the
// kernel copies page by page); a short transfer (the client unmapped part of the
// range) is EFAULT with the bytes done so far, never a crash.
//
// Not zero copy, and no atomics across processes: compare_exchange64 is a read,
// compare and write under one daemon-wide mutex, so it is atomic only against other
// compare_exchange64 calls on remote backings, not against the client's own stores.
// A/D-bit updates in private client memory are therefore not atomic against the
// client; a shared file mapping (MappedFileBacking) gives real atomics.
#pragma once

#include "memory/backing.h"
#include "memory/address_space.h"
#include "memory/pinned_pages.h"

#include <sys/types.h>

#include <memory>
#include <vector>

namespace ioasid {

class RemoteBacking final : public Backing {
 public:
  // [va, va + length) of the address space pid runs in (read-write for
  // MapAccess::kWrite). No ptrace rights over pid: EPERM; no such process: ESRCH. The
  // range itself is not checked here (see backing_for_range).
  static Result<std::shared_ptr<RemoteBacking>> open(pid_t pid, uint64_t va, uint64_t length,
                                                     MapAccess access);

  // `layout` says where the range's pages live (locate_runs of the range, offsets
  // relative to va): a shared file page reached through /proc/<pid>/mem is still the
  // file's page. Empty: all of it private memory of `space`. The backing pins those
  // pages (pinned_pages.h) for as long as it lives.
  RemoteBacking(std::shared_ptr<AddressSpace> space, uint64_t va, uint64_t length, bool writable,
                std::string description, std::vector<LocatedRun> layout = {});

  bool zero_copy() const override { return false; }
  uint64_t client_va() const { return va_; }

 private:
  Result<void> do_read(uint64_t offset, std::span<std::byte> out, size_t& bytes_done) override;
  Result<void> do_write(uint64_t offset, std::span<const std::byte> in,
                        size_t& bytes_done) override;
  Result<uint64_t> do_read64(uint64_t offset) override;
  Result<void> do_write64(uint64_t offset, uint64_t value) override;
  Result<bool> do_compare_exchange64(uint64_t offset, uint64_t& expected,
                                     uint64_t desired) override;
  std::optional<PageLocation> do_location(uint64_t offset) const override;

  Result<void> transfer(uint64_t offset, std::byte* buffer, size_t size, bool to_client,
                        size_t& bytes_done);

  const std::shared_ptr<AddressSpace> space_;
  const uint64_t va_;
  std::vector<LocatedRun> layout_;  // in offset order, covering [0, size())
  std::vector<PinnedPages::Pin> pins_;  // one per run of layout_
};

}  // namespace ioasid

// SPDX-License-Identifier: MIT
#include "memory/client_memory.h"

#include "base/fail_nth.h"

#include <sys/uio.h>

#include <climits>
#include <vector>

namespace ioasid {
namespace {

// process_vm_* may transfer less than asked (a range crossing into unmapped
// memory); anything short is a bad pointer for the ioctl.
Result<void> transfer(pid_t pid, uint64_t address, void* local, size_t size, bool to_client) {
  if (size == 0) return success();
  if (address + size < address) return fail(EFAULT, "user range {:#x}+{} wraps", address, size);
  IOASID_TRY(fail_nth::point(fail_nth::Site::kClientCopy, "a copy of client memory"));
  iovec local_iov{local, size};
  iovec remote_iov{reinterpret_cast<void*>(address), size};
  const ssize_t done = to_client ? process_vm_writev(pid, &local_iov, 1, &remote_iov, 1, 0)
                                 : process_vm_readv(pid, &local_iov, 1, &remote_iov, 1, 0);
  if (done == static_cast<ssize_t>(size)) return success();
  if (done < 0 && errno == EPERM)
    return fail(EPERM, "no ptrace access to the memory of pid {}", pid);
  return fail(EFAULT, "cannot {} {} bytes at user address {:#x} of pid {}",
              to_client ? "write" : "read", size, address, pid);
}

}  // namespace

Result<void> ProcessMemory::read(uint64_t address, std::span<std::byte> out) {
  return transfer(pid_, address, out.data(), out.size(), false);
}

Result<void> ProcessMemory::write(uint64_t address, std::span<const std::byte> in) {
  return transfer(pid_, address, const_cast<std::byte*>(in.data()), in.size(), true);
}

Result<void> ClientMemory::gather(uint64_t address, std::span<const std::span<std::byte>> pieces, size_t& done) {
  done = 0;
  for (const auto& piece : pieces) {
    IOASID_TRY(read(address + done, piece));
    done += piece.size();
  }
  return success();
}

Result<void> ClientMemory::scatter(uint64_t address, std::span<const std::span<std::byte>> pieces, size_t& done) {
  done = 0;
  for (const auto& piece : pieces) {
    IOASID_TRY(write(address + done, piece));
    done += piece.size();
  }
  return success();
}

Result<void> ProcessMemory::gather(uint64_t address, std::span<const std::span<std::byte>> pieces, size_t& done) {
  return vectored(address, pieces, done, false);
}

Result<void> ProcessMemory::scatter(uint64_t address, std::span<const std::span<std::byte>> pieces, size_t& done) {
  return vectored(address, pieces, done, true);
}

// One process_vm_* call per IOV_MAX pieces; the client side is one contiguous range.
Result<void> ProcessMemory::vectored(uint64_t address, std::span<const std::span<std::byte>> pieces, size_t& done,
                                     bool to_client) {
  done = 0;
  IOASID_TRY(fail_nth::point(fail_nth::Site::kClientCopy, "a copy of client memory"));
  std::vector<iovec> local;
  while (!pieces.empty()) {
    const size_t batch = std::min<size_t>(pieces.size(), IOV_MAX);
    local.clear();
    size_t size = 0;
    for (const auto& piece : pieces.first(batch)) {
      local.push_back({piece.data(), piece.size()});
      size += piece.size();
    }
    if (address + done + size < address + done)
      return fail(EFAULT, "user range {:#x}+{} wraps", address + done, size);
    iovec remote{reinterpret_cast<void*>(address + done), size};
    const ssize_t moved = to_client ? process_vm_writev(pid_, local.data(), local.size(), &remote, 1, 0)
                                    : process_vm_readv(pid_, local.data(), local.size(), &remote, 1, 0);
    if (moved > 0) done += static_cast<size_t>(moved);
    if (moved != static_cast<ssize_t>(size)) {
      if (moved < 0 && errno == EPERM) return fail(EPERM, "no ptrace access to the memory of pid {}", pid_);
      return fail(EFAULT, "cannot {} {} bytes at user address {:#x} of pid {}", to_client ? "write" : "read", size,
                  address + done, pid_);
    }
    pieces = pieces.subspan(batch);
  }
  return success();
}

Result<void> NoClientMemory::read(uint64_t address, std::span<std::byte> out) {
  return fail(EFAULT, "no client memory: read of {} bytes at {:#x}", out.size(), address);
}

Result<void> NoClientMemory::write(uint64_t address, std::span<const std::byte> in) {
  return fail(EFAULT, "no client memory: write of {} bytes at {:#x}", in.size(), address);
}

}  // namespace ioasid

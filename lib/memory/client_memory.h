// SPDX-License-Identifier: MIT
// Access to the calling client's memory for arguments that carry user pointers.
// A bad pointer is EFAULT, never a crash of the daemon.
#pragma once

#include "base/result.h"

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace ioasid {

class ClientMemory {
 public:
  virtual ~ClientMemory() = default;
  virtual Result<void> read(uint64_t address, std::span<std::byte> out) = 0;
  virtual Result<void> write(uint64_t address, std::span<const std::byte> in) = 0;
  // Vectored forms: the client's bytes from `address` on, in order, into or out of
  // `pieces` (daemon memory). *done counts the bytes moved, also on an error.
  virtual Result<void> gather(uint64_t address, std::span<const std::span<std::byte>> pieces, size_t& done);
  virtual Result<void> scatter(uint64_t address, std::span<const std::span<std::byte>> pieces, size_t& done);
  // The calling thread, for what must be reached through /proc (mappings, files);
  // 0 when there is no client process.
  virtual pid_t pid() const = 0;
};

// The memory of a live process (or thread), through process_vm_readv/writev.
// Needs ptrace rights over it (root has them).
class ProcessMemory final : public ClientMemory {
 public:
  explicit ProcessMemory(pid_t pid) : pid_(pid) {}
  Result<void> read(uint64_t address, std::span<std::byte> out) override;
  Result<void> write(uint64_t address, std::span<const std::byte> in) override;
  Result<void> gather(uint64_t address, std::span<const std::span<std::byte>> pieces, size_t& done) override;
  Result<void> scatter(uint64_t address, std::span<const std::span<std::byte>> pieces, size_t& done) override;
  pid_t pid() const override { return pid_; }

 private:
  Result<void> vectored(uint64_t address, std::span<const std::span<std::byte>> pieces, size_t& done,
                        bool to_client);
  pid_t pid_;
};

// For callers that pass no pointers (and for tests): every access is EFAULT.
class NoClientMemory final : public ClientMemory {
 public:
  Result<void> read(uint64_t address, std::span<std::byte>) override;
  Result<void> write(uint64_t address, std::span<const std::byte>) override;
  pid_t pid() const override { return 0; }
};

}  // namespace ioasid

// SPDX-License-Identifier: MIT
// The memory behind one segment of the emulated HPA space: a pinned client range.
// Offsets are relative to the start of the range. Every access is bounds-checked
// here, once, before it reaches an implementation, and no access can crash the
// daemon: a client that unmaps, truncates or exits makes it fail with EFAULT.
#pragma once

#include "base/result.h"
#include "memory/page_location.h"
#include "memory/sigbus_guard.h"

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>

namespace ioasid {

// What the device may do to the range (MAP_DMA's READABLE / WRITEABLE).
enum class MapAccess : uint8_t { kRead = 1, kWrite = 2, kReadWrite = 3 };

constexpr bool allows_write(MapAccess access) {
  return (static_cast<uint8_t>(access) & static_cast<uint8_t>(MapAccess::kWrite)) != 0;
}
constexpr bool allows_read(MapAccess access) {
  return (static_cast<uint8_t>(access) & static_cast<uint8_t>(MapAccess::kRead)) != 0;
}

// Where a backing's first byte is for the client that mapped it (ATS_TRANSLATE answers
// with it): an address in a process (MAP_DMA), or an offset in a file (MAP_FILE).
struct ClientOrigin {
  enum class Kind : uint8_t { kProcess, kFile };
  Kind kind = Kind::kProcess;
  pid_t pid = 0;         // kProcess: the thread group whose address `at` is
  uint64_t at = 0;       // the virtual address, or the file offset
  uint32_t file_major = 0, file_minor = 0;  // kFile: the file's device
  uint64_t file_inode = 0;
  ClientOrigin shifted(uint64_t by) const {
    ClientOrigin out = *this;
    out.at += by;
    return out;
  }
};

class Backing {
 public:
  virtual ~Backing() = default;
  Backing(const Backing&) = delete;
  Backing& operator=(const Backing&) = delete;

  uint64_t size() const { return size_; }
  // Writes need MapAccess::kWrite at creation (the daemon opened and mapped the client's
  // memory read-only otherwise); reads are always possible.
  bool writable() const { return writable_; }
  // Mapped into the daemon: copies are plain memcpy and compare_exchange64 is atomic
  // against the client's own accesses.
  virtual bool zero_copy() const = 0;
  // Where the memory comes from, for logs and the admin status.
  const std::string& description() const { return description_; }

  // Copies [offset, offset + out.size()). A range outside size() is EFAULT. On an
  // error *bytes_done (when given) holds how many leading bytes were transferred;
  // on success it is the whole size.
  Result<void> read(uint64_t offset, std::span<std::byte> out, size_t* bytes_done = nullptr);
  // Writes on a read-only backing are EACCES.
  Result<void> write(uint64_t offset, std::span<const std::byte> in, size_t* bytes_done = nullptr);

  // The daemon's own mapping of [offset, offset + length) when the backing is mapped
  // (zero copy) and alive, for a copy the kernel does straight into it; empty
  // otherwise (out of range, a write to a read-only backing, not mapped).
  std::span<std::byte> mapped(uint64_t offset, size_t length, bool for_write);
  // A device (the dsa engine) that reads or writes mapped() memory with the CPU does
  // it inside this guard, since the client can truncate its file meanwhile; then
  // failed() says whether the access hit a SIGBUS (the data is meaningless). Null and
  // false for memory the daemon has not mapped.
  virtual std::unique_ptr<SigbusGuard> guard_cpu_access() { return nullptr; }
  virtual bool failed() const { return false; }

  // Aligned 64-bit words (EINVAL when misaligned): acquire loads, release stores.
  Result<uint64_t> read64(uint64_t offset);
  Result<void> write64(uint64_t offset, uint64_t value);
  // On a mismatch returns false and stores the current value in `expected`.
  Result<bool> compare_exchange64(uint64_t offset, uint64_t& expected, uint64_t desired);

  // Where the client has these bytes; set once by whoever made the backing, before it
  // is shared. nullopt for memory no client mapped (tests, tables).
  const std::optional<ClientOrigin>& origin() const { return origin_; }
  void set_origin(ClientOrigin origin) { origin_ = origin; }

  // Where the page holding byte `offset` lives (page_location.h), as it was when the
  // backing was made: what it pins. nullopt outside the range, or where the
  // implementation cannot tell.
  std::optional<PageLocation> location(uint64_t offset) const;

 protected:
  Backing(uint64_t size, bool writable, std::string description)
      : size_(size), writable_(writable), description_(std::move(description)) {}

  // Called with a range already checked against size() and, for writes, writable().
  virtual Result<void> do_read(uint64_t offset, std::span<std::byte> out, size_t& bytes_done) = 0;
  virtual Result<void> do_write(uint64_t offset, std::span<const std::byte> in,
                                size_t& bytes_done) = 0;
  virtual Result<uint64_t> do_read64(uint64_t offset) = 0;
  virtual Result<void> do_write64(uint64_t offset, uint64_t value) = 0;
  virtual std::span<std::byte> do_mapped(uint64_t, size_t) { return {}; }
  // Called with the page-aligned offset of a page inside the range.
  virtual std::optional<PageLocation> do_location(uint64_t) const { return std::nullopt; }
  virtual Result<bool> do_compare_exchange64(uint64_t offset, uint64_t& expected,
                                             uint64_t desired) = 0;

 private:
  Result<void> check_range(uint64_t offset, size_t length, bool for_write) const;
  Result<void> check_word(uint64_t offset, bool for_write) const;

  const uint64_t size_;
  const bool writable_;
  const std::string description_;
  std::optional<ClientOrigin> origin_;
};

}  // namespace ioasid

// SPDX-License-Identifier: MIT
#include "memory/remote_backing.h"

#include "base/fail_nth.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <mutex>

namespace ioasid {
namespace {

// Serialises every remote compare_exchange64 (see the header); they are rare (A/D
// updates of tables kept in private client memory).
std::mutex remote_atomic_mutex;

}  // namespace

Result<std::shared_ptr<RemoteBacking>> RemoteBacking::open(pid_t pid, uint64_t va, uint64_t length,
                                                           MapAccess access) {
  IOASID_TRY(fail_nth::point(fail_nth::Site::kAllocation, "a view of client memory"));
  auto space = AddressSpace::of(pid, access);
  IOASID_TRY(space);
  return std::make_shared<RemoteBacking>(
      std::move(*space), va, length, allows_write(access),
      fmt::format("pid {} memory [{:#x}, {:#x})", pid, va, va + length));
}

RemoteBacking::RemoteBacking(std::shared_ptr<AddressSpace> space, uint64_t va, uint64_t length, bool writable,
                             std::string description, std::vector<LocatedRun> layout)
    : Backing(length, writable, std::move(description)), space_(std::move(space)), va_(va), layout_(std::move(layout)) {
  if (layout_.empty())
    layout_.push_back(LocatedRun{.offset = 0, .length = length, .first = PageLocation::private_page(space_, va),
                                 .huge = false});
  pins_.reserve(layout_.size());
  for (const LocatedRun& run : layout_) pins_.push_back(PinnedPages::global().pin(run.first, run.length));
}

std::optional<PageLocation> RemoteBacking::do_location(uint64_t offset) const {
  // The last run starting at or before offset.
  auto after = std::upper_bound(layout_.begin(), layout_.end(), offset,
                                [](uint64_t at, const LocatedRun& run) { return at < run.offset; });
  if (after == layout_.begin()) return std::nullopt;
  const LocatedRun& run = *std::prev(after);
  if (offset - run.offset >= run.length) return std::nullopt;
  return run.first.plus(offset - run.offset);
}

// pread/pwrite on /proc/<pid>/mem stop at the first page they cannot reach: a count
// short of the request, -1 (EIO) when not even the first page could be reached, 0
// once the address space is gone (the process exited).
Result<void> RemoteBacking::transfer(uint64_t offset, std::byte* buffer, size_t size,
                                     bool to_client, size_t& bytes_done) {
  size_t done = 0;
  while (done < size) {
    const auto address = static_cast<off_t>(va_ + offset + done);
    const ssize_t moved = to_client
                              ? ::pwrite(space_->fd(), buffer + done, size - done, address)
                              : ::pread(space_->fd(), buffer + done, size - done, address);
    if (moved > 0) {
      done += static_cast<size_t>(moved);
      continue;
    }
    const int error = moved < 0 ? errno : 0;
    if (error == EINTR) continue;
    bytes_done = done;
    return fail(
        EFAULT, "cannot {} client address {:#x} ({}): {}", to_client ? "write" : "read",
        va_ + offset + done, description(),
        error == 0 ? "the address space is gone (the process exited)" : "not mapped any more");
  }
  bytes_done = done;
  return success();
}

Result<void> RemoteBacking::do_read(uint64_t offset, std::span<std::byte> out, size_t& bytes_done) {
  return transfer(offset, out.data(), out.size(), false, bytes_done);
}

Result<void> RemoteBacking::do_write(uint64_t offset, std::span<const std::byte> in,
                                     size_t& bytes_done) {
  // pwrite does not modify the buffer; transfer() takes one pointer type for both ways.
  return transfer(offset, const_cast<std::byte*>(in.data()), in.size(), true, bytes_done);
}

Result<uint64_t> RemoteBacking::do_read64(uint64_t offset) {
  uint64_t value = 0;
  size_t done = 0;
  IOASID_TRY(transfer(offset, reinterpret_cast<std::byte*>(&value), sizeof value, false, done));
  return value;
}

Result<void> RemoteBacking::do_write64(uint64_t offset, uint64_t value) {
  size_t done = 0;
  return transfer(offset, reinterpret_cast<std::byte*>(&value), sizeof value, true, done);
}

Result<bool> RemoteBacking::do_compare_exchange64(uint64_t offset, uint64_t& expected,
                                                  uint64_t desired) {
  std::lock_guard lock(remote_atomic_mutex);
  auto current = do_read64(offset);
  if (!current) return std::move(current).error();
  if (*current != expected) {
    expected = *current;
    return false;
  }
  IOASID_TRY(do_write64(offset, desired));
  return true;
}

}  // namespace ioasid

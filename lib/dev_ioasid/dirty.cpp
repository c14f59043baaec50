// SPDX-License-Identifier: MIT
// SET_DIRTY_TRACKING and GET_DIRTY_BITMAP: which pages of a kernel-managed IOASID
// devices wrote since the last read, from the second-level D bits.
#include "dev_ioasid/handlers.h"
#include "dev_ioasid/service.h"

#include <vector>

namespace ioasid::dev_ioasid {

Result<long> set_dirty_tracking(Call& call, ioasid_dirty_tracking& tracking) {
  IOASID_TRY(check_flags(tracking.flags, IOASID_DIRTY_ENABLE));
  auto ioas = find_kernel_managed(call, tracking.ioasid);
  IOASID_TRY(ioas);
  IOASID_TRY((*ioas)->table->set_dirty_tracking(tracking.flags & IOASID_DIRTY_ENABLE));
  return 0;
}

Result<long> get_dirty_bitmap(Call& call, ioasid_dirty_bitmap& request) {
  IOASID_TRY(check_flags(request.flags, IOASID_DIRTY_NO_CLEAR));
  auto found = find_kernel_managed(call, request.ioasid);
  IOASID_TRY(found);
  const auto& ioas = *found;
  if (!ioas->table->dirty_tracking())
    return fail(EINVAL, "dirty tracking is not enabled on IOASID {}", request.ioasid);
  if (request.page_size == 0 || request.page_size % kPageSize || (request.page_size & (request.page_size - 1)))
    return fail(EINVAL, "page_size {:#x} is not a power of two of at least 4 KiB", request.page_size);
  if (request.length == 0 || (request.iova | request.length) % request.page_size)
    return fail(EINVAL, "iova {:#x} and length {:#x} must be non-zero multiples of page_size {:#x}", request.iova,
                request.length, request.page_size);
  // Bounded by what is mapped: the range must be, so the bitmap is at most 1/32768
  // of the client's pinned memory.
  IOASID_TRY(ioas->table->check_mapped(request.iova, request.length));
  const uint64_t pages = request.length / request.page_size;
  std::vector<uint64_t> bitmap((pages + 63) / 64, 0);
  // Written once clean first, so a bad pointer fails before any D bit is cleared.
  IOASID_TRY(call.memory.write(request.bitmap_uptr, std::as_bytes(std::span(bitmap))));
  const bool clear = !(request.flags & IOASID_DIRTY_NO_CLEAR);
  IOASID_TRY(ioas->table->read_dirty(request.iova, request.length, request.page_size, clear, bitmap));
  // The client may have unmapped the bitmap meanwhile: what was cleared and not
  // delivered is dirty again, so the next read reports it.
  if (auto delivered = call.memory.write(request.bitmap_uptr, std::as_bytes(std::span(bitmap))); !delivered) {
    if (clear) ioas->table->restore_dirty(request.iova, request.length, request.page_size, bitmap);
    return std::move(delivered).error();
  }
  return 0;
}

}  // namespace ioasid::dev_ioasid

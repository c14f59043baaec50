// SPDX-License-Identifier: MIT
// I/O address spaces: ALLOC/FREE, their mappings, dirty tracking, and the guest page
// tables and cache invalidations of nested ones.
#include "internal.h"

#include <algorithm>

namespace ioasid::client {

// ---------------------------------------------------------------- Ioas

Result<Ioas> Ioas::allocate(const File& file) {
  ioasid_alloc alloc{};
  IOASID_CLIENT_TRY(detail::issue(file.fd(), IOASID_ALLOC, alloc));
  return Ioas(file.fd(), alloc.out_ioasid, false);
}

Result<Ioas> Ioas::allocate_nested(const Ioas& parent) {
  ioasid_alloc alloc{.flags = IOASID_ALLOC_NESTED, .parent = parent.id_};
  IOASID_CLIENT_TRY(detail::issue(parent.fd_.get(), IOASID_ALLOC, alloc));
  return Ioas(parent.fd_.get(), alloc.out_ioasid, true);
}

Ioas::~Ioas() { (void)free(); }

Result<void> Ioas::free() {
  ioasid_free request{.ioasid = id_};
  return detail::undo(fd_, IOASID_FREE, request);
}

Result<IovaRanges> Ioas::iova_ranges() const {
  IovaRanges result;
  result.ranges.resize(4);
  for (;;) {
    ioasid_iova_ranges request{
        .ioasid = id_,
        .num_ranges = static_cast<uint32_t>(result.ranges.size()),
        .ranges_uptr = reinterpret_cast<uintptr_t>(result.ranges.data()),
    };
    auto done = detail::issue(fd_.get(), IOASID_IOVA_RANGES, request);
    if (done) {
      result.ranges.resize(request.num_ranges);
      result.alignment = request.out_alignment;
      return result;
    }
    // EMSGSIZE writes back the count needed; ask again with room for it.
    if (done.code() != EMSGSIZE || request.num_ranges <= result.ranges.size()) return std::move(done).error();
    result.ranges.resize(request.num_ranges);
  }
}

Result<void> Ioas::set_dirty_tracking(bool enabled) const {
  ioasid_dirty_tracking request{.ioasid = id_, .flags = enabled ? IOASID_DIRTY_ENABLE : 0u};
  return detail::issue(fd_.get(), IOASID_SET_DIRTY_TRACKING, request);
}

Result<std::vector<uint64_t>> Ioas::dirty_bitmap(uint64_t iova, uint64_t length, uint64_t page_size,
                                                 DirtyRead read) const {
  // One bit per page, whole 64-bit words; the daemon rejects a bad page_size itself.
  const uint64_t pages = page_size ? (length + page_size - 1) / page_size : 0;
  std::vector<uint64_t> bitmap(std::max<uint64_t>(1, (pages + 63) / 64));
  ioasid_dirty_bitmap request{
      .ioasid = id_,
      .flags = read == DirtyRead::keep ? IOASID_DIRTY_NO_CLEAR : 0u,
      .iova = iova,
      .length = length,
      .page_size = page_size,
      .bitmap_uptr = reinterpret_cast<uintptr_t>(bitmap.data()),
  };
  IOASID_CLIENT_TRY(detail::issue(fd_.get(), IOASID_GET_DIRTY_BITMAP, request));
  return bitmap;
}

Result<void> Ioas::invalidate_caches(std::span<const ioasid_cache_invalidate_info> entries) const {
  ioasid_cache_invalidate request{
      .ioasid = id_,
      .entry_len = sizeof(ioasid_cache_invalidate_info),
      .entry_num = static_cast<uint32_t>(entries.size()),
      .entries_uptr = reinterpret_cast<uintptr_t>(entries.data()),
  };
  auto done = detail::issue(fd_.get(), IOASID_CACHE_INVLD, request);
  if (!done) {
    // entry_num comes back as the index of the entry that stopped the batch.
    Error error = std::move(done).error();
    error.what += " (entry " + std::to_string(request.entry_num) + " of " + std::to_string(entries.size()) + ")";
    return error;
  }
  return {};
}

// ---------------------------------------------------------------- Mapping

Result<Mapping> Mapping::map_dma(const Ioas& ioas, std::span<std::byte> memory, MapOptions options) {
  ioasid_map_dma request{
      .flags = options.flags | (options.iova ? IOASID_MAP_FIXED_IOVA : 0u),
      .ioasid = ioas.id_,
      .user_va = reinterpret_cast<uintptr_t>(memory.data()),
      .length = memory.size(),
      .iova = options.iova.value_or(0),
  };
  IOASID_CLIENT_TRY(detail::issue(ioas.fd_.get(), IOASID_MAP_DMA, request));
  return Mapping(ioas.fd_.get(), ioas.id_, request.iova, request.length);
}

Result<Mapping> Mapping::map_file(const Ioas& ioas, int file_fd, uint64_t offset, uint64_t length,
                                  MapOptions options) {
  ioasid_map_file request{
      .flags = options.flags | (options.iova ? IOASID_MAP_FIXED_IOVA : 0u),
      .ioasid = ioas.id_,
      .fd = file_fd,
      .offset = offset,
      .length = length,
      .iova = options.iova.value_or(0),
  };
  IOASID_CLIENT_TRY(detail::issue(ioas.fd_.get(), IOASID_MAP_FILE, request));
  return Mapping(ioas.fd_.get(), ioas.id_, request.iova, request.length);
}

Mapping::~Mapping() { (void)unmap(); }

Result<uint64_t> Mapping::unmap() {
  if (!fd_) return uint64_t{0};
  ioasid_unmap_dma request{.ioasid = ioasid_, .iova = iova_, .length = length_};
  IOASID_CLIENT_TRY(detail::undo(fd_, IOASID_UNMAP_DMA, request));
  return request.length;  // UNMAP writes back the bytes unmapped
}

// ---------------------------------------------------------------- PgtblBinding

Result<PgtblBinding> PgtblBinding::bind(const Ioas& nested, const PgtblConfig& table) {
  ioasid_bind_pgtbl request{
      .ioasid = nested.id_,
      .format = table.format,
      .flags = table.flags,
      .pgtbl_addr = table.root_gpa,
      .addr_width = table.addr_width,
      .pat = table.pat,
      .emt = table.emt,
  };
  IOASID_CLIENT_TRY(detail::issue(nested.fd_.get(), IOASID_BIND_PGTBL, request));
  return PgtblBinding(nested.fd_.get(), nested.id_);
}

PgtblBinding::~PgtblBinding() { (void)unbind(); }

Result<void> PgtblBinding::unbind() {
  ioasid_unbind_pgtbl request{.ioasid = ioasid_};
  return detail::undo(fd_, IOASID_UNBIND_PGTBL, request);
}

}  // namespace ioasid::client

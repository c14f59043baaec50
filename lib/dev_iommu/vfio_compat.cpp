// SPDX-License-Identifier: MIT
// VFIO type1 on /dev/iommu, as iommufd offers it: the container ioctls (numbers below
// iommufd's) act on the file's compat IOAS, chosen with IOMMU_VFIO_IOAS. ENODEV while
// there is none.
#include "dev_iommu/handlers.h"
#include "dev_iommu/service.h"

#include <cstddef>
#include <vector>

namespace ioasid::dev_iommu {
namespace {

Result<std::shared_ptr<Ioas>> compat_ioas(Call& call) {
  if (call.context.vfio_ioas == 0) return fail(ENODEV, "no compat IOAS (IOMMU_VFIO_IOAS SET first)");
  auto ioas = call.context.objects().find<Ioas>(call.context.vfio_ioas, ObjectType::Ioas);
  if (!ioas) return fail(ENODEV, "the compat IOAS {} is gone", call.context.vfio_ioas);
  return ioas;
}

// The first minsz bytes of the caller's struct (VFIO reads no more).
template <typename T>
Result<void> read_head(Call& call, size_t minsz, T& value) {
  value = T{};
  return call.memory.read(call.arg, std::as_writable_bytes(std::span(&value, 1)).first(minsz));
}

Result<long> set_iommu(Call& call) {
  if (call.arg != VFIO_TYPE1_IOMMU && call.arg != VFIO_TYPE1v2_IOMMU)
    return fail(EINVAL, "VFIO_SET_IOMMU type {} (TYPE1 or TYPE1v2)", call.arg);
  auto ioas = compat_ioas(call);
  IOASID_TRY(ioas);
  // TYPE1 may unmap inside a mapping: no large IOPTEs that could not be cut.
  if (call.arg == VFIO_TYPE1_IOMMU) IOASID_TRY((*ioas)->areas.disable_large_pages());
  call.context.vfio_type = call.arg == VFIO_TYPE1_IOMMU ? VfioType::kType1 : VfioType::kType1v2;
  return 0;
}

Result<long> check_extension(Call& call) {
  switch (call.arg) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_UNMAP_ALL: return 1;
    case VFIO_DMA_CC_IOMMU: {
      auto ioas = compat_ioas(call);
      IOASID_TRY(ioas);
      return 1;  // the engine's domains always snoop
    }
    default: return 0;
  }
}

Result<long> map_dma(Call& call) {
  constexpr size_t minsz = offsetof(vfio_iommu_type1_dma_map, size) + sizeof(__u64);
  vfio_iommu_type1_dma_map map_value;
  IOASID_TRY(read_head(call, minsz, map_value));
  auto* map = &map_value;
  constexpr uint32_t kFlags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
  if (map->argsz < minsz || (map->flags & ~kFlags))
    return fail(EINVAL, "argsz {} (minimum {}) or unknown flag bits {:#x}", map->argsz, minsz, map->flags & ~kFlags);
  auto ioas = compat_ioas(call);
  IOASID_TRY(ioas);
  auto pages = record_user_pages(call, map->vaddr, map->size, map->flags & VFIO_DMA_MAP_FLAG_WRITE);
  IOASID_TRY(pages);
  const PagesPiece piece{*pages, 0, map->size};
  IOASID_TRY((*ioas)->areas.map(std::span(&piece, 1), map->iova, map->flags & VFIO_DMA_MAP_FLAG_READ,
                                map->flags & VFIO_DMA_MAP_FLAG_WRITE));
  return 0;
}

Result<long> unmap_dma(Call& call) {
  constexpr size_t minsz = offsetof(vfio_iommu_type1_dma_unmap, size) + sizeof(__u64);
  vfio_iommu_type1_dma_unmap unmap_value;
  IOASID_TRY(read_head(call, minsz, unmap_value));
  auto* unmap = &unmap_value;
  if (unmap->argsz < minsz || (unmap->flags & ~VFIO_DMA_UNMAP_FLAG_ALL))
    return fail(EINVAL, "argsz {} (minimum {}) or unknown flag bits {:#x}", unmap->argsz, minsz,
                unmap->flags & ~VFIO_DMA_UNMAP_FLAG_ALL);
  auto ioas = compat_ioas(call);
  IOASID_TRY(ioas);
  IovaAreas& areas = (*ioas)->areas;
  uint64_t unmapped = 0;
  if (unmap->flags & VFIO_DMA_UNMAP_FLAG_ALL) {
    if (unmap->iova != 0 || unmap->size != 0) return fail(EINVAL, "UNMAP_ALL takes iova 0 and size 0");
    unmapped = areas.unmap_all();
  } else {
    // TYPE1 (large pages off) may unmap part of a mapping: cut at the range's edges.
    if (!areas.large_pages()) {
      if (unmap->size != 0) IOASID_TRY(areas.split_at(unmap->iova + unmap->size));
      if (unmap->iova != 0) IOASID_TRY(areas.split_at(unmap->iova));
    }
    auto done = areas.unmap(unmap->iova, unmap->size);  // an empty range is no error for VFIO
    IOASID_TRY(done);
    unmapped = *done;
  }
  unmap->size = unmapped;
  IOASID_TRY(call.memory.write(call.arg, std::as_bytes(std::span(unmap, 1)).first(minsz)));
  return 0;
}

uint64_t page_sizes(const Ioas& ioas) {
  uint64_t sizes = ~0ull;
  for (const uint64_t size : ioas.areas.domain_page_sizes()) sizes &= ~(size - 1);
  // Only the smallest size means something to the user; never below a CPU page.
  if (sizes & (kPageSize - 1)) sizes = (sizes & ~(kPageSize - 1)) | kPageSize;
  return std::max(sizes, ioas.areas.alignment());
}

// Writes `bytes` at `offset` of the caller's struct when it fits in argsz.
Result<void> put_if_room(Call& call, uint32_t argsz, size_t offset, std::span<const std::byte> bytes) {
  if (argsz < offset + bytes.size()) return success();
  return call.memory.write(call.arg + offset, bytes);
}

template <typename T>
std::span<const std::byte> bytes_of(const T& value) {
  return std::as_bytes(std::span(&value, 1));
}

Result<long> get_info(Call& call) {
  constexpr size_t minsz = offsetof(vfio_iommu_type1_info, iova_pgsizes) + sizeof(__u64);
  vfio_iommu_type1_info info_value;
  IOASID_TRY(read_head(call, minsz, info_value));
  auto* info = &info_value;
  if (info->argsz < minsz) return fail(EINVAL, "argsz {} below {}", info->argsz, minsz);
  const size_t head = std::min<size_t>(info->argsz, sizeof(vfio_iommu_type1_info));
  auto ioas = compat_ioas(call);
  IOASID_TRY(ioas);
  const uint32_t argsz = info->argsz;
  // The capability chain after the struct, each capability 8-byte aligned: DMA_AVAIL,
  // then IOVA_RANGE with the usable ranges. A piece is written only where it fits.
  constexpr size_t kAvailAt = sizeof(vfio_iommu_type1_info);
  constexpr size_t kRangesAt = kAvailAt + ((sizeof(vfio_iommu_type1_info_dma_avail) + 7) & ~size_t{7});
  constexpr size_t kEntriesAt = kRangesAt + offsetof(vfio_iommu_type1_info_cap_iova_range, iova_ranges);
  const auto usable = (*ioas)->areas.usable();
  const size_t total = kEntriesAt + usable.size() * sizeof(vfio_iova_range);

  vfio_iommu_type1_info_dma_avail avail{};
  avail.header = {.id = VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, .version = 1, .next = argsz >= kEntriesAt ? static_cast<uint32_t>(kRangesAt) : 0u};
  avail.avail = ~0u;
  IOASID_TRY(put_if_room(call, argsz, kAvailAt, bytes_of(avail)));
  for (size_t i = 0; i < usable.size(); ++i) {
    const vfio_iova_range range{.start = usable[i].start, .end = usable[i].last};
    IOASID_TRY(put_if_room(call, argsz, kEntriesAt + i * sizeof range, bytes_of(range)));
  }
  if (argsz >= total) {
    vfio_iommu_type1_info_cap_iova_range ranges{};
    ranges.header = {.id = VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, .version = 1, .next = 0};
    ranges.nr_iovas = static_cast<uint32_t>(usable.size());
    IOASID_TRY(put_if_room(call, argsz, kRangesAt, bytes_of(ranges).first(kEntriesAt - kRangesAt)));
  }
  info->flags = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS;
  info->iova_pgsizes = page_sizes(**ioas);
  info->cap_offset = argsz >= total ? kAvailAt : 0;
  info->argsz = static_cast<uint32_t>(total);
  IOASID_TRY(call.memory.write(call.arg, bytes_of(*info).first(head)));
  return 0;
}

}  // namespace

Result<long> vfio_ioas(Call& call, iommu_vfio_ioas& cmd) {
  if (cmd.__reserved != 0) return fail(EOPNOTSUPP, "__reserved is {:#x}, must be 0", cmd.__reserved);
  switch (cmd.op) {
    case IOMMU_VFIO_IOAS_GET: {
      auto ioas = compat_ioas(call);
      IOASID_TRY(ioas);
      cmd.ioas_id = (*ioas)->id();
      return 0;
    }
    case IOMMU_VFIO_IOAS_SET: {
      auto ioas = find_object<Ioas>(call, cmd.ioas_id, ObjectType::Ioas);
      IOASID_TRY(ioas);
      call.context.vfio_ioas = cmd.ioas_id;
      call.reply = false;
      return 0;
    }
    case IOMMU_VFIO_IOAS_CLEAR:
      call.context.vfio_ioas = 0;
      call.reply = false;
      return 0;
    default: return fail(EOPNOTSUPP, "unknown op {}", cmd.op);
  }
}

Result<long> vfio_ioctl(Call& call, uint32_t cmd) {
  switch (cmd) {
    case VFIO_GET_API_VERSION: return VFIO_API_VERSION;
    case VFIO_SET_IOMMU: return set_iommu(call);
    case VFIO_CHECK_EXTENSION: return check_extension(call);
    case VFIO_IOMMU_GET_INFO: return get_info(call);
    case VFIO_IOMMU_MAP_DMA: return map_dma(call);
    case VFIO_IOMMU_UNMAP_DMA: return unmap_dma(call);
    default: return fail(ENOTTY, "no ioctl {:#x} on /dev/iommu", cmd);
  }
}

}  // namespace ioasid::dev_iommu

// SPDX-License-Identifier: MIT
// HWPT_ALLOC of paging domains and of the mock driver's nested ones, dirty tracking
// on paging domains, and HWPT_INVALIDATE of nested ones.
#include "dev_iommu/handlers.h"
#include "dev_iommu/service.h"

#include <algorithm>
#include <span>
#include <vector>

namespace ioasid::dev_iommu {
namespace {

constexpr uint64_t kMockPageSize = kPageSize / 2;
constexpr uint64_t kMockHugePageSize = 512 * kMockPageSize;

// The mock driver's paging domain as the selftest defines it: 2 KiB IO pages (and
// 1 MiB IOPTEs for HUGE_IOVA devices) inside [MOCK_APERTURE_START, MOCK_APERTURE_LAST].
DomainGeometry mock_geometry(const BoundDevice& device) {
  return {.page_size = kMockPageSize,
          .largest_iopte = (device.flags & MOCK_FLAGS_DEVICE_HUGE_IOVA) ? kMockHugePageSize : kMockPageSize,
          .aperture = {MOCK_APERTURE_START, MOCK_APERTURE_LAST},
          .dirty_tracking = device.can_track_dirty()};
}

// In a domain that tracks dirty pages the mock's IOPTEs are halves of the engine
// table's leaves, whose two software dirty bits hold their dirty state
// (SecondLevelTable::mark_half_dirty): 4 KiB leaves only for 2 KiB IOPTEs, up to 2 MiB
// leaves (1 MiB IOPTEs) on HUGE_IOVA devices, since the dirty bitmap reports per IOPTE.
// Elsewhere an IOPTE's size shows nowhere, and the engine maps with its largest leaves,
// as VT-d hardware would: a 1 GiB MAP is one entry, not 262,144.
uint64_t engine_leaf_cap(const DomainGeometry& geometry, bool tracks_dirty) {
  return tracks_dirty ? 2 * geometry.largest_iopte : pgtable::kPageSize1G;
}

// GET_DIRTY_BITMAP builds the bitmap in daemon memory: at most this much per call
// (at 2 KiB per bit, 256 GiB of IOVA), EOVERFLOW above. The same bound as the mock's
// IOMMU_TEST_OP_DIRTY (16 MiB of bitmap).
constexpr uint64_t kMaxDirtyBitmapBytes = 16ull << 20;

// Sets bits [first, last] of a byte-addressed bitmap (bit i: byte i / 8, bit i % 8,
// as iommufd's iova_bitmap writes the caller's buffer).
void set_bits(std::span<std::byte> bitmap, uint64_t first, uint64_t last) {
  for (uint64_t bit = first; bit <= last;) {
    if (bit % 8 == 0 && last - bit >= 7) {
      const uint64_t whole = (last - bit + 1) / 8;
      std::fill_n(bitmap.begin() + static_cast<ptrdiff_t>(bit / 8), whole, std::byte{0xff});
      bit += whole * 8;
      continue;
    }
    bitmap[bit / 8] |= std::byte{1} << (bit % 8);
    ++bit;
  }
}

constexpr uint32_t kPagingFlags = IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING;

}  // namespace

Result<std::shared_ptr<HwptPaging>> make_hwpt_paging(Call& call, const std::shared_ptr<Ioas>& ioas,
                                                     const BoundDevice& device, bool automatic, bool nest_parent,
                                                     bool enforce_dirty) {
  const DomainGeometry geometry = mock_geometry(device);
  auto table = iommu::IoPageTable::create(call.service.engine().iommu(), engine_leaf_cap(geometry, enforce_dirty));
  IOASID_TRY(table);
  auto hwpt = std::make_shared<HwptPaging>(Use<Ioas>(ioas), std::move(*table), geometry, automatic, nest_parent,
                                           enforce_dirty);
  auto added = ioas->areas.add_domain(hwpt->slot(), hwpt.get());
  if (!added) {
    hwpt->ioas->areas.remove_domain(hwpt.get());
    return std::move(added).error();
  }
  return hwpt;
}

namespace {

// The driver data of a nested HWPT, read as iommufd reads driver data: a length below
// the first version's or above what is known is EINVAL, a non-zero unknown tail E2BIG.
template <typename T>
Result<T> read_driver_data(Call& call, uint64_t uptr, uint32_t length, uint32_t min_length) {
  if (length < min_length || length > sizeof(T))
    return fail(EINVAL, "driver data of {} bytes ({} to {} taken)", length, min_length, sizeof(T));
  T value{};
  IOASID_TRY(call.memory.read(uptr, std::as_writable_bytes(std::span(&value, 1)).first(length)));
  return value;
}

Result<std::shared_ptr<Object>> alloc_nested(Call& call, iommu_hwpt_alloc& cmd, std::shared_ptr<HwptPaging> parent) {
  if ((cmd.flags & ~IOMMU_HWPT_FAULT_ID_VALID) || cmd.data_len == 0)
    return fail(EOPNOTSUPP, "a nested HWPT takes only FAULT_ID_VALID (flags {:#x}) and driver data", cmd.flags);
  if (parent->auto_domain || !parent->nest_parent)
    return fail(EINVAL, "HWPT {} was not allocated with NEST_PARENT", cmd.pt_id);
  if (cmd.data_type != IOMMU_HWPT_DATA_SELFTEST)
    return fail(EOPNOTSUPP, "data_type {:#x}: the mock driver takes {:#x}", cmd.data_type, IOMMU_HWPT_DATA_SELFTEST);
  auto data = read_driver_data<iommu_hwpt_selftest>(call, cmd.data_uptr, cmd.data_len,
                                                    offsetof(iommu_hwpt_selftest, iotlb) + sizeof(uint32_t));
  IOASID_TRY(data);
  Use<FaultQueue> fault;
  if (cmd.flags & IOMMU_HWPT_FAULT_ID_VALID) {
    auto queue = find_object<FaultQueue>(call, cmd.fault_id, ObjectType::Fault);
    IOASID_TRY(queue);
    fault = Use<FaultQueue>(std::move(*queue));
  }
  return std::shared_ptr<Object>(
      std::make_shared<HwptNested>(Use<HwptPaging>(std::move(parent)), data->iotlb, std::move(fault)));
}

}  // namespace

Result<long> hwpt_alloc(Call& call, iommu_hwpt_alloc& cmd) {
  if (cmd.__reserved != 0) return fail(EOPNOTSUPP, "__reserved is {:#x}, must be 0", cmd.__reserved);
  if ((cmd.data_type == IOMMU_HWPT_DATA_NONE) != (cmd.data_len == 0))
    return fail(EINVAL, "data_type {:#x} with data_len {}", cmd.data_type, cmd.data_len);
  auto device = find_object<BoundDevice>(call, cmd.dev_id, ObjectType::Device);
  IOASID_TRY(device);
  auto parent = call.context.objects().find_any(cmd.pt_id);
  if (!parent) return fail(EINVAL, "pt_id {} is no object of this file", cmd.pt_id);
  auto charge = call.service.engine().ioasids_quota().charge(call.context.client().uid);
  IOASID_TRY(charge);
  if (parent->type() == ObjectType::HwptPaging) {
    auto nested = alloc_nested(call, cmd, std::static_pointer_cast<HwptPaging>(parent));
    IOASID_TRY(nested);
    cmd.out_hwpt_id = call.context.objects().insert(std::move(*nested), std::move(*charge));
    return 0;
  }
  if (parent->type() != ObjectType::Ioas)
    return fail(EINVAL, "pt_id {} is a {}, not an IOAS or a paging HWPT", cmd.pt_id, object_type_name(parent->type()));
  if (cmd.flags & ~kPagingFlags) return fail(EOPNOTSUPP, "unknown flag bits {:#x}", cmd.flags & ~kPagingFlags);
  const bool dirty = cmd.flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING;
  if (dirty && !(*device)->can_track_dirty())
    return fail(EOPNOTSUPP, "device {} cannot track dirty pages", cmd.dev_id);
  if (cmd.data_len != 0) return fail(EOPNOTSUPP, "a paging domain takes no driver data");
  auto hwpt = make_hwpt_paging(call, std::static_pointer_cast<Ioas>(parent), **device, /*automatic=*/false,
                               cmd.flags & IOMMU_HWPT_ALLOC_NEST_PARENT, dirty);
  IOASID_TRY(hwpt);
  cmd.out_hwpt_id = call.context.objects().insert(std::move(*hwpt), std::move(*charge));
  return 0;
}

Result<long> hwpt_invalidate(Call& call, iommu_hwpt_invalidate& cmd) {
  // entry_num goes back as the entries done, on errors too.
  call.reply_on_error = true;
  const uint32_t entries = cmd.entry_num;
  cmd.entry_num = 0;
  if (cmd.__reserved != 0) return fail(EOPNOTSUPP, "__reserved is {:#x}, must be 0", cmd.__reserved);
  if (entries != 0 &&
      (cmd.data_uptr == 0 || cmd.entry_len == 0 || cmd.entry_len > kPageSize || entries > (1u << 19)))
    return fail(EINVAL, "entry_num {} with data_uptr {:#x}, entry_len {}", entries, cmd.data_uptr, cmd.entry_len);
  auto hwpt = find_object<HwptNested>(call, cmd.hwpt_id, ObjectType::HwptNested);
  IOASID_TRY(hwpt);
  if (cmd.data_type != IOMMU_HWPT_INVALIDATE_DATA_SELFTEST)
    return fail(EINVAL, "data_type {:#x}: the mock driver takes {:#x}", cmd.data_type,
                IOMMU_HWPT_INVALIDATE_DATA_SELFTEST);
  constexpr uint32_t kMinEntry = offsetof(iommu_hwpt_invalidate_selftest, iotlb_id) + sizeof(uint32_t);
  HwptNested& nested = **hwpt;
  // What the devices on this HWPT cached of its translation goes from the engine's
  // IOTLB too, as a stage-1 invalidation does: once, for the entries done.
  struct FlushDone {
    Call& call;
    const HwptNested& nested;
    const iommu_hwpt_invalidate& cmd;
    ~FlushDone() {
      if (cmd.entry_num != 0) call.service.engine().iommu().flush_domain(nested.parent->table->domain());
    }
  } flush{call, nested, cmd};
  for (uint32_t i = 0; i < entries; ++i) {
    auto entry = read_driver_data<iommu_hwpt_invalidate_selftest>(call, cmd.data_uptr + uint64_t{i} * cmd.entry_len,
                                                                  cmd.entry_len, kMinEntry);
    IOASID_TRY(entry);
    if (entry->flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL)
      return fail(EOPNOTSUPP, "entry {}: unknown flag bits {:#x}", i, entry->flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL);
    if (entry->iotlb_id > MOCK_NESTED_DOMAIN_IOTLB_ID_MAX)
      return fail(EINVAL, "entry {}: iotlb_id {} is above {}", i, entry->iotlb_id, MOCK_NESTED_DOMAIN_IOTLB_ID_MAX);
    if (entry->flags & IOMMU_TEST_INVALIDATE_FLAG_ALL)
      nested.iotlb.fill(0);
    else
      nested.iotlb[entry->iotlb_id] = 0;
    cmd.entry_num = i + 1;
  }
  return 0;
}

Result<long> hwpt_set_dirty_tracking(Call& call, iommu_hwpt_set_dirty_tracking& cmd) {
  if (cmd.flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE)
    return fail(EOPNOTSUPP, "unknown flag bits {:#x}", cmd.flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE);
  if (cmd.__reserved != 0) return fail(EOPNOTSUPP, "__reserved is {:#x}, must be 0", cmd.__reserved);
  auto hwpt = find_object<HwptPaging>(call, cmd.hwpt_id, ObjectType::HwptPaging);
  IOASID_TRY(hwpt);
  // As iommufd: a domain allocated without DIRTY_TRACKING has no dirty operations.
  if (!(*hwpt)->enforce_dirty_tracking)
    return fail(EOPNOTSUPP, "HWPT {} was not allocated with DIRTY_TRACKING", cmd.hwpt_id);
  IOASID_TRY((*hwpt)->table->set_dirty_tracking(cmd.flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
  return 0;
}

Result<long> hwpt_get_dirty_bitmap(Call& call, iommu_hwpt_get_dirty_bitmap& cmd) {
  if (cmd.flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR)
    return fail(EOPNOTSUPP, "unknown flag bits {:#x}", cmd.flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR);
  if (cmd.__reserved != 0) return fail(EOPNOTSUPP, "__reserved is {:#x}, must be 0", cmd.__reserved);
  auto hwpt = find_object<HwptPaging>(call, cmd.hwpt_id, ObjectType::HwptPaging);
  IOASID_TRY(hwpt);
  HwptPaging& paging = **hwpt;
  const IovaAreas& areas = paging.ioas->areas;
  // iommufd_check_iova_range's rows, in its order.
  const uint64_t iova = cmd.iova, length = cmd.length, page_size = cmd.page_size;
  if (length == 0) return fail(EINVAL, "length 0");
  if (iova + (length - 1) < iova) return fail(EOVERFLOW, "iova {:#x} + length {:#x} wraps", iova, length);
  const uint64_t end = iova + length;  // 0 when the range reaches the top: still aligned
  const uint64_t alignment = areas.alignment();
  if ((iova | end) & (alignment - 1))
    return fail(EINVAL, "iova {:#x} and length {:#x} are not multiples of the IOAS alignment {:#x}", iova, length,
                alignment);
  // iommufd takes the lowest set bit of a page_size that is no power of two; this
  // daemon refuses it.
  if (page_size == 0 || (page_size & (page_size - 1)))
    return fail(EINVAL, "page_size {:#x} is not a power of two", page_size);
  if ((iova | end) & (page_size - 1))
    return fail(EINVAL, "iova {:#x} and length {:#x} are not multiples of page_size {:#x}", iova, length, page_size);
  // Without DIRTY_TRACKING the domain has no dirty operations.
  if (!paging.enforce_dirty_tracking)
    return fail(EOPNOTSUPP, "HWPT {} was not allocated with DIRTY_TRACKING", cmd.hwpt_id);
  if (!paging.table->dirty_tracking()) return fail(EINVAL, "dirty tracking is off on HWPT {}", cmd.hwpt_id);
  // The areas must cover the range without a gap; so the range, and the bitmap at a
  // page_size of 2 KiB or more, is bounded by what the caller pinned.
  if (!areas.covers(iova, length))
    return fail(EINVAL, "[{:#x}, +{:#x}) is not covered by areas of IOAS {}", iova, length, paging.ioas->id());
  const uint64_t bits = (length - 1) / page_size + 1;
  const uint64_t bytes = (bits + 7) / 8;
  if (bytes > kMaxDirtyBitmapBytes)
    return fail(EOVERFLOW, "a bitmap of {} bits is above the {} bytes one call fills", bits, kMaxDirtyBitmapBytes);
  // The caller's bits are kept: iommufd sets bits in its buffer, it clears none. Read
  // first, so a bad pointer fails before any dirty state is cleared.
  std::vector<std::byte> bitmap(bytes);
  IOASID_TRY(call.memory.read(cmd.data, bitmap));
  const bool clear = !(cmd.flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR);
  bool any = false;
  IOASID_TRY(paging.table->read_dirty_ranges(iova, length, clear, [&](uint64_t start, uint64_t size) {
    set_bits(bitmap, (start - iova) / page_size, (start + size - 1 - iova) / page_size);
    any = true;
  }));
  // Nothing dirty: the caller's buffer is left alone. A failure of the write leaves
  // the dirty state unknown, as the uAPI says of any failure.
  if (any) IOASID_TRY(call.memory.write(cmd.data, bitmap));
  return 0;
}

}  // namespace ioasid::dev_iommu

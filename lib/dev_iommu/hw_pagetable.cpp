// HWPT_ALLOC of paging domains, dirty tracking on them, and HWPT_INVALIDATE (which
// only nested HWPTs take; this daemon makes none yet).
#include "dev_iommu/handlers.h"
#include "dev_iommu/service.h"

namespace ioasid::dev_iommu {
namespace {

// The mock driver's paging domain as the selftest defines it: 2 KiB IO pages (1 MiB
// IOPTEs for HUGE_IOVA devices, which only the page sizes reported change) inside
// [MOCK_APERTURE_START, MOCK_APERTURE_LAST].
DomainGeometry mock_geometry(const BoundDevice& device) {
  return {.page_size = kPageSize / 2,
          .aperture = {MOCK_APERTURE_START, MOCK_APERTURE_LAST},
          .dirty_tracking = device.can_track_dirty()};
}

constexpr uint32_t kPagingFlags = IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING;

}  // namespace

Result<std::shared_ptr<HwptPaging>> make_hwpt_paging(Call& call, const std::shared_ptr<Ioas>& ioas,
                                                     const BoundDevice& device, bool automatic, bool nest_parent,
                                                     bool enforce_dirty) {
  auto table = iommu::IoPageTable::create(call.service.engine().iommu());
  IOASID_TRY(table);
  auto hwpt = std::make_shared<HwptPaging>(Use<Ioas>(ioas), std::move(*table), mock_geometry(device), automatic,
                                           nest_parent, enforce_dirty);
  auto added = ioas->areas.add_domain(hwpt->slot(), hwpt.get());
  if (!added) {
    hwpt->ioas->areas.remove_domain(hwpt.get());
    return std::move(added).error();
  }
  return hwpt;
}

Result<long> hwpt_alloc(Call& call, iommu_hwpt_alloc& cmd) {
  if (cmd.__reserved != 0) return fail(EOPNOTSUPP, "__reserved is {:#x}, must be 0", cmd.__reserved);
  if ((cmd.data_type == IOMMU_HWPT_DATA_NONE) != (cmd.data_len == 0))
    return fail(EINVAL, "data_type {:#x} with data_len {}", cmd.data_type, cmd.data_len);
  auto device = find_object<BoundDevice>(call, cmd.dev_id, ObjectType::Device);
  IOASID_TRY(device);
  auto parent = call.context.objects().find_any(cmd.pt_id);
  if (!parent) return fail(EINVAL, "pt_id {} is no object of this file", cmd.pt_id);
  if (parent->type() == ObjectType::HwptPaging)
    return fail(EOPNOTSUPP, "nested HWPTs (a paging HWPT as pt_id) are not served yet");
  if (parent->type() != ObjectType::Ioas)
    return fail(EINVAL, "pt_id {} is a {}, not an IOAS or a paging HWPT", cmd.pt_id, object_type_name(parent->type()));
  if (cmd.flags & ~kPagingFlags) return fail(EOPNOTSUPP, "unknown flag bits {:#x}", cmd.flags & ~kPagingFlags);
  const bool dirty = cmd.flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING;
  if (dirty && !(*device)->can_track_dirty())
    return fail(EOPNOTSUPP, "device {} cannot track dirty pages", cmd.dev_id);
  if (cmd.data_len != 0) return fail(EOPNOTSUPP, "a paging domain takes no driver data");
  auto charge = call.service.engine().ioasids_quota().charge(call.context.client().uid);
  IOASID_TRY(charge);
  auto hwpt = make_hwpt_paging(call, std::static_pointer_cast<Ioas>(parent), **device, /*automatic=*/false,
                               cmd.flags & IOMMU_HWPT_ALLOC_NEST_PARENT, dirty);
  IOASID_TRY(hwpt);
  cmd.out_hwpt_id = call.context.objects().insert(std::move(*hwpt), std::move(*charge));
  return 0;
}

Result<long> hwpt_invalidate(Call& call, iommu_hwpt_invalidate& cmd) {
  if (cmd.__reserved != 0) return fail(EOPNOTSUPP, "__reserved is {:#x}, must be 0", cmd.__reserved);
  if (cmd.entry_num != 0 &&
      (cmd.data_uptr == 0 || cmd.entry_len == 0 || cmd.entry_len > kPageSize || cmd.entry_num > (1u << 19)))
    return fail(EINVAL, "entry_num {} with data_uptr {:#x}, entry_len {}", cmd.entry_num, cmd.data_uptr,
                cmd.entry_len);
  // Only nested HWPTs are invalidated by the user, and none is made here yet.
  call.reply_on_error = true;
  const uint32_t entries = cmd.entry_num;
  cmd.entry_num = 0;
  return fail(ENOENT, "no nested HWPT {} in this file ({} entries not done)", cmd.hwpt_id, entries);
}

Result<long> hwpt_set_dirty_tracking(Call& call, iommu_hwpt_set_dirty_tracking& cmd) {
  if (cmd.flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE)
    return fail(EOPNOTSUPP, "unknown flag bits {:#x}", cmd.flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE);
  if (cmd.__reserved != 0) return fail(EOPNOTSUPP, "__reserved is {:#x}, must be 0", cmd.__reserved);
  auto hwpt = find_object<HwptPaging>(call, cmd.hwpt_id, ObjectType::HwptPaging);
  IOASID_TRY(hwpt);
  if (!(*hwpt)->enforce_dirty_tracking)
    return fail(EINVAL, "HWPT {} was not allocated with DIRTY_TRACKING", cmd.hwpt_id);
  IOASID_TRY((*hwpt)->table->set_dirty_tracking(cmd.flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE));
  return 0;
}

Result<long> hwpt_get_dirty_bitmap(Call& call, iommu_hwpt_get_dirty_bitmap& cmd) {
  if (cmd.flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR)
    return fail(EOPNOTSUPP, "unknown flag bits {:#x}", cmd.flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR);
  if (cmd.__reserved != 0) return fail(EOPNOTSUPP, "__reserved is {:#x}, must be 0", cmd.__reserved);
  auto hwpt = find_object<HwptPaging>(call, cmd.hwpt_id, ObjectType::HwptPaging);
  IOASID_TRY(hwpt);
  if (!(*hwpt)->enforce_dirty_tracking)
    return fail(EINVAL, "HWPT {} was not allocated with DIRTY_TRACKING", cmd.hwpt_id);
  return fail(EOPNOTSUPP, "reading dirty bitmaps of /dev/iommu domains is not served yet");
}

}  // namespace ioasid::dev_iommu

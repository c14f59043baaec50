// SPDX-License-Identifier: MIT
// The ioctl table: every command of UAPI.md is one row naming its struct, its
// feature bits and its handler. The generic rules (ENOTTY, EINVAL below the v1
// size, E2BIG on a non-zero tail) live here
// once; handlers see a decoded struct of the size they know.
#include "dev_ioasid/dispatcher.h"

#include "iommu/vtd_regs.h"
#include "dev_ioasid/handlers.h"
#include "dev_ioasid/service.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace ioasid::dev_ioasid {
namespace {

using Runner = Result<long> (*)(Call&, std::span<std::byte>);

struct Op {
  const char* name;
  uint32_t cmd;       // the number as the header defines it
  uint32_t features;  // IOASID_FEAT_* bits this command serves
  Runner run;
};

template <typename T, Result<long> (*Handler)(Call&, T&)>
Result<long> run_struct(Call& call, std::span<std::byte> buf) {
  T arg;
  std::memcpy(&arg, buf.data(), sizeof arg);
  auto result = Handler(call, arg);
  // Written back on errors too: some rows report progress (entry_num, num_ranges).
  std::memcpy(buf.data(), &arg, sizeof arg);
  return result;
}

template <Result<long> (*Handler)(Call&)>
Result<long> run_plain(Call& call, std::span<std::byte>) {
  return Handler(call);
}

constexpr uint32_t feat(int index) { return 1u << index; }

#define IOCTL_PLAIN(cmd, handler) Op{#cmd, cmd, 0, &run_plain<handler>}
#define IOCTL_STRUCT(cmd, type, handler, features) Op{#cmd, cmd, features, &run_struct<type, handler>}

constexpr std::array kOps = {
    IOCTL_PLAIN(IOASID_GET_API_VERSION, get_api_version),
    IOCTL_PLAIN(IOASID_CHECK_EXTENSION, check_extension),
    IOCTL_STRUCT(IOASID_GET_INFO, ioasid_info, get_info, 0),
    IOCTL_STRUCT(IOASID_PASID_REQUEST, ioasid_pasid_request, pasid_request,
                 feat(IOASID_FEAT_PASID) | feat(IOASID_FEAT_GPASID)),
    IOCTL_STRUCT(IOASID_PASID_LOOKUP, ioasid_pasid_lookup, pasid_lookup, feat(IOASID_FEAT_GPASID)),
    IOCTL_STRUCT(IOASID_ALLOC, ioasid_alloc, ioas_alloc, 0),
    IOCTL_STRUCT(IOASID_FREE, ioasid_free, ioas_free, 0),
    IOCTL_STRUCT(IOASID_MAP_DMA, ioasid_map_dma, map_dma, 0),
    IOCTL_STRUCT(IOASID_MAP_FILE, ioasid_map_file, map_file, feat(IOASID_FEAT_MAP_FILE)),
    IOCTL_STRUCT(IOASID_UNMAP_DMA, ioasid_unmap_dma, unmap_dma, 0),
    IOCTL_STRUCT(IOASID_IOVA_RANGES, ioasid_iova_ranges, iova_ranges, 0),
    IOCTL_STRUCT(IOASID_BIND_PGTBL, ioasid_bind_pgtbl, bind_pgtbl,
                 feat(IOASID_FEAT_NESTING) | feat(IOASID_FEAT_BIND_PGTBL)),
    IOCTL_STRUCT(IOASID_UNBIND_PGTBL, ioasid_unbind_pgtbl, unbind_pgtbl,
                 feat(IOASID_FEAT_NESTING) | feat(IOASID_FEAT_BIND_PGTBL)),
    IOCTL_STRUCT(IOASID_CACHE_INVLD, ioasid_cache_invalidate, cache_invalidate, feat(IOASID_FEAT_CACHE_INVLD)),
    IOCTL_STRUCT(IOASID_DEVICE_BIND, ioasid_device_bind, device_bind, 0),
    IOCTL_STRUCT(IOASID_DEVICE_UNBIND, ioasid_device_unbind, device_unbind, 0),
    IOCTL_STRUCT(IOASID_DEVICE_GET_INFO, ioasid_device_info, device_get_info, 0),
    IOCTL_STRUCT(IOASID_ATTACH_IOASID, ioasid_attach, attach_rid, 0),
    IOCTL_STRUCT(IOASID_ATTACH_IOASID_PASID, ioasid_attach, attach_pasid, 0),
    IOCTL_STRUCT(IOASID_DETACH_IOASID, ioasid_attach, detach_rid, 0),
    IOCTL_STRUCT(IOASID_DETACH_IOASID_PASID, ioasid_attach, detach_pasid, 0),
    IOCTL_STRUCT(IOASID_PAGE_RESP, ioasid_page_response, page_response, feat(IOASID_FEAT_PAGE_RESP)),
    IOCTL_STRUCT(IOASID_SET_DIRTY_TRACKING, ioasid_dirty_tracking, set_dirty_tracking,
                 feat(IOASID_FEAT_DIRTY_TRACKING)),
    IOCTL_STRUCT(IOASID_GET_DIRTY_BITMAP, ioasid_dirty_bitmap, get_dirty_bitmap, feat(IOASID_FEAT_DIRTY_TRACKING)),
    IOCTL_STRUCT(IOASID_DEVICE_DMA, ioasid_device_dma, device_dma, 0),
    IOCTL_STRUCT(IOASID_WQ_CONFIG, ioasid_wq_config, wq_config, feat(IOASID_FEAT_SIOV)),
    IOCTL_STRUCT(IOASID_DEVICE_SUBMIT, ioasid_device_submit, device_submit, feat(IOASID_FEAT_SIOV)),
    IOCTL_STRUCT(IOASID_ATS_TRANSLATE, ioasid_ats_translate, ats_translate, feat(IOASID_FEAT_ATS)),
    IOCTL_STRUCT(IOASID_ATS_INV_ACK, ioasid_ats_ack, ats_inv_ack, feat(IOASID_FEAT_ATS)),
};

constexpr bool table_is_indexed_by_number() {
  for (size_t i = 0; i < kOps.size(); ++i)
    if (_IOC_NR(kOps[i].cmd) != IOASID_BASE + i || _IOC_TYPE(kOps[i].cmd) != IOASID_TYPE) return false;
  return true;
}
static_assert(table_is_indexed_by_number(), "row i of kOps must be command IOASID_BASE + i");

// A feature is served when a row of the table carries it.
constexpr uint32_t compute_served_features() {
  uint32_t offered = 0;
  for (const Op& op : kOps) offered |= op.features;
  return offered;
}
constexpr uint32_t kServedFeatures = compute_served_features();

const Op* find_op(uint32_t cmd) {
  if (_IOC_TYPE(cmd) != IOASID_TYPE) return nullptr;
  const uint32_t nr = _IOC_NR(cmd);
  if (nr < IOASID_BASE || nr - IOASID_BASE >= kOps.size()) return nullptr;
  return &kOps[nr - IOASID_BASE];
}

const char* direction_name(uint32_t dir) {
  switch (dir) {
    case _IOC_NONE: return "_IO";
    case _IOC_READ: return "_IOR";
    case _IOC_WRITE: return "_IOW";
    default: return "_IOWR";
  }
}

}  // namespace

uint32_t served_features() { return kServedFeatures; }

const char* ioctl_name(uint32_t cmd) {
  const Op* op = find_op(cmd);
  return op ? op->name : "unknown ioctl";
}

Result<long> dispatch(Call& call, uint32_t cmd, std::span<std::byte> buf) {
  const Op* op = find_op(cmd);
  if (!op)
    return fail(ENOTTY, "no ioctl {:#x} (type {:#x}, nr {})", cmd, _IOC_TYPE(cmd), _IOC_NR(cmd));
  if (_IOC_DIR(cmd) != _IOC_DIR(op->cmd))
    return fail(ENOTTY, "{} must be issued as {}, not {}", op->name, direction_name(_IOC_DIR(op->cmd)),
                direction_name(_IOC_DIR(cmd)));
  if (_IOC_DIR(cmd) == _IOC_NONE && cmd != op->cmd)
    return fail(ENOTTY, "{} carries no struct, got size {}", op->name, _IOC_SIZE(cmd));
  if (buf.size() != _IOC_SIZE(cmd))
    return fail(EINVAL, "{}: buffer of {} bytes for a command of size {}", op->name, buf.size(), _IOC_SIZE(cmd));

  const size_t known = _IOC_SIZE(op->cmd);
  if (buf.size() < known)
    return fail(EINVAL, "{}: size {} is below the v1 size {}", op->name, buf.size(), known);
  const auto tail = buf.subspan(known);
  if (auto bad = std::ranges::find_if(tail, [](std::byte b) { return b != std::byte{0}; }); bad != tail.end())
    return fail(E2BIG, "{}: size {} has non-zero byte at offset {} beyond the {} bytes known", op->name,
                buf.size(), known + (bad - tail.begin()), known);
  return op->run(call, buf.first(known));
}

Result<void> check_reserved(uint64_t reserved, const char* field) {
  if (reserved != 0) return fail(EOPNOTSUPP, "{} is {:#x}, must be 0", field, reserved);
  return success();
}

Result<void> check_flags(uint64_t flags, uint64_t known) {
  if (flags & ~known) return fail(EOPNOTSUPP, "unknown flag bits {:#x}", flags & ~known);
  return success();
}

Result<long> get_api_version(Call&) { return IOASID_API_VERSION; }

Result<long> check_extension(Call& call) {
  return call.arg < IOASID_FEAT_COUNT && (kServedFeatures & feat(static_cast<int>(call.arg))) ? 1 : 0;
}

Result<long> get_info(Call& call, ioasid_info& info) {
  IOASID_TRY(check_flags(info.flags, 0));
  const Allocator& allocator = call.service.allocator();
  const auto set = allocator.set_info(call.context.pasid_set());
  IOASID_TRY(set);
  const uint32_t addr_width = call.service.config().addr_width;
  info = ioasid_info{
      .flags = 0,
      .api_version = IOASID_API_VERSION,
      .features = kServedFeatures,
      .pasid_bits = allocator.pasid_bits(),
      .addr_width = addr_width,
      .pgtbl_formats = (kServedFeatures & feat(IOASID_FEAT_BIND_PGTBL)) ? 1u << IOASID_PGTBL_VTD_FL : 0u,
      .pgsize_bitmap = (1ull << 12) | (1ull << 21) | (1ull << 30),
      .pasid_quota = set->quota,
      .pasids_allocated = set->allocated,
      .cap_reg = iommu::capability_register(addr_width),
      .ecap_reg = iommu::extended_capability_register(allocator.pasid_bits()),
  };
  return 0;
}

}  // namespace ioasid::dev_ioasid

// SPDX-License-Identifier: MIT
// IOAS_ALLOC, ALLOW_IOVAS, COPY, IOVA_RANGES, MAP, UNMAP and the HUGE_PAGES option:
// I/O address spaces of user memory, recorded at MAP and pinned when a domain needs it.
#include "dev_iommu/handlers.h"
#include "dev_iommu/service.h"

#include <vector>

namespace ioasid::dev_iommu {
namespace {

constexpr uint32_t kMapFlags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;
// IOAS_ALLOW_IOVAS takes at most this many ranges (iommufd has no bound but memory).
constexpr uint32_t kMaxAllowedRanges = 65536;

Result<void> check_map_flags(uint32_t flags) {
  if (flags & ~kMapFlags) return fail(EOPNOTSUPP, "unknown flag bits {:#x}", flags & ~kMapFlags);
  return success();
}

Result<void> check_readable_or_writeable(uint32_t flags) {
  if (!(flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE)))
    return fail(EINVAL, "neither READABLE nor WRITEABLE");
  return success();
}

std::optional<uint64_t> fixed_iova(uint32_t flags, uint64_t iova) {
  return (flags & IOMMU_IOAS_MAP_FIXED_IOVA) ? std::optional(iova) : std::nullopt;
}

}  // namespace

Result<std::shared_ptr<Pages>> record_user_pages(Call& call, uint64_t uptr, uint64_t length, bool writable) {
  if (call.memory.pid() == 0) return fail(EFAULT, "no client process to map memory from");
  // IOMMU_OPTION_RLIMIT_MODE: pins count against the user's limit, or the process's.
  const PinAccount account = call.context.account_per_process
                                 ? PinAccount{&call.service.process_pins(), static_cast<uid_t>(call.context.client().pid)}
                                 : PinAccount{&call.service.engine().iommu().pins(), call.context.client().uid};
  return Pages::record(call.memory.pid(), account, uptr, length, writable);
}

Result<long> ioas_alloc(Call& call, iommu_ioas_alloc& cmd) {
  if (cmd.flags != 0) return fail(EOPNOTSUPP, "unknown flag bits {:#x}", cmd.flags);
  auto charge = call.service.engine().ioasids_quota().charge(call.context.client().uid);
  IOASID_TRY(charge);
  auto& engine = call.service.engine();
  auto ioas = std::make_shared<Ioas>(engine.maps_quota(), call.context.client().uid);
  cmd.out_ioas_id = call.context.objects().insert(std::move(ioas), std::move(*charge));
  return 0;
}

Result<long> ioas_allow_iovas(Call& call, iommu_ioas_allow_iovas& cmd) {
  if (cmd.__reserved != 0) return fail(EOPNOTSUPP, "__reserved is {:#x}, must be 0", cmd.__reserved);
  auto ioas = find_object<Ioas>(call, cmd.ioas_id, ObjectType::Ioas);
  IOASID_TRY(ioas);
  if (cmd.num_iovas > kMaxAllowedRanges)
    return fail(EINVAL, "{} allowed ranges, at most {} are taken", cmd.num_iovas, kMaxAllowedRanges);
  std::vector<iommu_iova_range> given(cmd.num_iovas);
  IOASID_TRY(call.memory.read(cmd.allowed_iovas, std::as_writable_bytes(std::span(given))));
  std::vector<IovaRange> ranges;
  for (const auto& range : given) ranges.push_back({range.start, range.last});
  IOASID_TRY((*ioas)->areas.allow(std::move(ranges)));
  return 0;
}

Result<long> ioas_copy(Call& call, iommu_ioas_copy& cmd) {
  IOASID_TRY(check_map_flags(cmd.flags));
  if (cmd.length >= kLastIova || cmd.src_iova >= kLastIova || cmd.dst_iova >= kLastIova)
    return fail(EOVERFLOW, "length or an IOVA is ~0");
  IOASID_TRY(check_readable_or_writeable(cmd.flags));
  auto src = find_object<Ioas>(call, cmd.src_ioas_id, ObjectType::Ioas);
  IOASID_TRY(src);
  auto pieces = (*src)->areas.pieces(cmd.src_iova, cmd.length);
  IOASID_TRY(pieces);
  auto dst = find_object<Ioas>(call, cmd.dst_ioas_id, ObjectType::Ioas);
  IOASID_TRY(dst);
  auto iova = (*dst)->areas.map(*pieces, fixed_iova(cmd.flags, cmd.dst_iova), cmd.flags & IOMMU_IOAS_MAP_READABLE,
                                cmd.flags & IOMMU_IOAS_MAP_WRITEABLE);
  IOASID_TRY(iova);
  cmd.dst_iova = *iova;
  return 0;
}

Result<long> ioas_iova_ranges(Call& call, iommu_ioas_iova_ranges& cmd) {
  if (cmd.__reserved != 0) return fail(EOPNOTSUPP, "__reserved is {:#x}, must be 0", cmd.__reserved);
  auto ioas = find_object<Ioas>(call, cmd.ioas_id, ObjectType::Ioas);
  IOASID_TRY(ioas);
  const auto usable = (*ioas)->areas.usable();
  const size_t fits = std::min<size_t>(cmd.num_iovas, usable.size());
  std::vector<iommu_iova_range> out;
  for (size_t i = 0; i < fits; ++i) out.push_back({usable[i].start, usable[i].last});
  IOASID_TRY(call.memory.write(cmd.allowed_iovas, std::as_bytes(std::span(out))));
  const uint32_t capacity = cmd.num_iovas;
  cmd.num_iovas = static_cast<uint32_t>(usable.size());
  cmd.out_iova_alignment = (*ioas)->areas.alignment();
  if (capacity < usable.size()) {
    call.reply_on_error = true;  // the caller learns how many there are
    return fail(EMSGSIZE, "{} ranges do not fit an array of {}", usable.size(), capacity);
  }
  return 0;
}

Result<long> ioas_map(Call& call, iommu_ioas_map& cmd) {
  IOASID_TRY(check_map_flags(cmd.flags));
  if (cmd.__reserved != 0) return fail(EOPNOTSUPP, "__reserved is {:#x}, must be 0", cmd.__reserved);
  if (cmd.iova >= kLastIova || cmd.length >= kLastIova) return fail(EOVERFLOW, "iova or length is ~0");
  IOASID_TRY(check_readable_or_writeable(cmd.flags));
  auto ioas = find_object<Ioas>(call, cmd.ioas_id, ObjectType::Ioas);
  IOASID_TRY(ioas);
  auto pages = record_user_pages(call, cmd.user_va, cmd.length, cmd.flags & IOMMU_IOAS_MAP_WRITEABLE);
  IOASID_TRY(pages);
  const PagesPiece piece{*pages, 0, cmd.length};
  auto iova = (*ioas)->areas.map(std::span(&piece, 1), fixed_iova(cmd.flags, cmd.iova),
                                 cmd.flags & IOMMU_IOAS_MAP_READABLE, cmd.flags & IOMMU_IOAS_MAP_WRITEABLE);
  IOASID_TRY(iova);
  cmd.iova = *iova;
  return 0;
}

Result<long> ioas_unmap(Call& call, iommu_ioas_unmap& cmd) {
  auto ioas = find_object<Ioas>(call, cmd.ioas_id, ObjectType::Ioas);
  IOASID_TRY(ioas);
  if (cmd.iova == 0 && cmd.length == ~0ull) {
    cmd.length = (*ioas)->areas.unmap_all();
    return 0;
  }
  if (cmd.iova >= kLastIova || cmd.length >= kLastIova) return fail(EOVERFLOW, "iova or length is ~0");
  auto unmapped = (*ioas)->areas.unmap(cmd.iova, cmd.length);
  IOASID_TRY(unmapped);
  if (*unmapped == 0) return fail(ENOENT, "no area inside [{:#x}, +{:#x})", cmd.iova, cmd.length);
  cmd.length = *unmapped;
  return 0;
}

Result<long> ioas_option_huge_pages(Call& call, iommu_option& cmd) {
  auto ioas = find_object<Ioas>(call, cmd.object_id, ObjectType::Ioas);
  IOASID_TRY(ioas);
  IovaAreas& areas = (*ioas)->areas;
  if (cmd.op == IOMMU_OPTION_OP_GET) {
    cmd.val64 = areas.large_pages() ? 1 : 0;
    return 0;
  }
  if (cmd.op != IOMMU_OPTION_OP_SET) return fail(EOPNOTSUPP, "unknown op {}", cmd.op);
  if (cmd.val64 == 0) {
    IOASID_TRY(areas.disable_large_pages());
    return 0;
  }
  if (cmd.val64 != 1) return fail(EINVAL, "HUGE_PAGES {} (0 or 1)", cmd.val64);
  areas.enable_large_pages();
  return 0;
}

}  // namespace ioasid::dev_iommu

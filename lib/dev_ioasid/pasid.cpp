// SPDX-License-Identifier: MIT
// PASID_REQUEST and PASID_LOOKUP: a file's PASIDs live in its own allocator set,
// with the file's quota; guest PASIDs are that set's spid map.
#include "dev_ioasid/handlers.h"
#include "dev_ioasid/service.h"

#include <vector>

namespace ioasid::dev_ioasid {
namespace {

Result<void> check_range(const Allocator& allocator, uint32_t min, uint32_t max) {
  if (min == 0) return fail(EINVAL, "min 0 is not a valid PASID");
  if (min > max) return fail(EINVAL, "min {} > max {}", min, max);
  if (max > allocator.capacity())
    return fail(EINVAL, "max {} is beyond the {}-bit PASID space", max, allocator.pasid_bits());
  return success();
}

Result<long> alloc_pasid(Call& call, ioasid_pasid_request& request) {
  Allocator& allocator = call.service.allocator();
  std::optional<uint32_t> gpasid;
  if (request.flags & IOASID_PASID_GPASID) {
    if (request.gpasid == 0 || request.gpasid > allocator.capacity())
      return fail(EINVAL, "gpasid {} is outside 1..{}", request.gpasid, allocator.capacity());
    gpasid = request.gpasid;
  }
  auto pasid = allocator.alloc(call.context.pasid_set(), request.min, request.max, 0, gpasid);
  if (!pasid && pasid.code() == EEXIST)
    return fail(EEXIST, "gpasid {} is already mapped in this file", request.gpasid);
  IOASID_TRY(pasid);
  request.pasid = *pasid;
  return 0;
}

Result<long> free_pasids(Call& call, ioasid_pasid_request& request) {
  if (request.flags & IOASID_PASID_GPASID) return fail(EINVAL, "GPASID is only valid with ALLOC");
  Allocator& allocator = call.service.allocator();
  const SetId set = call.context.pasid_set();
  std::vector<Pasid> doomed;
  IOASID_TRY(allocator.for_each(set, [&](const PasidInfo& info) {
    if (info.pasid >= request.min && info.pasid <= request.max && info.state != PasidState::FreePending)
      doomed.push_back(info.pasid);
  }));
  uint32_t freed = 0;
  for (Pasid pasid : doomed) {
    // Another thread of this file may have freed it meanwhile; that one counts there.
    if (allocator.free(set, pasid)) ++freed;
  }
  request.pasid = freed;
  return 0;
}

}  // namespace

Result<long> pasid_request(Call& call, ioasid_pasid_request& request) {
  IOASID_TRY(check_flags(request.flags, IOASID_PASID_ALLOC | IOASID_PASID_FREE | IOASID_PASID_GPASID));
  IOASID_TRY(check_reserved(request.__reserved, "__reserved"));
  const bool alloc = request.flags & IOASID_PASID_ALLOC;
  if (alloc == bool(request.flags & IOASID_PASID_FREE))
    return fail(EINVAL, "flags {:#x} must have exactly one of ALLOC and FREE", request.flags);
  if (!(request.flags & IOASID_PASID_GPASID) && request.gpasid != 0)
    return fail(EINVAL, "gpasid {} given without the GPASID flag", request.gpasid);
  IOASID_TRY(check_range(call.service.allocator(), request.min, request.max));
  return alloc ? alloc_pasid(call, request) : free_pasids(call, request);
}

Result<long> pasid_lookup(Call& call, ioasid_pasid_lookup& lookup) {
  IOASID_TRY(check_flags(lookup.flags, 0));
  IOASID_TRY(check_reserved(lookup.__reserved, "__reserved"));
  auto pasid = call.service.allocator().find_by_spid(call.context.pasid_set(), lookup.gpasid);
  if (!pasid) return fail(ENOENT, "gpasid {} is not mapped in this file", lookup.gpasid);
  lookup.out_pasid = *pasid;
  return 0;
}

Result<uint32_t> own_pasid(Call& call, uint32_t pasid, bool guest, bool take_reference) {
  Allocator& allocator = call.service.allocator();
  if (guest) {
    auto host = allocator.find_by_spid(call.context.pasid_set(), pasid, take_reference);
    if (!host) return fail(ENOENT, "no guest PASID {} in this file", pasid);
    return *host;
  }
  const SetId set = call.context.pasid_set();
  const int refused = take_reference ? allocator.get(set, pasid).code() : allocator.find(set, pasid).code();
  if (refused == EACCES) return fail(EACCES, "PASID {} belongs to another file", pasid);
  if (refused != 0) return fail(ENOENT, "PASID {} is not allocated by this file", pasid);
  return pasid;
}

}  // namespace ioasid::dev_ioasid

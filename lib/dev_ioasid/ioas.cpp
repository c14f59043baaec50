// SPDX-License-Identifier: MIT
// ALLOC, FREE, MAP_DMA, MAP_FILE, UNMAP_DMA, IOVA_RANGES: kernel-managed I/O address
// spaces whose second-level tables the daemon keeps, mapping pinned client memory.
#include "memory/backing_for_file.h"
#include "memory/backing_for_range.h"
#include "dev_ioasid/handlers.h"
#include "dev_ioasid/service.h"

#include <vector>

namespace ioasid::dev_ioasid {
namespace {

// The rules MAP_DMA and MAP_FILE share: flags, alignment, overflow.
Result<MapAccess> check_map(uint32_t flags, uint64_t length, uint64_t iova, uint64_t base, const char* base_name) {
  IOASID_TRY(check_flags(flags, IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE | IOASID_MAP_FIXED_IOVA));
  const bool readable = flags & IOASID_MAP_READABLE, writeable = flags & IOASID_MAP_WRITEABLE;
  if (!readable && !writeable) return fail(EINVAL, "neither READABLE nor WRITEABLE");
  if (length == 0) return fail(EINVAL, "length 0");
  if ((length | base) % kPageSize || ((flags & IOASID_MAP_FIXED_IOVA) && iova % kPageSize))
    return fail(EINVAL, "{} {:#x}, iova {:#x} and length {:#x} must be 4 KiB aligned", base_name, base, iova, length);
  if (base + (length - 1) < base) return fail(EOVERFLOW, "{} {:#x} + length {:#x} wraps", base_name, base, length);
  if ((flags & IOASID_MAP_FIXED_IOVA) && iova + (length - 1) < iova)
    return fail(EOVERFLOW, "iova {:#x} + length {:#x} wraps", iova, length);
  return writeable ? (readable ? MapAccess::kReadWrite : MapAccess::kWrite) : MapAccess::kRead;
}

// Charges the pages to the file's user and maps the backing; returns the IOVA.
Result<uint64_t> map_backing(Call& call, Ioas& ioas, Result<std::shared_ptr<Backing>> backing,
                             UserQuota::Charge mapping, uint32_t flags,
                             uint64_t iova) {
  IOASID_TRY(backing);
  const uint64_t length = (*backing)->size();
  auto charge = call.service.iommu().pins().charge(call.context.client().uid, length / kPageSize);
  IOASID_TRY(charge);
  auto mapped = ioas.table->map({.backing = std::move(*backing),
                                 .charge = std::move(*charge),
                                 .mapping = std::move(mapping),
                                 .iova = (flags & IOASID_MAP_FIXED_IOVA) ? std::optional(iova) : std::nullopt,
                                 .readable = bool(flags & IOASID_MAP_READABLE),
                                 .writeable = bool(flags & IOASID_MAP_WRITEABLE)});
  return mapped;
}

Result<pid_t> caller(Call& call) {
  if (call.memory.pid() == 0) return fail(EFAULT, "no client process to map memory from");
  return call.memory.pid();
}

// MAP_DMA and MAP_FILE: the shared checks, then the backing `make` opens for the caller,
// mapped at `iova` (in: with FIXED_IOVA; out: where it went).
template <typename MakeBacking>
Result<long> map_into(Call& call, uint32_t ioasid, uint32_t flags, uint64_t length, __u64& iova, uint64_t base,
                      const char* base_name, MakeBacking make) {
  auto access = check_map(flags, length, iova, base, base_name);
  IOASID_TRY(access);
  auto ioas = find_kernel_managed(call, ioasid);
  IOASID_TRY(ioas);
  // Charged before the client's memory is looked at: the limit bounds the daemon's fds and maps.
  auto mapping = call.service.maps_quota().charge(call.context.client().uid);
  IOASID_TRY(mapping);
  auto pid = caller(call);
  IOASID_TRY(pid);
  auto mapped = map_backing(call, **ioas, make(*pid, *access), std::move(*mapping), flags, iova);
  IOASID_TRY(mapped);
  iova = *mapped;
  call.service.publish_bounded(call.context.client().uid, {.type = EventType::Map,
                                                           .context = call.context.id(),
                                                           .pid = call.context.client().pid,
                                                           .ioasid = ioasid,
                                                           .iova = *mapped,
                                                           .length = length});
  return 0;
}

}  // namespace

Result<std::shared_ptr<Ioas>> find_ioas(Call& call, uint32_t ioasid) {
  auto ioas = call.context.objects().find<Ioas>(ioasid);
  if (!ioas) return fail(ENOENT, "no IOASID {} in this file", ioasid);
  return ioas;
}

Result<std::shared_ptr<Ioas>> find_kernel_managed(Call& call, uint32_t ioasid) {
  auto ioas = find_ioas(call, ioasid);
  IOASID_TRY(ioas);
  if ((*ioas)->is_nested())
    return fail(EINVAL, "IOASID {} is nested: it has no kernel-managed table (use its parent {})", ioasid,
                (*ioas)->nested->parent_id);
  return ioas;
}

static void announce_alloc(Call& call, uint32_t ioasid, std::optional<uint32_t> parent) {
  call.service.publish_bounded(call.context.client().uid, {.type = EventType::IoasidAlloc,
                                                           .context = call.context.id(),
                                                           .pid = call.context.client().pid,
                                                           .ioasid = ioasid,
                                                           .parent = parent});
}

Result<long> ioas_alloc(Call& call, ioasid_alloc& alloc) {
  IOASID_TRY(check_flags(alloc.flags, IOASID_ALLOC_NESTED));
  IOASID_TRY(check_reserved(alloc.__reserved, "__reserved"));
  auto charge = call.service.ioasids_quota().charge(call.context.client().uid);
  IOASID_TRY(charge);
  if (alloc.flags & IOASID_ALLOC_NESTED) {
    auto id = [&]() -> Result<uint32_t> {
      std::lock_guard lock(call.context.routes_mutex());  // FREE of the parent cannot run meanwhile
      auto parent = find_ioas(call, alloc.parent);
      if (!parent) return fail(ENOENT, "no parent IOASID {} in this file", alloc.parent);
      if ((*parent)->is_nested())
        return fail(EINVAL, "parent {} is nested itself: nesting is one level deep", alloc.parent);
      auto domain = call.service.iommu().make_domain();
      IOASID_TRY(domain);
      auto ioas = std::make_shared<Ioas>();
      ioas->nested = std::make_unique<Nested>(*parent, alloc.parent, std::move(*domain));
      ioas->charge = std::move(*charge);
      return call.context.objects().insert(std::move(ioas));
    }();
    IOASID_TRY(id);
    alloc.out_ioasid = *id;
    announce_alloc(call, *id, alloc.parent);  // with the lock dropped, as event sinks expect
    return 0;
  }
  if (alloc.parent != 0) return fail(EINVAL, "parent {} given for a kernel-managed IOASID", alloc.parent);
  auto table = iommu::IoPageTable::create(call.service.iommu());
  IOASID_TRY(table);
  auto ioas = std::make_shared<Ioas>();
  ioas->table = std::move(*table);
  ioas->charge = std::move(*charge);
  auto id = call.context.objects().insert(std::move(ioas));
  IOASID_TRY(id);
  alloc.out_ioasid = *id;
  announce_alloc(call, *id, std::nullopt);
  return 0;
}

Result<long> ioas_free(Call& call, ioasid_free& free) {
  IOASID_TRY(check_reserved(free.__reserved, "__reserved"));
  {
    std::lock_guard lock(call.context.routes_mutex());
    auto ioas = find_ioas(call, free.ioasid);
    IOASID_TRY(ioas);
    if (const uint32_t users = (*ioas)->users.load(); users != 0)
      return fail(EBUSY, "IOASID {} has {} user(s): attached devices or nested IOASIDs", free.ioasid, users);
    // A nested IOASID gives its parent back when the last reference to it goes.
    call.context.objects().remove<Ioas>(free.ioasid);  // mappings go with the last reference
  }
  // With the lock dropped, as event sinks expect (engine/events.h).
  call.service.publish_bounded(call.context.client().uid, {.type = EventType::IoasidFree,
                                                           .context = call.context.id(),
                                                           .pid = call.context.client().pid,
                                                           .ioasid = free.ioasid});
  return 0;
}

Result<long> map_dma(Call& call, ioasid_map_dma& map) {
  return map_into(call, map.ioasid, map.flags, map.length, map.iova, map.user_va, "user_va",
                  [&](pid_t pid, MapAccess access) { return backing_for_range(pid, map.user_va, map.length, access); });
}

Result<long> map_file(Call& call, ioasid_map_file& map) {
  IOASID_TRY(check_reserved(map.__reserved, "__reserved"));
  return map_into(call, map.ioasid, map.flags, map.length, map.iova, map.offset, "offset",
                  [&](pid_t pid, MapAccess access) {
                    return backing_for_file(pid, map.fd, map.offset, map.length, access);
                  });
}

Result<long> unmap_dma(Call& call, ioasid_unmap_dma& unmap) {
  IOASID_TRY(check_flags(unmap.flags, 0));
  auto ioas = find_kernel_managed(call, unmap.ioasid);
  IOASID_TRY(ioas);
  auto unmapped = (*ioas)->table->unmap(unmap.iova, unmap.length);
  IOASID_TRY(unmapped);
  unmap.length = *unmapped;
  call.service.publish_bounded(call.context.client().uid, {.type = EventType::Unmap,
                                                           .context = call.context.id(),
                                                           .pid = call.context.client().pid,
                                                           .ioasid = unmap.ioasid,
                                                           .iova = unmap.iova,
                                                           .length = *unmapped});
  return 0;
}

Result<long> iova_ranges(Call& call, ioasid_iova_ranges& ranges) {
  auto ioas = find_kernel_managed(call, ranges.ioasid);
  IOASID_TRY(ioas);
  const auto allowed = (*ioas)->table->allowed_ranges();
  const uint32_t capacity = ranges.num_ranges;
  ranges.num_ranges = static_cast<uint32_t>(allowed.size());
  ranges.out_alignment = kPageSize;
  if (capacity < allowed.size())
    return fail(EMSGSIZE, "{} ranges do not fit an array of {}", allowed.size(), capacity);
  std::vector<ioasid_iova_range> out;
  for (const auto& range : allowed) out.push_back({range.start, range.last});
  IOASID_TRY(call.memory.write(ranges.ranges_uptr, std::as_bytes(std::span(out))));
  return 0;
}

}  // namespace ioasid::dev_ioasid

// SPDX-License-Identifier: MIT
// BIND_PGTBL, UNBIND_PGTBL and CACHE_INVLD: a nested IOASID gets a guest's first-level
// table, whose guest-physical addresses translate through its kernel-managed parent,
// and the guest flushes what the IOMMU caches of it, entry by entry as its driver
// would queue invalidation descriptors.
#include "pgtable/walk.h"
#include "dev_ioasid/handlers.h"
#include "dev_ioasid/service.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace ioasid::dev_ioasid {
namespace {

constexpr uint64_t kFirstLevelFlags = IOASID_VTD_FL_SRE | IOASID_VTD_FL_EAFE | IOASID_VTD_FL_WPE |
                                      IOASID_VTD_FL_PCD | IOASID_VTD_FL_PWT | IOASID_VTD_FL_EMTE | IOASID_VTD_FL_CD;

Result<std::shared_ptr<Ioas>> find_nested(Call& call, uint32_t ioasid) {
  auto ioas = find_ioas(call, ioasid);
  IOASID_TRY(ioas);
  if (!(*ioas)->is_nested()) return fail(EINVAL, "IOASID {} is kernel-managed, not nested", ioasid);
  return ioas;
}

// Rewrites every route of this file to the nested IOASID after its binding changed,
// flushing what the IOMMU cached through the old one, and announces BIND or UNBIND
// for each PASID routed to it. Called with the file's routes_mutex held. A shared
// (SIOV) device's table also holds other files' routes, whose IOASID numbers are
// theirs: only this file's own routes are its to rewrite.
void refresh_routes(Call& call, uint32_t ioasid, const Ioas& ioas, PasidEvent event) {
  std::vector<uint32_t> pasids;
  for (const auto& [dev_id, device] : call.context.objects().all<Device>()) {
    std::lock_guard lock(device->attach_mutex());
    for (const auto& [pasid, entry] : device->pasid_table().entries()) {
      if (entry.ioasid != ioasid || device->route_owner(pasid) != call.context.id()) continue;
      device->pasid_table().set(pasid, route_entry(ioas, ioasid));
      call.service.iommu().flush_pasid(entry.domain, pasid);
      if (pasid != iommu::kRidPasid) pasids.push_back(pasid);
    }
  }
  for (const uint32_t pasid : pasids) (void)call.service.allocator().notify(pasid, event);
}

}  // namespace

Result<long> bind_pgtbl(Call& call, ioasid_bind_pgtbl& bind) {
  IOASID_TRY(check_reserved(bind.__reserved, "__reserved"));
  IOASID_TRY(check_flags(bind.flags, kFirstLevelFlags));
  if (bind.format != IOASID_PGTBL_VTD_FL)
    return fail(EOPNOTSUPP, "page-table format {} (only IOASID_PGTBL_VTD_FL, 1)", bind.format);
  if (bind.addr_width != 48 && bind.addr_width != 57)
    return fail(EINVAL, "addr_width {} (48 for 4 levels, 57 for 5)", bind.addr_width);
  if (bind.pgtbl_addr % kPageSize) return fail(EINVAL, "pgtbl_addr {:#x} is not 4 KiB aligned", bind.pgtbl_addr);
  std::lock_guard routes(call.context.routes_mutex());
  auto ioas = find_nested(call, bind.ioasid);
  IOASID_TRY(ioas);
  Nested& nested = *(*ioas)->nested;
  if (nested.binding)
    return fail(EBUSY, "IOASID {} has a table bound at GPA {:#x} (unbind first)", bind.ioasid,
                nested.binding->pgtbl_addr);
  const iommu::IoPageTable& parent = *nested.parent->table;
  const auto root = pgtable::walk_second_level(call.service.iommu().memory(), parent.root(), parent.levels(),
                                               bind.pgtbl_addr, {.read = true});
  if (!root.ok())
    return fail(EINVAL, "pgtbl_addr {:#x} is not mapped readable in the parent IOASID {}", bind.pgtbl_addr,
                nested.parent_id);
  nested.binding = FirstLevelBinding{.pgtbl_addr = bind.pgtbl_addr,
                                     .addr_width = bind.addr_width,
                                     .flags = bind.flags,
                                     .pat = bind.pat,
                                     .emt = bind.emt};
  refresh_routes(call, bind.ioasid, **ioas, PasidEvent::Bind);
  return 0;
}

Result<long> unbind_pgtbl(Call& call, ioasid_unbind_pgtbl& unbind) {
  IOASID_TRY(check_flags(unbind.flags, 0));
  std::lock_guard routes(call.context.routes_mutex());
  auto ioas = find_nested(call, unbind.ioasid);
  IOASID_TRY(ioas);
  Nested& nested = *(*ioas)->nested;
  if (!nested.binding) return 0;
  nested.binding.reset();
  refresh_routes(call, unbind.ioasid, **ioas, PasidEvent::Unbind);
  return 0;
}

namespace {

constexpr uint8_t kAllCaches = IOASID_CACHE_IOTLB | IOASID_CACHE_DEV_IOTLB | IOASID_CACHE_PASID;

// The caches each granularity may name (UAPI.md's valid pairs).
constexpr uint8_t caches_allowed(uint8_t granularity) {
  switch (granularity) {
    case IOASID_INV_GRANU_DOMAIN: return IOASID_CACHE_IOTLB | IOASID_CACHE_PASID;
    case IOASID_INV_GRANU_PASID: return kAllCaches;
    default: return IOASID_CACHE_IOTLB | IOASID_CACHE_DEV_IOTLB;
  }
}

// One entry checked and resolved: the host PASID it names, the address range.
struct Invalidation {
  uint8_t cache;
  uint8_t granularity;
  uint32_t pasid;
  uint64_t addr;
  uint64_t length;
};

Result<Invalidation> check_entry(Call& call, const ioasid_cache_invalidate_info& info) {
  IOASID_TRY(check_flags(info.flags, IOASID_INV_FLAGS_PASID | IOASID_INV_FLAGS_LEAF | IOASID_INV_FLAGS_GPASID |
                                         IOASID_INV_FLAGS_RID_PASID));
  if (info.cache == 0 || (info.cache & ~kAllCaches))
    return fail(EINVAL, "cache {:#x}: a non-empty set of IOTLB 1, DEV_IOTLB 2, PASID 4", info.cache);
  if (info.granularity > IOASID_INV_GRANU_ADDR) return fail(EINVAL, "granularity {} (0..2)", info.granularity);
  if (info.cache & ~caches_allowed(info.granularity))
    return fail(EINVAL, "cache {:#x} cannot be invalidated at granularity {}", info.cache, info.granularity);
  Invalidation out{.cache = info.cache, .granularity = info.granularity, .pasid = 0, .addr = 0, .length = 0};
  const bool has_pasid = info.flags & IOASID_INV_FLAGS_PASID;
  // RID_PASID names the requests without PASID (the RID's route), cached at PASID 0.
  const bool rid_pasid = info.flags & IOASID_INV_FLAGS_RID_PASID;
  if (rid_pasid && has_pasid) return fail(EINVAL, "RID_PASID and PASID name two targets; give one");
  if (rid_pasid && info.granularity == IOASID_INV_GRANU_DOMAIN)
    return fail(EINVAL, "RID_PASID with granularity DOMAIN (a domain invalidation covers it already)");
  if (rid_pasid && info.pasid != 0) return fail(EINVAL, "pasid {} with RID_PASID (which is PASID 0)", info.pasid);
  if (info.granularity != IOASID_INV_GRANU_DOMAIN && !has_pasid && !rid_pasid)
    return fail(EINVAL, "granularity {} needs IOASID_INV_FLAGS_PASID or _RID_PASID", info.granularity);
  if ((info.flags & IOASID_INV_FLAGS_GPASID) && !has_pasid) return fail(EINVAL, "GPASID without the PASID flag");
  if (info.granularity == IOASID_INV_GRANU_ADDR) {
    if (info.granule_size != kPageSize && info.granule_size != (2ull << 20) && info.granule_size != (1ull << 30))
      return fail(EINVAL, "granule_size {:#x} (4K, 2M or 1G)", info.granule_size);
    if (info.addr % info.granule_size) return fail(EINVAL, "addr {:#x} is not aligned to its granule", info.addr);
    if (info.nb_granules == 0) return fail(EINVAL, "nb_granules 0");
    if (info.nb_granules > ~0ull / info.granule_size ||
        info.addr + (info.nb_granules * info.granule_size - 1) < info.addr)
      return fail(EINVAL, "addr {:#x} + {} granules of {:#x} overflows", info.addr, info.nb_granules,
                  info.granule_size);
    out.addr = info.addr;
    out.length = info.nb_granules * info.granule_size;
  }
  if (rid_pasid) out.pasid = iommu::kRidPasid;
  if (!has_pasid) return out;
  auto host = own_pasid(call, info.pasid, info.flags & IOASID_INV_FLAGS_GPASID);
  IOASID_TRY(host);
  out.pasid = *host;
  return out;
}

// Applies one invalidation to the caches of the nested IOASID's domain: the IOTLB,
// the device-TLBs of this file's devices, the PASID cache. Nothing else is flushed:
// what the guest does not invalidate stays cached, as in hardware.
using Devices = std::vector<std::pair<uint32_t, std::shared_ptr<Device>>>;

void apply(Call& call, const Devices& devices, uint16_t domain, const Invalidation& inv) {
  iommu::Iommu& iommu = call.service.iommu();
  auto flush = [&](iommu::Iotlb& tlb) {
    switch (inv.granularity) {
      case IOASID_INV_GRANU_DOMAIN: tlb.invalidate_domain(domain); break;
      case IOASID_INV_GRANU_PASID: tlb.invalidate_pasid(domain, inv.pasid); break;
      default: tlb.invalidate_range(domain, inv.pasid, inv.addr, inv.length, iommu::Iotlb::Epoch::kAnnounced); break;
    }
  };
  if (inv.cache & IOASID_CACHE_IOTLB) flush(iommu.iotlb());
  // The device models' ATCs: what the guest invalidates in its devices' TLBs.
  if (auto ats = call.context.ats(); ats && (inv.cache & IOASID_CACHE_DEV_IOTLB)) {
    const bool ranged = inv.granularity != IOASID_INV_GRANU_DOMAIN && inv.granularity != IOASID_INV_GRANU_PASID;
    ats->invalidate(domain, inv.granularity == IOASID_INV_GRANU_DOMAIN ? std::nullopt : std::optional(inv.pasid),
                    ranged ? inv.addr : 0, ranged ? inv.length : ~0ull);
  }
  if (inv.cache & (IOASID_CACHE_DEV_IOTLB | IOASID_CACHE_PASID)) {
    for (const auto& [dev_id, device] : devices) {
      if ((inv.cache & IOASID_CACHE_DEV_IOTLB) && device->device_tlb()) flush(*device->device_tlb());
      if ((inv.cache & IOASID_CACHE_PASID) && inv.granularity == IOASID_INV_GRANU_PASID)
        device->pasid_table().invalidate_cached(inv.pasid);
    }
  }
  if ((inv.cache & IOASID_CACHE_PASID) && inv.granularity == IOASID_INV_GRANU_DOMAIN)
    iommu.pasid_cache().invalidate_domain(domain);
}

// Bounds on one CACHE_INVLD, so that one ioctl cannot hold a session thread for
// long: entries longer than a page (the rest of a known entry must be zero anyway)
// and more entries than a VT-d invalidation queue holds are refused. Entries are
// read in batches of up to kEntriesPerRead.
constexpr uint32_t kMaxEntryLen = 4096;
constexpr uint32_t kMaxEntries = 65536;
constexpr uint32_t kEntriesPerRead = 1024;

}  // namespace

Result<long> cache_invalidate(Call& call, ioasid_cache_invalidate& request) {
  IOASID_TRY(check_flags(request.flags, 0));
  const uint32_t count = request.entry_num;
  request.entry_num = 0;
  auto ioas = find_nested(call, request.ioasid);
  IOASID_TRY(ioas);
  if (count == 0) return 0;
  if (request.entry_len < sizeof(ioasid_cache_invalidate_info))
    return fail(EINVAL, "entry_len {} is below the {}-byte entry", request.entry_len,
                sizeof(ioasid_cache_invalidate_info));
  if (request.entry_len > kMaxEntryLen)
    return fail(EINVAL, "entry_len {} is above {}", request.entry_len, kMaxEntryLen);
  if (count > kMaxEntries) return fail(EINVAL, "entry_num {} is above {} per call", count, kMaxEntries);
  if (request.entries_uptr == 0) return fail(EINVAL, "entries_uptr 0 with {} entries", count);
  const uint16_t domain = (*ioas)->nested->domain.id();
  const Devices devices = call.context.objects().all<Device>();
  // One epoch bump per cache for the whole batch (see Iotlb::invalidate_range).
  call.service.iommu().iotlb().begin_invalidations();
  for (const auto& [dev_id, device] : devices)
    if (device->device_tlb()) device->device_tlb()->begin_invalidations();
  const uint32_t entry_len = request.entry_len;
  std::vector<std::byte> batch;
  for (uint32_t first = 0; first < count;) {
    if (call.interrupted && call.interrupted->load(std::memory_order_relaxed))
      return fail(EINTR, "interrupted after {} of {} entries", first, count);
    uint32_t n = std::min(kEntriesPerRead, count - first);
    const uint64_t address = request.entries_uptr + uint64_t{first} * entry_len;
    batch.resize(size_t{n} * entry_len);
    if (!call.memory.read(address, batch)) {
      // entry_num must name the entry that cannot be read: go one by one, applying
      // the readable ones before it.
      n = 1;
      batch.resize(entry_len);
      if (auto read = call.memory.read(address, batch); !read)
        return fail(read.code(), "entry {}: {}", first, read.error().why);
    }
    for (uint32_t i = 0; i < n; ++i) {
      const std::byte* raw = batch.data() + size_t{i} * entry_len;
      for (size_t extra = sizeof(ioasid_cache_invalidate_info); extra < entry_len; ++extra)
        if (raw[extra] != std::byte{0})
          return fail(E2BIG, "entry {}: byte {} beyond the known entry is not zero", first + i, extra);
      ioasid_cache_invalidate_info info;
      std::memcpy(&info, raw, sizeof info);
      auto checked = check_entry(call, info);
      if (!checked) return fail(checked.code(), "entry {}: {}", first + i, checked.error().why);
      apply(call, devices, domain, *checked);
      request.entry_num = first + i + 1;
    }
    first += n;
  }
  return 0;
}

}  // namespace ioasid::dev_ioasid

// SPDX-License-Identifier: MIT
// ATTACH_IOASID, ATTACH_IOASID_PASID, DETACH_IOASID, DETACH_IOASID_PASID: a bound
// device's requests (its RID's, or one PASID's) are routed to an IOASID of the same
// file. An attachment's RouteHold keeps its IOASID busy and, for a PASID, a reference
// on it, for as long as the route exists.
#include "dev_ioasid/handlers.h"
#include "dev_ioasid/pasid_reference.h"
#include "dev_ioasid/service.h"

#include <memory>
#include <optional>

namespace ioasid::dev_ioasid {
namespace {

// What an attachment keeps for as long as its route exists.
struct Attachment {
  IoasUser ioas;
  std::optional<PasidReference> pasid;
};

struct Target {
  std::shared_ptr<Device> device;
  uint32_t pasid;  // iommu::kRidPasid for the RID
};

Result<Target> find_target(Call& call, const ioasid_attach& attach, bool with_pasid, bool attaching) {
  IOASID_TRY(check_flags(attach.flags, attaching ? IOASID_ATTACH_REPLACE : 0));
  auto device = call.context.objects().find<Device>(attach.dev_id);
  if (!device) return fail(ENOENT, "no device with dev_id {} in this file", attach.dev_id);
  if (device->removed()) return fail(ENODEV, "{} was removed by the admin", device->spec().name);
  if (!with_pasid) {
    if (attach.pasid != 0) return fail(EINVAL, "pasid {} given to a RID attach (must be 0)", attach.pasid);
    return Target{device, iommu::kRidPasid};
  }
  const uint32_t bits = device->spec().pasid_bits;
  if (bits == 0) return fail(EOPNOTSUPP, "{} has no PASID capability", device->spec().name);
  if (attach.pasid >= (1u << bits))
    return fail(EINVAL, "pasid {} does not fit {}'s {} PASID bits", attach.pasid, device->spec().name, bits);
  return Target{device, attach.pasid};
}

}  // namespace

iommu::PasidEntry route_entry(const Ioas& ioas, uint32_t ioasid) {
  if (!ioas.is_nested())
    return {.ioasid = ioasid,
            .domain = ioas.table->domain(),
            .type = iommu::TranslationType::kSecondLevel,
            .levels = static_cast<uint8_t>(ioas.table->levels()),
            .root = ioas.table->root(),
            .second_level_domain = ioas.table->domain()};
  const Nested& nested = *ioas.nested;
  const iommu::IoPageTable& parent = *nested.parent->table;
  iommu::PasidEntry entry{.ioasid = ioasid,
                          .domain = nested.domain.id(),
                          .type = iommu::TranslationType::kNested,
                          .levels = static_cast<uint8_t>(parent.levels()),
                          .root = parent.root(),
                          .second_level_domain = parent.domain()};
  if (nested.binding) {
    entry.first_level_levels = nested.binding->addr_width == 57 ? 5 : 4;
    entry.first_level_flags =
        static_cast<uint8_t>(nested.binding->flags & (IOASID_VTD_FL_SRE | IOASID_VTD_FL_EAFE | IOASID_VTD_FL_WPE));
    entry.first_level_root = nested.binding->pgtbl_addr;
  }
  return entry;
}

Result<long> attach_ioasid(Call& call, ioasid_attach& attach, bool with_pasid) {
  auto target = find_target(call, attach, with_pasid, /*attaching=*/true);
  IOASID_TRY(target);
  std::lock_guard routes(call.context.routes_mutex());  // FREE cannot take the IOASID meanwhile
  auto ioas = call.context.objects().find<Ioas>(attach.ioasid);
  if (!ioas) return fail(ENOENT, "no IOASID {} in this file", attach.ioasid);
  Allocator& allocator = call.service.allocator();
  auto attachment = std::make_shared<Attachment>(Attachment{IoasUser(ioas), std::nullopt});
  if (with_pasid) {
    // Held by the attachment: a FREE of the PASID detaches it, and the number is
    // reclaimed when this reference goes.
    IOASID_TRY(own_pasid(call, target->pasid, /*guest=*/false, /*take_reference=*/true));
    attachment->pasid.emplace(allocator, target->pasid);
  }
  Device& device = *target->device;
  std::lock_guard lock(device.attach_mutex());
  if (call.context.objects().find<Device>(attach.dev_id) != target->device)  // unbound meanwhile
    return fail(ENOENT, "no device with dev_id {} in this file", attach.dev_id);
  const auto current = device.pasid_table().lookup(target->pasid);
  if (const uint32_t holder = device.route_owner(target->pasid); current && holder != call.context.id())
    return fail(EBUSY, "the RID of shared {} is attached by ctx {}", device.spec().name, holder);
  const bool replace = attach.flags & IOASID_ATTACH_REPLACE;
  if (current.has_value() != replace) {
    if (current) return fail(EBUSY, "{} {} is attached to IOASID {} (use REPLACE)", device.spec().name,
                                   with_pasid ? fmt::format("PASID {}", target->pasid) : "RID", current->ioasid);
    return fail(ENOENT, "REPLACE, but nothing is attached to {} {}", device.spec().name,
                with_pasid ? fmt::format("PASID {}", target->pasid) : "RID");
  }
  const iommu::PasidEntry route = route_entry(*ioas, attach.ioasid);
  device.pasid_table().set(target->pasid, route);
  // The old route's hold (its IOASID's use, its PASID reference) goes once the IOMMU
  // has forgotten the old route.
  std::optional<RouteHold> old =
      device.set_route_hold(target->pasid, {.context = call.context.id(), .keeps = std::move(attachment)});
  // The PASID's guest table changes with the route: UNBIND for the old, BIND for the new.
  if (with_pasid && current && current->bound_first_level())
    (void)allocator.notify(target->pasid, PasidEvent::Unbind);
  if (with_pasid && route.bound_first_level()) (void)allocator.notify(target->pasid, PasidEvent::Bind);
  if (current) call.service.iommu().flush_pasid(current->domain, target->pasid);
  old.reset();
  // A FREE between our get and now found no route to detach (its detach waits on this
  // lock): the PASID is FREE_PENDING, so undo rather than route a dying PASID.
  if (with_pasid && !allocator.find(call.context.pasid_set(), target->pasid)) {
    call.service.detach_locked(call.context, attach.dev_id, device, target->pasid);
    return fail(ENOENT, "PASID {} was freed while it was being attached", target->pasid);
  }
  call.service.publish({.type = EventType::DeviceAttach,
                        .context = call.context.id(),
                        .pid = call.context.client().pid,
                        .pasid = target->pasid,
                        .device = device.spec().name,
                        .dev_id = attach.dev_id,
                        .ioasid = attach.ioasid});
  return 0;
}

Result<long> attach_rid(Call& call, ioasid_attach& attach) { return attach_ioasid(call, attach, false); }
Result<long> attach_pasid(Call& call, ioasid_attach& attach) { return attach_ioasid(call, attach, true); }

Result<long> detach_ioasid(Call& call, ioasid_attach& attach, bool with_pasid) {
  auto target = find_target(call, attach, with_pasid, /*attaching=*/false);
  IOASID_TRY(target);
  call.service.detach(call.context, attach.dev_id, *target->device, target->pasid);
  return 0;
}

Result<long> detach_rid(Call& call, ioasid_attach& attach) { return detach_ioasid(call, attach, false); }
Result<long> detach_pasid(Call& call, ioasid_attach& attach) { return detach_ioasid(call, attach, true); }

}  // namespace ioasid::dev_ioasid

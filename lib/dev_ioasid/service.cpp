// SPDX-License-Identifier: MIT
#include "dev_ioasid/service.h"

#include "base/names.h"
#include "pgtable/dump.h"
#include "dev_ioasid/dispatcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <shared_mutex>
#include <tuple>

namespace ioasid::dev_ioasid {
namespace {

uint64_t unix_now_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

EventType event_type(PasidEvent event) {
  switch (event) {
    case PasidEvent::Alloc: return EventType::PasidAlloc;
    case PasidEvent::Free: return EventType::PasidFree;
    case PasidEvent::Bind: return EventType::PasidBind;
    case PasidEvent::Unbind: return EventType::PasidUnbind;
  }
  return EventType::PasidAlloc;
}

}  // namespace

// Live contexts by id. Ids start at 1 and are never reused while the daemon runs.
struct Service::Registry {
  mutable std::shared_mutex mutex;
  std::map<uint32_t, std::shared_ptr<Context>> contexts;
  uint32_t next_id = 1;
  std::atomic<uint64_t> ioctls{0};
  std::atomic<uint64_t> ioctl_errors{0};
};

engine::EngineConfig ServiceConfig::engine() const {
  return {.pasid_bits = pasid_bits,
          .addr_width = addr_width,
          .devices = devices,
          .pin_limit_pages = pin_limit_pages,
          .max_maps_per_user = max_maps_per_user,
          .max_ioasids_per_user = max_ioasids_per_user,
          .max_waits_per_user = max_waits_per_user,
          .executor = executor,
          .dsa_idle_poll = dsa_idle_poll};
}

Service::Service(ServiceConfig config)
    : config_(std::move(config)),
      own_engine_(std::make_unique<engine::Engine>(config_.engine())),
      engine_(*own_engine_),
      registry_(std::make_unique<Registry>()) {
  subscribe_pasid_events();
}

Service::Service(engine::Engine& engine, ServiceConfig config)
    : config_(std::move(config)), engine_(engine), registry_(std::make_unique<Registry>()) {
  subscribe_pasid_events();
}

void Service::subscribe_pasid_events() {
  // Every set the service creates is a File set whose token is the context id.
  pasid_events_ = allocator().subscribe([this](const Notification& notification) {
    Event event{.type = event_type(notification.event),
                .context = static_cast<uint32_t>(notification.set_token),
                .pasid = notification.pasid,
                .gpasid = notification.spid};
    if (auto context = find_context(event.context)) {
      event.pid = context->client().pid;
      // A PASID freed while attached is detached: its attachments drop their
      // references, and the number is reclaimed when the last one goes.
      if (notification.event == PasidEvent::Free)
        for (const auto& [dev_id, device] : context->objects().all<Device>())
          detach(*context, dev_id, *device, notification.pasid);
    }
    publish(std::move(event));
  });
}

Service::~Service() {
  release_all();
  pasid_events_.reset();
}

Result<std::shared_ptr<Context>> Service::open(const ClientIdentity& client) {
  std::shared_ptr<Context> context;
  {
    std::unique_lock lock(registry_->mutex);
    if (client.uid != 0 && config_.max_files_per_user != 0) {
      // A file whose release has begun no longer counts: close(2) then open(2) works.
      const auto open_files = std::ranges::count_if(registry_->contexts, [&](const auto& entry) {
        return entry.second->client().uid == client.uid && !entry.second->released();
      });
      if (open_files >= config_.max_files_per_user)
        return fail(EMFILE, "uid {} has {} files of the node open, the limit per user (--max-files-per-user)",
                    client.uid, open_files);
    }
    const uint32_t id = registry_->next_id;
    auto set = allocator().create_set(id, SetType::File, config_.default_pasid_quota);
    if (!set)
      return fail(set.code(), "cannot give a new file its PASID quota of {}: {}", config_.default_pasid_quota,
                  set.error().why);
    ++registry_->next_id;
    context = std::make_shared<Context>(id, client, *set, config_.fault_queue_depth, unix_now_ns());
    registry_->contexts.emplace(id, context);
  }
  publish({.type = EventType::ContextOpen,
           .context = context->id(),
           .pid = client.pid,
           .quota = config_.default_pasid_quota});
  return context;
}

void Service::release(Context& context) {
  if (context.released_.exchange(true, std::memory_order_acq_rel)) return;
  context.page_requests().close();  // a DMA or WQ waiting for one fails now, and none opens again
  for (const auto& [dev_id, device] : context.objects().all<Device>()) {
    context.objects().remove<Device>(dev_id);
    unbind_device(context, dev_id, *device);
  }
  // IOASIDs, newest first: nested ones before their parents.
  for (const auto& [ioasid, ioas] : context.objects().all<Ioas>()) context.objects().remove<Ioas>(ioasid);
  // PASIDs next (each announced FREE while the context is still listed), then the set.
  if (auto freed = allocator().free_set(context.pasid_set()); !freed)
    spdlog::error("ctx {}: freeing its PASID set failed: {}", context.id(), freed.error().why);
  {
    std::unique_lock lock(registry_->mutex);
    registry_->contexts.erase(context.id());
  }
  publish({.type = EventType::ContextClose, .context = context.id(), .pid = context.client().pid});
}

void Service::release_all() {
  std::vector<std::shared_ptr<Context>> live;
  {
    std::shared_lock lock(registry_->mutex);
    for (const auto& [id, context] : registry_->contexts) live.push_back(context);
  }
  for (const auto& context : live) release(*context);
}

Result<long> Service::ioctl(Context& context, uint32_t cmd, uint64_t arg, std::span<std::byte> buf,
                            ClientMemory& memory, const std::atomic<bool>* interrupted) {
  context.ioctls_.fetch_add(1, std::memory_order_relaxed);
  registry_->ioctls.fetch_add(1, std::memory_order_relaxed);
  if (context.released())
    return fail(EBADF, "ctx {} was released (daemon shutting down)", context.id());
  Call call{*this, context, memory, arg, interrupted};
  // What the ioctl invalidated in ATS device models is acknowledged before it returns.
  iommu::AtsWaitScope ats_invalidations(config_.ats_timeout);
  auto result = dispatch(call, cmd, buf);
  if (ats_invalidations.waiting()) {
    // Sleeping holds a session thread every client shares: a user gets only so many.
    const auto waiting = engine().waits_quota().charge(context.client().uid);
    if (waiting) {
      before_blocking_wait();
      ats_invalidations.complete();
    } else {
      spdlog::info("ctx {} pid {} {}: {}: the devices it invalidated fail now unless they acknowledged already",
                   context.id(), context.client().pid, ioctl_name(cmd), waiting.error().why);
      ats_invalidations.complete_without_waiting();
    }
  }
  if (!result) {
    registry_->ioctl_errors.fetch_add(1, std::memory_order_relaxed);
    spdlog::info("ctx {} pid {} {}: {}: {}", context.id(), context.client().pid, ioctl_name(cmd),
                 errno_name(result.code()), result.error().why);
  }
  return result;
}

Result<size_t> Service::read_faults(Context& context, std::span<std::byte> out) {
  constexpr size_t kRecord = sizeof(ioasid_fault);
  if (out.size() % kRecord != 0)
    return fail(EINVAL, "read of {} bytes is not a multiple of the {}-byte fault record", out.size(), kRecord);
  if (out.empty()) return size_t{0};
  std::vector<ioasid_fault> records(out.size() / kRecord);
  const size_t count = context.faults().pop(records);
  if (count == 0) return fail(EAGAIN, "no fault queued");
  std::memcpy(out.data(), records.data(), count * kRecord);
  return count * kRecord;
}

ServiceStatus Service::status() const {
  std::shared_lock lock(registry_->mutex);
  return ServiceStatus{
      .api_version = IOASID_API_VERSION,
      .features = served_features(),
      .pasid_bits = allocator().pasid_bits(),
      .pasid_capacity = allocator().capacity(),
      .pasids_allocated = allocator().allocated(),
      .pasid_quota_available = allocator().quota_available(),
      .default_pasid_quota = config_.default_pasid_quota,
      .contexts = static_cast<uint32_t>(registry_->contexts.size()),
      .ioctls = registry_->ioctls.load(std::memory_order_relaxed),
      .ioctl_errors = registry_->ioctl_errors.load(std::memory_order_relaxed),
  };
}

std::vector<ContextInfo> Service::contexts() const {
  std::vector<ContextInfo> out;
  std::shared_lock lock(registry_->mutex);
  for (const auto& [id, context] : registry_->contexts) {
    auto set = allocator().set_info(context->pasid_set());
    out.push_back({.id = id,
                   .client = context->client(),
                   .pasid_quota = set ? set->quota : 0,
                   .pasids_allocated = set ? set->allocated : 0,
                   .ioctls = context->ioctls(),
                   .opened_unix_ns = context->opened_unix_ns()});
  }
  return out;
}

std::vector<PasidOwnerInfo> Service::pasids() const {
  std::vector<PasidOwnerInfo> out;
  std::shared_lock lock(registry_->mutex);
  for (const auto& [id, context] : registry_->contexts) {
    (void)allocator().for_each(context->pasid_set(), [&, id = id](const PasidInfo& info) {
      out.push_back({.pasid = info.pasid,
                     .context = id,
                     .gpasid = info.spid,
                     .state = info.state,
                     .refcount = info.refcount});
    });
  }
  return out;
}

Result<void> Service::set_quota(uint32_t context_id, uint32_t quota) {
  auto context = find_context(context_id);
  if (!context) return fail(ENOENT, "no context {}", context_id);
  IOASID_TRY(allocator().adjust_quota(context->pasid_set(), quota));
  spdlog::info("ctx {}: PASID quota set to {}", context_id, quota);
  publish({.type = EventType::QuotaChange, .context = context_id, .pid = context->client().pid, .quota = quota});
  return success();
}

Result<std::shared_ptr<Device>> Service::add_device(devices::DeviceSpec spec) {
  const std::string description = devices::describe(spec);
  auto device = devices().add(std::move(spec));
  IOASID_TRY(device);
  spdlog::info("device added: {}", description);
  return device;
}

Result<void> Service::remove_device(std::string_view name_or_pci) {
  auto device = devices().remove(name_or_pci);
  IOASID_TRY(device);
  const std::vector<uint32_t> binders = (*device)->bound_by();
  spdlog::info("device {} removed{}", (*device)->spec().name,
               binders.empty() ? "" : fmt::format(" while bound by ctx {}", fmt::join(binders, ", ")));
  // Every file that holds it (a SIOV device has several) hears of it; a free device
  // is announced once, to nobody in particular.
  for (const uint32_t holder : binders.empty() ? std::vector<uint32_t>{0} : binders) {
    Event event{.type = EventType::DeviceRemoved, .context = holder, .device = (*device)->spec().name};
    if (auto context = holder ? find_context(holder) : nullptr) event.pid = context->client().pid;
    publish(std::move(event));
  }
  return success();
}

void Service::detach(Context& context, uint32_t dev_id, Device& device, uint32_t pasid) {
  std::lock_guard lock(device.attach_mutex());
  detach_locked(context, dev_id, device, pasid);
}

void Service::detach_locked(Context& context, uint32_t dev_id, Device& device, uint32_t pasid) {
  if (device.route_owner(pasid) != context.id()) return;  // not this file's route (a shared device)
  const auto entry = device.pasid_table().clear(pasid);
  // Released at the end: the IOASID stays busy and the PASID referenced until the
  // IOMMU has forgotten the route and its page requests are cancelled.
  std::optional<RouteHold> hold = device.take_route_hold(pasid);
  if (!entry) return;
  iommu().flush_pasid(entry->domain, pasid);
  if (pasid != iommu::kRidPasid) {
    if (entry->bound_first_level()) (void)allocator().notify(pasid, PasidEvent::Unbind);
    context.page_requests().cancel([&](uint32_t dev, std::optional<uint32_t> requested) {
      return dev == dev_id && requested == pasid;
    });
  }
  publish({.type = EventType::DeviceDetach,
           .context = context.id(),
           .pid = context.client().pid,
           .pasid = pasid,
           .device = device.spec().name,
           .dev_id = dev_id,
           .ioasid = entry->ioasid});
}

void Service::unbind_device(Context& context, uint32_t dev_id, Device& device) {
  {
    // Under the attach lock, so an ATTACH racing with this sees the device gone
    // (it re-checks) rather than adding a route after the table was emptied.
    std::lock_guard lock(device.attach_mutex());
    for (const auto& [pasid, entry] : device.pasid_table().entries()) detach_locked(context, dev_id, device, pasid);
  }
  context.page_requests().cancel([&](uint32_t dev, std::optional<uint32_t>) { return dev == dev_id; });
  if (auto* engine = device.engine())
    for (uint32_t wq = 0; wq < engine->num_wqs(); ++wq) engine->disable(wq, context.id());  // this file's only
  devices().unbind(device, context.id());
  if (auto ats = context.ats()) ats->forget(dev_id);
  publish({.type = EventType::DeviceUnbind,
           .context = context.id(),
           .pid = context.client().pid,
           .device = device.spec().name,
           .dev_id = dev_id});
}

std::shared_ptr<iommu::AtsHolder> Service::ats_holder(Context& context) {
  std::lock_guard lock(context.ats_mutex_);
  if (context.ats_) return context.ats_;
  const uint32_t id = context.id();
  auto send = [&context](const iommu::AtsInvalidationRequest& request) {
    ioasid_ats_invalidation record{.type = IOASID_FAULT_ATS_INVALIDATE,
                                   .flags = request.pasid == iommu::kRidPasid ? 0u : IOASID_FAULT_PASID_VALID,
                                   .dev_id = request.dev_id,
                                   .pasid = request.pasid == iommu::kRidPasid ? 0u : request.pasid,
                                   .itag = request.itag,
                                   .iova = request.iova,
                                   .length = request.length};
    ioasid_fault slot;
    static_assert(sizeof slot == sizeof record);
    std::memcpy(&slot, &record, sizeof slot);
    return context.faults().push(slot);
  };
  auto failed = [id](uint32_t dev_id, const std::string& why) {
    spdlog::warn("ctx {}: dev_id {} is failed, its ATS translations refused until it is bound again: {}", id,
                 dev_id, why);
  };
  context.ats_ = std::make_shared<iommu::AtsHolder>(std::move(send), std::move(failed));
  context.ats_registration_ = iommu().register_ats_holder(*context.ats_);
  return context.ats_;
}

std::shared_ptr<Context> Service::find_context(uint32_t id) const {
  std::shared_lock lock(registry_->mutex);
  auto it = registry_->contexts.find(id);
  return it == registry_->contexts.end() ? nullptr : it->second;
}

Result<IoasDump> Service::dump_ioas(uint32_t context_id, uint32_t ioasid, uint64_t begin, uint64_t end) {
  if (begin >= end) return fail(EINVAL, "empty IOVA range [{:#x}, {:#x})", begin, end);
  auto context = find_context(context_id);
  if (!context) return fail(ENOENT, "no context {}", context_id);
  auto ioas = context->objects().find<Ioas>(ioasid);
  if (!ioas) return fail(ENOENT, "context {} has no IOASID {}", context_id, ioasid);
  std::optional<NestedDump> nested;
  if (ioas->is_nested()) {
    std::lock_guard lock(context->routes_mutex());  // BIND/UNBIND change the binding under it
    nested = NestedDump{.parent = ioas->nested->parent_id, .binding = ioas->nested->binding};
  }
  // Kept alive by `ioas` even if freed meanwhile; a nested IOASID shows its parent's table.
  const iommu::IoPageTable& table = ioas->is_nested() ? *ioas->nested->parent->table : *ioas->table;
  IoasDump dump{.context = context_id,
                .ioasid = ioasid,
                .domain = table.domain(),
                .levels = table.levels(),
                .root = table.root(),
                .table_pages = table.table_pages(),
                .dirty_tracking = table.dirty_tracking(),
                .areas = table.areas(),
                .routes = {},
                .lines = {},
                .nested = nested};
  if (nested) {
    dump.domain = ioas->nested->domain.id();
    dump.areas.clear();
  }
  std::erase_if(dump.areas, [&](const iommu::AreaInfo& area) {
    return area.iova >= end || area.iova + (area.length - 1) < begin;
  });
  // Table words are read lock-free, as the IOMMU's own walks read them.
  if (!nested) {
    auto lines = pgtable::dump_second_level(iommu().memory(), dump.root, dump.levels,
                                            {.begin = begin, .end = end});
    IOASID_TRY(lines);
    dump.lines = std::move(*lines);
  }
  for (const auto& [dev_id, device] : context->objects().all<Device>()) {
    std::lock_guard lock(device->attach_mutex());  // a shared device has other files' routes too
    for (const auto& [pasid, entry] : device->pasid_table().entries())
      if (entry.ioasid == ioasid && device->route_owner(pasid) == context_id)
        dump.routes.push_back({device->spec().name, dev_id, pasid});
  }
  std::sort(dump.routes.begin(), dump.routes.end(), [](const IoasRoute& a, const IoasRoute& b) {
    return std::tie(a.dev_id, a.pasid) < std::tie(b.dev_id, b.pasid);
  });
  return dump;
}

}  // namespace ioasid::dev_ioasid

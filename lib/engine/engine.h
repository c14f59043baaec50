// SPDX-License-Identifier: MIT
// What every personality of the daemon shares: the PASID space, the IOMMU (its
// domains, tables, caches and pinned memory), the emulated devices, the per-user
// limits on what clients make the daemon hold, the event stream, and where device work
// runs. /dev/ioasid (lib/dev_ioasid) and /dev/iommu (lib/dev_iommu) each keep their
// open files and ioctls, over one Engine.
#pragma once

#include "base/executor.h"
#include "base/user_quota.h"
#include "devices/device_spec.h"
#include "engine/device_registry.h"
#include "engine/event_budget.h"
#include "engine/events.h"
#include "iommu/iommu.h"
#include "memory/pin_accounting.h"
#include "pasid/allocator.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

namespace ioasid::engine {

struct EngineConfig {
  uint32_t pasid_bits = kDefaultPasidBits;
  uint32_t addr_width = 48;
  std::vector<devices::DeviceSpec> devices = devices::default_devices();
  uint64_t pin_limit_pages = PinAccounting::kDefaultLimitPages;  // per user; 0 = unlimited
  // Mappings and address spaces (IOASIDs, iommufd objects) per uid other than root
  // (0 = unlimited): the daemon's fds, memory maps and page-table pages grow with them
  // (docs/SECURITY.md, "What bounds the daemon").
  uint32_t max_maps_per_user = 4096;
  uint32_t max_ioasids_per_user = 1024;
  // Calls per uid other than root that may sleep at once in the daemon for another
  // party (a page response, an ATS acknowledgement), holding a session thread each
  // (0 = unlimited): the session threads are shared by every client.
  uint32_t max_waits_per_user = 8;
  // Where devices run their work; null: two threads of the engine's own. Must outlive it.
  Executor* executor = nullptr;
  // How long a dsa WQ's runner waits for the next descriptor before it lets its thread go.
  std::chrono::microseconds dsa_idle_poll = devices::dsa::kDefaultIdlePoll;
};

class Engine {
 public:
  explicit Engine(const EngineConfig& config);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  Allocator& allocator() { return allocator_; }
  const Allocator& allocator() const { return allocator_; }
  iommu::Iommu& iommu() { return iommu_; }
  // What each user holds against --max-maps-per-user and --max-ioasids-per-user.
  UserQuota& maps_quota() { return maps_quota_; }
  UserQuota& ioasids_quota() { return ioasids_quota_; }
  // Calls of each user sleeping for a page response or an acknowledgement (--max-waits-per-user).
  UserQuota& waits_quota() { return waits_quota_; }
  Executor& executor() { return *executor_; }
  DeviceRegistry& devices() { return devices_; }

  // Every event of every personality; a sink runs on the thread that caused the event,
  // after engine locks are dropped, so it must be quick.
  EventSubscription subscribe(EventSink sink) { return events_.subscribe(std::move(sink)); }
  void publish(Event event) { events_.publish(std::move(event)); }
  // For the events a client causes at will (MAP/UNMAP, IOASID ALLOC/FREE): sent only
  // within `uid`'s budget, kBoundedEventsPerSecond (event_budget.h says why).
  static constexpr uint32_t kBoundedEventsPerSecond = 1000;
  void publish_bounded(uid_t uid, Event event) {
    const auto admission = event_budget_.admit(uid);
    if (!admission.send) return;
    if (admission.suppressed_before != 0) event.suppressed = admission.suppressed_before;
    events_.publish(std::move(event));
  }
  const PerUserEventBudget& event_budget() const { return event_budget_; }

 private:
  Allocator allocator_;
  iommu::Iommu iommu_;
  UserQuota maps_quota_;
  UserQuota ioasids_quota_;
  UserQuota waits_quota_;
  EventBus events_;
  PerUserEventBudget event_budget_{kBoundedEventsPerSecond};
  std::unique_ptr<Executor> own_executor_;
  Executor* executor_;
  DeviceRegistry devices_;  // after the executor: device engines drain into it
};

}  // namespace ioasid::engine

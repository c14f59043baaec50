// SPDX-License-Identifier: MIT
// The emulated devices the daemon offers, and who has bound each. Binding is
// exclusive, except for Scalable IOV devices, which are shared at PASID granularity;
// a device the admin removes leaves the registry at once, and its holders' bindings
// stay behind answering ENODEV until they are unbound.
#pragma once

#include "base/executor.h"
#include "devices/device_spec.h"
#include "devices/dsa/engine.h"
#include "iommu/iommu.h"

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

namespace ioasid::engine {

// What a route at one PASID (or the RID) of a device holds while it exists: its owner
// and whatever the personality that made it keeps alive for it (/dev/ioasid: the
// IOASID it reaches, busy meanwhile, and a reference on the PASID).
struct RouteHold {
  uint32_t context = 0;
  std::shared_ptr<void> keeps;
};

class Device {
 public:
  Device(devices::DeviceSpec spec, iommu::Iommu& iommu, Executor& executor, std::chrono::microseconds dsa_idle_poll);
  const devices::DeviceSpec& spec() const { return spec_; }
  bool removed() const { return removed_.load(std::memory_order_acquire); }
  bool shared() const { return spec_.type == devices::DeviceType::Dsa; }  // SIOV
  // The contexts that bound it (one at most unless shared()), in binding order.
  std::vector<uint32_t> bound_by() const;
  uint32_t owner() const;  // the first of bound_by(), 0: free
  // Which context made the route at `pasid` (iommu::kRidPasid: the RID's), 0: none.
  // Changed with the route, under attach_mutex().
  uint32_t route_owner(uint32_t pasid) const;
  // The route's hold replaces the one before, which is returned (its owner decides when
  // to let go of it: after the IOMMU has forgotten the old route).
  std::optional<RouteHold> set_route_hold(uint32_t pasid, RouteHold hold);
  std::optional<RouteHold> take_route_hold(uint32_t pasid);
  // The work queues of a dsa device; null for others.
  devices::dsa::Engine* engine() { return engine_.get(); }
  // Where its requests go; changed by its owner's ATTACH/DETACH under attach_mutex().
  iommu::PasidTable& pasid_table() { return pasid_table_; }
  std::mutex& attach_mutex() { return attach_mutex_; }
  // The ATS device-TLB (translations the device caches itself), or null without ATS.
  iommu::Iotlb* device_tlb() { return device_tlb_.get(); }

 private:
  friend class DeviceRegistry;
  const devices::DeviceSpec spec_;
  mutable std::mutex bindings_mutex_;
  std::vector<uint32_t> bound_by_;
  std::atomic<bool> removed_{false};
  std::map<uint32_t, RouteHold> route_holds_;  // by pasid, under attach_mutex_
  iommu::PasidTable pasid_table_;
  std::mutex attach_mutex_;
  std::unique_ptr<iommu::Iotlb> device_tlb_;
  iommu::Iommu::DeviceTlbRegistration device_tlb_registration_;
  std::unique_ptr<devices::dsa::Engine> engine_;  // last: its queues use the rest
};

class DeviceRegistry {
 public:
  DeviceRegistry(iommu::Iommu& iommu, Executor& executor, std::chrono::microseconds dsa_idle_poll)
      : iommu_(iommu), executor_(executor), dsa_idle_poll_(dsa_idle_poll) {}
  // EEXIST for a name or PCI address already present; EINVAL for a spec outside the
  // bounds of device_spec.h, ENOSPC when kMaxDevices are listed.
  Result<std::shared_ptr<Device>> add(devices::DeviceSpec spec);
  // Takes the device out of the registry; returns it (its owner() says who still
  // holds it). ENOENT if unknown.
  Result<std::shared_ptr<Device>> remove(std::string_view name_or_pci);
  // Takes this very device out, if it is still listed (its name may be another's now).
  void remove(const Device& device);
  // ENOENT if no such device; EBUSY if this file has bound it, or another file has
  // and it is not shared.
  Result<std::shared_ptr<Device>> bind(std::string_view name_or_pci, uint32_t context);
  void unbind(Device& device, uint32_t context);
  std::vector<std::shared_ptr<Device>> list() const;

 private:
  std::shared_ptr<Device> find_locked(std::string_view name_or_pci) const;
  iommu::Iommu& iommu_;
  Executor& executor_;
  const std::chrono::microseconds dsa_idle_poll_;
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<Device>> devices_;
};

}  // namespace ioasid::engine

// SPDX-License-Identifier: MIT
#include "engine/device_registry.h"

#include <algorithm>

namespace ioasid::engine {

// An ATS device caches far fewer translations than the IOMMU.
constexpr size_t kDeviceTlbEntries = 256;

Device::Device(devices::DeviceSpec spec, iommu::Iommu& iommu, Executor& executor,
               std::chrono::microseconds dsa_idle_poll)
    : spec_(std::move(spec)), pasid_table_(iommu.pasid_cache()) {
  if (spec_.ats) {
    device_tlb_ = std::make_unique<iommu::Iotlb>(kDeviceTlbEntries);
    device_tlb_registration_ = iommu.register_device_tlb(*device_tlb_);
  }
  if (spec_.type == devices::DeviceType::Dsa)
    engine_ = std::make_unique<devices::dsa::Engine>(spec_.name, iommu, pasid_table_, device_tlb_.get(),
                                                     spec_.num_wqs, executor, dsa_idle_poll);
}

std::vector<uint32_t> Device::bound_by() const {
  std::lock_guard lock(bindings_mutex_);
  return bound_by_;
}

uint32_t Device::owner() const {
  std::lock_guard lock(bindings_mutex_);
  return bound_by_.empty() ? 0 : bound_by_.front();
}

uint32_t Device::route_owner(uint32_t pasid) const {
  auto it = route_holds_.find(pasid);
  return it == route_holds_.end() ? 0 : it->second.context;
}

std::optional<RouteHold> Device::set_route_hold(uint32_t pasid, RouteHold hold) {
  auto old = take_route_hold(pasid);
  route_holds_.emplace(pasid, std::move(hold));
  return old;
}

std::optional<RouteHold> Device::take_route_hold(uint32_t pasid) {
  auto it = route_holds_.find(pasid);
  if (it == route_holds_.end()) return std::nullopt;
  std::optional<RouteHold> hold(std::move(it->second));
  route_holds_.erase(it);
  return hold;
}

std::shared_ptr<Device> DeviceRegistry::find_locked(std::string_view name_or_pci) const {
  auto rid = devices::parse_pci_address(name_or_pci);
  auto it = std::find_if(devices_.begin(), devices_.end(), [&](const auto& device) {
    return device->spec().name == name_or_pci || (rid && device->spec().rid == *rid);
  });
  return it == devices_.end() ? nullptr : *it;
}

Result<std::shared_ptr<Device>> DeviceRegistry::add(devices::DeviceSpec spec) {
  IOASID_TRY(devices::check_device_spec(spec));  // what it costs is bounded, whoever made the spec
  std::lock_guard lock(mutex_);
  // Each device has its tables, queues and device-TLB, and every invalidation visits
  // every device-TLB: the count is bounded like the rest of a spec.
  if (devices_.size() >= devices::kMaxDevices)
    return fail(ENOSPC, "{} devices are listed, the most there may be ({}): remove one first", devices_.size(),
                devices::kMaxDevices);
  for (const auto& device : devices_) {
    if (device->spec().name == spec.name) return fail(EEXIST, "a device named {} exists", spec.name);
    if (device->spec().rid == spec.rid)
      return fail(EEXIST, "{} already has PCI address {}", device->spec().name, devices::pci_address(spec.rid));
  }
  devices_.push_back(std::make_shared<Device>(std::move(spec), iommu_, executor_, dsa_idle_poll_));
  return devices_.back();
}

Result<std::shared_ptr<Device>> DeviceRegistry::remove(std::string_view name_or_pci) {
  std::lock_guard lock(mutex_);
  auto device = find_locked(name_or_pci);
  if (!device) return fail(ENOENT, "no device {}", name_or_pci);
  device->removed_.store(true, std::memory_order_release);
  std::erase(devices_, device);
  return device;
}

void DeviceRegistry::remove(const Device& device) {
  std::lock_guard lock(mutex_);
  std::erase_if(devices_, [&](const std::shared_ptr<Device>& listed) {
    if (listed.get() != &device) return false;
    listed->removed_.store(true, std::memory_order_release);
    return true;
  });
}

Result<std::shared_ptr<Device>> DeviceRegistry::bind(std::string_view name_or_pci, uint32_t context) {
  std::lock_guard lock(mutex_);
  auto device = find_locked(name_or_pci);
  if (!device) return fail(ENOENT, "no device '{}'", name_or_pci);
  std::lock_guard binding(device->bindings_mutex_);
  auto& holders = device->bound_by_;
  if (std::find(holders.begin(), holders.end(), context) != holders.end())
    return fail(EBUSY, "{} is bound by this file already", device->spec().name);
  if (!holders.empty() && !device->shared())
    return fail(EBUSY, "{} is bound by ctx {}", device->spec().name, holders.front());
  holders.push_back(context);
  return device;
}

void DeviceRegistry::unbind(Device& device, uint32_t context) {
  std::lock_guard binding(device.bindings_mutex_);
  std::erase(device.bound_by_, context);
}

std::vector<std::shared_ptr<Device>> DeviceRegistry::list() const {
  std::lock_guard lock(mutex_);
  return devices_;
}

}  // namespace ioasid::engine

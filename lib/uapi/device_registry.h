// The emulated devices the daemon offers, and who has bound each. Binding is
// exclusive; a device the admin removes leaves the registry at once, and its owner's
// binding stays behind answering ENODEV until it is unbound.
#pragma once

#include "devices/device_spec.h"
#include "iommu/iommu.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

namespace ioasid::uapi {

class Device {
 public:
  Device(devices::DeviceSpec spec, iommu::Iommu& iommu);
  const devices::DeviceSpec& spec() const { return spec_; }
  bool removed() const { return removed_.load(std::memory_order_acquire); }
  uint32_t owner() const { return owner_.load(std::memory_order_acquire); }  // context id, 0: free
  // Where its requests go; changed by its owner's ATTACH/DETACH under attach_mutex().
  iommu::PasidTable& pasid_table() { return pasid_table_; }
  std::mutex& attach_mutex() { return attach_mutex_; }
  // The ATS device-TLB (translations the device caches itself), or null without ATS.
  iommu::Iotlb* device_tlb() { return device_tlb_.get(); }

 private:
  friend class DeviceRegistry;
  const devices::DeviceSpec spec_;
  std::atomic<uint32_t> owner_{0};
  std::atomic<bool> removed_{false};
  iommu::PasidTable pasid_table_;
  std::mutex attach_mutex_;
  std::unique_ptr<iommu::Iotlb> device_tlb_;
  iommu::Iommu::DeviceTlbRegistration device_tlb_registration_;
};

class DeviceRegistry {
 public:
  explicit DeviceRegistry(iommu::Iommu& iommu) : iommu_(iommu) {}
  // EEXIST for a name or PCI address already present.
  Result<std::shared_ptr<Device>> add(devices::DeviceSpec spec);
  // Takes the device out of the registry; returns it (its owner() says who still
  // holds it). ENOENT if unknown.
  Result<std::shared_ptr<Device>> remove(std::string_view name_or_pci);
  // ENOENT if no such device, EBUSY if another file (or this one) has bound it.
  Result<std::shared_ptr<Device>> bind(std::string_view name_or_pci, uint32_t context);
  void unbind(Device& device, uint32_t context);
  std::vector<std::shared_ptr<Device>> list() const;

 private:
  std::shared_ptr<Device> find_locked(std::string_view name_or_pci) const;
  iommu::Iommu& iommu_;
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<Device>> devices_;
};

}  // namespace ioasid::uapi

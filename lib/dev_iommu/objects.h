// SPDX-License-Identifier: MIT
// The object kinds of /dev/iommu: an IOAS (areas of user memory), a paging HWPT (an
// engine second-level table the IOAS keeps filled), a device bound to the file, and
// the selftest's mock device that binds one.
#pragma once

#include "dev_iommu/fault.h"
#include "dev_iommu/iova_areas.h"
#include "dev_iommu/object.h"
#include "engine/device_registry.h"
#include "iommu/io_pagetable.h"
#include "iommufd_test/iommufd_test.h"

#include <array>
#include <cstdint>
#include <memory>

namespace ioasid::dev_iommu {

struct Ioas final : Object {
  Ioas(UserQuota& maps_quota, uid_t uid) : Object(ObjectType::Ioas), areas(maps_quota, uid) {}
  IovaAreas areas;
};

// What a paging domain offers: the mock driver's, as the selftest defines it.
struct DomainGeometry {
  uint64_t page_size;      // smallest IO page
  uint64_t largest_iopte;  // the mock's largest IOPTE: 2 KiB, or 1 MiB on HUGE_IOVA devices
  IovaRange aperture;
  bool dirty_tracking;     // can track dirty pages
};

struct HwptPaging final : Object {
  HwptPaging(Use<Ioas> owner, std::unique_ptr<iommu::IoPageTable> engine_table, DomainGeometry domain_geometry,
             bool automatic, bool parent_of_nested, bool enforce_dirty)
      : Object(ObjectType::HwptPaging), ioas(std::move(owner)), table(std::move(engine_table)),
        geometry(domain_geometry), auto_domain(automatic), nest_parent(parent_of_nested),
        enforce_dirty_tracking(enforce_dirty) {}
  ~HwptPaging() override { ioas->areas.remove_domain(this); }

  DomainSlot slot() const { return {table.get(), geometry.page_size, geometry.aperture}; }

  Use<Ioas> ioas;
  std::unique_ptr<iommu::IoPageTable> table;
  const DomainGeometry geometry;
  const bool auto_domain;             // made by an attach to an IOAS, gone with its last device
  const bool nest_parent;
  const bool enforce_dirty_tracking;  // only devices that can track dirty pages attach
};

// A nested HWPT of the mock driver: a user-managed stage-1 over a nest-parent paging
// HWPT, whose translation is the parent's (the mock's stage 1 maps nothing of its
// own), with the mock's four IOTLB registers that HWPT_INVALIDATE clears and
// MD_CHECK_IOTLB reads, and the fault queue its page requests go to.
struct HwptNested final : Object {
  static constexpr size_t kIotlbEntries = MOCK_NESTED_DOMAIN_IOTLB_NUM;

  HwptNested(Use<HwptPaging> nest_parent, uint32_t iotlb_value, Use<FaultQueue> fault_queue)
      : Object(ObjectType::HwptNested), parent(std::move(nest_parent)), fault(std::move(fault_queue)) {
    iotlb.fill(iotlb_value);
  }

  Use<HwptPaging> parent;
  std::array<uint32_t, kIotlbEntries> iotlb;
  Use<FaultQueue> fault;
};

// A device bound to the file (iommufd_device): an engine device, routed by its RID to
// the domain it is attached to.
struct BoundDevice final : Object {
  BoundDevice(std::shared_ptr<engine::Device> engine_device, engine::DeviceRegistry& registry,
              iommu::Iommu& iommu, uint32_t context, uint32_t mock_flags)
      : Object(ObjectType::Device), device(std::move(engine_device)), flags(mock_flags), registry_(registry),
        iommu_(iommu), context_(context) {}
  // Unrouted, unbound and out of the registry.
  ~BoundDevice() override;

  bool can_track_dirty() const;
  uint32_t pasid_width() const;
  // Routes the RID to the domain (a nested HWPT: to its parent's table), replacing any
  // route; returns the paging use it replaced (a nested one it replaced just goes).
  Use<HwptPaging> route_to(Use<HwptPaging> hwpt);
  Use<HwptPaging> route_to(Use<HwptNested> hwpt);
  Use<HwptPaging> unroute();
  HwptPaging* attached() const { return attached_.get(); }
  HwptNested* attached_nested() const { return attached_nested_.get(); }

  const std::shared_ptr<engine::Device> device;
  const uint32_t flags;  // MOCK_FLAGS_DEVICE_*
  UserQuota::Charge mock_charge;  // one of the user's mock devices

 private:
  engine::DeviceRegistry& registry_;
  iommu::Iommu& iommu_;
  // The route to `table`, under the device's attach lock.
  void route(const HwptPaging& table_owner, uint32_t hwpt_id);
  // Leaves the nested HWPT: its fault queue forgets this device's groups.
  void leave_nested();

  const uint32_t context_;
  Use<HwptPaging> attached_;
  Use<HwptNested> attached_nested_;
};

// The selftest's mock device object: holds the bound device it made.
struct MockDevice final : Object {
  explicit MockDevice(Use<BoundDevice> bound) : Object(ObjectType::MockDevice), idev(std::move(bound)) {}
  Use<BoundDevice> idev;
};

}  // namespace ioasid::dev_iommu

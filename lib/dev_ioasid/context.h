// SPDX-License-Identifier: MIT
// One open file of /dev/ioasid: its PASID set, its objects (bound devices, IOASIDs),
// its fault queue, its counters.
#pragma once

#include "iommu/ats.h"
#include "iommu/fault_queue.h"
#include "iommu/iommu.h"
#include "iommu/page_requests.h"
#include "pasid/allocator.h"
#include "engine/device_registry.h"
#include "dev_ioasid/ioas.h"
#include "dev_ioasid/object_table.h"

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <cstdint>

namespace ioasid::dev_ioasid {

// The engine's kinds, as this personality names them.
using engine::Device;
using engine::DeviceRegistry;
using engine::RouteHold;

struct ClientIdentity {
  pid_t pid = 0;  // process (thread-group) id of the opener
  uid_t uid = 0;
  gid_t gid = 0;
};

class Context : public std::enable_shared_from_this<Context> {
 public:
  Context(uint32_t id, ClientIdentity client, SetId pasid_set, size_t fault_queue_depth,
          uint64_t opened_unix_ns)
      : id_(id), client_(client), pasid_set_(pasid_set), faults_(fault_queue_depth),
        opened_unix_ns_(opened_unix_ns) {}

  uint32_t id() const { return id_; }
  const ClientIdentity& client() const { return client_; }
  SetId pasid_set() const { return pasid_set_; }
  iommu::FaultQueue& faults() { return faults_; }
  iommu::PageRequests& page_requests() { return page_requests_; }
  ObjectTable<Device, Ioas>& objects() { return objects_; }
  // Serializes FREE of an IOASID (check users, remove) against ATTACH to it (find,
  // count a user, route): taken before any device's attach lock.
  std::mutex& routes_mutex() { return routes_mutex_; }
  uint64_t opened_unix_ns() const { return opened_unix_ns_; }
  uint64_t ioctls() const { return ioctls_.load(std::memory_order_relaxed); }
  bool released() const { return released_.load(std::memory_order_acquire); }
  // The ATC records of its ATS devices; null until its first ATS_TRANSLATE
  // (Service::ats_holder makes it), so files without ATS cost the flushes nothing.
  std::shared_ptr<iommu::AtsHolder> ats() const {
    std::lock_guard lock(ats_mutex_);
    return ats_;
  }

 private:
  friend class Service;
  const uint32_t id_;
  const ClientIdentity client_;
  const SetId pasid_set_;
  iommu::FaultQueue faults_;
  iommu::PageRequests page_requests_;
  ObjectTable<Device, Ioas> objects_;
  std::mutex routes_mutex_;
  const uint64_t opened_unix_ns_;
  std::atomic<uint64_t> ioctls_{0};
  std::atomic<bool> released_{false};
  mutable std::mutex ats_mutex_;
  std::shared_ptr<iommu::AtsHolder> ats_;  // after faults_: its requests go there
  iommu::Iommu::DeviceTlbRegistration ats_registration_;  // ends before ats_ goes
};

}  // namespace ioasid::dev_ioasid

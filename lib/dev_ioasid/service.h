// SPDX-License-Identifier: MIT
// /dev/ioasid over the engine: its open files (Contexts), the ioctl dispatcher, fault
// reads and the admin's view of them. Called with plain bytes and a ClientMemory, so
// tests and fuzzers drive it in-process. The engine (PASIDs, IOMMU, devices, per-user
// limits, events) is shared with /dev/iommu when the daemon gives one; a Service made
// from a config alone has an engine of its own.
#pragma once

#include "base/executor.h"
#include "base/result.h"
#include "base/user_quota.h"
#include "pasid/allocator.h"
#include "iommu/iommu.h"
#include "memory/client_memory.h"
#include "dev_ioasid/context.h"
#include "engine/engine.h"

#include <sys/types.h>

#include <cstddef>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace ioasid::dev_ioasid {

using engine::Event;
using engine::EventSink;
using engine::EventSubscription;
using engine::EventType;

struct ServiceConfig {
  uint32_t pasid_bits = kDefaultPasidBits;
  uint32_t default_pasid_quota = 1000;
  uint32_t addr_width = 48;
  size_t fault_queue_depth = 256;
  std::vector<devices::DeviceSpec> devices = devices::default_devices();
  uint64_t pin_limit_pages = PinAccounting::kDefaultLimitPages;  // per user; 0 = unlimited
  // Open files per uid other than root (0 = unlimited): each file carves its PASID
  // quota out of the system's, so without it one user could take every PASID.
  uint32_t max_files_per_user = 64;
  // MAP_DMA/MAP_FILE areas and IOASIDs held per uid other than root (0 = unlimited):
  // the daemon's fds, memory maps and page-table pages grow with them
  // (docs/SECURITY.md, "What bounds the daemon").
  uint32_t max_maps_per_user = 4096;
  uint32_t max_ioasids_per_user = 1024;
  // Calls per uid other than root sleeping at once for a page response or an ATS
  // acknowledgement (0 = unlimited); past it a call does not wait (docs/SECURITY.md).
  uint32_t max_waits_per_user = 8;
  // How long a DMA waits for the PAGE_RESP to its page request before it fails.
  std::chrono::milliseconds page_response_timeout{10000};
  // How long an ioctl waits for a device model to acknowledge an ATS invalidation it
  // caused before the device is failed (PCIe's completion timeout is of that order).
  std::chrono::milliseconds ats_timeout{1000};
  // Where devices run their work (the daemon's Asio pool); null: two threads of the
  // service's own. Must outlive the Service.
  Executor* executor = nullptr;
  // How long a dsa WQ's runner waits for the next descriptor before it lets its thread go.
  std::chrono::microseconds dsa_idle_poll = devices::dsa::kDefaultIdlePoll;

  // The engine's part of it.
  engine::EngineConfig engine() const;
};

struct ServiceStatus {
  uint32_t api_version;
  uint32_t features;  // bit mask of IOASID_FEAT_* indexes served
  uint32_t pasid_bits;
  uint32_t pasid_capacity;
  uint32_t pasids_allocated;
  uint32_t pasid_quota_available;  // capacity not carved into sets
  uint32_t default_pasid_quota;
  uint32_t contexts;
  uint64_t ioctls;  // served since start, failed ones included
  uint64_t ioctl_errors;
};

struct ContextInfo {
  uint32_t id;
  ClientIdentity client;
  uint32_t pasid_quota;
  uint32_t pasids_allocated;
  uint64_t ioctls;
  uint64_t opened_unix_ns;
};

struct PasidOwnerInfo {
  Pasid pasid;
  uint32_t context;  // 0 if the owning set is not a Context's
  std::optional<uint32_t> gpasid;
  PasidState state;
  uint32_t refcount;
};

// Service::dump_ioas.
struct IoasRoute {
  std::string device;
  uint32_t dev_id;  // the owner's id for the device
  uint32_t pasid;   // iommu::kRidPasid (0): the device's RID
};

// A nested IOASID: its parent and what BIND_PGTBL bound (flags as given).
struct NestedDump {
  uint32_t parent;
  std::optional<FirstLevelBinding> binding;
};

struct IoasDump {
  uint32_t context;
  uint32_t ioasid;
  uint16_t domain;  // the IOTLB tag
  int levels;
  Hpa root;
  size_t table_pages;
  bool dirty_tracking;
  std::vector<iommu::AreaInfo> areas;
  std::vector<IoasRoute> routes;
  std::vector<std::string> lines;  // pgtable::dump_second_level, runs coalesced
  std::optional<NestedDump> nested;  // nested: no table of its own (levels/root: the parent's)
};

class Service {
 public:
  explicit Service(ServiceConfig config = {});
  // Over an engine another personality shares; it must outlive the Service.
  Service(engine::Engine& engine, ServiceConfig config);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  const ServiceConfig& config() const { return config_; }

  // One open of /dev/ioasid. ENOSPC when the default quota cannot be carved.
  Result<std::shared_ptr<Context>> open(const ClientIdentity& client);
  // Last close: frees everything the context owns. Idempotent.
  void release(Context& context);
  // Releases every live context (daemon shutdown).
  void release_all();

  // One ioctl. `buf` holds _IOC_SIZE(cmd) bytes copied from the caller and is
  // overwritten with the reply; `arg` is the integer argument of _IO commands.
  // Returns the ioctl's non-negative return value or the errno with its reason.
  // `interrupted`, when given, is set if the caller is interrupted meanwhile (then
  // wake context.page_requests() so a waiting DMA sees it).
  Result<long> ioctl(Context& context, uint32_t cmd, uint64_t arg, std::span<std::byte> buf,
                     ClientMemory& memory, const std::atomic<bool>* interrupted = nullptr);
  // Whole fault records into `out`. EINVAL if out's size is not a multiple of
  // the record size (or 0), EAGAIN if none is queued (the caller decides to block).
  Result<size_t> read_faults(Context& context, std::span<std::byte> out);

  // Admin view.
  ServiceStatus status() const;
  std::vector<ContextInfo> contexts() const;
  std::vector<PasidOwnerInfo> pasids() const;
  Result<void> set_quota(uint32_t context_id, uint32_t quota);
  DeviceRegistry& devices() const { return engine_.devices(); }
  Result<std::shared_ptr<Device>> add_device(devices::DeviceSpec spec);
  // A bound device stays with its owner, answering ENODEV; the owner gets an event.
  Result<void> remove_device(std::string_view name_or_pci);
  // The context's ATS holder, made and registered with the IOMMU on first use.
  std::shared_ptr<iommu::AtsHolder> ats_holder(Context& context);
  // DEVICE_UNBIND and release: detaches everything, gives the device back, announces it.
  void unbind_device(Context& context, uint32_t dev_id, Device& device);
  // Removes the device's route for pasid (iommu::kRidPasid: its RID), if any: the
  // IOTLB forgets it, the IOASID is one user lighter, a PASID reference is dropped.
  // Announced as device_detach with the owner's dev_id.
  void detach(Context& context, uint32_t dev_id, Device& device, uint32_t pasid);
  // The same with device.attach_mutex() held by the caller.
  void detach_locked(Context& context, uint32_t dev_id, Device& device, uint32_t pasid);

  // Every PASID, context and fault event; the sink runs on the thread that caused
  // the event, after engine locks are dropped, so it must be quick.
  EventSubscription subscribe(EventSink sink) { return engine_.subscribe(std::move(sink)); }

  // Run by a thread about to wait (a DMA waiting for a page response), so the daemon
  // can make sure another thread serves the node meanwhile (the PAGE_RESP itself).
  void set_blocking_wait_hook(std::function<void()> hook) { blocking_wait_hook_ = std::move(hook); }
  void before_blocking_wait() {
    if (blocking_wait_hook_) blocking_wait_hook_();
  }

  engine::Engine& engine() const { return engine_; }
  Allocator& allocator() const { return engine_.allocator(); }
  iommu::Iommu& iommu() const { return engine_.iommu(); }
  // What each user holds against --max-maps-per-user and --max-ioasids-per-user.
  UserQuota& maps_quota() const { return engine_.maps_quota(); }
  UserQuota& ioasids_quota() const { return engine_.ioasids_quota(); }
  Executor& executor() const { return engine_.executor(); }
  void publish(Event event) { engine_.publish(std::move(event)); }
  void publish_bounded(uid_t uid, Event event) { engine_.publish_bounded(uid, std::move(event)); }

  // Admin view of one IOASID of a context: its kernel-managed table (areas, a readable
  // dump of the second-level table) and the routes that reach it. ENOENT for an
  // unknown context or IOASID. A snapshot: MAP/UNMAP running meanwhile may or may not
  // show. Only the areas and leaves that overlap [begin, end) are listed.
  Result<IoasDump> dump_ioas(uint32_t context_id, uint32_t ioasid, uint64_t begin = 0,
                             uint64_t end = std::numeric_limits<uint64_t>::max());

 private:
  std::shared_ptr<Context> find_context(uint32_t id) const;
  void subscribe_pasid_events();

  ServiceConfig config_;
  std::unique_ptr<engine::Engine> own_engine_;  // when made from a config alone
  engine::Engine& engine_;
  Subscription pasid_events_;
  struct Registry;
  std::unique_ptr<Registry> registry_;
  std::function<void()> blocking_wait_hook_;
};

// Name of an ioctl command for logs ("IOASID_PASID_REQUEST"), or "unknown".
const char* ioctl_name(uint32_t cmd);

}  // namespace ioasid::dev_ioasid

// SPDX-License-Identifier: MIT
// Events the daemon publishes (netlink multicast and the admin event stream).
// The wire form is one JSON object per event; docs/EVENTS.md documents it.
#pragma once

#include "base/subscription.h"

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace ioasid::engine {

enum class EventType : uint8_t {
  ContextOpen,
  ContextClose,
  PasidAlloc,
  PasidFree,
  PasidBind,
  PasidUnbind,
  QuotaChange,
  DeviceBind,
  DeviceUnbind,
  DeviceRemoved,  // by the admin; `context` is the owner that still holds it, if any
  DeviceAttach,   // a route (RID or PASID) to an IOASID was set
  DeviceDetach,   // ... and removed
  Fault,          // an unrecoverable DMA fault queued to the owner
  PageRequest,    // a page request queued to the owner (PRI)
  PageResponse,   // the owner's answer to one
  IoasidAlloc,    // IOASID_ALLOC (`parent` for a nested one)
  IoasidFree,     // IOASID_FREE
  Map,            // MAP_DMA / MAP_FILE: `iova`, `length`; bounded per user
  Unmap,          // UNMAP_DMA: `iova`, `length` unmapped; bounded per user
  DsaFault,       // a DSA descriptor ended with a page-fault status
};

struct Event {
  EventType type = EventType::ContextOpen;
  uint64_t seq = 0;           // assigned by the bus, strictly increasing
  uint64_t time_unix_ns = 0;  // assigned by the bus
  uint32_t context = 0;       // 0 when no context is involved
  pid_t pid = 0;              // the context's client process
  uint32_t pasid = 0;         // 0 when no PASID is involved
  std::optional<uint32_t> gpasid = std::nullopt;
  std::optional<uint32_t> quota = std::nullopt;  // ContextOpen and QuotaChange
  std::string device = {};                       // Device* events: its name
  uint32_t dev_id = 0;                           // DeviceBind/Unbind/Attach/Detach/Fault: the owner's id for it
  uint32_t ioasid = 0;                           // Attach/Detach/Fault
  std::optional<uint64_t> address = std::nullopt;  // Fault: the IOVA
  std::optional<uint32_t> reason = std::nullopt;   // Fault, PageRequest: IOASID_FAULT_REASON_*
  std::optional<uint32_t> grpid = std::nullopt;    // PageRequest, PageResponse: the group index
  std::optional<uint32_t> code = std::nullopt;     // PageResponse: IOASID_PAGE_RESP_*
  std::optional<uint32_t> parent = std::nullopt;   // IoasidAlloc of a nested IOASID
  std::optional<uint64_t> iova = std::nullopt;     // Map, Unmap
  std::optional<uint64_t> length = std::nullopt;   // Map, Unmap
  std::optional<uint32_t> status = std::nullopt;   // DsaFault: the completion status
  std::optional<uint32_t> wq = std::nullopt;       // DsaFault: the work queue
  // Map/Unmap/IoasidAlloc/IoasidFree: this user's events of those types not sent
  // since the last one that was (the per-user bound, PerUserEventBudget).
  std::optional<uint64_t> suppressed = std::nullopt;
};

const char* to_string(EventType type);  // "pasid_alloc", "context_open", ... (event_kinds.h)
std::string to_json(const Event& event);  // one line, no trailing newline

using EventSink = std::function<void(const Event&)>;

class EventBus;

// Keeps a sink subscribed; unsubscribes on destruction.
using EventSubscription = ScopedSubscription<EventBus>;

class EventBus {
 public:
  EventSubscription subscribe(EventSink sink);
  void publish(Event event);

 private:
  friend EventSubscription;
  void unsubscribe(uint64_t id);
  struct Entry {
    uint64_t id;
    std::shared_ptr<EventSink> sink;
  };
  std::mutex mutex_;
  std::vector<Entry> sinks_;
  uint64_t next_id_ = 1;
  uint64_t next_seq_ = 1;
};

}  // namespace ioasid::engine

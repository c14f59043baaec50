// SPDX-License-Identifier: MIT
#include "engine/events.h"

#include "engine/event_kinds.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>

namespace ioasid::engine {

// The names live in event_kinds.h, which clients share; it must list every type.
static_assert(kEventKinds.size() == static_cast<size_t>(EventType::DsaFault) + 1,
              "event_kinds.h must name every EventType, in order");

const char* to_string(EventType type) {
  const auto index = static_cast<size_t>(type);
  // The names are string literals, so data() is NUL-terminated.
  return index < kEventKinds.size() ? kEventKinds[index].name.data() : "unknown";
}

std::string to_json(const Event& event) {
  nlohmann::json json{{"event", to_string(event.type)},
                      {"seq", event.seq},
                      {"time_ns", event.time_unix_ns}};
  if (event.context != 0) json["context"] = event.context;
  if (event.pid != 0) json["pid"] = event.pid;
  if (event.pasid != 0) json["pasid"] = event.pasid;
  if (event.gpasid) json["gpasid"] = *event.gpasid;
  if (event.quota) json["quota"] = *event.quota;
  if (!event.device.empty()) json["device"] = event.device;
  if (event.dev_id != 0) json["dev_id"] = event.dev_id;
  if (event.ioasid != 0) json["ioasid"] = event.ioasid;
  if (event.address) json["address"] = *event.address;
  if (event.reason) json["reason"] = *event.reason;
  if (event.grpid) json["grpid"] = *event.grpid;
  if (event.code) json["code"] = *event.code;
  if (event.parent) json["parent"] = *event.parent;
  if (event.iova) json["iova"] = *event.iova;
  if (event.length) json["length"] = *event.length;
  if (event.status) json["status"] = *event.status;
  if (event.wq) json["wq"] = *event.wq;
  if (event.suppressed) json["suppressed"] = *event.suppressed;
  return json.dump();
}

EventSubscription EventBus::subscribe(EventSink sink) {
  std::lock_guard lock(mutex_);
  const uint64_t id = next_id_++;
  sinks_.push_back({id, std::make_shared<EventSink>(std::move(sink))});
  return EventSubscription(this, id);
}

void EventBus::unsubscribe(uint64_t id) {
  std::lock_guard lock(mutex_);
  std::erase_if(sinks_, [id](const Entry& entry) { return entry.id == id; });
}

void EventBus::publish(Event event) {
  // Sinks run outside the lock (a sink may unsubscribe); the snapshot keeps them alive.
  std::vector<std::shared_ptr<EventSink>> sinks;
  {
    std::lock_guard lock(mutex_);
    if (sinks_.empty()) return;
    event.seq = next_seq_++;
    sinks.reserve(sinks_.size());
    for (const auto& entry : sinks_) sinks.push_back(entry.sink);
  }
  event.time_unix_ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
  for (const auto& sink : sinks) (*sink)(event);
}

}  // namespace ioasid::engine

// SPDX-License-Identifier: MIT
// The name and kind of every event type, in EventType order. Header-only and free of
// the engine's types so that clients (ioasidctl monitor) filter by the daemon's own
// list instead of a copy that drifts; events.cpp checks it covers every EventType.
#pragma once

#include <array>
#include <string_view>

namespace ioasid::engine {

struct EventKind {
  std::string_view name;  // the JSON "event" value
  std::string_view kind;  // the filter word of `ioasidctl monitor KIND`
  std::string_view also;  // a second kind it belongs to, or ""
};

inline constexpr std::array kEventKinds = {
    EventKind{"context_open", "context", ""},
    EventKind{"context_close", "context", ""},
    EventKind{"pasid_alloc", "pasid", ""},
    EventKind{"pasid_free", "pasid", ""},
    EventKind{"pasid_bind", "pasid", ""},
    EventKind{"pasid_unbind", "pasid", ""},
    EventKind{"quota_change", "context", ""},
    EventKind{"device_bind", "device", ""},
    EventKind{"device_unbind", "device", ""},
    EventKind{"device_removed", "device", ""},
    EventKind{"device_attach", "device", ""},
    EventKind{"device_detach", "device", ""},
    EventKind{"fault", "fault", ""},
    EventKind{"page_request", "fault", "pri"},
    EventKind{"page_response", "fault", "pri"},
    EventKind{"ioasid_alloc", "ioas", ""},
    EventKind{"ioasid_free", "ioas", ""},
    EventKind{"map", "map", ""},
    EventKind{"unmap", "map", ""},
    EventKind{"dsa_fault", "dsa", "fault"},
};

// Events a reader never asked for by kind but must see (losses).
inline constexpr std::string_view kEventsLost = "events_lost";

}  // namespace ioasid::engine

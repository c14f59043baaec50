// SPDX-License-Identifier: MIT
// One readable line per daemon event (docs/EVENTS.md has the JSON fields).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace ioasid::examples {

// "12:04:31.518 #42 pasid_alloc    context=3 pid=1234 pasid=17 gpasid=5"
// "12:04:31.602 #43 device_bind    context=3 pid=1234 device=dma0 dev_id=1"
std::string format_event(const nlohmann::json& event);

}  // namespace ioasid::examples

// SPDX-License-Identifier: MIT
// One readable line per daemon event (docs/EVENTS.md has the JSON fields), in
// fixed-width columns so a stream of them lines up:
//   TIME         SEQ     EVENT          CTX   PID     DEVICE  DETAILS
//   12:04:31.518      42 pasid_alloc    3     1234    -       pasid=17 gpasid=5
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace ioasid::examples {

// The column titles, for a header line above format_event's lines.
std::string event_header();
std::string format_event(const nlohmann::json& event);

}  // namespace ioasid::examples

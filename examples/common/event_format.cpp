// SPDX-License-Identifier: MIT
#include "event_format.h"

#include "names.h"

#include <fmt/format.h>

#include <cstdint>
#include <ctime>
#include <set>

namespace ioasid::examples {

namespace {

std::string wall_clock(uint64_t unix_ns) {
  const time_t seconds = static_cast<time_t>(unix_ns / 1'000'000'000);
  tm local{};
  localtime_r(&seconds, &local);
  char text[16];
  std::strftime(text, sizeof text, "%H:%M:%S", &local);
  return fmt::format("{}.{:03}", text, (unix_ns / 1'000'000) % 1000);
}

std::string scalar(const nlohmann::json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

// A field's value as the reader wants it: `address` (an IOVA) in hex, `reason` (an
// IOASID_FAULT_REASON_* number) with its name, "ACCESS(7)"; anything else as is.
std::string field_text(const std::string& key, const nlohmann::json& value) {
  if (!value.is_number_unsigned()) return scalar(value);
  if (key == "address") return fmt::format("{:#x}", value.get<uint64_t>());
  if (key == "reason") {
    const uint64_t reason = value.get<uint64_t>();
    return reason <= UINT32_MAX ? fmt::format("{}({})", fault_reason_name(static_cast<uint32_t>(reason)), reason)
                                : scalar(value);
  }
  return scalar(value);
}

}  // namespace

std::string format_event(const nlohmann::json& event) {
  const std::string name = event.value("event", std::string("?"));
  if (name == "events_lost")
    return fmt::format("!! {} event(s) lost: this reader was too slow", scalar(event.value("count", nlohmann::json(0))));

  std::string line = event.contains("time_ns") && event["time_ns"].is_number_unsigned()
                         ? wall_clock(event["time_ns"].get<uint64_t>())
                         : std::string("--:--:--.---");
  if (event.contains("seq")) line += fmt::format(" #{}", scalar(event["seq"]));
  line += fmt::format(" {:<14}", name);

  // The usual fields in a fixed order, then whatever a newer daemon adds.
  static const char* const kOrdered[] = {"context", "pid",   "device",  "dev_id", "pasid",
                                         "gpasid",  "ioasid", "address", "reason", "quota"};
  static const std::set<std::string> kShown = {"event",  "seq",    "time_ns", "context", "pid",    "device",
                                               "dev_id", "pasid",  "gpasid",  "ioasid",  "address", "reason",
                                               "quota"};
  for (const char* key : kOrdered)
    if (event.contains(key)) line += fmt::format(" {}={}", key, field_text(key, event[key]));
  for (const auto& [key, value] : event.items())
    if (!kShown.contains(key)) line += fmt::format(" {}={}", key, scalar(value));
  if (name == "device_removed" && event.contains("context"))
    line += " (still bound: that context's I/O on it fails with ENODEV until it unbinds)";
  return line;
}

}  // namespace ioasid::examples

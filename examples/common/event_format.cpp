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

// A field's value as the reader wants it: addresses and lengths in hex, `reason` (an
// IOASID_FAULT_REASON_*) with its name, "ACCESS(7)", `status` (a DSA completion
// status) in hex; anything else as is.
std::string field_text(const std::string& key, const nlohmann::json& value) {
  if (!value.is_number_unsigned()) return scalar(value);
  if (key == "address" || key == "iova" || key == "length" || key == "status")
    return fmt::format("{:#x}", value.get<uint64_t>());
  if (key == "reason") {
    const uint64_t reason = value.get<uint64_t>();
    return reason <= UINT32_MAX ? fmt::format("{}({})", fault_reason_name(static_cast<uint32_t>(reason)), reason)
                                : scalar(value);
  }
  return scalar(value);
}

std::string column(const nlohmann::json& event, const char* key) {
  return event.contains(key) ? field_text(key, event[key]) : std::string("-");
}

// Widths: a wall-clock time; a seq up to 10^7 and a pid up to 2^22 stay aligned
// (longer values push the rest right rather than being cut); the longest event
// name; a device name as ioasidd allows (up to 31, most are 4).
constexpr const char* kColumns = "{:<12} {:>7} {:<14} {:<5} {:<7} {:<7} {}";

}  // namespace

std::string event_header() {
  return fmt::format(fmt::runtime(kColumns), "TIME", "SEQ", "EVENT", "CTX", "PID", "DEVICE", "DETAILS");
}

std::string format_event(const nlohmann::json& event) {
  const std::string name = event.value("event", std::string("?"));
  if (name == "events_lost")
    return fmt::format("!! {} event(s) lost: this reader was too slow", scalar(event.value("count", nlohmann::json(0))));

  const std::string time = event.contains("time_ns") && event["time_ns"].is_number_unsigned()
                               ? wall_clock(event["time_ns"].get<uint64_t>())
                               : std::string("--:--:--.---");
  // The usual details in a fixed order, then whatever a newer daemon adds.
  static const char* const kOrdered[] = {"dev_id", "pasid",  "gpasid", "ioasid", "parent",  "iova", "length",
                                         "address", "reason", "status", "wq",     "grpid",   "code", "quota",
                                         "suppressed"};
  static const std::set<std::string> kShown = {"event", "seq", "time_ns", "context", "pid", "device",
                                               "dev_id", "pasid", "gpasid", "ioasid", "parent", "iova",
                                               "length", "address", "reason", "status", "wq", "grpid",
                                               "code", "quota", "suppressed"};
  std::string details;
  auto add = [&details](const std::string& key, const std::string& value) {
    details += fmt::format("{}{}={}", details.empty() ? "" : " ", key, value);
  };
  for (const char* key : kOrdered)
    if (event.contains(key)) add(key, field_text(key, event[key]));
  for (const auto& [key, value] : event.items())
    if (!kShown.contains(key)) add(key, scalar(value));
  auto note = [&details](const char* text) { details += (details.empty() ? "" : " ") + std::string(text); };
  if (name == "device_removed" && event.contains("context"))
    note("(still bound: that context's I/O on it fails with ENODEV until it unbinds)");
  if (event.contains("suppressed"))
    note("(suppressed: this user's map/unmap/ioasid/dsa_fault events not sent, beyond the per-user bound)");
  std::string line = fmt::format(fmt::runtime(kColumns), time, column(event, "seq"), name,
                                 column(event, "context"), column(event, "pid"), column(event, "device"), details);
  while (!line.empty() && line.back() == ' ') line.pop_back();  // no details
  return line;
}

}  // namespace ioasid::examples

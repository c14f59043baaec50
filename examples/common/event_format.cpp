#include "event_format.h"

#include <fmt/format.h>

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
  static const char* const kOrdered[] = {"context", "pid", "device", "dev_id", "pasid", "gpasid", "quota"};
  static const std::set<std::string> kShown = {"event", "seq",    "time_ns", "context", "pid",
                                               "device", "dev_id", "pasid",  "gpasid",  "quota"};
  for (const char* key : kOrdered)
    if (event.contains(key)) line += fmt::format(" {}={}", key, scalar(event[key]));
  for (const auto& [key, value] : event.items())
    if (!kShown.contains(key)) line += fmt::format(" {}={}", key, scalar(value));
  if (name == "device_removed" && event.contains("context"))
    line += " (still bound: that context's I/O on it fails with ENODEV until it unbinds)";
  return line;
}

}  // namespace ioasid::examples

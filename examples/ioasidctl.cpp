// ioasidctl: talks to ioasidd's admin socket (docs/ADMIN.md).
//   ioasidctl [--socket P] [--json] status|contexts|pasids|set-quota CTX QUOTA|devices|
//             device-add SPEC|device-remove NAME|PCI|stats|pgtable CTX IOASID|events|help
#include "common/admin_client.h"
#include "common/cli.h"
#include "common/event_format.h"
#include "common/names.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <iostream>
#include <set>
#include <string>
#include <vector>

namespace po = boost::program_options;
using namespace ioasid::examples;
using json = nlohmann::json;

namespace {

std::string text(const json& value) {
  if (value.is_null()) return "-";
  return value.is_string() ? value.get<std::string>() : value.dump();
}

// Left-aligned columns sized to their widest cell.
void print_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) width[c] = std::max(width[c], row[c].size());
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c)
      line += c + 1 == row.size() ? row[c] : fmt::format("{:<{}}  ", row[c], width[c]);
    fmt::print("{}\n", line);
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

std::string age(uint64_t opened_unix_ns) {
  const int64_t seconds = static_cast<int64_t>(std::time(nullptr)) - static_cast<int64_t>(opened_unix_ns / 1'000'000'000);
  if (seconds < 0) return "0s";
  if (seconds < 120) return fmt::format("{}s", seconds);
  if (seconds < 7200) return fmt::format("{}m", seconds / 60);
  return fmt::format("{}h", seconds / 3600);
}

void print_status(const json& s) {
  auto get = [&](const char* key) { return s.contains(key) ? text(s[key]) : std::string("?"); };
  if (s.contains("pid"))
    fmt::print("daemon      ioasidd {}, pid {}, {} front end serving {}\n", get("version"), get("pid"),
               get("frontend"), get("node"));
  if (s.contains("netlink_group")) {
    if (s["netlink_group"] == 0)
      fmt::print("netlink     disabled\n");
    else
      fmt::print("netlink     group {}, sender port {}\n", get("netlink_group"), get("netlink_port"));
  }
  const uint32_t features = s.value("features", 0u);
  fmt::print("uAPI        version {}, features {}\n", get("api_version"), feature_list(features));
  fmt::print("PASIDs      {} allocated of {} ({} bits); {} not carved into quotas; default quota {}\n",
             get("pasids_allocated"), get("pasid_capacity"), get("pasid_bits"), get("pasid_quota_available"),
             get("default_pasid_quota"));
  fmt::print("contexts    {} open\n", get("contexts"));
  fmt::print("ioctls      {} served, {} failed\n", get("ioctls"), get("ioctl_errors"));
  fmt::print("events      {} relayed, {} dropped\n", get("events_relayed"), get("events_dropped"));
  fmt::print("admin       {} session(s), {} streaming, {} refused since start\n", get("admin_sessions"),
             get("admin_streams"), get("admin_refused"));
  static const std::set<std::string> kShown = {
      "pid", "version", "frontend", "node", "netlink_group", "netlink_port", "api_version", "features",
      "feature_names", "pasids_allocated", "pasid_capacity", "pasid_bits", "pasid_quota_available",
      "default_pasid_quota", "contexts", "ioctls", "ioctl_errors", "events_relayed", "events_dropped",
      "admin_sessions", "admin_streams", "admin_refused"};
  for (const auto& [key, value] : s.items())  // fields a newer daemon adds
    if (!kShown.contains(key)) fmt::print("{:<11} {}\n", key, text(value));
}

void print_contexts(const json& rows) {
  std::vector<std::vector<std::string>> cells;
  for (const json& c : rows)
    cells.push_back({text(c.value("id", json())), text(c.value("pid", json())), text(c.value("comm", json())),
                     text(c.value("uid", json())), text(c.value("gid", json())),
                     fmt::format("{}/{}", text(c.value("pasids_allocated", json())), text(c.value("pasid_quota", json()))),
                     text(c.value("ioctls", json())),
                     c.contains("opened_unix_ns") ? age(c["opened_unix_ns"].get<uint64_t>()) : "-"});
  if (cells.empty()) {
    fmt::print("no open contexts\n");
    return;
  }
  print_table({"CONTEXT", "PID", "COMM", "UID", "GID", "PASIDS/QUOTA", "IOCTLS", "AGE"}, cells);
}

void print_pasids(const json& rows) {
  std::vector<std::vector<std::string>> cells;
  for (const json& p : rows)
    cells.push_back({text(p.value("pasid", json())), text(p.value("context", json())), text(p.value("gpasid", json())),
                     text(p.value("state", json())), text(p.value("refcount", json()))});
  if (cells.empty()) {
    fmt::print("no PASIDs allocated\n");
    return;
  }
  print_table({"PASID", "CONTEXT", "GPASID", "STATE", "REFS"}, cells);
}

// "ctx 3 (pid 1234)", "-" when free.
std::string owner_text(const json& d) {
  const json owner = d.value("owner", json());
  if (owner.is_null()) return "-";
  const json pid = d.value("owner_pid", json());
  return pid.is_null() ? fmt::format("ctx {}", text(owner)) : fmt::format("ctx {} (pid {})", text(owner), text(pid));
}

std::string capability_text(const json& d) {
  std::string caps;
  auto add = [&](const std::string& word) { caps += (caps.empty() ? "" : " ") + word; };
  const uint32_t pasid_bits = d.value("pasid_bits", 0u);
  if (pasid_bits != 0) add(fmt::format("pasid={}", pasid_bits));
  if (d.value("pri", false)) add("pri");
  if (d.value("ats", false)) add("ats");
  const uint32_t wqs = d.value("num_wqs", 0u);
  if (wqs != 0) add(fmt::format("wqs={}", wqs));
  return caps.empty() ? "-" : caps;
}

void print_devices(const json& rows) {
  std::vector<std::vector<std::string>> cells;
  for (const json& d : rows)
    cells.push_back({text(d.value("name", json())), text(d.value("type", json())), text(d.value("pci", json())),
                     capability_text(d), owner_text(d)});
  if (cells.empty()) {
    fmt::print("no devices\n");
    return;
  }
  print_table({"DEVICE", "TYPE", "PCI", "CAPABILITIES", "OWNER"}, cells);
}

std::optional<uint32_t> parse_u32(const std::string& word) {
  uint32_t value = 0;
  auto [end, error] = std::from_chars(word.data(), word.data() + word.size(), value);
  if (error != std::errc() || end != word.data() + word.size()) return std::nullopt;
  return value;
}

void print_stats(const json& stats) {
  const json& tlb = stats.at("iotlb");
  const json& hpa = stats.at("hpa");
  const json& pinned = stats.at("pinned_pages");
  fmt::print("iotlb       {} entries: {} hits, {} misses, {} fills, {} evictions, {} invalidated\n",
             text(tlb["capacity"]), text(tlb["hits"]), text(tlb["misses"]), text(tlb["fills"]),
             text(tlb["evictions"]), text(tlb["invalidated"]));
  if (stats.contains("pasid_cache")) {  // older daemons have no such section
    const json& cache = stats["pasid_cache"];
    fmt::print("pasid-cache {} entries: {} hits, {} misses, {} invalidated\n", text(cache.at("capacity")),
               text(cache.at("hits")), text(cache.at("misses")), text(cache.at("invalidated")));
  }
  if (stats.contains("device_tlbs")) {
    if (stats["device_tlbs"].empty()) fmt::print("device-tlb  none (no device has ATS)\n");
    for (const json& d : stats["device_tlbs"])
      fmt::print("device-tlb  {}: {} entries: {} hits, {} misses, {} fills, {} evictions, {} invalidated\n",
                 text(d.at("device")), text(d.at("capacity")), text(d.at("hits")), text(d.at("misses")),
                 text(d.at("fills")), text(d.at("evictions")), text(d.at("invalidated")));
  }
  fmt::print("memory      {} segments ({} bytes pinned), {} of {} page-table pages\n", text(hpa["segments"]),
             text(hpa["segment_bytes"]), text(hpa["table_pages"]), text(hpa["table_page_limit"]));
  fmt::print("pinned      limit {} pages per uid\n", text(pinned["limit_per_uid"]));
  for (const auto& [uid, pages] : pinned.at("by_uid").items()) fmt::print("  uid {:<8} {} pages\n", uid, text(pages));
}

// "0x1000" for an unsigned number, the value as is otherwise.
std::string hex(const json& value) {
  return value.is_number_unsigned() ? fmt::format("{:#x}", value.get<uint64_t>()) : text(value);
}

void print_pgtable(const json& t) {
  fmt::print("context {}, IOASID {}: domain {}, {}-level table at hpa {}, {} table page(s), dirty tracking {}\n",
             text(t.at("context")), text(t.at("ioasid")), text(t.at("domain")), text(t.at("levels")), hex(t.at("root")),
             text(t.at("table_pages")), t.value("dirty_tracking", false) ? "on" : "off");

  std::string routes;
  for (const json& r : t.value("routes", json::array())) {
    const json pasid = r.value("pasid", json());
    routes += fmt::format("{}{} (dev_id {}) {}", routes.empty() ? "" : ", ", text(r.at("device")), text(r.at("dev_id")),
                          pasid.is_null() ? std::string("RID") : "PASID " + text(pasid));
  }
  fmt::print("attached    {}\n", routes.empty() ? "nothing" : routes);
  if (const json nested = t.value("nested", json()); nested.is_object()) {
    const json binding = nested.value("binding", json());
    if (binding.is_object()) {
      static const char* const kFlags[] = {"SRE", "EAFE", "WPE", "PCD", "PWT", "EMTE", "CD"};
      std::string flags;
      for (size_t bit = 0; bit < std::size(kFlags); ++bit)
        if (binding.value("flags", uint64_t{0}) & (1ull << bit)) flags += (flags.empty() ? "" : "|") + std::string(kFlags[bit]);
      fmt::print("nested      on IOASID {}: guest first-level table at GPA {}, {}-bit, flags {}, "
                 "pat {}, emt {}\n",
                 text(nested.at("parent")), hex(binding.at("pgtbl_addr")), text(binding.at("addr_width")),
                 flags.empty() ? "none" : flags, hex(binding.at("pat")), text(binding.at("emt")));
    } else {
      fmt::print("nested      on IOASID {}: no guest table bound (its devices fault)\n", text(nested.at("parent")));
    }
  }

  std::vector<std::vector<std::string>> cells;
  for (const json& a : t.value("areas", json::array())) {
    const std::string rights =
        std::string(a.value("readable", false) ? "R" : "-") + (a.value("writeable", false) ? "W" : "-");
    cells.push_back(
        {"  " + hex(a.at("iova")), hex(a.at("length")), hex(a.at("hpa")), rights, text(a.value("source", json()))});
  }
  if (cells.empty()) {
    fmt::print("areas       none mapped\n");
  } else {
    fmt::print("areas\n");
    print_table({"  IOVA", "LENGTH", "HPA", "RIGHTS", "SOURCE"}, cells);
  }

  const json lines = t.value("dump", json::array());
  if (lines.empty()) {
    fmt::print("leaves      none (the table maps nothing)\n");
    return;
  }
  fmt::print("leaves      (rights R W X, accessed A, dirty D; runs of alike leaves coalesced as xN)\n");
  for (const json& line : lines) fmt::print("  {}\n", text(line));
  if (t.value("truncated", false))
    fmt::print("  ... {} more line(s) not sent by the daemon\n", t.value("dump_lines", lines.size()) - lines.size());
}

int fail_with(const ioasid::Error& error) {
  std::cerr << "ioasidctl: " << error.why << "\n";
  return 1;
}

int stream_events(AdminClient& client, bool as_json) {
  if (auto started = client.start_events(); !started) return fail_with(started.error());
  if (!as_json) std::cerr << "ioasidctl: streaming events from " << client.path() << " (Ctrl-C to stop)\n";
  for (;;) {
    auto event = client.next_event();
    if (!event) return fail_with(event.error());
    if (!*event) {
      std::cerr << "ioasidctl: the daemon closed the event stream\n";
      return 0;
    }
    std::cout << (as_json ? (*event)->dump() : format_event(**event)) << std::endl;
  }
}

}  // namespace

int control(int argc, char** argv) {
  std::string socket_path = kDefaultAdminSocket;
  bool as_json = false;
  std::string command;
  std::vector<std::string> args;

  po::options_description visible(
      "Usage: ioasidctl [--socket PATH] [--json] COMMAND [ARGS]\n"
      "Administers a running ioasidd through its admin socket.\n\n"
      "Commands:\n"
      "  status                  daemon facts and engine counters\n"
      "  contexts                open files of the node (pid, quota, PASIDs, ioctls)\n"
      "  pasids                  allocated PASIDs with owner, gpasid, state, refcount\n"
      "  set-quota CTX QUOTA     set context CTX's PASID quota (not below what it holds)\n"
      "  devices                 emulated devices: type, PCI address, capabilities, owner\n"
      "  device-add SPEC         add a device, SPEC as ioasidd --device:\n"
      "                            dma|dsa,name=NAME,pci=BB:DD.F[,pasid=BITS][,pri][,ats][,wqs=N]\n"
      "  device-remove NAME|PCI  remove a device (a bound one stays with its owner, answering\n"
      "                            ENODEV until unbound)\n"
      "  stats                   IOMMU counters: IOTLB, PASID cache, device-TLBs (ATS devices), HPA\n"
      "                            segments, page-table pages, pinned pages\n"
      "  pgtable CTX IOASID      IOASID IOASID of context CTX: mapped areas, attached devices and the\n"
      "                            leaves of its second-level page table\n"
      "  events                  print daemon events as they happen (Ctrl-C to stop)\n"
      "  help                    the commands the daemon itself lists\n\n"
      "Options");
  visible.add_options()
      ("help,h", "show this help and exit")
      ("socket,s", po::value(&socket_path)->value_name("PATH")->default_value(socket_path),
       "the daemon's admin socket (ioasidd --admin-socket)")
      ("json,j", po::bool_switch(&as_json), "print the raw JSON result (events: one JSON object per line)");
  po::options_description hidden;
  hidden.add_options()
      ("command", po::value(&command))
      ("args", po::value(&args)->multitoken());
  po::positional_options_description positional;
  positional.add("command", 1).add("args", -1);
  po::variables_map vm;
  if (auto exit_code = parse_command_line(argc, argv, "ioasidctl", visible, vm, &hidden, &positional))
    return *exit_code;
  if (command.empty()) {
    std::cerr << "ioasidctl: which command? (status, contexts, pasids, set-quota, devices, device-add, "
                 "device-remove, stats, pgtable, events, help)\n";
    return 2;
  }

  const bool takes_args =
      command == "set-quota" || command == "pgtable" || command == "device-add" || command == "device-remove";
  if (!takes_args && !args.empty()) {
    std::cerr << "ioasidctl: " << command << " takes no arguments\n";
    return 2;
  }
  json request_args = json::object();
  if (command == "set-quota") {
    std::optional<uint32_t> context = args.size() == 2 ? parse_u32(args[0]) : std::nullopt;
    std::optional<uint32_t> quota = args.size() == 2 ? parse_u32(args[1]) : std::nullopt;
    if (!context || !quota) {
      std::cerr << "ioasidctl: usage: set-quota CONTEXT QUOTA (two unsigned numbers; see `ioasidctl contexts`)\n";
      return 2;
    }
    request_args = {{"context", *context}, {"quota", *quota}};
  } else if (command == "pgtable") {
    std::optional<uint32_t> context = args.size() == 2 ? parse_u32(args[0]) : std::nullopt;
    std::optional<uint32_t> ioasid = args.size() == 2 ? parse_u32(args[1]) : std::nullopt;
    if (!context || !ioasid) {
      std::cerr << "ioasidctl: usage: pgtable CONTEXT IOASID (two unsigned numbers; see `ioasidctl contexts`)\n";
      return 2;
    }
    request_args = {{"context", *context}, {"ioasid", *ioasid}};
  } else if (command == "device-add") {
    if (args.size() != 1 || args[0].empty()) {
      std::cerr << "ioasidctl: usage: device-add SPEC (e.g. dma,name=dma2,pci=00:06.0,pasid=20,pri,ats)\n";
      return 2;
    }
    request_args = {{"spec", args[0]}};
  } else if (command == "device-remove") {
    if (args.size() != 1 || args[0].empty()) {
      std::cerr << "ioasidctl: usage: device-remove NAME|PCI (see `ioasidctl devices`)\n";
      return 2;
    }
    request_args = {{"device", args[0]}};
  } else if (command != "status" && command != "contexts" && command != "pasids" && command != "devices" &&
             command != "stats" && command != "events" && command != "help") {
    std::cerr << "ioasidctl: unknown command '" << command << "' (try --help)\n";
    return 2;
  }

  auto client = AdminClient::connect(socket_path);
  if (!client) return fail_with(client.error());
  if (command == "events") return stream_events(*client, as_json);

  auto result = client->call(command, request_args);
  if (!result) return fail_with(result.error());
  if (as_json) {
    std::cout << result->dump(2) << "\n";
    return 0;
  }
  if (command == "status") {
    print_status(*result);
  } else if (command == "contexts") {
    print_contexts(*result);
  } else if (command == "pasids") {
    print_pasids(*result);
  } else if (command == "set-quota") {
    fmt::print("context {}: PASID quota set to {}\n", text((*result)["context"]), text((*result)["quota"]));
  } else if (command == "devices") {
    print_devices(*result);
  } else if (command == "stats") {
    print_stats(*result);
  } else if (command == "pgtable") {
    print_pgtable(*result);
  } else if (command == "device-add") {
    fmt::print("added {}\n", text(result->value("spec", result->value("name", json()))));
  } else if (command == "device-remove") {
    const std::string name = text(result->value("name", json()));
    if (result->value("owner", json()).is_null())
      fmt::print("removed {}\n", name);
    else
      fmt::print("removed {}; {} still holds it (its I/O fails with ENODEV until it unbinds)\n", name,
                 owner_text(*result));
  } else {  // help
    const json commands = result->value("commands", json::array());
    size_t cmd_width = 0, args_width = 0;
    for (const json& entry : commands) {
      cmd_width = std::max(cmd_width, text(entry.value("cmd", json())).size());
      args_width = std::max(args_width, text(entry.value("args", json())).size());
    }
    for (const json& entry : commands)
      fmt::print("  {:<{}}  {:<{}}  {}\n", text(entry.value("cmd", json())), cmd_width,
                 entry.value("args", "") == "" ? std::string() : text(entry["args"]), args_width,
                 text(entry.value("about", json())));
  }
  return 0;
}

int main(int argc, char** argv) {
  try {
    return control(argc, argv);
  } catch (const nlohmann::json::exception& e) {  // a daemon reply of an unexpected shape
    std::cerr << "ioasidctl: unexpected reply from the daemon: " << e.what() << "\n";
    return 1;
  }
}

// SPDX-License-Identifier: MIT
// ioasidctl: talks to ioasidd's admin socket (docs/ADMIN.md, docs/man/ioasidctl.8).
//   ioasidctl [--socket PATH] [--json] COMMAND [ARGS]
// One table (commands()) says what each command takes, prints and means; --help,
// `help COMMAND`, the usage errors and the man page check all read it.
#include "common/admin_client.h"
#include "common/cli.h"
#include "common/names.h"
#include "monitor.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <ctime>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace po = boost::program_options;
using namespace ioasid::examples;
using json = nlohmann::json;

namespace {

constexpr size_t kScreenWidth = 80;

std::string text(const json& value) {
  if (value.is_null()) return "-";
  return value.is_string() ? value.get<std::string>() : value.dump();
}

// One field of a reply row as a table cell; "-" when absent or null.
std::string cell(const json& row, const char* key) { return text(row.value(key, json())); }

// "0x1000" for an unsigned number, the value as is otherwise.
std::string hex(const json& value) {
  return value.is_number_unsigned() ? fmt::format("{:#x}", value.get<uint64_t>()) : text(value);
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

// `words` filled into lines of at most `width` columns. The text starts at column
// `column` (what the caller printed before it); later lines are indented by `indent`.
std::string wrap(std::string_view words, size_t indent, size_t column, size_t width = kScreenWidth) {
  std::string out;
  while (!words.empty()) {
    const size_t space = words.find(' ');
    const std::string_view word = words.substr(0, space);
    words = space == std::string_view::npos ? std::string_view() : words.substr(space + 1);
    if (word.empty()) continue;
    if (!out.empty() && column + 1 + word.size() > width) {
      out += "\n" + std::string(indent, ' ');
      column = indent;
    } else if (!out.empty()) {
      out += ' ';
      ++column;
    }
    out += word;
    column += word.size();
  }
  return out;
}

std::string age(uint64_t opened_unix_ns) {
  const int64_t seconds = static_cast<int64_t>(std::time(nullptr)) - static_cast<int64_t>(opened_unix_ns / 1'000'000'000);
  if (seconds < 0) return "0s";
  if (seconds < 120) return fmt::format("{}s", seconds);
  if (seconds < 7200) return fmt::format("{}m", seconds / 60);
  return fmt::format("{}h", seconds / 3600);
}

// ---------------------------------------------------------------- readable output

void print_status(const json& s) {
  auto get = [&](const char* key) { return s.contains(key) ? text(s[key]) : std::string("?"); };
  if (s.contains("pid")) {
    // "nodes": every node served (ioasid, iommu); an older daemon says only "node".
    std::string nodes = get("node");
    if (s.contains("nodes") && s["nodes"].is_array() && !s["nodes"].empty()) {
      nodes.clear();
      for (const json& node : s["nodes"]) nodes += (nodes.empty() ? "" : " and ") + text(node);
    }
    fmt::print("daemon      ioasidd {}, pid {}, {} front end serving {}\n", get("version"), get("pid"),
               get("frontend"), nodes);
  }
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
      "pid", "version", "frontend", "node", "nodes", "netlink_group", "netlink_port", "api_version", "features",
      "feature_names", "pasids_allocated", "pasid_capacity", "pasid_bits", "pasid_quota_available",
      "default_pasid_quota", "contexts", "ioctls", "ioctl_errors", "events_relayed", "events_dropped",
      "admin_sessions", "admin_streams", "admin_refused"};
  for (const auto& [key, value] : s.items())  // fields a newer daemon adds
    if (!kShown.contains(key)) fmt::print("{:<11} {}\n", key, text(value));
}

void print_contexts(const json& rows) {
  std::vector<std::vector<std::string>> cells;
  for (const json& c : rows)
    cells.push_back({cell(c, "id"), cell(c, "pid"), cell(c, "comm"), cell(c, "uid"), cell(c, "gid"),
                     fmt::format("{}/{}", cell(c, "pasids_allocated"), cell(c, "pasid_quota")), cell(c, "ioctls"),
                     c.contains("opened_unix_ns") ? age(c["opened_unix_ns"].get<uint64_t>()) : "-"});
  if (cells.empty()) {
    fmt::print("no open contexts\n");
    return;
  }
  print_table({"CONTEXT", "PID", "COMM", "UID", "GID", "PASIDS/QUOTA", "IOCTLS", "AGE"}, cells);
}

void print_iommu_files(const json& rows) {
  std::vector<std::vector<std::string>> cells;
  for (const json& f : rows)
    cells.push_back({cell(f, "file"), cell(f, "context"), cell(f, "pid"), cell(f, "comm"), cell(f, "uid"),
                     cell(f, "gid")});
  if (cells.empty()) {
    fmt::print("no open files of the iommu node\n");
    return;
  }
  print_table({"FILE", "CONTEXT", "PID", "COMM", "UID", "GID"}, cells);
}

void print_pasids(const json& rows) {
  std::vector<std::vector<std::string>> cells;
  for (const json& p : rows)
    cells.push_back({cell(p, "pasid"), cell(p, "context"), cell(p, "pid"), cell(p, "gpasid"), cell(p, "state"),
                     cell(p, "refcount")});
  if (cells.empty()) {
    fmt::print("no PASIDs allocated\n");
    return;
  }
  print_table({"PASID", "CONTEXT", "PID", "GPASID", "STATE", "REFS"}, cells);
}

// "ctx 3 (pid 1234)" for each context that bound the device, "-" when none.
std::string bound_by_text(const json& d) {
  const json owner = d.value("owner", json());
  json contexts = d.value("bound_by", json::array());
  if (!d.contains("bound_by") && !owner.is_null()) contexts.push_back(owner);  // an older daemon
  std::string out;
  for (const json& context : contexts) {
    const json pid = context == owner ? d.value("owner_pid", json()) : json();
    out += fmt::format("{}ctx {}{}", out.empty() ? "" : ", ", text(context),
                       pid.is_null() ? std::string() : fmt::format(" (pid {})", text(pid)));
  }
  return out.empty() ? "-" : out;
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

// "RID" or "PASID 5": which of a device's requests a route is for.
std::string requests_text(const json& route) {
  const json pasid = route.value("pasid", json());
  return pasid.is_null() ? std::string("RID") : "PASID " + text(pasid);
}

void print_devices(const json& rows) {
  std::vector<std::vector<std::string>> devices, routes, wqs;
  for (const json& d : rows) {
    devices.push_back({cell(d, "name"), cell(d, "type"), cell(d, "pci"), capability_text(d), bound_by_text(d)});
    for (const json& r : d.value("routes", json::array()))
      routes.push_back({"  " + cell(d, "name"), requests_text(r), cell(r, "context"), cell(r, "ioasid"),
                        cell(r, "type")});
    for (const json& w : d.value("wqs", json::array())) {
      if (!w.value("enabled", false)) continue;
      const std::string mode = w.value("mode", "") == "shared" ? "shared" : "dedicated, PASID " + cell(w, "pasid");
      wqs.push_back({"  " + cell(d, "name"), cell(w, "wq"), mode + (w.value("block_on_fault", false) ? ", bof" : ""),
                     cell(w, "owner"), fmt::format("{}/{}", text(w.at("queued")), text(w.at("size"))),
                     cell(w, "priority"), cell(w, "accepted"), cell(w, "retried"), cell(w, "completed"),
                     w.value("draining", false)           ? "draining"
                     : w.value("waiting_for_page", false) ? "waiting for a page"
                                                          : "-"});
    }
  }
  if (devices.empty()) {
    fmt::print("no devices\n");
    return;
  }
  print_table({"DEVICE", "TYPE", "PCI", "CAPABILITIES", "BOUND BY"}, devices);
  if (routes.empty()) {
    fmt::print("routes      none (no device is attached to an IOASID)\n");
  } else {
    fmt::print("routes      (where each device's requests translate)\n");
    print_table({"  DEVICE", "REQUESTS", "CONTEXT", "IOASID", "TYPE"}, routes);
  }
  if (wqs.empty()) return;
  fmt::print("work queues (enabled ones)\n");
  print_table({"  DEVICE", "WQ", "MODE", "OWNER", "QUEUED", "PRIORITY", "ACCEPTED", "RETRIED", "COMPLETED", "STATE"},
              wqs);
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

void print_pgtable(const json& t) {
  fmt::print("context {}, IOASID {}: domain {}, {}-level table at hpa {}, {} table page(s), dirty tracking {}\n",
             text(t.at("context")), text(t.at("ioasid")), text(t.at("domain")), text(t.at("levels")), hex(t.at("root")),
             text(t.at("table_pages")), t.value("dirty_tracking", false) ? "on" : "off");

  std::string routes;
  for (const json& r : t.value("routes", json::array()))
    routes += fmt::format("{}{} (dev_id {}) {}", routes.empty() ? "" : ", ", text(r.at("device")), text(r.at("dev_id")),
                          requests_text(r));
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
    cells.push_back({"  " + hex(a.at("iova")), hex(a.at("length")), hex(a.at("hpa")), rights, cell(a, "source")});
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
    fmt::print("  ... {} more line(s) not sent by the daemon: see them with --range {}-{}\n",
               t.value("dump_lines", lines.size()) - lines.size(), hex(t.value("next_iova", json())),
               hex(t.value("iova_end", json())));
}

void print_quota(const json& result) {
  fmt::print("context {}: PASID quota set to {}\n", cell(result, "context"), cell(result, "quota"));
}

void print_added(const json& device) {
  fmt::print("added {}\n", text(device.value("spec", device.value("name", json()))));
}

void print_removed(const json& device) {
  const std::string holders = bound_by_text(device);
  if (holders == "-")
    fmt::print("removed {}\n", cell(device, "name"));
  else
    fmt::print("removed {}; {} still holds it (its I/O fails with ENODEV until it unbinds)\n", cell(device, "name"),
               holders);
}

// ---------------------------------------------------------------- arguments

// Turns the words after the command into the request's fields, or says what is wrong.
using ArgumentParser = std::function<ioasid::Result<json>(const std::vector<std::string>& words)>;

ArgumentParser no_arguments() {
  return [](const std::vector<std::string>& words) -> ioasid::Result<json> {
    if (!words.empty()) return ioasid::fail(EINVAL, "takes no arguments");
    return json::object();
  };
}

// Unsigned 32-bit numbers, one per field. The usage shows each field in capitals.
ArgumentParser numbers(std::vector<std::string> fields) {
  return [fields](const std::vector<std::string>& words) -> ioasid::Result<json> {
    if (words.size() != fields.size())
      return ioasid::fail(EINVAL, "takes {} numbers, {} given", fields.size(), words.size());
    json request = json::object();
    for (size_t i = 0; i < words.size(); ++i) {
      uint32_t value = 0;
      const std::string& word = words[i];
      auto [end, error] = std::from_chars(word.data(), word.data() + word.size(), value);
      if (error != std::errc() || end != word.data() + word.size() || word.empty()) {
        std::string name = fields[i];
        std::transform(name.begin(), name.end(), name.begin(), ::toupper);
        return ioasid::fail(EINVAL, "{} must be a number in 0..4294967295, not '{}'", name, word);
      }
      request[fields[i]] = value;
    }
    return request;
  };
}

ArgumentParser one_word(std::string field) {
  return [field](const std::vector<std::string>& words) -> ioasid::Result<json> {
    if (words.size() != 1 || words[0].empty())
      return ioasid::fail(EINVAL, "takes one argument, {} given", words.size());
    return json{{field, words[0]}};
  };
}

// ---------------------------------------------------------------- the commands

struct Command {
  std::string name;
  std::string args;     // the usage of its arguments, "" for none
  std::string about;    // one line
  std::string details;  // a paragraph for `help COMMAND`
  std::string example;
  ArgumentParser parse;
  std::function<void(const json& result)> print;  // null: handled by control() (monitor, help)
};

const std::vector<Command>& commands() {
  static const std::vector<Command> kCommands = {
      {"status", "", "daemon facts and engine counters",
       "The daemon's version, pid, front end and node; the netlink group its events go to; the uAPI version "
       "and features served; PASIDs allocated of the capacity, the capacity not yet carved into quotas and "
       "the default quota; open contexts; ioctls served and failed; events relayed and dropped; admin "
       "connections.",
       "ioasidctl status", no_arguments(), print_status},
      {"contexts", "", "open files of the node: opener, PASIDs, ioctls, age",
       "One row per open file of the node (a context): its id, the pid, command, uid and gid of the process "
       "that opened it, the PASIDs it holds of its quota, the ioctls it made and how long ago it was opened. "
       "CONTEXT in other commands is this id.",
       "ioasidctl contexts", no_arguments(), print_contexts},
      {"iommu-files", "", "open files of the iommu node: opener",
       "One row per open file of the iommu node (Linux's iommufd uAPI): its number (the log's \"iommu ctx "
       "N\"), the context id a device it bound shows as its owner in ioasidctl devices, and the pid, command, "
       "uid and gid of the process that opened it.",
       "ioasidctl iommu-files", no_arguments(), print_iommu_files},
      {"pasids", "", "allocated PASIDs: owner, guest PASID, state",
       "One row per allocated PASID: the context that owns it and that context's pid, the guest PASID mapped "
       "to it (- if none), its state (idle; active: users hold references; free_pending: freed, waiting for "
       "the last user) and its reference count.",
       "ioasidctl pasids", no_arguments(), print_pasids},
      {"set-quota", "CONTEXT QUOTA", "set one context's PASID quota",
       "Sets the PASID quota of context CONTEXT (see ioasidctl contexts) to QUOTA PASIDs. Refused with EINVAL "
       "below the PASIDs it already holds, ENOSPC beyond the capacity not yet carved into quotas, ENOENT for "
       "no such context.",
       "ioasidctl set-quota 3 64", numbers({"context", "quota"}), print_quota},
      {"devices", "", "emulated devices, who bound them, and their routes",
       "One row per emulated device: name, type (dma or dsa), PCI address, capabilities (PASID width, PRI, "
       "ATS, work queues) and the contexts that bound it. Then one row per route: the device's RID or one of "
       "its PASIDs, the context and IOASID its requests translate through, and the entry's type "
       "(second_level: the IOASID's own table; nested: a guest's first-level table over its parent's; "
       "pass_through).",
       "ioasidctl devices", no_arguments(), print_devices},
      {"device-add", "SPEC", "add an emulated device (SPEC as ioasidd --device)",
       "Adds a device. SPEC is TYPE,name=NAME,pci=[0000:]BB:DD.F[,pasid=BITS][,pri][,ats][,wqs=N] with TYPE "
       "dma or dsa (dsa defaults to pasid=20,wqs=8), as ioasidd --device takes it. Refused with EINVAL for a "
       "SPEC that does not parse or is outside its bounds (256 bytes; name 1..31 of A-Z a-z 0-9 _ . -; pasid "
       "0..20; wqs 1..64), ENOSPC when 256 devices are listed, EEXIST for a name or PCI address a device already "
       "has.",
       "ioasidctl device-add dma,name=dma2,pci=00:06.0,pasid=20,pri,ats", one_word("spec"), print_added},
      {"device-remove", "NAME|PCI", "remove a device; a bound one stays with its holder",
       "Removes the device with that name or PCI address (00:06.0 or 0000:00:06.0). It leaves the list at "
       "once. A context that has it bound keeps its binding, but its I/O on the device fails with ENODEV "
       "until it unbinds it or closes the file.",
       "ioasidctl device-remove dma2", one_word("device"), print_removed},
      {"stats", "", "IOTLB, PASID cache, device-TLB and memory counters",
       "Counters since the daemon started: the IOTLB (entries, hits, misses, fills, evictions, invalidated), "
       "the PASID cache (hits, misses, invalidated), the device-TLB of each ATS device, the pinned client "
       "segments and page-table pages of the HPA space, and the pages pinned per uid.",
       "ioasidctl stats", no_arguments(), print_stats},
      {"pgtable", "CONTEXT IOASID [OPTIONS]", "one IOASID's page table, readable or as a graph",
       "IOASID IOASID of context CONTEXT: its domain, table levels and root, the devices attached to it, the "
       "areas MAP_DMA/MAP_FILE mapped (IOVA, length, HPA, rights, the client memory behind it) and the leaves "
       "of its second-level table, alike runs coalesced. For a nested IOASID: its parent and the guest table "
       "bound. IOASID is the number IOASID_ALLOC returned to that file. OPTIONS: --pid P in place of CONTEXT "
       "shows that IOASID in every context process P has open; --range START[-END|+LEN] lists only what "
       "overlaps [START, END) (START alone: the leaf that maps it; numbers in hex with 0x, or decimal); the "
       "daemon sends at most 10000 leaf lines and says where to go on from; --format dot prints the walk "
       "(IOVA -> HPA; for a nested IOASID GVA -> GPA -> HPA through its parent's table) as a Graphviz graph.",
       "ioasidctl pgtable --pid 3155 2 --range 0x200000+0x200000 --format dot | dot -Tsvg > walk.svg",
       no_arguments(), nullptr},
      {"monitor", "[KIND...] [OPTIONS]",
       "print the daemon's events as they happen, filtered",
       "Prints the daemon's events (docs/EVENTS.md) as they happen until Ctrl-C, the daemon closing the stream "
       "or --count N printed, one line each in aligned columns (time, seq, event, context, pid, device, "
       "details), or with --json one JSON object per line. OPTIONS: --device NAME|DEV_ID, --context CONTEXT, "
       "--count N, --admin, --group N, --json ('ioasidctl monitor --help'). KIND filters as ip monitor's: a kind (context, "
       "pasid, device, fault, pri, ioas, map, dsa, or all) or one event's name; --device keeps the events of "
       "one device (its name, or the dev_id its owner got), --context those of one open file. It joins the "
       "daemon's netlink group when the daemon publishes there and it has CAP_NET_ADMIN, believing only the "
       "daemon's messages (port and pid from the admin socket, else uid 0); otherwise, or with --admin, it "
       "reads the admin socket's event stream. --group N listens on another netlink group.",
       "ioasidctl monitor pasid fault --context 3", no_arguments(), nullptr},
      {"help", "[COMMAND]", "this list, or one command in detail",
       "Without COMMAND: every command with its arguments and an example. With COMMAND: what it does and "
       "prints. Needs no daemon. With --json: the same as JSON.",
       "ioasidctl help pgtable", nullptr, nullptr},
  };
  return kCommands;
}

const Command* find_command(std::string_view name) {
  for (const Command& command : commands())
    if (command.name == name) return &command;
  return nullptr;
}

std::string usage(const Command& command) {
  return fmt::format("ioasidctl [--socket PATH] [--json] {}{}{}", command.name, command.args.empty() ? "" : " ",
                     command.args);
}

std::string command_names() {
  std::string names;
  for (const Command& command : commands()) names += (names.empty() ? "" : ", ") + command.name;
  return names;
}

json command_json(const Command& command) {
  return json{{"cmd", command.name}, {"args", command.args}, {"about", command.about},
              {"details", command.details}, {"example", command.example}};
}

void print_overview(const po::options_description& options) {
  fmt::print("Usage: ioasidctl [--socket PATH] [--json] COMMAND [ARGS]\n"
             "Administers a running ioasidd through its admin socket (root, or members of its\n"
             "--admin-group).\n\nCommands:\n");
  size_t width = 0;
  for (const Command& command : commands()) width = std::max(width, command.name.size() + 1 + command.args.size());
  for (const Command& command : commands())
    fmt::print("  {:<{}}  {}\n", command.name + " " + command.args, width,
               wrap(command.about, width + 4, width + 4));
  fmt::print("\n'ioasidctl help COMMAND' or 'ioasidctl COMMAND --help' describes one command.\n\nExamples:\n");
  for (const Command& command : commands()) fmt::print("  {}\n", command.example);
  std::cout << "\n" << options << "\n";
  fmt::print("Exit status: 0 on success, 1 when the daemon or the socket said no (the reason\n"
             "is printed), 2 for a usage error.\n");
}

void print_command_help(const Command& command) {
  fmt::print("ioasidctl {}: {}\n\nUsage: {}\n\n{}\n\nExample:\n  {}\n", command.name, command.about,
             usage(command), wrap(command.details, 0, 0), command.example);
}

// `help [COMMAND]`, answered here: it needs no daemon.
int help(const std::vector<std::string>& words, bool as_json, const po::options_description& options) {
  if (words.size() > 1) {
    std::cerr << "ioasidctl: help takes at most one command\nusage: " << usage(*find_command("help")) << "\n";
    return 2;
  }
  const Command* command = words.empty() ? nullptr : find_command(words[0]);
  if (!words.empty() && !command) {
    std::cerr << fmt::format("ioasidctl: no command '{}' (commands: {})\n", words[0], command_names());
    return 2;
  }
  if (as_json) {
    json all = json::array();
    for (const Command& each : commands()) all.push_back(command_json(each));
    std::cout << (command ? command_json(*command) : json{{"commands", all}}).dump(2) << "\n";
  } else if (command) {
    print_command_help(*command);
  } else {
    print_overview(options);
  }
  return 0;
}

int fail_with(const ioasid::Error& error) {
  std::cerr << "ioasidctl: " << error.why << "\n";
  return 1;
}

// ---------------------------------------------------------------- pgtable

struct PgtableRequest {
  std::optional<uint32_t> context;
  std::optional<int64_t> pid;  // --pid: every context of this process
  uint32_t ioasid = 0;
  uint64_t begin = 0;
  uint64_t end = std::numeric_limits<uint64_t>::max();
  bool dot = false;
};

// "0x200000" or "2097152".
std::optional<uint64_t> parse_u64(std::string_view word) {
  int base = 10;
  if (word.starts_with("0x") || word.starts_with("0X")) {
    word.remove_prefix(2);
    base = 16;
  }
  uint64_t value = 0;
  auto [end, error] = std::from_chars(word.data(), word.data() + word.size(), value, base);
  if (word.empty() || error != std::errc() || end != word.data() + word.size()) return std::nullopt;
  return value;
}

// START, START-END or START+LEN: [begin, end).
ioasid::Result<std::pair<uint64_t, uint64_t>> parse_range(const std::string& text) {
  const size_t dash = text.find('-'), plus = text.find('+');
  const size_t split = dash != std::string::npos ? dash : plus;
  const auto start = parse_u64(std::string_view(text).substr(0, split));
  if (!start) return ioasid::fail(EINVAL, "--range: START must be a number (0x... or decimal), not '{}'", text);
  if (split == std::string::npos) {
    if (*start == std::numeric_limits<uint64_t>::max()) return std::pair{*start - 1, *start};  // the last byte
    return std::pair{*start, *start + 1};
  }
  const auto second = parse_u64(std::string_view(text).substr(split + 1));
  if (!second) return ioasid::fail(EINVAL, "--range: '{}' must be START-END or START+LEN", text);
  if (split == plus) {
    if (*second == 0) return ioasid::fail(EINVAL, "--range: LEN is 0");
    if (*start + (*second - 1) < *start) return ioasid::fail(EINVAL, "--range: START+LEN wraps past 2^64");
    // [start, start + len); the last byte of the space cannot be an exclusive end.
    const uint64_t last = *start + (*second - 1);
    return std::pair{*start, last == std::numeric_limits<uint64_t>::max() ? last : last + 1};
  }
  if (*second <= *start) return ioasid::fail(EINVAL, "--range: END {:#x} is not above START {:#x}", *second, *start);
  return std::pair{*start, *second};
}

ioasid::Result<PgtableRequest> parse_pgtable(const std::vector<std::string>& words) {
  PgtableRequest request;
  std::vector<std::string> positional;
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& word = words[i];
    auto value = [&](const char* option) -> ioasid::Result<std::string> {
      if (i + 1 >= words.size()) return ioasid::fail(EINVAL, "{} takes a value", option);
      return words[++i];
    };
    if (word == "--pid" || word == "-p") {
      auto text = value("--pid");
      if (!text) return std::move(text).error();
      const auto pid = parse_u64(*text);
      if (!pid || *pid == 0 || *pid > 4194304) return ioasid::fail(EINVAL, "--pid must be a process id, not '{}'", *text);
      request.pid = static_cast<int64_t>(*pid);
    } else if (word == "--range" || word == "-r") {
      auto text = value("--range");
      if (!text) return std::move(text).error();
      auto range = parse_range(*text);
      if (!range) return std::move(range).error();
      std::tie(request.begin, request.end) = *range;
    } else if (word == "--format" || word == "-f") {
      auto text = value("--format");
      if (!text) return std::move(text).error();
      if (*text != "text" && *text != "dot") return ioasid::fail(EINVAL, "--format is text or dot, not '{}'", *text);
      request.dot = *text == "dot";
    } else if (word.starts_with("-")) {
      return ioasid::fail(EINVAL, "unknown option '{}'", word);
    } else {
      positional.push_back(word);
    }
  }
  const size_t wanted = request.pid ? 1 : 2;
  if (positional.size() != wanted)
    return ioasid::fail(EINVAL, "takes {}, {} number(s) given", request.pid ? "IOASID (with --pid)" : "CONTEXT IOASID",
                        positional.size());
  for (size_t i = 0; i < positional.size(); ++i) {
    const auto number = parse_u64(positional[i]);
    if (!number || *number > UINT32_MAX)
      return ioasid::fail(EINVAL, "{} must be a number in 0..4294967295, not '{}'",
                          i + 1 == positional.size() ? "IOASID" : "CONTEXT", positional[i]);
    if (i + 1 == positional.size())
      request.ioasid = static_cast<uint32_t>(*number);
    else
      request.context = static_cast<uint32_t>(*number);
  }
  return request;
}

// A DOT string literal.
std::string dot_string(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c == '\n' ? std::string("\\n") : std::string(1, c);
  }
  return out + "\"";
}

// One `dump` line, "iova I -> hpa H SIZE [xN] RWX A D [SNP]", as the walk's two ends.
struct Leaf {
  std::string iova, hpa, rest;
};
std::optional<Leaf> parse_leaf(const std::string& line) {
  std::istringstream words(line);
  std::string iova_word, iova, arrow, hpa_word, hpa;
  if (!(words >> iova_word >> iova >> arrow >> hpa_word >> hpa) || iova_word != "iova" || hpa_word != "hpa")
    return std::nullopt;
  std::string rest;
  std::getline(words, rest);
  if (!rest.empty() && rest.front() == ' ') rest.erase(0, 1);
  return Leaf{iova, hpa, rest};
}

// The leaves of one table as IOVA -> HPA edges, in a cluster named `prefix`. HPA nodes
// are shared by every cluster, so two IOASIDs mapping one page meet there.
void dot_leaves(std::string& out, const std::string& prefix, const json& table, std::set<std::string>& hpas,
                const char* what) {
  for (const json& line : table.value("dump", json::array())) {
    const auto leaf = parse_leaf(text(line));
    if (!leaf) continue;
    const std::string from = prefix + "_" + leaf->iova;
    out += fmt::format("    {} [label={}];\n", dot_string(from), dot_string(fmt::format("{} {}\n{}", what, leaf->iova, leaf->rest)));
    hpas.insert(leaf->hpa);
    out += fmt::format("    {} -> {};\n", dot_string(from), dot_string("hpa_" + leaf->hpa));
  }
  if (table.value("truncated", false))
    out += fmt::format("    {} [shape=note, label={}];\n", dot_string(prefix + "_more"),
                       dot_string(fmt::format("{} more leaves from {}", table.value("dump_lines", 0u) -
                                                                       table.value("dump", json::array()).size(),
                                          hex(table.value("next_iova", json())))));
}

// The walk of each table as one Graphviz digraph: IOVA -> HPA, or for a nested IOASID
// GVA (its guest table) -> GPA (its parent's IOVAs) -> HPA. `parents` holds the
// parent tables of the nested ones, by "context/ioasid".
std::string pgtable_dot(const std::vector<json>& tables, const std::map<std::string, json>& parents) {
  std::string out = "digraph ioasid_pgtable {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n";
  std::set<std::string> hpas;
  for (const json& t : tables) {
    const std::string context = text(t.at("context")), ioasid = text(t.at("ioasid"));
    const std::string prefix = "c" + context + "_i" + ioasid;
    const json nested = t.value("nested", json());
    out += fmt::format("  subgraph {} {{\n    label={};\n", dot_string("cluster_" + prefix),
                       dot_string(fmt::format("context {}, IOASID {}: domain {}{}", context, ioasid, text(t.at("domain")),
                                          nested.is_object() ? ", nested on IOASID " + text(nested.at("parent"))
                                                             : std::string())));
    if (!nested.is_object()) {
      dot_leaves(out, prefix, t, hpas, "IOVA");
      out += "  }\n";
      continue;
    }
    const json binding = nested.value("binding", json());
    const std::string gva = prefix + "_gva";
    out += fmt::format("    {} [shape=ellipse, label={}];\n", dot_string(gva),
                       dot_string(binding.is_object()
                                  ? fmt::format("GVA\nguest first-level table at GPA {}, {}-bit",
                                                hex(binding.at("pgtbl_addr")), text(binding.at("addr_width")))
                                  : std::string("GVA\nno guest table bound")));
    const auto parent = parents.find(context + "/" + text(nested.at("parent")));
    if (parent != parents.end()) {
      const std::string gpa_prefix = prefix + "_gpa";
      out += fmt::format("    {} [shape=ellipse, label={}];\n", dot_string(gpa_prefix),
                         dot_string("GPA space\nIOASID " + text(nested.at("parent"))));
      out += fmt::format("    {} -> {} [label=\"first-level walk\"];\n", dot_string(gva), dot_string(gpa_prefix));
      for (const json& line : parent->second.value("dump", json::array()))
        if (const auto leaf = parse_leaf(text(line)))
          out += fmt::format("    {} -> {};\n", dot_string(gpa_prefix), dot_string(gpa_prefix + "_" + leaf->iova));
      dot_leaves(out, gpa_prefix, parent->second, hpas, "GPA");
    }
    out += "  }\n";
  }
  for (const std::string& hpa : hpas) out += fmt::format("  {} [label={}];\n", dot_string("hpa_" + hpa), dot_string("HPA " + hpa));
  return out + "}\n";
}

int fail_with(const ioasid::Error& error);

// `pgtable`: one request per context asked (CONTEXT, or each of --pid's), printed as
// text, JSON (an array with --pid) or one DOT graph.
int run_pgtable(AdminClient& client, const PgtableRequest& request, bool as_json) {
  std::vector<uint32_t> contexts;
  if (request.context) {
    contexts.push_back(*request.context);
  } else {
    auto rows = client.call("contexts");
    if (!rows) return fail_with(rows.error());
    for (const json& row : *rows)
      if (row.value("pid", int64_t{0}) == *request.pid) contexts.push_back(row.value("id", 0u));
    if (contexts.empty()) {
      std::cerr << fmt::format("ioasidctl: process {} has no context open (see ioasidctl contexts)\n", *request.pid);
      return 1;
    }
  }
  auto ask = [&](uint32_t context, uint32_t ioasid) {
    return client.call("pgtable", json{{"context", context}, {"ioasid", ioasid}, {"iova_begin", request.begin},
                                       {"iova_end", request.end}});
  };
  std::vector<json> tables;
  std::map<std::string, json> parents;
  std::optional<ioasid::Error> last_error;
  for (uint32_t context : contexts) {
    auto table = ask(context, request.ioasid);
    if (!table) {
      // With --pid, a context without that IOASID is not an error while another has it.
      if (request.pid && table.code() == ENOENT) {
        last_error = table.error();
        continue;
      }
      return fail_with(table.error());
    }
    if (request.dot && table->value("nested", json()).is_object()) {
      const uint32_t parent = table->at("nested").value("parent", 0u);
      auto parent_table = ask(context, parent);
      if (!parent_table) return fail_with(parent_table.error());
      parents[fmt::format("{}/{}", context, parent)] = std::move(*parent_table);
    }
    tables.push_back(std::move(*table));
  }
  if (tables.empty()) return fail_with(*last_error);
  if (request.dot) {
    std::cout << pgtable_dot(tables, parents);
  } else if (as_json) {
    std::cout << (request.pid ? json(tables) : tables.front()).dump(2) << "\n";
  } else {
    for (size_t i = 0; i < tables.size(); ++i) {
      if (i) fmt::print("\n");
      print_pgtable(tables[i]);
    }
  }
  return 0;
}

// `monitor` and `pgtable` take options of their own after the command word; they are
// cut off here and parsed by the command, so that ioasidctl's options stay what the
// others take.
std::vector<std::string> cut_command_words(int& argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--socket" || arg == "-s") {
      ++i;
      continue;
    }
    if (arg.starts_with("-")) continue;
    if (arg != "monitor" && arg != "pgtable") return {};
    std::vector<std::string> words(argv + i + 1, argv + argc);
    argc = i + 1;
    return words;
  }
  return {};
}

}  // namespace

int control(int argc, char** argv) {
  std::vector<std::string> command_words = cut_command_words(argc, argv);
  std::string socket_path = kDefaultAdminSocket;
  bool as_json = false;
  std::string name;
  std::vector<std::string> words;

  po::options_description options("Options");
  options.add_options()
      ("help,h", "print this help (after a command: that command's) and exit")
      ("socket,s", po::value(&socket_path)->value_name("PATH")->default_value(socket_path),
       "the daemon's admin socket (ioasidd --admin-socket)")
      ("json,j", po::bool_switch(&as_json), "print the raw JSON result (monitor: one JSON object per line)");
  po::options_description hidden;
  hidden.add_options()
      ("command", po::value(&name))
      ("args", po::value(&words)->multitoken());
  po::positional_options_description positional;
  positional.add("command", 1).add("args", -1);
  po::variables_map vm;
  auto print_help = [&options](const po::variables_map& values) {
    const Command* command = values.count("command") ? find_command(values["command"].as<std::string>()) : nullptr;
    if (command)
      print_command_help(*command);
    else
      print_overview(options);
  };
  if (auto exit_code =
          parse_command_line(argc, argv, "ioasidctl", options, vm, &hidden, &positional, print_help))
    return *exit_code;
  if (name.empty()) {
    std::cerr << fmt::format("ioasidctl: which command? ({}; see ioasidctl --help)\n", command_names());
    return 2;
  }
  const Command* command = find_command(name);
  if (!command) {
    std::cerr << fmt::format("ioasidctl: unknown command '{}' (commands: {}; see ioasidctl --help)\n", name,
                             command_names());
    return 2;
  }
  if (command->name == "help") return help(words, as_json, options);
  if (command->name == "monitor") return run_monitor(command_words, socket_path, as_json);
  if (command->name == "pgtable") {
    if (std::find(command_words.begin(), command_words.end(), "--help") != command_words.end() ||
        std::find(command_words.begin(), command_words.end(), "-h") != command_words.end()) {
      print_command_help(*command);
      return 0;
    }
    auto pgtable = parse_pgtable(command_words);
    if (!pgtable) {
      std::cerr << fmt::format("ioasidctl: pgtable: {}\nusage: {}\nexample: {}\n", pgtable.error().why,
                               usage(*command), command->example);
      return 2;
    }
    auto client = AdminClient::connect(socket_path);
    if (!client) return fail_with(client.error());
    return run_pgtable(*client, *pgtable, as_json);
  }
  auto request = command->parse(words);
  if (!request) {
    std::cerr << fmt::format("ioasidctl: {}: {}\nusage: {}\nexample: {}\n", command->name, request.error().why,
                             usage(*command), command->example);
    return 2;
  }

  auto client = AdminClient::connect(socket_path);
  if (!client) return fail_with(client.error());
  auto result = client->call(command->name, std::move(*request));
  if (!result) return fail_with(result.error());
  if (as_json)
    std::cout << result->dump(2) << "\n";
  else
    command->print(*result);
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

// SPDX-License-Identifier: MIT
// With CAP_NET_ADMIN the monitor joins the daemon's netlink multicast group and checks
// every message's sender: anyone may send on NETLINK_USERSOCK, so only messages from
// the daemon's port and pid (learned from the admin socket's `status`) are believed —
// or, when the admin socket cannot be asked, only messages from uid 0. Without
// CAP_NET_ADMIN (or with --admin) it reads the admin socket's event stream, where the
// socket's permissions are the sender check.
#include "monitor.h"

#include "common/admin_client.h"
#include "common/cli.h"
#include "common/event_format.h"
#include "common/netlink_subscriber.h"
#include "engine/event_kinds.h"  // the daemon's own list of event names and kinds
#include "netlink_publisher.h"   // the wire constants the daemon uses

#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <iostream>
#include <optional>
#include <set>
#include <string>

namespace po = boost::program_options;
using json = nlohmann::json;
using ioasid::daemon::kDefaultNetlinkGroup;
using ioasid::daemon::kMaxNetlinkGroup;
using ioasid::daemon::kNetlinkEventType;
using ioasid::engine::kEventKinds;

namespace ioasid::examples {

namespace {

constexpr const char* kProgram = "ioasidctl monitor";

bool is_kind_word(std::string_view word) {
  for (const auto& kind : kEventKinds)
    if (word == kind.kind || word == kind.also || word == kind.name) return true;
  return word == "all";
}

std::optional<uint32_t> number(const std::string& word) {
  uint32_t value = 0;
  auto [end, error] = std::from_chars(word.data(), word.data() + word.size(), value);
  if (word.empty() || error != std::errc() || end != word.data() + word.size()) return std::nullopt;
  return value;
}

// Which events to print: ip monitor's model, every condition given must hold.
struct Filter {
  std::set<std::string> kinds;       // kind words or event names; empty: all
  std::optional<std::string> device;  // a device name, or a dev_id when a number
  std::optional<uint32_t> context;

  bool passes(const json& event) const {
    const std::string name = event.value("event", std::string());
    if (name == engine::kEventsLost) return true;  // a gap is news whatever the filter
    if (!kinds.empty() && !kinds.contains("all") && !kinds.contains(name)) {
      bool matched = false;
      for (const auto& kind : kEventKinds)
        if (kind.name == name)
          matched = kinds.contains(std::string(kind.kind)) || (!kind.also.empty() && kinds.contains(std::string(kind.also)));
      if (!matched) return false;  // also a newer daemon's event no kind names
    }
    if (context && event.value("context", 0u) != *context) return false;
    if (device) {
      const auto id = number(*device);
      const bool by_name = event.value("device", std::string()) == *device;
      const bool by_id = id && event.contains("dev_id") && event.value("dev_id", 0u) == *id;
      if (!by_name && !by_id) return false;
    }
    return true;
  }
};

class Printer {
 public:
  Printer(bool as_json, uint64_t limit, Filter filter) : as_json_(as_json), limit_(limit), filter_(std::move(filter)) {}
  void print(const json& event) {
    if (!filter_.passes(event)) return;
    if (!as_json_ && !headed_) {
      std::cout << event_header() << "\n";
      headed_ = true;
    }
    std::cout << (as_json_ ? event.dump() : format_event(event)) << std::endl;
    ++printed_;
  }
  bool done() const { return limit_ != 0 && printed_ >= limit_; }

 private:
  bool as_json_;
  uint64_t limit_;  // 0: no limit
  Filter filter_;
  uint64_t printed_ = 0;
  bool headed_ = false;
};

// What the admin socket says about the daemon; the trusted source for who the
// netlink sender must be.
struct DaemonFacts {
  pid_t pid = 0;
  uint32_t netlink_port = 0;
  uint32_t netlink_group = 0;
};

Result<DaemonFacts> ask_daemon(const std::string& socket_path) {
  auto client = AdminClient::connect(socket_path);
  if (!client) return std::move(client).error();
  auto status = client->call("status");
  if (!status) return std::move(status).error();
  DaemonFacts facts;
  facts.pid = status->value("pid", 0);
  facts.netlink_port = status->value("netlink_port", 0u);
  facts.netlink_group = status->value("netlink_group", 0u);
  if (facts.pid <= 0) return fail(EPROTO, "the daemon's status has no pid");
  return facts;
}

class NetlinkMonitor {
 public:
  NetlinkMonitor(NetlinkSubscriber subscriber, std::optional<DaemonFacts> facts, std::string socket_path,
                 Printer& printer)
      : subscriber_(std::move(subscriber)), facts_(facts), socket_path_(std::move(socket_path)),
        printer_(printer) {}

  int run() {
    while (!printer_.done()) {
      auto received = subscriber_.receive([this](const NetlinkMessage& message) { on_message(message); });
      if (!received && received.code() == ENOBUFS) {
        std::cerr << kProgram << ": netlink receive buffer overran; some events were lost\n";
      } else if (!received && received.code() == EBADMSG) {
        // Never the daemon's: someone else's datagram, ignored like any forgery.
        std::cerr << kProgram << ": " << received.error().why << "\n";
      } else if (!received) {
        std::cerr << kProgram << ": " << received.error().why << "\n";
        return 1;
      }
    }
    return 0;
  }

 private:
  // Why a message is not the daemon's, or nullopt if it is.
  std::optional<std::string> distrust(const NetlinkMessage& message) const {
    if (!message.sender) return "it carries no credentials";
    const ucred& sender = *message.sender;
    if (facts_) {
      if (message.sender_port != facts_->netlink_port)
        return fmt::format("port {} is not the daemon's port {}", message.sender_port, facts_->netlink_port);
      if (sender.pid != facts_->pid) return fmt::format("pid {} is not the daemon's pid {}", sender.pid, facts_->pid);
      return std::nullopt;
    }
    if (sender.uid != 0) return fmt::format("uid {} is not root", sender.uid);
    return std::nullopt;
  }

  void on_message(const NetlinkMessage& message) {
    if (printer_.done()) return;
    auto reason = distrust(message);
    if (reason && facts_ && refresh_facts()) reason = distrust(message);  // the daemon may have restarted
    if (reason) {
      std::cerr << fmt::format("{}: ignored a message of {} bytes from port {} pid {} uid {}: {}\n", kProgram,
                               message.payload.size(), message.sender_port, message.sender ? message.sender->pid : 0,
                               message.sender ? message.sender->uid : 0, *reason);
      return;
    }
    if (message.type != kNetlinkEventType) return;  // not an event: a newer daemon's message
    json event = json::parse(message.payload, nullptr, /*allow_exceptions=*/false);
    if (event.is_discarded() || !event.is_object()) {
      std::cerr << kProgram << ": the daemon sent an event that is not JSON: " << message.payload << "\n";
      return;
    }
    printer_.print(event);
  }

  // Asks the admin socket again, at most once a second. True if the facts changed.
  bool refresh_facts() {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_refresh_ < std::chrono::seconds(1)) return false;
    last_refresh_ = now;
    auto fresh = ask_daemon(socket_path_);
    if (!fresh || (fresh->pid == facts_->pid && fresh->netlink_port == facts_->netlink_port)) return false;
    std::cerr << fmt::format("{}: the daemon is now pid {} port {}\n", kProgram, fresh->pid, fresh->netlink_port);
    facts_ = *fresh;
    return true;
  }

  NetlinkSubscriber subscriber_;
  std::optional<DaemonFacts> facts_;
  std::string socket_path_;
  Printer& printer_;
  std::chrono::steady_clock::time_point last_refresh_{};
};

int monitor_admin_stream(const std::string& socket_path, Printer& printer, const std::string& fallback_note) {
  auto client = AdminClient::connect(socket_path);
  Result<void> started = client ? client->start_events() : Result<void>(client.error());
  if (!started) {
    std::cerr << kProgram << ": " << fallback_note << started.error().why << "\n";
    return 1;
  }
  std::cerr << fmt::format("{}: reading the event stream of {} (Ctrl-C to stop)\n", kProgram, socket_path);
  while (!printer.done()) {
    auto event = client->next_event();
    if (!event) {
      std::cerr << kProgram << ": " << event.error().why << "\n";
      return 1;
    }
    if (!*event) {
      std::cerr << kProgram << ": the daemon closed the event stream\n";
      return 0;
    }
    printer.print(**event);
  }
  return 0;
}

}  // namespace

std::string monitor_kinds() {
  std::set<std::string> kinds;
  for (const auto& kind : kEventKinds) {
    kinds.emplace(kind.kind);
    if (!kind.also.empty()) kinds.emplace(kind.also);
  }
  std::string text;
  for (const auto& kind : kinds) text += (text.empty() ? "" : " ") + kind;
  return text;
}

int run_monitor(const std::vector<std::string>& words, const std::string& socket_path, bool as_json) {
  uint32_t group = kDefaultNetlinkGroup;
  bool force_admin = false;
  bool json_here = false;
  uint64_t count = 0;
  std::vector<std::string> kind_words;
  std::string device;
  std::string context;

  po::options_description options("monitor options");
  options.add_options()
      ("help,h", "print this help and exit")
      ("device,d", po::value(&device)->value_name("NAME|DEV_ID"),
       "only events of this device: its name (as ioasidctl devices shows), or the dev_id its owner got")
      ("context,c", po::value(&context)->value_name("CONTEXT"), "only events of this context (ioasidctl contexts)")
      ("json,j", po::bool_switch(&json_here), "print each event's JSON (as ioasidctl --json)")
      ("count,n", po::value(&count)->value_name("N"), "exit after printing N events")
      ("admin,a", po::bool_switch(&force_admin), "read the admin socket's event stream, not netlink")
      ("group,g", po::value(&group)->value_name("N"),
       "netlink multicast group, 1..32 (default: the daemon's, from its status; else 23)");
  po::options_description hidden;
  hidden.add_options()("kinds", po::value(&kind_words)->multitoken());
  po::positional_options_description positional;
  positional.add("kinds", -1);
  // parse_command_line takes argv: "ioasidctl monitor" stands in for the program.
  std::vector<std::string> storage{kProgram};
  storage.insert(storage.end(), words.begin(), words.end());
  std::vector<char*> argv;
  for (auto& word : storage) argv.push_back(word.data());
  po::variables_map vm;
  auto print_help = [&options](const po::variables_map&) {
    std::cout << "Usage: ioasidctl [--socket PATH] [--json] monitor [KIND...] [--device NAME|DEV_ID]\n"
                 "                 [--context CONTEXT] [--count N] [--admin] [--group N]\n"
                 "Prints the daemon's events as they happen, one line each in aligned columns, or\n"
                 "one JSON object per line with --json. Only events of the KINDs named (a kind, or\n"
                 "an event's own name) and of the device and context given, when given.\n"
                 "KINDs: all " << monitor_kinds() << "\n\n" << options << "\n";
  };
  if (auto exit_code = parse_command_line(static_cast<int>(argv.size()), argv.data(), kProgram, options, vm,
                                          &hidden, &positional, print_help))
    return *exit_code;
  as_json = as_json || json_here;
  Filter filter;
  for (const auto& word : kind_words) {
    if (!is_kind_word(word)) {
      std::cerr << fmt::format("{}: no event kind '{}' (kinds: all {}; or an event's name, docs/EVENTS.md)\n",
                               kProgram, word, monitor_kinds());
      return 2;
    }
    filter.kinds.insert(word);
  }
  if (vm.count("device")) {
    if (device.empty() || device.size() > 31) {
      std::cerr << kProgram << ": --device takes a device name (1..31 characters) or a dev_id\n";
      return 2;
    }
    filter.device = device;
  }
  if (vm.count("context")) {
    filter.context = number(context);
    if (!filter.context) {
      std::cerr << fmt::format("{}: --context must be a number in 0..4294967295, not '{}'\n", kProgram, context);
      return 2;
    }
  }
  const bool group_given = vm.count("group") != 0;
  if (group == 0 || group > kMaxNetlinkGroup) {
    std::cerr << kProgram << ": --group must be within 1.." << kMaxNetlinkGroup << "\n";
    return 2;
  }

  Printer printer(as_json, count, std::move(filter));
  if (force_admin) return monitor_admin_stream(socket_path, printer, "");

  auto facts = ask_daemon(socket_path);
  if (facts && facts->netlink_group == 0 && !group_given) {
    std::cerr << kProgram << ": the daemon publishes no netlink events (--netlink-group 0); using the admin socket\n";
    return monitor_admin_stream(socket_path, printer, "");
  }
  if (facts && !group_given) group = facts->netlink_group;
  if (facts && group_given && group != facts->netlink_group)
    std::cerr << fmt::format("{}: warning: the daemon publishes on group {}, listening on {}\n", kProgram,
                             facts->netlink_group, group);

  auto subscriber = NetlinkSubscriber::open(group);
  if (!subscriber) {
    if (subscriber.code() != EPERM) {
      std::cerr << kProgram << ": " << subscriber.error().why << "\n";
      return 1;
    }
    std::cerr << fmt::format("{}: joining netlink group {} needs CAP_NET_ADMIN; trying the admin socket\n",
                             kProgram, group);
    return monitor_admin_stream(socket_path, printer,
                                "no CAP_NET_ADMIN for netlink, and the admin socket failed too: ");
  }

  if (facts)
    std::cerr << fmt::format("{}: netlink group {}; believing only port {} pid {} (from {})\n", kProgram, group,
                             facts->netlink_port, facts->pid, socket_path);
  else
    std::cerr << fmt::format("{}: netlink group {}; cannot ask the daemon who it is ({}), so believing only "
                             "messages sent by uid 0\n", kProgram, group, facts.error().why);
  NetlinkMonitor monitor(std::move(*subscriber), facts ? std::optional<DaemonFacts>(*facts) : std::nullopt,
                         socket_path, printer);
  return monitor.run();
}

}  // namespace ioasid::examples

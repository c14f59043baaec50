// SPDX-License-Identifier: MIT
// ioasid-monitor: prints ioasidd's events as they happen.
//
// With CAP_NET_ADMIN it joins the daemon's netlink multicast group and checks every
// message's sender: anyone may send on NETLINK_USERSOCK, so only messages from the
// daemon's port and pid (learned from the admin socket's `status`) are believed —
// or, when the admin socket cannot be asked, only messages from uid 0.
// Without CAP_NET_ADMIN (or with --admin) it reads the admin socket's event stream.
#include "common/admin_client.h"
#include "common/cli.h"
#include "common/event_format.h"
#include "common/netlink_subscriber.h"
#include "netlink_publisher.h"  // the wire constants the daemon uses

#include <fmt/format.h>

#include <chrono>
#include <iostream>
#include <optional>
#include <string>

namespace po = boost::program_options;
using namespace ioasid::examples;
using json = nlohmann::json;
using ioasid::daemon::kDefaultNetlinkGroup;
using ioasid::daemon::kMaxNetlinkGroup;
using ioasid::daemon::kNetlinkEventType;

namespace {

// What the admin socket says about the daemon; the trusted source for who the
// netlink sender must be.
struct DaemonFacts {
  pid_t pid = 0;
  uint32_t netlink_port = 0;
  uint32_t netlink_group = 0;
};

ioasid::Result<DaemonFacts> ask_daemon(const std::string& socket_path) {
  auto client = AdminClient::connect(socket_path);
  if (!client) return std::move(client).error();
  auto status = client->call("status");
  if (!status) return std::move(status).error();
  DaemonFacts facts;
  facts.pid = status->value("pid", 0);
  facts.netlink_port = status->value("netlink_port", 0u);
  facts.netlink_group = status->value("netlink_group", 0u);
  if (facts.pid <= 0) return ioasid::fail(EPROTO, "the daemon's status has no pid");
  return facts;
}

class Printer {
 public:
  Printer(bool as_json, uint64_t limit) : as_json_(as_json), limit_(limit) {}
  void print(const json& event) {
    std::cout << (as_json_ ? event.dump() : format_event(event)) << std::endl;
    ++printed_;
  }
  bool done() const { return limit_ != 0 && printed_ >= limit_; }

 private:
  bool as_json_;
  uint64_t limit_;  // 0: no limit
  uint64_t printed_ = 0;
};

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
        std::cerr << "ioasid-monitor: netlink receive buffer overran; some events were lost\n";
      } else if (!received && received.code() == EMSGSIZE) {
        // Never the daemon's (its events are small): someone else's, ignored like any forgery.
        std::cerr << "ioasid-monitor: " << received.error().why << "\n";
      } else if (!received) {
        std::cerr << "ioasid-monitor: " << received.error().why << "\n";
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
      if (sender.pid != facts_->pid)
        return fmt::format("pid {} is not the daemon's pid {}", sender.pid, facts_->pid);
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
      std::cerr << fmt::format("ioasid-monitor: ignored a message from port {} pid {} uid {}: {}\n",
                               message.sender_port, message.sender ? message.sender->pid : 0,
                               message.sender ? message.sender->uid : 0, *reason);
      return;
    }
    if (message.type != kNetlinkEventType) return;  // not an event: a newer daemon's message
    json event = json::parse(message.payload, nullptr, /*allow_exceptions=*/false);
    if (event.is_discarded() || !event.is_object()) {
      std::cerr << "ioasid-monitor: the daemon sent an event that is not JSON: " << message.payload << "\n";
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
    std::cerr << fmt::format("ioasid-monitor: the daemon is now pid {} port {}\n", fresh->pid, fresh->netlink_port);
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
  ioasid::Result<void> started = client ? client->start_events() : ioasid::Result<void>(client.error());
  if (!started) {
    std::cerr << "ioasid-monitor: " << fallback_note << started.error().why << "\n";
    return 1;
  }
  std::cerr << fmt::format("ioasid-monitor: reading the event stream of {} (Ctrl-C to stop)\n", socket_path);
  while (!printer.done()) {
    auto event = client->next_event();
    if (!event) {
      std::cerr << "ioasid-monitor: " << event.error().why << "\n";
      return 1;
    }
    if (!*event) {
      std::cerr << "ioasid-monitor: the daemon closed the event stream\n";
      return 0;
    }
    printer.print(**event);
  }
  return 0;
}

}  // namespace

int monitor(int argc, char** argv) {
  uint32_t group = kDefaultNetlinkGroup;
  std::string socket_path = kDefaultAdminSocket;
  bool force_admin = false;
  bool as_json = false;
  uint64_t count = 0;

  po::options_description options(
      "Usage: ioasid-monitor [--group N] [--socket PATH] [--admin] [--json] [--count N]\n"
      "Prints ioasidd's events (context open/close, PASID alloc/free/bind/unbind, quota\n"
      "changes, device bind/unbind/removal) as they happen, one line each.\n\n"
      "With CAP_NET_ADMIN it joins the daemon's netlink multicast group and believes only\n"
      "messages from the daemon's port and pid, learned from the admin socket (if that\n"
      "cannot be asked: only messages sent by uid 0). Without CAP_NET_ADMIN, or with\n"
      "--admin, it reads the admin socket's event stream (root or --admin-group members).\n\n"
      "Options");
  options.add_options()
      ("help,h", "print this help and exit")
      ("group,g", po::value(&group)->value_name("N"),
       "netlink multicast group, 1..32 (default: the daemon's, from its status; else 23)")
      ("socket,s", po::value(&socket_path)->value_name("PATH")->default_value(socket_path),
       "the daemon's admin socket (ioasidd --admin-socket)")
      ("admin,a", po::bool_switch(&force_admin), "use the admin socket's event stream, not netlink")
      ("json,j", po::bool_switch(&as_json), "print each event's raw JSON")
      ("count,n", po::value(&count)->value_name("N"), "exit after N events");
  po::variables_map vm;
  if (auto exit_code = parse_command_line(argc, argv, "ioasid-monitor", options, vm)) return *exit_code;
  const bool group_given = vm.count("group") != 0;
  if (group == 0 || group > kMaxNetlinkGroup) {
    std::cerr << "ioasid-monitor: --group must be within 1.." << kMaxNetlinkGroup << "\n";
    return 2;
  }

  Printer printer(as_json, count);
  if (force_admin) return monitor_admin_stream(socket_path, printer, "");

  auto facts = ask_daemon(socket_path);
  if (facts && facts->netlink_group == 0 && !group_given) {
    std::cerr << "ioasid-monitor: the daemon publishes no netlink events (--netlink-group 0); "
                 "using the admin socket\n";
    return monitor_admin_stream(socket_path, printer, "");
  }
  if (facts && !group_given) group = facts->netlink_group;
  if (facts && group_given && group != facts->netlink_group)
    std::cerr << fmt::format("ioasid-monitor: warning: the daemon publishes on group {}, listening on {}\n",
                             facts->netlink_group, group);

  auto subscriber = NetlinkSubscriber::open(group);
  if (!subscriber) {
    if (subscriber.code() != EPERM) {
      std::cerr << "ioasid-monitor: " << subscriber.error().why << "\n";
      return 1;
    }
    std::cerr << fmt::format("ioasid-monitor: joining netlink group {} needs CAP_NET_ADMIN; "
                             "trying the admin socket\n", group);
    return monitor_admin_stream(socket_path, printer,
                                "no CAP_NET_ADMIN for netlink, and the admin socket failed too: ");
  }

  if (facts)
    std::cerr << fmt::format("ioasid-monitor: netlink group {}; believing only port {} pid {} (from {})\n", group,
                             facts->netlink_port, facts->pid, socket_path);
  else
    std::cerr << fmt::format("ioasid-monitor: netlink group {}; cannot ask the daemon who it is ({}), so "
                             "believing only messages sent by uid 0\n", group, facts.error().why);
  NetlinkMonitor monitor(std::move(*subscriber),
                         facts ? std::optional<DaemonFacts>(*facts) : std::nullopt, socket_path, printer);
  return monitor.run();
}

int main(int argc, char** argv) {
  try {
    return monitor(argc, argv);
  } catch (const nlohmann::json::exception& e) {  // a daemon reply of an unexpected shape
    std::cerr << "ioasid-monitor: unexpected data from the daemon: " << e.what() << "\n";
    return 1;
  }
}

// SPDX-License-Identifier: MIT
// The daemon's admin socket: a unix stream socket speaking JSON lines, used by
// ioasidctl (and its monitor). docs/ADMIN.md is the protocol.
//
//   request  {"cmd":"set-quota","context":3,"quota":64}\n
//   reply    {"ok":true,"result":{...}}\n  or  {"ok":false,"error":"why","errno":"EINVAL"}\n
//
// Who may talk to it: uid 0, the daemon's own uid, and — when AdminConfig::group is
// set — members of that group (primary or supplementary, read from the peer's
// /proc/<pid>/status). Every connection is checked with SO_PEERCRED; the file mode
// (0600, or 0660 with the group) is only the first fence.
//
// Threading: the io_context may run on several threads; every handler takes the
// server's one mutex, so start()/stop() may be called from any thread, also when the
// io_context no longer runs. daemon_info() is called under that mutex: it must not
// call back into the AdminServer.
#pragma once

#include "base/result.h"
#include "event_relay.h"
#include "dev_ioasid/service.h"
#include "dev_iommu/service.h"

#include <utility>  // before Boost.Asio: g++ 12 with -std=c++20 needs it
#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>
#include <sys/types.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace ioasid::daemon {

class AdminSession;

inline constexpr const char* kDefaultAdminSocket = "/run/ioasidd/admin.sock";

struct AdminConfig {
  std::string path = kDefaultAdminSocket;
  std::optional<gid_t> group;  // also admit this group's members (socket mode 0660)
};

class AdminServer {
 public:
  // Extra fields for `status` (frontend, node, pid, version, netlink_group,
  // netlink_port): merged into the result object.
  using DaemonInfo = std::function<nlohmann::json()>;

  static constexpr size_t kMaxLineBytes = 64 * 1024;  // longer requests: error, then close
  static constexpr size_t kMaxSessions = 64;          // more connections are refused
  static constexpr size_t kMaxQueuedEventLines = 4096;  // per stream; beyond: dropped, counted

  // Registers an output on `relay` (harmless after this object is gone). The relay
  // must outlive this object or be stopped first.
  // `iommu`: the /dev/iommu personality, when the daemon serves it (null: none).
  AdminServer(boost::asio::io_context& io, dev_ioasid::Service& service, EventRelay& relay,
              AdminConfig config, DaemonInfo daemon_info, const dev_iommu::Service* iommu = nullptr);
  ~AdminServer();  // stop()
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Creates the parent directory if missing, removes a stale socket file (EADDRINUSE
  // if a live server still answers there, EEXIST if the path is not a socket), binds,
  // sets the mode and group, and starts accepting.
  Result<void> start();
  // Closes the listener and every session, unlinks the socket file. Idempotent.
  void stop();

  const std::string& path() const;

 private:
  friend class AdminSession;  // one connection, defined in admin_server.cpp
  struct Impl;
  std::shared_ptr<Impl> impl_;  // shared with in-flight handlers and the relay output
};

}  // namespace ioasid::daemon

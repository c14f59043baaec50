// SPDX-License-Identifier: MIT
// Receives ioasidd's netlink event messages (docs/EVENTS.md): a NETLINK_USERSOCK
// socket joined to one multicast group, with SO_PASSCRED so every message comes
// with the sender's kernel-checked credentials.
#pragma once

#include "base/result.h"
#include "base/unique_fd.h"

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace ioasid::examples {

struct NetlinkMessage {
  uint16_t type;
  std::string payload;           // up to the first NUL
  uint32_t sender_port;          // the source address: set by the kernel, not the sender
  std::optional<ucred> sender;   // SCM_CREDENTIALS: set by the kernel for netlink
};

class NetlinkSubscriber {
 public:
  // Joins `group` (1..32). EPERM without CAP_NET_ADMIN.
  static Result<NetlinkSubscriber> open(uint32_t group);

  // Waits for one datagram and calls on_message for each netlink message in it.
  // ENOBUFS means the socket overran and messages were lost; EMSGSIZE means a datagram
  // larger than 64 KiB arrived and was dropped (the daemon never sends one, but anyone
  // may send on NETLINK_USERSOCK). After either, go on receiving.
  Result<void> receive(const std::function<void(const NetlinkMessage&)>& on_message);

  uint32_t group() const { return group_; }

 private:
  NetlinkSubscriber(UniqueFd fd, uint32_t group) : fd_(std::move(fd)), group_(group) {}
  UniqueFd fd_;
  uint32_t group_;
};

}  // namespace ioasid::examples

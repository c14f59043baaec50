// SPDX-License-Identifier: MIT
// Receives ioasidd's netlink event messages (docs/EVENTS.md) with libnl-3: a
// NETLINK_USERSOCK socket joined to one multicast group (nl_socket_add_membership),
// with SO_PASSCRED so every message comes with the sender's kernel-checked
// credentials; nl_recvmsgs splits each datagram and hands us the messages.
#pragma once

#include "base/result.h"

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

struct nl_sock;

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
  // ENOBUFS means the socket overran and messages were lost; go on receiving after it.
  // A datagram of any size is taken whole (libnl peeks at its length first): the
  // kernel bounds it by our receive buffer, so anyone's large forgery costs nothing
  // more than that and is judged like any other message.
  Result<void> receive(const std::function<void(const NetlinkMessage&)>& on_message);

  uint32_t group() const { return group_; }

 private:
  struct SocketDeleter {
    void operator()(nl_sock* socket) const;
  };
  using SocketPtr = std::unique_ptr<nl_sock, SocketDeleter>;

  NetlinkSubscriber(SocketPtr socket, uint32_t group) : socket_(std::move(socket)), group_(group) {}
  SocketPtr socket_;
  uint32_t group_;
};

}  // namespace ioasid::examples

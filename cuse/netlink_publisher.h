// SPDX-License-Identifier: MIT
// Publishes daemon events as netlink multicast messages (NETLINK_USERSOCK).
//
// Wire format (docs/EVENTS.md): one netlink message per event, nlmsg_type
// kNetlinkEventType, nlmsg_flags 0, nlmsg_seq counting messages from 1, nlmsg_pid the
// publisher's port; the payload is the event's JSON text followed by one NUL byte.
//
// Trust: any local user may send on NETLINK_USERSOCK, so a message on the group
// proves nothing by itself. Subscribers (which need CAP_NET_ADMIN to join) must
// check the sender's port (the source address of recvmsg, set by the kernel) and
// its SCM_CREDENTIALS (uid 0 or the daemon's uid, pid = the daemon's pid); the
// admin `status` command tells them the port and pid.
//
// This header has no libnl include on purpose: subscribers (ioasidctl monitor) take
// the wire constants from here without the daemon's libnl types.
#pragma once

#include "base/result.h"

#include <cstdint>
#include <memory>
#include <string>

struct nl_sock;

namespace ioasid::daemon {

// nlmsg_type of an event message. Types below NLMSG_MIN_TYPE (0x10) are netlink's
// own control messages (NOOP, ERROR, DONE, OVERRUN); 0x20 leaves room for both.
inline constexpr uint16_t kNetlinkEventType = 0x20;  // IOASID_NL_EVENT
inline constexpr uint32_t kDefaultNetlinkGroup = 23;
// NETLINK_USERSOCK has 32 multicast groups, and a sender names its destination
// group with the 32-bit sockaddr_nl.nl_groups mask, so 1..32 is the usable range.
inline constexpr uint32_t kMaxNetlinkGroup = 32;

class NetlinkPublisher {
 public:
  // A connected, non-blocking NETLINK_USERSOCK socket that sends to `group`
  // (1..kMaxNetlinkGroup, else EINVAL). Needs no privilege.
  static Result<std::unique_ptr<NetlinkPublisher>> open(uint32_t group);

  NetlinkPublisher(const NetlinkPublisher&) = delete;
  NetlinkPublisher& operator=(const NetlinkPublisher&) = delete;
  ~NetlinkPublisher();

  // Sends one event message to the group. Never blocks: a subscriber whose buffer is
  // full loses the message (its next recv reports ENOBUFS), the publisher does not
  // wait. Success means the kernel accepted the multicast; having no subscriber is
  // not an error. Not thread-safe: call it from one thread at a time (the relay does).
  Result<void> publish(const std::string& json);

  uint32_t port() const { return port_; }  // nl_pid subscribers must see as the source
  uint32_t group() const { return group_; }
  uint64_t published() const { return sequence_; }

 private:
  struct SocketDeleter {
    void operator()(nl_sock* socket) const;
  };
  using SocketPtr = std::unique_ptr<nl_sock, SocketDeleter>;

  NetlinkPublisher(SocketPtr socket, uint32_t group, uint32_t port);

  SocketPtr socket_;
  uint32_t group_;
  uint32_t port_;
  uint32_t sequence_ = 0;
};

}  // namespace ioasid::daemon

// SPDX-License-Identifier: MIT
#include "netlink_publisher.h"

#include <linux/netlink.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>

#include <cerrno>
#include <cstring>

namespace ioasid::daemon {

namespace {

struct MessageDeleter {
  void operator()(nl_msg* message) const { nlmsg_free(message); }
};
using MessagePtr = std::unique_ptr<nl_msg, MessageDeleter>;

// libnl returns its own NLE_* codes; the errno of the failed syscall is usually still
// set and says more, so prefer it.
int errno_or(int fallback) { return errno != 0 ? errno : fallback; }

}  // namespace

void NetlinkPublisher::SocketDeleter::operator()(nl_sock* socket) const { nl_socket_free(socket); }

NetlinkPublisher::NetlinkPublisher(SocketPtr socket, uint32_t group, uint32_t port)
    : socket_(std::move(socket)), group_(group), port_(port) {}

NetlinkPublisher::~NetlinkPublisher() = default;

Result<std::unique_ptr<NetlinkPublisher>> NetlinkPublisher::open(uint32_t group) {
  if (group == 0 || group > kMaxNetlinkGroup)
    return fail(EINVAL, "netlink group {} is outside 1..{}", group, kMaxNetlinkGroup);

  SocketPtr socket(nl_socket_alloc());
  if (!socket) return fail(ENOMEM, "nl_socket_alloc failed");
  errno = 0;
  if (int rc = nl_connect(socket.get(), NETLINK_USERSOCK); rc < 0)
    return fail(errno_or(EIO), "nl_connect(NETLINK_USERSOCK): {}", nl_geterror(rc));
  errno = 0;
  if (int rc = nl_socket_set_nonblocking(socket.get()); rc < 0)
    return fail(errno_or(EIO), "nl_socket_set_nonblocking: {}", nl_geterror(rc));

  // Every message goes to the group: nl_send addresses the socket's peer, which is
  // port 0 (no unicast peer: the kernel, which has no USERSOCK socket) and our group.
  nl_socket_set_peer_port(socket.get(), 0);
  nl_socket_set_peer_groups(socket.get(), 1u << (group - 1));

  const uint32_t port = nl_socket_get_local_port(socket.get());
  return std::unique_ptr<NetlinkPublisher>(new NetlinkPublisher(std::move(socket), group, port));
}

Result<void> NetlinkPublisher::publish(const std::string& json) {
  MessagePtr message(nlmsg_alloc_simple(kNetlinkEventType, 0));
  if (!message) return fail(ENOMEM, "nlmsg_alloc_simple failed");
  // Payload: the JSON text and its NUL, so C subscribers can print it in place.
  if (nlmsg_append(message.get(), const_cast<char*>(json.c_str()), json.size() + 1, NLMSG_ALIGNTO) < 0)
    return fail(EMSGSIZE, "event of {} bytes does not fit a netlink message", json.size());
  // nl_send, not nl_send_auto: the header is ours as docs/EVENTS.md gives it (flags 0,
  // our own sequence), where nl_complete_msg would add NLM_F_REQUEST|NLM_F_ACK.
  nlmsghdr* header = nlmsg_hdr(message.get());
  header->nlmsg_pid = port_;
  header->nlmsg_seq = sequence_ + 1;

  errno = 0;
  const int rc = nl_send(socket_.get(), message.get());
  // netlink_sendmsg broadcasts to the group first and then unicasts to nl_pid 0; that
  // unicast finds no kernel socket for NETLINK_USERSOCK and reports ECONNREFUSED
  // (libnl: NLE_OBJ_NOTFOUND, errno kept) although every subscriber got the message.
  if (rc < 0 && errno != ECONNREFUSED)
    return fail(errno_or(EIO), "netlink send to group {}: {}", group_, nl_geterror(rc));
  ++sequence_;
  return success();
}

}  // namespace ioasid::daemon

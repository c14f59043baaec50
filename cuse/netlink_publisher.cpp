// SPDX-License-Identifier: MIT
#include "netlink_publisher.h"

#include <linux/netlink.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <sys/socket.h>

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

  const uint32_t port = nl_socket_get_local_port(socket.get());
  return std::unique_ptr<NetlinkPublisher>(new NetlinkPublisher(std::move(socket), group, port));
}

Result<void> NetlinkPublisher::publish(const std::string& json) {
  MessagePtr message(nlmsg_alloc_simple(kNetlinkEventType, 0));
  if (!message) return fail(ENOMEM, "nlmsg_alloc_simple failed");
  // Payload: the JSON text and its NUL, so C subscribers can print it in place.
  if (nlmsg_append(message.get(), const_cast<char*>(json.c_str()), json.size() + 1, NLMSG_ALIGNTO) < 0)
    return fail(EMSGSIZE, "event of {} bytes does not fit a netlink message", json.size());
  nlmsghdr* header = nlmsg_hdr(message.get());
  header->nlmsg_pid = port_;
  header->nlmsg_seq = sequence_ + 1;

  sockaddr_nl destination{};
  destination.nl_family = AF_NETLINK;
  destination.nl_pid = 0;  // no unicast peer: the kernel, which has no USERSOCK socket
  destination.nl_groups = 1u << (group_ - 1);

  // Sent with sendto rather than nl_send so the exact errno is visible (libnl folds
  // ECONNREFUSED into a generic code).
  ssize_t sent = ::sendto(nl_socket_get_fd(socket_.get()), header, header->nlmsg_len, MSG_DONTWAIT,
                          reinterpret_cast<const sockaddr*>(&destination), sizeof destination);
  // netlink_sendmsg broadcasts to the group first and then unicasts to nl_pid 0;
  // that unicast finds no kernel socket for NETLINK_USERSOCK and reports
  // ECONNREFUSED although every subscriber already got the message.
  if (sent < 0 && errno != ECONNREFUSED)
    return fail(errno, "netlink send to group {}: {}", group_, std::strerror(errno));
  ++sequence_;
  return success();
}

}  // namespace ioasid::daemon

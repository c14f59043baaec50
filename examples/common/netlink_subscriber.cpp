// SPDX-License-Identifier: MIT
#include "netlink_subscriber.h"

#include <linux/netlink.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace ioasid::examples {

Result<NetlinkSubscriber> NetlinkSubscriber::open(uint32_t group) {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_USERSOCK));
  if (!fd) return fail(errno, "socket(NETLINK_USERSOCK): {}", std::strerror(errno));
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;  // nl_pid 0: the kernel picks our port
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0)
    return fail(errno, "bind netlink socket: {}", std::strerror(errno));
  // Membership by setsockopt works for every group number, unlike the bind mask.
  if (::setsockopt(fd.get(), SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) != 0) {
    const int code = errno;
    return fail(code, "join netlink group {}: {}{}", group, std::strerror(code),
                code == EPERM ? " (needs CAP_NET_ADMIN)" : "");
  }
  int on = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0)
    return fail(errno, "SO_PASSCRED: {}", std::strerror(errno));
  return NetlinkSubscriber(std::move(fd), group);
}

Result<void> NetlinkSubscriber::receive(const std::function<void(const NetlinkMessage&)>& on_message) {
  std::vector<char> buffer(65536);
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
  sockaddr_nl source{};
  iovec io{buffer.data(), buffer.size()};
  msghdr header{};
  header.msg_name = &source;
  header.msg_namelen = sizeof source;
  header.msg_iov = &io;
  header.msg_iovlen = 1;
  header.msg_control = control;
  header.msg_controllen = sizeof control;

  // MSG_TRUNC: netlink then returns the datagram's real length, for the report below.
  ssize_t length = ::recvmsg(fd_.get(), &header, MSG_TRUNC);
  if (length < 0) {
    if (errno == EINTR) return success();
    return fail(errno, "receive on netlink group {}: {}", group_, std::strerror(errno));
  }

  std::optional<ucred> sender;
  for (cmsghdr* c = CMSG_FIRSTHDR(&header); c; c = CMSG_NXTHDR(&header, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
      ucred credentials;
      std::memcpy(&credentials, CMSG_DATA(c), sizeof credentials);
      sender = credentials;
    }
  }
  // Not fatal: any local user can send a datagram this large to the group, and one
  // must not be able to end a subscriber with it.
  if ((header.msg_flags & MSG_TRUNC) || static_cast<size_t>(length) > buffer.size())
    return fail(EMSGSIZE, "dropped a datagram of {} bytes (more than {}) from port {} pid {} uid {}", length,
                buffer.size(), source.nl_pid, sender ? sender->pid : 0, sender ? sender->uid : 0);

  // NLMSG_OK/NLMSG_NEXT by hand: the macros mix signed and unsigned lengths. The
  // last message's padding may run past the datagram: offset is checked first.
  const auto total = static_cast<size_t>(length);
  for (size_t offset = 0; offset < total && total - offset >= sizeof(nlmsghdr);) {
    const auto* message = reinterpret_cast<const nlmsghdr*>(buffer.data() + offset);
    if (message->nlmsg_len < NLMSG_HDRLEN || message->nlmsg_len > total - offset) break;
    const char* payload = static_cast<const char*>(NLMSG_DATA(message));
    const size_t payload_length = message->nlmsg_len - NLMSG_HDRLEN;
    on_message(NetlinkMessage{message->nlmsg_type, std::string(payload, ::strnlen(payload, payload_length)),
                              source.nl_pid, sender});
    offset += NLMSG_ALIGN(message->nlmsg_len);
  }
  return success();
}

}  // namespace ioasid::examples

// SPDX-License-Identifier: MIT
#include "netlink_subscriber.h"

#include <linux/netlink.h>
#include <netlink/errno.h>
#include <netlink/handlers.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>

#include <cerrno>
#include <cstring>
#include <exception>

namespace ioasid::examples {

namespace {

// libnl returns its own NLE_* codes; the errno of the failed syscall is usually still
// set and says more (EPERM from the membership, ENOBUFS from recvmsg), so prefer it.
int errno_or(int fallback) { return errno != 0 ? errno : fallback; }

// What the C callback needs: the caller's function, and an exception it threw, which
// must not unwind through libnl's C frames.
struct Delivery {
  const std::function<void(const NetlinkMessage&)>* on_message;
  std::exception_ptr failure;
};

int deliver(nl_msg* message, void* argument) {
  auto& delivery = *static_cast<Delivery*>(argument);
  const nlmsghdr* header = nlmsg_hdr(message);
  const auto* payload = static_cast<const char*>(nlmsg_data(header));
  const int length = nlmsg_datalen(header);
  const ucred* credentials = nlmsg_get_creds(message);
  const sockaddr_nl* source = nlmsg_get_src(message);
  try {
    (*delivery.on_message)(NetlinkMessage{
        header->nlmsg_type,
        std::string(payload, ::strnlen(payload, length > 0 ? static_cast<size_t>(length) : 0)),
        source ? source->nl_pid : 0,
        credentials ? std::optional<ucred>(*credentials) : std::nullopt});
  } catch (...) {
    delivery.failure = std::current_exception();
    return NL_STOP;
  }
  // NL_SKIP: libnl must not act on the message itself. Anyone may send to the group,
  // and a forged NLMSG_ERROR would otherwise end nl_recvmsgs with its error code.
  return NL_SKIP;
}

}  // namespace

void NetlinkSubscriber::SocketDeleter::operator()(nl_sock* socket) const { nl_socket_free(socket); }

Result<NetlinkSubscriber> NetlinkSubscriber::open(uint32_t group) {
  SocketPtr socket(nl_socket_alloc());
  if (!socket) return fail(ENOMEM, "nl_socket_alloc failed");
  // Multicast messages carry the daemon's sequence numbers, not answers to ours.
  nl_socket_disable_seq_check(socket.get());
  // Peek at each datagram's length first, so one larger than a page is read whole.
  nl_socket_enable_msg_peek(socket.get());
  errno = 0;
  if (int rc = nl_connect(socket.get(), NETLINK_USERSOCK); rc < 0)
    return fail(errno_or(EIO), "connect a NETLINK_USERSOCK socket: {}", nl_geterror(rc));
  errno = 0;
  // Membership by setsockopt (what nl_socket_add_membership does) works for every
  // group number, unlike the bind mask.
  if (int rc = nl_socket_add_membership(socket.get(), static_cast<int>(group)); rc < 0) {
    const int code = errno_or(EIO);
    return fail(code, "join netlink group {}: {}{}", group, std::strerror(code),
                code == EPERM ? " (needs CAP_NET_ADMIN)" : "");
  }
  errno = 0;
  if (int rc = nl_socket_set_passcred(socket.get(), 1); rc < 0)
    return fail(errno_or(EIO), "SO_PASSCRED: {}", nl_geterror(rc));
  return NetlinkSubscriber(std::move(socket), group);
}

Result<void> NetlinkSubscriber::receive(const std::function<void(const NetlinkMessage&)>& on_message) {
  Delivery delivery{&on_message, nullptr};
  // NL_CB_MSG_IN sees every message first, control types included; the caller judges
  // the sender and the type.
  if (int rc = nl_socket_modify_cb(socket_.get(), NL_CB_MSG_IN, NL_CB_CUSTOM, deliver, &delivery); rc < 0)
    return fail(EINVAL, "nl_socket_modify_cb: {}", nl_geterror(rc));
  errno = 0;
  const int rc = nl_recvmsgs_default(socket_.get());
  if (delivery.failure) std::rethrow_exception(delivery.failure);
  if (rc >= 0) return success();
  const int code = errno;
  if (code == EINTR || code == EAGAIN) return success();
  if (code == ENOBUFS) return fail(ENOBUFS, "netlink group {}: receive buffer overran", group_);
  // Not a syscall's failure: something about a datagram (anyone may send one) that
  // is not the end of the subscription.
  if (code == 0) return fail(EBADMSG, "netlink group {}: dropped a datagram: {}", group_, nl_geterror(rc));
  return fail(code != 0 ? code : EIO, "receive on netlink group {}: {}", group_, nl_geterror(rc));
}

}  // namespace ioasid::examples

// SPDX-License-Identifier: MIT
#include "admin_client.h"

#include "names.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

namespace ioasid::examples {

using json = nlohmann::json;

Result<AdminClient> AdminClient::connect(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof address.sun_path)
    return fail(ENAMETOOLONG, "admin socket path \"{}\" is empty or too long", path);
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail(errno, "socket(AF_UNIX): {}", std::strerror(errno));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    const int code = errno;
    // ENOENT: no daemon made the socket; ECONNREFUSED: a file left by one that is gone.
    const char* hint =
        code == ENOENT || code == ECONNREFUSED
            ? "; is ioasidd running? Start it (ioasidd, or systemctl start ioasidd), or give --socket the path "
              "of its --admin-socket"
        : code == EACCES ? "; the admin socket admits root and members of ioasidd's --admin-group"
                         : "";
    return fail(code, "connect {}: {}{}", path, std::strerror(code), hint);
  }
  return AdminClient(path, std::move(fd));
}

Result<void> AdminClient::send_line(const std::string& line) {
  std::string data = line + "\n";
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd_.get(), data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(errno, "write to {}: {}", path_, std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  return success();
}

Result<std::optional<std::string>> AdminClient::read_line() {
  size_t scanned = 0;
  for (;;) {
    if (size_t end = buffer_.find('\n', scanned); end != std::string::npos) {
      std::string line = buffer_.substr(0, end);
      buffer_.erase(0, end + 1);
      return std::optional<std::string>(std::move(line));
    }
    scanned = buffer_.size();
    if (buffer_.size() > kMaxReplyBytes)
      return fail(EMSGSIZE, "reply from {} exceeds {} bytes", path_, kMaxReplyBytes);
    char chunk[65536];
    ssize_t n = ::read(fd_.get(), chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(errno, "read from {}: {}", path_, std::strerror(errno));
    if (n == 0) return std::optional<std::string>();
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

Result<json> AdminClient::read_reply(const std::string& cmd) {
  auto line = read_line();
  if (!line) return std::move(line).error();
  if (!*line) return fail(ECONNRESET, "{} closed the connection without answering {}", path_, cmd);
  json reply = json::parse(**line, nullptr, /*allow_exceptions=*/false);
  if (reply.is_discarded() || !reply.is_object() || !reply.contains("ok"))
    return fail(EPROTO, "{} answered {} with something that is not a reply", path_, cmd);
  if (reply.value("ok", false)) return reply.value("result", json::object());
  // The daemon's error: keep its errno so callers can tell EACCES from EINVAL.
  const std::string name = reply.value("errno", "");
  const int code = errno_from_name(name);
  return Error{code != 0 ? code : EPROTO,
               fmt::format("{} ({})", reply.value("error", "unknown error"), name)};
}

Result<json> AdminClient::call(const std::string& cmd, json args) {
  args["cmd"] = cmd;
  if (auto sent = send_line(args.dump()); !sent) {
    // A daemon that refuses us writes one error line and closes, possibly before our
    // request went out: its reason beats our EPIPE.
    auto refusal = read_reply(cmd);
    if (!refusal && refusal.code() != ECONNRESET) return refusal;
    return std::move(sent).error();
  }
  return read_reply(cmd);
}

Result<void> AdminClient::start_events() {
  auto reply = call("events");
  if (!reply) return std::move(reply).error();
  return success();
}

Result<std::optional<json>> AdminClient::next_event() {
  auto line = read_line();
  if (!line) return std::move(line).error();
  if (!*line) return std::optional<json>();
  json event = json::parse(**line, nullptr, /*allow_exceptions=*/false);
  if (event.is_discarded() || !event.is_object())
    return fail(EPROTO, "{} sent a line that is not an event: {}", path_, **line);
  return std::optional<json>(std::move(event));
}

}  // namespace ioasid::examples

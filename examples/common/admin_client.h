// SPDX-License-Identifier: MIT
// A client of ioasidd's admin socket (JSON lines, docs/ADMIN.md).
#pragma once

#include "base/result.h"
#include "base/unique_fd.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <optional>
#include <string>

namespace ioasid::examples {

inline constexpr const char* kDefaultAdminSocket = "/run/ioasidd/admin.sock";

class AdminClient {
 public:
  // Connects; ENOENT/ECONNREFUSED/EACCES come back with a hint for the user.
  static Result<AdminClient> connect(const std::string& path);

  // Sends {"cmd":cmd, ...args} and reads one reply. The daemon's own errors
  // ({"ok":false}) come back as an Error with the daemon's errno and reason.
  Result<nlohmann::json> call(const std::string& cmd, nlohmann::json args = nlohmann::json::object());

  // Asks for the event stream; afterwards next_event() returns one event per call.
  Result<void> start_events();
  // The next event object; nullopt when the daemon closed the stream.
  Result<std::optional<nlohmann::json>> next_event();

  const std::string& path() const { return path_; }

 private:
  // Replies can be large (a pasids list); anything past this is not a reply.
  static constexpr size_t kMaxReplyBytes = 256u << 20;

  AdminClient(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  Result<void> send_line(const std::string& line);
  Result<std::optional<std::string>> read_line();  // nullopt on EOF
  Result<nlohmann::json> read_reply(const std::string& cmd);

  std::string path_;
  UniqueFd fd_;
  std::string buffer_;  // bytes read past the last line
};

}  // namespace ioasid::examples

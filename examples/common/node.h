// The /dev/ioasid node as the example programs use it: which path, open, ioctl.
#pragma once

#include "base/result.h"
#include "base/unique_fd.h"

#include <linux/ioasid.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

namespace ioasid::examples {

inline constexpr const char* kDefaultNodePath = "/dev/ioasid";

// The node to open: the --dev option if given, else $IOASID_DEV, else /dev/ioasid.
std::string resolve_node_path(const std::string& dev_option);

class Node {
 public:
  // Opens read-write (the ioctls need it). The error says what to try next.
  static Result<Node> open(const std::string& path);

  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }

  Result<uint32_t> api_version() const;
  Result<bool> has_extension(uint32_t feature_index) const;
  Result<ioasid_info> info() const;

  // One struct ioctl; the error carries the errno and the command's name.
  template <typename Arg>
  Result<long> call(unsigned long cmd, Arg& arg, std::string_view name) const {
    long rc = ::ioctl(fd_.get(), cmd, &arg);
    if (rc < 0) return fail(errno, "{}: {}", name, std::strerror(errno));
    return rc;
  }

 private:
  Node(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::string path_;
  UniqueFd fd_;
};

}  // namespace ioasid::examples

#include "node.h"

#include <fcntl.h>

#include <cstdlib>

namespace ioasid::examples {

std::string resolve_node_path(const std::string& dev_option) {
  if (!dev_option.empty()) return dev_option;
  if (const char* env = std::getenv("IOASID_DEV"); env && *env) return env;
  return kDefaultNodePath;
}

Result<Node> Node::open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) {
    const int code = errno;
    const char* hint = code == ENOENT   ? " (is ioasidd running? pass --dev or set IOASID_DEV)"
                       : code == EACCES ? " (the node is root-only unless ioasidd got --node-group)"
                                        : "";
    return fail(code, "open {}: {}{}", path, std::strerror(code), hint);
  }
  return Node(path, std::move(fd));
}

Result<uint32_t> Node::api_version() const {
  long rc = ::ioctl(fd_.get(), IOASID_GET_API_VERSION);
  if (rc < 0) return fail(errno, "IOASID_GET_API_VERSION: {}", std::strerror(errno));
  return static_cast<uint32_t>(rc);
}

Result<bool> Node::has_extension(uint32_t feature_index) const {
  long rc = ::ioctl(fd_.get(), IOASID_CHECK_EXTENSION, static_cast<unsigned long>(feature_index));
  if (rc < 0) return fail(errno, "IOASID_CHECK_EXTENSION({}): {}", feature_index, std::strerror(errno));
  return rc == 1;
}

Result<ioasid_info> Node::info() const {
  ioasid_info info{};
  if (auto rc = call(IOASID_GET_INFO, info, "IOASID_GET_INFO"); !rc) return std::move(rc).error();
  return info;
}

}  // namespace ioasid::examples

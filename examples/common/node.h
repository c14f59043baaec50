// SPDX-License-Identifier: MIT
// The node as the example programs open it, and their errors in libioasid's terms.
#pragma once

#include <ioasid/client.hpp>

#include <fmt/format.h>

#include <string>
#include <utility>

namespace ioasid::examples {

namespace client = ioasid::client;

// The node to open: the --dev option if given, else $IOASID_DEV, else /dev/ioasid.
inline std::string node_path(const std::string& dev_option) {
  return dev_option.empty() ? client::default_path() : dev_option;
}

// A libioasid error with a formatted reason: return fail(EIO, "DMA ended {}", status);
template <typename... Args>
[[nodiscard]] client::Error fail(int code, fmt::format_string<Args...> format, Args&&... args) {
  return client::Error{code, fmt::format(format, std::forward<Args>(args)...)};
}

}  // namespace ioasid::examples

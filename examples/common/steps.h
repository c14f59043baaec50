// SPDX-License-Identifier: MIT
// The numbered step lines the demo programs print: "[3] what happened".
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <utility>

namespace ioasid::examples {

inline int step_number = 0;

template <typename... Args>
void step(fmt::format_string<Args...> format, Args&&... args) {
  fmt::print("[{}] {}\n", ++step_number, fmt::format(format, std::forward<Args>(args)...));
  std::fflush(stdout);
}

}  // namespace ioasid::examples

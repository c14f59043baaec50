// SPDX-License-Identifier: MIT
// What the libioasid sources share: issuing one ioctl on a borrowed descriptor and
// turning errno into an Error. Not installed.
#pragma once

#include "ioasid/client.hpp"

#include <sys/ioctl.h>

#include <cerrno>
#include <string>
#include <string_view>

namespace ioasid::client::detail {

// "open /dev/ioasid: No such file or directory" for `code`.
Error errno_error(std::string_view what, int code);
// "IOASID_MAP_DMA: Invalid argument" for `code`.
Error ioctl_error(unsigned long cmd, int code);

// ioctl(fd, cmd, &arg) for a struct command.
template <typename Arg>
Result<void> issue(int fd, unsigned long cmd, Arg& arg) {
  if (::ioctl(fd, cmd, &arg) < 0) return ioctl_error(cmd, errno);
  return {};
}

// A DETACH/FREE/UNMAP an object runs once: hands its descriptor over (so the
// destructor will not run it again) and issues the command; success when nothing was held.
template <typename Arg>
Result<void> undo(BorrowedFd& fd, unsigned long cmd, Arg& arg) {
  if (!fd) return {};
  return issue(fd.release(), cmd, arg);
}

}  // namespace ioasid::client::detail

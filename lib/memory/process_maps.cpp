// SPDX-License-Identifier: MIT
#include "memory/process_maps.h"

#include "base/unique_fd.h"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cstring>

namespace ioasid {
namespace {

// Splits off the next space-separated field, skipping leading spaces.
std::string_view next_field(std::string_view& rest) {
  const size_t begin = rest.find_first_not_of(' ');
  if (begin == std::string_view::npos) {
    rest = {};
    return {};
  }
  rest.remove_prefix(begin);
  const size_t end = std::min(rest.find(' '), rest.size());
  const std::string_view field = rest.substr(0, end);
  rest.remove_prefix(end);
  return field;
}

template <typename Number>
bool parse_number(std::string_view text, Number& value, int base) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  return error == std::errc() && end == text.data() + text.size() && !text.empty();
}

// "a-b" or "a:b" as two numbers in `base`.
template <typename Number>
bool parse_pair(std::string_view text, char separator, Number& first, Number& second, int base) {
  const size_t split = text.find(separator);
  return split != std::string_view::npos && parse_number(text.substr(0, split), first, base) &&
         parse_number(text.substr(split + 1), second, base);
}

}  // namespace

std::string MapsEntry::map_files_name() const { return fmt::format("{:x}-{:x}", start, end); }

Result<MapsEntry> parse_maps_line(std::string_view line) {
  std::string_view rest = line;
  const std::string_view range = next_field(rest);
  const std::string_view permissions = next_field(rest);
  const std::string_view offset = next_field(rest);
  const std::string_view device = next_field(rest);
  const std::string_view inode = next_field(rest);
  MapsEntry entry;
  if (!parse_pair(range, '-', entry.start, entry.end, 16) || entry.end <= entry.start ||
      permissions.size() != 4 || !parse_number(offset, entry.offset, 16) ||
      !parse_pair(device, ':', entry.device_major, entry.device_minor, 16) ||
      !parse_number(inode, entry.inode, 10))
    return fail(EIO, "unexpected line in a maps file: '{}'", line);
  entry.readable = permissions[0] == 'r';
  entry.writable = permissions[1] == 'w';
  entry.executable = permissions[2] == 'x';
  entry.shared = permissions[3] == 's';
  // The path is the rest after the padding; it may itself contain spaces.
  const size_t path_begin = rest.find_first_not_of(' ');
  if (path_begin != std::string_view::npos) entry.path = std::string(rest.substr(path_begin));
  return entry;
}

Result<std::vector<MapsEntry>> read_process_maps(pid_t pid) {
  const std::string path = fmt::format("/proc/{}/maps", pid);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    const int error = errno;
    if (error == ENOENT) return fail(ESRCH, "no process {} ({} does not exist)", pid, path);
    if (error == EACCES || error == EPERM)
      return fail(EPERM, "no ptrace access to pid {} (cannot read {})", pid, path);
    return fail(error, "open {}: {}", path, std::strerror(error));
  }
  // The kernel produces the file a page at a time; read it whole, then parse.
  std::string text;
  char buffer[16384];
  for (;;) {
    const ssize_t got = ::read(fd.get(), buffer, sizeof buffer);
    if (got > 0) {
      text.append(buffer, static_cast<size_t>(got));
    } else if (got == 0) {
      break;
    } else if (errno != EINTR) {
      const int error = errno;
      if (error == EACCES || error == EPERM)
        return fail(EPERM, "no ptrace access to pid {} (cannot read {})", pid, path);
      return fail(error, "read {}: {}", path, std::strerror(error));
    }
  }
  std::vector<MapsEntry> entries;
  std::string_view rest = text;
  while (!rest.empty()) {
    const size_t end = std::min(rest.find('\n'), rest.size());
    if (end > 0) {
      auto entry = parse_maps_line(rest.substr(0, end));
      if (!entry) return std::move(entry).error();
      entries.push_back(std::move(*entry));
    }
    rest.remove_prefix(std::min(end + 1, rest.size()));
  }
  return entries;
}

}  // namespace ioasid

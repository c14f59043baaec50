// SPDX-License-Identifier: MIT
// What a DMA request asks for and what a translation grants. Kept apart from any entry
// format: the second-level (R/W/X) and first-level (P, R/W, XD) formats both reduce to
// these three rights.
#pragma once

namespace ioasid::pgtable {

// The rights a request needs. An execute request is also a read: set both.
struct Access {
  bool read = false;
  bool write = false;
  bool exec = false;
};

struct Permissions {
  bool read = false;
  bool write = false;
  bool exec = false;

  friend bool operator==(const Permissions&, const Permissions&) = default;

  // Rights accumulate down a walk: an upper-level entry can only take rights away.
  constexpr Permissions operator&(const Permissions& other) const {
    return {read && other.read, write && other.write, exec && other.exec};
  }
  constexpr bool allows(const Access& access) const {
    return (!access.read || read) && (!access.write || write) && (!access.exec || exec);
  }
};

inline constexpr Permissions kAllPermissions{true, true, true};

}  // namespace ioasid::pgtable

// SPDX-License-Identifier: MIT
// Where memory a client mapped is for one calling thread (ATS_TRANSLATE's answer):
// MAP_DMA memory at the address it was mapped from, when the caller runs in that
// process's address space; MAP_FILE memory in the caller's own shared mapping of the
// file. Nothing here gives the caller access it lacks: it is only told where, in its
// own address space, bytes it can already reach are.
#pragma once

#include "memory/backing.h"
#include "memory/process_maps.h"

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <variant>
#include <vector>

namespace ioasid {

enum class Unreachable : uint8_t {
  kOtherProcess,   // MAP_DMA memory of another address space (or of a process gone)
  kFileNotMapped,  // MAP_FILE memory the caller has no shared mapping of, with the rights
};

struct CallerPlace {
  uint64_t address = 0;
  uint64_t length = 0;  // how far it runs on from there (never more than asked)
};

class CallerView {
 public:
  explicit CallerView(pid_t tid) : tid_(tid) {}

  // [origin, origin + length) as the caller reaches it, writable when `write`.
  // Several calls with one view read the caller's maps at most once.
  std::variant<CallerPlace, Unreachable> place(const ClientOrigin& origin, uint64_t length, bool write);

 private:
  bool same_address_space(pid_t pid);

  const pid_t tid_;
  std::map<pid_t, bool> same_;  // kcmp answers so far
  std::optional<std::vector<MapsEntry>> maps_;
};

}  // namespace ioasid

// SPDX-License-Identifier: MIT
#include "memory/address_space.h"

#include "memory/client_file.h"

#include <elf.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>

namespace ioasid {
namespace {

// The live handles of each recognised address space, by identity: one per access,
// and the number both share (kept while either lives, so two handles alive at the
// same time always agree on it).
struct Handles {
  std::weak_ptr<AddressSpace> read;
  std::weak_ptr<AddressSpace> write;
  uint64_t mm_id = 0;
  bool expired() const { return read.expired() && write.expired(); }
};

std::mutex spaces_mutex;
std::map<std::string, Handles> spaces;  // guarded by spaces_mutex
std::atomic<uint64_t> next_mm_id{1};

std::optional<std::string> read_small_file(const std::string& path) {
  UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file) return std::nullopt;
  std::string text(8192, '\0');
  size_t used = 0;
  for (;;) {
    const ssize_t got = ::read(file.get(), text.data() + used, text.size() - used);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    used += static_cast<size_t>(got);
    if (used == text.size()) text.resize(text.size() * 2);
  }
  text.resize(used);
  return text;
}

// The identity of the address space `memory` (a /proc/<tid>/mem) is bound to; empty
// when it cannot be told, and the handle is then not shared.
std::string identity(pid_t tid, int memory) {
  const pid_t group = thread_group_of(tid);
  if (group == 0) return {};
  const auto stat = read_small_file(fmt::format("/proc/{}/stat", group));
  const auto auxv = read_small_file(fmt::format("/proc/{}/auxv", tid));
  if (!stat || !auxv) return {};
  // The start time is field 22; the command name before it may hold spaces and ')'.
  const size_t comm_end = stat->rfind(')');
  if (comm_end == std::string::npos) return {};
  std::string_view fields = std::string_view(*stat).substr(comm_end + 2);
  for (int field = 3; field < 22; ++field) {
    const size_t space = fields.find(' ');
    if (space == std::string_view::npos) return {};
    fields.remove_prefix(space + 1);
  }
  const std::string_view start_time = fields.substr(0, fields.find(' '));
  uint64_t random_at = 0;
  for (size_t at = 0; at + 2 * sizeof(uint64_t) <= auxv->size(); at += 2 * sizeof(uint64_t)) {
    uint64_t entry[2];
    std::memcpy(entry, auxv->data() + at, sizeof entry);
    if (entry[0] == AT_RANDOM) random_at = entry[1];
  }
  char random[16];
  if (random_at == 0 || ::pread(memory, random, sizeof random, static_cast<off_t>(random_at)) != sizeof random)
    return {};
  return fmt::format("{} {} ", group, start_time) + *auxv + std::string(random, sizeof random);
}

Result<UniqueFd> open_memory(pid_t tid, MapAccess access) {
  const std::string path = fmt::format("/proc/{}/mem", tid);
  UniqueFd fd(::open(path.c_str(), (allows_write(access) ? O_RDWR : O_RDONLY) | O_CLOEXEC));
  if (fd) return fd;
  const int error = errno;
  if (error == EACCES || error == EPERM)
    return fail(EPERM,
                "no ptrace access to pid {} ({}): the daemon needs the client's uid, or "
                "CAP_SYS_PTRACE and CAP_DAC_OVERRIDE (the file is the client's), and "
                "kernel.yama.ptrace_scope must allow it",
                tid, path);
  if (error == ENOENT) return fail(ESRCH, "no process {} ({} does not exist)", tid, path);
  return fail(error, "open {}: {}", path, std::strerror(error));
}

}  // namespace

Result<std::shared_ptr<AddressSpace>> AddressSpace::of(pid_t tid, MapAccess access) {
  auto memory = open_memory(tid, access);
  IOASID_TRY(memory);
  const bool writable = allows_write(access);
  std::string key = identity(tid, memory->get());
  if (key.empty()) return std::make_shared<AddressSpace>(std::move(*memory), tid, writable, next_mm_id++);
  std::lock_guard lock(spaces_mutex);
  uint64_t mm_id = 0;
  if (auto found = spaces.find(key); found != spaces.end() && !found->second.expired()) {
    std::weak_ptr<AddressSpace>& same_access = writable ? found->second.write : found->second.read;
    if (auto space = same_access.lock()) return space;  // the fresh handle closes here
    mm_id = found->second.mm_id;  // the other access's handle is alive: the same mm
  }
  if (mm_id == 0) mm_id = next_mm_id++;
  auto space = std::make_shared<AddressSpace>(std::move(*memory), tid, writable, mm_id);
  std::erase_if(spaces, [](const auto& entry) { return entry.second.expired(); });
  Handles& handles = spaces[key];
  (writable ? handles.write : handles.read) = space;
  handles.mm_id = mm_id;
  return space;
}

}  // namespace ioasid

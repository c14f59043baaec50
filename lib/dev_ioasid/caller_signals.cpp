// SPDX-License-Identifier: MIT
#include "dev_ioasid/caller_signals.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <string>

#include "base/unique_fd.h"

namespace ioasid::dev_ioasid {
namespace {

uint64_t bit_of(int signal) { return uint64_t{1} << (signal - 1); }

// Signals whose default action stops, continues or does nothing: delivering one of
// them without a handler changes nothing the interrupted call could report.
bool default_action_spares_the_call(int signal) {
  switch (signal) {
    case SIGSTOP:
    case SIGTSTP:
    case SIGTTIN:
    case SIGTTOU:
    case SIGCONT:
    case SIGCHLD:
    case SIGURG:
    case SIGWINCH:
      return true;
    default:
      return false;
  }
}

}  // namespace

Result<SignalMasks> parse_signal_masks(std::string_view status_text) {
  struct Field {
    std::string_view name;
    uint64_t SignalMasks::*mask;
    bool seen = false;
  };
  Field fields[] = {{"SigPnd:", &SignalMasks::thread_pending},
                    {"ShdPnd:", &SignalMasks::shared_pending},
                    {"SigBlk:", &SignalMasks::blocked},
                    {"SigIgn:", &SignalMasks::ignored},
                    {"SigCgt:", &SignalMasks::caught}};
  SignalMasks masks;
  while (!status_text.empty()) {
    const size_t end = status_text.find('\n');
    std::string_view line = status_text.substr(0, end);
    status_text = end == std::string_view::npos ? std::string_view{} : status_text.substr(end + 1);
    for (Field& field : fields) {
      if (!line.starts_with(field.name)) continue;
      std::string_view value = line.substr(field.name.size());
      while (!value.empty() && (value.front() == '\t' || value.front() == ' ')) value.remove_prefix(1);
      uint64_t mask = 0;
      const auto [parsed_to, error] = std::from_chars(value.data(), value.data() + value.size(), mask, 16);
      if (error != std::errc{} || parsed_to != value.data() + value.size() || value.size() != 16)
        return fail(EINVAL, "{} {:?} is not 16 hex digits", field.name, value);
      masks.*field.mask = mask;
      field.seen = true;
    }
  }
  for (const Field& field : fields)
    if (!field.seen) return fail(EINVAL, "no {} line", field.name);
  return masks;
}

std::optional<int> signal_ending_the_call(const SignalMasks& masks) {
  // SIGKILL and SIGSTOP cannot be blocked; the kernel never shows them so, but a
  // hand-written mask might.
  const uint64_t unblockable = bit_of(SIGKILL) | bit_of(SIGSTOP);
  const uint64_t deliverable = (masks.thread_pending | masks.shared_pending) & (~masks.blocked | unblockable);
  for (int signal = 1; signal <= 64; ++signal) {
    if (!(deliverable & bit_of(signal))) continue;
    if (signal == SIGKILL) return signal;
    if (signal == SIGSTOP) continue;  // cannot be caught or ignored: it only stops
    if (masks.caught & bit_of(signal)) return signal;  // a handler runs
    if (masks.ignored & bit_of(signal)) continue;
    if (!default_action_spares_the_call(signal)) return signal;  // terminates, or dumps core
  }
  return std::nullopt;
}

Result<SignalMasks> read_signal_masks(pid_t tid) {
  if (tid <= 0) return fail(ESRCH, "no caller thread (pid {}): it is not in the daemon's pid namespace", tid);
  const std::string path = "/proc/" + std::to_string(tid) + "/task/" + std::to_string(tid) + "/status";
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail(errno, "open {}: {}", path, std::strerror(errno));
  std::string text(4096, '\0');
  size_t used = 0;
  for (;;) {
    if (used == text.size()) text.resize(text.size() * 2);
    const ssize_t got = ::read(fd.get(), text.data() + used, text.size() - used);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return fail(errno, "read {}: {}", path, std::strerror(errno));
    if (got == 0) break;
    used += static_cast<size_t>(got);
  }
  text.resize(used);
  return parse_signal_masks(text);
}

}  // namespace ioasid::dev_ioasid

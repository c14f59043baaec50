// SPDX-License-Identifier: MIT
#include "memory/sigbus_guard.h"

#include <sys/mman.h>

#include <csignal>
#include <mutex>

namespace ioasid {
namespace {

// Plain pointer with no dynamic initialisation: safe to read from a signal handler.
thread_local SigbusGuard* innermost_guard = nullptr;

struct sigaction previous_action;

void handle_sigbus(int signal, siginfo_t* info, void* context) {
  const auto* address = static_cast<const std::byte*>(info->si_addr);
  for (SigbusGuard* guard = innermost_guard; guard != nullptr; guard = guard->outer) {
    if (address < guard->base || address >= guard->base + guard->size) continue;
    // Zero pages over the whole region: no further access to it can fault, whichever
    // thread makes it. The region stays the same size, so its owner unmaps it as usual.
    void* replaced = ::mmap(guard->base, guard->size, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    if (replaced == MAP_FAILED) break;
    guard->broken.store(true, std::memory_order_relaxed);
    return;
  }
  // Not ours. With the default action, returning re-runs the faulting instruction,
  // which faults again and terminates the process as if no handler existed.
  if (previous_action.sa_flags & SA_SIGINFO) {
    previous_action.sa_sigaction(signal, info, context);
  } else if (previous_action.sa_handler == SIG_DFL || previous_action.sa_handler == SIG_IGN) {
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    ::sigaction(SIGBUS, &default_action, nullptr);
  } else {
    previous_action.sa_handler(signal);
  }
}

}  // namespace

void install_sigbus_handler() {
  static std::once_flag installed;
  std::call_once(installed, [] {
    struct sigaction action {};
    action.sa_sigaction = handle_sigbus;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGBUS, &action, &previous_action);
  });
}

SigbusGuard::SigbusGuard(std::byte* base_in, size_t size_in, std::atomic<bool>& broken_in)
    : base(base_in), size(size_in), broken(broken_in), outer(innermost_guard) {
  innermost_guard = this;
  // The compiler must not move the guarded accesses above this point.
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

SigbusGuard::~SigbusGuard() {
  std::atomic_signal_fence(std::memory_order_seq_cst);
  innermost_guard = outer;
}

}  // namespace ioasid

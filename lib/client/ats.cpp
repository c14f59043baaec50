// SPDX-License-Identifier: MIT
// AtsCache and AtsInvalidationServer: a device model's ATC over ATS_TRANSLATE and
// ATS_INV_ACK.
#include "internal.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>

namespace ioasid::client {
namespace {

constexpr uint32_t kRunsPerRequest = 64;
// Invalidations remembered for the in-flight rule; an answer older than all of them
// is discarded unseen.
constexpr size_t kRemembered = 256;
// Answers discarded in a row before the access gives up with RETRY.
constexpr int kMaxDiscards = 64;

using Pieces = std::vector<std::span<std::byte>>;

struct Want {
  uint64_t iova;
  uint64_t length;
  bool write;
};

struct Entry {
  uint64_t last;  // inclusive
  std::byte* data;
};
using Entries = std::map<uint64_t, Entry>;  // by first IOVA, disjoint

void erase_overlapping(Entries& entries, uint64_t first, uint64_t last) {
  auto it = entries.upper_bound(first);
  if (it != entries.begin() && std::prev(it)->second.last >= first) --it;
  while (it != entries.end() && it->first <= last) it = entries.erase(it);
}

}  // namespace

struct AtsCache::State {
  State(int fd, uint32_t dev_id, AtsOptions options) : fd(fd), dev_id(dev_id), options(options) {}
  const int fd;
  const uint32_t dev_id;
  const AtsOptions options;

  mutable std::shared_mutex mutex;  // shared: accesses in progress; exclusive: changes
  std::array<Entries, 2> entries;   // [0] read, [1] write translations
  std::atomic<uint64_t> generation{0};
  struct Seen {
    uint64_t generation, first, last;
  };
  std::deque<Seen> seen;
  std::atomic<uint64_t> translations{0}, invalidations{0}, discarded{0};

  // With the lock held either way: the pieces of `want` the cache has, from its start.
  uint64_t gather(const Want& want, Pieces& pieces) const {
    const Entries& map = entries[want.write];
    uint64_t covered = 0;
    while (covered < want.length) {
      const uint64_t iova = want.iova + covered;
      auto it = map.upper_bound(iova);
      if (it == map.begin()) break;
      --it;
      if (it->second.last < iova) break;
      const uint64_t into = iova - it->first;
      const uint64_t take = std::min(want.length - covered, it->second.last - iova + 1);
      pieces.push_back({it->second.data + into, take});
      covered += take;
    }
    return covered;
  }

  // ATS_TRANSLATE from want's iova + `from`, the answer kept unless an invalidation
  // overtook it. nullopt: discarded, ask again.
  Result<std::optional<AtsOutcome>> translate(const Want& want, uint64_t from) {
    std::array<ioasid_ats_run, kRunsPerRequest> runs{};
    ioasid_ats_translate request{
        .flags = (want.write ? IOASID_ATS_WRITE : 0u) | (options.pasid ? IOASID_ATS_PASID : 0u) |
                 (options.privileged ? IOASID_ATS_PRIV : 0u) | (options.nowait ? IOASID_ATS_NOWAIT : 0u),
        .dev_id = dev_id,
        .pasid = options.pasid.value_or(0),
        .num_runs = kRunsPerRequest,
        .iova = want.iova + from,
        .length = want.length - from,
        .runs_uptr = reinterpret_cast<uintptr_t>(runs.data()),
    };
    const uint64_t asked_at = generation.load(std::memory_order_acquire);
    IOASID_CLIENT_TRY(detail::issue(fd, IOASID_ATS_TRANSLATE, request));
    translations.fetch_add(1, std::memory_order_relaxed);
    std::unique_lock lock(mutex);
    if (request.out_length != 0 && overtaken(asked_at, request.iova, request.iova + request.out_length - 1)) {
      discarded.fetch_add(1, std::memory_order_relaxed);
      return std::optional<AtsOutcome>();
    }
    for (uint32_t i = 0; i < request.num_runs; ++i) {
      const ioasid_ats_run& run = runs[i];
      erase_overlapping(entries[want.write], run.iova, run.iova + run.length - 1);
      entries[want.write].emplace(run.iova,
                                  Entry{run.iova + run.length - 1, reinterpret_cast<std::byte*>(run.uaddr)});
    }
    return std::optional(AtsOutcome{request.out_status == IOASID_ATS_MORE ? IOASID_ATS_OK : request.out_status, 0,
                                    request.out_fault_addr, request.out_fault_reason});
  }

  // With the lock held exclusively: did an invalidation received after `asked_at`
  // name [first, last]?
  bool overtaken(uint64_t asked_at, uint64_t first, uint64_t last) const {
    if (generation.load(std::memory_order_relaxed) == asked_at) return false;
    if (seen.empty() || seen.front().generation > asked_at + 1) return true;  // forgotten: assume so
    return std::ranges::any_of(seen, [&](const Seen& s) {
      return s.generation > asked_at && s.first <= last && s.last >= first;
    });
  }

  // Runs `use` with every want's pieces under the shared lock, translating what is
  // missing first. On a translation that fails, `use` gets the prefix all wants have.
  template <typename Use>
  Result<AtsOutcome> access(std::span<const Want> wants, Use use) {
    for (int discards = 0;;) {
      std::optional<AtsOutcome> stopped;
      {
        std::shared_lock lock(mutex);
        std::vector<Pieces> pieces(wants.size());
        uint64_t common = ~0ull;
        size_t missing = wants.size();
        uint64_t missing_from = 0;
        for (size_t i = 0; i < wants.size(); ++i) {
          const uint64_t covered = gather(wants[i], pieces[i]);
          common = std::min(common, covered);
          if (covered < wants[i].length && missing == wants.size()) {
            missing = i;
            missing_from = covered;
          }
        }
        if (missing == wants.size()) {
          use(std::span<const Pieces>(pieces), common);
          return AtsOutcome{IOASID_ATS_OK, common, 0, 0};
        }
        lock.unlock();
        auto answer = translate(wants[missing], missing_from);
        IOASID_CLIENT_TRY(answer);
        if (!*answer) {
          if (++discards == kMaxDiscards) return AtsOutcome{IOASID_ATS_RETRY, 0, wants[missing].iova + missing_from, 0};
          continue;
        }
        if ((*answer)->status != IOASID_ATS_OK) stopped = **answer;
      }
      if (!stopped) continue;
      // Move what every want has, then report where the translation stopped.
      std::shared_lock lock(mutex);
      std::vector<Pieces> pieces(wants.size());
      uint64_t common = ~0ull;
      for (size_t i = 0; i < wants.size(); ++i) common = std::min(common, gather(wants[i], pieces[i]));
      use(std::span<const Pieces>(pieces), common);
      stopped->done = common;
      return *stopped;
    }
  }
};

namespace {

// Copies `length` bytes between a contiguous buffer and pieces, in order.
template <typename Copy>
void walk_pieces(const Pieces& pieces, uint64_t length, Copy copy) {
  uint64_t done = 0;
  for (const auto& piece : pieces) {
    if (done == length) break;
    const uint64_t take = std::min<uint64_t>(piece.size(), length - done);
    copy(piece.data(), done, take);
    done += take;
  }
}

}  // namespace

AtsCache::AtsCache(const Device& device, AtsOptions options)
    : state_(std::make_unique<State>(device.fd_.get(), device.id(), options)) {}
AtsCache::AtsCache(AtsCache&&) noexcept = default;
AtsCache& AtsCache::operator=(AtsCache&&) noexcept = default;
AtsCache::~AtsCache() = default;

Result<AtsOutcome> AtsCache::read(uint64_t iova, std::span<std::byte> into) {
  const Want want{iova, into.size(), false};
  return state_->access(std::span(&want, 1), [&](std::span<const Pieces> pieces, uint64_t length) {
    walk_pieces(pieces[0], length, [&](std::byte* at, uint64_t offset, uint64_t n) {
      std::memcpy(into.data() + offset, at, n);
    });
  });
}

Result<AtsOutcome> AtsCache::write(uint64_t iova, std::span<const std::byte> from) {
  const Want want{iova, from.size(), true};
  return state_->access(std::span(&want, 1), [&](std::span<const Pieces> pieces, uint64_t length) {
    walk_pieces(pieces[0], length, [&](std::byte* at, uint64_t offset, uint64_t n) {
      std::memcpy(at, from.data() + offset, n);
    });
  });
}

Result<AtsOutcome> AtsCache::copy(uint64_t dst, uint64_t src, uint64_t length) {
  const std::array wants{Want{src, length, false}, Want{dst, length, true}};
  return state_->access(wants, [](std::span<const Pieces> pieces, uint64_t total) {
    // Walk both piece lists together, one memcpy per overlap of a source and a
    // destination piece.
    size_t s = 0, d = 0;
    uint64_t s_off = 0, d_off = 0;
    for (uint64_t done = 0; done < total;) {
      const auto& from = pieces[0][s];
      const auto& to = pieces[1][d];
      const uint64_t take = std::min({from.size() - s_off, to.size() - d_off, total - done});
      std::memcpy(to.data() + d_off, from.data() + s_off, take);
      done += take;
      s_off += take;
      d_off += take;
      if (s_off == from.size()) {
        s_off = 0;
        ++s;
      }
      if (d_off == to.size()) {
        d_off = 0;
        ++d;
      }
    }
  });
}

Result<bool> AtsCache::handle(const ioasid_fault& record) {
  if (record.type != IOASID_FAULT_ATS_INVALIDATE) return false;
  ioasid_ats_invalidation request;
  static_assert(sizeof request == sizeof record);
  std::memcpy(&request, &record, sizeof request);
  const bool with_pasid = request.flags & IOASID_FAULT_PASID_VALID;
  State& state = *state_;
  if (request.dev_id != state.dev_id || with_pasid != state.options.pasid.has_value() ||
      (with_pasid && request.pasid != *state.options.pasid))
    return false;
  const uint64_t last = request.iova + (request.length - 1) < request.iova ? ~0ull : request.iova + request.length - 1;
  {
    // Exclusive: accesses using what goes finish first, as a device completes the
    // requests in flight before it completes the invalidation.
    std::unique_lock lock(state.mutex);
    const uint64_t generation = state.generation.load(std::memory_order_relaxed) + 1;
    state.seen.push_back({generation, request.iova, last});
    if (state.seen.size() > kRemembered) state.seen.pop_front();
    state.generation.store(generation, std::memory_order_release);
    for (Entries& entries : state.entries) erase_overlapping(entries, request.iova, last);
  }
  // Counted before the acknowledgement: once the flush that sent it returns, it shows.
  state.invalidations.fetch_add(1, std::memory_order_relaxed);
  ioasid_ats_ack ack{.dev_id = request.dev_id, .itag = request.itag};
  IOASID_CLIENT_TRY(detail::issue(state.fd, IOASID_ATS_INV_ACK, ack));
  return true;
}

void AtsCache::clear() {
  std::unique_lock lock(state_->mutex);
  for (Entries& entries : state_->entries) entries.clear();
}

AtsCache::Stats AtsCache::stats() const {
  std::shared_lock lock(state_->mutex);
  return {state_->translations.load(), state_->invalidations.load(), state_->discarded.load(),
          state_->entries[0].size() + state_->entries[1].size()};
}

// ---------------------------------------------------------------- AtsInvalidationServer

namespace {

void interrupt_only(int) {}

// The wake signal interrupts the reader's read(2) and does nothing else; an application
// handler already there is kept (it must not use SA_RESTART for the stop to work).
Result<void> claim_wake_signal(int signal) {
  struct sigaction current{};
  if (::sigaction(signal, nullptr, &current) != 0) return detail::errno_error("sigaction", errno);
  if (current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN) return {};
  struct sigaction interrupt{};
  interrupt.sa_handler = interrupt_only;
  ::sigemptyset(&interrupt.sa_mask);
  if (::sigaction(signal, &interrupt, nullptr) != 0) return detail::errno_error("sigaction", errno);
  return {};
}

}  // namespace

struct AtsInvalidationServer::State {
  State(const File& file, std::vector<AtsCache*> caches, Others others)
      : file(&file), caches(std::move(caches)), others(std::move(others)) {}
  const File* file;
  std::vector<AtsCache*> caches;
  Others others;
  // A blocking file is read directly: a record completes the parked read, one round
  // trip less than poll(2) then read(2) on a FUSE node. An O_NONBLOCK one is polled,
  // beside an eventfd that stops the thread.
  bool blocking = true;
  int stop_fd = -1;
  std::atomic<bool> stopping{false}, stopped{false};
  std::thread thread;

  void dispatch(std::span<const ioasid_fault> records) {
    for (const ioasid_fault& record : records) {
      bool taken = false;
      for (AtsCache* cache : caches) {
        auto handled = cache->handle(record);
        if (handled && *handled) {
          taken = true;
          break;
        }
      }
      if (!taken && others) others(record);
    }
  }

  void serve() {
    std::array<ioasid_fault, 16> records;
    std::array<pollfd, 2> fds{pollfd{file->fd(), POLLIN, 0}, pollfd{stop_fd, POLLIN, 0}};
    while (!stopping.load(std::memory_order_acquire)) {
      if (!blocking) {
        if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) break;
        if (fds[1].revents) break;
        if (!(fds[0].revents & POLLIN)) continue;
      }
      auto count = file->read_faults(records);
      if (!count) {
        if (count.error().code == EINTR) continue;
        break;
      }
      dispatch(std::span(records).first(*count));
    }
    stopped.store(true, std::memory_order_release);
  }
};

Result<AtsInvalidationServer> AtsInvalidationServer::start(const File& file, std::vector<AtsCache*> caches,
                                                           Others others) {
  auto state = std::make_unique<State>(file, std::move(caches), std::move(others));
  const int flags = ::fcntl(file.fd(), F_GETFL);
  if (flags < 0) return detail::errno_error("fcntl", errno);
  state->blocking = !(flags & O_NONBLOCK);
  if (state->blocking) {
    IOASID_CLIENT_TRY(claim_wake_signal(ats_server_wake_signal()));
  } else {
    state->stop_fd = ::eventfd(0, EFD_CLOEXEC);
    if (state->stop_fd < 0) return detail::errno_error("eventfd", errno);
  }
  state->thread = std::thread([raw = state.get()] { raw->serve(); });
  return AtsInvalidationServer(std::move(state));
}

AtsInvalidationServer::AtsInvalidationServer(std::unique_ptr<State> state) : state_(std::move(state)) {}
AtsInvalidationServer::AtsInvalidationServer(AtsInvalidationServer&&) noexcept = default;
AtsInvalidationServer& AtsInvalidationServer::operator=(AtsInvalidationServer&&) noexcept = default;

AtsInvalidationServer::~AtsInvalidationServer() {
  if (!state_) return;
  state_->stopping.store(true, std::memory_order_release);
  if (state_->blocking) {
    // Until it is out: a signal sent just before it entered read(2) interrupts nothing.
    while (!state_->stopped.load(std::memory_order_acquire)) {
      ::pthread_kill(state_->thread.native_handle(), ats_server_wake_signal());
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  } else {
    const uint64_t one = 1;
    if (::write(state_->stop_fd, &one, sizeof one) < 0) std::terminate();  // an eventfd write cannot fail here
  }
  state_->thread.join();
  if (state_->stop_fd >= 0) ::close(state_->stop_fd);
}

}  // namespace ioasid::client

// SPDX-License-Identifier: MIT
// ioasid-stress: starts its own ioasidd (FUSE front end), then keeps --clients forked
// client processes of --threads threads each running random valid ioctl sequences on
// the node for --seconds, while a supervisor SIGKILLs a random client every
// --kill-interval-ms/2 .. 2*--kill-interval-ms and forks a replacement; some clients
// also exit cleanly or _exit in the middle of their work. Beside them run --attackers
// processes (1; restarted when killed, and killed like clients) as uid 65534 with no
// group (the node is 0666 here): a random mix of the attacks of issue 12, each at its
// limit — MAP_FILE of the node itself from several threads, MAP_FILE of read-only and
// O_PATH files (fd swapped meanwhile), mappings, IOASIDs and opens until the per-user
// caps refuse them, unanswered page requests on dma0, another file's block-on-fault
// descriptors parked in a shared dsa0 WQ, CACHE_INVLD past its bounds. Then every file
// must be released within 10 s: the admin socket must show no context, PASID, pinned
// page, bound device, route or enabled WQ, no more page-table pages than after the
// warm-up, and the daemon's RSS must be back near its figure after the warm-up: at most
// before + max(16 MiB, 25%) (glibc keeps freed memory in per-thread arenas; not
// enforced for a sanitized daemon, whose quarantine holds hundreds of MiB — its
// LeakSanitizer report is checked instead), its fds within 16 and its memory maps
// within 64 (and those of the session threads it kept) of that figure. SIGTERM must
// end the daemon with status 0 within 10 s and its stderr must hold no sanitizer report.
//
// Failures: an unexpected errno (expected contention outcomes — EBUSY, ENOSPC, a
// foreign WQ's EINVAL/EACCES, RETRY — are only counted; so are an attack's expected
// refusals), a client-side invariant (data moved by DMA or DSA, dirty bits, fault
// records, completion records within 10 s), an attack that succeeds where it must be
// refused or that stalls another file's work, an ioctl (or open) in flight for more
// than 10 s or a killed client not reaped within 10 s (a hang), a client or attacker
// that ends any other way than planned, the daemon dying, or a leak.
// Exit status 0 only when there is none; 1 otherwise; 2 for a usage error.
//
// The supervisor stays single-threaded so that fork() is safe; clients and attackers
// report through one MAP_SHARED block of atomics (counters, distinct error texts, and
// per-thread "ioctl in flight since" stamps that the supervisor's watchdog reads). It
// samples the daemon's RSS, fds, memory maps and threads after the warm-up, at each
// tick and after the release: the report gives them as before/peak/after.
#include <ioasid/client.hpp>
#include "notify_listener.h"
#include <linux/ioasid.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace client = ioasid::client;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

constexpr uint64_t k4K = 4096;
constexpr auto kHangLimit = 10s;  // an ioctl (or a DSA completion) slower than this is a hang
// The daemon's --page-timeout in this run (its default is 10 s, the hang limit): the
// attacker's page requests are never answered, and each must end well within it.
constexpr auto kPageTimeout = 2s;
constexpr int kMaxThreads = 16;
constexpr int kMaxSlots = 256;  // client processes alive at once, killed-but-unreaped included
constexpr int kMaxMessages = 64;
constexpr uint32_t kPasidRange = 64;  // PASIDs per thread: [min, min + 63]
constexpr int kExitClean = 0, kExitDirty = 3, kExitSetupFailed = 4;

// ---------------------------------------------------------------- what clients report

// Counted per ioctl kind, named as in the uAPI.
// clang-format off
#define STRESS_KINDS(X) \
  X(kGetInfo, "GET_INFO") X(kPasidAlloc, "PASID_ALLOC") X(kPasidFree, "PASID_FREE") \
  X(kPasidLookup, "PASID_LOOKUP") X(kIoasAlloc, "IOAS_ALLOC") X(kIoasFree, "IOAS_FREE") X(kMapDma, "MAP_DMA") \
  X(kMapFile, "MAP_FILE") X(kUnmapDma, "UNMAP_DMA") X(kIovaRanges, "IOVA_RANGES") X(kDeviceBind, "DEVICE_BIND") \
  X(kDeviceUnbind, "DEVICE_UNBIND") X(kAttachIoasid, "ATTACH_IOASID") \
  X(kAttachIoasidPasid, "ATTACH_IOASID_PASID") X(kDetach, "DETACH") X(kDeviceDma, "DEVICE_DMA") \
  X(kDirtyTracking, "DIRTY_TRACKING") X(kDirtyBitmap, "DIRTY_BITMAP") X(kBindPgtbl, "BIND_PGTBL") \
  X(kUnbindPgtbl, "UNBIND_PGTBL") X(kCacheInvld, "CACHE_INVLD") X(kWqConfig, "WQ_CONFIG") \
  X(kDeviceSubmit, "DEVICE_SUBMIT") X(kPageResp, "PAGE_RESP") X(kFaultRead, "FAULT_READ") X(kOpen, "open")
#define STRESS_ENUM(id, name) id,
#define STRESS_NAME(id, name) name,
enum Kind { STRESS_KINDS(STRESS_ENUM) kKinds };
constexpr const char* kKindNames[] = {STRESS_KINDS(STRESS_NAME)};

// The attacker's attacks (docs/SECURITY.md, issue 12), each run at its limit.
#define STRESS_ATTACKS(X) \
  X(kAttackMapNode, "map_file_of_node") X(kAttackMapReadOnly, "map_file_read_only") \
  X(kAttackMapFlood, "map_flood") X(kAttackIoasidFlood, "ioasid_flood") X(kAttackOpenFlood, "open_flood") \
  X(kAttackPageRequests, "unanswered_page_requests") X(kAttackWqStall, "shared_wq_stall") \
  X(kAttackCacheInvld, "cache_invld_huge")
enum Attack { STRESS_ATTACKS(STRESS_ENUM) kAttacks };
constexpr const char* kAttackNames[] = {STRESS_ATTACKS(STRESS_NAME)};

// What an attack may end in besides a refusal by errno (those are counted by errno).
#define STRESS_EVENTS(X) \
  X(kAllowed, "allowed") X(kSkipped, "skipped_busy") X(kNotRefused, "deadline_before_refusal") \
  X(kPageTimedOut, "page_request_timed_out") X(kPageRequestRaised, "page_request_raised") \
  X(kPageRequestCap, "page_request_cap") X(kParked, "intruder_descriptors_queued") \
  X(kGaveWay, "intruder_descriptor_gave_way") \
  X(kOwnerServed, "owner_served")
enum Event { STRESS_EVENTS(STRESS_ENUM) kEvents };
constexpr const char* kEventNames[] = {STRESS_EVENTS(STRESS_NAME)};
// clang-format on
constexpr int kErrnoSlots = 134;  // errno values 1..EHWPOISON

static_assert(std::atomic<int64_t>::is_always_lock_free, "atomics must work across processes");

struct ThreadSlot {
  std::atomic<int64_t> op_started_ns{0};  // 0: no ioctl in flight
  std::atomic<int> kind{0};
};
struct ClientSlot {
  std::atomic<pid_t> pid{0};
  ThreadSlot threads[kMaxThreads];
};
// One distinct error text. Claimed by a compare-and-swap of its hash, never by a
// lock: a client SIGKILLed while holding a lock would stop every other client.
struct Message {
  std::atomic<uint64_t> hash{0};  // 0: free
  std::atomic<uint64_t> count{0};
  char text[1024];
};
// What the attacker's attacks ended in. Refusals the attack expects are counted by
// errno; anything else is reported like a client's unexpected errno.
struct AttackCounters {
  std::atomic<uint64_t> rounds{0};
  std::atomic<uint64_t> refused[kErrnoSlots];
  std::atomic<uint64_t> events[kEvents];
  std::atomic<uint64_t> most_held{0};  // files, mappings or IOASIDs held when a per-user cap refused one more

  void refusal(int code) { refused[code > 0 && code < kErrnoSlots ? code : 0].fetch_add(1, std::memory_order_relaxed); }
  void event(Event e, uint64_t n = 1) { events[e].fetch_add(n, std::memory_order_relaxed); }
  void held(uint64_t n) {
    for (uint64_t seen = most_held.load(); n > seen && !most_held.compare_exchange_weak(seen, n);) {
    }
  }
};
// Lives in MAP_SHARED memory, written by every client, read by the supervisor.
struct Shared {
  std::atomic<uint64_t> ops[kKinds];        // successful ioctls
  std::atomic<uint64_t> contended[kKinds];  // expected contention outcomes (EBUSY, ENOSPC, ...)
  std::atomic<uint64_t> submit_retries{0};  // DEVICE_SUBMIT answered RETRY (a full shared WQ)
  std::atomic<uint64_t> unexpected{0};      // an errno no valid sequence should see
  std::atomic<uint64_t> invariants{0};      // wrong data, a missing completion record or fault record
  Message messages[kMaxMessages];           // distinct error texts, each with its count
  ClientSlot slots[kMaxSlots];
  AttackCounters attacks[kAttacks];
};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// Shared memory for Shared, unmapped when the owner goes; children inherit the mapping.
class SharedMapping {
 public:
  SharedMapping() {
    void* p = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap of the shared counters failed");
    shared_ = new (p) Shared;
  }
  ~SharedMapping() { ::munmap(shared_, sizeof(Shared)); }
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;
  Shared& operator*() const { return *shared_; }

 private:
  Shared* shared_;
};

// Counts `text` (the first pid that saw it is kept in the stored text).
void add_message(Shared& shared, const std::string& text) {
  const uint64_t hash = std::hash<std::string>{}(text) | 1;
  for (size_t probe = 0; probe < kMaxMessages; ++probe) {
    Message& m = shared.messages[(hash + probe) % kMaxMessages];
    uint64_t seen = m.hash.load();
    if (seen == 0 && m.hash.compare_exchange_strong(seen, hash))
      std::snprintf(m.text, sizeof m.text, "%s (first: pid %d)", text.c_str(), static_cast<int>(::getpid()));
    if (seen == 0 || seen == hash) {
      m.count.fetch_add(1);
      return;
    }
  }
}

// One request on the admin socket, JSON lines; the reply's `result`, or nullopt.
std::optional<json> admin(const std::string& socket_path, const json& request) {
  sockaddr_un address{.sun_family = AF_UNIX};
  std::snprintf(address.sun_path, sizeof address.sun_path, "%s", socket_path.c_str());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  std::string reply;
  const std::string line = request.dump() + "\n";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size())) {
    pollfd readable{fd, POLLIN, 0};
    char chunk[4096];
    while (reply.find('\n') == std::string::npos && ::poll(&readable, 1, 5000) == 1) {
      const ssize_t got = ::read(fd, chunk, sizeof chunk);
      if (got <= 0) break;
      reply.append(chunk, static_cast<size_t>(got));
    }
  }
  ::close(fd);
  const json parsed = json::parse(reply.substr(0, reply.find('\n')), nullptr, false);
  if (!parsed.is_object() || !parsed.value("ok", false)) return std::nullopt;
  return parsed["result"];
}

// A number inside an admin reply ("/hpa/segments"); 0 when it is missing.
uint64_t number(const json& reply, const char* pointer) {
  const json::json_pointer at(pointer);
  return reply.contains(at) && reply[at].is_number_unsigned() ? reply[at].get<uint64_t>() : 0;
}

// The daemon's admin socket, set before any client is forked: a client that sees a
// DSA completion never arrive records what the daemon says of that WQ.
std::string g_admin_socket;

// ---------------------------------------------------------------- client memory

// Client memory: a memfd mapped shared (what the daemon writes through its own mapping
// of the file — DMA data, DSA records — shows here at once), or private anonymous
// pages, which the daemon reaches through /proc/PID/mem. Page aligned, as MAP_DMA wants.
class Pages {
 public:
  Pages(size_t size, bool memfd) : size_(size) {
    if (memfd &&
        ((fd_ = ::memfd_create("ioasid-stress", MFD_CLOEXEC)) < 0 || ::ftruncate(fd_, static_cast<off_t>(size))))
      throw std::runtime_error("memfd_create");
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, memfd ? MAP_SHARED : MAP_PRIVATE | MAP_ANONYMOUS, fd_, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap");
    bytes_ = static_cast<std::byte*>(p);
  }
  ~Pages() {
    ::munmap(bytes_, size_);
    if (fd_ >= 0) ::close(fd_);
  }
  Pages(const Pages&) = delete;
  Pages& operator=(const Pages&) = delete;
  int fd() const { return fd_; }
  std::span<std::byte> span(size_t offset, size_t length) const { return {bytes_ + offset, length}; }

 private:
  size_t size_;
  int fd_ = -1;
  std::byte* bytes_ = nullptr;
};

// Memfd layout (one per thread, 256 KiB; GPA == offset for the nested guest):
constexpr uint64_t kMemSize = 256 * 1024;
constexpr uint64_t kDmaArea = 0, kDmaSize = 64 * 1024;              // DMA and map sequences
constexpr uint64_t kDsaArea = 0x10000, kDsaSize = 0x10000;          // page 0 records, then src, then dst
constexpr uint32_t kDsaMoves = 7;                                   // at most, 4 KiB each
constexpr uint64_t kDsaSrc = k4K, kDsaDst = (1 + kDsaMoves) * k4K;  // offsets inside the DSA area
constexpr uint64_t kGuestRoot = 0x20000, kGuestData = 0x30000, kGva = 0x7f1234560000ull;

// ---------------------------------------------------------------- one client thread

// Runs random valid sequences on one open file (its own, or shared with the other
// threads of its process). Everything it makes is a libioasid object, so a sequence
// that stops early still undoes its work; the normal path undoes it explicitly, in
// reverse order, so those ioctls are counted and checked too.
class Worker {
 public:
  // `shared_dsa0`: dsa0 as bound once for a file the threads share (a file binds a
  // device once); null for a thread's own file, which binds it per sequence.
  // A file may submit to every WQ it enabled, at that WQ's PASID: threads sharing a
  // file therefore use disjoint WQs (index % threads == thread), or one's descriptors
  // could run on another's dedicated WQ, in the other's address space.
  Worker(Shared& shared, ThreadSlot& slot, const client::File& file, const client::Device* shared_dsa0,
         client::PasidRange range, int thread, int threads, uint64_t seed)
      : shared_(shared), slot_(slot), file_(file), own_file_(!shared_dsa0), shared_dsa0_(shared_dsa0), range_(range),
        wq_lane_(own_file_ ? 0 : thread), wq_lanes_(own_file_ ? 1 : threads), rng_(seed), memory_(kMemSize, true),
        anonymous_(kDmaSize, false) {}

  static constexpr const char* kSequences[] = {"pasid", "map", "dma", "dsa", "nested", "fault"};
  void run_sequence(int which) {
    switch (which) {
      case 0: pasids(); break;
      case 1: maps(); break;
      case 2: dma(); break;
      case 3: dsa(); break;
      case 4: nested(); break;
      default: faults(); break;
    }
  }
  void run_until(const std::atomic<bool>& stop, const std::vector<int>& sequences) {
    while (!stop.load(std::memory_order_relaxed)) run_sequence(sequences[rng_() % sequences.size()]);
  }

 private:
  // Issues one ioctl (call) under the watchdog's eye and classifies its outcome.
  template <class Call>
  auto op(Kind kind, Call&& call, std::initializer_list<int> contention = {}) {
    slot_.kind.store(kind, std::memory_order_relaxed);
    slot_.op_started_ns.store(now_ns(), std::memory_order_release);
    auto result = call();
    slot_.op_started_ns.store(0, std::memory_order_release);
    if (result)
      shared_.ops[kind].fetch_add(1, std::memory_order_relaxed);
    else if (std::find(contention.begin(), contention.end(), result.code()) != contention.end())
      shared_.contended[kind].fetch_add(1, std::memory_order_relaxed);
    else
      report(shared_.unexpected, result.error().what);
    return result;
  }
  // The same when only the counters care about the outcome.
  template <class Call>
  void step(Kind kind, Call&& call, std::initializer_list<int> contention = {}) {
    (void)op(kind, std::forward<Call>(call), contention);
  }
  void report(std::atomic<uint64_t>& counter, const std::string& what) {
    counter.fetch_add(1);
    add_message(shared_, what);
  }
  void invariant(bool holds, const std::string& what) {
    if (!holds) report(shared_.invariants, what);
  }
  std::vector<std::byte> pattern(size_t size) {
    std::vector<std::byte> bytes(size);
    const auto seed = static_cast<uint8_t>(rng_());
    for (size_t i = 0; i < size; ++i) bytes[i] = std::byte(static_cast<uint8_t>(seed + i * 7 + (i >> 9)));
    return bytes;
  }
  static bool same(std::span<const std::byte> a, std::span<const std::byte> b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
  }
  client::Result<client::Pasid> new_pasid(std::optional<uint32_t> gpasid = {}) {
    // ENOSPC: earlier PASIDs of this range may still be FREE_PENDING behind queued work.
    return op(kPasidAlloc, [&] { return client::Pasid::allocate(file_, range_, gpasid); }, {ENOSPC});
  }
  void expect_dma_ok(const client::Result<client::DmaOutcome>& outcome, const char* what) {
    if (outcome && !outcome->ok())
      invariant(false, std::string(what) + ": DMA status " + std::to_string(outcome->status) + " reason " +
                           std::to_string(outcome->fault_reason));
  }

  // PASID_REQUEST ALLOC (with and without GPASID), LOOKUP, FREE one by one or by range.
  void pasids() {
    step(kGetInfo, [&] { return file_.info(); });
    std::vector<client::Pasid> held;
    std::set<uint32_t> gpasids;
    for (int n = 1 + static_cast<int>(rng_() % 4); n > 0; --n) {
      // Guest PASIDs are per file and the file may be shared: take them from this
      // thread's own PASID range, so no two threads of one file ever pick the same.
      std::optional<uint32_t> gpasid;
      if (const uint32_t g = range_.min + static_cast<uint32_t>(rng_() % kPasidRange);
          rng_() % 2 && gpasids.insert(g).second)
        gpasid = g;
      auto pasid = new_pasid(gpasid);
      if (!pasid) continue;
      invariant(pasid->value() >= range_.min && pasid->value() <= range_.max, "ALLOC gave a PASID outside [min,max]");
      if (gpasid) {
        auto host = op(kPasidLookup, [&] { return client::Pasid::lookup(file_, *gpasid); });
        invariant(!host || *host == pasid->value(), "PASID_LOOKUP does not return the PASID ALLOC mapped");
      }
      held.push_back(std::move(*pasid));
    }
    if (rng_() % 2) {
      for (auto& pasid : held) step(kPasidFree, [&] { return pasid.free(); });
    } else if (!held.empty()) {
      auto freed = op(kPasidFree, [&] { return client::free_pasids(file_, range_); });
      if (freed)
        invariant(*freed == held.size(), "PASID FREE of the thread's range freed " + std::to_string(*freed) + ", not " +
                                             std::to_string(held.size()));
      for (auto& pasid : held) pasid.release();
    }
  }

  // IOAS ALLOC, MAP_DMA/MAP_FILE (sometimes at a fixed IOVA), IOVA_RANGES, dirty
  // tracking, UNMAP (one by one, all at once, or by FREE), FREE.
  void maps() {
    auto ioas = op(kIoasAlloc, [&] { return client::Ioas::allocate(file_); });
    if (!ioas) return;
    step(kIovaRanges, [&] { return ioas->iova_ranges(); });
    std::vector<client::Mapping> mappings;
    for (int i = 0, n = 1 + static_cast<int>(rng_() % 4); i < n; ++i) {
      const uint64_t pages = 1 + rng_() % 4, first = rng_() % (kDmaSize / k4K - pages);
      client::MapOptions options;
      if (rng_() % 4 == 0) options.iova = 0x1000000ull * (i + 1);  // distinct per i: no overlap
      auto mapping = rng_() % 2
                         ? op(kMapFile,
                              [&] {
                                return client::Mapping::map_file(*ioas, memory_.fd(), kDmaArea + first * k4K,
                                                                 pages * k4K, options);
                              })
                         : op(kMapDma, [&] {
                             return client::Mapping::map_dma(*ioas, anonymous_.span(first * k4K, pages * k4K), options);
                           });
      if (mapping) mappings.push_back(std::move(*mapping));
    }
    if (!mappings.empty() && rng_() % 2) {
      step(kDirtyTracking, [&] { return ioas->set_dirty_tracking(true); });
      const auto& m = mappings.front();
      step(kDirtyBitmap, [&] { return ioas->dirty_bitmap(m.iova(), m.length(), k4K); });
      step(kDirtyTracking, [&] { return ioas->set_dirty_tracking(false); });
    }
    switch (rng_() % 3) {
      case 0:
        for (auto& m : mappings) step(kUnmapDma, [&] { return m.unmap(); });
        break;
      case 1: {
        ioasid_unmap_dma all{.ioasid = ioas->id(), .flags = 0, .iova = 0, .length = ~0ull};
        step(kUnmapDma, [&] { return file_.call(IOASID_UNMAP_DMA, all); });
        for (auto& m : mappings) m.release();
        break;
      }
      default:
        for (auto& m : mappings) m.release();  // FREE drops them
    }
    step(kIoasFree, [&] { return ioas->free(); });
  }

  // DEVICE_BIND dma0 or dma1 (exclusive: EBUSY under contention), map, ATTACH the RID,
  // DEVICE_DMA both ways with the memory checked; on dma0 also a PASID route, dirty
  // bits and a page request; on dma1 an unrecoverable fault.
  void dma() {
    const bool dma0 = rng_() % 3 != 0;
    auto device = op(kDeviceBind, [&] { return client::Device::bind(file_, dma0 ? "dma0" : "dma1"); }, {EBUSY});
    if (!device) return;
    auto ioas = op(kIoasAlloc, [&] { return client::Ioas::allocate(file_); });
    if (!ioas) return;
    const bool use_file = rng_() % 2;
    const std::span<std::byte> cpu = use_file ? memory_.span(kDmaArea, kDmaSize) : anonymous_.span(0, kDmaSize);
    auto mapping =
        use_file ? op(kMapFile, [&] { return client::Mapping::map_file(*ioas, memory_.fd(), kDmaArea, kDmaSize); })
                 : op(kMapDma, [&] { return client::Mapping::map_dma(*ioas, cpu); });
    if (!mapping) return;
    auto rid = op(kAttachIoasid, [&] { return client::Attachment::attach(*device, *ioas); });
    if (!rid) return;
    const uint64_t offset = (rng_() % 8) * k4K, length = 1 + rng_() % (4 * k4K);
    const auto data = pattern(length);
    expect_dma_ok(op(kDeviceDma, [&] { return device->dma_write(mapping->iova() + offset, data); }), "RID write");
    invariant(same(cpu.subspan(offset, length), data), "RID DMA write: memory differs from the buffer");
    std::vector<std::byte> back(length);
    expect_dma_ok(op(kDeviceDma, [&] { return device->dma_read(mapping->iova() + offset, back); }), "RID read");
    invariant(same(back, data), "RID DMA read: buffer differs from memory");
    const uint64_t unmapped = mapping->iova() + kDmaSize;  // the only area of this IOAS ends there
    if (dma0) {
      auto pasid = new_pasid();
      if (!pasid) return;
      auto route =
          op(kAttachIoasidPasid, [&] { return client::Attachment::attach_pasid(*device, *ioas, pasid->value()); });
      if (!route) return;
      const client::DmaOptions at_pasid{.pasid = pasid->value(), .nowait = true};  // never wait for a PAGE_RESP
      step(kDirtyTracking, [&] { return ioas->set_dirty_tracking(true); });
      const uint64_t page = rng_() % 8;
      expect_dma_ok(op(kDeviceDma, [&] { return device->dma_write(mapping->iova() + page * k4K, data, at_pasid); }),
                    "PASID write");
      auto bitmap = op(kDirtyBitmap, [&] { return ioas->dirty_bitmap(mapping->iova(), kDmaSize, k4K); });
      if (bitmap) invariant(((*bitmap)[0] >> page) & 1, "dirty bitmap misses the page a PASID DMA wrote");
      step(kDirtyTracking, [&] { return ioas->set_dirty_tracking(false); });
      if (own_file_) {  // a shared file's fault records may be read by its other threads
        read_faults();  // older records first (one for a DSA record that could not be written, ...)
        auto request = op(kDeviceDma, [&] { return device->dma_write(unmapped, data, at_pasid); });
        if (request)
          invariant(request->status == IOASID_DMA_PAGE_REQ,
                    "NOWAIT DMA at an unmapped IOVA did not raise a page request");
        const auto records = read_faults();
        const auto page_request = std::find_if(records.begin(), records.end(),
                                               [](const ioasid_fault& f) { return f.type == IOASID_FAULT_PAGE_REQ; });
        if (page_request != records.end())
          step(kPageResp, [&] { return device->page_response(*page_request, IOASID_PAGE_RESP_INVALID); });
        else if (request && request->status == IOASID_DMA_PAGE_REQ)
          invariant(false, "no PAGE_REQ record after a DMA answered PAGE_REQ");
      }
      step(kDetach, [&] { return route->detach(); });
      step(kPasidFree, [&] { return pasid->free(); });
    } else {
      read_faults();
      auto fault = op(kDeviceDma, [&] { return device->dma_write(unmapped, data); });
      if (fault) invariant(fault->status == IOASID_DMA_FAULT, "DMA at an unmapped IOVA did not fault");
      const auto records = read_faults();
      if (own_file_)
        invariant(std::any_of(records.begin(), records.end(),
                              [](const ioasid_fault& f) { return f.type == IOASID_FAULT_DMA_UNRECOV; }),
                  "no fault record after a faulting DMA");
    }
    step(kDetach, [&] { return rid->detach(); });
    step(kUnmapDma, [&] { return mapping->unmap(); });
    step(kIoasFree, [&] { return ioas->free(); });
    step(kDeviceUnbind, [&] { return device->unbind(); });
  }

  // dsa0 (shared by every file): a PASID attached to an IOAS over this thread's memfd,
  // a WQ enabled (dedicated or shared; EBUSY when another file holds it, and then a
  // submit to that WQ, which may be another file's shared WQ), MEMMOVE descriptors
  // with completion records polled in our mapping, sometimes a DRAIN, disable.
  void dsa() {
    std::optional<client::Result<client::Device>> own_device;
    if (!shared_dsa0_) {
      own_device.emplace(op(kDeviceBind, [&] { return client::Device::bind(file_, "dsa0"); }));
      if (!*own_device) return;
    }
    const client::Device* device = shared_dsa0_ ? shared_dsa0_ : &**own_device;
    auto pasid = new_pasid();
    if (!pasid) return;
    auto ioas = op(kIoasAlloc, [&] { return client::Ioas::allocate(file_); });
    if (!ioas) return;
    auto mapping =
        rng_() % 2 ? op(kMapFile, [&] { return client::Mapping::map_file(*ioas, memory_.fd(), kDsaArea, kDsaSize); })
                   : op(kMapDma, [&] { return client::Mapping::map_dma(*ioas, memory_.span(kDsaArea, kDsaSize)); });
    if (!mapping) return;
    auto route =
        op(kAttachIoasidPasid, [&] { return client::Attachment::attach_pasid(*device, *ioas, pasid->value()); });
    if (!route) return;
    constexpr int kWqs = 8;                     // dsa0's
    const bool lane_has_wqs = wq_lane_ < kWqs;  // else: only WQs it enables itself
    const auto wq_index = static_cast<uint32_t>(
        lane_has_wqs ? wq_lane_ + wq_lanes_ * static_cast<int>(rng_() % ((kWqs - 1 - wq_lane_) / wq_lanes_ + 1))
                     : rng_() % kWqs);
    const bool dedicated = rng_() % 3 == 0;
    const client::WqOptions small{.size = 2 + static_cast<uint32_t>(rng_() % 8)};  // small: RETRY happens
    auto wq = op(kWqConfig,
                 [&] {
                   return dedicated ? client::WorkQueue::enable_dedicated(*device, wq_index, pasid->value(), small)
                                    : client::WorkQueue::enable_shared(*device, wq_index, small);
                 },
                 {EBUSY});
    if (!wq && !lane_has_wqs) return;
    const std::span<std::byte> area = memory_.span(kDsaArea, kDsaSize);
    std::memset(area.data(), 0, k4K);  // completion records: status 0 until written
    const auto source = pattern(kDsaMoves * k4K);
    std::memcpy(area.data() + kDsaSrc, source.data(), source.size());
    std::memset(area.data() + kDsaDst, 0, kDsaMoves * k4K);
    const uint64_t base = mapping->iova();
    std::vector<uint32_t> accepted;  // descriptor i moves 4 KiB src page i to dst page i, record at 32 * i
    for (uint32_t i = 0, n = 1 + static_cast<uint32_t>(rng_() % kDsaMoves); i < n; ++i) {
      const auto desc = client::dsa::memmove(base + kDsaDst + i * k4K, base + kDsaSrc + i * k4K, k4K,
                                             {.completion_addr = base + 32 * i, .pasid = pasid->value()});
      for (int attempt = 0; attempt < 1000; ++attempt) {
        // Another file's WQ: not enabled (EINVAL) or dedicated to another file (EACCES)
        // are what a client of a WQ it does not own may see.
        auto status = wq ? op(kDeviceSubmit, [&] { return wq->submit(desc); })
                         : op(kDeviceSubmit, [&] { return client::submit(*device, wq_index, desc); }, {EINVAL, EACCES});
        if (!status) break;
        if (*status == client::SubmitStatus::accepted) {
          accepted.push_back(i);
          break;
        }
        shared_.submit_retries.fetch_add(1, std::memory_order_relaxed);
        std::this_thread::sleep_for(100us);
      }
    }
    for (uint32_t i : accepted) {
      auto* record = reinterpret_cast<ioasid_dsa_completion*>(area.data() + 32 * i);
      auto done = client::dsa::wait_for_completion(*record, kHangLimit);
      char where[160];
      std::snprintf(where, sizeof where, " on %s wq %u (%s file)",
                    !wq         ? "another file's"
                    : dedicated ? "its own dedicated"
                                : "its own shared",
                    wq_index, own_file_ ? "own" : "shared");
      if (!done) {
        // What the daemon says of that WQ and of this PASID's route on dsa0 (the route
        // of a kernel-managed IOASID must be "second_level").
        std::string state;
        if (auto devices = admin(g_admin_socket, {{"cmd", "devices"}}))
          for (const json& d : *devices)
            if (d.value("name", "") == "dsa0") {
              const json wqs = d.value("wqs", json::array());
              if (wq_index < wqs.size()) state = "; wq queued " + std::to_string(number(wqs[wq_index], "/queued"));
              for (const json& r : d.value("routes", json::array()))
                if (r.value("pasid", json()) == pasid->value())
                  state += "; the PASID's route is " + r.value("type", "?");
            }
        invariant(false, std::string("MEMMOVE completion record not written within 10 s") + where + state);
        continue;
      }
      invariant(client::dsa::status_code(*done) == IOASID_DSA_COMP_SUCCESS,
                "MEMMOVE completed with " + client::dsa::status_name(client::dsa::status_code(*done)) + where);
      invariant(same(area.subspan(kDsaDst + i * k4K, k4K), std::span(source).subspan(i * k4K, k4K)),
                "MEMMOVE destination differs from its source");
    }
    if (wq && rng_() % 2) {
      const auto drain = client::dsa::drain({.completion_addr = base + 32 * 100, .pasid = pasid->value()});
      auto status = op(kDeviceSubmit, [&] { return wq->submit(drain); });
      auto* record = reinterpret_cast<ioasid_dsa_completion*>(area.data() + 32 * 100);
      if (status && *status == client::SubmitStatus::accepted)
        invariant(client::dsa::wait_for_completion(*record, kHangLimit).ok(), "DRAIN record not written within 10 s");
    }
    if (wq) step(kWqConfig, [&] { return wq->disable(); });
    step(kDetach, [&] { return route->detach(); });
    step(kUnmapDma, [&] { return mapping->unmap(); });
    step(kIoasFree, [&] { return ioas->free(); });
    step(kPasidFree, [&] { return pasid->free(); });
    if (own_device) step(kDeviceUnbind, [&] { return (*own_device)->unbind(); });
  }

  // A guest: the memfd as guest RAM at GPA 0 of a parent IOAS, a 4-level first-level
  // table mapping kGva to kGuestData, a nested IOAS bound to it, CACHE_INVLD, and when
  // dma0 is free a DMA at a PASID through both stages.
  void nested() {
    auto parent = op(kIoasAlloc, [&] { return client::Ioas::allocate(file_); });
    if (!parent) return;
    auto ram = op(kMapFile, [&] { return client::Mapping::map_file(*parent, memory_.fd(), 0, kMemSize, {.iova = 0}); });
    if (!ram) return;
    std::byte* guest = memory_.span(0, kMemSize).data();
    std::memset(guest + kGuestRoot, 0, 4 * k4K);
    for (uint64_t level = 4, table = kGuestRoot; level >= 1; --level, table += k4K) {
      const uint64_t index = (kGva >> (12 + 9 * (level - 1))) & 511;
      const uint64_t target = level == 1 ? kGuestData : table + k4K;
      const uint64_t entry = target | 0x7;  // present, writable, user
      std::memcpy(guest + table + index * 8, &entry, 8);
    }
    auto nested = op(kIoasAlloc, [&] { return client::Ioas::allocate_nested(*parent); });
    if (!nested) return;
    auto binding = op(kBindPgtbl, [&] { return client::PgtblBinding::bind(*nested, {.root_gpa = kGuestRoot}); });
    if (!binding) return;
    const ioasid_cache_invalidate_info flush{.cache = IOASID_CACHE_IOTLB, .granularity = IOASID_INV_GRANU_DOMAIN};
    step(kCacheInvld, [&] { return nested->invalidate_caches(std::span(&flush, 1)); });
    if (rng_() % 2) {
      auto device = op(kDeviceBind, [&] { return client::Device::bind(file_, "dma0"); }, {EBUSY});
      auto pasid = device ? new_pasid() : client::Result<client::Pasid>(client::Error{EBUSY, ""});
      if (device && pasid) {
        auto route =
            op(kAttachIoasidPasid, [&] { return client::Attachment::attach_pasid(*device, *nested, pasid->value()); });
        if (route) {
          const auto data = pattern(512);
          expect_dma_ok(
              op(kDeviceDma, [&] { return device->dma_write(kGva, data, {.pasid = pasid->value(), .nowait = true}); }),
              "nested DMA");
          invariant(same(memory_.span(kGuestData, data.size()), data), "nested DMA did not reach guest RAM");
          step(kDetach, [&] { return route->detach(); });
        }
        step(kPasidFree, [&] { return pasid->free(); });
        step(kDeviceUnbind, [&] { return device->unbind(); });
      }
    }
    step(kUnbindPgtbl, [&] { return binding->unbind(); });
    step(kIoasFree, [&] { return nested->free(); });
    step(kUnmapDma, [&] { return ram->unmap(); });
    step(kIoasFree, [&] { return parent->free(); });
  }

  // Non-blocking reads of whatever faults are queued (usually none: 0 records).
  void faults() { read_faults(); }
  std::vector<ioasid_fault> read_faults() {
    std::vector<ioasid_fault> all;
    ioasid_fault records[8];
    for (int reads = 0; reads < 16; ++reads) {  // bounded: other threads may keep adding
      auto got = op(kFaultRead, [&] { return file_.read_faults(records); });
      if (!got || *got == 0) break;
      all.insert(all.end(), records, records + *got);
    }
    return all;
  }

  Shared& shared_;
  ThreadSlot& slot_;
  const client::File& file_;
  const bool own_file_;
  const client::Device* const shared_dsa0_;
  const client::PasidRange range_;
  const int wq_lane_, wq_lanes_;
  std::mt19937_64 rng_;
  Pages memory_;     // a memfd, laid out as above
  Pages anonymous_;  // for MAP_DMA of private memory
};

// ---------------------------------------------------------------- a client process

enum class ClientEnd { killed, exit_clean, exit_dirty, warm_up, attacker };

struct Options {
  int clients = 16, threads = 4, seconds = 30, kill_interval_ms = 1000, attackers = 1;
  uint64_t seed = 0;
  std::string ioasidd, json_path;
  std::vector<std::string> daemon_args;             // more ioasidd options, e.g. --log-level debug
  std::vector<int> sequences = {0, 1, 2, 3, 4, 5};  // indexes into Worker::kSequences
  bool keep_tmp = false;
};

// The PASIDs of thread `thread` of the client with serial number `serial`: ranges of
// kPasidRange from 1024 up, so that a replacement never shares one with a client
// whose PASIDs may still be FREE_PENDING.
client::PasidRange pasid_range(uint64_t serial, int threads, int thread, uint32_t pasid_bits) {
  const uint64_t ranges = ((1ull << pasid_bits) - 1024) / kPasidRange;
  const uint64_t index = (serial * threads + thread) % ranges;
  const auto min = static_cast<uint32_t>(1024 + index * kPasidRange);
  return {min, min + kPasidRange - 1};
}

// The body of a forked client. Half the clients share one open file among their
// threads, the others open one per thread. `end` says how it finishes: it waits to be
// SIGKILLed, or after `lifetime` stops its threads and closes everything, or _exits
// with everything still open and in flight; the warm-up runs each sequence once.
[[noreturn]] void client_main(const Options& options, Shared& shared, int slot_index, const std::string& node,
                              uint64_t serial, uint32_t pasid_bits, ClientEnd end, std::chrono::milliseconds lifetime,
                              uint64_t seed) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  const int threads = options.threads;
  std::mt19937_64 rng(seed);
  const bool share_file = end != ClientEnd::warm_up && rng() % 2;
  std::vector<client::File> files;
  for (int t = 0; t < (share_file ? 1 : threads); ++t) {
    auto file = client::File::open(node, O_NONBLOCK);
    if (!file) {
      shared.unexpected.fetch_add(1);
      add_message(shared, file.error().what);
      ::_exit(kExitSetupFailed);
    }
    files.push_back(std::move(*file));
  }
  std::optional<client::Device> shared_dsa0;  // before files in destruction order
  if (share_file) {
    auto dsa0 = client::Device::bind(files[0], "dsa0");
    if (!dsa0) {
      shared.unexpected.fetch_add(1);
      add_message(shared, dsa0.error().what);
      ::_exit(kExitSetupFailed);
    }
    shared_dsa0.emplace(std::move(*dsa0));
  }
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t, worker_seed = rng()] {
      Worker worker(shared, shared.slots[slot_index].threads[t], files[share_file ? 0 : t],
                    shared_dsa0 ? &*shared_dsa0 : nullptr, pasid_range(serial, threads, t, pasid_bits), t, threads,
                    worker_seed);
      if (end == ClientEnd::warm_up)
        for (int sequence : options.sequences) worker.run_sequence(sequence);
      else
        worker.run_until(stop, options.sequences);
    });
  }
  if (end == ClientEnd::killed) {
    for (;;) ::pause();
  }
  if (end != ClientEnd::warm_up) std::this_thread::sleep_for(lifetime);
  if (end == ClientEnd::exit_dirty) ::_exit(kExitDirty);  // the daemon must clean up after it
  stop = true;
  for (auto& w : workers) w.join();
  shared_dsa0.reset();
  files.clear();
  ::_exit(kExitClean);
}

// ---------------------------------------------------------------- the attacker

// The daemon's default per-user caps (--max-files-per-user, --max-maps-per-user,
// --max-ioasids-per-user): a flood that gets twice as many without a refusal found a
// cap that does not hold.
constexpr uint64_t kFilesPerUser = 64, kMapsPerUser = 4096, kIoasidsPerUser = 1024;
constexpr uid_t kNobody = 65534;
constexpr int kAttackThreads = 4;  // threads of the attacks that run from several (slots 1..4)
constexpr auto kAttackLimit = 8s;   // a loop of calls stops there (each call has kHangLimit)
constexpr auto kFloodLimit = 20s;   // a flood stops there, refused by its cap or not
// Below every client's PASIDs (pasid_range), so no client waits for one the attacker holds.
constexpr client::PasidRange kAttackerPasids{1, 1023};
constexpr uint64_t kUnmappedIova = 0x40000000;  // nothing of an attacker's IOAS is mapped there

// Root-owned files in the daemon's directory: one the attacker may only read (0644),
// one it may not open at all (0600).
struct Victims {
  std::string readable, secret;
};

// Runs as uid 65534 beside the clients: a random mix of the attacks of issue 12, each
// at its limit and bounded in time. The refusals an attack expects are counted per
// attack; a success where a refusal is due, another errno, or a call the watchdog sees
// in flight for more than 10 s, is a failure as for a client.
class Attacker {
 public:
  Attacker(Shared& shared, ClientSlot& slot, std::string node, Victims victims, uint64_t seed)
      : shared_(shared), slot_(slot), node_(std::move(node)), victims_(std::move(victims)), rng_(seed) {}

  [[noreturn]] void run() {
    for (;;) {
      const auto attack = static_cast<Attack>(rng_() % kAttacks);
      switch (attack) {
        case kAttackMapNode: map_node(); break;
        case kAttackMapReadOnly: map_read_only(); break;
        case kAttackMapFlood: map_flood(); break;
        case kAttackIoasidFlood: ioasid_flood(); break;
        case kAttackOpenFlood: open_flood(); break;
        case kAttackPageRequests: page_requests(); break;
        case kAttackWqStall: wq_stall(); break;
        default: cache_invld(); break;
      }
      counters(attack).rounds.fetch_add(1, std::memory_order_relaxed);
    }
  }

 private:
  AttackCounters& counters(Attack attack) { return shared_.attacks[attack]; }

  // Issues one call under the watchdog's eye, from thread slot `thread` of this
  // process. An errno of `refusals` is counted for `attack` (unless !count); any other
  // is reported.
  template <class Call>
  auto op(Attack attack, Kind kind, Call&& call, std::initializer_list<int> refusals, int thread = 0,
          bool count = true) {
    ThreadSlot& slot = slot_.threads[thread];
    slot.kind.store(kind, std::memory_order_relaxed);
    slot.op_started_ns.store(now_ns(), std::memory_order_release);
    auto result = call();
    slot.op_started_ns.store(0, std::memory_order_release);
    if (!result) {
      if (std::find(refusals.begin(), refusals.end(), result.code()) != refusals.end()) {
        if (count) counters(attack).refusal(result.code());
      }
      else
        report(shared_.unexpected, attack, result.error().what);
    }
    return result;
  }
  // A call that must be refused with one of `refusals`: a success is reported too.
  template <class Call>
  void must_refuse(Attack attack, Kind kind, Call&& call, std::initializer_list<int> refusals, const std::string& what,
                   int thread = 0) {
    if (op(attack, kind, std::forward<Call>(call), refusals, thread))
      report(shared_.invariants, attack, what + " succeeded");
  }
  void report(std::atomic<uint64_t>& counter, Attack attack, const std::string& what) {
    counter.fetch_add(1);
    add_message(shared_, std::string("attacker ") + kAttackNames[attack] + ": " + what);
  }

  // EMFILE: other attackers (the same uid) may hold the user's files.
  std::optional<client::File> open_node(Attack attack, int thread = 0) {
    auto file = op(attack, kOpen, [&] { return client::File::open(node_, O_NONBLOCK); }, {EMFILE}, thread);
    if (!file) return std::nullopt;
    return std::move(*file);
  }
  std::optional<client::Ioas> new_ioas(Attack attack, const client::File& file) {
    auto ioas = op(attack, kIoasAlloc, [&] { return client::Ioas::allocate(file); }, {ENOSPC});
    if (!ioas) return std::nullopt;
    return std::move(*ioas);
  }

  // (1) MAP_FILE of the node itself and of another open file of it, from several
  // threads at once: EINVAL, and never a hang (the daemon must not open its own node).
  // ENOSPC/ENOMEM: another attacker may be flooding the user's mappings.
  void map_node() {
    const Attack a = kAttackMapNode;
    auto file = open_node(a);
    auto other = open_node(a);
    if (!file || !other) return;
    auto ioas = new_ioas(a, *file);
    if (!ioas) return;
    std::vector<std::thread> threads;
    for (int t = 1; t <= kAttackThreads; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < 8; ++i) {
          const int fd = (i + t) % 2 ? file->fd() : other->fd();
          must_refuse(
              a, kMapFile, [&] { return client::Mapping::map_file(*ioas, fd, 0, k4K); }, {EINVAL, ENOSPC, ENOMEM},
              "MAP_FILE of a file this daemon serves", t);
        }
      });
    for (auto& t : threads) t.join();
  }

  // (2) MAP_FILE WRITEABLE of a root-owned file opened read-only (EACCES) and of an
  // O_PATH descriptor of a root-only file (EBADF); a read-only mapping of the readable
  // file is allowed. Then issue 12's race: fd N swapped by dup3 among those two and a
  // socket while MAP_FILE WRITEABLE of fd N runs: whatever N is when the daemon takes
  // it, the mapping is refused.
  void map_read_only() {
    const Attack a = kAttackMapReadOnly;
    auto file = open_node(a);
    if (!file) return;
    auto ioas = new_ioas(a, *file);
    if (!ioas) return;
    const int readable = ::open(victims_.readable.c_str(), O_RDONLY | O_CLOEXEC);
    const int path_only = ::open(victims_.secret.c_str(), O_PATH | O_CLOEXEC);
    const int socket = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int swapped = readable < 0 ? -1 : ::fcntl(readable, F_DUPFD_CLOEXEC, 0);
    auto close_all = [&] {
      for (int fd : {readable, path_only, socket, swapped})
        if (fd >= 0) ::close(fd);
    };
    if (readable < 0 || path_only < 0 || socket < 0 || swapped < 0) {
      report(shared_.invariants, a, std::string("cannot open the victim files or a socket (last error: ") +
                                        std::strerror(errno) + ")");
      return close_all();
    }
    if (const int secret = ::open(victims_.secret.c_str(), O_RDONLY | O_CLOEXEC); secret >= 0) {
      ::close(secret);
      report(shared_.invariants, a,
             "uid " + std::to_string(::getuid()) + " can read a root 0600 file: not unprivileged");
    }
    const client::MapOptions write{.flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE};
    const client::MapOptions read{.flags = IOASID_MAP_READABLE};
    must_refuse(
        a, kMapFile, [&] { return client::Mapping::map_file(*ioas, readable, 0, k4K, write); },
        {EACCES, ENOSPC, ENOMEM}, "MAP_FILE WRITEABLE of a root-owned file opened read-only");
    if (op(a, kMapFile, [&] { return client::Mapping::map_file(*ioas, readable, 0, k4K, read); }, {ENOSPC, ENOMEM}))
      counters(a).event(kAllowed);
    must_refuse(
        a, kMapFile, [&] { return client::Mapping::map_file(*ioas, path_only, 0, k4K, read); }, {EBADF},
        "MAP_FILE of an O_PATH descriptor");
    std::atomic<bool> stop{false};
    std::thread swapper([&] {
      for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i)
        ::dup3(i % 3 == 0 ? readable : i % 3 == 1 ? path_only : socket, swapped, O_CLOEXEC);
    });
    for (int i = 0; i < 64; ++i)
      must_refuse(
          a, kMapFile, [&] { return client::Mapping::map_file(*ioas, swapped, 0, k4K, write); },
          {EACCES, EBADF, EINVAL, ENOSPC, ENOMEM}, "MAP_FILE WRITEABLE of an fd swapped among read-only files");
    stop = true;
    swapper.join();
    close_all();
  }

  // Runs body(thread, i) for i in [0, n) from kAttackThreads threads at once (slots
  // 1..4), each taking the next i, until `body` returns false or `deadline` passes; true
  // when the deadline stopped it. Several threads: so that the attack gets its share of
  // the daemon's session threads beside 64 client threads.
  template <class Body>
  bool in_parallel(uint64_t n, Clock::time_point deadline, Body&& body) {
    std::atomic<uint64_t> next{0};
    std::atomic<bool> stop{false}, late{false};
    std::vector<std::thread> threads;
    for (int t = 1; t <= kAttackThreads; ++t)
      threads.emplace_back([&, t] {
        for (uint64_t i = 0; !stop.load(std::memory_order_relaxed) && (i = next.fetch_add(1)) < n;) {
          if (Clock::now() > deadline) {
            late = stop = true;
            break;
          }
          if (!body(t, i)) stop = true;
        }
      });
    for (auto& t : threads) t.join();
    return late;
  }
  // Makes objects with make(thread, i) from several threads until a per-user cap
  // refuses one (make returns the errno, 0 when it made one), at most `bound` of them
  // (twice the cap: past it the cap does not hold), for at most kFloodLimit.
  template <class Make>
  void flood(Attack a, uint64_t bound, const char* what, std::initializer_list<int> caps, Make&& make) {
    std::atomic<uint64_t> made{0};
    const bool late = in_parallel(bound, Clock::now() + kFloodLimit, [&](int thread, uint64_t i) {
      const int code = make(thread, i);
      if (code == 0) made.fetch_add(1);
      if (std::find(caps.begin(), caps.end(), code) != caps.end()) counters(a).held(made.load());
      return code == 0;
    });
    if (late) counters(a).event(kNotRefused);
    if (made.load() >= bound)
      report(shared_.invariants, a,
             std::to_string(made.load()) + " " + what + " and no refusal: the per-user cap does not hold");
  }

  // (3) One-page mappings until a per-user cap refuses one (ENOSPC: --max-maps-per-user;
  // ENOMEM: the pin limit): MAP_DMA of private pages, MAP_FILE of one memfd, or both in
  // turn. Then they go by UNMAP one by one, one UNMAP of everything, or the close.
  void map_flood() {
    const Attack a = kAttackMapFlood;
    auto file = open_node(a);
    if (!file) return;
    auto ioas = new_ioas(a, *file);
    if (!ioas) return;
    constexpr uint64_t kRegionPages = kMapsPerUser + 64, kBound = 2 * kMapsPerUser + 64;
    Pages private_pages(kRegionPages * k4K, false), memfd(kRegionPages * k4K, true);
    std::memset(private_pages.span(0, kRegionPages * k4K).data(), 0x5a, kRegionPages * k4K);  // present, as buffers are
    const auto mode = rng_() % 3;  // 0: MAP_DMA, 1: MAP_FILE, 2: both in turn
    std::mutex mutex;
    std::vector<client::Mapping> mappings;
    flood(a, kBound, "mappings", {ENOSPC, ENOMEM}, [&](int thread, uint64_t i) {
      const uint64_t page = i % kRegionPages;
      auto mapping = mode == 1 || (mode == 2 && i % 2)
                         ? op(
                               a, kMapFile,
                               [&] { return client::Mapping::map_file(*ioas, memfd.fd(), page * k4K, k4K); },
                               {ENOSPC, ENOMEM}, thread)
                         : op(
                               a, kMapDma,
                               [&] { return client::Mapping::map_dma(*ioas, private_pages.span(page * k4K, k4K)); },
                               {ENOSPC, ENOMEM}, thread);
      if (!mapping) return mapping.code();
      std::lock_guard lock(mutex);
      mappings.push_back(std::move(*mapping));
      return 0;
    });
    switch (rng_() % 3) {
      case 0:
        in_parallel(mappings.size(), Clock::time_point::max(), [&](int thread, uint64_t i) {
          (void)op(a, kUnmapDma, [&] { return mappings[i].unmap(); }, {}, thread);
          return true;
        });
        break;
      case 1: {
        ioasid_unmap_dma all{.ioasid = ioas->id(), .flags = 0, .iova = 0, .length = ~0ull};
        (void)op(a, kUnmapDma, [&] { return file->call(IOASID_UNMAP_DMA, all); }, {});
        for (auto& m : mappings) m.release();
        break;
      }
      default:  // the close frees them
        for (auto& m : mappings) m.release();
        ioas->release();
    }
  }

  // (4) IOASID_ALLOC until ENOSPC (--max-ioasids-per-user), then FREE each or close.
  void ioasid_flood() {
    const Attack a = kAttackIoasidFlood;
    auto file = open_node(a);
    if (!file) return;
    std::mutex mutex;
    std::vector<client::Ioas> ioases;
    flood(a, 2 * kIoasidsPerUser + 64, "IOASIDs", {ENOSPC}, [&](int thread, uint64_t) {
      auto ioas = op(a, kIoasAlloc, [&] { return client::Ioas::allocate(*file); }, {ENOSPC}, thread);
      if (!ioas) return ioas.code();
      std::lock_guard lock(mutex);
      ioases.push_back(std::move(*ioas));
      return 0;
    });
    if (rng_() % 2)
      in_parallel(ioases.size(), Clock::time_point::max(), [&](int thread, uint64_t i) {
        (void)op(a, kIoasFree, [&] { return ioases[i].free(); }, {}, thread);
        return true;
      });
    else
      for (auto& ioas : ioases) ioas.release();  // the close frees them
  }

  // (5) Opens of the node until EMFILE (--max-files-per-user), then closes them.
  void open_flood() {
    const Attack a = kAttackOpenFlood;
    std::mutex mutex;
    std::vector<client::File> files;
    flood(a, 2 * kFilesPerUser + 16, "open files", {EMFILE}, [&](int thread, uint64_t) {
      auto file = op(a, kOpen, [&] { return client::File::open(node_, O_NONBLOCK); }, {EMFILE}, thread);
      if (!file) return file.code();
      std::lock_guard lock(mutex);
      files.push_back(std::move(*file));
      return 0;
    });
  }

  // (6) DEVICE_DMA at a PASID of dma0 where nothing is mapped, from a few threads, the
  // page requests never answered: each waits the daemon's --page-timeout and ends
  // FAULT. Meanwhile NOWAIT ones raise page requests until the device's cap of
  // outstanding ones makes the fault unrecoverable (FAULT at once). dma0 is exclusive
  // and the clients bind it all the time: the attacker tries again until it gets it
  // (refused EBUSY, counted once, when it never does within kAttackLimit).
  void page_requests() {
    const Attack a = kAttackPageRequests;
    auto file = open_node(a);
    if (!file) return;
    std::optional<client::Device> device;
    for (const auto deadline = Clock::now() + kAttackLimit; !device; std::this_thread::sleep_for(1ms)) {
      const bool last = Clock::now() > deadline;
      auto bound = op(a, kDeviceBind, [&] { return client::Device::bind(*file, "dma0"); }, {EBUSY}, 0, last);
      if (bound) device.emplace(std::move(*bound));
      else if (last || bound.code() != EBUSY) return;
    }
    auto ioas = new_ioas(a, *file);
    if (!ioas) return;
    auto pasid = op(a, kPasidAlloc, [&] { return client::Pasid::allocate(*file, kAttackerPasids); }, {ENOSPC});
    if (!pasid) return;
    auto route = op(
        a, kAttachIoasidPasid, [&] { return client::Attachment::attach_pasid(*device, *ioas, pasid->value()); }, {});
    if (!route) return;
    const std::vector<std::byte> data(k4K);
    std::vector<std::thread> waiters;
    for (int t = 1; t <= kAttackThreads; ++t)
      waiters.emplace_back([&, t] {
        const auto start = Clock::now();
        auto outcome = op(
            a, kDeviceDma, [&] { return device->dma_write(kUnmappedIova + t * k4K, data, {.pasid = pasid->value()}); },
            {}, t);
        if (!outcome) return;
        if (outcome->status == IOASID_DMA_RETRY)  // the fault queue was full: answered by the IOMMU
          counters(a).event(kPageRequestCap);
        else if (outcome->status != IOASID_DMA_FAULT)
          report(shared_.invariants, a,
                 "a DMA at an unmapped IOVA, its page request unanswered, ended with status " +
                     std::to_string(outcome->status) + ", not FAULT or RETRY");
        else  // at once: the cap of outstanding page requests was reached first
          counters(a).event(Clock::now() - start >= kPageTimeout / 2 ? kPageTimedOut : kPageRequestCap);
      });
    const auto deadline = Clock::now() + kAttackLimit;
    for (int i = 0; i < 1024 && Clock::now() < deadline; ++i) {
      auto outcome = op(
          a, kDeviceDma,
          [&] {
            return device->dma_write(kUnmappedIova + (16 + i) * k4K, data, {.pasid = pasid->value(), .nowait = true});
          },
          {});
      if (!outcome) break;
      if (outcome->status == IOASID_DMA_PAGE_REQ) {
        counters(a).event(kPageRequestRaised);
        continue;
      }
      if (outcome->status == IOASID_DMA_FAULT || outcome->status == IOASID_DMA_RETRY)  // cap, or queue full
        counters(a).event(kPageRequestCap);
      else
        report(shared_.invariants, a, "a NOWAIT DMA at an unmapped IOVA succeeded");
      break;
    }
    for (auto& w : waiters) w.join();
  }

  // A PASID of `file` routed on `device` to an IOAS where one memfd page (completion
  // records) is mapped. Members in the order of creation: destroyed in reverse.
  struct RecordSpace {
    std::optional<client::Pasid> pasid;
    std::optional<client::Ioas> ioas;
    std::optional<client::Mapping> records;
    std::optional<client::Attachment> route;
  };
  bool make_record_space(Attack a, const client::File& file, const client::Device& device, const Pages& page,
                         RecordSpace& space) {
    auto pasid = op(a, kPasidAlloc, [&] { return client::Pasid::allocate(file, kAttackerPasids); }, {ENOSPC});
    if (!pasid) return false;
    space.pasid.emplace(std::move(*pasid));
    auto ioas = new_ioas(a, file);
    if (!ioas) return false;
    space.ioas.emplace(std::move(*ioas));
    auto records = op(
        a, kMapFile, [&] { return client::Mapping::map_file(*space.ioas, page.fd(), 0, k4K); }, {ENOSPC, ENOMEM});
    if (!records) return false;
    space.records.emplace(std::move(*records));
    auto route = op(
        a, kAttachIoasidPasid,
        [&] { return client::Attachment::attach_pasid(device, *space.ioas, space.pasid->value()); }, {});
    if (!route) return false;
    space.route.emplace(std::move(*route));
    return true;
  }

  // (7) A shared block-on-fault WQ of dsa0 that one of our files enables (the first free
  // one; none free: skipped) and another of our files fills with MEMMOVEs at unmapped
  // addresses of its PASID until RETRY, never answering their page requests. The
  // owner's own descriptor must still run at once: the other file's descriptors give
  // way (end PAGE_FAULT_NOBOF) instead of holding the WQ --page-timeout each.
  void wq_stall() {
    const Attack a = kAttackWqStall;
    auto owner = open_node(a);
    auto intruder = open_node(a);
    if (!owner || !intruder) return;
    auto owner_dsa = op(a, kDeviceBind, [&] { return client::Device::bind(*owner, "dsa0"); }, {});
    auto intruder_dsa = op(a, kDeviceBind, [&] { return client::Device::bind(*intruder, "dsa0"); }, {});
    if (!owner_dsa || !intruder_dsa) return;
    Pages owner_page(k4K, true), intruder_page(k4K, true);
    RecordSpace owner_space, intruder_space;
    if (!make_record_space(a, *owner, *owner_dsa, owner_page, owner_space) ||
        !make_record_space(a, *intruder, *intruder_dsa, intruder_page, intruder_space))
      return;
    constexpr uint32_t kWqs = 8;  // dsa0's
    std::vector<uint32_t> indexes(kWqs);
    std::iota(indexes.begin(), indexes.end(), 0u);
    std::shuffle(indexes.begin(), indexes.end(), rng_);
    std::optional<client::WorkQueue> wq;  // the clients enable WQs all the time: try again for a while
    for (const auto deadline = Clock::now() + kAttackLimit; !wq; std::this_thread::sleep_for(1ms)) {
      const bool last = Clock::now() > deadline;
      for (uint32_t index : indexes) {
        auto enabled = op(
            a, kWqConfig,
            [&] { return client::WorkQueue::enable_shared(*owner_dsa, index, {.size = 16, .block_on_fault = true}); },
            {EBUSY}, 0, last);
        if (enabled) {
          wq.emplace(std::move(*enabled));
          break;
        }
        if (enabled.code() != EBUSY) return;
      }
      if (!wq && last) return counters(a).event(kSkipped);
    }
    const std::span<std::byte> intruder_records = intruder_page.span(0, k4K);
    std::memset(intruder_records.data(), 0, k4K);
    uint32_t parked = 0;
    for (; parked < 64; ++parked) {  // more than the WQ holds: it ends in RETRY
      const uint64_t dst = kUnmappedIova + 2 * parked * k4K, src = dst + k4K;
      const auto desc = client::dsa::memmove(dst, src, k4K,
                                             {.completion_addr = intruder_space.records->iova() + 32 * parked,
                                              .pasid = intruder_space.pasid->value(),
                                              .flags = IOASID_DSA_FLAG_BOF});
      auto status = op(a, kDeviceSubmit, [&] { return client::submit(*intruder_dsa, wq->index(), desc); }, {});
      if (!status || *status == client::SubmitStatus::retry) break;
    }
    counters(a).event(kParked, parked);
    auto* owner_record = reinterpret_cast<ioasid_dsa_completion*>(owner_page.span(0, k4K).data());
    std::memset(owner_record, 0, sizeof *owner_record);
    const auto noop =
        client::dsa::noop({.completion_addr = owner_space.records->iova(), .pasid = owner_space.pasid->value()});
    bool accepted = false;
    for (const auto deadline = Clock::now() + kHangLimit; !accepted && Clock::now() < deadline;) {
      auto status = op(a, kDeviceSubmit, [&] { return wq->submit(noop); }, {});
      if (!status) return;
      accepted = *status == client::SubmitStatus::accepted;
      if (!accepted) std::this_thread::sleep_for(1ms);
    }
    if (!accepted)
      return report(shared_.invariants, a,
                    "the owner's NOOP was refused RETRY for 10 s: another file's descriptors hold its WQ");
    if (!client::dsa::wait_for_completion(*owner_record, kHangLimit))
      return report(shared_.invariants, a,
                    "the owner's NOOP did not complete within 10 s behind another file's descriptors");
    counters(a).event(kOwnerServed);
    // The WQ runs in order: the intruder's records are written by now.
    for (uint32_t i = 0; i < parked; ++i) {
      const auto& record = *reinterpret_cast<const ioasid_dsa_completion*>(intruder_records.data() + 32 * i);
      if (client::dsa::status_code(record) == IOASID_DSA_COMP_PAGE_FAULT_NOBOF) counters(a).event(kGaveWay);
      if (client::dsa::status_code(record) == IOASID_DSA_COMP_PAGE_FAULT_IR) counters(a).event(kPageTimedOut);
    }
    (void)op(a, kWqConfig, [&] { return wq->disable(); }, {});
  }

  // (8) CACHE_INVLD with entry counts and lengths past the daemon's bounds (65,536
  // entries, 4,096 bytes each) and far past them: EINVAL before reading any entry.
  void cache_invld() {
    const Attack a = kAttackCacheInvld;
    auto file = open_node(a);
    if (!file) return;
    auto parent = new_ioas(a, *file);
    if (!parent) return;
    auto nested = op(a, kIoasAlloc, [&] { return client::Ioas::allocate_nested(*parent); }, {ENOSPC});
    if (!nested) return;
    ioasid_cache_invalidate_info entries[2] = {};
    constexpr uint32_t kEntry = sizeof(ioasid_cache_invalidate_info), kMax = ~0u;
    const std::pair<uint32_t, uint32_t> shapes[] = {
        {kEntry, 65537}, {kEntry, kMax}, {4097, 1}, {kMax, 1}, {kMax, kMax}};  // {entry_len, entry_num}
    for (const auto& [entry_len, entry_num] : shapes) {
      ioasid_cache_invalidate request{.ioasid = nested->id(),
                                      .flags = 0,
                                      .entry_len = entry_len,
                                      .entry_num = entry_num,
                                      .entries_uptr = reinterpret_cast<uintptr_t>(entries)};
      must_refuse(
          a, kCacheInvld, [&] { return file->call(IOASID_CACHE_INVLD, request); }, {EINVAL},
          "CACHE_INVLD of " + std::to_string(entry_num) + " entries of " + std::to_string(entry_len) + " bytes");
    }
  }

  Shared& shared_;
  ClientSlot& slot_;
  const std::string node_;
  const Victims victims_;
  std::mt19937_64 rng_;
};

// The body of a forked attacker: drops to uid/gid 65534 with no supplementary group
// (the node is 0666 in this run), then attacks until it is killed.
[[noreturn]] void attacker_main(Shared& shared, int slot_index, pid_t supervisor, const std::string& node,
                                const Victims& victims, uint64_t seed) {
  if (::setgroups(0, nullptr) != 0 || ::setresgid(kNobody, kNobody, kNobody) != 0 ||
      ::setresuid(kNobody, kNobody, kNobody) != 0) {
    shared.unexpected.fetch_add(1);
    add_message(shared, std::string("attacker: cannot become uid 65534: ") + std::strerror(errno));
    ::_exit(kExitSetupFailed);
  }
  // The uid change made it undumpable and cleared its parent-death signal: a process
  // of that user is dumpable (the daemon reaches its fds and memory as any client's).
  ::prctl(PR_SET_DUMPABLE, 1);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != supervisor) ::_exit(kExitSetupFailed);
  Attacker(shared, shared.slots[slot_index], node, victims, seed).run();
}

// ---------------------------------------------------------------- the daemon

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string tail(const std::string& path, size_t lines) {
  std::vector<std::string> kept;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    kept.push_back("  | " + line);
    if (kept.size() > lines) kept.erase(kept.begin());
  }
  std::string out;
  for (auto& l : kept) out += l + "\n";
  return out;
}

// What the daemon holds, from /proc: the resources issue 12's attacks aimed at. All 0
// once it is gone.
struct DaemonFigures {
  uint64_t rss_kib = 0, fds = 0, vmas = 0, threads = 0;

  static DaemonFigures of(pid_t pid) {
    DaemonFigures f;
    const std::string proc = "/proc/" + std::to_string(pid);
    std::ifstream status(proc + "/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("VmRSS:", 0) == 0) f.rss_kib = std::stoull(line.substr(6));
      if (line.rfind("Threads:", 0) == 0) f.threads = std::stoull(line.substr(8));
    }
    std::error_code ec;
    for (fs::directory_iterator fd(proc + "/fd", ec), end; !ec && fd != end; fd.increment(ec)) ++f.fds;
    std::ifstream maps(proc + "/maps");
    for (std::string line; std::getline(maps, line);) ++f.vmas;
    return f;
  }
  void raise_to(const DaemonFigures& other) {
    rss_kib = std::max(rss_kib, other.rss_kib);
    fds = std::max(fds, other.fds);
    vmas = std::max(vmas, other.vmas);
    threads = std::max(threads, other.threads);
  }
};

// The attacker's victims, in `dir` (root's, 0711): a root 0644 file and a root 0600 one.
Victims make_victims(const std::string& dir) {
  Victims victims{dir + "/readable", dir + "/secret"};
  for (const auto& [path, mode] : {std::pair{victims.readable, 0644}, std::pair{victims.secret, 0600}}) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const bool made = fd >= 0 && ::ftruncate(fd, 64 * 1024) == 0 && ::fchmod(fd, static_cast<mode_t>(mode)) == 0;
    if (fd >= 0) ::close(fd);
    if (!made) throw std::runtime_error("cannot create " + path);
  }
  return victims;
}

bool is_mounted(const std::string& dir) {
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);)
    if (line.find(" " + dir + " ") != std::string::npos) return true;
  return false;
}

// ioasidd on a FUSE mount in a temporary directory. The destructor SIGKILLs it if it
// still runs, detaches a mount left behind and removes the directory unless kept.
class Daemon {
 public:
  Daemon(const std::string& binary, const std::vector<std::string>& extra_args, bool keep_tmp) : keep_tmp_(keep_tmp) {
    char tmpl[] = "/tmp/ioasid-stress.XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    fs::permissions(dir_, fs::perms(0711));  // the attacker (uid 65534) reaches the node below it
    fs::create_directory(dir_ + "/mnt");
    // --node-mode 0666: the attacker is no member of the node's group.
    std::vector<std::string> args = {binary,           "--frontend",
                                     "fuse",           "--fuse",
                                     dir_ + "/mnt",    "--admin-socket",
                                     admin_socket(),   "--no-netlink",
                                     "--log-file",     log_path(),
                                     "--node-mode",    "0666",
                                     "--page-timeout", std::to_string(std::chrono::milliseconds(kPageTimeout).count())};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    std::cout << "starting";
    for (auto& a : args) std::cout << " " << a;
    std::cout << std::endl;
    const std::string notify_socket = ready_.socket_env();
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the stress program
      if (::getppid() != parent) ::_exit(126);
      const int out = ::open(out_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      ::dup2(out, 1);
      ::dup2(out, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::setenv("NOTIFY_SOCKET", notify_socket.c_str(), 1);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~Daemon() {
    if (running()) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (is_mounted(dir_ + "/mnt")) ::umount2((dir_ + "/mnt").c_str(), MNT_DETACH);
    if (keep_tmp_) {
      std::cout << "kept " << dir_ << "\n";
    } else {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  pid_t pid() const { return pid_; }
  // Until the daemon says READY=1 (sd_notify), exits or `timeout` passes.
  ioasid::test::NotifyListener::Outcome wait_ready(std::chrono::milliseconds timeout) {
    return ready_.wait_ready(pid_, timeout);
  }
  std::string dir() const { return dir_; }
  std::string node() const { return dir_ + "/mnt/ioasid"; }
  std::string admin_socket() const { return dir_ + "/admin.sock"; }
  std::string log_path() const { return dir_ + "/ioasidd.log"; }
  std::string out_path() const { return dir_ + "/ioasidd.out"; }
  bool running() const { return !status_; }
  // The supervisor reaps every child with waitpid(-1): it tells us when it got ours.
  void exited(int status) { status_ = status; }
  std::optional<int> status() const { return status_; }
  void keep_tmp() { keep_tmp_ = true; }
  // ASan's quarantine and shadow make RSS say nothing about leaks; LeakSanitizer does.
  bool sanitized() const {
    const std::string maps = read_file("/proc/" + std::to_string(pid_) + "/maps");
    return maps.find("libasan") != std::string::npos || maps.find("libtsan") != std::string::npos;
  }
  // Lines of the daemon's stdout/stderr that are sanitizer reports.
  std::vector<std::string> sanitizer_reports() const {
    std::vector<std::string> reports;
    std::ifstream in(out_path());
    for (std::string line; std::getline(in, line);)
      if (line.find("runtime error:") != std::string::npos || line.find("Sanitizer") != std::string::npos)
        reports.push_back(line);
    return reports;
  }
  // What the daemon's threads wait in: a hang's first clue.
  std::string thread_states() const {
    std::string out;
    std::error_code ec;
    for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid_) + "/task", ec)) {
      std::string comm = read_file(task.path() / "comm");
      if (!comm.empty() && comm.back() == '\n') comm.pop_back();
      out += "  | tid " + task.path().filename().string() + " " + comm + ": " + read_file(task.path() / "wchan") + "\n";
    }
    return out;
  }

 private:
  std::string dir_;
  ioasid::test::NotifyListener ready_;  // bound before the fork: no READY=1 can be missed
  pid_t pid_ = -1;
  std::optional<int> status_;
  bool keep_tmp_;
};

bool node_answers(const std::string& node) {
  auto file = client::File::open(node);
  return file && file->api_version().code() == 0 && *file->api_version() == IOASID_API_VERSION;
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by SIG") + ::sigabbrev_np(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// ---------------------------------------------------------------- the supervisor

// Forks, watches, kills and reaps clients. Single-threaded: fork() stays safe.
class Supervisor {
 public:
  Supervisor(const Options& options, Shared& shared, Daemon& daemon, uint32_t pasid_bits, Victims victims)
      : options_(options), shared_(shared), daemon_(daemon), pasid_bits_(pasid_bits), victims_(std::move(victims)),
        rng_(options.seed) {}
  ~Supervisor() { stop_all(); }
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  void spawn(ClientEnd end) {
    int slot = 0;
    while (slot < kMaxSlots && shared_.slots[slot].pid.load() != 0) ++slot;
    if (slot == kMaxSlots) return fail("no free client slot: clients are not being reaped");
    for (auto& t : shared_.slots[slot].threads) t.op_started_ns = 0;
    const auto lifetime = std::chrono::milliseconds(500 + rng_() % 3500);
    const uint64_t serial = end == ClientEnd::attacker ? 0 : next_serial_++, seed = rng_();
    const pid_t supervisor = ::getpid();
    std::cout.flush();
    const pid_t pid = ::fork();
    if (pid < 0) return fail(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      if (end == ClientEnd::attacker) attacker_main(shared_, slot, supervisor, daemon_.node(), victims_, seed);
      client_main(options_, shared_, slot, daemon_.node(), serial, pasid_bits_, end, lifetime, seed);
    }
    shared_.slots[slot].pid = pid;
    children_[pid] = {slot, end, std::nullopt};
    ++(end == ClientEnd::attacker ? attackers_started : started);
  }

  // One turn of the supervision loop: reap, replace (an attacker too), watch, maybe kill.
  void tick(bool replace) {
    reap();
    if (replace) {
      while (live(false) < options_.clients && failures_.empty()) spawn(random_end());
      while (live(true) < options_.attackers && failures_.empty()) spawn(ClientEnd::attacker);
      if (Clock::now() >= next_kill_) {
        kill_random();
        const int interval = options_.kill_interval_ms;
        next_kill_ = Clock::now() + std::chrono::milliseconds(interval / 2 + rng_() % (interval * 3 / 2 + 1));
      }
    }
    watch();
  }
  // SIGKILLs every client and reaps them; one that cannot be reaped within 10 s is
  // stuck in an ioctl the daemon never answers.
  void stop_all() {
    for (auto& [pid, child] : children_) {
      ::kill(pid, SIGKILL);
      if (!child.kill_sent) child.kill_sent = Clock::now();
    }
    const auto deadline = Clock::now() + kHangLimit;
    while (!children_.empty() && Clock::now() < deadline) {
      reap();
      std::this_thread::sleep_for(10ms);
    }
    if (!children_.empty()) watch();
  }
  bool idle() const { return children_.empty(); }

  const std::vector<std::string>& failures() const { return failures_; }
  void fail(const std::string& why) {
    failures_.push_back(why);
    std::cout << "FAILURE: " << why << std::endl;
  }
  uint64_t killed = 0, exited_clean = 0, exited_dirty = 0, started = 0;
  uint64_t attackers_started = 0, attackers_killed = 0;

 private:
  struct Child {
    int slot;
    ClientEnd end;
    std::optional<Clock::time_point> kill_sent;
  };

  int live(bool attackers) const {
    return static_cast<int>(std::count_if(children_.begin(), children_.end(), [&](auto& c) {
      return !c.second.kill_sent && (c.second.end == ClientEnd::attacker) == attackers;
    }));
  }
  ClientEnd random_end() {
    const auto dice = rng_() % 10;
    return dice < 6 ? ClientEnd::killed : dice < 8 ? ClientEnd::exit_clean : ClientEnd::exit_dirty;
  }
  // Attackers too: the daemon must undo an attack killed half-way.
  void kill_random() {
    std::vector<pid_t> candidates;
    for (auto& [pid, child] : children_)
      if (!child.kill_sent && child.end != ClientEnd::warm_up) candidates.push_back(pid);
    if (candidates.empty()) return;
    const pid_t victim = candidates[rng_() % candidates.size()];
    ::kill(victim, SIGKILL);
    children_[victim].kill_sent = Clock::now();
  }
  void reap() {
    for (;;) {
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) return;
      if (pid == daemon_.pid()) {
        daemon_.exited(status);
        fail("ioasidd died during the run: " + describe(status) + "\nstderr:\n" + tail(daemon_.out_path(), 20) +
             "log:\n" + tail(daemon_.log_path(), 40));
        continue;
      }
      auto it = children_.find(pid);
      if (it == children_.end()) continue;
      const Child child = it->second;
      children_.erase(it);
      shared_.slots[child.slot].pid = 0;
      if (child.kill_sent && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        ++(child.end == ClientEnd::attacker ? attackers_killed : killed);
      else if (WIFEXITED(status) && WEXITSTATUS(status) == kExitClean &&
               (child.end == ClientEnd::exit_clean || child.end == ClientEnd::warm_up))
        ++exited_clean;
      else if (WIFEXITED(status) && WEXITSTATUS(status) == kExitDirty && child.end == ClientEnd::exit_dirty)
        ++exited_dirty;
      else
        fail(std::string(child.end == ClientEnd::attacker ? "attacker" : "client") + " pid " + std::to_string(pid) +
             " ended unexpectedly: " + describe(status));
    }
  }
  // The per-client watchdog: an ioctl in flight for more than 10 s, or a killed client
  // still not reaped after 10 s (its ioctl is stuck in the daemon), is a hang.
  void watch() {
    const int64_t now = now_ns();
    const auto limit = std::chrono::nanoseconds(kHangLimit).count();
    for (auto& [pid, child] : children_) {
      if (hung_.count(pid)) continue;
      std::string what;
      for (int t = 0; t < kMaxThreads && what.empty(); ++t) {  // an attacker's too; unused ones stay 0
        const ThreadSlot& thread = shared_.slots[child.slot].threads[t];
        const int64_t started = thread.op_started_ns.load(std::memory_order_acquire);
        if (started != 0 && now - started > limit)
          what = "thread " + std::to_string(t) + ": " + kKindNames[thread.kind.load()] + " in flight for " +
                 std::to_string((now - started) / 1000000000) + " s" +
                 (child.kill_sent ? " (SIGKILLed, not reaped)" : "");
      }
      if (what.empty() && child.kill_sent && Clock::now() - *child.kill_sent > kHangLimit)
        what = "SIGKILLed more than 10 s ago, not reaped (an ioctl of it is stuck in the daemon)";
      if (what.empty()) continue;
      // The daemon's threads and log once, with the first hang: the rest are its echoes.
      fail(std::string("hang: ") + (child.end == ClientEnd::attacker ? "attacker" : "client") + " pid " +
           std::to_string(pid) + " " + what +
           (hung_.empty() ? "\ndaemon threads:\n" + daemon_.thread_states() + "log:\n" + tail(daemon_.log_path(), 30)
                          : ""));
      hung_.insert(pid);
    }
  }

  const Options& options_;
  Shared& shared_;
  Daemon& daemon_;
  const uint32_t pasid_bits_;
  const Victims victims_;
  std::mt19937_64 rng_;
  std::map<pid_t, Child> children_;
  std::set<pid_t> hung_;
  std::vector<std::string> failures_;
  uint64_t next_serial_ = 0;
  Clock::time_point next_kill_ = Clock::now() + 1s;
};

// ---------------------------------------------------------------- after the run

// Waits (bounded) until the daemon has released every file and PASID; the last status.
json wait_released(const Daemon& daemon, std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  json status;
  for (;;) {
    if (auto s = admin(daemon.admin_socket(), {{"cmd", "status"}})) status = *s;
    if (status.is_object() && status.value("contexts", -1) == 0 && status.value("pasids_allocated", -1) == 0)
      return status;
    if (Clock::now() > deadline) return status;
    std::this_thread::sleep_for(100ms);
  }
}

struct Residue {
  uint64_t contexts = 0, pasids = 0, pinned = 0;
  std::vector<std::string> leaks;  // one line per invariant violation
};

// What the admin socket shows once every client is gone: nothing may be left, and no
// more page-table pages than after the warm-up.
Residue inspect(const Daemon& daemon, const json& status, uint64_t table_pages_before) {
  Residue r;
  auto leak = [&](const std::string& what) { r.leaks.push_back(what); };
  const auto contexts = admin(daemon.admin_socket(), {{"cmd", "contexts"}});
  const auto pasids = admin(daemon.admin_socket(), {{"cmd", "pasids"}});
  const auto devices = admin(daemon.admin_socket(), {{"cmd", "devices"}});
  const auto stats = admin(daemon.admin_socket(), {{"cmd", "stats"}});
  if (!status.is_object() || !contexts || !pasids || !devices || !stats || !stats->is_object()) {
    leak("the admin socket did not answer status, contexts, pasids, devices and stats");
    return r;
  }
  r.contexts = std::max<uint64_t>(number(status, "/contexts"), contexts->size());
  if (r.contexts) leak(std::to_string(r.contexts) + " context(s) left: " + contexts->dump().substr(0, 2000));
  r.pasids = std::max<uint64_t>(number(status, "/pasids_allocated"), pasids->size());
  if (r.pasids) leak(std::to_string(r.pasids) + " PASID(s) left: " + pasids->dump().substr(0, 2000));
  const json by_uid = stats->value(json::json_pointer("/pinned_pages/by_uid"), json::object());
  for (const auto& [uid, pages] : by_uid.items()) {
    r.pinned += pages.is_number_unsigned() ? pages.get<uint64_t>() : 0;
    if (pages != 0) leak("uid " + uid + " still has " + pages.dump() + " pinned page(s)");
  }
  if (number(*stats, "/hpa/segments") || number(*stats, "/hpa/segment_bytes"))
    leak("pinned HPA segments left: " + (*stats)["hpa"].dump());
  if (const uint64_t pages = number(*stats, "/hpa/table_pages"); pages > table_pages_before)
    leak("page-table pages: " + std::to_string(pages) + " after, " + std::to_string(table_pages_before) + " before");
  for (const json& device : *devices) {
    const std::string name = device.value("name", "?");
    if (!device.value("owner", json()).is_null() || !device.value("bound_by", json::array()).empty())
      leak(name + " is still bound: " + device.dump());
    if (!device.value("routes", json::array()).empty()) leak(name + " still has routes: " + device["routes"].dump());
    for (const json& wq : device.value("wqs", json::array()))
      if (wq.value("enabled", false) || number(wq, "/queued")) leak(name + " wq left enabled or busy: " + wq.dump());
  }
  return r;
}

std::optional<Options> parse(int argc, char** argv) {
  Options o;
#ifdef IOASIDD_PATH
  o.ioasidd = IOASIDD_PATH;
#endif
  o.seed = std::random_device{}();
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--clients")
      o.clients = std::stoi(value());
    else if (arg == "--threads")
      o.threads = std::stoi(value());
    else if (arg == "--seconds")
      o.seconds = std::stoi(value());
    else if (arg == "--kill-interval-ms")
      o.kill_interval_ms = std::stoi(value());
    else if (arg == "--attackers")
      o.attackers = std::stoi(value());
    else if (arg == "--seed")
      o.seed = std::stoull(value());
    else if (arg == "--ioasidd")
      o.ioasidd = value();
    else if (arg == "--json")
      o.json_path = value();
    else if (arg == "--keep-tmp")
      o.keep_tmp = true;
    else if (arg == "--daemon-arg")
      o.daemon_args.push_back(value());
    else if (arg == "--sequences") {
      o.sequences.clear();
      std::istringstream names(value());
      for (std::string name; std::getline(names, name, ',');) {
        const auto* at = std::find_if(std::begin(Worker::kSequences), std::end(Worker::kSequences),
                                      [&](const char* known) { return name == known; });
        if (at == std::end(Worker::kSequences)) throw std::invalid_argument("unknown sequence " + name);
        o.sequences.push_back(static_cast<int>(at - std::begin(Worker::kSequences)));
      }
      if (o.sequences.empty()) throw std::invalid_argument("--sequences needs at least one name");
    } else {
      const bool help = arg == "--help" || arg == "-h";
      (help ? std::cout : std::cerr)
          << "usage: ioasid-stress [--clients N (16)] [--threads N (4)] [--seconds S (30)]\n"
             "         [--kill-interval-ms MS (1000: a kill every MS/2..2*MS)] [--attackers N (1)]\n"
             "         [--seed N]\n"
             "         [--sequences pasid,map,dma,dsa,nested,fault (all)] [--ioasidd PATH]\n"
             "         [--daemon-arg ARG]... [--json FILE] [--keep-tmp]\n"
             "Run as root. Exit status 0: clean; 1: a failure (printed); 2: usage.\n";
      if (help) std::exit(0);
      return std::nullopt;
    }
  }
  if (o.clients < 1 || o.clients > kMaxSlots / 2 || o.threads < 1 || o.threads > kMaxThreads || o.seconds < 1 ||
      o.kill_interval_ms < 10 || o.attackers < 0 || o.attackers > 16)
    throw std::invalid_argument(
        "--clients 1..128, --threads 1..16, --seconds >= 1, --kill-interval-ms >= 10, --attackers 0..16");
  if (o.ioasidd.empty()) throw std::invalid_argument("no ioasidd: pass --ioasidd PATH");
  return o;
}

int run(const Options& options) {
  SharedMapping shared_memory;
  Shared& shared = *shared_memory;
  Daemon daemon(options.ioasidd, options.daemon_args, options.keep_tmp);
  if (daemon.wait_ready(10s) != ioasid::test::NotifyListener::Outcome::Ready) {
    if (int status; ::waitpid(daemon.pid(), &status, WNOHANG) == daemon.pid()) {
      daemon.exited(status);
      std::cout << "ioasidd exited during start-up: " << describe(status) << "\n" << tail(daemon.out_path(), 30);
    } else {
      std::cout << "ioasidd sent no READY=1 within 10 s\n" << tail(daemon.log_path(), 30);
    }
    return 1;
  }
  // Ready means answering.
  if (!node_answers(daemon.node())) {
    std::cout << daemon.node() << " did not answer once ioasidd was ready\n" << tail(daemon.log_path(), 30);
    return 1;
  }
  const auto initial = admin(daemon.admin_socket(), {{"cmd", "status"}});
  if (!initial) {
    std::cout << "the admin socket " << daemon.admin_socket() << " does not answer\n";
    return 1;
  }
  std::cout << "ioasidd pid " << daemon.pid() << " serves " << daemon.node() << "; seed " << options.seed << std::endl;
  g_admin_socket = daemon.admin_socket();
  Supervisor supervisor(options, shared, daemon, initial->value("pasid_bits", 20u), make_victims(daemon.dir()));

  // Warm-up: one client runs each sequence once, so that "before" includes what the
  // daemon allocates once (thread pools, caches, first arenas).
  supervisor.spawn(ClientEnd::warm_up);
  while (!supervisor.idle() && supervisor.failures().empty()) {
    supervisor.tick(false);
    std::this_thread::sleep_for(10ms);
  }
  wait_released(daemon, 10s);
  const uint64_t table_pages_before =
      number(admin(daemon.admin_socket(), {{"cmd", "stats"}}).value_or(json::object()), "/hpa/table_pages");
  std::this_thread::sleep_for(500ms);
  const DaemonFigures before = DaemonFigures::of(daemon.pid());
  const uint64_t rss_before = before.rss_kib;
  std::cout << "daemon after warm-up: RSS " << rss_before << " KiB, " << before.fds << " fds, " << before.vmas
            << " VMAs, " << before.threads << " threads" << std::endl;

  DaemonFigures peak = before, after;
  const auto start = Clock::now(), end = start + std::chrono::seconds(options.seconds);
  while (Clock::now() < end && supervisor.failures().empty() && daemon.running()) {
    supervisor.tick(true);
    peak.raise_to(DaemonFigures::of(daemon.pid()));
    std::this_thread::sleep_for(20ms);
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  supervisor.stop_all();

  Residue residue;
  uint64_t rss_after = 0;
  const bool sanitized = daemon.running() && daemon.sanitized();
  // Threshold: glibc keeps freed memory in its per-thread arenas and the daemon's
  // thread pools may have grown, so "near" is before + max(16 MiB, 25%).
  const uint64_t rss_limit = rss_before + std::max<uint64_t>(16 * 1024, rss_before / 4);
  // Every file released, the daemon's fds and memory maps are back too, give or take
  // what a first use leaves (the fd closer's thread, ...). Session threads may stay: the
  // daemon keeps the ones it started for DMAs waiting for page responses (up to 64),
  // and each kept thread keeps 5 memory maps (seen: its 8 MiB stack and guard page, its
  // 1 MiB request buffer, a malloc arena's used part and 63 MiB reserve): 6 each are
  // allowed for them.
  const uint64_t fd_limit = before.fds + 16;
  auto vmas_allowed = [&](const DaemonFigures& now) {
    return before.vmas + 64 + 6 * (now.threads > before.threads ? now.threads - before.threads : 0);
  };
  uint64_t vma_limit = vmas_allowed(before);
  if (daemon.running()) {
    const json status = wait_released(daemon, 10s);
    residue = inspect(daemon, status, table_pages_before);
    for (auto& leak : residue.leaks) supervisor.fail("leak: " + leak);
    after = DaemonFigures::of(daemon.pid());
    auto over = [&] {
      return (after.rss_kib > rss_limit && !sanitized) || after.fds > fd_limit ||
             (after.vmas > vmas_allowed(after) && !sanitized);
    };
    for (int again = 0; again < 3 && over(); ++again) {  // give trimming and the fd closer a chance
      std::this_thread::sleep_for(2s);
      after = DaemonFigures::of(daemon.pid());
    }
    rss_after = after.rss_kib;
    vma_limit = vmas_allowed(after);
    peak.raise_to(after);
    if (rss_after > rss_limit && !sanitized) {
      residue.leaks.push_back("rss");
      supervisor.fail("daemon RSS " + std::to_string(rss_after) + " KiB after, limit " + std::to_string(rss_limit) +
                      " KiB (" + std::to_string(rss_before) + " KiB before + max(16 MiB, 25%))");
    }
    if (after.fds > fd_limit) {
      residue.leaks.push_back("fds");
      supervisor.fail("leak: the daemon has " + std::to_string(after.fds) + " fds after, " +
                      std::to_string(before.fds) + " before (limit +16)");
    }
    // A sanitizer's allocator maps as it pleases: reported, not enforced, as RSS.
    if (after.vmas > vma_limit && !sanitized) {
      residue.leaks.push_back("vmas");
      supervisor.fail("leak: the daemon has " + std::to_string(after.vmas) + " memory maps after, " +
                      std::to_string(before.vmas) + " before (limit " + std::to_string(vma_limit) +
                      ": +64, +6 per thread kept); its maps are in " + daemon.dir() + "/ioasidd.maps");
      std::ofstream(daemon.dir() + "/ioasidd.maps") << read_file("/proc/" + std::to_string(daemon.pid()) + "/maps");
    }
    ::kill(daemon.pid(), SIGTERM);
    int status_code = 0;
    const auto deadline = Clock::now() + 10s;
    while (::waitpid(daemon.pid(), &status_code, WNOHANG) != daemon.pid() && Clock::now() < deadline)
      std::this_thread::sleep_for(10ms);
    if (Clock::now() >= deadline) {
      supervisor.fail("ioasidd did not exit within 10 s of SIGTERM\n" + daemon.thread_states());
      ::kill(daemon.pid(), SIGKILL);  // frees clients stuck in its requests, so they can be reaped
      ::waitpid(daemon.pid(), &status_code, 0);
      daemon.exited(status_code);
      supervisor.stop_all();
    } else {
      daemon.exited(status_code);
      if (!WIFEXITED(status_code) || WEXITSTATUS(status_code) != 0)
        supervisor.fail("ioasidd did not exit 0 after SIGTERM: " + describe(status_code));
    }
  }
  const auto reports = daemon.sanitizer_reports();
  if (!reports.empty()) {
    std::string lines;
    for (size_t i = 0; i < std::min<size_t>(reports.size(), 10); ++i) lines += "  | " + reports[i] + "\n";
    supervisor.fail(std::to_string(reports.size()) + " sanitizer report line(s) in ioasidd's stderr:\n" + lines +
                    tail(daemon.out_path(), 40));
  }

  // ---- the report
  json per_kind = json::object(), contended = json::object();
  uint64_t total = 0;
  for (int k = 0; k < kKinds; ++k) {
    if (k == kOpen) continue;  // not an ioctl: only the attacker's watchdog stamps name it
    per_kind[kKindNames[k]] = shared.ops[k].load();
    total += shared.ops[k].load();
    if (shared.contended[k]) contended[kKindNames[k]] = shared.contended[k].load();
  }
  auto figures = [&](uint64_t DaemonFigures::*field) {
    return json{{"before", before.*field}, {"peak", peak.*field}, {"after", after.*field}};
  };
  // Per attack: rounds completed, the refusals it expects by errno name, its other
  // outcomes, and the most objects a per-user cap let it hold.
  json attacks = json::object();
  for (int a = 0; a < kAttacks; ++a) {
    const AttackCounters& counters = shared.attacks[a];
    json refused = json::object(), outcomes = json::object();
    for (int code = 0; code < kErrnoSlots; ++code)
      if (const uint64_t n = counters.refused[code]) {
        const char* name = code ? ::strerrorname_np(code) : nullptr;
        refused[name ? name : "errno " + std::to_string(code)] = n;
      }
    for (int e = 0; e < kEvents; ++e)
      if (const uint64_t n = counters.events[e]) outcomes[kEventNames[e]] = n;
    attacks[kAttackNames[a]] = {{"rounds", counters.rounds.load()}, {"refused", refused}, {"outcomes", outcomes}};
    if (counters.most_held) attacks[kAttackNames[a]]["most_held_when_refused"] = counters.most_held.load();
  }
  const uint64_t unexpected = shared.unexpected, invariants = shared.invariants;
  const bool clean = supervisor.failures().empty() && unexpected == 0 && invariants == 0 && residue.leaks.empty();
  json report = {{"clients", options.clients},
                 {"threads_per_client", options.threads},
                 {"seconds", options.seconds},
                 {"seed", options.seed},
                 {"operations", {{"total", total}, {"per_kind", per_kind}}},
                 {"operations_per_second", elapsed > 0 ? static_cast<double>(total) / elapsed : 0.0},
                 {"contention_outcomes", contended},
                 {"submit_retries", shared.submit_retries.load()},
                 {"clients_started", supervisor.started},
                 {"clients_killed", supervisor.killed},
                 {"clients_exited_clean", supervisor.exited_clean},
                 {"clients_exited_dirty", supervisor.exited_dirty},
                 {"unexpected_errors", unexpected},
                 {"client_invariant_failures", invariants},
                 {"leaks", residue.leaks.size()},
                 {"rss_before_kib", rss_before},
                 {"rss_after_kib", rss_after},
                 {"rss_limit_kib", rss_limit},
                 {"rss_checked", !sanitized},
                 {"daemon_rss_kib", figures(&DaemonFigures::rss_kib)},
                 {"daemon_fds", figures(&DaemonFigures::fds)},
                 {"daemon_vmas", figures(&DaemonFigures::vmas)},
                 {"daemon_fds_limit", fd_limit},
                 {"daemon_vmas_limit", vma_limit},
                 {"daemon_threads", figures(&DaemonFigures::threads)},
                 {"attackers",
                  {{"at_once", options.attackers},
                   {"uid", kNobody},
                   {"started", supervisor.attackers_started},
                   {"killed", supervisor.attackers_killed},
                   {"attacks", attacks}}},
                 {"contexts_after", residue.contexts},
                 {"pasids_after", residue.pasids},
                 {"pinned_after", residue.pinned},
                 {"failures", supervisor.failures()},
                 {"ok", clean}};
  std::cout << "\n== ioasid-stress: " << options.clients << " clients x " << options.threads << " threads, "
            << options.seconds << " s, seed " << options.seed << "\n"
            << "operations  " << total << " successful ioctls ("
            << static_cast<uint64_t>(report["operations_per_second"].get<double>()) << "/s); contention outcomes "
            << contended.dump() << ", submit RETRY " << shared.submit_retries << "\n"
            << "per kind    " << per_kind.dump() << "\n"
            << "clients     " << supervisor.started << " started, " << supervisor.killed << " SIGKILLed, "
            << supervisor.exited_clean << " exited cleanly, " << supervisor.exited_dirty << " _exited mid-work\n"
            << "daemon RSS  " << rss_before << " KiB before, " << rss_after << " KiB after (limit " << rss_limit
            << " KiB" << (sanitized ? ", not enforced: sanitized daemon" : "") << ")\n"
            << "daemon      before/peak/after: RSS " << before.rss_kib << "/" << peak.rss_kib << "/" << after.rss_kib
            << " KiB, fds " << before.fds << "/" << peak.fds << "/" << after.fds << ", VMAs " << before.vmas << "/"
            << peak.vmas << "/" << after.vmas << ", threads " << before.threads << "/" << peak.threads << "/"
            << after.threads << "\n"
            << "attackers   " << options.attackers << " at once as uid " << kNobody << ": "
            << supervisor.attackers_started << " started, " << supervisor.attackers_killed << " SIGKILLed\n";
  for (const auto& [name, attack] : attacks.items())
    std::cout << "  " << name << ": " << attack["rounds"] << " rounds, refused " << attack["refused"].dump() << ", "
              << attack["outcomes"].dump()
              << (attack.contains("most_held_when_refused")
                      ? ", held " + attack["most_held_when_refused"].dump() + " when refused"
                      : "")
              << "\n";
  std::cout
            << "after       " << residue.contexts << " contexts, " << residue.pasids << " PASIDs, " << residue.pinned
            << " pinned pages, " << residue.leaks.size() << " leak(s)\n"
            << "errors      " << unexpected << " unexpected errno(s), " << invariants
            << " invariant failure(s) (clients and attackers)\n";
  json messages = json::array();
  for (const Message& m : shared.messages)
    if (m.count) {
      std::cout << "  | " << m.count << " x " << m.text << "\n";
      messages.push_back({{"count", m.count.load()}, {"text", m.text}});
    }
  report["error_messages"] = messages;
  if (!options.json_path.empty()) std::ofstream(options.json_path) << report.dump(2) << "\n";
  if (clean) {
    std::cout << "PASSED\n";
    return 0;
  }
  std::cout << "FAILED: " << supervisor.failures().size() << " failure(s) above, " << unexpected
            << " unexpected errno(s), " << invariants << " client invariant failure(s), " << residue.leaks.size()
            << " leak(s)\n";
  daemon.keep_tmp();  // its log and stderr, for the report
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const auto options = parse(argc, argv);
    if (!options) return 2;
    if (::geteuid() != 0) {
      std::cerr << "ioasid-stress: run it as root (FUSE allow_other mount, admin socket)\n";
      return 2;
    }
    ::signal(SIGPIPE, SIG_IGN);
    return run(*options);
  } catch (const std::exception& e) {
    std::cerr << "ioasid-stress: " << e.what() << "\n";
    return 2;
  }
}

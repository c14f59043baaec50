// SPDX-License-Identifier: MIT
// libFuzzer target: drives ioasid::dev_ioasid::Service in-process with programs of
// ioctls, fault reads and reopens over a few open files (format: ioctl_program.h),
// then checks that closing everything brings the service back to its baseline.
//
// User pointers go to a sandbox child process (forked at start-up, killed with us):
// the engine reaches it through ProcessMemory and /proc/<pid>/{maps,mem,fd}, so a
// DMA to a wild address lands in the child, never in the fuzzer.
//
// Environment: IOASID_FUZZ_TRACE=1 prints every step and its errno (for replaying a
// reproducer); IOASID_FUZZ_LOG=info|debug turns the engine's spdlog output back on.
#include "ioctl_program.h"
#include "base/unique_fd.h"
#include "dev_ioasid/service.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace ioasid_fuzz {
namespace {

using ioasid::ProcessMemory;
using ioasid::dev_ioasid::Context;
using ioasid::dev_ioasid::Service;
using ioasid::dev_ioasid::ServiceConfig;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "dispatcher_fuzzer: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

// The client process whose memory the ioctls point into. It maps kRegions at fixed
// addresses and keeps kClientFds open, then sleeps until SIGKILL (its parent's death
// sends it). Respawned if something the fuzzer did killed it, so the next input still
// meets the same client.
class SandboxClient {
 public:
  SandboxClient() { spawn(); }
  ~SandboxClient() { stop(); }
  SandboxClient(const SandboxClient&) = delete;
  SandboxClient& operator=(const SandboxClient&) = delete;

  pid_t pid() const { return pid_; }
  void ensure_alive() {
    if (waitpid(pid_, nullptr, WNOHANG) != 0) spawn();
  }

  // What one input wrote (page tables, descriptors, DMA) must not reach the next, or
  // a crash would not replay on its own. The memfd is emptied by punching a hole; the
  // private region only its owner can drop (MADV_DONTNEED), so the child does it on
  // SIGUSR1 and acknowledges on the start-up pipe: cheaper than writing 1 MiB of zeros.
  void reset_memory() {
    if (fallocate(memfd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                  static_cast<off_t>(kRegions[0].size)) != 0)
      die("punching the sandbox memfd");
    if (kill(pid_, SIGUSR1) != 0) die("signalling the sandbox client");
    char ack = 0;
    ssize_t got;
    while ((got = read(acks_.get(), &ack, 1)) < 0 && errno == EINTR) {
    }
    if (got != 1 || ack != 1) die("the sandbox client did not drop its private pages");
  }

 private:
  void stop() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  void spawn() {
    int pipe_fds[2];  // the child's start-up status, then one byte per reset_memory
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) die("pipe2");
    const pid_t parent = getpid();
    const pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
      // Only async-signal-safe calls here: the parent may have threads by now.
      close(pipe_fds[0]);
      child_acks = pipe_fds[1];
      const char status = prepare_child(parent) ? 1 : 0;
      (void)!write(child_acks, &status, 1);
      for (;;) pause();
    }
    close(pipe_fds[1]);
    acks_ = ioasid::UniqueFd(pipe_fds[0]);
    char status = 0;
    if (read(acks_.get(), &status, 1) != 1 || status != 1) die("the sandbox client could not map its regions");
    pid_ = child;
    memfd_ = ioasid::UniqueFd(open(fmt::format("/proc/{}/fd/{}", pid_, kClientFds[0]).c_str(), O_RDWR | O_CLOEXEC));
    if (!memfd_) die("opening the sandbox's memfd");
  }

  // In the child: SIGUSR1 drops the private region's pages (they read as zeros again).
  static inline int child_acks = -1;
  static void drop_private_pages(int) {
    const int saved = errno;
    const char ack = madvise(reinterpret_cast<void*>(kRegions[1].base), kRegions[1].size, MADV_DONTNEED) == 0;
    (void)!write(child_acks, &ack, 1);
    errno = saved;
  }

  static bool prepare_child(pid_t parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) return false;
    struct sigaction action = {};
    action.sa_handler = drop_private_pages;
    if (sigaction(SIGUSR1, &action, nullptr) != 0) return false;
    const int memfd = memfd_create("ioasid-fuzz-client", 0);
    if (memfd < 0 || ftruncate(memfd, static_cast<off_t>(kRegions[0].size)) != 0) return false;
    auto map = [](const Region& region, int prot, int flags, int fd) {
      void* at = mmap(reinterpret_cast<void*>(region.base), region.size, prot, flags | MAP_FIXED_NOREPLACE, fd, 0);
      return at == reinterpret_cast<void*>(region.base);
    };
    if (!map(kRegions[0], PROT_READ | PROT_WRITE, MAP_SHARED, memfd) ||
        !map(kRegions[1], PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1) ||
        !map(kRegions[2], PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1))
      return false;
    static_assert(kClientFds[0] == 200, "the read-only reopen below names fd 200");
    if (dup2(memfd, kClientFds[0]) < 0) return false;
    const int read_only = open("/proc/self/fd/200", O_RDONLY);
    const int not_regular = open("/dev/null", O_RDWR);
    if (read_only < 0 || not_regular < 0) return false;
    if (dup2(read_only, kClientFds[1]) < 0 || dup2(not_regular, kClientFds[2]) < 0) return false;
    close(kClientFds[3]);
    return true;
  }

  pid_t pid_ = -1;
  ioasid::UniqueFd memfd_;  // the fuzzer's own handle on the client's memfd, for reset_memory
  ioasid::UniqueFd acks_;   // the child's start-up status and reset acknowledgements
};

// The process's open descriptors as "fd -> target", for the leak report.
std::set<std::string> open_fds() {
  std::set<std::string> fds;
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return fds;
  const int own = dirfd(dir);
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.' || std::atoi(entry->d_name) == own) continue;
    char target[256] = {};
    const std::string link = std::string("/proc/self/fd/") + entry->d_name;
    (void)!readlink(link.c_str(), target, sizeof target - 1);
    fds.insert(std::string(entry->d_name) + " -> " + target);
  }
  closedir(dir);
  return fds;
}

// Small limits, so quota, pin-limit and queue-full rows are reachable; a DMA waiting
// for a PAGE_RESP runs on the fuzzing thread, so the wait is short.
ServiceConfig fuzz_config() {
  ServiceConfig config;
  config.default_pasid_quota = 16;
  config.pin_limit_pages = 4096;
  config.fault_queue_depth = 16;
  config.page_response_timeout = std::chrono::milliseconds(10);
  config.ats_timeout = std::chrono::milliseconds(5);  // nobody acknowledges in a fuzz run
  return config;  // default devices: dma0 (PASID, PRI, ATS), dma1, dsa0
}

struct Baseline {
  uint64_t table_pages;
  uint32_t quota_available;
  size_t pasid_sets;
  // Taken at the start of each input, not at start-up: libFuzzer itself opens pipes
  // to llvm-symbolizer between inputs (NEW_FUNC lines).
  std::set<std::string> fds;
};

struct Fixture {
  SandboxClient sandbox;  // first: forked while the process has no engine threads
  Service service{fuzz_config()};
  Baseline baseline{};
  bool trace = std::getenv("IOASID_FUZZ_TRACE") != nullptr;
};
Fixture* fixture = nullptr;

// Device work runs on the service's executor; `settled` says what counts as done.
template <typename Settled>
bool wait_until(std::chrono::milliseconds limit, Settled settled) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!settled()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

// With require_disabled (every file closed): each work queue disabled and empty.
// Else: each one empty, or parked on a page request (only an answer moves it).
bool device_work_settled(Service& service, bool require_disabled) {
  for (const auto& device : service.devices().list()) {
    auto* engine = device->engine();
    if (!engine) continue;
    for (uint32_t wq = 0; wq < engine->num_wqs(); ++wq) {
      const auto state = engine->state(wq);
      const bool busy = require_disabled ? state.config || state.draining || state.queued
                                         : state.queued && !state.waiting_for_page;
      if (busy) return false;
    }
  }
  return true;
}

// Recent reply values of one file, per slot; a few are enough to chain requests.
struct Pool {
  std::array<uint64_t, 8> values{};
  uint8_t count = 0, next = 0;
  void add(uint64_t value) {
    values[next] = value;
    next = (next + 1) % values.size();
    count = std::min<uint8_t>(count + 1, values.size());
  }
};

template <typename T>
T load(std::span<const std::byte> buf, size_t offset) {
  T value{};
  if (offset + sizeof value <= buf.size()) std::memcpy(&value, buf.data() + offset, sizeof value);
  return value;
}

class Session {
 public:
  explicit Session(Fixture& fixture) : fixture_(fixture), service_(fixture.service), memory_(fixture.sandbox.pid()) {}

  void run(const Step& step) {
    if (fixture_.trace && step.kind() != OpKind::kIoctl) {
      static constexpr const char* kNames[] = {"ioctl", "read faults", "reopen", "poke", "wait idle", "admin view"};
      std::fprintf(stderr, "ctx%u %s\n", step.context, kNames[static_cast<size_t>(step.kind())]);
    }
    switch (step.kind()) {
      case OpKind::kIoctl: return run_ioctl(step.context, step.ioctl);
      case OpKind::kReadFaults: return read_faults(step);
      case OpKind::kReopen:
        close(step.context);
        (void)context(step.context);
        return;
      case OpKind::kPoke: {
        const Region& region = kRegions[step.region];
        const uint64_t offset = step.offset % region.size;
        const size_t length = std::min<uint64_t>(step.bytes.size(), region.size - offset);
        (void)memory_.write(region.base + offset, std::as_bytes(std::span(step.bytes).first(length)));
        return;
      }
      case OpKind::kWaitIdle:
        (void)wait_until(std::chrono::milliseconds(200), [&] { return device_work_settled(service_, false); });
        return;
      case OpKind::kAdmin: return admin(step);
    }
  }

  // Closes every file this input opened.
  void close_all() {
    for (uint8_t i = 0; i < kContexts; ++i) close(i);
  }

 private:
  Context* context(uint8_t index) {
    if (!contexts_[index]) {
      auto opened = service_.open({.pid = memory_.pid(), .uid = 0, .gid = 0});
      if (!opened) return nullptr;
      contexts_[index] = std::move(*opened);
    }
    return contexts_[index].get();
  }

  void close(uint8_t index) {
    if (contexts_[index]) service_.release(*contexts_[index]);
    contexts_[index].reset();
  }

  // Picks 0-7 take this file's values, 8-15 the next file's (isolation rows).
  std::optional<uint64_t> pooled(uint8_t index, Slot slot, uint8_t pick) const {
    const Pool& pool = pools_[pick < 8 ? index : (index + 1) % kContexts][static_cast<size_t>(slot)];
    if (pool.count == 0) return std::nullopt;
    return pool.values[pick % pool.count];
  }

  void apply(uint8_t index, const Field& field, const FieldChoice& choice, std::span<std::byte> buf) const {
    if (choice.how == FieldHow::kKeep || field.offset + field.width > buf.size()) return;
    std::byte* at = buf.data() + field.offset;
    if (field.kind == FieldKind::kDevName) {
      if (choice.how != FieldHow::kStructured) return;
      const std::string_view name = kDeviceNames[choice.pick];
      std::memset(at, name == "unterminated" ? 'x' : 0, field.width);
      if (name != "unterminated") std::memcpy(at, name.data(), name.size());
      return;
    }
    uint64_t value = choice.value;
    if (choice.how == FieldHow::kStructured) {
      switch (field.kind) {
        case FieldKind::kZero: value = 0; break;
        case FieldKind::kId: {
          // Nothing harvested yet: a small guess (ids and PASIDs start at 1, page
          // request groups at 0).
          const uint64_t guess = choice.pick % 8 + (field.slot == Slot::kGrpid ? 0 : 1);
          value = pooled(index, field.slot, choice.pick).value_or(guess);
          break;
        }
        case FieldKind::kIova: value = pooled(index, field.slot, choice.pick).value_or(0) + choice.value * 32; break;
        case FieldKind::kUserPtr: {
          const Region& region = kRegions[choice.pick];
          value = region.base + (choice.value * 4096 + choice.byte) % region.size;
          break;
        }
        case FieldKind::kLength:
        case FieldKind::kFileOffset: value = choice.value * 4096; break;
        case FieldKind::kFd: value = static_cast<uint32_t>(kClientFds[choice.pick]); break;
        case FieldKind::kDsaOpflags: value = IOASID_DSA_OPFLAGS(kDsaOpcodes[choice.pick], choice.value); break;
        case FieldKind::kChoice: value = kChoices[field.param][choice.pick]; break;
        default: break;  // kFlags, kNumber: the value as decoded
      }
    }
    if (field.width == 4) {
      const uint32_t narrow = static_cast<uint32_t>(value);
      std::memcpy(at, &narrow, sizeof narrow);
    } else if (field.width == 8) {
      std::memcpy(at, &value, sizeof value);
    }
  }

  void remember(uint8_t index, Slot slot, uint64_t value) {
    pools_[index][static_cast<size_t>(slot)].add(value);
  }

  // What a successful reply hands out, for later steps to use.
  void harvest(uint8_t index, const Command& row, std::span<const std::byte> buf) {
    switch (row.cmd) {
      case IOASID_PASID_REQUEST: {
        const auto flags = load<uint32_t>(buf, offsetof(ioasid_pasid_request, flags));
        if (flags & IOASID_PASID_ALLOC)
          remember(index, Slot::kPasid, load<uint32_t>(buf, offsetof(ioasid_pasid_request, pasid)));
        if (flags & IOASID_PASID_GPASID)
          remember(index, Slot::kGpasid, load<uint32_t>(buf, offsetof(ioasid_pasid_request, gpasid)));
        break;
      }
      case IOASID_PASID_LOOKUP:
        remember(index, Slot::kPasid, load<uint32_t>(buf, offsetof(ioasid_pasid_lookup, out_pasid)));
        break;
      case IOASID_ALLOC: remember(index, Slot::kIoasid, load<uint32_t>(buf, offsetof(ioasid_alloc, out_ioasid))); break;
      case IOASID_MAP_DMA: remember(index, Slot::kIova, load<uint64_t>(buf, offsetof(ioasid_map_dma, iova))); break;
      case IOASID_MAP_FILE: remember(index, Slot::kIova, load<uint64_t>(buf, offsetof(ioasid_map_file, iova))); break;
      case IOASID_DEVICE_BIND:
        remember(index, Slot::kDevId, load<uint32_t>(buf, offsetof(ioasid_device_bind, out_dev_id)));
        break;
      default: break;
    }
  }

  void run_ioctl(uint8_t index, const IoctlStep& step) {
    Context* file = context(index);
    if (!file) return;
    const uint32_t cmd = step.cmd();
    std::vector<std::byte> buf(_IOC_SIZE(cmd));
    std::copy_n(reinterpret_cast<const std::byte*>(step.payload.data()), std::min(buf.size(), step.payload.size()),
                buf.begin());
    if (const Command* row = step.row())
      for (size_t i = 0; i < row->fields.size(); ++i) apply(index, row->fields[i], step.fields[i], buf);
    const auto result = service_.ioctl(*file, cmd, step.arg, buf, memory_);
    if (fixture_.trace)
      std::fprintf(stderr, "ctx%u %s (%#x, %zu bytes): %s\n", index, step.row() ? step.row()->name : "random", cmd,
                   buf.size(), result ? "ok" : result.error().why.c_str());
    if (result && step.row()) harvest(index, *step.row(), buf);
  }

  void read_faults(const Step& step) {
    Context* file = context(step.context);
    if (!file) return;
    std::vector<std::byte> out(step.read_exact ? step.read_records * sizeof(ioasid_fault) : step.read_size);
    const auto read = service_.read_faults(*file, out);
    if (!read) return;
    for (size_t at = 0; at + sizeof(ioasid_fault) <= *read; at += sizeof(ioasid_fault)) {
      ioasid_fault fault;
      std::memcpy(&fault, out.data() + at, sizeof fault);
      if (fixture_.trace)
        std::fprintf(stderr, "ctx%u fault: type %u dev_id %u pasid %u grpid %u addr %#llx reason %u\n", step.context,
                     fault.type, fault.dev_id, fault.pasid, fault.grpid, static_cast<unsigned long long>(fault.addr),
                     fault.reason);
      if (fault.type == IOASID_FAULT_PAGE_REQ) remember(step.context, Slot::kGrpid, fault.grpid);
    }
  }

  // The admin views, read while device work may still run; their counts must agree
  // with what this input holds open.
  void admin(const Step& step) {
    size_t open = 0;
    for (const auto& context : contexts_) open += context != nullptr;
    switch (step.admin) {
      case 0: (void)service_.status(); break;
      case 1:
        if (service_.contexts().size() != open) {
          std::fprintf(stderr, "admin view lists %zu contexts, %zu are open\n", service_.contexts().size(), open);
          std::abort();
        }
        break;
      case 2: (void)service_.pasids(); break;
      default:
        if (Context* file = contexts_[step.context].get())
          (void)service_.dump_ioas(file->id(), static_cast<uint32_t>(
                                                   pooled(step.context, Slot::kIoasid, step.pick).value_or(1)));
        break;
    }
  }

  Fixture& fixture_;
  Service& service_;
  ProcessMemory memory_;
  std::array<std::shared_ptr<Context>, kContexts> contexts_;
  std::array<std::array<Pool, static_cast<size_t>(Slot::kCount)>, kContexts> pools_{};
};

// After every file is closed and device work has drained, nothing may be left.
void check_back_at_baseline(Fixture& fixture) {
  Service& service = fixture.service;
  auto& iommu = service.iommu();
  const auto settled = [&] {
    return device_work_settled(service, true) && service.allocator().allocated() == 0 &&
           iommu.pins().total_pinned_pages() == 0;
  };
  const bool drained = wait_until(std::chrono::seconds(5), settled);

  std::string leaks;
  auto expect = [&](bool ok, const std::string& what) {
    if (!ok) leaks += "  " + what + "\n";
  };
  const auto status = service.status();
  expect(drained, "device work or PASID references did not drain within 5 s");
  expect(status.contexts == 0, fmt::format("{} contexts still open", status.contexts));
  expect(status.pasids_allocated == 0, fmt::format("{} PASIDs still allocated", status.pasids_allocated));
  expect(status.pasid_quota_available == fixture.baseline.quota_available,
         fmt::format("PASID quota available {} (baseline {})", status.pasid_quota_available,
                     fixture.baseline.quota_available));
  expect(service.allocator().sets().size() == fixture.baseline.pasid_sets,
         fmt::format("{} PASID sets (baseline {})", service.allocator().sets().size(), fixture.baseline.pasid_sets));
  for (const auto& [uid, pages] : iommu.pins().pinned_by_uid())
    expect(pages == 0, fmt::format("uid {} has {} pages pinned", uid, pages));
  const auto memory = iommu.memory().stats();
  expect(memory.table_pages == fixture.baseline.table_pages,
         fmt::format("{} page-table pages live (baseline {})", memory.table_pages, fixture.baseline.table_pages));
  expect(memory.segments == 0, fmt::format("{} HPA segments ({} bytes) still mapped", memory.segments,
                                           memory.segment_bytes));
  for (const auto& device : service.devices().list()) {
    expect(device->bound_by().empty(), fmt::format("{} still bound by ctx {}", device->spec().name, device->owner()));
    expect(device->pasid_table().entries().empty(), fmt::format("{} still has routes", device->spec().name));
  }
  for (const std::string& fd : open_fds())
    expect(fixture.baseline.fds.contains(fd), fmt::format("file descriptor {} was not open before the input", fd));
  if (!leaks.empty()) {
    std::fprintf(stderr, "==ioasid-fuzz== the service is not back at its baseline after the input:\n%s",
                 leaks.c_str());
    std::abort();
  }
}

}  // namespace
}  // namespace ioasid_fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace ioasid_fuzz;
  const char* level = std::getenv("IOASID_FUZZ_LOG");
  spdlog::set_level(level ? spdlog::level::from_str(level) : spdlog::level::off);
  fixture = new Fixture();  // lives for the whole run; its child dies with us
  fixture->baseline = {.table_pages = fixture->service.iommu().memory().stats().table_pages,
                       .quota_available = fixture->service.status().pasid_quota_available,
                       .pasid_sets = fixture->service.allocator().sets().size()};
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ioasid_fuzz;
  fixture->sandbox.ensure_alive();
  fixture->sandbox.reset_memory();
  fixture->baseline.fds = open_fds();
  FuzzedDataProvider provider(data, size);
  FdpReader reader(provider);
  Session session(*fixture);
  for (size_t steps = 0; steps < kMaxSteps && !reader.exhausted(); ++steps) {
    Step step;
    visit_step(reader, step);
    session.run(step);
  }
  session.close_all();
  check_back_at_baseline(*fixture);
  return 0;
}

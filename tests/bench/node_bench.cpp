// SPDX-License-Identifier: MIT
// Ioctl round trips through a FUSE node: ioasidd against a null server (a minimal
// libfuse server that answers every ioctl at once) measured in the same run, and
// the aggregate rate of one versus two client processes.
//
// Run as root (it mounts FUSE file systems):
//   build/tests/bench/node_bench --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
// Repetitions interleaved at random cancel drift from other load; ratios use medians.
#include <benchmark/benchmark.h>
#include "bench_daemon.h"
#include "null_server.h"
#include "memcpy_baseline.h"
#include <linux/ioasid.h>
#include <linux/iommufd.h>
#include "iommufd_test/iommufd_test.h"
#include <ioasid/client.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <atomic>
#include <thread>
#include <vector>

namespace {

Server g_null;
Server g_daemon;

int open_node(benchmark::State& state, const Server& server) {
  const int fd = ::open(server.node.c_str(), O_RDWR);
  if (fd < 0) state.SkipWithError("cannot open the node");
  return fd;
}

// ---- one client ----

void BM_Null_IoctlNoStruct(benchmark::State& state) {
  const int fd = open_node(state, g_null);
  for (auto _ : state) benchmark::DoNotOptimize(ioctl(fd, IOASID_GET_API_VERSION));
  ::close(fd);
}

void BM_Daemon_GetApiVersion(benchmark::State& state) {
  const int fd = open_node(state, g_daemon);
  for (auto _ : state) {
    if (ioctl(fd, IOASID_GET_API_VERSION) != IOASID_API_VERSION) state.SkipWithError("GET_API_VERSION failed");
  }
  ::close(fd);
}

// Two struct round trips, the shape of an alloc+free pair.
void BM_Null_TwoStructIoctls(benchmark::State& state) {
  const int fd = open_node(state, g_null);
  ioasid_pasid_request request{};
  for (auto _ : state) {
    benchmark::DoNotOptimize(ioctl(fd, IOASID_PASID_REQUEST, &request));
    benchmark::DoNotOptimize(ioctl(fd, IOASID_PASID_REQUEST, &request));
  }
  ::close(fd);
}

void BM_Daemon_PasidAllocFree(benchmark::State& state) {
  const int fd = open_node(state, g_daemon);
  for (auto _ : state) {
    ioasid_pasid_request request{.flags = IOASID_PASID_ALLOC, .min = 1, .max = (1u << 20) - 1};
    if (ioctl(fd, IOASID_PASID_REQUEST, &request) != 0) state.SkipWithError("alloc failed");
    request.flags = IOASID_PASID_FREE;
    request.min = request.max = request.pasid;
    if (ioctl(fd, IOASID_PASID_REQUEST, &request) != 0 || request.pasid != 1) state.SkipWithError("free failed");
  }
  ::close(fd);
}

// ---- MAP then UNMAP of one page: what a mapping costs the daemon to take and drop ----

// An IOAS of a fresh file of the daemon's node; its id (SkipWithError on failure).
uint32_t new_ioas(benchmark::State& state, int fd) {
  ioasid_alloc alloc{};
  if (ioctl(fd, IOASID_ALLOC, &alloc) != 0) state.SkipWithError("IOASID_ALLOC failed");
  return alloc.out_ioasid;
}

bool unmap_all(int fd, uint32_t ioasid) {
  ioasid_unmap_dma unmap{.ioasid = ioasid, .iova = 0, .length = ~0ull};
  return ioctl(fd, IOASID_UNMAP_DMA, &unmap) == 0 && unmap.length == 4096;
}

// MAP_FILE of a memfd page: the daemon takes the file (pidfd_getfd) and maps it through
// the file's shared view.
void BM_Daemon_MapFileUnmap4K(benchmark::State& state) {
  const int fd = open_node(state, g_daemon);
  const uint32_t ioasid = new_ioas(state, fd);
  const int memfd = memfd_create("bench", MFD_CLOEXEC);
  if (memfd < 0 || ftruncate(memfd, 4096) != 0) state.SkipWithError("memfd failed");
  for (auto _ : state) {
    ioasid_map_file map{.flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE, .ioasid = ioasid, .fd = memfd,
                        .length = 4096};
    if (ioctl(fd, IOASID_MAP_FILE, &map) != 0 || !unmap_all(fd, ioasid)) state.SkipWithError("map failed");
  }
  ::close(memfd);
  ::close(fd);
}

// MAP_DMA of a private page: the daemon reads the maps listing and finds the address
// space's shared /proc/<pid>/mem handle.
void BM_Daemon_MapDmaPrivateUnmap4K(benchmark::State& state) {
  const int fd = open_node(state, g_daemon);
  const uint32_t ioasid = new_ioas(state, fd);
  void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (page == MAP_FAILED) state.SkipWithError("mmap failed");
  for (auto _ : state) {
    ioasid_map_dma map{.flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE, .ioasid = ioasid,
                       .user_va = reinterpret_cast<uint64_t>(page), .length = 4096};
    if (ioctl(fd, IOASID_MAP_DMA, &map) != 0 || !unmap_all(fd, ioasid)) state.SkipWithError("map failed");
  }
  munmap(page, 4096);
  ::close(fd);
}

// ---- /dev/iommu: the same engine behind Linux's iommufd uAPI ----

// IOMMU_IOAS_MAP (automatic IOVA) + IOMMU_IOAS_UNMAP of a private page, in an IOAS with
// no domain (nothing pinned, as iommufd) or with a mock device's domain (pinned and
// mapped in the engine's table, as /dev/ioasid's MAP_DMA always is).
void run_iommu_map_bench(benchmark::State& state, bool with_domain) {
  const std::string node = g_daemon.dir + "/mnt/iommu";
  const int fd = ::open(node.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    state.SkipWithError("cannot open the iommu node");
    return;
  }
  iommu_ioas_alloc alloc{.size = sizeof alloc};
  if (ioctl(fd, IOMMU_IOAS_ALLOC, &alloc) != 0) state.SkipWithError("IOAS_ALLOC failed");
  if (with_domain) {
    iommu_test_cmd mock{.size = sizeof mock, .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = alloc.out_ioas_id};
    if (ioctl(fd, IOMMU_TEST_CMD, &mock) != 0) state.SkipWithError("MOCK_DOMAIN failed");
  }
  void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (page == MAP_FAILED) state.SkipWithError("mmap failed");
  for (auto _ : state) {
    iommu_ioas_map map{.size = sizeof map,
                       .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
                       .ioas_id = alloc.out_ioas_id,
                       .user_va = reinterpret_cast<uint64_t>(page),
                       .length = 4096};
    iommu_ioas_unmap unmap{.size = sizeof unmap, .ioas_id = alloc.out_ioas_id, .iova = 0, .length = ~0ull};
    if (ioctl(fd, IOMMU_IOAS_MAP, &map) != 0 || ioctl(fd, IOMMU_IOAS_UNMAP, &unmap) != 0 || unmap.length != 4096)
      state.SkipWithError("map failed");
  }
  munmap(page, 4096);
  ::close(fd);
}
void BM_Iommu_MapUnmap4K(benchmark::State& state) { run_iommu_map_bench(state, false); }
void BM_Iommu_MapUnmap4KMockDomain(benchmark::State& state) { run_iommu_map_bench(state, true); }

// ---- 1 GiB: MAP + UNMAP through /dev/ioasid and through /dev/iommu (issue 14) ----

constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t k2MiB = 2ull << 20;

// The memory one iteration maps, by the benchmark's first argument: anonymous
// MAP_PRIVATE (the daemon reaches it through /proc/<pid>/mem), anonymous MAP_SHARED
// (shmem: the daemon maps the file through map_files), or MAP_PRIVATE of 2 MiB hugetlb
// pages (needs vm.nr_hugepages >= 512). 2 MiB aligned, touched once before the loop, so
// every page exists and an automatic IOVA may take 2 MiB leaves.
enum GibMemory : int64_t { kGibPrivate = 0, kGibShared = 1, kGibHugePrivate = 2 };

struct GibMemoryRegion {
  void* at = MAP_FAILED;
  explicit GibMemoryRegion(int64_t kind) {
    // A 2 MiB-aligned hole first, the memory placed in it.
    void* hole = mmap(nullptr, kGiB + k2MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (hole == MAP_FAILED) return;
    const uint64_t base = reinterpret_cast<uint64_t>(hole);
    const uint64_t aligned = (base + k2MiB - 1) & ~(k2MiB - 1);
    int flags = MAP_ANONYMOUS | MAP_FIXED | MAP_POPULATE | (kind == kGibShared ? MAP_SHARED : MAP_PRIVATE);
    if (kind == kGibHugePrivate) flags |= MAP_HUGETLB | (21 << MAP_HUGE_SHIFT);
    at = mmap(reinterpret_cast<void*>(aligned), kGiB, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (aligned > base) munmap(hole, aligned - base);
    munmap(reinterpret_cast<void*>(aligned + kGiB), base + kGiB + k2MiB - (aligned + kGiB));
    if (at == MAP_FAILED) {
      munmap(reinterpret_cast<void*>(aligned), kGiB);  // the rest of the hole
      return;
    }
    std::memset(at, 7, kGiB);
  }
  ~GibMemoryRegion() {
    if (at != MAP_FAILED) munmap(at, kGiB);
  }
  uint64_t va() const { return reinterpret_cast<uint64_t>(at); }
};

std::string fmt_leaf(const char* memory, int64_t leaf_kib) {
  return std::string(memory) + ", " +
         (leaf_kib >= (1 << 20) ? "1 GiB" : leaf_kib >= 2048 ? "2 MiB" : "4 KiB") + " leaves";
}

// The second argument: the largest engine-table leaf the MAP can use, in KiB.
void label_gib(benchmark::State& state) {
  static const char* const names[] = {"private", "shared", "hugetlb private"};
  const int64_t leaf = state.range(1);
  state.SetLabel(fmt_leaf(names[state.range(0)], leaf));
  state.SetBytesProcessed(state.iterations() * kGiB);
}

// /dev/ioasid: dma1 bound and attached to the IOASID first (as DmaSetup has it, the
// attach before the MAP here), then MAP_DMA of 1 GiB (pinned and mapped in the IOASID's
// table at once) and UNMAP_DMA of everything. Leaves: 1 GiB = an automatic IOVA (the
// table takes the largest leaf the HPA allows); 2 MiB or 4 KiB = FIXED_IOVA that far
// off a 1 GiB boundary, so no larger leaf fits: the engine table then holds what the
// mock domain's does below.
void BM_Daemon_MapDmaUnmap1GiB(benchmark::State& state) {
  GibMemoryRegion memory(state.range(0));
  if (memory.at == MAP_FAILED) return state.SkipWithError("mmap of 1 GiB failed (hugetlb: raise vm.nr_hugepages)");
  const int fd = open_node(state, g_daemon);
  ioasid_device_bind bind{};
  std::snprintf(bind.name, sizeof bind.name, "dma1");
  for (int i = 0; i < 300 && ioctl(fd, IOASID_DEVICE_BIND, &bind) != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const uint32_t ioasid = new_ioas(state, fd);
  ioasid_attach attach{.dev_id = bind.out_dev_id, .ioasid = ioasid};
  if (bind.out_dev_id == 0 || ioctl(fd, IOASID_ATTACH_IOASID, &attach) != 0) {
    ::close(fd);
    return state.SkipWithError("bind or attach of dma1 failed");
  }
  const uint64_t leaf = uint64_t(state.range(1)) << 10;
  for (auto _ : state) {
    ioasid_map_dma map{.flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE, .ioasid = ioasid,
                       .user_va = memory.va(), .length = kGiB};
    if (leaf < kGiB) {
      map.flags |= IOASID_MAP_FIXED_IOVA;
      map.iova = kGiB + leaf;
    }
    ioasid_unmap_dma unmap{.ioasid = ioasid, .iova = 0, .length = ~0ull};
    if (ioctl(fd, IOASID_MAP_DMA, &map) != 0 || ioctl(fd, IOASID_UNMAP_DMA, &unmap) != 0 || unmap.length != kGiB) {
      state.SkipWithError("MAP_DMA or UNMAP_DMA of 1 GiB failed");
      break;
    }
  }
  label_gib(state);
  ::close(fd);
}

// /dev/iommu: an IOAS with a mock device's domain (IOMMU_TEST_OP_MOCK_DOMAIN), so an
// IOAS_MAP pins the pages and fills the domain's engine table as MAP_DMA does; then
// IOAS_UNMAP of everything. The domain tracks no dirty pages, so its engine table takes
// the largest leaf the IOVA and the HPA allow, as /dev/ioasid's does: a FIXED_IOVA at
// 1 GiB (leaf 1 GiB), or that far below it (2 MiB, 4 KiB), as BM_Daemon_MapDmaUnmap1GiB.
// (iommufd's automatic IOVAs are 2 MiB aligned at most: leaves of 2 MiB.)
void BM_Iommu_MapUnmap1GiBMockDomain(benchmark::State& state) {
  GibMemoryRegion memory(state.range(0));
  if (memory.at == MAP_FAILED) return state.SkipWithError("mmap of 1 GiB failed (hugetlb: raise vm.nr_hugepages)");
  const int fd = ::open((g_daemon.dir + "/mnt/iommu").c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return state.SkipWithError("cannot open the iommu node");
  iommu_ioas_alloc alloc{.size = sizeof alloc};
  if (ioctl(fd, IOMMU_IOAS_ALLOC, &alloc) != 0) {
    ::close(fd);
    return state.SkipWithError("IOAS_ALLOC failed");
  }
  iommu_test_cmd mock{.size = sizeof mock, .op = IOMMU_TEST_OP_MOCK_DOMAIN, .id = alloc.out_ioas_id};
  if (ioctl(fd, IOMMU_TEST_CMD, &mock) != 0) {
    ::close(fd);
    return state.SkipWithError("MOCK_DOMAIN failed");
  }
  for (auto _ : state) {
    const uint64_t leaf = uint64_t(state.range(1)) << 10;
    iommu_ioas_map map{.size = sizeof map,
                       .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
                       .ioas_id = alloc.out_ioas_id,
                       .user_va = memory.va(),
                       .length = kGiB,
                       .iova = leaf < kGiB ? kGiB - leaf : kGiB};  // inside the mock aperture [16 MiB, 2 GiB)
    iommu_ioas_unmap unmap{.size = sizeof unmap, .ioas_id = alloc.out_ioas_id, .iova = 0, .length = ~0ull};
    if (ioctl(fd, IOMMU_IOAS_MAP, &map) != 0 || ioctl(fd, IOMMU_IOAS_UNMAP, &unmap) != 0 || unmap.length != kGiB) {
      state.SkipWithError("IOAS_MAP or IOAS_UNMAP of 1 GiB failed");
      break;
    }
  }
  label_gib(state);
  ::close(fd);
}

// ---- fd-returning and trapped ioctls under ioasid-run (issue 14) ----
//
// The timed calls run in a worker: this program started again as
// `node_bench --launcher-worker FD NODE COMPANION`, either plainly or as
// `ioasid-run --iommu-node NODE node_bench --launcher-worker ...`, so that under the
// launcher the program making the ioctls is the benchmark program itself, under the
// launcher's seccomp filter (which no process can leave, hence a second process for
// the baseline). Both workers serve the same daemon and are started once; each
// iteration asks one for one call over a socket and takes the time the worker measured
// around the call alone (manual time), so both sides pay the same untimed hand-over.

enum WorkerOp : uint32_t {
  kWorkerQuit = 0,
  kFaultQueueIoctl = 1,      // ioctl(IOMMU_FAULT_QUEUE_ALLOC) + close(out_fault_fd): the launcher serves it
  kFaultQueueLibioasid = 2,  // iommufd_fd_command(IOMMU_FAULT_QUEUE_ALLOC) + close
  kTestCmd = 3,              // ioctl(IOMMU_TEST_CMD, SET_TEMP_MEMORY_LIMIT): the launcher continues it
};
struct WorkerHello {
  int32_t seccomp_mode;  // /proc/self/status Seccomp: 0 none, 2 filter
  int32_t error;         // errno of opening the node
};
struct WorkerReply {
  int64_t nanoseconds;
  int32_t error;  // 0, or the errno of the call
};

int seccomp_mode() {
  FILE* status = std::fopen("/proc/self/status", "r");
  char line[256];
  int mode = -1;
  while (status && std::fgets(line, sizeof line, status))
    if (std::sscanf(line, "Seccomp: %d", &mode) == 1) break;
  if (status) std::fclose(status);
  return mode;
}

int run_launcher_worker(int socket, const char* node, const char* companion) {
  const int fd = ::open(node, O_RDWR | O_CLOEXEC);
  const WorkerHello hello{seccomp_mode(), fd < 0 ? errno : 0};
  if (::send(socket, &hello, sizeof hello, 0) != sizeof hello || fd < 0) return 1;
  uint32_t op = 0;
  while (::recv(socket, &op, sizeof op, 0) == sizeof op && op != kWorkerQuit) {
    WorkerReply reply{};
    const auto start = std::chrono::steady_clock::now();
    if (op == kFaultQueueIoctl) {
      iommu_fault_alloc alloc{.size = sizeof alloc};
      if (ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &alloc) != 0) reply.error = errno;
      else ::close(static_cast<int>(alloc.out_fault_fd));
    } else if (op == kFaultQueueLibioasid) {
      iommu_fault_alloc alloc{.size = sizeof alloc};
      auto file = ioasid::client::iommufd_fd_command(fd, IOMMU_FAULT_QUEUE_ALLOC, &alloc, companion);
      if (!file) reply.error = file.error().code;
      else ::close(*file);
    } else if (op == kTestCmd) {
      iommu_test_cmd cmd{.size = sizeof cmd, .op = IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT};
      cmd.memory_limit.limit = 65536;
      if (ioctl(fd, IOMMU_TEST_CMD, &cmd) != 0) reply.error = errno;
    } else {
      reply.error = EINVAL;
    }
    reply.nanoseconds = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
    if (::send(socket, &reply, sizeof reply, 0) != sizeof reply) break;
  }
  ::close(fd);
  return 0;
}

struct Worker {
  pid_t pid = -1;
  int socket = -1;
  WorkerHello hello{-1, 0};
};
Worker g_plain_worker, g_launched_worker;

const char* ioasid_run_path() {
  const char* path = std::getenv("IOASID_RUN");
#ifdef IOASID_RUN_PATH
  if (!path) path = IOASID_RUN_PATH;
#endif
  return path;
}

bool start_worker(Worker& worker, bool launched) {
  if (worker.pid > 0) return worker.hello.error == 0;
  char self[4096];
  const ssize_t length = ::readlink("/proc/self/exe", self, sizeof self - 1);
  const char* launcher = ioasid_run_path();
  if (length <= 0 || (launched && !launcher)) return false;
  self[length] = '\0';
  int ends[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) != 0) return false;
  const std::string node = g_daemon.dir + "/mnt/iommu", companion = g_daemon.dir + "/mnt/iommu-fd",
                    fd_word = std::to_string(ends[1]);
  worker.pid = fork();
  if (worker.pid == 0) {
    ::fcntl(ends[1], F_SETFD, 0);  // the worker's end survives the exec(s)
    if (launched)
      execl(launcher, launcher, "--iommu-node", node.c_str(), self, "--launcher-worker", fd_word.c_str(), node.c_str(),
            companion.c_str(), static_cast<char*>(nullptr));
    else
      execl(self, self, "--launcher-worker", fd_word.c_str(), node.c_str(), companion.c_str(),
            static_cast<char*>(nullptr));
    _exit(127);
  }
  ::close(ends[1]);
  worker.socket = ends[0];
  if (worker.pid < 0 || ::recv(worker.socket, &worker.hello, sizeof worker.hello, 0) != sizeof worker.hello) {
    worker.hello.error = EPROTO;
    return false;
  }
  return worker.hello.error == 0;
}

void stop_worker(Worker& worker) {
  if (worker.pid <= 0) return;
  const uint32_t quit = kWorkerQuit;
  (void)::send(worker.socket, &quit, sizeof quit, MSG_NOSIGNAL);
  ::close(worker.socket);
  waitpid(worker.pid, nullptr, 0);
  worker.pid = -1;
}

void run_worker_bench(benchmark::State& state, bool launched, WorkerOp op) {
  Worker& worker = launched ? g_launched_worker : g_plain_worker;
  if (!start_worker(worker, launched))
    return state.SkipWithError(launched ? "cannot start the worker under ioasid-run" : "cannot start the worker");
  // The launcher's filter is on the worker it started, and on no other.
  if ((worker.hello.seccomp_mode == 2) != launched)
    return state.SkipWithError(launched ? "the worker is not under a seccomp filter" : "the worker is filtered");
  for (auto _ : state) {
    WorkerReply reply{};
    if (::send(worker.socket, &op, sizeof op, MSG_NOSIGNAL) != sizeof op ||
        ::recv(worker.socket, &reply, sizeof reply, 0) != sizeof reply || reply.error != 0) {
      state.SkipWithError(("the worker's call failed: " + std::string(std::strerror(reply.error))).c_str());
      break;
    }
    state.SetIterationTime(double(reply.nanoseconds) * 1e-9);
  }
}

void BM_Launcher_FaultQueueAllocClose(benchmark::State& state) { run_worker_bench(state, true, kFaultQueueIoctl); }
void BM_Libioasid_FaultQueueAllocClose(benchmark::State& state) {
  run_worker_bench(state, false, kFaultQueueLibioasid);
}
void BM_Launcher_TestCmdContinued(benchmark::State& state) { run_worker_bench(state, true, kTestCmd); }
void BM_Plain_TestCmd(benchmark::State& state) { run_worker_bench(state, false, kTestCmd); }

// ---- several client processes, each with its own open file ----

void BM_Daemon_ClientProcesses(benchmark::State& state) {
  const int clients = static_cast<int>(state.range(0));
  constexpr int kIoctlsPerClient = 20000;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < clients; ++i) {
      if (fork() == 0) {
        const int fd = ::open(g_daemon.node.c_str(), O_RDWR);
        ioasid_info info{};
        for (int n = 0; n < kIoctlsPerClient; ++n)
          if (fd < 0 || ioctl(fd, IOASID_GET_INFO, &info) != 0) _exit(1);
        _exit(0);
      }
    }
    bool ok = true;
    for (int i = 0; i < clients; ++i) {
      int status = 0;
      wait(&status);
      ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    if (!ok) state.SkipWithError("a client failed");
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  state.SetItemsProcessed(state.iterations() * clients * kIoctlsPerClient);
}

// ---- DEVICE_DMA of 1 MiB through the node, against memcpy of the same size ----

constexpr size_t kDmaBytes = 1u << 20;

// The same copy with both sides out of the CPU caches: 1 MiB blocks taken in turn from
// 256 MiB, what a DMA of data the CPU has not just touched compares with.
void BM_Memcpy1MiBCold(benchmark::State& state) {
  constexpr size_t kBlocks = 256;
  std::vector<char> from(kBlocks * kDmaBytes, 1), to(kBlocks * kDmaBytes, 2);
  size_t block = 0;
  for (auto _ : state) {
    std::memcpy(to.data() + block * kDmaBytes, from.data() + ((block * 97) % kBlocks) * kDmaBytes, kDmaBytes);
    block = (block + 1) % kBlocks;
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kDmaBytes);
}

// The floor of any DMA of a client's buffer: one kernel copy between two processes'
// memory (here the same process, which costs the same: pin each page, then copy it).
void BM_ProcessVmReadv1MiB(benchmark::State& state) {
  std::vector<char> from(kDmaBytes, 1), to(kDmaBytes, 2);
  for (auto _ : state) {
    iovec local{to.data(), kDmaBytes}, remote{from.data(), kDmaBytes};
    if (process_vm_readv(getpid(), &local, 1, &remote, 1, 0) != ssize_t(kDmaBytes))
      state.SkipWithError("process_vm_readv failed");
  }
  state.SetBytesProcessed(state.iterations() * kDmaBytes);
}

// A file of the daemon with dma1 attached by RID to an IOASID mapping 1 MiB of memory:
// a memfd (MAP_FILE: mapped into the daemon) or private anonymous memory (MAP_DMA:
// reached through /proc/<pid>/mem).
struct DmaSetup {
  int fd = -1;
  uint32_t dev = 0;
  uint64_t iova = 0;
  int memfd = -1;
  void* private_memory = nullptr;

  bool open(bool use_memfd) {
    fd = ::open(g_daemon.node.c_str(), O_RDWR);
    ioasid_device_bind bind{};
    std::snprintf(bind.name, sizeof bind.name, "dma1");
    // The previous benchmark's file may still be releasing the device.
    for (int i = 0; i < 300 && ioctl(fd, IOASID_DEVICE_BIND, &bind) != 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ioasid_alloc alloc{};
    if (bind.out_dev_id == 0 || ioctl(fd, IOASID_ALLOC, &alloc) != 0) return false;
    dev = bind.out_dev_id;
    const uint32_t flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE;
    if (use_memfd) {
      memfd = memfd_create("dma-bench", MFD_CLOEXEC);
      if (ftruncate(memfd, kDmaBytes) != 0) return false;
      ioasid_map_file map{.flags = flags, .ioasid = alloc.out_ioasid, .fd = memfd, .length = kDmaBytes};
      if (ioctl(fd, IOASID_MAP_FILE, &map) != 0) return false;
      iova = map.iova;
    } else {
      private_memory = mmap(nullptr, kDmaBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      std::memset(private_memory, 3, kDmaBytes);
      ioasid_map_dma map{.flags = flags, .ioasid = alloc.out_ioasid,
                         .user_va = reinterpret_cast<uint64_t>(private_memory), .length = kDmaBytes};
      if (ioctl(fd, IOASID_MAP_DMA, &map) != 0) return false;
      iova = map.iova;
    }
    ioasid_attach attach{.dev_id = dev, .ioasid = alloc.out_ioasid};
    return ioctl(fd, IOASID_ATTACH_IOASID, &attach) == 0;
  }
  ~DmaSetup() {
    if (fd >= 0) ::close(fd);
    if (memfd >= 0) ::close(memfd);
    if (private_memory) munmap(private_memory, kDmaBytes);
  }
};

void run_dma_bench(benchmark::State& state, bool use_memfd, bool to_memory) {
  DmaSetup setup;
  if (!setup.open(use_memfd)) {
    state.SkipWithError("DMA setup failed");
    return;
  }
  std::vector<char> buffer(kDmaBytes, 5);
  for (auto _ : state) {
    ioasid_device_dma dma{.dev_id = setup.dev,
                          .flags = to_memory ? IOASID_DMA_WRITE : 0u,
                          .iova = setup.iova,
                          .length = kDmaBytes,
                          .buf_uptr = reinterpret_cast<uint64_t>(buffer.data())};
    if (ioctl(setup.fd, IOASID_DEVICE_DMA, &dma) != 0 || dma.out_status != IOASID_DMA_OK)
      state.SkipWithError("DEVICE_DMA failed");
  }
  state.SetBytesProcessed(state.iterations() * kDmaBytes);
}

void BM_Daemon_DmaMemfdWrite1MiB(benchmark::State& state) { run_dma_bench(state, true, true); }
void BM_Daemon_DmaMemfdRead1MiB(benchmark::State& state) { run_dma_bench(state, true, false); }
void BM_Daemon_DmaProcMemWrite1MiB(benchmark::State& state) { run_dma_bench(state, false, true); }
void BM_Daemon_DmaProcMemRead1MiB(benchmark::State& state) { run_dma_bench(state, false, false); }

// ---- guest SVA through the node: CACHE_INVLD batches and a page request answered ----

// A file with guest RAM (a memfd at GPA 0 of a kernel-managed IOASID), a nested
// IOASID bound to a 4-level first-level table in it mapping one page at kGva, and
// dma0 (PRI, ATS) attached at a PASID.
struct GuestSetup {
  static constexpr uint64_t kRam = 4u << 20, kGva = 0x7f0000000000ull, kPage = 0x200000;
  int fd = -1, memfd = -1;
  uint8_t* ram = nullptr;
  uint32_t dev = 0, nested = 0, pasid = 0;
  uint64_t leaf_gpa = 0;

  uint64_t& word(uint64_t gpa) { return *reinterpret_cast<uint64_t*>(ram + gpa); }
  bool open() {
    fd = ::open(g_daemon.node.c_str(), O_RDWR | O_NONBLOCK);
    memfd = memfd_create("guest-ram", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(memfd, kRam) != 0) return false;
    ram = static_cast<uint8_t*>(mmap(nullptr, kRam, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0));
    ioasid_device_bind bind{};
    std::snprintf(bind.name, sizeof bind.name, "dma0");
    for (int i = 0; i < 300 && ioctl(fd, IOASID_DEVICE_BIND, &bind) != 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    dev = bind.out_dev_id;
    ioasid_alloc parent{};
    if (ram == MAP_FAILED || dev == 0 || ioctl(fd, IOASID_ALLOC, &parent) != 0) return false;
    ioasid_map_file map{.flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE | IOASID_MAP_FIXED_IOVA,
                        .ioasid = parent.out_ioasid, .fd = memfd, .length = kRam, .iova = 0};
    ioasid_alloc child{.flags = IOASID_ALLOC_NESTED, .parent = parent.out_ioasid};
    if (ioctl(fd, IOASID_MAP_FILE, &map) != 0 || ioctl(fd, IOASID_ALLOC, &child) != 0) return false;
    nested = child.out_ioasid;
    // Tables at GPA 0x1000.. (levels 4, 3, 2, 1), the page at kPage.
    constexpr uint64_t kTable = 0x1000, kUser = 0x7;  // P | R/W | U/S
    for (int level = 4; level > 1; --level) {
      const uint64_t table = kTable * (5 - level), next = kTable * (6 - level);
      word(table + ((kGva >> (12 + 9 * (level - 1))) & 511) * 8) = next | kUser;
    }
    leaf_gpa = kTable * 4 + ((kGva >> 12) & 511) * 8;
    word(leaf_gpa) = kPage | kUser;
    ioasid_bind_pgtbl bind_table{.ioasid = nested, .format = IOASID_PGTBL_VTD_FL, .pgtbl_addr = kTable,
                                 .addr_width = 48};
    ioasid_pasid_request request{.flags = IOASID_PASID_ALLOC, .min = 1, .max = (1u << 20) - 1};
    if (ioctl(fd, IOASID_BIND_PGTBL, &bind_table) != 0 || ioctl(fd, IOASID_PASID_REQUEST, &request) != 0)
      return false;
    pasid = request.pasid;
    ioasid_attach attach{.dev_id = dev, .ioasid = nested, .pasid = pasid};
    return ioctl(fd, IOASID_ATTACH_IOASID_PASID, &attach) == 0;
  }
  // ADDR invalidations of `count` distinct pages (IOTLB and device-TLB) in one call;
  // the entries are built once, outside what is timed.
  std::vector<ioasid_cache_invalidate_info> entries;
  bool invalidate(uint32_t count) {
    if (entries.size() != count) {
      entries.resize(count);
      for (uint32_t i = 0; i < count; ++i)
        entries[i] = {.cache = IOASID_CACHE_IOTLB | IOASID_CACHE_DEV_IOTLB, .granularity = IOASID_INV_GRANU_ADDR,
                      .flags = IOASID_INV_FLAGS_PASID | IOASID_INV_FLAGS_LEAF, .pasid = pasid,
                      .addr = kGva + uint64_t(i) * 4096, .granule_size = 4096, .nb_granules = 1};
    }
    ioasid_cache_invalidate request{.ioasid = nested, .entry_len = sizeof entries[0], .entry_num = count,
                                    .entries_uptr = reinterpret_cast<uint64_t>(entries.data())};
    return ioctl(fd, IOASID_CACHE_INVLD, &request) == 0 && request.entry_num == count;
  }
  ~GuestSetup() {
    if (fd >= 0) ::close(fd);
    if (ram && ram != MAP_FAILED) munmap(ram, kRam);
    if (memfd >= 0) ::close(memfd);
  }
};

void BM_Daemon_CacheInvld(benchmark::State& state) {
  GuestSetup guest;
  if (!guest.open()) return state.SkipWithError("guest setup failed");
  const auto count = static_cast<uint32_t>(state.range(0));
  for (auto _ : state)
    if (!guest.invalidate(count)) state.SkipWithError("CACHE_INVLD failed");
  state.SetItemsProcessed(state.iterations() * count);
}

// A DMA at a page the guest has not mapped raises a page request; the "guest" reads
// it from the fd, maps the page and answers SUCCESS; the DMA retries and completes.
// Timed: from the DMA's start to its completion. Untimed: the guest unmapping the page
// again and invalidating it.
void BM_Daemon_PageRequestToRetriedDma(benchmark::State& state) {
  GuestSetup guest;
  if (!guest.open()) return state.SkipWithError("guest setup failed");
  const uint64_t mapped = guest.word(guest.leaf_gpa);
  std::atomic<int> go{0}, finished{0};
  std::atomic<bool> quit{false}, failed{false};
  std::thread device([&] {
    uint8_t byte = 0;
    for (int round = 1;; ++round) {
      while (go.load() < round && !quit.load()) std::this_thread::yield();
      if (quit.load()) return;
      ioasid_device_dma dma{.dev_id = guest.dev, .flags = IOASID_DMA_PASID, .pasid = guest.pasid,
                            .iova = GuestSetup::kGva, .length = 1, .buf_uptr = reinterpret_cast<uint64_t>(&byte)};
      if (ioctl(guest.fd, IOASID_DEVICE_DMA, &dma) != 0 || dma.out_status != IOASID_DMA_OK) failed = true;
      finished.store(round);
    }
  });
  int round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    guest.word(guest.leaf_gpa) = 0;
    if (!guest.invalidate(1)) failed = true;
    state.ResumeTiming();
    go.store(++round);
    ioasid_fault record{};
    pollfd p{guest.fd, POLLIN, 0};
    while (::read(guest.fd, &record, sizeof record) != sizeof record) ::poll(&p, 1, 1000);
    guest.word(guest.leaf_gpa) = mapped;
    ioasid_page_response response{.dev_id = guest.dev, .flags = IOASID_PAGE_RESP_PASID_VALID,
                                  .pasid = guest.pasid, .grpid = record.grpid, .code = IOASID_PAGE_RESP_SUCCESS};
    if (ioctl(guest.fd, IOASID_PAGE_RESP, &response) != 0) failed = true;
    while (finished.load() < round) std::this_thread::yield();
  }
  quit = true;
  device.join();
  if (failed) state.SkipWithError("a step of the page request failed");
}

BENCHMARK(BM_Daemon_CacheInvld)->Arg(1)->Arg(512)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Daemon_PageRequestToRetriedDma)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Memcpy1MiB)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Memcpy1MiBCold)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_ProcessVmReadv1MiB)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Daemon_DmaMemfdWrite1MiB)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Daemon_DmaMemfdRead1MiB)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Daemon_DmaProcMemWrite1MiB)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Daemon_DmaProcMemRead1MiB)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Null_IoctlNoStruct)->MinTime(0.5);
BENCHMARK(BM_Daemon_GetApiVersion)->MinTime(0.5);
BENCHMARK(BM_Null_TwoStructIoctls)->MinTime(0.5);
BENCHMARK(BM_Daemon_PasidAllocFree)->MinTime(0.5);
BENCHMARK(BM_Daemon_MapFileUnmap4K)->MinTime(0.5);
BENCHMARK(BM_Daemon_MapDmaPrivateUnmap4K)->MinTime(0.5);
BENCHMARK(BM_Iommu_MapUnmap4K)->MinTime(0.5);
BENCHMARK(BM_Iommu_MapUnmap4KMockDomain)->MinTime(0.5);
BENCHMARK(BM_Daemon_MapDmaUnmap1GiB)
    ->ArgsProduct({{kGibPrivate, kGibShared, kGibHugePrivate}, {4, 2048, 1 << 20}})
    ->MinTime(1)
    ->UseRealTime();
BENCHMARK(BM_Iommu_MapUnmap1GiBMockDomain)
    ->ArgsProduct({{kGibPrivate, kGibShared, kGibHugePrivate}, {4, 2048, 1 << 20}})
    ->MinTime(1)
    ->UseRealTime();
BENCHMARK(BM_Launcher_FaultQueueAllocClose)->MinTime(0.5)->UseManualTime();
BENCHMARK(BM_Libioasid_FaultQueueAllocClose)->MinTime(0.5)->UseManualTime();
BENCHMARK(BM_Launcher_TestCmdContinued)->MinTime(0.5)->UseManualTime();
BENCHMARK(BM_Plain_TestCmd)->MinTime(0.5)->UseManualTime();
BENCHMARK(BM_Daemon_ClientProcesses)->Arg(1)->Arg(2)->UseManualTime()->Iterations(3);

// Prints the ratios the issue asks for after the normal report.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      // With repetitions only the median stands for a benchmark.
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name != "median") continue;
      const std::string name = run.run_name.function_name + run.run_name.args;
      times_[name] = run.GetAdjustedRealTime();
      if (run.counters.count("items_per_second")) rates_[name] = run.counters.at("items_per_second");
    }
    ConsoleReporter::ReportRuns(runs);
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    ratio("GET_API_VERSION, daemon / null server", "BM_Daemon_GetApiVersion", "BM_Null_IoctlNoStruct", times_);
    ratio("PASID alloc+free pair, daemon / null server", "BM_Daemon_PasidAllocFree", "BM_Null_TwoStructIoctls",
          times_);
    ratio("ioctl rate, two clients / one client", "BM_Daemon_ClientProcesses2", "BM_Daemon_ClientProcesses1", rates_);
    for (const char* dma : {"BM_Daemon_DmaMemfdWrite1MiB", "BM_Daemon_DmaMemfdRead1MiB",
                            "BM_Daemon_DmaProcMemWrite1MiB", "BM_Daemon_DmaProcMemRead1MiB"})
      ratio((std::string(dma + 10) + " bandwidth / memcpy").c_str(), "BM_Memcpy1MiB", dma, times_);
    for (const char* dma : {"BM_Daemon_DmaMemfdWrite1MiB", "BM_Daemon_DmaProcMemWrite1MiB"})
      ratio((std::string(dma + 10) + " bandwidth / cold memcpy").c_str(), "BM_Memcpy1MiBCold", dma, times_);
    ratio("CACHE_INVLD of 512 entries / of 1", "BM_Daemon_CacheInvld512", "BM_Daemon_CacheInvld1", times_);
    if (times_.count("BM_Daemon_PageRequestToRetriedDma") && times_.count("BM_Null_TwoStructIoctls"))
      std::printf("ratio %-45s %.3f\n", "page request to retried DMA / two null round trips",
                  times_.at("BM_Daemon_PageRequestToRetriedDma") / times_.at("BM_Null_TwoStructIoctls"));
    // 1 GiB MAP+UNMAP: /dev/iommu's mock domain against /dev/ioasid's table with the same
    // leaves, and against /dev/ioasid's default (automatic IOVA: 1 GiB leaves).
    // (A key is the name and the arguments, as "BM_Daemon_MapDmaUnmap1GiB0/4".)
    for (const char* kind : {"0", "1", "2"})
      for (const char* leaf : {"/4", "/2048", "/1048576"})
        ratio((std::string("1GiB iommu/ioasid ") + kind + leaf).c_str(),
              std::string("BM_Iommu_MapUnmap1GiBMockDomain") + kind + leaf,
              std::string("BM_Daemon_MapDmaUnmap1GiB") + kind + leaf, times_);
    ratio("FAULT_QUEUE_ALLOC+close, ioasid-run / libioasid", "BM_Launcher_FaultQueueAllocClose",
          "BM_Libioasid_FaultQueueAllocClose", times_);
    ratio("IOMMU_TEST_CMD, ioasid-run (continued) / plain", "BM_Launcher_TestCmdContinued", "BM_Plain_TestCmd",
          times_);
    ratio("process_vm_readv bandwidth / memcpy", "BM_Memcpy1MiB", "BM_ProcessVmReadv1MiB", times_);
    ratio("DmaMemfdWrite1MiB bandwidth / process_vm_readv", "BM_ProcessVmReadv1MiB", "BM_Daemon_DmaMemfdWrite1MiB",
          times_);
  }

 private:
  static void ratio(const char* what, const std::string& a, const std::string& b,
                    const std::map<std::string, double>& values) {
    if (values.count(a) && values.count(b) && values.at(b) > 0)
      std::printf("ratio %-45s %.3f\n", what, values.at(a) / values.at(b));
  }
  std::map<std::string, double> times_;
  std::map<std::string, double> rates_;
};

}  // namespace

int main(int argc, char** argv) {
  // A worker of the launcher benchmarks: the socket's number, the iommu node, its companion.
  if (argc == 5 && std::strcmp(argv[1], "--launcher-worker") == 0)
    return run_launcher_worker(std::atoi(argv[2]), argv[3], argv[4]);
  benchmark::Initialize(&argc, argv);
  g_null = start_null_server();
  g_daemon = start_daemon();
  const bool ready = wait_for_node(g_null.node) && g_daemon.pid > 0;
  int status = 1;
  if (!ready) {
    std::fprintf(stderr, "node_bench: a server did not come up (run as root; is ioasidd built?)\n");
  } else {
    RatioReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    status = 0;
  }
  stop_worker(g_launched_worker);
  stop_worker(g_plain_worker);
  stop(g_daemon);
  stop(g_null);
  benchmark::Shutdown();
  return status;
}

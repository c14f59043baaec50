// SPDX-License-Identifier: MIT
// dsa0 through the node: MEMMOVE of 1 MiB descriptors on memfd memory against a plain
// memcpy of 1 MiB in the same run, and the rate of shared-WQ submissions from one and
// from two clients (each an open file of its own, on its own thread).
//
// Run as root (it mounts a FUSE file system):
//   build/tests/bench/dsa_bench --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
#include "bench_daemon.h"
#include "memcpy_baseline.h"

#include <benchmark/benchmark.h>
#include <linux/ioasid.h>
#include <sys/mman.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <thread>
#include <vector>

namespace {

constexpr uint64_t kBlock = 1u << 20;
constexpr int kRecordSlots = 64;                  // completion records, 32 bytes each
// Source, destination, records: 4 MiB, so the daemon maps it with 2 MiB IOPTEs as a
// VMM's guest RAM would be (4 KiB ones cost a translation per page, ~10 µs per MiB).
constexpr uint64_t kMemory = 4 * kBlock;
constexpr uint32_t kSharedWq = 0;

Server g_daemon;

// One client: its file, a PASID, an IOASID mapping a memfd (also mapped here, where
// completion records are polled), dsa0 attached at the PASID.
struct Client {
  int fd = -1;
  int memfd = -1;
  std::byte* memory = nullptr;
  uint32_t pasid = 0;
  uint32_t dev = 0;
  uint64_t iova = 0;

  bool open(bool enable_wq) {
    fd = ::open(g_daemon.node.c_str(), O_RDWR);
    ioasid_pasid_request request{.flags = IOASID_PASID_ALLOC, .min = 1, .max = (1u << 20) - 1};
    ioasid_alloc alloc{};
    ioasid_device_bind bind{};
    std::snprintf(bind.name, sizeof bind.name, "dsa0");
    if (fd < 0 || ioctl(fd, IOASID_PASID_REQUEST, &request) != 0 || ioctl(fd, IOASID_ALLOC, &alloc) != 0 ||
        ioctl(fd, IOASID_DEVICE_BIND, &bind) != 0)
      return false;
    pasid = request.pasid;
    dev = bind.out_dev_id;
    memfd = memfd_create("dsa-bench", MFD_CLOEXEC);
    if (ftruncate(memfd, kMemory) != 0) return false;
    void* mapped = mmap(nullptr, kMemory, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (mapped == MAP_FAILED) return false;
    memory = static_cast<std::byte*>(mapped);
    std::memset(memory, 7, kMemory);
    ioasid_map_file map{.flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE, .ioasid = alloc.out_ioasid,
                        .fd = memfd, .length = kMemory};
    ioasid_attach attach{.dev_id = dev, .ioasid = alloc.out_ioasid, .pasid = pasid};
    if (ioctl(fd, IOASID_MAP_FILE, &map) != 0 || ioctl(fd, IOASID_ATTACH_IOASID_PASID, &attach) != 0) return false;
    iova = map.iova;
    if (!enable_wq) return true;
    ioasid_wq_config wq{.dev_id = dev, .wq = kSharedWq, .flags = IOASID_WQ_ENABLE | IOASID_WQ_SHARED,
                        .size = 128, .priority = 1};
    // The previous benchmark's owner may still be closing.
    for (int i = 0; i < 300; ++i) {
      if (ioctl(fd, IOASID_WQ_CONFIG, &wq) == 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  ~Client() {
    if (memory) munmap(memory, kMemory);
    if (memfd >= 0) ::close(memfd);
    if (fd >= 0) ::close(fd);
  }

  uint64_t record_iova(int slot) const { return iova + 2 * kBlock + 32 * slot; }
  volatile uint8_t* status(int slot) const { return reinterpret_cast<volatile uint8_t*>(memory + 2 * kBlock + 32 * slot); }

  // Submits until accepted; false on an error.
  bool submit(const ioasid_dsa_desc& desc, uint64_t* retries = nullptr) {
    ioasid_device_submit submit{.dev_id = dev, .wq = kSharedWq};
    std::memcpy(submit.desc, &desc, sizeof desc);
    for (;;) {
      if (ioctl(fd, IOASID_DEVICE_SUBMIT, &submit) != 0) return false;
      if (submit.out_status == IOASID_SUBMIT_ACCEPTED) return true;
      if (retries) ++*retries;
    }
  }

  ioasid_dsa_desc memmove(int slot) const {
    return ioasid_dsa_desc{.pasid = pasid,
                           .opflags = IOASID_DSA_OPFLAGS(IOASID_DSA_OPCODE_MEMMOVE,
                                                         IOASID_DSA_FLAG_CRAV | IOASID_DSA_FLAG_RCR),
                           .completion_addr = record_iova(slot),
                           .src = iova,
                           .dst = iova + kBlock,
                           .xfer_size = static_cast<uint32_t>(kBlock)};
  }
};

bool wait_for(const Client& client, int slot) {
  while (*client.status(slot) == 0) {
  }
  return *client.status(slot) == IOASID_DSA_COMP_SUCCESS;
}

// MEMMOVE of 1 MiB with `depth` descriptors in flight (each with its own record).
void BM_Dsa_Memmove1MiB(benchmark::State& state) {
  const int depth = static_cast<int>(state.range(0));
  Client client;
  if (!client.open(true)) {
    state.SkipWithError("dsa0 setup failed");
    return;
  }
  int64_t submitted = 0;
  int64_t completed = 0;
  for (auto _ : state) {
    while (submitted - completed >= depth)
      if (!wait_for(client, static_cast<int>(completed++ % kRecordSlots))) state.SkipWithError("MEMMOVE failed");
    const int slot = static_cast<int>(submitted++ % kRecordSlots);
    *client.status(slot) = 0;
    if (!client.submit(client.memmove(slot))) state.SkipWithError("DEVICE_SUBMIT failed");
  }
  while (completed < submitted) wait_for(client, static_cast<int>(completed++ % kRecordSlots));
  state.SetBytesProcessed(state.iterations() * kBlock);
}

// Shared-WQ submissions per second: `clients` files, each on its own thread, each
// submitting NOOPs at its own PASID (with a completion record) to dsa0's shared WQ.
void BM_Dsa_SharedWqSubmissions(benchmark::State& state) {
  const int clients = static_cast<int>(state.range(0));
  constexpr int kSubmissionsPerClient = 20000;
  std::vector<std::unique_ptr<Client>> files;
  for (int i = 0; i < clients; ++i) {
    files.push_back(std::make_unique<Client>());
    if (!files.back()->open(i == 0)) {
      state.SkipWithError("dsa0 setup failed");
      return;
    }
  }
  std::atomic<uint64_t> retries{0};
  std::atomic<bool> failed{false};
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (auto& file : files)
      threads.emplace_back([&, client = file.get()] {
        ioasid_dsa_desc noop{.pasid = client->pasid,
                             .opflags = IOASID_DSA_OPFLAGS(IOASID_DSA_OPCODE_NOOP,
                                                           IOASID_DSA_FLAG_CRAV | IOASID_DSA_FLAG_RCR),
                             .completion_addr = client->record_iova(0)};
        uint64_t mine = 0;
        for (int n = 0; n < kSubmissionsPerClient; ++n)
          if (!client->submit(noop, &mine)) failed = true;
        retries += mine;
      });
    for (auto& thread : threads) thread.join();
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  if (failed) state.SkipWithError("DEVICE_SUBMIT failed");
  state.SetItemsProcessed(state.iterations() * clients * kSubmissionsPerClient);
  state.counters["retries"] = static_cast<double>(retries.load());
}

BENCHMARK(BM_Memcpy1MiB)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Dsa_Memmove1MiB)->Arg(1)->Arg(4)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Dsa_SharedWqSubmissions)->Arg(1)->Arg(2)->UseManualTime()->Iterations(3);

// Prints the figures of docs/PERFORMANCE.md after the normal report.
class FigureReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name != "median") continue;
      const std::string& args = run.run_name.args;
      const std::string name = run.run_name.function_name + (args.empty() ? "" : "/" + args);
      times_[name] = run.GetAdjustedRealTime();
      if (run.counters.count("items_per_second")) rates_[name] = run.counters.at("items_per_second");
    }
    ConsoleReporter::ReportRuns(runs);
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    for (const char* memmove : {"BM_Dsa_Memmove1MiB/1", "BM_Dsa_Memmove1MiB/4"})
      if (times_.count(memmove) && times_.count("BM_Memcpy1MiB"))
        std::printf("ratio %-40s %.3f\n", (std::string(memmove + 3) + " bandwidth / memcpy").c_str(),
                    times_.at("BM_Memcpy1MiB") / times_.at(memmove));
    for (const char* rate : {"BM_Dsa_SharedWqSubmissions/1", "BM_Dsa_SharedWqSubmissions/2"})
      if (rates_.count(rate)) std::printf("rate  %-40s %.0f submissions/s\n", rate + 3, rates_.at(rate));
  }

 private:
  std::map<std::string, double> times_;
  std::map<std::string, double> rates_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  g_daemon = start_daemon();
  int status = 1;
  if (g_daemon.pid <= 0) {
    std::fprintf(stderr, "dsa_bench: ioasidd did not come up (run as root; is it built?)\n");
  } else {
    FigureReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    status = 0;
  }
  stop(g_daemon);
  benchmark::Shutdown();
  return status;
}

// SPDX-License-Identifier: MIT
// ATS for device models through a FUSE node, against the null server's round trip and
// memcpy in the same run:
//   - a model moving 1 MiB with its translations cached (AtsCache::copy) / memcpy;
//   - a cold ATS_TRANSLATE of a 2 MiB run (2 MiB leaves; 4 KiB leaves for comparison)
//     / one null round trip of the same struct;
//   - UNMAP of a page the model holds, its invalidation delivered to and acknowledged
//     by the model's thread / one null round trip (and UNMAP of a page nobody holds).
//
// Run as root (it mounts FUSE file systems):
//   build/tests/bench/ats_bench --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
#include <benchmark/benchmark.h>
#include "bench_daemon.h"
#include "memcpy_baseline.h"
#include "null_server.h"
#include <ioasid/client.hpp>

#include <sys/mman.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <optional>

namespace {

using namespace ioasid;

constexpr uint64_t k4K = 4096, k2M = 2ull << 20;

Server g_null;
Server g_daemon;

// 2 MiB-aligned private memory of `size` bytes.
struct Aligned {
  explicit Aligned(size_t size) : size(size) {
    raw = mmap(nullptr, size + k2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return;
    data = reinterpret_cast<std::byte*>((reinterpret_cast<uintptr_t>(raw) + k2M - 1) & ~(k2M - 1));
    std::memset(data, 1, size);
  }
  ~Aligned() {
    if (raw != MAP_FAILED) munmap(raw, size + k2M);
  }
  std::span<std::byte> bytes() const { return {data, size}; }
  size_t size;
  void* raw = MAP_FAILED;
  std::byte* data = nullptr;
};

// A file with dma0 attached by RID to an IOASID.
struct Model {
  Model() {
    auto opened = client::File::open(g_daemon.node);
    if (!opened) return;
    file.emplace(std::move(*opened));
    auto allocated = client::Ioas::allocate(*file);
    auto bound = client::Device::bind(*file, "dma0");
    if (!allocated || !bound) return;
    ioas.emplace(std::move(*allocated));
    device.emplace(std::move(*bound));
    auto attached = client::Attachment::attach(*device, *ioas);
    if (attached) attached->release();
    ready = bool(attached);
  }
  bool ok() const { return ready; }
  std::optional<client::File> file;
  std::optional<client::Ioas> ioas;
  std::optional<client::Device> device;
  bool ready = false;
};

void BM_Null_TranslateStruct(benchmark::State& state) {
  const int fd = ::open(g_null.node.c_str(), O_RDWR);
  if (fd < 0) state.SkipWithError("cannot open the null node");
  ioasid_ats_translate request{};
  for (auto _ : state) benchmark::DoNotOptimize(ioctl(fd, IOASID_ATS_TRANSLATE, &request));
  ::close(fd);
}

// Arg: the IOPTE size the 2 MiB is mapped with (IOVA offset by 4 KiB: 4 KiB leaves).
void BM_Ats_TranslateCold2MiB(benchmark::State& state) {
  Model model;
  Aligned memory(2 * k2M);
  if (!model.ok() || !memory.data) return state.SkipWithError("set-up failed");
  const uint64_t base = 1ull << 32;
  const uint64_t iova = state.range(0) == 4096 ? base + k4K : base;
  auto mapping = client::Mapping::map_dma(*model.ioas, memory.bytes(), {.iova = base});
  if (!mapping) return state.SkipWithError(mapping.error().what.c_str());
  ioasid_ats_run run{};
  for (auto _ : state) {
    ioasid_ats_translate request{.dev_id = model.device->id(),
                                 .num_runs = 1,
                                 .iova = iova,
                                 .length = k2M,
                                 .runs_uptr = reinterpret_cast<uint64_t>(&run)};
    if (ioctl(model.file->fd(), IOASID_ATS_TRANSLATE, &request) != 0 || request.out_length != k2M)
      return state.SkipWithError("ATS_TRANSLATE failed");
  }
}

void BM_Ats_ModelCopy1MiB(benchmark::State& state) {
  Model model;
  Aligned memory(2 * kMemcpyBytes);
  if (!model.ok() || !memory.data) return state.SkipWithError("set-up failed");
  auto mapping = client::Mapping::map_dma(*model.ioas, memory.bytes());
  if (!mapping) return state.SkipWithError(mapping.error().what.c_str());
  client::AtsCache cache(*model.device);
  const uint64_t src = mapping->iova(), dst = src + kMemcpyBytes;
  for (auto _ : state) {
    auto copied = cache.copy(dst, src, kMemcpyBytes);
    if (!copied || !copied->ok()) return state.SkipWithError("copy failed");
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kMemcpyBytes);
}

// Arg 1: the model holds the page (its thread acknowledges the invalidation); 0: nobody does.
void BM_Ats_Unmap4K(benchmark::State& state) {
  Model model;
  Aligned memory(k4K);
  if (!model.ok() || !memory.data) return state.SkipWithError("set-up failed");
  client::AtsCache cache(*model.device);
  auto server = client::AtsInvalidationServer::start(*model.file, {&cache});
  if (!server) return state.SkipWithError(server.error().what.c_str());
  const uint64_t iova = 1ull << 33;
  std::byte byte;
  for (auto _ : state) {
    auto mapping = client::Mapping::map_dma(*model.ioas, memory.bytes(), {.iova = iova});
    if (!mapping) return state.SkipWithError(mapping.error().what.c_str());
    if (state.range(0) && !cache.read(iova, std::span(&byte, 1))) return state.SkipWithError("read failed");
    const auto start = std::chrono::steady_clock::now();
    auto unmapped = mapping->unmap();
    const auto end = std::chrono::steady_clock::now();
    if (!unmapped) return state.SkipWithError(unmapped.error().what.c_str());
    state.SetIterationTime(std::chrono::duration<double>(end - start).count());
  }
}

BENCHMARK(BM_Null_TranslateStruct)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Ats_TranslateCold2MiB)->Arg(2 << 20)->Arg(4096)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Memcpy1MiB)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Ats_ModelCopy1MiB)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Ats_Unmap4K)->Arg(1)->Arg(0)->MinTime(0.5)->UseManualTime();

class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& run : runs) {
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name != "median") continue;
      // The key is the name and the arguments, as "BM_Ats_Unmap4K1".
      times_[run.run_name.function_name + run.run_name.args] = run.GetAdjustedRealTime();
    }
    ConsoleReporter::ReportRuns(runs);
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    ratio("model copy bandwidth / memcpy (goal >= 0.9)", "BM_Memcpy1MiB", "BM_Ats_ModelCopy1MiB");
    ratio("cold translate, 2 MiB leaf / null round trip (goal <= 1.5)", "BM_Ats_TranslateCold2MiB2097152",
          "BM_Null_TranslateStruct");
    ratio("cold translate, 4 KiB leaves / null round trip", "BM_Ats_TranslateCold2MiB4096",
          "BM_Null_TranslateStruct");
    ratio("UNMAP held by a model / null round trip (goal <= 4)", "BM_Ats_Unmap4K1", "BM_Null_TranslateStruct");
    ratio("UNMAP held by nobody / null round trip", "BM_Ats_Unmap4K0", "BM_Null_TranslateStruct");
  }

 private:
  void ratio(const char* what, const std::string& a, const std::string& b) const {
    if (times_.count(a) && times_.count(b) && times_.at(b) > 0)
      std::printf("ratio %-60s %.3f\n", what, times_.at(a) / times_.at(b));
  }
  std::map<std::string, double> times_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  g_null = start_null_server();
  g_daemon = start_daemon();
  int status = 1;
  if (!wait_for_node(g_null.node) || g_daemon.pid <= 0) {
    std::fprintf(stderr, "ats_bench: a server did not come up (run as root; is ioasidd built?)\n");
  } else {
    RatioReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    status = 0;
  }
  stop(g_daemon);
  stop(g_null);
  benchmark::Shutdown();
  return status;
}

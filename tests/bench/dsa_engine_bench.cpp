// SPDX-License-Identifier: MIT
// The dsa engine in-process (no node): what one descriptor costs the engine itself —
// a NOOP with its completion record, a MEMMOVE of 1 MiB over 2 MiB or 4 KiB IOPTEs —
// against memcpy of 1 MiB in the same run, with the daemon's default idle poll and
// (the _NoPoll rows) without it. dsa_bench measures the same through the node.
//   build/tests/bench/dsa_engine_bench --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
#include "devices/dsa/engine.h"
#include "iommu/io_pagetable.h"
#include "../unit/translation_support.h"  // the memfd mapping the unit tests use
#include "memcpy_baseline.h"

#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

namespace ioasid::devices::dsa {
namespace {

using iommu::test_support::k2M;
using iommu::test_support::k4K;
using iommu::test_support::MemfdMemory;

constexpr uint32_t kPasid = 5;
constexpr uint64_t kBlock = 1u << 20;

// An engine with one shared WQ over a memfd of 4 MiB mapped at `iova` (2 MiB aligned:
// 2 MiB IOPTEs; off by 4 KiB: 4 KiB ones). Records are read back through the memfd's
// own mapping here, as a client polls them.
struct Setup {
  Setup(uint64_t iova, std::chrono::microseconds idle_poll) : memory(4 * kBlock), iova(iova) {
    auto created = iommu::IoPageTable::create(iommu_unit);
    if (!created || !memory.ok()) return;
    table = std::move(*created);
    if (!memory.map(iommu_unit, *table, 0, 4 * kBlock, iova)) return;
    pasids.set(kPasid, iommu::test_support::second_level_entry(*table, 1));
    engine = std::make_unique<Engine>("dsa-bench", iommu_unit, pasids, nullptr, 1, executor, idle_poll);
    ready = engine->enable(0, {.shared = true, .size = 128, .priority = 1, .owner = 1}).ok();
    view = memory.map_here();
  }
  ~Setup() { engine.reset(); }

  ioasid_dsa_desc desc(uint32_t op, int slot) const {
    ioasid_dsa_desc d{};
    d.pasid = kPasid;
    d.opflags = IOASID_DSA_OPFLAGS(op, IOASID_DSA_FLAG_CRAV | IOASID_DSA_FLAG_RCR);
    d.completion_addr = iova + 2 * kBlock + 32 * slot;
    d.src = iova;
    d.dst = iova + kBlock;
    d.xfer_size = op == IOASID_DSA_OPCODE_NOOP ? 0 : kBlock;
    return d;
  }
  std::atomic_ref<uint8_t> status(int slot) const {
    return std::atomic_ref<uint8_t>(*reinterpret_cast<uint8_t*>(view + 2 * kBlock + 32 * slot));
  }

  iommu::Iommu iommu_unit{iommu::IommuConfig{.pin_limit_pages = 0}};
  MemfdMemory memory;
  uint64_t iova;
  std::unique_ptr<iommu::IoPageTable> table;
  iommu::PasidTable pasids{iommu_unit.pasid_cache()};
  ThreadPoolExecutor executor{1};
  std::unique_ptr<Engine> engine;
  std::byte* view = nullptr;
  bool ready = false;
};

// Submits one descriptor at a time and waits for its record: the engine's latency.
void run(benchmark::State& state, uint64_t iova, uint32_t op,
         std::chrono::microseconds idle_poll = kDefaultIdlePoll) {
  Setup setup(iova, idle_poll);
  if (!setup.ready || !setup.view) {
    state.SkipWithError("setup failed");
    return;
  }
  for (auto _ : state) {
    setup.status(0).store(0);
    if (setup.engine->submit(0, setup.desc(op, 0), kPasid, 1, nullptr, {.shared = true, .owner = 1}) != Enqueued::kAccepted)
      state.SkipWithError("not accepted");
    while (setup.status(0).load(std::memory_order_acquire) == 0) {
    }
    if (setup.status(0).load() != IOASID_DSA_COMP_SUCCESS) state.SkipWithError("failed");
  }
  if (op != IOASID_DSA_OPCODE_NOOP) state.SetBytesProcessed(state.iterations() * kBlock);
}

constexpr std::chrono::microseconds kNoPoll{0};

void BM_Engine_Noop(benchmark::State& state) { run(state, 1ull << 30, IOASID_DSA_OPCODE_NOOP); }
void BM_Engine_Noop_NoPoll(benchmark::State& state) { run(state, 1ull << 30, IOASID_DSA_OPCODE_NOOP, kNoPoll); }
void BM_Engine_Memmove1MiB_2MiBPages(benchmark::State& state) { run(state, 1ull << 30, IOASID_DSA_OPCODE_MEMMOVE); }
void BM_Engine_Memmove1MiB_4KiBPages(benchmark::State& state) {
  run(state, (1ull << 30) + k4K, IOASID_DSA_OPCODE_MEMMOVE);
}
void BM_Engine_Memmove1MiB_4KiBPages_NoPoll(benchmark::State& state) {
  run(state, (1ull << 30) + k4K, IOASID_DSA_OPCODE_MEMMOVE, kNoPoll);
}

BENCHMARK(BM_Engine_Noop)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Engine_Noop_NoPoll)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Engine_Memmove1MiB_2MiBPages)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Engine_Memmove1MiB_4KiBPages)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Engine_Memmove1MiB_4KiBPages_NoPoll)->MinTime(0.5)->UseRealTime();
BENCHMARK(BM_Memcpy1MiB)->MinTime(0.5)->UseRealTime();

}  // namespace
}  // namespace ioasid::devices::dsa

BENCHMARK_MAIN();

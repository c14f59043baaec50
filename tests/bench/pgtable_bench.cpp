// SPDX-License-Identifier: MIT
// Second-level page tables: the walk an IOTLB miss costs, and MAP+UNMAP of 1 GiB with
// 2 MiB and with 4 KiB pages. Targets: a 4-level walk <= 150 ns, 1 GiB at 2M <= 2 ms,
// 1 GiB at 4K <= 30 ms, and at most 2.1 MiB of table pages for 1 GiB at 4K.
#include "memory/hpa_space.h"
#include "pgtable/second_level_table.h"
#include "pgtable/walk.h"

#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

namespace ioasid::pgtable {
namespace {

constexpr uint64_t k4K = 1ull << 12;
constexpr uint64_t k2M = 1ull << 21;
constexpr uint64_t k1G = 1ull << 30;
constexpr Hpa kData = 0x40'0000'0000;

constexpr Permissions kReadWrite{.read = true, .write = true};

// Walks random 4K pages of 1 GiB mapped with 4K pages: every walk goes all the way to
// a PTE, as an IOTLB miss does.
void walk_random_pages(benchmark::State& state, int levels, uint64_t base, AccessedDirty accessed_dirty) {
  HpaSpace memory;  // the daemon's own: table pages from its lock-free pool
  auto table = SecondLevelTable::create(memory, levels);
  if (!table || !table->map(base, kData + k4K, k1G, kReadWrite)) {
    state.SkipWithError("map failed");
    return;
  }
  std::mt19937_64 random(42);
  std::vector<uint64_t> iovas(1 << 14);
  for (auto& iova : iovas) iova = base + (random() % (k1G / k4K)) * k4K + 0x18;
  const Hpa root = table->root();
  size_t next = 0;
  for (auto _ : state) {
    auto result = walk_second_level(memory, root, levels, iovas[next], Access{.write = true}, accessed_dirty);
    benchmark::DoNotOptimize(result);
    next = (next + 1) & (iovas.size() - 1);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Walk4LevelMiss(benchmark::State& state) {
  walk_random_pages(state, kFourLevels, k1G, AccessedDirty::kLeave);
}
BENCHMARK(BM_Walk4LevelMiss);

// The same walk with every table in L1: the walker's own cost, without cache misses.
void BM_Walk4LevelCached(benchmark::State& state) {
  HpaSpace memory;  // the daemon's own: table pages from its lock-free pool
  auto table = SecondLevelTable::create(memory, kFourLevels);
  if (!table || !table->map(k1G, kData + k4K, 16 * k4K, kReadWrite)) {
    state.SkipWithError("map failed");
    return;
  }
  uint64_t page = 0;
  for (auto _ : state) {
    auto result = walk_second_level(memory, table->root(), kFourLevels, k1G + page * k4K, Access{.write = true});
    benchmark::DoNotOptimize(result);
    page = (page + 1) & 15;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Walk4LevelCached);

// With second-level A/D on: after the first pass the bits are set and only read.
void BM_Walk4LevelMissAccessedDirty(benchmark::State& state) {
  walk_random_pages(state, kFourLevels, k1G, AccessedDirty::kUpdate);
}
BENCHMARK(BM_Walk4LevelMissAccessedDirty);

void BM_Walk5LevelMiss(benchmark::State& state) {
  walk_random_pages(state, kFiveLevels, (1ull << 56) + k1G, AccessedDirty::kLeave);
}
BENCHMARK(BM_Walk5LevelMiss);

void map_unmap_1g(benchmark::State& state, Hpa hpa) {
  HpaSpace memory;  // the daemon's own: table pages from its lock-free pool
  auto table = SecondLevelTable::create(memory, kFourLevels);
  if (!table) {
    state.SkipWithError("create failed");
    return;
  }
  uint64_t table_bytes = 0;
  for (auto _ : state) {
    if (!table->map(k1G, hpa, k1G, kReadWrite)) state.SkipWithError("map failed");
    table_bytes = table->table_bytes();
    auto unmapped = table->unmap(k1G, k1G);
    if (!unmapped || *unmapped != k1G) state.SkipWithError("unmap failed");
  }
  state.counters["table_bytes"] = static_cast<double>(table_bytes);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * k1G));
}

// The HPA is 2 MiB aligned but not 1 GiB aligned: 512 leaves of 2M.
void BM_MapUnmap1GiB_2MPages(benchmark::State& state) { map_unmap_1g(state, kData + k2M); }
BENCHMARK(BM_MapUnmap1GiB_2MPages)->Unit(benchmark::kMillisecond);

// The HPA is only 4 KiB aligned: 262144 leaves of 4K in 512 page tables.
void BM_MapUnmap1GiB_4KPages(benchmark::State& state) { map_unmap_1g(state, kData + k4K); }
BENCHMARK(BM_MapUnmap1GiB_4KPages)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ioasid::pgtable

BENCHMARK_MAIN();

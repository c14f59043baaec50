// SPDX-License-Identifier: MIT
// IOTLB lookups in-process. Run: build/tests/bench/iotlb_bench
#include "iommu/iotlb.h"

#include <benchmark/benchmark.h>

namespace {

using ioasid::iommu::Iotlb;

void BM_IotlbHit(benchmark::State& state) {
  static Iotlb tlb(4096);
  constexpr uint64_t kPages = 1024;  // a working set that fits
  if (state.thread_index() == 0)
    for (uint64_t page = 0; page < kPages; ++page) tlb.fill(1, 5, page << 12, 12, page << 12, 1);
  uint64_t page = state.thread_index();
  for (auto _ : state) {
    page = (page + 17) % kPages;
    benchmark::DoNotOptimize(tlb.lookup(1, 5, (page << 12) | 0x10));
  }
}
BENCHMARK(BM_IotlbHit)->Threads(1)->Threads(2);

void BM_IotlbMiss(benchmark::State& state) {
  Iotlb tlb(4096);
  uint64_t page = 0;
  for (auto _ : state) benchmark::DoNotOptimize(tlb.lookup(1, 5, (++page) << 12));
}
BENCHMARK(BM_IotlbMiss);

}  // namespace

BENCHMARK_MAIN();

// SPDX-License-Identifier: MIT
// PASID allocator throughput and footprint. Targets: >= 10M alloc+free pairs/s on one
// thread, find <= 20 ns, <= 64 bytes per live PASID with the whole 20-bit space taken.
#include "pasid/allocator.h"

#include <benchmark/benchmark.h>
#include <malloc.h>

#include <memory>
#include <vector>

namespace ioasid {
namespace {

size_t heap_in_use() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;  // small blocks + mmap'd blocks
}

// Alloc then free one PASID per iteration; range(0) PASIDs stay live underneath, so
// the lowest free number sits past them.
void BM_AllocFree(benchmark::State& state) {
  Allocator allocator;
  const SetId set = *allocator.create_set(0, SetType::Null, allocator.capacity());
  for (int64_t i = 0; i < state.range(0); ++i) (void)*allocator.alloc(set, 1, allocator.capacity());
  for (auto _ : state) {
    auto pasid = allocator.alloc(set, 1, allocator.capacity());
    benchmark::DoNotOptimize(pasid);
    (void)allocator.free(set, *pasid);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AllocFree)->Arg(0)->Arg(100000);

void BM_GetPut(benchmark::State& state) {
  Allocator allocator;
  const SetId set = *allocator.create_set(0, SetType::Null, 10);
  const Pasid pasid = *allocator.alloc(set, 1, 10);
  for (auto _ : state) {
    (void)allocator.get(set, pasid);
    benchmark::DoNotOptimize(allocator.put(pasid));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GetPut);

// Lookups spread over 4096 live PASIDs. Shared by the threads of the threaded variant.
struct FindFixture {
  FindFixture() : set(*allocator.create_set(0, SetType::Null, kLive)) {
    for (uint32_t i = 0; i < kLive; ++i) pasids.push_back(*allocator.alloc(set, 1, allocator.capacity(), i + 1));
  }
  static constexpr uint32_t kLive = 4096;
  Allocator allocator;
  SetId set;
  std::vector<Pasid> pasids;
};

void BM_Find(benchmark::State& state) {
  static FindFixture fixture;
  uint32_t index = uint32_t(state.thread_index()) * 997;
  for (auto _ : state) {
    auto data = fixture.allocator.find(fixture.set, fixture.pasids[index++ % FindFixture::kLive]);
    benchmark::DoNotOptimize(data);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Find)->Threads(1)->Threads(2)->Threads(4)->UseRealTime();

// The whole 2^20-1 space live: heap growth per live PASID (entries, bitmap, directory).
void BM_FillAllThenFree(benchmark::State& state) {
  double bytes_per_pasid = 0;
  for (auto _ : state) {
    const size_t before = heap_in_use();
    auto allocator = std::make_unique<Allocator>();
    const uint32_t capacity = allocator->capacity();
    const SetId set = *allocator->create_set(0, SetType::Null, capacity);
    for (uint32_t i = 0; i < capacity; ++i) (void)*allocator->alloc(set, 1, capacity);
    bytes_per_pasid = double(heap_in_use() - before) / capacity;
    for (Pasid pasid = 1; pasid <= capacity; ++pasid) (void)allocator->free(set, pasid);
    state.PauseTiming();
    allocator.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * int64_t{(1 << 20) - 1});
  state.counters["bytes_per_pasid"] = bytes_per_pasid;
}
BENCHMARK(BM_FillAllThenFree)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
}  // namespace ioasid

BENCHMARK_MAIN();

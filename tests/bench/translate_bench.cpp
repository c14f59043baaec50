// SPDX-License-Identifier: MIT
// Iommu::translate in-process: the whole request path (PASID cache, device-TLB, IOTLB,
// else a second-level walk and a fill) over an IoPageTable mapping a memfd.
// Targets: an IOTLB hit <= 25 ns, a 4-level miss walk <= 150 ns.
// Run: build/tests/bench/translate_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include "iommu/io_pagetable.h"
#include "iommu/iommu.h"
#include "iommu/pasid_table.h"
#include "pgtable/first_level_builder.h"
#include "../unit/translation_support.h"  // the memfd mapping the unit tests use

#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <span>
#include <random>
#include <vector>

namespace ioasid::iommu {
namespace {

using test_support::k4K;
using test_support::MemfdMemory;
using test_support::second_level_entry;

constexpr uint64_t k1G = 1ull << 30;
constexpr uint32_t kPasid = 5;
constexpr pgtable::Access kRead{.read = true};

// One IOMMU with one I/O page table, attached at kPasid of one PASID table, mapping
// `length` bytes of a memfd with 4 KiB pages at kIova (not 2M aligned, so the table
// cannot use superpages: every walk reads 4 levels down to a PTE).
struct Setup {
  static constexpr uint64_t kIova = k1G + k4K;

  explicit Setup(uint64_t length) : memory(length) {
    auto created = IoPageTable::create(iommu);
    if (!created || !memory.ok()) return;
    table = std::move(*created);
    if (!memory.map(iommu, *table, 0, length, kIova)) return;
    pasids.set(kPasid, second_level_entry(*table, 1));
    ready = true;
  }
  TranslateResult translate(uint64_t iova, Iotlb* device_tlb = nullptr) {
    return iommu.translate(pasids, {.pasid = kPasid, .iova = iova, .access = kRead}, device_tlb);
  }

  Iommu iommu{IommuConfig{.pin_limit_pages = 0}};
  MemfdMemory memory;
  std::unique_ptr<IoPageTable> table;
  PasidTable pasids{iommu.pasid_cache()};
  bool ready = false;
};

Setup& small_setup() {
  static Setup setup(16 * k4K);
  return setup;
}

// IOTLB hits on one 4 KiB page, at changing offsets inside it. With two threads on
// the same IOMMU it also shows what the lookups' shared state costs (the PASID cache's
// and the IOTLB's hit counters are sharded by thread for that reason).
// A guest's first-level table nested over an IoPageTable that maps guest RAM (a memfd)
// at GPA 0: one 4 KiB page at kGva, translated through a kNested PASID entry.
struct NestedSetup {
  static constexpr uint64_t kRam = 4ull << 20, kGva = 0x7f0000000000ull, kPageGpa = 2ull << 20;

  NestedSetup() : memory(kRam) {
    auto created = IoPageTable::create(iommu);
    auto domain = iommu.make_domain();
    if (!created || !domain || !memory.ok()) return;
    table = std::move(*created);
    nested_domain = std::make_unique<Domain>(std::move(*domain));
    if (!memory.map(iommu, *table, 0, kRam, 0)) return;
    uint64_t next_table = 1ull << 20;  // table pages from GPA 1 MiB
    pgtable::GuestTableMemory guest{
        .alloc_page = [&]() -> Result<uint64_t> {
          const uint64_t gpa = next_table;
          next_table += k4K;
          return gpa;
        },
        .read64 = [&](uint64_t gpa) -> Result<uint64_t> {
          uint64_t value = 0;
          std::memcpy(&value, memory.read(gpa, sizeof value).data(), sizeof value);
          return value;
        },
        .write64 = [&](uint64_t gpa, uint64_t value) -> Result<void> {
          if (!memory.write(gpa, std::as_bytes(std::span(&value, 1)))) return fail(EIO, "pwrite");
          return success();
        },
        .free_page = {}};
    auto builder = pgtable::FirstLevelBuilder::create(guest, 4);
    if (!builder || !builder->map(kGva, kPageGpa, k4K, {.writable = true, .user = true})) return;
    pasids.set(kPasid, {.ioasid = 2,
                        .domain = nested_domain->id(),
                        .type = TranslationType::kNested,
                        .levels = static_cast<uint8_t>(table->levels()),
                        .root = table->root(),
                        .second_level_domain = table->domain(),
                        .first_level_levels = 4,
                        .first_level_root = builder->root()});
    ready = translate(kGva).ok();
  }
  TranslateResult translate(uint64_t gva) {
    return iommu.translate(pasids, {.pasid = kPasid, .iova = gva, .access = kRead});
  }

  Iommu iommu{IommuConfig{.pin_limit_pages = 0}};
  MemfdMemory memory;
  std::unique_ptr<IoPageTable> table;
  std::unique_ptr<Domain> nested_domain;
  PasidTable pasids{iommu.pasid_cache()};
  bool ready = false;
};

// The same hit as BM_TranslateHit, through a nested (guest first-level) PASID entry.
void BM_TranslateHitNested(benchmark::State& state) {
  static NestedSetup setup;
  if (!setup.ready) return state.SkipWithError("nested setup failed");
  uint64_t offset = 0;
  for (auto _ : state) {
    offset = (offset + 8) & (k4K - 1);
    auto result = setup.translate(NestedSetup::kGva + offset);
    benchmark::DoNotOptimize(result);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TranslateHitNested);

void BM_TranslateHit(benchmark::State& state) {
  Setup& setup = small_setup();
  if (!setup.ready || !setup.translate(Setup::kIova).ok()) return state.SkipWithError("setup failed");
  const auto before = setup.iommu.iotlb().stats();
  uint64_t offset = static_cast<uint64_t>(state.thread_index()) * 64;
  for (auto _ : state) {
    offset = (offset + 8) & (k4K - 1);
    auto result = setup.translate(Setup::kIova + offset);
    benchmark::DoNotOptimize(result);
  }
  if (state.threads() == 1) {  // the counters are the IOMMU's, shared by the threads
    const auto after = setup.iommu.iotlb().stats();
    state.counters["iotlb_hit_ratio"] =
        static_cast<double>(after.hits - before.hits) / static_cast<double>(state.iterations());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TranslateHit)->Threads(1)->Threads(2);

// The same page through a registered device-TLB: answered before the IOTLB.
void BM_TranslateHitDeviceTlb(benchmark::State& state) {
  Setup& setup = small_setup();
  Iotlb device(64);
  auto registration = setup.iommu.register_device_tlb(device);
  if (!setup.ready || !setup.translate(Setup::kIova, &device).ok()) return state.SkipWithError("setup failed");
  const auto before = device.stats();
  uint64_t offset = 0;
  for (auto _ : state) {
    offset = (offset + 8) & (k4K - 1);
    auto result = setup.translate(Setup::kIova + offset, &device);
    benchmark::DoNotOptimize(result);
  }
  state.counters["devtlb_hit_ratio"] =
      static_cast<double>(device.stats().hits - before.hits) / static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TranslateHitDeviceTlb);

// The two lookups a hit is made of, alone, for the breakdown: the PASID entry (PASID
// cache hit through the table) and the IOTLB entry of the page.
void BM_PasidLookupHit(benchmark::State& state) {
  Setup& setup = small_setup();
  if (!setup.ready || !setup.pasids.translate_lookup(kPasid)) return state.SkipWithError("setup failed");
  for (auto _ : state) {
    auto entry = setup.pasids.translate_lookup(kPasid);
    benchmark::DoNotOptimize(entry);
  }
}
BENCHMARK(BM_PasidLookupHit);

void BM_IotlbLookupHit(benchmark::State& state) {
  Setup& setup = small_setup();
  if (!setup.ready || !setup.translate(Setup::kIova).ok()) return state.SkipWithError("setup failed");
  const uint16_t domain = setup.table->domain();
  uint64_t offset = 0;
  for (auto _ : state) {
    offset = (offset + 8) & (k4K - 1);
    auto hit = setup.iommu.iotlb().lookup(domain, kPasid, Setup::kIova + offset, kPermRead);
    benchmark::DoNotOptimize(hit);
  }
}
BENCHMARK(BM_IotlbLookupHit);

// Misses: random 4 KiB pages of 1 GiB mapped with 4 KiB pages (262144 pages, 64 times
// the 4096-entry IOTLB), the way pgtable_bench's BM_Walk4LevelMiss picks them, so
// nearly every request misses, walks 4 levels and fills (evicting). Cycling over more
// pages than the IOTLB holds is used rather than invalidating the page each iteration:
// an invalidation scans every IOTLB set (microseconds), which would swamp the walk.
// The iotlb_miss_ratio counter shows how many requests really missed.
void BM_TranslateMiss4Level(benchmark::State& state) {
  static Setup setup(k1G);
  if (!setup.ready) return state.SkipWithError("setup failed");
  std::mt19937_64 random(42);
  std::vector<uint64_t> iovas(1 << 16);
  for (auto& iova : iovas) iova = Setup::kIova + (random() % (k1G / k4K)) * k4K + 0x18;
  const auto before = setup.iommu.iotlb().stats();
  size_t next = 0;
  for (auto _ : state) {
    auto result = setup.translate(iovas[next]);
    benchmark::DoNotOptimize(result);
    next = (next + 1) & (iovas.size() - 1);
  }
  const auto after = setup.iommu.iotlb().stats();
  state.counters["iotlb_miss_ratio"] =
      static_cast<double>(after.misses - before.misses) / static_cast<double>(state.iterations());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TranslateMiss4Level);

}  // namespace
}  // namespace ioasid::iommu

BENCHMARK_MAIN();

// SPDX-License-Identifier: MIT
// First-level and nested (first level over second level) walks: what an IOTLB miss
// costs a guest-SVA request. The guest maps 1 GiB of GVAs to 1 GiB of guest RAM with
// 4 KiB pages in its own first-level table (in guest RAM, a memfd the benchmark maps
// as a VMM would); the parent IOASID's second-level table maps all of guest RAM with
// 4 KiB pages. Every walk goes to a random 4K page, down to both stages' PTEs: four
// guest-table fetches each translated by a second-level walk, then the output GPA's
// own second-level walk. A/D are set by a warm-up pass, so the timed walks only read
// (the steady state of a device re-touching its buffers). Target: a 4-over-4 nested
// miss <= 1 us.
#include "memory/hpa_space.h"
#include "memory/mapped_file_backing.h"
#include "pgtable/first_level_builder.h"
#include "pgtable/first_level_walk.h"
#include "pgtable/second_level_table.h"
#include "pgtable/walk.h"

#include <sys/mman.h>
#include <unistd.h>

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace ioasid::pgtable {
namespace {

constexpr uint64_t k4K = 1ull << 12;
constexpr uint64_t k1G = 1ull << 30;
constexpr uint64_t kTableArea = k1G;              // guest table pages live above the data
constexpr uint64_t kRamSize = k1G + (8ull << 20);  // 1 GiB of data and 8 MiB for tables
constexpr uint64_t kGvaBase = 0x7f00'0000'0000;    // a user-half GVA, 1 GiB aligned
constexpr Access kWrite{.write = true};
constexpr size_t kAddresses = 1 << 14;

// Guest RAM as both sides see it: the VMM's (and guest's) mapping of a memfd, and the
// same memfd as one HpaSpace segment.
class Setup {
 public:
  Setup() { build(); }
  ~Setup() {
    second_level.reset();
    if (view_ != nullptr) munmap(view_, kRamSize);
    if (fd_ >= 0) close(fd_);
  }

  std::atomic_ref<uint64_t> word(uint64_t gpa) { return std::atomic_ref<uint64_t>(view_[gpa / 8]); }
  Hpa base() const { return base_; }

  HpaSpace hpa;
  std::optional<SecondLevelTable> second_level;
  FirstLevelConfig guest_config;
  FirstLevelConfig native_config;
  std::vector<uint64_t> gvas;
  bool ok = false;
  std::string error;

 private:
  void build() {
    fd_ = memfd_create("nested-walk-bench", MFD_CLOEXEC);
    if (fd_ < 0 || ftruncate(fd_, static_cast<off_t>(kRamSize)) != 0) return give_up("memfd");
    void* view = mmap(nullptr, kRamSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (view == MAP_FAILED) return give_up("mmap");
    view_ = static_cast<uint64_t*>(view);
    auto backing = MappedFileBacking::create(fd_, 0, kRamSize, MapAccess::kReadWrite, "guest RAM");
    if (!backing) return give_up(backing.error().why);
    auto base = hpa.add_segment(std::move(*backing));
    if (!base) return give_up(base.error().why);
    base_ = *base;

    // The parent IOASID: every 4K of guest RAM mapped on its own, so all leaves are 4K.
    auto table = SecondLevelTable::create(hpa, 4);
    if (!table) return give_up(table.error().why);
    second_level.emplace(std::move(*table));
    for (uint64_t gpa = 0; gpa < kRamSize; gpa += k4K)
      if (!second_level->map(gpa, base_ + gpa, k4K, Permissions{.read = true, .write = true}))
        return give_up("second-level map");

    // The guest's table, written through the VMM's mapping.
    uint64_t next_table = kTableArea;
    GuestTableMemory guest{
        .alloc_page = [&next_table]() -> Result<uint64_t> {
          if (next_table + k4K > kRamSize) return ioasid::fail(ENOMEM, "no guest table page left");
          next_table += k4K;
          return next_table - k4K;
        },
        .read64 = [this](uint64_t gpa) -> Result<uint64_t> { return word(gpa).load(); },
        .write64 = [this](uint64_t gpa, uint64_t value) -> Result<void> {
          word(gpa).store(value);
          return success();
        },
    };
    auto builder = FirstLevelBuilder::create(std::move(guest), 4);
    if (!builder) return give_up(builder.error().why);
    if (!builder->map(kGvaBase, 0, k1G, {.writable = true, .user = true}, k4K)) return give_up("first-level map");
    guest_config = builder->config();

    // The same mapping with the tables in daemon memory (native SVA, first level only).
    auto native = FirstLevelBuilder::create(over_physical_memory(hpa), 4);
    if (!native || !native->map(kGvaBase, base_, k1G, {.writable = true, .user = true}, k4K))
      return give_up("native first-level map");
    native_config = native->config();

    std::mt19937_64 random(42);
    gvas.resize(kAddresses);
    for (auto& gva : gvas) gva = kGvaBase + (random() % (k1G / k4K)) * k4K + 0x18;
    ok = true;
  }
  void give_up(std::string why) { error = std::move(why); }

  int fd_ = -1;
  uint64_t* view_ = nullptr;
  Hpa base_ = 0;
};

Setup& setup() {
  static Setup instance;  // built once: mapping 1 GiB at 4K twice takes a while
  return instance;
}

// Walks every address once (setting A/D), then times walks over them in turn.
template <typename Walk>
void run(benchmark::State& state, Walk&& walk) {
  Setup& s = setup();
  if (!s.ok) {
    state.SkipWithError(s.error.c_str());
    return;
  }
  for (uint64_t gva : s.gvas) {
    if (!walk(gva).ok()) {
      state.SkipWithError("walk faulted");
      return;
    }
  }
  size_t next = 0;
  for (auto _ : state) {
    auto result = walk(s.gvas[next]);
    benchmark::DoNotOptimize(result);
    next = (next + 1) & (kAddresses - 1);
  }
  state.SetItemsProcessed(state.iterations());
}

void nested(benchmark::State& state, AccessedDirty second_level_updates) {
  Setup& s = setup();
  if (!s.ok) {
    state.SkipWithError(s.error.c_str());
    return;
  }
  const SecondLevelGpaTranslation translation{&s.hpa, s.second_level->root(), 4, second_level_updates};
  const GpaTranslator to_host(translation);
  run(state, [&](uint64_t gva) { return walk_first_level(s.hpa, s.guest_config, gva, kWrite, false, &to_host); });
}

void BM_NestedWalk4Over4Miss(benchmark::State& state) { nested(state, AccessedDirty::kLeave); }
BENCHMARK(BM_NestedWalk4Over4Miss);

// With dirty tracking on the parent IOASID: the second level sets A/D too.
void BM_NestedWalk4Over4MissDirtyTracking(benchmark::State& state) { nested(state, AccessedDirty::kUpdate); }
BENCHMARK(BM_NestedWalk4Over4MissDirtyTracking);

// The same 16 pages over and over: the walker's own cost, every table in L1.
void BM_NestedWalk4Over4Cached(benchmark::State& state) {
  Setup& s = setup();
  if (!s.ok) {
    state.SkipWithError(s.error.c_str());
    return;
  }
  const SecondLevelGpaTranslation translation{&s.hpa, s.second_level->root(), 4, AccessedDirty::kLeave};
  const GpaTranslator to_host(translation);
  uint64_t page = 0;
  for (auto _ : state) {
    auto result = walk_first_level(s.hpa, s.guest_config, kGvaBase + page * k4K, kWrite, false, &to_host);
    benchmark::DoNotOptimize(result);
    page = (page + 1) & 15;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NestedWalk4Over4Cached);

// First level only, tables in the daemon's table pool (native SVA).
void BM_FirstLevelWalk4Miss(benchmark::State& state) {
  Setup& s = setup();
  run(state, [&](uint64_t gva) { return walk_first_level(s.hpa, s.native_config, gva, kWrite, false, nullptr); });
}
BENCHMARK(BM_FirstLevelWalk4Miss);

// First level only, tables in client memory (a segment): every fetch goes through the
// segment lookup and its lock, as the guest tables of a nested walk do, but with no
// second-level walks. Nested minus this is what the second level costs.
void BM_FirstLevelWalk4MissTablesInClientMemory(benchmark::State& state) {
  Setup& s = setup();
  const uint64_t base = s.base();
  // The guest's tables hold GPAs: a translator adding the segment base stands in for
  // the second level, at the cost of one indirect call per fetch and no table walk.
  auto offset = [base](uint64_t gpa, Access) -> WalkResult {
    return Translation{.hpa = gpa + base, .page_size = k1G, .level = 3, .permissions = kAllPermissions};
  };
  const GpaTranslator to_host(offset);
  run(state, [&](uint64_t gva) { return walk_first_level(s.hpa, s.guest_config, gva, kWrite, false, &to_host); });
}
BENCHMARK(BM_FirstLevelWalk4MissTablesInClientMemory);

}  // namespace
}  // namespace ioasid::pgtable

BENCHMARK_MAIN();

// SPDX-License-Identifier: MIT
// Segments in the HPA space: placement, data transfers across pages and off the end,
// words in segments, and DMA from threads while segments come and go.
#include "memory/hpa_space.h"
#include "memory/mapped_file_backing.h"
#include "base/unique_fd.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

namespace ioasid {
namespace {

using ::testing::HasSubstr;

// Plain daemon memory; records whether it was touched after being marked removed.
class VectorBacking final : public Backing {
 public:
  explicit VectorBacking(uint64_t size, bool writable = true)
      : Backing(size, writable, fmt::format("vector of {:#x} bytes", size)), bytes_(size) {
    for (size_t i = 0; i < bytes_.size(); ++i) bytes_[i] = std::byte(i * 7 + 1);
  }
  bool zero_copy() const override { return true; }

  std::atomic<bool> removed{false};
  std::atomic<int> touched_after_removal{0};

 private:
  void touch() {
    if (removed.load()) touched_after_removal.fetch_add(1);
  }
  Result<void> do_read(uint64_t offset, std::span<std::byte> out, size_t& done) override {
    touch();
    std::memcpy(out.data(), bytes_.data() + offset, out.size());
    done = out.size();
    return success();
  }
  Result<void> do_write(uint64_t offset, std::span<const std::byte> in, size_t& done) override {
    touch();
    std::memcpy(bytes_.data() + offset, in.data(), in.size());
    done = in.size();
    return success();
  }
  Result<uint64_t> do_read64(uint64_t offset) override {
    touch();
    return std::atomic_ref(*reinterpret_cast<uint64_t*>(bytes_.data() + offset)).load();
  }
  Result<void> do_write64(uint64_t offset, uint64_t value) override {
    touch();
    std::atomic_ref(*reinterpret_cast<uint64_t*>(bytes_.data() + offset)).store(value);
    return success();
  }
  Result<bool> do_compare_exchange64(uint64_t offset, uint64_t& expected,
                                     uint64_t desired) override {
    touch();
    return std::atomic_ref(*reinterpret_cast<uint64_t*>(bytes_.data() + offset))
        .compare_exchange_strong(expected, desired);
  }

  alignas(8) std::vector<std::byte> bytes_;
};

std::vector<std::byte> pattern(size_t size, int seed) {
  std::vector<std::byte> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = std::byte((i * 13 + seed) & 0xff);
  return bytes;
}

TEST(HpaSpaceSegments, PlacementAvoidsZeroOverlapAndKeepsGuardGaps) {
  HpaSpace space;
  const std::vector<uint64_t> sizes = {
      kPageSize, 3 * kPageSize, 2ull << 20, 5 * kPageSize, (2ull << 20) + kPageSize, kPageSize};
  for (uint64_t size : sizes) {
    auto base = space.add_segment(std::make_shared<VectorBacking>(size));
    ASSERT_TRUE(base.ok()) << base.error().why;
    EXPECT_NE(*base, 0u);
    EXPECT_EQ(*base % kPageSize, 0u);
    if (size >= (2ull << 20)) {
      EXPECT_EQ(*base % (2ull << 20), 0u);
    }
    EXPECT_GE(*base, HpaSpace::kSegmentWindowBase);
    EXPECT_FALSE(space.tables().contains(*base));
  }
  const auto segments = space.segments();
  ASSERT_EQ(segments.size(), sizes.size());
  for (size_t i = 1; i < segments.size(); ++i)
    EXPECT_GE(segments[i].base,
              segments[i - 1].base + segments[i - 1].size + HpaSpace::kSegmentGuard);
  EXPECT_EQ(space.stats().segments, sizes.size());
  EXPECT_EQ(space.stats().segment_bytes, std::accumulate(sizes.begin(), sizes.end(), uint64_t{0}));
}

TEST(HpaSpaceSegments, FreedRangesAreNotReusedAtOnce) {
  HpaSpace space;
  const Hpa first = *space.add_segment(std::make_shared<VectorBacking>(kPageSize));
  ASSERT_TRUE(space.remove_segment(first).ok());
  const Hpa second = *space.add_segment(std::make_shared<VectorBacking>(kPageSize));
  EXPECT_NE(second, first);
  EXPECT_FALSE(space.find_segment(first).has_value());
}

TEST(HpaSpaceSegments, AddAndRemoveErrors) {
  HpaSpace space;
  EXPECT_EQ(space.add_segment(nullptr).code(), EINVAL);
  EXPECT_EQ(space.add_segment(std::make_shared<VectorBacking>(100)).code(), EINVAL);
  const Hpa base = *space.add_segment(std::make_shared<VectorBacking>(2 * kPageSize));
  EXPECT_EQ(space.remove_segment(base + kPageSize).code(), ENOENT);
  EXPECT_TRUE(space.remove_segment(base).ok());
  EXPECT_EQ(space.remove_segment(base).code(), ENOENT);
}

TEST(HpaSpaceSegments, LookupByHpa) {
  HpaSpace space;
  auto backing = std::make_shared<VectorBacking>(3 * kPageSize);
  const Hpa base = *space.add_segment(backing);
  auto found = space.find_segment(base + 2 * kPageSize + 17);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->base, base);
  EXPECT_EQ(found->size, 3 * kPageSize);
  EXPECT_EQ(found->backing, backing);
  EXPECT_FALSE(space.find_segment(base + 3 * kPageSize).has_value());
  EXPECT_FALSE(space.find_segment(base - 1).has_value());
  EXPECT_FALSE(space.find_segment(0).has_value());
}

TEST(HpaSpaceDma, ReadAndWriteCrossPages) {
  HpaSpace space;
  const Hpa base = *space.add_segment(std::make_shared<VectorBacking>(4 * kPageSize));
  const auto data = pattern(10000, 3);
  size_t done = 0;
  ASSERT_TRUE(space.write(base + 100, data, &done).ok());
  EXPECT_EQ(done, data.size());
  std::vector<std::byte> back(data.size());
  ASSERT_TRUE(space.read(base + 100, back, &done).ok());
  EXPECT_EQ(done, data.size());
  EXPECT_EQ(back, data);
}

TEST(HpaSpaceDma, RunningOffASegmentReportsProgressAndTheFirstBadHpa) {
  HpaSpace space;
  const Hpa base = *space.add_segment(std::make_shared<VectorBacking>(2 * kPageSize));
  const Hpa end = base + 2 * kPageSize;
  std::vector<std::byte> buffer(300);
  size_t done = 999;
  auto result = space.read(end - 100, buffer, &done);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.code(), EFAULT);
  EXPECT_EQ(done, 100u);
  EXPECT_THAT(result.error().why, HasSubstr(fmt::format("{:#x}", end)));

  const auto data = pattern(300, 9);
  result = space.write(end - 100, data, &done);
  EXPECT_EQ(result.code(), EFAULT);
  EXPECT_EQ(done, 100u);
  std::vector<std::byte> written(100);
  ASSERT_TRUE(space.read(end - 100, written).ok());
  EXPECT_TRUE(std::equal(written.begin(), written.end(), data.begin()));

  // In the guard gap, before anything, on a table page: nothing done.
  EXPECT_EQ(space.read(end + 8, buffer, &done).code(), EFAULT);
  EXPECT_EQ(done, 0u);
  EXPECT_EQ(space.read(0, buffer, &done).code(), EFAULT);
  EXPECT_EQ(done, 0u);
  const Hpa table = *space.alloc_table();
  EXPECT_EQ(space.read(table, buffer, &done).code(), EFAULT);
  EXPECT_EQ(done, 0u);
  EXPECT_TRUE(space.read(end + 8, std::span<std::byte>()).ok());  // nothing asked
}

TEST(HpaSpaceDma, WordsInSegments) {
  HpaSpace space;
  const Hpa base = *space.add_segment(std::make_shared<VectorBacking>(kPageSize));
  ASSERT_TRUE(space.write64(base + 8, 0xabcdef).ok());
  EXPECT_EQ(*space.read64(base + 8), 0xabcdefu);
  uint64_t expected = 1;
  EXPECT_FALSE(*space.compare_exchange64(base + 8, expected, 2));
  EXPECT_EQ(expected, 0xabcdefu);
  EXPECT_TRUE(*space.compare_exchange64(base + 8, expected, 2));
  EXPECT_EQ(*space.read64(base + 8), 2u);
  EXPECT_EQ(space.read64(base + 4).code(), EINVAL);
  EXPECT_EQ(space.read64(base + kPageSize).code(), EFAULT);
}

TEST(HpaSpaceDma, ReadOnlySegmentsRefuseWrites) {
  HpaSpace space;
  const Hpa base = *space.add_segment(std::make_shared<VectorBacking>(kPageSize, false));
  const auto data = pattern(16, 1);
  size_t done = 99;
  EXPECT_EQ(space.write(base, data, &done).code(), EACCES);
  EXPECT_EQ(done, 0u);
  EXPECT_EQ(space.write64(base, 1).code(), EACCES);
  EXPECT_TRUE(space.read64(base).ok());
}

UniqueFd memfd_of_size(size_t size) {
  UniqueFd fd(memfd_create("hpa-space-test", MFD_CLOEXEC));
  EXPECT_TRUE(fd);
  EXPECT_EQ(ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  return fd;
}

// The HPA space is coherent with the memfd's creator both ways.
TEST(HpaSpaceDma, MappedSegmentIsCoherentWithTheFileOwner) {
  constexpr size_t kSize = 4 * kPageSize;
  UniqueFd fd = memfd_of_size(kSize);
  void* own = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(own, MAP_FAILED);
  auto* view = static_cast<std::byte*>(own);
  HpaSpace space;
  const Hpa base = *space.add_segment(
      *MappedFileBacking::create(fd.get(), 0, kSize, MapAccess::kReadWrite, "memfd"));

  const auto data = pattern(6000, 5);
  std::memcpy(view + 3000, data.data(), data.size());
  std::vector<std::byte> seen(data.size());
  ASSERT_TRUE(space.read(base + 3000, seen).ok());
  EXPECT_EQ(seen, data);

  const auto other = pattern(6000, 77);
  ASSERT_TRUE(space.write(base + 5000, other).ok());
  EXPECT_EQ(std::memcmp(view + 5000, other.data(), other.size()), 0);

  ASSERT_TRUE(space.write64(base + kPageSize, 0x1234).ok());
  EXPECT_EQ(std::atomic_ref(*reinterpret_cast<uint64_t*>(view + kPageSize)).load(), 0x1234u);
  uint64_t expected = 0x1234;
  EXPECT_TRUE(*space.compare_exchange64(base + kPageSize, expected, 0x1234 | (1 << 8)));
  EXPECT_EQ(*reinterpret_cast<uint64_t*>(view + kPageSize), 0x1334u);
  munmap(own, kSize);
}

// DMA from several threads while another adds and removes segments: results are
// either right or EFAULT, and no segment is touched once remove_segment returned.
TEST(HpaSpaceConcurrency, DmaWhileSegmentsComeAndGo) {
  HpaSpace space;
  constexpr size_t kSize = 4 * kPageSize;
  auto stable = std::make_shared<VectorBacking>(kSize);
  const Hpa stable_base = *space.add_segment(stable);
  std::vector<std::byte> expected_stable(kSize);
  ASSERT_TRUE(stable->read(0, expected_stable).ok());

  std::atomic<bool> stop{false};
  std::atomic<Hpa> churned_base{0};
  std::atomic<int> wrong{0};
  std::atomic<uint64_t> churn_hits{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t)
    readers.emplace_back([&] {
      std::vector<std::byte> buffer(2 * kPageSize);
      while (!stop.load()) {
        if (!space.read(stable_base + kPageSize, buffer).ok() ||
            std::memcmp(buffer.data(), expected_stable.data() + kPageSize, buffer.size()) != 0)
          wrong.fetch_add(1);
        const Hpa churned = churned_base.load();
        if (churned != 0) {
          size_t done = 0;
          auto result = space.read(churned + 100, buffer, &done);
          if (result.ok())
            churn_hits.fetch_add(1);
          else if (result.code() != EFAULT)
            wrong.fetch_add(1);
          (void)space.read64(churned + 8);
        }
      }
    });

  std::vector<std::shared_ptr<VectorBacking>> removed;
  for (int round = 0; round < 200; ++round) {
    auto backing = std::make_shared<VectorBacking>(kSize);
    const Hpa base = *space.add_segment(backing);
    churned_base.store(base);
    std::this_thread::yield();
    ASSERT_TRUE(space.remove_segment(base).ok());
    backing->removed.store(true);  // from here on, any touch is a bug
    removed.push_back(std::move(backing));
  }
  stop.store(true);
  for (auto& reader : readers) reader.join();
  EXPECT_EQ(wrong.load(), 0);
  int touched = 0;
  for (const auto& backing : removed) touched += backing->touched_after_removal.load();
  EXPECT_EQ(touched, 0);
  EXPECT_EQ(space.stats().segments, 1u);
}

}  // namespace
}  // namespace ioasid

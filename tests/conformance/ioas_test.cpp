// SPDX-License-Identifier: MIT
// ALLOC, FREE, MAP_DMA, MAP_FILE, UNMAP_DMA, IOVA_RANGES: kernel-managed IOASIDs and
// the rows of UAPI.md, with client memory from memfds and private anonymous mappings.
#include "harness.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace conf {
namespace {

constexpr uint64_t k4K = 4096, k2M = 2ull << 20, k1G = 1ull << 30;

ioasid_map_dma map_dma_request(uint32_t ioasid, uint64_t va, uint64_t length, uint32_t flags) {
  return {.flags = flags, .ioasid = ioasid, .user_va = va, .length = length};
}

ioasid_map_file map_file_request(uint32_t ioasid, int fd, uint64_t offset, uint64_t length, uint32_t flags) {
  return {.flags = flags, .ioasid = ioasid, .fd = fd, .offset = offset, .length = length};
}

constexpr uint32_t kRW = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE;

TEST(IoasAlloc, KernelManagedOnlyAndFree) {
  Node node;
  ASSERT_TRUE(node.ok());
  const uint32_t first = alloc_ioas(node);
  const uint32_t second = alloc_ioas(node);
  EXPECT_NE(first, second);
  ioasid_alloc with_parent{.parent = first};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_ALLOC, &with_parent), Err(EINVAL));
  ioasid_alloc unknown{.flags = 1u << 5};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_ALLOC, &unknown), Err(EOPNOTSUPP));
  ioasid_alloc reserved{.__reserved = 1};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_ALLOC, &reserved), Err(EOPNOTSUPP));

  ioasid_free free_reserved{.ioasid = first, .__reserved = 1};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_FREE, &free_reserved), Err(EOPNOTSUPP));
  ioasid_free free{.ioasid = first};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_FREE, &free), kOk);
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_FREE, &free), Err(ENOENT));
  EXPECT_NE(alloc_ioas(node), first);  // ids are not reused
}

TEST(IoasAlloc, AnotherFilesIoasidIsEnoent) {
  Node a, b;
  const uint32_t ioasid = alloc_ioas(a);
  ioasid_free free{.ioasid = ioasid + 100};
  EXPECT_EQ(ioctl_errno(b.fd(), IOASID_FREE, &free), Err(ENOENT));
  Memfd memory(k4K, true);
  auto map = map_dma_request(ioasid + 100, memory.va, k4K, kRW);
  EXPECT_EQ(ioctl_errno(b.fd(), IOASID_MAP_DMA, &map), Err(ENOENT));
}

TEST(MapDma, SharedAndPrivateMemoryGetAlignedIovas) {
  Node node;
  const uint32_t ioasid = alloc_ioas(node);
  Memfd shared(4 * k2M, true);
  auto map = map_dma_request(ioasid, shared.va, shared.size, kRW);
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_MAP_DMA, &map), kOk);
  EXPECT_NE(map.iova, 0u);
  EXPECT_EQ(map.iova % k4K, 0u);

  void* anonymous = mmap(nullptr, 16 * k4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(anonymous, MAP_FAILED);
  auto private_map = map_dma_request(ioasid, reinterpret_cast<uint64_t>(anonymous), 16 * k4K, IOASID_MAP_READABLE);
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_MAP_DMA, &private_map), kOk);
  EXPECT_NE(private_map.iova, map.iova);
  munmap(anonymous, 16 * k4K);

  auto fixed = map_dma_request(ioasid, shared.va, k4K, kRW | IOASID_MAP_FIXED_IOVA);
  fixed.iova = 0x7000000000;
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_MAP_DMA, &fixed), kOk);
  EXPECT_EQ(fixed.iova, 0x7000000000u);
}

TEST(MapDma, ErrorRowsChangeNothing) {
  Node node;
  const uint32_t ioasid = alloc_ioas(node);
  Memfd memory(4 * k4K, true);
  auto existing = map_dma_request(ioasid, memory.va, k4K, kRW | IOASID_MAP_FIXED_IOVA);
  existing.iova = 0x100000;
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_MAP_DMA, &existing), kOk);

  auto expect = [&](ioasid_map_dma request, Errno err, const char* what) {
    EXPECT_EQ(ioctl_errno(node.fd(), IOASID_MAP_DMA, &request), err) << what;
  };
  expect(map_dma_request(ioasid, memory.va, k4K, 0), Err(EINVAL), "neither READABLE nor WRITEABLE");
  expect(map_dma_request(ioasid, memory.va, 0, kRW), Err(EINVAL), "length 0");
  expect(map_dma_request(ioasid, memory.va + 1, k4K, kRW), Err(EINVAL), "user_va misaligned");
  expect(map_dma_request(ioasid, memory.va, k4K + 1, kRW), Err(EINVAL), "length misaligned");
  expect(map_dma_request(ioasid, memory.va, k4K, kRW | (1u << 9)), Err(EOPNOTSUPP), "unknown flag");
  expect(map_dma_request(ioasid, ~0ull - k4K + 1, 2 * k4K, kRW), Err(EOVERFLOW), "user_va + length wraps");
  expect(map_dma_request(ioasid + 50, memory.va, k4K, kRW), Err(ENOENT), "no such IOASID");
  auto overlap = map_dma_request(ioasid, memory.va, 2 * k4K, kRW | IOASID_MAP_FIXED_IOVA);
  overlap.iova = 0x100000 - k4K;
  expect(overlap, Err(EEXIST), "fixed IOVA overlapping an area");
  auto misaligned_iova = map_dma_request(ioasid, memory.va, k4K, kRW | IOASID_MAP_FIXED_IOVA);
  misaligned_iova.iova = 0x200800;
  expect(misaligned_iova, Err(EINVAL), "fixed IOVA misaligned");
  auto msi = map_dma_request(ioasid, memory.va, k4K, kRW | IOASID_MAP_FIXED_IOVA);
  msi.iova = 0xfee00000;
  expect(msi, Err(EINVAL), "fixed IOVA in the reserved MSI window");
  auto beyond = map_dma_request(ioasid, memory.va, k4K, kRW | IOASID_MAP_FIXED_IOVA);
  beyond.iova = 1ull << 57;
  expect(beyond, Err(EINVAL), "fixed IOVA beyond the address width");
  auto wraps = map_dma_request(ioasid, memory.va, 2 * k4K, kRW | IOASID_MAP_FIXED_IOVA);
  wraps.iova = ~0ull - k4K + 1;
  expect(wraps, Err(EOVERFLOW), "fixed IOVA + length wraps");
  void* hole = mmap(nullptr, 3 * k4K, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  munmap(static_cast<char*>(hole) + k4K, k4K);  // a hole in the middle
  expect(map_dma_request(ioasid, reinterpret_cast<uint64_t>(hole) + k4K, k4K, kRW), Err(EFAULT), "VA not mapped");
  munmap(hole, 3 * k4K);

  // Nothing changed: the one area is still the only one, and unmapping it returns its size.
  ioasid_unmap_dma all{.ioasid = ioasid, .iova = 0, .length = ~0ull};
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_UNMAP_DMA, &all), kOk);
  EXPECT_EQ(all.length, k4K);
}

TEST(MapFile, MemfdRowsAndZeroCopyLength) {
  Node node;
  const uint32_t ioasid = alloc_ioas(node);
  Memfd file(4 * k2M);
  auto map = map_file_request(ioasid, file.fd, k2M, 2 * k2M, IOASID_MAP_READABLE);
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_MAP_FILE, &map), kOk);
  EXPECT_NE(map.iova, 0u);
  auto expect = [&](ioasid_map_file request, Errno err, const char* what) {
    EXPECT_EQ(ioctl_errno(node.fd(), IOASID_MAP_FILE, &request), err) << what;
  };
  expect(map_file_request(ioasid, 987654, 0, k4K, kRW), Err(EBADF), "no such fd");
  expect(map_file_request(ioasid, file.fd, 3 * k2M, 2 * k2M, kRW), Err(EINVAL), "beyond the end of the file");
  expect(map_file_request(ioasid, file.fd, 100, k4K, kRW), Err(EINVAL), "offset misaligned");
  auto reserved = map_file_request(ioasid, file.fd, 0, k4K, kRW);
  reserved.__reserved = 1;
  expect(reserved, Err(EOPNOTSUPP), "reserved");
  ioasid_unmap_dma all{.ioasid = ioasid, .iova = 0, .length = ~0ull};
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_UNMAP_DMA, &all), kOk);
  EXPECT_EQ(all.length, 2 * k2M);
}

TEST(UnmapDma, WholeAreasOnly) {
  Node node;
  const uint32_t ioasid = alloc_ioas(node);
  Memfd file(4 * k4K);
  for (uint64_t i = 0; i < 2; ++i) {
    auto map = map_file_request(ioasid, file.fd, 0, 2 * k4K, kRW | IOASID_MAP_FIXED_IOVA);
    map.iova = 0x1000000 + i * 0x100000;
    ASSERT_EQ(ioctl_errno(node.fd(), IOASID_MAP_FILE, &map), kOk);
  }
  auto expect = [&](uint64_t iova, uint64_t length, Errno err, const char* what) {
    ioasid_unmap_dma unmap{.ioasid = ioasid, .iova = iova, .length = length};
    EXPECT_EQ(ioctl_errno(node.fd(), IOASID_UNMAP_DMA, &unmap), err) << what;
    return unmap.length;
  };
  expect(0x1000000, k4K, Err(ENOENT), "an area only partly inside");
  expect(0x2000000, k4K, Err(ENOENT), "nothing inside");
  ioasid_unmap_dma flagged{.ioasid = ioasid, .flags = 1, .iova = 0, .length = ~0ull};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_UNMAP_DMA, &flagged), Err(EOPNOTSUPP));
  EXPECT_EQ(expect(0x1000000, 0x100000, kOk, "the first area exactly"), 2 * k4K);
  EXPECT_EQ(expect(0, ~0ull, kOk, "everything"), 2 * k4K);
  EXPECT_EQ(expect(0, ~0ull, kOk, "everything, when empty"), 0u);
}

TEST(IovaRanges, AllowedRangesWithEmsgsize) {
  Node node;
  const uint32_t ioasid = alloc_ioas(node);
  ioasid_iova_ranges query{.ioasid = ioasid, .num_ranges = 0};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_IOVA_RANGES, &query), Err(EMSGSIZE));
  ASSERT_EQ(query.num_ranges, 2u);
  EXPECT_EQ(query.out_alignment, k4K) << "written with the needed count";
  ioasid_iova_range ranges[2]{};
  query.ranges_uptr = reinterpret_cast<uint64_t>(ranges);
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_IOVA_RANGES, &query), kOk);
  EXPECT_EQ(query.out_alignment, k4K);
  const uint64_t last = (1ull << get_info(node.fd()).addr_width) - 1;
  EXPECT_EQ(ranges[0].start, 0u);
  EXPECT_EQ(ranges[0].last, 0xfedfffffu);
  EXPECT_EQ(ranges[1].start, 0xfef00000u);
  EXPECT_EQ(ranges[1].last, last);
  query.ranges_uptr = 8;  // not mapped
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_IOVA_RANGES, &query), Err(EFAULT));
  ioasid_iova_ranges unknown{.ioasid = ioasid + 9, .num_ranges = 2};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_IOVA_RANGES, &unknown), Err(ENOENT));
}

// The default pinned limit is 1 GiB per user: one page more is ENOMEM and maps
// nothing; closing a file gives its pinned pages back.
TEST(Pinning, LimitIsEnomemAndCloseReleasesIt) {
  Memfd file(k1G + k4K);
  {
    Node node;
    const uint32_t ioasid = alloc_ioas(node);
    auto too_much = map_file_request(ioasid, file.fd, 0, k1G + k4K, IOASID_MAP_READABLE);
    Errno err;
    // Other tests' files may still be releasing their pins: wait for ours to be all.
    eventually([&] { return (err = ioctl_errno(node.fd(), IOASID_MAP_FILE, &too_much)) == Err(ENOMEM); },
               kReleaseTimeout);
    EXPECT_EQ(err, Err(ENOMEM));
    auto everything = map_file_request(ioasid, file.fd, 0, k1G, IOASID_MAP_READABLE);
    eventually([&] { return (err = ioctl_errno(node.fd(), IOASID_MAP_FILE, &everything)) == kOk; }, kReleaseTimeout);
    ASSERT_EQ(err, kOk) << "a full 1 GiB must fit the limit";
    Node other;
    const uint32_t other_ioasid = alloc_ioas(other);
    auto one_more = map_file_request(other_ioasid, file.fd, 0, k4K, IOASID_MAP_READABLE);
    EXPECT_EQ(ioctl_errno(other.fd(), IOASID_MAP_FILE, &one_more), Err(ENOMEM)) << "the limit is per user";
  }
  Node after;
  const uint32_t ioasid = alloc_ioas(after);
  auto everything = map_file_request(ioasid, file.fd, 0, k1G, IOASID_MAP_READABLE);
  EXPECT_TRUE(eventually([&] { return ioctl_errno(after.fd(), IOASID_MAP_FILE, &everything) == kOk; },
                         kReleaseTimeout))
      << "closing the file did not give its pinned pages back";
}

}  // namespace
}  // namespace conf

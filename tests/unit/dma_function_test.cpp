// SPDX-License-Identifier: MIT
// The `dma` device's engine: transfers between a client buffer (this process, through
// ProcessMemory as the daemon reaches its clients) and memory mapped in an IoPageTable,
// translated through the IOMMU, stopping at the first fault.
#include "devices/dma_function.h"
#include "iommu/io_pagetable.h"
#include "memory/client_memory.h"
#include "memory/remote_backing.h"
#include "routed_table_test.h"

#include <gtest/gtest.h>
#include <linux/ioasid.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>

namespace ioasid::devices {
namespace {

using iommu::IoPageTable;
using iommu::Iommu;
using iommu::Iotlb;
using iommu::PasidTable;
using iommu::test_support::k2M;
using iommu::test_support::k4K;
using iommu::test_support::MemfdMemory;
using iommu::test_support::pattern;
using iommu::test_support::second_level_entry;

constexpr uint32_t kIoasid = 17;
constexpr uint32_t kPasid = 3;
constexpr uint64_t kIova = 0x20'0000'0000;

std::vector<std::byte> zeros(size_t size) { return std::vector<std::byte>(size); }

class DmaFunctionTest : public iommu::test_support::RoutedTableTest<4 * k2M, kPasid, kIoasid> {
 protected:
  // Moves data.size() bytes between `data` (the client's buffer) and the IOVA range.
  Result<DmaOutcome> dma(uint64_t iova, bool to_memory, std::span<std::byte> data, Iotlb* device_tlb = nullptr,
                         uint32_t pasid = kPasid) {
    return run_dma(iommu_, pasids_, device_tlb,
                   {.pasid = pasid,
                    .iova = iova,
                    .length = data.size(),
                    .to_memory = to_memory,
                    .buffer_memory = &client_,
                    .buffer_address = reinterpret_cast<uint64_t>(data.data())});
  }

  ProcessMemory client_{getpid()};
};

// Two areas at adjacent IOVAs, from distant parts of the memfd (and so, with the HPA
// space's guard gaps, from distant HPAs): one transfer crosses from one to the other.
TEST_F(DmaFunctionTest, ATransferAcrossAdjacentAreasIsByteExactBothWays) {
  ASSERT_TRUE(map(0, 3 * k4K, kIova).ok());
  ASSERT_TRUE(map(k2M + 5 * k4K, 2 * k4K, kIova + 3 * k4K).ok());
  const uint64_t start = kIova + 0x800;
  const size_t size = 5 * k4K - 0x800 - 0x100;  // from inside the first area to inside the second
  auto data = pattern(size, 4);

  auto written = dma(start, /*to_memory=*/true, data);
  ASSERT_TRUE(written.ok()) << written.error().why;
  EXPECT_EQ(written->bytes_done, size);
  EXPECT_FALSE(written->fault);
  const size_t first_part = 3 * k4K - 0x800;
  const std::vector<std::byte> expect_first(data.begin(), data.begin() + first_part);
  const std::vector<std::byte> expect_second(data.begin() + first_part, data.end());
  EXPECT_EQ(memory_.read(0x800, first_part), expect_first);
  EXPECT_EQ(memory_.read(k2M + 5 * k4K, size - first_part), expect_second);
  // Nothing around the transfer was touched.
  EXPECT_EQ(memory_.read(0, 0x800), zeros(0x800));
  EXPECT_EQ(memory_.read(k2M + 7 * k4K - 0x100, 0x100), zeros(0x100));
  EXPECT_EQ(memory_.read(3 * k4K, k4K), zeros(k4K));

  // Back again, into a buffer, with a device-TLB this time.
  Iotlb device(64);
  auto registration = iommu_.register_device_tlb(device);
  for (int round = 0; round < 2; ++round) {  // the second round from the device-TLB
    std::vector<std::byte> back(size);
    auto read = dma(start, /*to_memory=*/false, back, &device);
    ASSERT_TRUE(read.ok()) << read.error().why;
    EXPECT_EQ(read->bytes_done, size);
    EXPECT_FALSE(read->fault);
    EXPECT_EQ(back, data);
  }
  EXPECT_EQ(device.stats().hits, 5u);  // five pages, each translated once per round
}

TEST_F(DmaFunctionTest, ATransferOffTheEndOfAMappingStopsAtTheFirstUnmappedByte) {
  ASSERT_TRUE(map(0, 2 * k4K, kIova).ok());
  const uint64_t start = kIova + k4K + 0x100;
  const size_t mapped_part = k4K - 0x100;
  for (const bool to_memory : {true, false}) {
    SCOPED_TRACE(to_memory ? "to memory" : "from memory");
    auto data = pattern(3 * k4K, to_memory ? 5 : 6);
    if (!to_memory) {
      ASSERT_TRUE(memory_.write(k4K + 0x100, std::span(data).first(mapped_part)));
    }
    std::vector<std::byte> buffer = to_memory ? data : zeros(data.size());
    auto outcome = dma(start, to_memory, buffer);
    ASSERT_TRUE(outcome.ok()) << outcome.error().why;
    EXPECT_EQ(outcome->bytes_done, mapped_part);
    ASSERT_TRUE(outcome->fault);
    EXPECT_EQ(outcome->fault->address, kIova + 2 * k4K);
    EXPECT_EQ(outcome->fault->reason, static_cast<uint32_t>(IOASID_FAULT_REASON_ACCESS));
    EXPECT_EQ(outcome->fault->ioasid, kIoasid);
    EXPECT_TRUE(outcome->fault->fetch_address);
    const std::vector<std::byte> leading(data.begin(), data.begin() + mapped_part);
    if (to_memory) {
      EXPECT_EQ(memory_.read(k4K + 0x100, mapped_part), leading);
    } else {
      EXPECT_EQ(std::vector<std::byte>(buffer.begin(), buffer.begin() + mapped_part), leading);
      EXPECT_TRUE(std::all_of(buffer.begin() + mapped_part, buffer.end(), [](std::byte b) { return b == std::byte{}; }))
          << "bytes past the fault reached the buffer";
    }
  }
}

TEST_F(DmaFunctionTest, NoRouteIsPasidInvalidWithNothingDone) {
  ASSERT_TRUE(map(0, k4K, kIova).ok());
  auto data = pattern(64, 7);
  auto outcome = dma(kIova, /*to_memory=*/true, data, nullptr, kPasid + 1);
  ASSERT_TRUE(outcome.ok()) << outcome.error().why;
  EXPECT_EQ(outcome->bytes_done, 0u);
  ASSERT_TRUE(outcome->fault);
  EXPECT_EQ(outcome->fault->reason, static_cast<uint32_t>(IOASID_FAULT_REASON_PASID_INVALID));
  EXPECT_EQ(outcome->fault->address, kIova);
  EXPECT_EQ(outcome->fault->ioasid, 0u);
  EXPECT_EQ(memory_.read(0, 64), zeros(64));
}

TEST_F(DmaFunctionTest, AWriteIntoAReadOnlyAreaIsAPermissionFaultButAReadWorks) {
  ASSERT_TRUE(map(0, k4K, kIova, /*readable=*/true, /*writeable=*/false).ok());
  const auto client = pattern(128, 8);
  ASSERT_TRUE(memory_.write(0x40, client));
  std::vector<std::byte> back(client.size());
  auto read = dma(kIova + 0x40, /*to_memory=*/false, back);
  ASSERT_TRUE(read.ok()) << read.error().why;
  EXPECT_EQ(read->bytes_done, client.size());
  EXPECT_FALSE(read->fault);
  EXPECT_EQ(back, client);

  auto data = pattern(128, 9);
  auto write = dma(kIova + 0x40, /*to_memory=*/true, data);
  ASSERT_TRUE(write.ok()) << write.error().why;
  EXPECT_EQ(write->bytes_done, 0u);
  ASSERT_TRUE(write->fault);
  EXPECT_EQ(write->fault->reason, static_cast<uint32_t>(IOASID_FAULT_REASON_PERMISSION));
  EXPECT_EQ(write->fault->address, kIova + 0x40);
  EXPECT_EQ(memory_.read(0x40, client.size()), client);  // unchanged
}

TEST_F(DmaFunctionTest, AnEmptyTransferDoesNothing) {
  auto outcome = dma(kIova, /*to_memory=*/true, {}, nullptr, kPasid + 1);
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(outcome->bytes_done, 0u);
  EXPECT_FALSE(outcome->fault);
}

// Private memory reached through /proc/<pid>/mem is not mapped in the daemon: the
// transfer goes run by run through the staging buffer, still byte exact, also when it
// crosses into a memfd area.
TEST_F(DmaFunctionTest, MemoryBehindProcMemGoesThroughStaging) {
  void* mapped = mmap(nullptr, 2 * k4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mapped, MAP_FAILED);
  auto* private_memory = static_cast<std::byte*>(mapped);
  auto backing = RemoteBacking::open(getpid(), reinterpret_cast<uint64_t>(mapped), 2 * k4K, MapAccess::kReadWrite);
  ASSERT_TRUE(backing.ok()) << backing.error().why;
  auto charge = iommu_.pins().charge(getuid(), 2);
  ASSERT_TRUE(charge.ok());
  ASSERT_TRUE(table_->map({.backing = std::move(*backing), .charge = std::move(*charge), .iova = kIova,
                           .readable = true, .writeable = true})
                  .ok());
  ASSERT_TRUE(map(0, k4K, kIova + 2 * k4K).ok());

  const size_t size = 2 * k4K + 0x300 - 0x10;
  auto data = pattern(size, 10);
  auto written = dma(kIova + 0x10, /*to_memory=*/true, data);
  ASSERT_TRUE(written.ok()) << written.error().why;
  EXPECT_EQ(written->bytes_done, size);
  EXPECT_FALSE(written->fault);
  EXPECT_EQ(std::vector<std::byte>(private_memory + 0x10, private_memory + 2 * k4K),
            std::vector<std::byte>(data.begin(), data.begin() + (2 * k4K - 0x10)));
  EXPECT_EQ(memory_.read(0, 0x300), std::vector<std::byte>(data.begin() + (2 * k4K - 0x10), data.end()));

  std::memset(private_memory + k4K, 0x5a, 16);  // the client changes its memory
  std::copy_n(private_memory + k4K, 16, data.begin() + (k4K - 0x10));
  std::vector<std::byte> back(size);
  auto read = dma(kIova + 0x10, /*to_memory=*/false, back);
  ASSERT_TRUE(read.ok()) << read.error().why;
  EXPECT_EQ(read->bytes_done, size);
  EXPECT_EQ(back, data);

  ASSERT_TRUE(table_->unmap(0, ~0ull).ok());
  munmap(mapped, 2 * k4K);
}

// A client buffer that ends early is the ioctl's error (EFAULT), not a device fault.
TEST_F(DmaFunctionTest, AClientBufferEndingEarlyIsAnError) {
  ASSERT_TRUE(map(0, 2 * k4K, kIova).ok());
  void* mapped = mmap(nullptr, 2 * k4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mapped, MAP_FAILED);
  auto* buffer = static_cast<std::byte*>(mapped);
  std::memset(buffer, 0x11, k4K);
  ASSERT_EQ(mprotect(buffer + k4K, k4K, PROT_NONE), 0);
  for (const bool to_memory : {true, false}) {
    SCOPED_TRACE(to_memory ? "to memory" : "from memory");
    auto outcome = dma(kIova, to_memory, std::span(buffer, 2 * k4K));
    ASSERT_FALSE(outcome.ok());
    EXPECT_EQ(outcome.code(), EFAULT);
  }
  munmap(mapped, 2 * k4K);
}

}  // namespace
}  // namespace ioasid::devices

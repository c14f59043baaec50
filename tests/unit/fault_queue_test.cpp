// SPDX-License-Identifier: MIT
#include "iommu/fault_queue.h"

#include <gtest/gtest.h>

#include <vector>

namespace ioasid::iommu {
namespace {

ioasid_fault fault_at(uint64_t addr) {
  ioasid_fault fault{};
  fault.type = IOASID_FAULT_DMA_UNRECOV;
  fault.addr = addr;
  return fault;
}

TEST(FaultQueue, DeliversInOrderAndCallsTheListener) {
  FaultQueue queue(8);
  int arrivals = 0;
  queue.set_listener([&] { ++arrivals; });
  queue.push(fault_at(1));
  queue.push(fault_at(2));
  EXPECT_EQ(arrivals, 2);
  std::vector<ioasid_fault> out(4);
  ASSERT_EQ(queue.pop(out), 2u);
  EXPECT_EQ(out[0].addr, 1u);
  EXPECT_EQ(out[1].addr, 2u);
  EXPECT_EQ(queue.size(), 0u);
}

TEST(FaultQueue, OverflowKeepsOneLostRecordAfterTheSurvivors) {
  FaultQueue queue(4);
  for (uint64_t i = 0; i < 10; ++i) queue.push(fault_at(i));
  EXPECT_EQ(queue.size(), 4u);  // three records and the LOST marker
  std::vector<ioasid_fault> out(8);
  ASSERT_EQ(queue.pop(out), 4u);
  EXPECT_EQ(out[2].addr, 2u);
  EXPECT_EQ(out[3].type, static_cast<uint32_t>(IOASID_FAULT_LOST));
  queue.push(fault_at(99));  // room again after the reader caught up
  ASSERT_EQ(queue.pop(out), 1u);
  EXPECT_EQ(out[0].addr, 99u);
}

// push() says whether the record was queued (a page request whose record was dropped
// must not leave its group open); enqueue() queues without the listener, notify() runs it.
TEST(FaultQueue, PushSaysWhetherTheRecordWasQueued) {
  FaultQueue queue(3);
  int arrivals = 0;
  queue.set_listener([&] { ++arrivals; });
  EXPECT_TRUE(queue.push(fault_at(1)));
  EXPECT_TRUE(queue.enqueue(fault_at(2)));
  EXPECT_EQ(arrivals, 1) << "enqueue runs no listener";
  queue.notify();
  EXPECT_EQ(arrivals, 2);
  EXPECT_FALSE(queue.push(fault_at(3))) << "the last slot is the LOST record's";
  EXPECT_FALSE(queue.enqueue(fault_at(4)));
  std::vector<ioasid_fault> out(4);
  ASSERT_EQ(queue.pop(out), 3u);
  EXPECT_EQ(out[2].type, static_cast<uint32_t>(IOASID_FAULT_LOST));
  EXPECT_TRUE(queue.push(fault_at(5))) << "room again once LOST was read";
}

TEST(FaultQueue, PartialReadsLeaveTheRest) {
  FaultQueue queue(8);
  for (uint64_t i = 0; i < 3; ++i) queue.push(fault_at(i));
  std::vector<ioasid_fault> one(1);
  ASSERT_EQ(queue.pop(one), 1u);
  EXPECT_EQ(one[0].addr, 0u);
  EXPECT_EQ(queue.size(), 2u);
}

}  // namespace
}  // namespace ioasid::iommu

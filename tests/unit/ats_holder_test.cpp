// SPDX-License-Identifier: MIT
#include "iommu/ats.h"
#include "iommu/iommu.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

namespace ioasid::iommu {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t k4K = 4096;
constexpr uint16_t kDomain = 7;
constexpr uint32_t kDev = 3;

// A holder whose requests land in `sent` and whose failures in `failed`.
struct Recorder {
  std::vector<AtsInvalidationRequest> sent;
  std::vector<uint32_t> failed;
  bool queue_full = false;
  std::shared_ptr<AtsHolder> holder = std::make_shared<AtsHolder>(
      [this](const AtsInvalidationRequest& r) {
        if (queue_full) return false;
        sent.push_back(r);
        return true;
      },
      [this](uint32_t dev, const std::string&) { failed.push_back(dev); });

  void hand_out(uint32_t dev, uint16_t domain, uint32_t pasid, uint64_t iova, uint64_t length) {
    auto r = holder->reserve(dev, domain, pasid, iova, length);
    ASSERT_TRUE(r.ok());
    holder->keep(*r, length);
  }
};

TEST(AtsHolder, AFlushSendsOneRequestPerDeviceAndPasidCoveringWhatOverlapped) {
  Recorder r;
  r.hand_out(kDev, kDomain, 5, 0x10000, k4K);
  r.hand_out(kDev, kDomain, 5, 0x11000, k4K);  // merges with the first
  r.hand_out(kDev, kDomain, 6, 0x10000, k4K);
  r.hand_out(kDev + 1, kDomain, 5, 0x40000, k4K);
  r.hand_out(kDev, kDomain + 1, 5, 0x10000, k4K);  // another domain
  EXPECT_EQ(r.holder->ranges(), 4u);

  r.holder->invalidate(kDomain, 5, 0x11800, 0x100000);
  ASSERT_EQ(r.sent.size(), 2u);
  EXPECT_EQ(r.sent[0].dev_id, kDev);
  EXPECT_EQ(r.sent[0].pasid, 5u);
  EXPECT_EQ(r.sent[0].iova, 0x11800u) << "the overlap, not the whole flush";
  EXPECT_EQ(r.sent[0].length, 0x800u);
  EXPECT_EQ(r.sent[1].dev_id, kDev + 1);
  EXPECT_NE(r.sent[0].itag, r.sent[1].itag);
  EXPECT_EQ(r.holder->outstanding(), 2u);

  // What was invalidated is gone; the rest stays.
  r.sent.clear();
  r.holder->invalidate(kDomain, 5, 0, ~0ull);
  ASSERT_EQ(r.sent.size(), 1u);
  EXPECT_EQ(r.sent[0].iova, 0x10000u);
  EXPECT_EQ(r.sent[0].length, 0x1800u);
  r.sent.clear();
  r.holder->invalidate(kDomain, std::nullopt, 0, ~0ull);  // every PASID of the domain
  ASSERT_EQ(r.sent.size(), 1u);
  EXPECT_EQ(r.sent[0].pasid, 6u);
  r.sent.clear();
  r.holder->invalidate(kDomain, std::nullopt, 0, ~0ull);
  EXPECT_TRUE(r.sent.empty()) << "nothing held, nothing asked";
}

TEST(AtsHolder, AWalkInProgressIsInvalidatedToo) {
  Recorder r;
  auto walking = r.holder->reserve(kDev, kDomain, 0, 0x2000, k4K);
  ASSERT_TRUE(walking.ok());
  r.holder->invalidate(kDomain, 0, 0, ~0ull);
  ASSERT_EQ(r.sent.size(), 1u) << "the walk may have read what the flush changed";
  EXPECT_EQ(r.sent[0].iova, 0x2000u);
  r.holder->keep(*walking, k4K);
  EXPECT_EQ(r.holder->ranges(), 1u);
  // Handed nothing: nothing recorded.
  auto none = r.holder->reserve(kDev, kDomain, 0, 0x9000, k4K);
  r.holder->keep(*none, 0);
  EXPECT_EQ(r.holder->ranges(), 1u);
}

TEST(AtsHolder, AcknowledgedInTimeTheWaitEndsAndTheDeviceStays) {
  Recorder r;
  r.hand_out(kDev, kDomain, 0, 0, k4K);
  std::thread model;
  {
    AtsWaitScope scope(5s);
    r.holder->invalidate(kDomain, 0, 0, k4K);
    ASSERT_EQ(r.sent.size(), 1u);
    EXPECT_TRUE(scope.waiting());
    const uint32_t itag = r.sent[0].itag;
    model = std::thread([&r, itag] {
      std::this_thread::sleep_for(20ms);
      EXPECT_TRUE(r.holder->acknowledge(kDev, itag).ok());
    });
    const auto start = std::chrono::steady_clock::now();
    scope.complete();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  }
  model.join();
  EXPECT_TRUE(r.failed.empty());
  EXPECT_FALSE(r.holder->failed(kDev));
  EXPECT_EQ(r.holder->acknowledge(kDev, r.sent[0].itag).code(), EINVAL) << "acknowledged already";
  EXPECT_EQ(r.holder->acknowledge(kDev + 1, 999).code(), EINVAL) << "never sent";
}

TEST(AtsHolder, UnacknowledgedTheDeviceFailsUntilForgotten) {
  Recorder r;
  r.hand_out(kDev, kDomain, 0, 0, k4K);
  r.hand_out(kDev + 1, kDomain, 0, 0, k4K);
  {
    AtsWaitScope scope(30ms);
    r.holder->invalidate(kDomain, 0, 0, k4K);
    ASSERT_EQ(r.sent.size(), 2u);
    EXPECT_TRUE(r.holder->acknowledge(kDev + 1, r.sent[1].itag).ok());
  }
  EXPECT_EQ(r.failed, std::vector<uint32_t>{kDev});
  EXPECT_TRUE(r.holder->failed(kDev));
  EXPECT_FALSE(r.holder->failed(kDev + 1));
  EXPECT_EQ(r.holder->reserve(kDev, kDomain, 0, 0, k4K).code(), EIO);
  EXPECT_EQ(r.holder->acknowledge(kDev, r.sent[0].itag).code(), EINVAL) << "timed out";
  r.holder->forget(kDev);
  EXPECT_TRUE(r.holder->reserve(kDev, kDomain, 0, 0, k4K).ok());
}

TEST(AtsHolder, ARequestTheQueueCannotTakeFailsTheDeviceAtOnce) {
  Recorder r;
  r.hand_out(kDev, kDomain, 0, 0, k4K);
  r.queue_full = true;
  AtsWaitScope scope(10s);
  r.holder->invalidate(kDomain, 0, 0, k4K);
  EXPECT_FALSE(scope.waiting());
  EXPECT_EQ(r.failed, std::vector<uint32_t>{kDev});
  EXPECT_EQ(r.holder->outstanding(), 0u);
}

TEST(AtsHolder, UnbindForgetsRecordsButStillOwesItsAcknowledgements) {
  Recorder r;
  r.hand_out(kDev, kDomain, 0, 0, k4K);
  r.holder->invalidate(kDomain, 0, 0, k4K);
  r.hand_out(kDev, kDomain, 0, 0x8000, k4K);
  r.holder->forget(kDev);
  EXPECT_EQ(r.holder->ranges(), 0u);
  EXPECT_EQ(r.holder->outstanding(), 1u);
  EXPECT_TRUE(r.holder->acknowledge(kDev, r.sent[0].itag).ok());
}

TEST(AtsHolder, PastTheBoundAKeysRangesCollapseAndStillCoverEverything) {
  Recorder r;
  for (uint64_t i = 0; i < AtsHolder::kMaxRanges + 10; ++i) r.hand_out(kDev, kDomain, 0, i * 2 * k4K, k4K);
  EXPECT_LE(r.holder->ranges(), AtsHolder::kMaxRanges);
  const uint64_t last = (AtsHolder::kMaxRanges + 9) * 2 * k4K;
  r.holder->invalidate(kDomain, 0, last, k4K);
  ASSERT_EQ(r.sent.size(), 1u) << "the last page handed out is still known";
  r.sent.clear();
  r.holder->invalidate(kDomain, 0, 0, k4K);
  EXPECT_EQ(r.sent.size(), 1u) << "so is the first";
}

// The IOMMU's own flushes reach a registered holder, and stop when it unregisters.
TEST(AtsHolder, IommuFlushesReachARegisteredHolder) {
  Iommu iommu;
  Recorder r;
  r.hand_out(kDev, kDomain, 4, 0x1000, k4K);
  {
    auto registration = iommu.register_ats_holder(*r.holder);
    iommu.flush_range(kDomain, 0x1000, 1);
    ASSERT_EQ(r.sent.size(), 1u);
    r.hand_out(kDev, kDomain, 4, 0x1000, k4K);
    iommu.flush_pasid(kDomain, 3);
    EXPECT_EQ(r.sent.size(), 1u) << "another PASID";
    iommu.flush_pasid(kDomain, 4);
    EXPECT_EQ(r.sent.size(), 2u);
    r.hand_out(kDev, kDomain, 4, 0x1000, k4K);
    iommu.flush_domain(kDomain);
    EXPECT_EQ(r.sent.size(), 3u);
    r.hand_out(kDev, kDomain, 4, 0x1000, k4K);
  }
  iommu.flush_domain(kDomain);
  EXPECT_EQ(r.sent.size(), 3u);
}

}  // namespace
}  // namespace ioasid::iommu

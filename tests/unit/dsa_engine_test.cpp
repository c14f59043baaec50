// SPDX-License-Identifier: MIT
// The dsa engine in-process: work queues run on an executor, descriptors move memory
// through the IOMMU, completion records land in memory, a block-on-fault descriptor
// parks its WQ until its page request is answered (another file's gives way to work
// of other files), a full WQ says RETRY. The ioctl
// rows are in the conformance suite (tests/conformance/dsa_test.cpp).
#include "devices/dsa/crc32c.h"
#include "devices/dsa/engine.h"
#include "memory/remote_backing.h"
#include "routed_table_test.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <string_view>
#include <thread>

namespace ioasid::devices::dsa {
namespace {

using iommu::PageResponse;
using iommu::test_support::k2M;
using iommu::test_support::k4K;
using iommu::test_support::pattern;

constexpr uint32_t kPasid = 9;
constexpr uint32_t kOwner = 1;  // the file that enables the test's WQs
constexpr uint64_t kIova = 0x40'0000'0000;
constexpr uint64_t kRecords = kIova;             // completion records, 32 bytes apart
constexpr uint64_t kData = kIova + 64 * k4K;     // data from here

uint32_t reference_crc32c(uint32_t seed, std::span<const std::byte> data) {
  uint32_t crc = ~seed;
  for (std::byte byte : data) {
    crc ^= static_cast<uint8_t>(byte);
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) ? 0x82f63b78u : 0);
  }
  return ~crc;
}

TEST(Crc32c, MatchesTheCheckValueAChainedRunAndABitwiseReference) {
  const std::string_view check = "123456789";
  EXPECT_EQ(crc32c(0, std::as_bytes(std::span(check))), 0xe3069283u);
  const auto data = pattern(10'000, 7);
  const auto whole = crc32c(0, data);
  EXPECT_EQ(whole, reference_crc32c(0, data));
  EXPECT_EQ(crc32c(crc32c(0, std::span(data).first(4097)), std::span(data).subspan(4097)), whole);
  EXPECT_EQ(crc32c(0x1234, std::span(data).first(13)), reference_crc32c(0x1234, std::span(data).first(13)));
}

// Records what the engine asks of the file that submitted.
class RecordingSubmitter : public Submitter {
 public:
  void completion_unreachable(uint32_t, const DmaFault& fault) override {
    std::lock_guard lock(mutex);
    unreachable.push_back(fault.address);
  }
  bool request_page(uint32_t pasid, const DmaFault& fault, bool write,
                    std::function<void(PageResponse)> resume) override {
    std::lock_guard lock(mutex);
    requests.push_back({pasid, fault.address, write});
    resumes.push_back(std::move(resume));
    raised.notify_all();
    return true;
  }
  void descriptor_faulted(uint32_t, uint32_t, uint8_t, uint64_t fault_addr) override {
    std::lock_guard lock(mutex);
    faulted.push_back(fault_addr);
  }
  void answer(PageResponse response) {
    std::function<void(PageResponse)> resume;
    {
      std::lock_guard lock(mutex);
      resume = std::move(resumes.front());
      resumes.erase(resumes.begin());
    }
    resume(response);
  }
  bool wait_for_requests(size_t count) {
    std::unique_lock lock(mutex);
    return raised.wait_for(lock, std::chrono::seconds(5), [&] { return requests.size() >= count; });
  }

  struct Request {
    uint32_t pasid;
    uint64_t address;
    bool write;
  };
  std::mutex mutex;
  std::condition_variable raised;
  std::vector<uint64_t> unreachable;
  std::vector<uint64_t> faulted;  // descriptor_faulted
  std::vector<Request> requests;
  std::vector<std::function<void(PageResponse)>> resumes;
};

class DsaEngineTest : public iommu::test_support::RoutedTableTest<8 * k2M, kPasid, 5> {
 protected:
  void SetUp() override {
    RoutedTableTest::SetUp();
    ASSERT_TRUE(map(0, 4 * k2M, kIova).ok());
  }
  void TearDown() override { engine_.reset(); }

  // The memfd offset of an IOVA of the mapping.
  static uint64_t at(uint64_t iova) { return iova - kIova; }

  ioasid_dsa_desc desc(uint32_t op, uint32_t flags, uint64_t src, uint64_t dst, uint32_t size,
                       uint64_t record = kRecords) {
    ioasid_dsa_desc d{};
    d.pasid = kPasid;
    d.opflags = IOASID_DSA_OPFLAGS(op, flags | IOASID_DSA_FLAG_CRAV | IOASID_DSA_FLAG_RCR);
    d.completion_addr = record;
    d.src = src;
    d.dst = dst;
    d.xfer_size = size;
    return d;
  }

  void enable(uint32_t wq, uint32_t size = 16, bool block_on_fault = false) {
    ASSERT_TRUE(engine_->enable(wq, {.shared = true, .block_on_fault = block_on_fault, .size = size, .priority = 1,
                                     .owner = kOwner})
                    .ok());
  }

  Enqueued submit(const ioasid_dsa_desc& d, uint32_t wq = 0) { return submit_as(kOwner, d, wq); }
  // As the file `file` (the WQ's owner is kOwner).
  Enqueued submit_as(uint32_t file, const ioasid_dsa_desc& d, uint32_t wq = 0) {
    return engine_->submit(wq, d, kPasid, file, submitter_, {.shared = true, .owner = kOwner});
  }
  // Waits (bounded) until the WQ's front descriptor waits for a page response.
  bool parked(uint32_t wq = 0) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!engine_->state(wq).waiting_for_page) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::yield();
    }
    return true;
  }

  // The completion record at `iova`, once its status is written.
  ioasid_dsa_completion record(uint64_t iova = kRecords) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      auto bytes = memory_.read(at(iova), sizeof(ioasid_dsa_completion));
      ioasid_dsa_completion out{};
      std::memcpy(&out, bytes.data(), sizeof out);
      if (out.status != 0 || std::chrono::steady_clock::now() > deadline) return out;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  ThreadPoolExecutor executor_{2};
  std::unique_ptr<Engine> engine_ =
      std::make_unique<Engine>("dsa-test", iommu_, pasids_, nullptr, 4, executor_);
  std::shared_ptr<RecordingSubmitter> submitter_ = std::make_shared<RecordingSubmitter>();
};

TEST_F(DsaEngineTest, MemmoveCopiesThroughTheIommuAndWritesItsRecordLast) {
  enable(0);
  const auto data = pattern(3 * k4K + 5, 3);
  ASSERT_TRUE(memory_.write(at(kData), data));
  ASSERT_EQ(submit(desc(IOASID_DSA_OPCODE_MEMMOVE, 0, kData, kData + k2M, static_cast<uint32_t>(data.size()))),
            Enqueued::kAccepted);
  const auto done = record();
  EXPECT_EQ(done.status, IOASID_DSA_COMP_SUCCESS);
  EXPECT_EQ(memory_.read(at(kData + k2M), data.size()), data);
}

TEST_F(DsaEngineTest, ADescriptorPastTheMappingStopsWithAPartialRecord) {
  enable(0);
  const uint64_t end = kIova + 4 * k2M;
  ASSERT_EQ(submit(desc(IOASID_DSA_OPCODE_MEMFILL, 0, 0x0102030405060708, end - 100, 300)), Enqueued::kAccepted);
  const auto done = record();
  EXPECT_EQ(done.status, IOASID_DSA_COMP_PAGE_FAULT_NOBOF | IOASID_DSA_COMP_STATUS_WRITE);
  EXPECT_EQ(done.bytes_completed, 100u);
  EXPECT_EQ(done.fault_addr, end);
  auto filled = memory_.read(at(end - 100), 100);
  for (size_t i = 0; i < filled.size(); ++i) EXPECT_EQ(filled[i], std::byte(8 - (i % 8))) << i;
}

TEST_F(DsaEngineTest, BlockOnFaultParksTheQueueUntilTheAnswerAndThenResumesInOrder) {
  enable(0, /*size=*/2, /*block_on_fault=*/true);
  const uint64_t end = kIova + 4 * k2M;
  const auto data = pattern(2 * k4K, 9);
  ASSERT_TRUE(memory_.write(at(kData), data));
  // Runs off the mapping: a page request, and the queue waits.
  ASSERT_EQ(submit(desc(IOASID_DSA_OPCODE_MEMMOVE, IOASID_DSA_FLAG_BOF, kData, end - k4K, 2 * k4K)),
            Enqueued::kAccepted);
  ASSERT_TRUE(submitter_->wait_for_requests(1));
  EXPECT_EQ(submitter_->requests[0].address, end);
  EXPECT_TRUE(submitter_->requests[0].write);
  ASSERT_EQ(submit(desc(IOASID_DSA_OPCODE_NOOP, 0, 0, 0, 0, kRecords + 32)), Enqueued::kAccepted);
  EXPECT_EQ(submit(desc(IOASID_DSA_OPCODE_NOOP, 0, 0, 0, 0, kRecords + 64)), Enqueued::kRetry);
  // The runner parks just after raising the request.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!engine_->state(0).waiting_for_page && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  EXPECT_TRUE(engine_->state(0).waiting_for_page);
  EXPECT_EQ(memory_.read(at(kRecords), 1), std::vector<std::byte>{std::byte{0}});

  // The owner maps the missing page and answers: the copy finishes where it stopped.
  ASSERT_TRUE(map(4 * k2M, k2M, end).ok());
  submitter_->answer(PageResponse::kSuccess);
  EXPECT_EQ(record().status, IOASID_DSA_COMP_SUCCESS);
  EXPECT_EQ(memory_.read(at(end - k4K), data.size()), data);
  EXPECT_EQ(record(kRecords + 32).status, IOASID_DSA_COMP_SUCCESS);
}

TEST_F(DsaEngineTest, AnInvalidAnswerEndsTheDescriptorWithPageFaultIr) {
  enable(0, 4, true);
  const uint64_t end = kIova + 4 * k2M;
  ASSERT_EQ(submit(desc(IOASID_DSA_OPCODE_CRCGEN, IOASID_DSA_FLAG_BOF, end - 64, 0, 128)), Enqueued::kAccepted);
  ASSERT_TRUE(submitter_->wait_for_requests(1));
  EXPECT_FALSE(submitter_->requests[0].write);
  submitter_->answer(PageResponse::kInvalid);
  const auto done = record();
  EXPECT_EQ(done.status, IOASID_DSA_COMP_PAGE_FAULT_IR);
  EXPECT_EQ(done.bytes_completed, 64u);
  EXPECT_EQ(done.fault_addr, end);
}

// Another file's descriptor waits for a page response only while no other file's work
// waits behind it: one queued behind it, or a submission refused for lack of room,
// makes it give way. It ends as without block on fault (a partial record), and the
// descriptors of its file then queued raise no page request; their late answers change
// nothing. A file cannot hold a WQ it does not own for a page timeout.
TEST_F(DsaEngineTest, AnotherFilesWaitForAPageGivesWayToOtherFilesWork) {
  constexpr uint32_t kOther = 2, kThird = 3;
  constexpr uint8_t kGaveWay = IOASID_DSA_COMP_PAGE_FAULT_NOBOF | IOASID_DSA_COMP_STATUS_WRITE;
  enable(0, /*size=*/4, /*block_on_fault=*/true);
  const uint64_t end = kIova + 4 * k2M;
  ASSERT_EQ(submit_as(kOther, desc(IOASID_DSA_OPCODE_MEMFILL, IOASID_DSA_FLAG_BOF, 1, end - 64, 128)),
            Enqueued::kAccepted);
  ASSERT_TRUE(submitter_->wait_for_requests(1));
  ASSERT_TRUE(parked());
  // The owner's descriptor behind it: the other file's gives way.
  ASSERT_EQ(submit(desc(IOASID_DSA_OPCODE_NOOP, 0, 0, 0, 0, kRecords + 32)), Enqueued::kAccepted);
  const auto gave_way = record();
  EXPECT_EQ(gave_way.status, kGaveWay);
  EXPECT_EQ(gave_way.bytes_completed, 64u);
  EXPECT_EQ(gave_way.fault_addr, end);
  EXPECT_EQ(record(kRecords + 32).status, IOASID_DSA_COMP_SUCCESS);
  submitter_->answer(PageResponse::kSuccess);  // late: ignored

  // The other file fills the WQ behind one waiting descriptor of its own, and its own
  // RETRY changes nothing: only its own work waits.
  auto slot = [](uint32_t i) { return kRecords + 64 + 32 * i; };
  // The NOOP's record is written before the engine lets go of its slot: wait for an empty WQ.
  const auto drained_by = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (engine_->state(0).queued != 0 && std::chrono::steady_clock::now() < drained_by) std::this_thread::yield();
  ASSERT_EQ(engine_->state(0).queued, 0u);
  for (uint32_t i = 0; i < 4; ++i)
    ASSERT_EQ(submit_as(kOther, desc(IOASID_DSA_OPCODE_MEMFILL, IOASID_DSA_FLAG_BOF, 1, end + i * k4K, 8, slot(i))),
              Enqueued::kAccepted);
  ASSERT_TRUE(submitter_->wait_for_requests(2));
  EXPECT_EQ(submitter_->requests[1].address, end);
  ASSERT_TRUE(parked());
  EXPECT_EQ(submit_as(kOther, desc(IOASID_DSA_OPCODE_NOOP, 0, 0, 0, 0, slot(4))), Enqueued::kRetry);
  EXPECT_TRUE(engine_->state(0).waiting_for_page);
  EXPECT_EQ(engine_->state(0).queued, 4u);
  // A third file is refused: every descriptor then queued gives way, with no new page request.
  EXPECT_EQ(submit_as(kThird, desc(IOASID_DSA_OPCODE_NOOP, 0, 0, 0, 0, slot(5))), Enqueued::kRetry);
  for (uint32_t i = 0; i < 4; ++i) {
    const auto done = record(slot(i));
    EXPECT_EQ(done.status, kGaveWay) << i;
    EXPECT_EQ(done.fault_addr, end + i * k4K) << i;
  }
  ASSERT_EQ(submit_as(kThird, desc(IOASID_DSA_OPCODE_NOOP, 0, 0, 0, 0, slot(5))), Enqueued::kAccepted);
  EXPECT_EQ(record(slot(5)).status, IOASID_DSA_COMP_SUCCESS);
  std::lock_guard lock(submitter_->mutex);
  EXPECT_EQ(submitter_->requests.size(), 2u);
}

// The owner's own wait holds its WQ: it chose block on fault for it, and may disable it.
TEST_F(DsaEngineTest, TheOwnersWaitForAPageHoldsOtherFilesWork) {
  enable(0, 4, true);
  const uint64_t end = kIova + 4 * k2M;
  ASSERT_EQ(submit(desc(IOASID_DSA_OPCODE_MEMFILL, IOASID_DSA_FLAG_BOF, 1, end, 8)), Enqueued::kAccepted);
  ASSERT_TRUE(submitter_->wait_for_requests(1));
  ASSERT_TRUE(parked());
  ASSERT_EQ(submit_as(2, desc(IOASID_DSA_OPCODE_NOOP, 0, 0, 0, 0, kRecords + 32)), Enqueued::kAccepted);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(engine_->state(0).waiting_for_page);
  EXPECT_EQ(memory_.read(at(kRecords + 32), 1), std::vector<std::byte>{std::byte{0}}) << "behind the owner's wait";
  submitter_->answer(PageResponse::kInvalid);
  EXPECT_EQ(record().status, IOASID_DSA_COMP_PAGE_FAULT_IR | IOASID_DSA_COMP_STATUS_WRITE);
  EXPECT_EQ(record(kRecords + 32).status, IOASID_DSA_COMP_SUCCESS);
}

TEST_F(DsaEngineTest, AnUnreachableCompletionRecordIsReportedToTheSubmitter) {
  enable(0);
  const uint64_t nowhere = kIova + 6 * k2M;
  ASSERT_EQ(submit(desc(IOASID_DSA_OPCODE_NOOP, 0, 0, 0, 0, nowhere)), Enqueued::kAccepted);
  ASSERT_EQ(submit(desc(IOASID_DSA_OPCODE_NOOP, 0, 0, 0, 0)), Enqueued::kAccepted);  // in order: after the first
  EXPECT_EQ(record().status, IOASID_DSA_COMP_SUCCESS);
  std::lock_guard lock(submitter_->mutex);
  EXPECT_EQ(submitter_->unreachable, std::vector<uint64_t>{nowhere});
}

TEST_F(DsaEngineTest, DisableWaitsForWhatWasAcceptedAndRefusesMore) {
  enable(1, 64);
  for (uint32_t i = 0; i < 32; ++i)
    ASSERT_EQ(submit(desc(IOASID_DSA_OPCODE_MEMFILL, 0, i, kData + i * 16 * k4K, 16 * k4K, kRecords + 32 * i), 1),
              Enqueued::kAccepted);
  engine_->disable(1, 1);
  for (uint32_t i = 0; i < 32; ++i) EXPECT_EQ(memory_.read(at(kRecords + 32 * i), 1)[0], std::byte{1}) << i;
  EXPECT_EQ(engine_->state(1).completed, 32u);
  EXPECT_EQ(submit(desc(IOASID_DSA_OPCODE_NOOP, 0, 0, 0, 0), 1), Enqueued::kDisabled);
  EXPECT_TRUE(engine_->enable(1, {.shared = true, .size = 1, .priority = 1, .owner = 2}).ok());
  EXPECT_EQ(engine_->enable(1, {.shared = true, .size = 1, .priority = 1, .owner = 1}).code(), EBUSY);
}

// Private memory (reached through /proc/<pid>/mem) is not mapped in the daemon: the
// engine stages it, and an overlapping move still behaves as memmove.
TEST_F(DsaEngineTest, StagedMemoryMovesAndComparesLikeMappedMemory) {
  const size_t size = 40 * k4K;
  void* mapped = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mapped, MAP_FAILED);
  auto* client = static_cast<std::byte*>(mapped);
  auto backing = RemoteBacking::open(getpid(), reinterpret_cast<uint64_t>(mapped), size, MapAccess::kReadWrite);
  ASSERT_TRUE(backing.ok()) << backing.error().why;
  auto charge = iommu_.pins().charge(getuid(), size / k4K);
  ASSERT_TRUE(charge.ok());
  const uint64_t base = kIova + 5 * k2M;
  ASSERT_TRUE(table_->map({.backing = std::move(*backing), .charge = std::move(*charge), .iova = base,
                           .readable = true, .writeable = true})
                  .ok());
  const auto data = pattern(24 * k4K, 4);
  std::memcpy(client, data.data(), data.size());
  enable(0);
  // Forward by 3 pages and 7 bytes, overlapping: the source must be read before it is overwritten.
  const uint64_t shift = 3 * k4K + 7;
  ASSERT_EQ(submit(desc(IOASID_DSA_OPCODE_MEMMOVE, 0, base, base + shift, static_cast<uint32_t>(data.size()))),
            Enqueued::kAccepted);
  EXPECT_EQ(record().status, IOASID_DSA_COMP_SUCCESS);
  EXPECT_EQ(std::memcmp(client + shift, data.data(), data.size()), 0);

  client[shift + 5000] ^= std::byte{1};
  ASSERT_TRUE(memory_.write(at(kData), data));
  ASSERT_EQ(submit(desc(IOASID_DSA_OPCODE_COMPARE, 0, base + shift, kData, static_cast<uint32_t>(data.size()),
                        kRecords + 64)),
            Enqueued::kAccepted);
  const auto compared = record(kRecords + 64);
  EXPECT_EQ(compared.status, IOASID_DSA_COMP_SUCCESS);
  EXPECT_EQ(compared.result, 1);
  EXPECT_EQ(compared.bytes_completed, 5000u);
  engine_->disable(0, 1);
  ASSERT_TRUE(table_->unmap(base, size).ok());
  munmap(mapped, size);
}


// Counts the runs an engine posts: each is a thread woken for its WQ.
class CountingExecutor final : public Executor {
 public:
  void post(std::function<void()> work) override {
    posts.fetch_add(1);
    inner_.post(std::move(work));
  }
  void post_after(std::chrono::milliseconds delay, std::function<void()> work) override {
    inner_.post_after(delay, std::move(work));
  }
  std::atomic<int> posts{0};

 private:
  ThreadPoolExecutor inner_{1};
};

// A runner whose queue ran dry keeps its thread for the idle poll: a descriptor
// submitted meanwhile runs without a post (no thread to wake). Without the poll, or on
// a machine with no CPU to spare, each descriptor submitted to an idle WQ is a post.
TEST_F(DsaEngineTest, AnIdlePollingRunnerTakesTheNextDescriptorWithoutAPost) {
  constexpr int kDescriptors = 20;
  int round = 0;  // each round its own records: a record written before would show at once
  auto posts_for = [&](std::chrono::microseconds idle_poll, bool (*cpu_to_spare)()) {
    const uint64_t records = kRecords + 32 * kDescriptors * round++;
    CountingExecutor executor;
    Engine engine("dsa-poll", iommu_, pasids_, nullptr, 1, executor, idle_poll, cpu_to_spare);
    EXPECT_TRUE(engine.enable(0, {.shared = true, .size = 4, .priority = 1, .owner = kOwner}).ok());
    for (int i = 0; i < kDescriptors; ++i) {
      const uint64_t at_record = records + 32 * i;
      EXPECT_EQ(engine.submit(0, desc(IOASID_DSA_OPCODE_NOOP, 0, 0, 0, 0, at_record), kPasid, kOwner, submitter_,
                              {.shared = true, .owner = kOwner}),
                Enqueued::kAccepted);
      EXPECT_EQ(record(at_record).status, IOASID_DSA_COMP_SUCCESS);
    }
    engine.disable(0, kOwner);
    return executor.posts.load();
  };
  auto spare = [] { return true; };
  auto busy = [] { return false; };
  EXPECT_EQ(posts_for(std::chrono::microseconds{0}, spare), kDescriptors);
  EXPECT_EQ(posts_for(kMaxIdlePoll, busy), kDescriptors) << "a busy machine: no polling";
  // The record is polled every 100 us, so the next submission comes within the
  // longest idle poll unless this thread is kept off the CPU for most of a millisecond.
  EXPECT_LT(posts_for(kMaxIdlePoll, spare), kDescriptors / 2);
}
}  // namespace
}  // namespace ioasid::devices::dsa

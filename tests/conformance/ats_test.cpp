// SPDX-License-Identifier: MIT
// ATS for device models: ATS_TRANSLATE and ATS_INV_ACK rows, invalidations that wait
// for the model's acknowledgement (or fail the device), translations only into the
// caller's own memory, page requests on a miss, and UNMAP racing translations.
#include "harness.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>

namespace conf {
namespace {

constexpr uint64_t k4K = 4096, k2M = 2ull << 20;

// Page-aligned private memory of this process, unmapped on destruction.
struct Anonymous {
  explicit Anonymous(size_t size) : size(size) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    data = p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
    if (data) std::memset(data, 0x5a, size);
  }
  ~Anonymous() {
    if (data) munmap(data, size);
  }
  std::span<std::byte> bytes() const { return {data, size}; }
  size_t size;
  std::byte* data;
};

// A file with dma0 (PASID, PRI, ATS) attached by RID to a fresh IOASID.
struct AtsSetup {
  AtsSetup() : node(O_NONBLOCK), ioas(must(client::Ioas::allocate(node.file()))), device(bound_device(node, "dma0")) {
    must(client::Attachment::attach(device, ioas)).release();
  }
  // Left to the file's close, which waits for no acknowledgement: most tests have no
  // model answering by then.
  ~AtsSetup() { device.release(); }
  int fd() const { return node.fd(); }
  Node node;
  client::Ioas ioas;
  client::Device device;
};

struct Translation {
  Errno err;
  ioasid_ats_translate request;
  std::vector<ioasid_ats_run> runs;
};

Translation translate(int fd, uint32_t dev_id, uint64_t iova, uint64_t length, uint32_t flags = 0,
                      uint32_t pasid = 0, uint32_t slots = 8) {
  Translation t{kOk, {}, std::vector<ioasid_ats_run>(slots)};
  t.request = {.flags = flags,
               .dev_id = dev_id,
               .pasid = pasid,
               .num_runs = slots,
               .iova = iova,
               .length = length,
               .runs_uptr = reinterpret_cast<uint64_t>(t.runs.data())};
  t.err = ioctl_errno(fd, IOASID_ATS_TRANSLATE, &t.request);
  t.runs.resize(t.err == kOk ? t.request.num_runs : 0);
  return t;
}

ioasid_ats_invalidation as_invalidation(const ioasid_fault& record) {
  ioasid_ats_invalidation out;
  std::memcpy(&out, &record, sizeof out);
  return out;
}

Errno unmap(int fd, uint32_t ioasid, uint64_t iova, uint64_t length) {
  ioasid_unmap_dma request{.ioasid = ioasid, .iova = iova, .length = length};
  return ioctl_errno(fd, IOASID_UNMAP_DMA, &request);
}

TEST(Ats, GetInfoOffersIt) {
  Node node;
  EXPECT_TRUE(get_info(node.fd()).features & (1u << IOASID_FEAT_ATS));
  EXPECT_EQ(ioctl_value(node.fd(), IOASID_CHECK_EXTENSION, IOASID_FEAT_ATS), 1);
}

TEST(Ats, TranslateRows) {
  AtsSetup s;
  Anonymous memory(2 * k4K);
  const uint64_t iova = map_memory(s.ioas, memory.bytes());
  const uint32_t dev = s.device.id();
  const uint32_t plain = bind_device(s.node, "dma1");  // no ATS
  auto expect = [&](Errno err, const char* why, uint32_t flags, uint64_t at, uint64_t length, uint32_t pasid = 0,
                    uint32_t slots = 8, uint32_t dev_id = 0) {
    EXPECT_EQ(translate(s.fd(), dev_id ? dev_id : dev, at, length, flags, pasid, slots).err, err) << why;
  };
  expect(Err(EOPNOTSUPP), "unknown flag", 1u << 4, iova, k4K);
  expect(Err(ENOENT), "no such dev_id", 0, iova, k4K, 0, 8, dev + 100);
  expect(Err(EOPNOTSUPP), "dma1 has no ATS", 0, iova, k4K, 0, 8, plain);
  expect(Err(EINVAL), "PASID 0 is RID_PASID", IOASID_ATS_PASID, iova, k4K, 0);
  expect(Err(EINVAL), "a PASID beyond 20 bits", IOASID_ATS_PASID, iova, k4K, 1u << 20);
  expect(Err(EINVAL), "a pasid without the flag", 0, iova, k4K, 7);
  expect(Err(EINVAL), "PRIV without PASID", IOASID_ATS_PRIV, iova, k4K);
  expect(Err(EINVAL), "length 0", 0, iova, 0);
  expect(Err(EINVAL), "length above 64 MiB", 0, iova, (64ull << 20) + k4K);
  expect(Err(EOVERFLOW), "a range that wraps", 0, ~0ull - k4K + 2, k4K);
  expect(Err(EINVAL), "num_runs 0", 0, iova, k4K, 0, 0);
  expect(Err(EINVAL), "num_runs above 512", 0, iova, k4K, 0, 513);
  auto no_runs = translate(s.fd(), dev, iova, k4K);
  no_runs.request.runs_uptr = 0;
  EXPECT_EQ(ioctl_errno(s.fd(), IOASID_ATS_TRANSLATE, &no_runs.request), Err(EINVAL)) << "runs_uptr 0";
  auto bad_runs = translate(s.fd(), dev, iova, k4K);
  bad_runs.request.runs_uptr = 8;
  bad_runs.request.num_runs = 1;
  EXPECT_EQ(ioctl_errno(s.fd(), IOASID_ATS_TRANSLATE, &bad_runs.request), Err(EFAULT)) << "runs_uptr unmapped";

  // MAP_DMA of this process's memory: the bytes are where this process has them.
  const auto read = translate(s.fd(), dev, iova + 16, 2 * k4K - 16);
  ASSERT_EQ(read.err, kOk);
  EXPECT_EQ(read.request.out_status, unsigned(IOASID_ATS_OK));
  EXPECT_EQ(read.request.out_length, 2 * k4K - 16);
  ASSERT_EQ(read.runs.size(), 1u) << "contiguous in IOVA and in this process: one run";
  EXPECT_EQ(read.runs[0].iova, iova + 16);
  EXPECT_EQ(read.runs[0].length, 2 * k4K - 16);
  EXPECT_EQ(read.runs[0].uaddr, reinterpret_cast<uint64_t>(memory.data) + 16);
  EXPECT_EQ(read.runs[0].perm, unsigned(IOASID_ATS_RUN_READ));
  const auto write = translate(s.fd(), dev, iova, k4K, IOASID_ATS_WRITE);
  ASSERT_EQ(write.err, kOk);
  EXPECT_EQ(write.runs.at(0).perm, unsigned(IOASID_ATS_RUN_WRITE));

  // A translation that is not there is an answer without access, not a fault record.
  const auto hole = translate(s.fd(), dev, iova + 2 * k4K, k4K);
  ASSERT_EQ(hole.err, kOk);
  EXPECT_EQ(hole.request.out_status, unsigned(IOASID_ATS_FAULT));
  EXPECT_EQ(hole.request.out_fault_addr, iova + 2 * k4K);
  EXPECT_EQ(hole.request.out_fault_reason, unsigned(IOASID_FAULT_REASON_ACCESS));
  EXPECT_EQ(hole.request.num_runs, 0u);
  const auto prefix = translate(s.fd(), dev, iova + k4K, 2 * k4K);
  EXPECT_EQ(prefix.request.out_status, unsigned(IOASID_ATS_FAULT));
  EXPECT_EQ(prefix.request.out_length, k4K) << "the translated prefix is handed out";
  EXPECT_TRUE(drain_faults(s.node).empty());

  // A read-only mapping refuses a write translation.
  Anonymous readonly(k4K);
  const uint64_t ro = map_memory(s.ioas, readonly.bytes(), {.flags = IOASID_MAP_READABLE});
  const auto refused = translate(s.fd(), dev, ro, k4K, IOASID_ATS_WRITE);
  EXPECT_EQ(refused.request.out_status, unsigned(IOASID_ATS_FAULT));
  EXPECT_EQ(refused.request.out_fault_reason, unsigned(IOASID_FAULT_REASON_PERMISSION));
}

TEST(Ats, RunsStopAtTheLastSlotWithMore) {
  AtsSetup s;
  Anonymous first(k4K), second(k4K);
  const uint64_t iova = map_memory(s.ioas, first.bytes(), {.iova = 1ull << 30});
  map_memory(s.ioas, second.bytes(), {.iova = (1ull << 30) + k4K});
  const auto one = translate(s.fd(), s.device.id(), iova, 2 * k4K, 0, 0, 1);
  ASSERT_EQ(one.err, kOk);
  EXPECT_EQ(one.request.out_status, unsigned(IOASID_ATS_MORE));
  EXPECT_EQ(one.request.out_length, k4K);
  EXPECT_EQ(one.request.out_fault_addr, iova + k4K) << "where to ask again";
  const auto both = translate(s.fd(), s.device.id(), iova, 2 * k4K, 0, 0, 2);
  ASSERT_EQ(both.runs.size(), 2u) << "two buffers apart in this process: two runs";
  EXPECT_EQ(both.runs[1].uaddr, reinterpret_cast<uint64_t>(second.data));
}

TEST(Ats, AckRows) {
  AtsSetup s;
  ioasid_ats_ack ack{.dev_id = s.device.id(), .itag = 1};
  EXPECT_EQ(ioctl_errno(s.fd(), IOASID_ATS_INV_ACK, &ack), Err(EINVAL)) << "nothing was ever sent";
  ack.flags = 1;
  EXPECT_EQ(ioctl_errno(s.fd(), IOASID_ATS_INV_ACK, &ack), Err(EOPNOTSUPP)) << "flags";
  ack.flags = 0;
  ack.__reserved = 1;
  EXPECT_EQ(ioctl_errno(s.fd(), IOASID_ATS_INV_ACK, &ack), Err(EOPNOTSUPP)) << "__reserved";
}

// UNMAP of a range the model holds returns only after the model acknowledged; the
// record says what to drop; a model that translates again sees the new mapping.
TEST(Ats, UnmapWaitsForTheAcknowledgementAndRetranslationSeesTheNewMapping) {
  AtsSetup s;
  Anonymous old_memory(k4K), new_memory(k4K);
  std::memset(new_memory.data, 0x33, k4K);
  const uint64_t iova = map_memory(s.ioas, old_memory.bytes());
  ASSERT_EQ(translate(s.fd(), s.device.id(), iova, k4K).request.out_status, unsigned(IOASID_ATS_OK));

  std::atomic<bool> acknowledged{false};
  std::optional<ioasid_ats_invalidation> seen;
  std::thread model([&] {
    auto record = next_fault(s.node);
    if (!record) return;
    seen = as_invalidation(*record);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // still copying
    acknowledged = true;
    ioasid_ats_ack ack{.dev_id = seen->dev_id, .itag = seen->itag};
    EXPECT_EQ(ioctl_errno(s.fd(), IOASID_ATS_INV_ACK, &ack), kOk);
  });
  EXPECT_EQ(unmap(s.fd(), s.ioas.id(), iova, k4K), kOk);
  EXPECT_TRUE(acknowledged) << "UNMAP returned before the model acknowledged";
  model.join();
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->type, unsigned(IOASID_FAULT_ATS_INVALIDATE));
  EXPECT_EQ(seen->dev_id, s.device.id());
  EXPECT_EQ(seen->flags & IOASID_FAULT_PASID_VALID, 0u) << "requests without PASID";
  EXPECT_EQ(seen->iova, iova);
  EXPECT_EQ(seen->length, k4K);
  ioasid_ats_ack again{.dev_id = seen->dev_id, .itag = seen->itag};
  EXPECT_EQ(ioctl_errno(s.fd(), IOASID_ATS_INV_ACK, &again), Err(EINVAL)) << "acknowledged already";

  map_memory(s.ioas, new_memory.bytes(), {.iova = iova});
  const auto fresh = translate(s.fd(), s.device.id(), iova, k4K);
  ASSERT_EQ(fresh.runs.size(), 1u);
  EXPECT_EQ(fresh.runs[0].uaddr, reinterpret_cast<uint64_t>(new_memory.data));
  // An UNMAP of what the model does not hold asks nothing of it.
  Anonymous other(k4K);
  const uint64_t elsewhere = map_memory(s.ioas, other.bytes());
  EXPECT_EQ(unmap(s.fd(), s.ioas.id(), elsewhere, k4K), kOk);
  EXPECT_TRUE(drain_faults(s.node).empty());
}

TEST(Ats, AnUnacknowledgedInvalidationFailsTheDeviceUntilItIsBoundAgain) {
  AtsSetup s;
  Anonymous memory(k4K);
  const uint64_t iova = map_memory(s.ioas, memory.bytes());
  const uint32_t dev = s.device.id();
  ASSERT_EQ(translate(s.fd(), dev, iova, k4K).request.out_status, unsigned(IOASID_ATS_OK));
  EXPECT_EQ(unmap(s.fd(), s.ioas.id(), iova, k4K), kOk) << "the invalidation completes on the timeout";
  EXPECT_EQ(translate(s.fd(), dev, iova, k4K).err, Err(EIO)) << "a failed device translates nothing";
  const auto records = drain_faults(s.node);
  ASSERT_EQ(records.size(), 1u);
  const auto late = as_invalidation(records[0]);
  ioasid_ats_ack ack{.dev_id = late.dev_id, .itag = late.itag};
  EXPECT_EQ(ioctl_errno(s.fd(), IOASID_ATS_INV_ACK, &ack), Err(EINVAL)) << "timed out already";

  // Bound again, it is a new device.
  must(s.device.unbind());
  auto again = bound_device(s.node, "dma0");
  must(client::Attachment::attach(again, s.ioas)).release();
  map_memory(s.ioas, memory.bytes(), {.iova = iova});
  EXPECT_EQ(translate(s.fd(), again.id(), iova, k4K).request.out_status, unsigned(IOASID_ATS_OK));
  again.release();
}

// DETACH and UNBIND invalidate too, and wait as UNMAP does.
TEST(Ats, DetachAndUnbindInvalidate) {
  AtsSetup s;
  Anonymous memory(k4K);
  const uint64_t iova = map_memory(s.ioas, memory.bytes());
  client::AtsCache cache(s.device);
  auto server = must(client::AtsInvalidationServer::start(s.node.file(), {&cache}));
  std::vector<std::byte> buffer(k4K);
  ASSERT_TRUE(must(cache.read(iova, buffer)).ok());
  ioasid_attach detach{.dev_id = s.device.id()};
  EXPECT_EQ(ioctl_errno(s.fd(), IOASID_DETACH_IOASID, &detach), kOk);
  EXPECT_EQ(cache.stats().invalidations, 1u) << "DETACH returned before the model acknowledged";
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(must(cache.read(iova, buffer)).status, unsigned(IOASID_ATS_FAULT));
}

// The answer names memory only where the caller itself has it.
TEST(Ats, NoCallerTranslatesIntoMemoryItDoesNotHave) {
  AtsSetup s;
  Anonymous memory(k4K);
  const uint64_t iova = map_memory(s.ioas, memory.bytes());
  Memfd file(k4K);
  const uint64_t file_iova = map_memfd(s.ioas, file);
  const uint32_t dev = s.device.id();

  // A child shares the open file but not the address space the memory is in.
  std::string why;
  const int status = run_in_child(
      [&] {
        const auto t = translate(s.fd(), dev, iova, k4K);
        if (t.err != kOk || t.request.out_status != IOASID_ATS_FOREIGN ||
            t.request.out_fault_reason != IOASID_ATS_FOREIGN_PROCESS || t.request.num_runs != 0)
          return 1;
        return 0;
      },
      10s, &why);
  EXPECT_EQ(status, 0) << "another process got a translation of this one's memory " << why;

  // MAP_FILE memory: only through the caller's own shared mapping of that file.
  const auto unmapped = translate(s.fd(), dev, file_iova, k4K);
  EXPECT_EQ(unmapped.request.out_status, unsigned(IOASID_ATS_FOREIGN));
  EXPECT_EQ(unmapped.request.out_fault_reason, unsigned(IOASID_ATS_FOREIGN_FILE));
  void* readonly_view = mmap(nullptr, k4K, PROT_READ, MAP_SHARED, file.fd, 0);
  ASSERT_NE(readonly_view, MAP_FAILED);
  EXPECT_EQ(translate(s.fd(), dev, file_iova, k4K, IOASID_ATS_WRITE).request.out_status,
            unsigned(IOASID_ATS_FOREIGN))
      << "a read-only view does not serve a write";
  const auto read = translate(s.fd(), dev, file_iova, k4K);
  ASSERT_EQ(read.runs.size(), 1u);
  EXPECT_EQ(read.runs[0].uaddr, reinterpret_cast<uint64_t>(readonly_view));
  EXPECT_EQ(read.runs[0].perm, unsigned(IOASID_ATS_RUN_READ | IOASID_ATS_RUN_FILE));
  munmap(readonly_view, k4K);
}

// A miss on a PRI device at a PASID raises a page request; once answered, the
// translation is there.
TEST(Ats, AMissAtAPasidRaisesAPageRequest) {
  AtsSetup s;
  const uint32_t pasid = alloc_pasid(s.node, slot(44));
  must(client::Attachment::attach_pasid(s.device, s.ioas, pasid)).release();
  Anonymous memory(k4K);
  const uint64_t iova = 1ull << 32;
  const auto nowait = translate(s.fd(), s.device.id(), iova, k4K, IOASID_ATS_PASID | IOASID_ATS_NOWAIT, pasid);
  ASSERT_EQ(nowait.err, kOk);
  EXPECT_EQ(nowait.request.out_status, unsigned(IOASID_ATS_PAGE_REQ));
  auto request = next_fault(s.node);
  ASSERT_TRUE(request);
  EXPECT_EQ(request->type, unsigned(IOASID_FAULT_PAGE_REQ));
  EXPECT_EQ(request->addr, iova);
  map_memory(s.ioas, memory.bytes(), {.iova = iova});
  must(s.device.page_response(*request, IOASID_PAGE_RESP_SUCCESS));

  // Waiting: the owner maps the page and answers; the translation comes back whole.
  Anonymous later(k4K);
  const uint64_t waited = iova + k2M;
  std::thread owner([&] {
    auto raised = next_fault(s.node);
    if (!raised) return;
    map_memory(s.ioas, later.bytes(), {.iova = waited});
    must(s.device.page_response(*raised, IOASID_PAGE_RESP_SUCCESS));
  });
  const auto done = translate(s.fd(), s.device.id(), waited, k4K, IOASID_ATS_PASID, pasid);
  owner.join();
  ASSERT_EQ(done.err, kOk);
  EXPECT_EQ(done.request.out_status, unsigned(IOASID_ATS_OK));
  ASSERT_EQ(done.runs.size(), 1u);
  EXPECT_EQ(done.runs[0].uaddr, reinterpret_cast<uint64_t>(later.data));
}

void no_op_handler(int) {}

// A caller waiting in ATS_TRANSLATE for a page response is ended by a signal that runs
// a handler, with EINTR, as a waiting DEVICE_DMA is (docs/SECURITY.md, Signals to a
// waiting client).
TEST(Ats, ASignalEndsTheWaitForAPageResponse) {
  struct sigaction action{};
  action.sa_handler = no_op_handler;  // no SA_RESTART
  struct sigaction previous{};
  ASSERT_EQ(::sigaction(SIGUSR1, &action, &previous), 0);
  AtsSetup s;
  const uint32_t pasid = alloc_pasid(s.node, slot(45));
  must(client::Attachment::attach_pasid(s.device, s.ioas, pasid)).release();
  std::atomic<bool> done{false};
  Translation waited;
  std::chrono::steady_clock::duration elapsed{};
  std::thread model([&] {
    const auto start = std::chrono::steady_clock::now();
    waited = translate(s.fd(), s.device.id(), 1ull << 33, k4K, IOASID_ATS_PASID, pasid);
    elapsed = std::chrono::steady_clock::now() - start;
    done = true;
  });
  const auto request = next_fault(s.node);
  EXPECT_TRUE(request && request->type == IOASID_FAULT_PAGE_REQ);
  ::pthread_kill(model.native_handle(), SIGUSR1);
  EXPECT_TRUE(eventually([&] { return done.load(); }, 5s));
  model.join();
  EXPECT_EQ(waited.err, Err(EINTR));
  EXPECT_LT(elapsed, 1200ms) << "ended by the signal, not by --page-timeout";
  ::sigaction(SIGUSR1, &previous, nullptr);
}

// A device the admin removes answers ENODEV to ATS_TRANSLATE; its holder can still
// acknowledge nothing and unbind. An ATS device of the test's own, added and removed
// through the harness-owned daemon's admin socket.
TEST(Ats, ARemovedDeviceIsEnodev) {
  if (admin_socket_path().empty()) GTEST_SKIP() << "needs the admin socket of a harness-owned daemon";
  const std::string added = admin_request(R"({"cmd":"device-add","spec":"dma,name=atsgone,pci=00:1e.0,ats"})");
  ASSERT_NE(added.find("\"ok\":true"), std::string::npos) << added;
  Node node(O_NONBLOCK);
  auto ioas = must(client::Ioas::allocate(node.file()));
  auto device = bound_device(node, "atsgone");
  must(client::Attachment::attach(device, ioas)).release();
  Anonymous memory(k4K);
  map_memory(ioas, memory.bytes(), {.iova = k2M});
  const auto before = translate(node.fd(), device.id(), k2M, k4K);
  ASSERT_EQ(before.err, kOk);
  EXPECT_EQ(before.request.out_status, unsigned(IOASID_ATS_OK));
  const std::string removed = admin_request(R"({"cmd":"device-remove","device":"atsgone"})");
  ASSERT_NE(removed.find("\"ok\":true"), std::string::npos) << removed;
  EXPECT_EQ(translate(node.fd(), device.id(), k2M, k4K).err, Err(ENODEV));
  ioasid_ats_ack ack{.dev_id = device.id(), .itag = 1};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_ATS_INV_ACK, &ack), Err(EINVAL)) << "nothing is owed";
  EXPECT_TRUE(bool(device.unbind())) << "the holder can still let go of it";
}

// A model translating as fast as it can while the owner maps and unmaps: once UNMAP
// returns, nothing the model holds reaches the old memory.
TEST(Ats, UnmapRacingTranslationsNeverLeavesAStaleEntry) {
  AtsSetup s;
  client::AtsCache cache(s.device);
  auto server = must(client::AtsInvalidationServer::start(s.node.file(), {&cache}));
  Anonymous memory(16 * k4K);
  const uint64_t iova = 1ull << 33;
  std::atomic<bool> stop{false};
  std::thread model([&] {
    std::vector<std::byte> buffer(k4K);
    for (uint64_t i = 0; !stop; ++i) (void)cache.read(iova + (i % 16) * k4K, buffer);
  });
  int stale = 0;
  for (int round = 0; round < 1000; ++round) {
    map_memory(s.ioas, memory.bytes(), {.iova = iova});
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    ASSERT_EQ(unmap(s.fd(), s.ioas.id(), iova, 16 * k4K), kOk);
    std::vector<std::byte> buffer(k4K);
    for (uint64_t page = 0; page < 16; ++page)
      if (must(cache.read(iova + page * k4K, buffer)).ok()) ++stale;
  }
  stop = true;
  model.join();
  EXPECT_EQ(stale, 0) << "a translation was usable after the UNMAP that removed it returned";
  EXPECT_GT(cache.stats().invalidations, 0u);
}

#ifdef ATS_COPY_PATH
// examples/ats-copy: its engine copies and checksums through its ATC, and sees a moved
// guest page after the invalidation; it checks its own results and says so by its exit.
TEST(Ats, TheAtsCopyExampleRuns) {
  const char* given = std::getenv("ATS_COPY");
  const std::string program = given && *given ? given : ATS_COPY_PATH;
  const pid_t child = ::fork();
  if (child == 0) {
    ::setenv("IOASID_DEV", node_path().c_str(), 1);
    const int quiet = ::open("/dev/null", O_WRONLY);
    ::dup2(quiet, STDOUT_FILENO);
    ::execl(program.c_str(), program.c_str(), nullptr);
    ::_exit(127);
  }
  int status = 0;
  ASSERT_TRUE(wait_pid_for(child, 60s, &status)) << program << " still running after 60 s";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << program << ": " << describe_status(status);
}
#endif

}  // namespace
}  // namespace conf

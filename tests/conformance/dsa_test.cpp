// SPDX-License-Identifier: MIT
// The dsa engine (dsa0): WQ_CONFIG and DEVICE_SUBMIT rows, every opcode's result and
// its completion record byte for byte, the device's descriptor checks, faults with and
// without block on fault, GPASID, the isolation of the clients of one shared WQ, the
// WQs' lifecycle and the PASIDs that WQs and queued descriptors hold. Each client keeps
// its memory in a memfd mapped shared at IOVA kBase: the daemon maps it directly, so
// what the device writes (data, completion records) is visible in the client's mapping,
// which the tests poll.
#include "harness.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <iomanip>
#include <memory>
#include <sstream>
#include <thread>

namespace conf {
namespace {

constexpr uint64_t k4K = 4096;
constexpr uint32_t kMapRW = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE;
// Every client's memory: page 0 holds completion records (32 bytes each, slot i at
// record(i)), page 1 batch descriptor lists, the rest data. Nothing is mapped right
// after it (kBase + size) unless a test maps something there.
constexpr uint64_t kBase = 0x40000000;
constexpr uint64_t kLists = kBase + k4K;
constexpr uint64_t kData = kBase + 2 * k4K;
constexpr uint64_t kDefaultSize = 32 * k4K;
constexpr unsigned kSyncSlot = 127;  // the record of sync()'s DRAIN
constexpr uint32_t kCrav = IOASID_DSA_FLAG_CRAV;
constexpr uint32_t kRecord = IOASID_DSA_FLAG_CRAV | IOASID_DSA_FLAG_RCR;  // a record, success or not
constexpr uint32_t kBof = IOASID_DSA_FLAG_BOF;
constexpr uint32_t kSentinel = 0x5a5a5a5a;  // out_status before a submit
constexpr auto kRecordTimeout = 5s;

constexpr uint64_t record(unsigned slot) { return kBase + 32ull * slot; }

// ---------------------------------------------------------------- records

ioasid_dsa_completion rec(uint8_t status, uint32_t bytes_completed = 0, uint64_t fault_addr = 0, uint8_t result = 0,
                          uint32_t value = 0) {
  ioasid_dsa_completion r{};
  r.status = status;
  r.result = result;
  r.bytes_completed = bytes_completed;
  r.fault_addr = fault_addr;
  r.crc_val = value;  // or invalid_flags
  return r;
}

std::string describe(const ioasid_dsa_completion& r) {
  std::ostringstream os;
  os << std::hex << "{status 0x" << unsigned(r.status) << ", result " << unsigned(r.result) << ", bytes_completed 0x"
     << r.bytes_completed << ", fault_addr 0x" << r.fault_addr << ", crc_val/invalid_flags 0x" << r.crc_val
     << ", bytes";
  const auto* b = reinterpret_cast<const uint8_t*>(&r);
  for (size_t i = 0; i < sizeof r; ++i) os << (i % 8 ? "" : " ") << std::setw(2) << std::setfill('0') << unsigned(b[i]);
  os << "}";
  return os.str();
}

uint8_t status_of(uint8_t* at) { return std::atomic_ref<uint8_t>(*at).load(std::memory_order_acquire); }

// Polls the status byte until it is non-zero (bounded); the record then.
std::optional<ioasid_dsa_completion> wait_record(uint8_t* at, std::chrono::milliseconds timeout = kRecordTimeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (unsigned spin = 0;; ++spin) {
    if (status_of(at)) {
      ioasid_dsa_completion r;
      std::memcpy(&r, at, sizeof r);
      return r;
    }
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    if (spin < 64)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(20us);
  }
}

// The record at `at` arrives and equals `expected` in all 32 bytes.
::testing::AssertionResult record_is(uint8_t* at, const ioasid_dsa_completion& expected) {
  const auto got = wait_record(at);
  if (!got)
    return ::testing::AssertionFailure() << "no completion record within 5 s (status still 0); expected "
                                         << describe(expected);
  if (std::memcmp(&*got, &expected, sizeof expected) != 0)
    return ::testing::AssertionFailure() << "completion record\n   got " << describe(*got) << "\n  want "
                                         << describe(expected);
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i]) return ::testing::AssertionFailure() << "byte " << i << " is 0x" << std::hex << unsigned(p[i]);
  return ::testing::AssertionSuccess();
}

std::vector<uint8_t> pattern(size_t size, uint8_t seed) {
  std::vector<uint8_t> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(seed + i * 13 + (i >> 8));
  return bytes;
}

uint8_t pattern_byte(uint64_t pattern, size_t i) { return static_cast<uint8_t>(pattern >> (8 * (i % 8))); }

// CRC-32C (Castagnoli, reflected), bit by bit: independent of the daemon's tables.
uint32_t crc32c(uint32_t seed, const uint8_t* p, size_t n) {
  uint32_t crc = ~seed;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) ? 0x82f63b78u : 0);
  }
  return ~crc;
}

// ---------------------------------------------------------------- page requests

Errno page_resp(int fd, uint32_t dev, uint32_t pasid, uint32_t grpid, uint32_t code) {
  ioasid_page_response response{
      .dev_id = dev, .flags = IOASID_PAGE_RESP_PASID_VALID, .pasid = pasid, .grpid = grpid, .code = code};
  return ioctl_errno(fd, IOASID_PAGE_RESP, &response);
}

// ---------------------------------------------------------------- work queues

ioasid_wq_config wq_request(uint32_t dev, uint32_t wq, uint32_t flags, uint32_t pasid = 0, uint32_t size = 16,
                            uint32_t priority = 1) {
  return {.dev_id = dev, .wq = wq, .flags = flags, .pasid = pasid, .size = size, .priority = priority};
}
constexpr uint32_t kShared = IOASID_WQ_ENABLE | IOASID_WQ_SHARED;

Errno wq_config(int fd, ioasid_wq_config config) { return ioctl_errno(fd, IOASID_WQ_CONFIG, &config); }
Errno wq_disable(int fd, uint32_t dev, uint32_t wq) { return wq_config(fd, wq_request(dev, wq, 0, 0, 0, 0)); }

// Enables a WQ, waiting while a file of an earlier test that held it is being released.
Errno wq_enable(int fd, const ioasid_wq_config& config) {
  Errno err;
  eventually([&] { return (err = wq_config(fd, config)) != Err(EBUSY); }, kReleaseTimeout);
  return err;
}

struct Submitted {
  Errno err;
  uint32_t out_status = kSentinel;
};
Submitted submit(int fd, uint32_t dev, uint32_t wq, const ioasid_dsa_desc& desc, uint32_t flags = 0) {
  ioasid_device_submit request{.dev_id = dev, .wq = wq, .flags = flags, .out_status = kSentinel};
  static_assert(sizeof desc == sizeof request.desc);
  std::memcpy(request.desc, &desc, sizeof desc);
  Submitted out;
  out.err = ioctl_errno(fd, IOASID_DEVICE_SUBMIT, &request);
  out.out_status = request.out_status;
  return out;
}
std::ostream& operator<<(std::ostream& os, const Submitted& s) {
  return os << "{" << s.err << ", out_status " << s.out_status << "}";
}
bool accepted(const Submitted& s) { return s.err == kOk && s.out_status == IOASID_SUBMIT_ACCEPTED; }
bool retry(const Submitted& s) { return s.err == kOk && s.out_status == IOASID_SUBMIT_RETRY; }
// An error: out_status is not written.
bool refused(const Submitted& s, int e) { return s.err == Err(e) && s.out_status == kSentinel; }

ioasid_dsa_desc desc(uint32_t pasid, uint32_t op, uint32_t flags, uint64_t completion = 0, uint64_t src = 0,
                     uint64_t dst = 0, uint32_t size = 0) {
  ioasid_dsa_desc d{};
  d.pasid = pasid;
  d.opflags = IOASID_DSA_OPFLAGS(op, flags);
  d.completion_addr = completion;
  d.src = src;
  d.dst = dst;
  d.xfer_size = size;
  return d;
}

// ---------------------------------------------------------------- a client of dsa0

// One open file: a PASID (with a guest PASID if asked), a kernel-managed IOASID with
// `size` bytes of memfd memory at kBase, dsa0 bound and the PASID attached to it. All
// but the IOASID (kept to map more) is left to the daemon, as a raw ioctl would be.
struct Client {
  explicit Client(unsigned pasid_slot, uint64_t size = kDefaultSize, std::optional<uint32_t> gpasid = std::nullopt)
      : node(O_NONBLOCK), mem(size, true), pasid(alloc_pasid(node, slot(pasid_slot), gpasid)),
        ioas(must(client::Ioas::allocate(node.file()))), ioasid(ioas.id()) {
    map_memory(ioas, mem.mapped(), {.iova = kBase});
    auto dsa0 = bound_device(node, "dsa0");
    must(client::Attachment::attach_pasid(dsa0, ioas, pasid)).release();
    dev = dsa0.release();
  }
  int fd() const { return node.fd(); }
  uint64_t end() const { return kBase + mem.size; }  // the first IOVA past the memory
  uint8_t* at(uint64_t iova) const { return mem.bytes() + (iova - kBase); }
  // close(2) of the file, which takes everything with it.
  void close() {
    ioas.release();
    node.close();
  }

  // MAP_DMA of `memory`'s shared mapping at `iova`, left until the file closes.
  Errno map(const Memfd& memory, uint64_t iova, uint32_t flags = kMapRW) const {
    auto mapping = client::Mapping::map_dma(ioas, memory.mapped(), {.flags = flags, .iova = iova});
    if (mapping) mapping->release();
    return Errno{mapping.code()};
  }
  Errno enable(uint32_t wq, uint32_t flags = kShared, uint32_t size = 16) const {
    return wq_enable(fd(), wq_request(dev, wq, flags, flags & IOASID_WQ_SHARED ? 0 : pasid, size));
  }
  ioasid_dsa_desc make(uint32_t op, uint32_t flags, uint64_t completion = 0, uint64_t src = 0, uint64_t dst = 0,
                       uint32_t size = 0) const {
    return desc(pasid, op, flags, completion, src, dst, size);
  }
  Submitted submit(uint32_t wq, const ioasid_dsa_desc& d, uint32_t flags = 0) const {
    return conf::submit(fd(), dev, wq, d, flags);
  }
  // Submits d and expects it accepted.
  void run(uint32_t wq, const ioasid_dsa_desc& d) const {
    const auto s = submit(wq, d);
    EXPECT_TRUE(accepted(s)) << s;
  }
  // Runs `d` (which writes its record at `slot`) and checks the record.
  ::testing::AssertionResult expect(uint32_t wq, unsigned slot, ioasid_dsa_desc d,
                                    const ioasid_dsa_completion& expected) const {
    d.completion_addr = record(slot);
    if (const auto s = submit(wq, d); !accepted(s)) return ::testing::AssertionFailure() << "submit: " << s;
    return record_is(at(record(slot)), expected);
  }
  // A DRAIN that completes once everything submitted before it to `wq` has.
  ::testing::AssertionResult sync(uint32_t wq) const {
    std::memset(at(record(kSyncSlot)), 0, 32);
    return expect(wq, kSyncSlot, make(IOASID_DSA_OPCODE_DRAIN, kRecord), rec(IOASID_DSA_COMP_SUCCESS));
  }
  void write(uint64_t iova, const std::vector<uint8_t>& bytes) const {
    std::copy(bytes.begin(), bytes.end(), at(iova));
  }
  bool holds(uint64_t iova, const std::vector<uint8_t>& bytes) const {
    return std::equal(bytes.begin(), bytes.end(), at(iova));
  }

  Node node;
  Memfd mem;
  uint32_t pasid = 0;
  client::Ioas ioas;
  uint32_t ioasid = 0;
  uint32_t dev = 0;
};

// A PASID nobody holds: allocated and freed again by this file.
uint32_t unallocated_pasid(const Node& node, unsigned pasid_slot) {
  const Range r = slot(pasid_slot);
  auto pasid = must(client::Pasid::allocate(node.file(), client::PasidRange{r.lo, r.hi}));
  const uint32_t value = pasid.value();
  must(pasid.free());
  return value;
}

ioasid_device_info device_info(int fd, uint32_t dev) {
  ioasid_device_info info{.dev_id = dev};
  EXPECT_EQ(ioctl_errno(fd, IOASID_DEVICE_GET_INFO, &info), kOk);
  return info;
}

// ================================================================ WQ_CONFIG

TEST(DsaWqConfig, Rows) {
  Client a(30), b(31);
  const auto info = device_info(a.fd(), a.dev);
  EXPECT_EQ(info.type, uint32_t(IOASID_DEVICE_TYPE_DSA));
  EXPECT_EQ(info.flags, uint32_t(IOASID_DEVICE_PASID | IOASID_DEVICE_PRI | IOASID_DEVICE_ATS | IOASID_DEVICE_SIOV));
  EXPECT_EQ(info.num_wqs, 8u);
  ASSERT_GE(info.num_wqs, 2u);
  const uint32_t wqs = info.num_wqs;
  const uint32_t dma0 = bind_device(a.node, "dma0");
  const uint32_t w = 0;
  // Start from a disabled WQ (an earlier test's file may still be releasing it).
  ASSERT_EQ(a.enable(w), kOk);
  ASSERT_EQ(wq_disable(a.fd(), a.dev, w), kOk);
  const uint32_t nobody = unallocated_pasid(a.node, 30);

  const auto shared = wq_request(a.dev, w, kShared);
  auto with = [&](auto change) {
    ioasid_wq_config c = shared;
    change(c);
    return wq_config(a.fd(), c);
  };
  EXPECT_EQ(with([](auto& c) { c.flags |= 1u << 3; }), Err(EOPNOTSUPP)) << "unknown flag";
  EXPECT_EQ(with([](auto& c) { c.flags = 1u << 31; }), Err(EOPNOTSUPP)) << "unknown flag without ENABLE";
  EXPECT_EQ(with([](auto& c) { c.__reserved = 1; }), Err(EOPNOTSUPP)) << "__reserved";
  EXPECT_EQ(with([&](auto& c) { c.flags |= 1u << 3, c.dev_id = a.dev + 100; }), Err(EOPNOTSUPP))
      << "flags before dev_id";
  EXPECT_EQ(with([&](auto& c) { c.dev_id = a.dev + 100; }), Err(ENOENT)) << "no such dev_id";
  EXPECT_EQ(with([&](auto& c) { c.dev_id = a.dev + 100, c.wq = wqs; }), Err(ENOENT)) << "dev_id before wq";
  EXPECT_EQ(with([&](auto& c) { c.dev_id = dma0; }), Err(EOPNOTSUPP)) << "dma0 has no work queues";
  EXPECT_EQ(with([&](auto& c) { c.dev_id = dma0, c.wq = wqs; }), Err(EOPNOTSUPP)) << "device type before wq";
  EXPECT_EQ(with([&](auto& c) { c.wq = wqs; }), Err(EINVAL)) << "wq == num_wqs";
  EXPECT_EQ(with([&](auto& c) { c.wq = ~0u; }), Err(EINVAL)) << "wq ~0";
  EXPECT_EQ(wq_disable(a.fd(), a.dev, wqs), Err(EINVAL)) << "disabling wq == num_wqs";
  EXPECT_EQ(with([](auto& c) { c.size = 0; }), Err(EINVAL)) << "size 0";
  EXPECT_EQ(with([](auto& c) { c.size = 129; }), Err(EINVAL)) << "size 129";
  EXPECT_EQ(with([](auto& c) { c.priority = 0; }), Err(EINVAL)) << "priority 0";
  EXPECT_EQ(with([](auto& c) { c.priority = 16; }), Err(EINVAL)) << "priority 16";
  EXPECT_EQ(with([&](auto& c) { c.pasid = a.pasid; }), Err(EINVAL)) << "SHARED with a pasid";
  EXPECT_EQ(with([&](auto& c) { c.flags = IOASID_WQ_ENABLE, c.pasid = nobody; }), Err(ENOENT))
      << "dedicated to an unallocated PASID";
  EXPECT_EQ(with([&](auto& c) { c.flags = IOASID_WQ_ENABLE, c.pasid = 0; }), Err(ENOENT)) << "dedicated to PASID 0";
  EXPECT_EQ(with([&](auto& c) { c.flags = IOASID_WQ_ENABLE, c.pasid = b.pasid; }), Err(EACCES))
      << "dedicated to another file's PASID";
  EXPECT_EQ(with([&](auto& c) { c.flags = IOASID_WQ_ENABLE, c.pasid = nobody, c.size = 0; }), Err(EINVAL))
      << "size before the PASID";
  // None of these enabled anything.
  EXPECT_TRUE(refused(a.submit(w, a.make(IOASID_DSA_OPCODE_NOOP, 0)), EINVAL)) << "the WQ is still disabled";

  // The limits themselves are accepted; the file that enables the WQ owns it.
  ASSERT_EQ(with([](auto& c) { c.size = 128, c.priority = 15; }), kOk);
  EXPECT_EQ(wq_config(a.fd(), shared), Err(EBUSY)) << "enabled already";
  EXPECT_EQ(wq_config(a.fd(), wq_request(a.dev, w, IOASID_WQ_ENABLE, a.pasid)), Err(EBUSY)) << "as dedicated";
  EXPECT_EQ(wq_config(b.fd(), wq_request(b.dev, w, kShared)), Err(EBUSY)) << "by another file";
  EXPECT_EQ(wq_config(b.fd(), wq_request(b.dev, w, IOASID_WQ_ENABLE, a.pasid)), Err(EACCES))
      << "the PASID before the WQ's state";
  EXPECT_EQ(with([&](auto& c) { c.priority = 0; }), Err(EINVAL)) << "field values before the WQ's state";

  // Disabling takes every other field 0.
  EXPECT_EQ(wq_config(a.fd(), wq_request(a.dev, w, IOASID_WQ_SHARED, 0, 0, 0)), Err(EINVAL)) << "SHARED";
  EXPECT_EQ(wq_config(a.fd(), wq_request(a.dev, w, IOASID_WQ_BOF, 0, 0, 0)), Err(EINVAL)) << "BOF";
  EXPECT_EQ(wq_config(a.fd(), wq_request(a.dev, w, 0, a.pasid, 0, 0)), Err(EINVAL)) << "pasid";
  EXPECT_EQ(wq_config(a.fd(), wq_request(a.dev, w, 0, 0, 16, 0)), Err(EINVAL)) << "size";
  EXPECT_EQ(wq_config(a.fd(), wq_request(a.dev, w, 0, 0, 0, 1)), Err(EINVAL)) << "priority";
  EXPECT_EQ(wq_disable(b.fd(), b.dev, w), Err(EBUSY)) << "another file's WQ";
  // Still enabled, by a, and serving.
  EXPECT_TRUE(a.expect(w, 0, a.make(IOASID_DSA_OPCODE_NOOP, kRecord), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_TRUE(accepted(b.submit(w, b.make(IOASID_DSA_OPCODE_NOOP, 0)))) << "a shared WQ serves b too";

  EXPECT_EQ(wq_disable(a.fd(), a.dev, w), kOk);
  EXPECT_EQ(wq_disable(a.fd(), a.dev, w), kOk) << "a disabled WQ answers 0";
  EXPECT_EQ(wq_disable(b.fd(), b.dev, w), kOk) << "to anyone";
  EXPECT_TRUE(refused(a.submit(w, a.make(IOASID_DSA_OPCODE_NOOP, 0)), EINVAL)) << "disabled";
  // Free for anyone now: b dedicates it to its PASID, with BOF (dsa0 has PRI).
  ASSERT_EQ(wq_config(b.fd(), wq_request(b.dev, w, IOASID_WQ_ENABLE | IOASID_WQ_BOF, b.pasid, 1, 15)), kOk);
  EXPECT_TRUE(b.expect(w, 0, b.make(IOASID_DSA_OPCODE_NOOP, kRecord), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_EQ(wq_disable(a.fd(), a.dev, w), Err(EBUSY));
  EXPECT_EQ(wq_disable(b.fd(), b.dev, w), kOk);
  EXPECT_TRUE(all_zero(a.at(record(1)), 32 * 126)) << "only the records asked for were written";
}

// A dsa device without PRI refuses BOF; a removed one answers ENODEV. Adds its own
// device through the harness-owned daemon's admin socket and removes it afterwards.
TEST(DsaWqConfig, BofNeedsPriAndARemovedDeviceIsEnodev) {
  if (admin_socket_path().empty()) GTEST_SKIP() << "needs the admin socket of a harness-owned daemon";
  const std::string added = admin_request(R"({"cmd":"device-add","spec":"dsa,name=dsa9,pci=00:09.0,pasid=20,wqs=2"})");
  ASSERT_NE(added.find("\"ok\":true"), std::string::npos) << added;
  Node node;
  const uint32_t dev = bind_device(node, "dsa9");
  const uint32_t pasid = alloc_pasid(node, slot(32));
  const auto info = device_info(node.fd(), dev);
  EXPECT_EQ(info.num_wqs, 2u);
  EXPECT_EQ(info.flags, uint32_t(IOASID_DEVICE_PASID | IOASID_DEVICE_SIOV));
  EXPECT_EQ(wq_config(node.fd(), wq_request(dev, 2, kShared)), Err(EINVAL)) << "wq 2 of 2";
  EXPECT_EQ(wq_config(node.fd(), wq_request(dev, 1, kShared | IOASID_WQ_BOF)), Err(EINVAL)) << "BOF without PRI";
  EXPECT_EQ(wq_config(node.fd(), wq_request(dev, 1, IOASID_WQ_ENABLE | IOASID_WQ_BOF, pasid)), Err(EINVAL));
  EXPECT_EQ(wq_config(node.fd(), wq_request(dev, 1, kShared)), kOk);
  EXPECT_EQ(wq_disable(node.fd(), dev, 1), kOk);

  const std::string removed = admin_request(R"({"cmd":"device-remove","device":"dsa9"})");
  ASSERT_NE(removed.find("\"ok\":true"), std::string::npos) << removed;
  EXPECT_EQ(wq_config(node.fd(), wq_request(dev, 1, kShared)), Err(ENODEV));
  EXPECT_EQ(wq_config(node.fd(), wq_request(dev, 1, kShared | (1u << 5))), Err(EOPNOTSUPP)) << "flags first";
  EXPECT_TRUE(refused(submit(node.fd(), dev, 1, desc(pasid, IOASID_DSA_OPCODE_NOOP, 0)), ENODEV));
  ioasid_device_unbind unbind{.dev_id = dev};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_DEVICE_UNBIND, &unbind), kOk);
}

// ================================================================ DEVICE_SUBMIT

TEST(DsaSubmit, Rows) {
  Client a(33), b(34);
  const uint32_t wqs = device_info(a.fd(), a.dev).num_wqs;
  const uint32_t dma0 = bind_device(a.node, "dma0");
  const uint32_t shared = 1, dedicated = 2, disabled = 3;
  ASSERT_EQ(a.enable(shared), kOk);
  ASSERT_EQ(a.enable(dedicated, IOASID_WQ_ENABLE), kOk);
  ASSERT_EQ(a.enable(disabled), kOk);
  ASSERT_EQ(wq_disable(a.fd(), a.dev, disabled), kOk);
  const uint32_t nobody = unallocated_pasid(a.node, 33);
  const uint64_t dst = kData;
  // A MEMFILL of a's memory with a record: what each refused submit would have done.
  const ioasid_dsa_desc fill = a.make(IOASID_DSA_OPCODE_MEMFILL, kRecord, record(0), 0x1111111111111111ull, dst, 256);

  EXPECT_TRUE(refused(submit(a.fd(), a.dev, shared, fill, 1u << 1), EOPNOTSUPP)) << "unknown flag";
  EXPECT_TRUE(refused(submit(a.fd(), a.dev, shared, fill, 1u << 31), EOPNOTSUPP)) << "unknown flag";
  EXPECT_TRUE(refused(submit(a.fd(), a.dev + 100, shared, fill, 1u << 1), EOPNOTSUPP)) << "flags before dev_id";
  EXPECT_TRUE(refused(submit(a.fd(), a.dev + 100, shared, fill), ENOENT)) << "no such dev_id";
  EXPECT_TRUE(refused(submit(a.fd(), a.dev + 100, wqs, fill), ENOENT)) << "dev_id before wq";
  EXPECT_TRUE(refused(submit(a.fd(), dma0, shared, fill), EOPNOTSUPP)) << "dma0 has no work queues";
  EXPECT_TRUE(refused(submit(a.fd(), a.dev, wqs, fill), EINVAL)) << "wq == num_wqs";
  EXPECT_TRUE(refused(submit(a.fd(), a.dev, disabled, fill), EINVAL)) << "WQ not enabled";
  EXPECT_TRUE(refused(submit(b.fd(), b.dev, dedicated, fill), EACCES)) << "another file's dedicated WQ";
  EXPECT_TRUE(refused(submit(a.fd(), a.dev, dedicated, fill, IOASID_SUBMIT_GPASID), EINVAL)) << "GPASID, dedicated";
  auto at_pasid = [&](uint32_t pasid) {
    ioasid_dsa_desc d = fill;
    d.pasid = pasid;
    return d;
  };
  EXPECT_TRUE(refused(submit(a.fd(), a.dev, shared, at_pasid(nobody)), ENOENT)) << "unallocated PASID";
  EXPECT_TRUE(refused(submit(a.fd(), a.dev, shared, at_pasid(0)), ENOENT)) << "PASID 0";
  EXPECT_TRUE(refused(submit(a.fd(), a.dev, shared, at_pasid(b.pasid)), EACCES)) << "another file's PASID";
  // b names a's PASID, aiming at a's memory: refused, and nothing is written there.
  EXPECT_TRUE(refused(submit(b.fd(), b.dev, shared, fill), EACCES)) << "b naming a's PASID";
  EXPECT_TRUE(refused(submit(a.fd(), a.dev, shared, fill, IOASID_SUBMIT_GPASID), ENOENT)) << "unmapped guest PASID";
  ioasid_dsa_desc misaligned = fill;
  misaligned.completion_addr = record(1) + 16;
  EXPECT_TRUE(refused(submit(a.fd(), a.dev, shared, misaligned), EINVAL)) << "completion_addr not 32-byte aligned";
  misaligned.completion_addr = record(1) + 8;
  EXPECT_TRUE(refused(submit(a.fd(), a.dev, dedicated, misaligned), EINVAL)) << "on a dedicated WQ too";

  ASSERT_TRUE(a.sync(shared));
  ASSERT_TRUE(a.sync(dedicated));
  EXPECT_TRUE(all_zero(a.at(record(0)), 32 * 127)) << "no refused descriptor wrote a record";
  EXPECT_TRUE(all_zero(a.at(dst), 256)) << "no refused descriptor ran";

  // Without CRAV the completion address is not looked at.
  ioasid_dsa_desc no_record = a.make(IOASID_DSA_OPCODE_MEMFILL, 0, record(1) + 1, 0x2222222222222222ull, dst, 64);
  EXPECT_TRUE(accepted(a.submit(shared, no_record)));
  ASSERT_TRUE(a.sync(shared));
  EXPECT_EQ(a.at(dst)[63], 0x22);
  EXPECT_TRUE(all_zero(a.at(record(0)), 32 * 127));

  // A dedicated WQ runs everything at its PASID; the descriptor's PASID is ignored.
  for (uint32_t ignored : {0u, nobody, b.pasid}) {
    std::memset(a.at(record(0)), 0, 32);
    EXPECT_TRUE(a.expect(dedicated, 0, at_pasid(ignored), rec(IOASID_DSA_COMP_SUCCESS))) << "pasid " << ignored;
    EXPECT_EQ(a.at(dst)[255], 0x11);
    std::memset(a.at(dst), 0, 256);
  }
  EXPECT_TRUE(all_zero(b.at(kBase), b.mem.size)) << "b's memory was never touched";
}

// ================================================================ operations

TEST(DsaOps, NoopMemmoveMemfill) {
  Client c(35);
  const uint32_t wq = 3;
  ASSERT_EQ(c.enable(wq), kOk);
  EXPECT_TRUE(c.expect(wq, 0, c.make(IOASID_DSA_OPCODE_NOOP, kRecord), rec(IOASID_DSA_COMP_SUCCESS)));

  // MEMMOVE across page boundaries, at unaligned addresses.
  const auto data = pattern(5000, 0x21);
  const uint64_t src = kData + 13, dst = kData + 4 * k4K + 7;
  c.write(src, data);
  EXPECT_TRUE(c.expect(wq, 1, c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, 0, src, dst, 5000),
                       rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_TRUE(c.holds(dst, data));
  EXPECT_EQ(c.at(dst)[-1], 0) << "the byte before";
  EXPECT_EQ(c.at(dst)[5000], 0) << "the byte after";
  EXPECT_TRUE(c.holds(src, data)) << "the source is unchanged";

  // MEMFILL: byte i of the destination is byte i % 8 of the pattern, from the
  // destination's start (odd here) and for a length that is not a multiple of 8.
  const uint64_t fill = 0x8877665544332211ull;
  for (const auto& [start, length] : {std::pair<uint64_t, uint32_t>{kData + 8 * k4K + 3, 45},
                                      std::pair<uint64_t, uint32_t>{kData + 10 * k4K - 5, 3 * 4096 + 7},
                                      std::pair<uint64_t, uint32_t>{kData + 16 * k4K, 8}}) {
    std::memset(c.at(record(2)), 0, 32);
    EXPECT_TRUE(c.expect(wq, 2, c.make(IOASID_DSA_OPCODE_MEMFILL, kRecord, 0, fill, start, length),
                         rec(IOASID_DSA_COMP_SUCCESS)));
    for (uint32_t i = 0; i < length; ++i)
      ASSERT_EQ(c.at(start)[i], pattern_byte(fill, i)) << "byte " << i << " of a fill of " << length;
    EXPECT_EQ(c.at(start)[-1], 0);
    EXPECT_EQ(c.at(start)[length], 0);
  }
  EXPECT_TRUE(all_zero(c.at(record(3)), 32 * 124)) << "no other record";
}

TEST(DsaOps, OverlappingMemmoveIsMemmove) {
  Client c(36);
  const uint32_t wq = 4;
  ASSERT_EQ(c.enable(wq), kOk);
  const uint64_t region = kData + 2 * k4K + 100;
  const size_t span = 4 * k4K;
  struct Case {
    uint64_t src, dst;
    uint32_t size;
  };
  const Case cases[] = {
      {region, region + 1000, 6000},      // dst above src: copied from the end
      {region + 1500, region + 10, 7000},  // dst below src
      {region, region + 1, 3 * 4096},      // by one byte, across pages
      {region + 9, region, 4096},
  };
  unsigned slot = 0;
  for (const Case& k : cases) {
    auto expected = pattern(span, static_cast<uint8_t>(0x40 + slot));
    c.write(region, expected);
    std::memmove(expected.data() + (k.dst - region), expected.data() + (k.src - region), k.size);
    EXPECT_TRUE(c.expect(wq, slot, c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, 0, k.src, k.dst, k.size),
                         rec(IOASID_DSA_COMP_SUCCESS)))
        << "case " << slot;
    EXPECT_TRUE(c.holds(region, expected)) << "case " << slot << ": memmove semantics";
    ++slot;
  }
}

TEST(DsaOps, CompareAndCompval) {
  Client c(37);
  const uint32_t wq = 5;
  ASSERT_EQ(c.enable(wq), kOk);
  const uint64_t a = kData + 5, b = kData + 3 * k4K + 11;
  const uint32_t size = 6000;
  const auto data = pattern(size, 0x17);
  c.write(a, data);
  c.write(b, data);
  const auto compare = [&](uint32_t flags, uint8_t expected_res = 0) {
    auto d = c.make(IOASID_DSA_OPCODE_COMPARE, flags, 0, a, b, size);
    d.expected_res = expected_res;
    return d;
  };
  constexpr uint8_t kSucc = IOASID_DSA_COMP_SUCCESS, kPred = IOASID_DSA_COMP_SUCCESS_PRED;
  EXPECT_TRUE(c.expect(wq, 0, compare(kRecord), rec(kSucc))) << "equal";
  c.at(b)[4321] ^= 0x40;  // the first difference
  c.at(b)[5000] ^= 0x01;
  EXPECT_TRUE(c.expect(wq, 1, compare(kRecord), rec(kSucc, 4321, 0, 1))) << "different";
  // With CR: a result other than expected_res is SUCCESS_PRED, and then a record is
  // written without RCR too.
  EXPECT_TRUE(c.expect(wq, 2, compare(kCrav | IOASID_DSA_FLAG_CR, 0), rec(kPred, 4321, 0, 1)));
  EXPECT_TRUE(c.expect(wq, 3, compare(kRecord | IOASID_DSA_FLAG_CR, 1), rec(kSucc, 4321, 0, 1)));
  c.at(b)[4321] ^= 0x40;
  c.at(b)[5000] ^= 0x01;
  EXPECT_TRUE(c.expect(wq, 4, compare(kCrav | IOASID_DSA_FLAG_CR, 1), rec(kPred))) << "equal, 1 expected";
  c.at(a)[0] ^= 0xff;
  EXPECT_TRUE(c.expect(wq, 5, compare(kRecord), rec(kSucc, 0, 0, 1))) << "the first byte differs";
  c.at(a)[0] ^= 0xff;
  c.at(a)[size - 1] ^= 0xff;
  EXPECT_TRUE(c.expect(wq, 6, compare(kRecord), rec(kSucc, size - 1, 0, 1))) << "the last byte differs";

  // COMPVAL: src against the 8-byte pattern in dst, repeated from src's start.
  const uint64_t value = 0x0123456789abcdefull;
  const uint64_t v = kData + 8 * k4K + 3;
  for (uint32_t i = 0; i < size; ++i) c.at(v)[i] = pattern_byte(value, i);
  const auto compval = [&](uint32_t flags, uint8_t expected_res = 0) {
    auto d = c.make(IOASID_DSA_OPCODE_COMPVAL, flags, 0, v, value, size);
    d.expected_res = expected_res;
    return d;
  };
  EXPECT_TRUE(c.expect(wq, 7, compval(kRecord), rec(kSucc))) << "equal";
  c.at(v)[77] ^= 0x10;
  EXPECT_TRUE(c.expect(wq, 8, compval(kRecord), rec(kSucc, 77, 0, 1))) << "different";
  EXPECT_TRUE(c.expect(wq, 9, compval(kCrav | IOASID_DSA_FLAG_CR, 0), rec(kPred, 77, 0, 1)));
  EXPECT_TRUE(c.expect(wq, 10, compval(kRecord | IOASID_DSA_FLAG_CR, 1), rec(kSucc, 77, 0, 1)));
  EXPECT_TRUE(all_zero(c.at(record(11)), 32 * 116)) << "no other record";
}

TEST(DsaOps, Crcgen) {
  Client c(38);
  const uint32_t wq = 6;
  ASSERT_EQ(c.enable(wq), kOk);
  const std::string check = "123456789";
  const uint64_t text = kData + 2 * k4K - 4;  // across a page boundary
  std::copy(check.begin(), check.end(), c.at(text));
  ASSERT_EQ(crc32c(0, c.at(text), 9), 0xe3069283u) << "the test's own CRC-32C";
  auto crc = [&](uint64_t src, uint32_t size, uint32_t seed) {
    auto d = c.make(IOASID_DSA_OPCODE_CRCGEN, kRecord, 0, src, 0, size);
    d.crc_seed = seed;
    return d;
  };
  EXPECT_TRUE(c.expect(wq, 0, crc(text, 9, 0), rec(IOASID_DSA_COMP_SUCCESS, 0, 0, 0, 0xe3069283u)));
  // Chained: "12345", then "6789" seeded with the first CRC.
  const uint32_t first = crc32c(0, c.at(text), 5);
  EXPECT_TRUE(c.expect(wq, 1, crc(text, 5, 0), rec(IOASID_DSA_COMP_SUCCESS, 0, 0, 0, first)));
  EXPECT_TRUE(c.expect(wq, 2, crc(text + 5, 4, first), rec(IOASID_DSA_COMP_SUCCESS, 0, 0, 0, 0xe3069283u)));
  // RFC 3720's vectors: 32 bytes of 0 and of 0xff; and a larger buffer.
  const std::vector<uint8_t> zero_bytes(32, 0), one_bytes(32, 0xff);
  ASSERT_EQ(crc32c(0, zero_bytes.data(), 32), 0x8a9136aau);
  ASSERT_EQ(crc32c(0, one_bytes.data(), 32), 0x62a8ab43u);
  const uint64_t zeros = kData + 4 * k4K, ones = zeros + 64;
  std::memset(c.at(ones), 0xff, 32);
  EXPECT_TRUE(c.expect(wq, 3, crc(zeros, 32, 0), rec(IOASID_DSA_COMP_SUCCESS, 0, 0, 0, 0x8a9136aau)));
  EXPECT_TRUE(c.expect(wq, 4, crc(ones, 32, 0), rec(IOASID_DSA_COMP_SUCCESS, 0, 0, 0, 0x62a8ab43u)));
  const auto big = pattern(5 * k4K + 3, 0x99);
  c.write(kData + 6 * k4K + 1, big);
  EXPECT_TRUE(c.expect(wq, 5, crc(kData + 6 * k4K + 1, uint32_t(big.size()), 0x12345678),
                       rec(IOASID_DSA_COMP_SUCCESS, 0, 0, 0, crc32c(0x12345678, big.data(), big.size()))));
}

// ================================================================ completion records

TEST(DsaRecords, WrittenWithCravWhenAskedOrWhenFailed) {
  Client c(35);
  const uint32_t wq = 7;
  ASSERT_EQ(c.enable(wq), kOk);
  const auto data = pattern(100, 0x33);
  c.write(kData, data);
  // Successes without RCR write nothing; nor does anything without CRAV.
  c.run(wq, c.make(IOASID_DSA_OPCODE_NOOP, kCrav, record(0)));
  c.run(wq, c.make(IOASID_DSA_OPCODE_MEMMOVE, kCrav, record(1), kData, kData + k4K, 100));
  c.run(wq, c.make(IOASID_DSA_OPCODE_NOOP, IOASID_DSA_FLAG_RCR, record(2)));
  c.run(wq, c.make(0x07, IOASID_DSA_FLAG_RCR, record(3)));
  c.run(wq, c.make(IOASID_DSA_OPCODE_MEMMOVE, 0, record(4), kData, c.end() - 10, 100));
  ASSERT_TRUE(c.sync(wq));
  EXPECT_TRUE(all_zero(c.at(record(0)), 5 * 32)) << "no record without RCR on success, none without CRAV";
  EXPECT_TRUE(c.holds(kData + k4K, data)) << "the MEMMOVE ran";
  EXPECT_TRUE(std::equal(data.begin(), data.begin() + 10, c.at(c.end() - 10))) << "and the faulting one too";
  // Failures with CRAV write their record without RCR.
  EXPECT_TRUE(c.expect(wq, 5, c.make(0x07, kCrav), rec(IOASID_DSA_COMP_BAD_OPCODE)));
  EXPECT_TRUE(c.expect(wq, 6, c.make(IOASID_DSA_OPCODE_MEMMOVE, kCrav, 0, kData, c.end() - 10, 100),
                       rec(IOASID_DSA_COMP_PAGE_FAULT_NOBOF | IOASID_DSA_COMP_STATUS_WRITE, 10, c.end())));
  EXPECT_TRUE(all_zero(c.at(record(7)), 32 * 120)) << "no other record";
  EXPECT_TRUE(drain_faults(c.node).empty()) << "the device reports its faults in the record only";
}

// ================================================================ descriptor checks

TEST(DsaDescriptorChecks, StatusCodes) {
  Client c(36, 2 * k4K + (2u << 20) + k4K);
  const uint32_t wq = 0;
  ASSERT_EQ(c.enable(wq, kShared, 64), kOk);
  const uint64_t dst = kData;
  auto mv = [&](uint32_t flags = kRecord) { return c.make(IOASID_DSA_OPCODE_MEMMOVE, flags, 0, kLists, dst, 64); };
  auto changed = [](ioasid_dsa_desc d, auto change) {
    change(d);
    return d;
  };
  // Batch lists: valid descriptors, never fetched here.
  auto batch = [&](uint32_t count, uint64_t list = kLists) {
    return c.make(IOASID_DSA_OPCODE_BATCH, kRecord, 0, list, 0, count);
  };
    struct Row {
    const char* what;
    ioasid_dsa_desc d;
    ioasid_dsa_completion expected;
  };
  const uint32_t cr = IOASID_DSA_FLAG_CR;
  const Row rows[] = {
      {"opcode 0x07", c.make(0x07, kRecord), rec(IOASID_DSA_COMP_BAD_OPCODE)},
      {"opcode 0x11", c.make(0x11, kRecord), rec(IOASID_DSA_COMP_BAD_OPCODE)},
      {"opcode 0xff", c.make(0xff, kRecord), rec(IOASID_DSA_COMP_BAD_OPCODE)},
      {"bad opcode before flags", c.make(0x07, kRecord | cr | (1u << 20)), rec(IOASID_DSA_COMP_BAD_OPCODE)},
      {"CR on MEMMOVE", mv(kRecord | cr), rec(IOASID_DSA_COMP_INVALID_FLAGS, 0, 0, 0, cr)},
      {"CR on NOOP", c.make(IOASID_DSA_OPCODE_NOOP, kRecord | cr), rec(IOASID_DSA_COMP_INVALID_FLAGS, 0, 0, 0, cr)},
      {"unknown flags", mv(kRecord | (1u << 4) | (1u << 23)),
       rec(IOASID_DSA_COMP_INVALID_FLAGS, 0, 0, 0, (1u << 4) | (1u << 23))},
      {"flags before PRIV", changed(mv(kRecord | (1u << 9)), [](auto& d) { d.pasid |= IOASID_DSA_PRIV; }),
       rec(IOASID_DSA_COMP_INVALID_FLAGS, 0, 0, 0, 1u << 9)},
      {"PRIV", changed(mv(), [](auto& d) { d.pasid |= IOASID_DSA_PRIV; }), rec(IOASID_DSA_COMP_PRIV_BAD)},
      {"PRIV before reserved", changed(mv(), [](auto& d) { d.pasid |= IOASID_DSA_PRIV, d.__reserved1 = 1; }),
       rec(IOASID_DSA_COMP_PRIV_BAD)},
      {"__reserved1", changed(mv(), [](auto& d) { d.__reserved1 = 1; }), rec(IOASID_DSA_COMP_NOZERO_RESERVE)},
      {"__reserved2", changed(mv(), [](auto& d) { d.__reserved2 = 1u << 31; }),
       rec(IOASID_DSA_COMP_NOZERO_RESERVE)},
      {"__reserved3[0]", changed(mv(), [](auto& d) { d.__reserved3[0] = 1; }),
       rec(IOASID_DSA_COMP_NOZERO_RESERVE)},
      {"__reserved3[1]", changed(mv(), [](auto& d) { d.__reserved3[1] = 1ull << 63; }),
       rec(IOASID_DSA_COMP_NOZERO_RESERVE)},
      {"PASID bit 20", changed(mv(), [](auto& d) { d.pasid |= 1u << 20; }), rec(IOASID_DSA_COMP_NOZERO_RESERVE)},
      {"PASID bit 30", changed(mv(), [](auto& d) { d.pasid |= 1u << 30; }), rec(IOASID_DSA_COMP_NOZERO_RESERVE)},
      {"crc_seed on MEMMOVE", changed(mv(), [](auto& d) { d.crc_seed = 1; }), rec(IOASID_DSA_COMP_NOZERO_RESERVE)},
      {"expected_res is one byte",
       c.make(IOASID_DSA_OPCODE_COMPARE, kRecord | cr, 0, kLists, kLists, 64), rec(IOASID_DSA_COMP_SUCCESS)},
      {"beyond expected_res",
       changed(c.make(IOASID_DSA_OPCODE_COMPARE, kRecord, 0, kLists, kLists, 64), [](auto& d) { d.crc_seed = 0x100; }),
       rec(IOASID_DSA_COMP_NOZERO_RESERVE)},
      {"reserved before int_handle", changed(mv(), [](auto& d) { d.__reserved1 = 1, d.int_handle = 1; }),
       rec(IOASID_DSA_COMP_NOZERO_RESERVE)},
      {"int_handle", changed(mv(), [](auto& d) { d.int_handle = 1; }), rec(IOASID_DSA_COMP_INT_HANDLE_INVAL)},
      {"int_handle before xfer_size", changed(mv(), [](auto& d) { d.int_handle = 0x8000, d.xfer_size = 0; }),
       rec(IOASID_DSA_COMP_INT_HANDLE_INVAL)},
      {"MEMMOVE of 0", changed(mv(), [](auto& d) { d.xfer_size = 0; }), rec(IOASID_DSA_COMP_XFER_ERANGE)},
      {"MEMFILL of 2 MiB + 1", c.make(IOASID_DSA_OPCODE_MEMFILL, kRecord, 0, 1, dst, (2u << 20) + 1),
       rec(IOASID_DSA_COMP_XFER_ERANGE)},
      {"COMPVAL of 0", c.make(IOASID_DSA_OPCODE_COMPVAL, kRecord, 0, kLists, 0, 0), rec(IOASID_DSA_COMP_XFER_ERANGE)},
      {"CRCGEN of ~0", c.make(IOASID_DSA_OPCODE_CRCGEN, kRecord, 0, kLists, 0, ~0u), rec(IOASID_DSA_COMP_XFER_ERANGE)},
      {"BATCH of 1", batch(1), rec(IOASID_DSA_COMP_DESC_CNT_ERANGE)},
      {"BATCH of 33", batch(33), rec(IOASID_DSA_COMP_DESC_CNT_ERANGE)},
      {"BATCH of 0", batch(0), rec(IOASID_DSA_COMP_DESC_CNT_ERANGE)},
      {"BATCH list at +32", batch(2, kLists + 32), rec(IOASID_DSA_COMP_DESCLIST_ALIGN)},
      {"count before alignment", batch(33, kLists + 32), rec(IOASID_DSA_COMP_DESC_CNT_ERANGE)},
  };
  static_assert(std::size(rows) < kSyncSlot);
  for (unsigned i = 0; i < std::size(rows); ++i) {
    ioasid_dsa_desc d = rows[i].d;
    d.completion_addr = record(i);
    const auto s = c.submit(wq, d);
    EXPECT_TRUE(accepted(s)) << rows[i].what << ": " << s;
  }
  for (unsigned i = 0; i < std::size(rows); ++i)
    EXPECT_TRUE(record_is(c.at(record(i)), rows[i].expected)) << rows[i].what;
  EXPECT_TRUE(all_zero(c.at(dst), 2u << 20)) << "no failing descriptor touched memory";

  // The limit itself: a MEMFILL of exactly 2 MiB.
  EXPECT_TRUE(c.expect(wq, 100, c.make(IOASID_DSA_OPCODE_MEMFILL, kRecord, 0, 0x0101010101010101ull, dst, 2u << 20),
                       rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_EQ(c.at(dst)[(2u << 20) - 1], 1);
  EXPECT_EQ(c.at(dst)[2u << 20], 0);
}

// ================================================================ batches

// Writes `list` at kLists; BATCH's children ignore their PASID field, so they carry one
// nobody owns.
void write_list(const Client& c, std::vector<ioasid_dsa_desc> list, uint64_t at = kLists) {
  for (auto& d : list) d.pasid = 0x12345;
  std::memcpy(c.at(at), list.data(), list.size() * sizeof(ioasid_dsa_desc));
}

TEST(DsaBatch, RunsItsDescriptorsInOrderEachWithItsRecord) {
  Client c(37);
  const uint32_t wq = 1;
  ASSERT_EQ(c.enable(wq), kOk);
  const uint64_t a = kData, b = kData + k4K, sum = kData + 2 * k4K;
  const uint64_t fill = 0xf0e0d0c0b0a09080ull;
  write_list(c, {
                    c.make(IOASID_DSA_OPCODE_MEMFILL, kRecord, record(1), fill, a, 1000),
                    c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, record(2), a, b, 1000),  // after the fill
                    c.make(IOASID_DSA_OPCODE_CRCGEN, kRecord, record(3), b, 0, 1000),
                    c.make(IOASID_DSA_OPCODE_COMPARE, kRecord, record(4), a, b, 1000),
                    c.make(IOASID_DSA_OPCODE_NOOP, kCrav, record(5)),  // no record: success without RCR
                    c.make(IOASID_DSA_OPCODE_MEMMOVE, 0, record(6), a, sum, 8),
                });
  EXPECT_TRUE(c.expect(wq, 0, c.make(IOASID_DSA_OPCODE_BATCH, kRecord, 0, kLists, 0, 6),
                       rec(IOASID_DSA_COMP_SUCCESS, 6)));
  std::vector<uint8_t> filled(1000);
  for (size_t i = 0; i < filled.size(); ++i) filled[i] = pattern_byte(fill, i);
  EXPECT_TRUE(record_is(c.at(record(1)), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_TRUE(record_is(c.at(record(2)), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_TRUE(record_is(c.at(record(3)), rec(IOASID_DSA_COMP_SUCCESS, 0, 0, 0, crc32c(0, filled.data(), 1000))));
  EXPECT_TRUE(record_is(c.at(record(4)), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_TRUE(all_zero(c.at(record(5)), 64));
  EXPECT_TRUE(c.holds(a, filled));
  EXPECT_TRUE(c.holds(b, filled));
  EXPECT_TRUE(c.holds(sum, std::vector<uint8_t>(filled.begin(), filled.begin() + 8)));

  // Without RCR a successful batch writes nothing either.
  std::memset(c.at(record(1)), 0, 6 * 32);
  write_list(c, {c.make(IOASID_DSA_OPCODE_NOOP, kCrav, record(2)), c.make(IOASID_DSA_OPCODE_NOOP, kCrav, record(3))},
             kLists + 1024);
  c.run(wq, c.make(IOASID_DSA_OPCODE_BATCH, kCrav, record(1), kLists + 1024, 0, 2));
  ASSERT_TRUE(c.sync(wq));
  EXPECT_TRUE(all_zero(c.at(record(1)), 6 * 32));
}

TEST(DsaBatch, FailuresFenceAndBadLists) {
  Client c(38);
  const uint32_t wq = 2;
  ASSERT_EQ(c.enable(wq), kOk);
  const uint64_t fill = 0x0807060504030201ull;
  auto memfill = [&](unsigned slot, uint64_t dst, uint32_t flags = kRecord) {
    return c.make(IOASID_DSA_OPCODE_MEMFILL, flags, record(slot), fill, dst, 64);
  };
  auto bad = [&](unsigned slot) { return c.make(IOASID_DSA_OPCODE_COMPARE, kRecord, record(slot), kData, kData, 0); };
  const uint64_t d = kData + 4 * k4K;

  // A failure without FENCE after it: everything runs, the batch fails.
  write_list(c, {memfill(11, d), bad(12), memfill(13, d + 64)});
  EXPECT_TRUE(c.expect(wq, 10, c.make(IOASID_DSA_OPCODE_BATCH, kRecord, 0, kLists, 0, 3),
                       rec(IOASID_DSA_COMP_BATCH_FAIL, 3)));
  EXPECT_TRUE(record_is(c.at(record(11)), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_TRUE(record_is(c.at(record(12)), rec(IOASID_DSA_COMP_XFER_ERANGE)));
  EXPECT_TRUE(record_is(c.at(record(13)), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_EQ(c.at(d + 64)[63], 8);

  // FENCE after a failure abandons that descriptor and every one after it.
  write_list(c, {memfill(21, d + 128), bad(22), memfill(23, d + 192, kRecord | IOASID_DSA_FLAG_FENCE),
                 memfill(24, d + 256), c.make(IOASID_DSA_OPCODE_NOOP, kRecord, record(25))});
  EXPECT_TRUE(c.expect(wq, 20, c.make(IOASID_DSA_OPCODE_BATCH, kRecord, 0, kLists, 0, 5),
                       rec(IOASID_DSA_COMP_BATCH_FAIL, 2)));
  EXPECT_TRUE(record_is(c.at(record(21)), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_TRUE(record_is(c.at(record(22)), rec(IOASID_DSA_COMP_XFER_ERANGE)));
  ASSERT_TRUE(c.sync(wq));
  EXPECT_TRUE(all_zero(c.at(record(23)), 3 * 32)) << "abandoned: no records";
  EXPECT_TRUE(all_zero(c.at(d + 192), 128)) << "abandoned: not run";
  // FENCE with nothing failed before it runs.
  write_list(c, {memfill(31, d + 320), memfill(32, d + 384, kRecord | IOASID_DSA_FLAG_FENCE)});
  EXPECT_TRUE(c.expect(wq, 30, c.make(IOASID_DSA_OPCODE_BATCH, kRecord, 0, kLists, 0, 2),
                       rec(IOASID_DSA_COMP_SUCCESS, 2)));
  EXPECT_TRUE(record_is(c.at(record(32)), rec(IOASID_DSA_COMP_SUCCESS)));

  // BATCH and DRAIN are not allowed inside a batch; a child's fault is its own record.
  write_list(c, {c.make(IOASID_DSA_OPCODE_BATCH, kRecord, record(41), kLists + 2048, 0, 2),
                 c.make(IOASID_DSA_OPCODE_DRAIN, kRecord, record(42)),
                 c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, record(43), c.end() - 4, kData, 16),
                 c.make(IOASID_DSA_OPCODE_NOOP, kRecord, record(44))});
  EXPECT_TRUE(c.expect(wq, 40, c.make(IOASID_DSA_OPCODE_BATCH, kCrav, 0, kLists, 0, 4),
                       rec(IOASID_DSA_COMP_BATCH_FAIL, 4)));
  EXPECT_TRUE(record_is(c.at(record(41)), rec(IOASID_DSA_COMP_BAD_OPCODE)));
  EXPECT_TRUE(record_is(c.at(record(42)), rec(IOASID_DSA_COMP_BAD_OPCODE)));
  EXPECT_TRUE(record_is(c.at(record(43)), rec(IOASID_DSA_COMP_PAGE_FAULT_NOBOF, 4, c.end())));
  EXPECT_TRUE(record_is(c.at(record(44)), rec(IOASID_DSA_COMP_SUCCESS)));

  // A list that cannot be fetched.
  EXPECT_TRUE(c.expect(wq, 50, c.make(IOASID_DSA_OPCODE_BATCH, kCrav, 0, c.end(), 0, 2),
                       rec(IOASID_DSA_COMP_BATCH_PAGE_FAULT, 0, c.end())));
  EXPECT_TRUE(c.expect(wq, 51, c.make(IOASID_DSA_OPCODE_BATCH, kCrav, 0, c.end() - 64, 0, 3),
                       rec(IOASID_DSA_COMP_BATCH_PAGE_FAULT, 0, c.end())))
      << "the list's first descriptor is mapped, the next two are not";
  EXPECT_TRUE(all_zero(c.at(record(52)), 32 * 75)) << "no other record";
}

// ================================================================ DRAIN

TEST(DsaOps, DrainWaitsForEverythingBeforeIt) {
  Client c(39);
  const uint32_t wq = 3;
  ASSERT_EQ(c.enable(wq, kShared | IOASID_WQ_BOF), kOk);
  // The first descriptor waits for a page response: the DRAIN behind it waits too.
  c.run(wq, c.make(IOASID_DSA_OPCODE_MEMFILL, kRecord | kBof, record(0), 0x4242424242424242ull, c.end() - 8, 16));
  c.run(wq, c.make(IOASID_DSA_OPCODE_DRAIN, kRecord, record(1)));
  const auto request = next_fault(c.node);
  ASSERT_TRUE(request);
  EXPECT_EQ(request->type, uint32_t(IOASID_FAULT_PAGE_REQ));
  EXPECT_EQ(status_of(c.at(record(0))), 0);
  EXPECT_EQ(status_of(c.at(record(1))), 0) << "DRAIN completes after what was submitted before it";
  Memfd more(k4K, true);
  ASSERT_EQ(c.map(more, c.end()), kOk);
  ASSERT_EQ(page_resp(c.fd(), c.dev, c.pasid, request->grpid, IOASID_PAGE_RESP_SUCCESS), kOk);
  EXPECT_TRUE(record_is(c.at(record(0)), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_TRUE(record_is(c.at(record(1)), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_EQ(more.bytes()[7], 0x42);
  // With nothing before it, DRAIN completes at once.
  EXPECT_TRUE(c.expect(wq, 2, c.make(IOASID_DSA_OPCODE_DRAIN, kRecord), rec(IOASID_DSA_COMP_SUCCESS)));
}

// ================================================================ faults

TEST(DsaFaults, WithoutBlockOnFaultTheRecordSaysWhere) {
  Client c(30);
  const uint32_t wq = 4;
  ASSERT_EQ(c.enable(wq), kOk);
  const auto data = pattern(300, 0x55);
  c.write(kData, data);
  constexpr uint8_t kNobof = IOASID_DSA_COMP_PAGE_FAULT_NOBOF, kWrite = IOASID_DSA_COMP_STATUS_WRITE;

  // A destination running past the mapping: a write fault; the bytes before it moved.
  EXPECT_TRUE(c.expect(wq, 0, c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, 0, kData, c.end() - 100, 300),
                       rec(kNobof | kWrite, 100, c.end())));
  EXPECT_TRUE(std::equal(data.begin(), data.begin() + 100, c.at(c.end() - 100)));
  // A source running past it: a read fault.
  const uint64_t dst = kData + 4 * k4K;
  EXPECT_TRUE(c.expect(wq, 1, c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, 0, c.end() - 100, dst, 300),
                       rec(kNobof, 100, c.end())));
  EXPECT_TRUE(std::equal(data.begin(), data.begin() + 100, c.at(dst)));
  EXPECT_TRUE(all_zero(c.at(dst + 100), 200)) << "nothing past the fault";
  // A source wholly unmapped: nothing done.
  EXPECT_TRUE(c.expect(wq, 2, c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, 0, c.end() + 5, dst + k4K, 64),
                       rec(kNobof, 0, c.end() + 5)));
  // MEMFILL, CRCGEN, COMPARE the same way.
  EXPECT_TRUE(c.expect(wq, 3, c.make(IOASID_DSA_OPCODE_MEMFILL, kRecord, 0, ~0ull, c.end() - 3, 10),
                       rec(kNobof | kWrite, 3, c.end())));
  EXPECT_EQ(c.at(c.end() - 3)[0], 0xff);
  EXPECT_TRUE(c.expect(wq, 4, c.make(IOASID_DSA_OPCODE_CRCGEN, kRecord, 0, c.end() - 16, 0, 32),
                       rec(kNobof, 16, c.end())));
  EXPECT_TRUE(c.expect(wq, 5, c.make(IOASID_DSA_OPCODE_COMPARE, kRecord, 0, c.end() - 1, c.end() - 1, 2),
                       rec(kNobof, 1, c.end())))
      << "equal up to the fault";
  // A read-only mapping: a write fault (PERMISSION) at the first byte written.
  Memfd read_only(k4K, true);
  const uint64_t ro = c.end() + 16 * k4K;
  ASSERT_EQ(c.map(read_only, ro, IOASID_MAP_READABLE), kOk);
  EXPECT_TRUE(c.expect(wq, 6, c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, 0, kData, ro + 40, 8),
                       rec(kNobof | kWrite, 0, ro + 40)));
  EXPECT_TRUE(all_zero(read_only.bytes(), k4K));
  EXPECT_TRUE(c.expect(wq, 7, c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, 0, ro, dst + 2 * k4K, 8),
                       rec(IOASID_DSA_COMP_SUCCESS)))
      << "reading it is allowed";
  // BOF on a WQ enabled without BOF: no page request, the same record.
  EXPECT_TRUE(c.expect(wq, 8, c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord | kBof, 0, kData, c.end() - 100, 300),
                       rec(kNobof | kWrite, 100, c.end())));
  EXPECT_TRUE(drain_faults(c.node).empty()) << "no fault record, no page request: the record says it all";
}

TEST(DsaFaults, AnUnreachableCompletionRecordIsAFaultRecord) {
  Client c(31);
  const uint32_t wq = 5;
  ASSERT_EQ(c.enable(wq), kOk);
  const uint64_t nowhere = c.end() + 64;
  c.run(wq, c.make(IOASID_DSA_OPCODE_NOOP, kRecord, nowhere));
  const auto fault = next_fault(c.node);
  ASSERT_TRUE(fault) << "no fault record within 5 s";
  EXPECT_EQ(fault->type, uint32_t(IOASID_FAULT_DMA_UNRECOV));
  EXPECT_EQ(fault->flags, uint32_t(IOASID_FAULT_PASID_VALID | IOASID_FAULT_ADDR_VALID | IOASID_FAULT_FETCH_ADDR_VALID));
  EXPECT_NE(fault->fetch_addr, 0u);
  EXPECT_EQ(fault->dev_id, c.dev);
  EXPECT_EQ(fault->pasid, c.pasid);
  EXPECT_EQ(fault->ioasid, c.ioasid);
  EXPECT_EQ(fault->reason, uint32_t(IOASID_FAULT_REASON_ACCESS));
  EXPECT_EQ(fault->perm, uint32_t(IOASID_FAULT_PERM_WRITE));
  EXPECT_EQ(fault->addr, nowhere);
  EXPECT_EQ(fault->grpid, 0u);
  // A failing descriptor whose record cannot be written: the same.
  c.run(wq, c.make(0x07, kCrav, nowhere + 32));
  const auto second = next_fault(c.node);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->type, uint32_t(IOASID_FAULT_DMA_UNRECOV));
  EXPECT_EQ(second->addr, nowhere + 32);
  ASSERT_TRUE(c.sync(wq));
  EXPECT_TRUE(drain_faults(c.node).empty());
}

// ================================================================ block on fault

void expect_page_request(const ioasid_fault& r, const Client& c, uint64_t page, uint32_t perm) {
  EXPECT_EQ(r.type, uint32_t(IOASID_FAULT_PAGE_REQ));
  EXPECT_EQ(r.flags, uint32_t(IOASID_FAULT_PASID_VALID | IOASID_FAULT_ADDR_VALID | IOASID_FAULT_LAST_PAGE));
  EXPECT_EQ(r.dev_id, c.dev);
  EXPECT_EQ(r.pasid, c.pasid);
  EXPECT_EQ(r.ioasid, c.ioasid);
  EXPECT_EQ(r.reason, uint32_t(IOASID_FAULT_REASON_ACCESS));
  EXPECT_EQ(r.perm, perm);
  EXPECT_EQ(r.addr, page);
  EXPECT_EQ(r.fetch_addr, 0u);
  EXPECT_LT(r.grpid, 512u);
}

TEST(DsaBlockOnFault, SuccessResumesWhereItStopped) {
  Client c(32);
  const uint32_t wq = 6;
  ASSERT_EQ(c.enable(wq, kShared | IOASID_WQ_BOF), kOk);
  const auto data = pattern(300, 0x66);
  c.write(kData, data);
  c.run(wq, c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord | kBof, record(0), kData, c.end() - 100, 300));
  const auto request = next_fault(c.node);
  ASSERT_TRUE(request) << "no page request within 5 s";
  expect_page_request(*request, c, c.end(), IOASID_FAULT_PERM_WRITE);
  EXPECT_EQ(status_of(c.at(record(0))), 0) << "no record while it waits";
  EXPECT_TRUE(std::equal(data.begin(), data.begin() + 100, c.at(c.end() - 100))) << "the bytes before the fault";

  Memfd more(k4K, true);
  ASSERT_EQ(c.map(more, c.end()), kOk);
  ASSERT_EQ(page_resp(c.fd(), c.dev, c.pasid, request->grpid, IOASID_PAGE_RESP_SUCCESS), kOk);
  EXPECT_TRUE(record_is(c.at(record(0)), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_TRUE(std::equal(data.begin() + 100, data.end(), more.bytes())) << "the rest, after the response";
  EXPECT_TRUE(all_zero(more.bytes() + 200, k4K - 200));
  EXPECT_EQ(page_resp(c.fd(), c.dev, c.pasid, request->grpid, IOASID_PAGE_RESP_SUCCESS), Err(EINVAL))
      << "answered already";
  // A source fault the same way, a read request in the middle of a page.
  const uint64_t hole = c.end() + 4 * k4K;
  c.run(wq, c.make(IOASID_DSA_OPCODE_CRCGEN, kRecord | kBof, record(1), hole + 0x123, 0, 9));
  const auto read = next_fault(c.node);
  ASSERT_TRUE(read);
  expect_page_request(*read, c, hole, IOASID_FAULT_PERM_READ);
  Memfd text(k4K, true);
  std::memcpy(text.bytes() + 0x123, "123456789", 9);
  ASSERT_EQ(c.map(text, hole), kOk);
  ASSERT_EQ(page_resp(c.fd(), c.dev, c.pasid, read->grpid, IOASID_PAGE_RESP_SUCCESS), kOk);
  EXPECT_TRUE(record_is(c.at(record(1)), rec(IOASID_DSA_COMP_SUCCESS, 0, 0, 0, 0xe3069283u)));
  ASSERT_TRUE(c.sync(wq));
  EXPECT_TRUE(drain_faults(c.node).empty());
}

TEST(DsaBlockOnFault, InvalidOrFailureEndsWithPageFaultIr) {
  Client c(33);
  const uint32_t wq = 7;
  ASSERT_EQ(c.enable(wq, kShared | IOASID_WQ_BOF), kOk);
  const uint64_t hole = c.end();
  c.run(wq, c.make(IOASID_DSA_OPCODE_MEMFILL, kRecord | kBof, record(0), 1, hole + 0x10, 64));
  auto request = next_fault(c.node);
  ASSERT_TRUE(request);
  expect_page_request(*request, c, hole, IOASID_FAULT_PERM_WRITE);
  EXPECT_EQ(status_of(c.at(record(0))), 0);
  ASSERT_EQ(page_resp(c.fd(), c.dev, c.pasid, request->grpid, IOASID_PAGE_RESP_INVALID), kOk);
  // The header's rule (bit 7: the fault was a write) applies to PAGE_FAULT_IR too.
  EXPECT_TRUE(record_is(c.at(record(0)),
                        rec(IOASID_DSA_COMP_PAGE_FAULT_IR | IOASID_DSA_COMP_STATUS_WRITE, 0, hole + 0x10)));

  c.write(hole - 50, pattern(50, 0x77));
  c.run(wq, c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord | kBof, record(1), hole - 50, kData + k4K, 100));
  request = next_fault(c.node);
  ASSERT_TRUE(request);
  expect_page_request(*request, c, hole, IOASID_FAULT_PERM_READ);
  ASSERT_EQ(page_resp(c.fd(), c.dev, c.pasid, request->grpid, IOASID_PAGE_RESP_FAILURE), kOk);
  EXPECT_TRUE(record_is(c.at(record(1)), rec(IOASID_DSA_COMP_PAGE_FAULT_IR, 50, hole)));
  EXPECT_TRUE(c.holds(kData + k4K, pattern(50, 0x77))) << "the bytes before the fault moved";
  EXPECT_TRUE(all_zero(c.at(kData + k4K + 50), 50));
  // The WQ goes on.
  EXPECT_TRUE(c.expect(wq, 2, c.make(IOASID_DSA_OPCODE_NOOP, kRecord), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_TRUE(drain_faults(c.node).empty());
}

TEST(DsaBlockOnFault, AFullQueueAnswersRetry) {
  Client c(34);
  const uint32_t wq = 0;
  ASSERT_EQ(c.enable(wq, kShared | IOASID_WQ_BOF, 2), kOk);
  const auto data = pattern(200, 0x88);
  c.write(kData, data);
  const uint64_t hole = c.end();
  // 1 waits for a page; 2 reads what 1 writes; 3 finds the queue full.
  const auto first = c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord | kBof, record(1), kData, hole - 100, 200);
  const auto second = c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, record(2), hole - 100, kData + k4K, 200);
  const auto third = c.make(IOASID_DSA_OPCODE_NOOP, kRecord, record(3));
  c.run(wq, first);
  const auto request = next_fault(c.node);
  ASSERT_TRUE(request);
  EXPECT_TRUE(accepted(c.submit(wq, second)));
  auto s = c.submit(wq, third);
  EXPECT_TRUE(retry(s)) << s;
  s = c.submit(wq, third);
  EXPECT_TRUE(retry(s)) << "still full: " << s;
  EXPECT_EQ(status_of(c.at(record(1))), 0);
  EXPECT_EQ(status_of(c.at(record(2))), 0);

  Memfd more(k4K, true);
  ASSERT_EQ(c.map(more, hole), kOk);
  ASSERT_EQ(page_resp(c.fd(), c.dev, c.pasid, request->grpid, IOASID_PAGE_RESP_SUCCESS), kOk);
  EXPECT_TRUE(record_is(c.at(record(1)), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_TRUE(record_is(c.at(record(2)), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_TRUE(c.holds(kData + k4K, data)) << "the second ran after the first, in order";
  ASSERT_TRUE(c.sync(wq));
  EXPECT_TRUE(all_zero(c.at(record(3)), 32)) << "a RETRY queues nothing";
  EXPECT_TRUE(c.expect(wq, 3, third, rec(IOASID_DSA_COMP_SUCCESS))) << "room again";

  // A dedicated WQ answers RETRY too.
  const uint32_t dedicated = 1;
  ASSERT_EQ(c.enable(dedicated, IOASID_WQ_ENABLE | IOASID_WQ_BOF, 1), kOk);
  const uint64_t far = c.end() + 8 * k4K;
  c.run(dedicated, c.make(IOASID_DSA_OPCODE_MEMFILL, kRecord | kBof, record(4), 3, far, 8));
  const auto waiting = next_fault(c.node);
  ASSERT_TRUE(waiting);
  s = c.submit(dedicated, c.make(IOASID_DSA_OPCODE_NOOP, kRecord, record(5)));
  EXPECT_TRUE(retry(s)) << s;
  ASSERT_EQ(page_resp(c.fd(), c.dev, c.pasid, waiting->grpid, IOASID_PAGE_RESP_INVALID), kOk);
  EXPECT_TRUE(record_is(c.at(record(4)), rec(IOASID_DSA_COMP_PAGE_FAULT_IR | IOASID_DSA_COMP_STATUS_WRITE, 0, far)));
  EXPECT_TRUE(c.expect(dedicated, 5, c.make(IOASID_DSA_OPCODE_NOOP, kRecord), rec(IOASID_DSA_COMP_SUCCESS)));
}

// ================================================================ GPASID

TEST(DsaGpasid, AGuestPasidRunsAtItsHostPasid) {
  constexpr uint32_t kGuest = 0x3a5;
  // Two "VMs" with the same guest PASID and the same IOVAs: two host PASIDs.
  Client a(35, kDefaultSize, kGuest), b(36, kDefaultSize, kGuest);
  ASSERT_NE(a.pasid, b.pasid);
  EXPECT_EQ(pasid_lookup(a.fd(), kGuest).pasid, a.pasid);
  const uint32_t wq = 1;
  ASSERT_EQ(a.enable(wq), kOk);
  auto fill = [&](uint64_t value, unsigned slot) {
    return desc(kGuest, IOASID_DSA_OPCODE_MEMFILL, kRecord, record(slot), value, kData, 4096);
  };
  auto s = a.submit(wq, fill(0xaaaaaaaaaaaaaaaaull, 0), IOASID_SUBMIT_GPASID);
  EXPECT_TRUE(accepted(s)) << s;
  s = b.submit(wq, fill(0xbbbbbbbbbbbbbbbbull, 0), IOASID_SUBMIT_GPASID);
  EXPECT_TRUE(accepted(s)) << s;
  EXPECT_TRUE(record_is(a.at(record(0)), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_TRUE(record_is(b.at(record(0)), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_TRUE(a.holds(kData, std::vector<uint8_t>(4096, 0xaa)));
  EXPECT_TRUE(b.holds(kData, std::vector<uint8_t>(4096, 0xbb)));

  // The guest PASID is not a host PASID, nor the host PASID a guest one.
  EXPECT_TRUE(refused(a.submit(wq, fill(1, 1)), ENOENT)) << "the guest PASID without GPASID";
  auto host = fill(1, 1);
  host.pasid = a.pasid;
  EXPECT_TRUE(refused(a.submit(wq, host, IOASID_SUBMIT_GPASID), ENOENT)) << "the host PASID as a guest PASID";
  EXPECT_TRUE(accepted(a.submit(wq, host))) << "the host PASID itself";
  EXPECT_TRUE(record_is(a.at(record(1)), rec(IOASID_DSA_COMP_SUCCESS)));
  auto other = fill(1, 2);
  other.pasid = kGuest + 1;
  EXPECT_TRUE(refused(a.submit(wq, other, IOASID_SUBMIT_GPASID), ENOENT)) << "an unmapped guest PASID";
  EXPECT_TRUE(b.sync(wq));
  EXPECT_TRUE(all_zero(b.at(record(1)), 32 * 100));
}

// ================================================================ isolation

TEST(DsaIsolation, TwoFilesOnOneSharedWqSeeOnlyTheirOwnMemory) {
  Client a(37), b(38);
  ASSERT_NE(a.pasid, b.pasid);
  // SIOV: both bound dsa0, each with a dev_id of its own; one RID route, one binding each.
  ioasid_device_bind again{};
  std::snprintf(again.name, sizeof again.name, "dsa0");
  EXPECT_EQ(ioctl_errno(a.fd(), IOASID_DEVICE_BIND, &again), Err(EBUSY)) << "bound by this file already";
  std::snprintf(again.name, sizeof again.name, "0000:00:05.0");
  EXPECT_EQ(ioctl_errno(b.fd(), IOASID_DEVICE_BIND, &again), Err(EBUSY)) << "by its PCI address";
  ioasid_attach rid_a{.dev_id = a.dev, .ioasid = a.ioasid};
  Errno err;
  eventually([&] { return (err = ioctl_errno(a.fd(), IOASID_ATTACH_IOASID, &rid_a)) != Err(EBUSY); }, kReleaseTimeout);
  ASSERT_EQ(err, kOk);
  ioasid_attach rid_b{.dev_id = b.dev, .ioasid = b.ioasid};
  EXPECT_EQ(ioctl_errno(b.fd(), IOASID_ATTACH_IOASID, &rid_b), Err(EBUSY)) << "the RID route is a's";
  // b has no RID route to detach: 0, and a's route stays (b still cannot attach it).
  ioasid_attach detach_b{.dev_id = b.dev};
  EXPECT_EQ(ioctl_errno(b.fd(), IOASID_DETACH_IOASID, &detach_b), kOk);
  EXPECT_EQ(ioctl_errno(b.fd(), IOASID_ATTACH_IOASID, &rid_b), Err(EBUSY)) << "a's RID route was detached by b";
  ioasid_attach stolen{.dev_id = b.dev, .ioasid = b.ioasid, .pasid = a.pasid};
  EXPECT_EQ(ioctl_errno(b.fd(), IOASID_ATTACH_IOASID_PASID, &stolen), Err(EACCES)) << "a's PASID";

  const uint32_t wq = 2;
  ASSERT_EQ(a.enable(wq), kOk);
  const auto mine = pattern(3000, 0xa0), theirs = pattern(3000, 0xb0);
  a.write(kData, mine);
  b.write(kData, theirs);
  // Interleaved, at the same IOVAs, each at its own PASID.
  for (unsigned i = 0; i < 8; ++i) {
    const uint64_t dst = kData + (1 + i) * k4K;
    EXPECT_TRUE(accepted(a.submit(wq, a.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, record(i), kData, dst, 3000))));
    EXPECT_TRUE(accepted(b.submit(wq, b.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, record(i), kData, dst, 3000))));
  }
  for (unsigned i = 0; i < 8; ++i) {
    const uint64_t dst = kData + (1 + i) * k4K;
    EXPECT_TRUE(record_is(a.at(record(i)), rec(IOASID_DSA_COMP_SUCCESS))) << i;
    EXPECT_TRUE(record_is(b.at(record(i)), rec(IOASID_DSA_COMP_SUCCESS))) << i;
    EXPECT_TRUE(a.holds(dst, mine)) << i;
    EXPECT_TRUE(b.holds(dst, theirs)) << i;
  }
  // b naming a's PASID is refused, and a's memory stays as it is.
  const auto before = std::vector<uint8_t>(a.at(kBase), a.at(kBase) + a.mem.size);
  auto steal = b.make(IOASID_DSA_OPCODE_MEMFILL, kRecord, record(20), 0, kData, 4096);
  steal.pasid = a.pasid;
  EXPECT_TRUE(refused(b.submit(wq, steal), EACCES));
  ASSERT_TRUE(a.sync(wq));
  std::memset(a.at(record(kSyncSlot)), 0, 32);
  EXPECT_TRUE(a.holds(kBase, before)) << "nothing was written into a's space";
  EXPECT_TRUE(all_zero(b.at(record(20)), 32));

  // b leaving dsa0 leaves a's WQ serving.
  ioasid_device_unbind unbind{.dev_id = b.dev};
  ASSERT_EQ(ioctl_errno(b.fd(), IOASID_DEVICE_UNBIND, &unbind), kOk);
  EXPECT_TRUE(a.expect(wq, 21, a.make(IOASID_DSA_OPCODE_NOOP, kRecord), rec(IOASID_DSA_COMP_SUCCESS)));
}

// IOASID numbers are per file, and dsa0's PASID table holds every file's routes:
// another file binding a guest table to its nested IOASID of the same number must not
// turn this file's route into a nested one (found by the stress run: this file's
// records then landed in the other file's guest memory).
TEST(DsaIsolation, AnotherFilesBindPgtblLeavesThisFilesRoutesAlone) {
  // b: parent IOASID 1 with guest RAM at GPA 0, nested IOASID 2, dsa0 bound.
  Node b;
  auto b_parent = must(client::Ioas::allocate(b.file()));
  Memfd b_ram(16 * k4K, true);  // zeroed: its first page is an empty guest table
  map_memory(b_parent, b_ram.mapped(), {.iova = 0});
  auto b_nested = must(client::Ioas::allocate_nested(b_parent));
  ASSERT_EQ(b_nested.id(), 2u);
  auto b_dsa = bound_device(b, "dsa0");
  // a: a spare IOASID 1, then kernel-managed IOASID 2 with its memory, routed on dsa0.
  Node a(O_NONBLOCK);
  auto spare = must(client::Ioas::allocate(a.file()));
  auto a_ioas = must(client::Ioas::allocate(a.file()));
  ASSERT_EQ(a_ioas.id(), b_nested.id()) << "the collision this test is about";
  Memfd a_mem(kDefaultSize, true);
  map_memory(a_ioas, a_mem.mapped(), {.iova = kBase});
  const uint32_t pasid = alloc_pasid(a, slot(39));
  auto a_dsa = bound_device(a, "dsa0");
  must(client::Attachment::attach_pasid(a_dsa, a_ioas, pasid)).release();
  const uint32_t wq = 3;
  ASSERT_EQ(wq_enable(a.fd(), wq_request(a_dsa.id(), wq, IOASID_WQ_ENABLE, pasid)), kOk);
  auto moved = [&](unsigned slot) {
    std::memset(a_mem.bytes() + (record(slot) - kBase), 0, 32);
    const auto d = desc(pasid, IOASID_DSA_OPCODE_MEMMOVE, kRecord, record(slot), kData, kData + k4K, 64);
    const Submitted s = submit(a.fd(), a_dsa.id(), wq, d);
    if (!accepted(s)) return ::testing::AssertionFailure() << "submit: " << s;
    return record_is(a_mem.bytes() + (record(slot) - kBase), rec(IOASID_DSA_COMP_SUCCESS));
  };
  EXPECT_TRUE(moved(1)) << "before b's BIND_PGTBL";
  ioasid_bind_pgtbl bind{.ioasid = b_nested.id(), .format = IOASID_PGTBL_VTD_FL, .pgtbl_addr = 0, .addr_width = 48};
  ASSERT_EQ(ioctl_errno(b.fd(), IOASID_BIND_PGTBL, &bind), kOk);
  EXPECT_TRUE(moved(2)) << "after b's BIND_PGTBL";
  ioasid_unbind_pgtbl unbind{.ioasid = b_nested.id()};
  ASSERT_EQ(ioctl_errno(b.fd(), IOASID_UNBIND_PGTBL, &unbind), kOk);
  EXPECT_TRUE(moved(3)) << "after b's UNBIND_PGTBL";
  EXPECT_TRUE(all_zero(b_ram.bytes(), b_ram.size)) << "nothing of a's landed in b's guest memory";
}

// The admin view of a shared dsa0: both files in bound_by, each route with the file
// that made it, the WQ with its owner and counters (what `ioasidctl devices` prints).
TEST(DsaAdmin, DevicesShowEveryFileItsRoutesAndTheWorkQueue) {
  if (admin_socket_path().empty()) GTEST_SKIP() << "no admin socket (an outside node)";
  Client a(37), b(38);
  const uint32_t wq = 3;
  ASSERT_EQ(a.enable(wq, kShared, 12), kOk);
  EXPECT_TRUE(a.expect(wq, 1, a.make(IOASID_DSA_OPCODE_NOOP, kRecord), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_TRUE(b.expect(wq, 1, b.make(IOASID_DSA_OPCODE_NOOP, kRecord), rec(IOASID_DSA_COMP_SUCCESS)));

  const auto reply = nlohmann::json::parse(admin_request(R"({"cmd":"devices"})"), nullptr, false);
  ASSERT_TRUE(reply.is_object() && reply.value("ok", false)) << reply.dump();
  nlohmann::json dsa0;
  for (const auto& row : reply["result"])
    if (row["name"] == "dsa0") dsa0 = row;
  ASSERT_TRUE(dsa0.is_object());
  std::map<uint32_t, uint32_t> route_context;  // pasid -> context
  for (const auto& route : dsa0["routes"])
    if (!route["pasid"].is_null()) route_context[route["pasid"]] = route["context"];
  ASSERT_TRUE(route_context.count(a.pasid) && route_context.count(b.pasid)) << dsa0.dump();
  const uint32_t ctx_a = route_context[a.pasid], ctx_b = route_context[b.pasid];
  EXPECT_NE(ctx_a, ctx_b);
  const auto bound_by = dsa0["bound_by"].get<std::vector<uint32_t>>();
  EXPECT_NE(std::find(bound_by.begin(), bound_by.end(), ctx_a), bound_by.end());
  EXPECT_NE(std::find(bound_by.begin(), bound_by.end(), ctx_b), bound_by.end());
  const auto& row = dsa0["wqs"].at(wq);
  EXPECT_EQ(row["enabled"], true);
  EXPECT_EQ(row["mode"], "shared");
  EXPECT_EQ(row["owner"], ctx_a);
  EXPECT_EQ(row["size"], 12);
  EXPECT_EQ(row["accepted"], 2);
  EXPECT_EQ(row["completed"], 2);
  EXPECT_EQ(row["queued"], 0);
}

// ================================================================ lifecycle

TEST(DsaLifecycle, UnbindAndCloseDisableTheOwnersWqsOnly) {
  auto a = std::make_unique<Client>(39);
  Client b(30);
  const uint32_t owned_by_a = 3, also_a = 4, owned_by_b = 5;
  ASSERT_EQ(a->enable(owned_by_a), kOk);
  ASSERT_EQ(b.enable(owned_by_b), kOk);
  EXPECT_TRUE(b.expect(owned_by_a, 0, b.make(IOASID_DSA_OPCODE_NOOP, kRecord), rec(IOASID_DSA_COMP_SUCCESS)));
  const auto noop = b.make(IOASID_DSA_OPCODE_NOOP, 0);

  // DEVICE_UNBIND disables the WQs a enabled through that binding.
  ioasid_device_unbind unbind{.dev_id = a->dev};
  ASSERT_EQ(ioctl_errno(a->fd(), IOASID_DEVICE_UNBIND, &unbind), kOk);
  EXPECT_TRUE(refused(b.submit(owned_by_a, noop), EINVAL)) << "disabled by the unbind";
  EXPECT_TRUE(accepted(b.submit(owned_by_b, noop))) << "b's WQ is b's";

  // Closing the file does the same.
  a->dev = bind_device(a->node, "dsa0");
  ASSERT_EQ(a->enable(also_a), kOk);
  EXPECT_TRUE(accepted(b.submit(also_a, noop)));
  a.reset();
  Submitted s;
  EXPECT_TRUE(eventually([&] { return refused(s = b.submit(also_a, noop), EINVAL); }, kReleaseTimeout))
      << "still enabled after its owner closed: " << s;
  EXPECT_TRUE(accepted(b.submit(owned_by_b, noop)));
  EXPECT_EQ(b.enable(also_a), kOk) << "free for anyone";
  EXPECT_TRUE(b.expect(also_a, 1, b.make(IOASID_DSA_OPCODE_NOOP, kRecord), rec(IOASID_DSA_COMP_SUCCESS)));
}

TEST(DsaLifecycle, DisableEndsAWaitForAPageAndWaitsForTheRest) {
  Client c(33);
  const uint32_t wq = 5;
  ASSERT_EQ(c.enable(wq, kShared | IOASID_WQ_BOF), kOk);
  c.run(wq, c.make(IOASID_DSA_OPCODE_MEMFILL, kRecord | kBof, record(0), 0x5555555555555555ull, c.end() - 8, 16));
  c.run(wq, c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, record(1), kData, kData + k4K, 64));
  const auto request = next_fault(c.node);
  ASSERT_TRUE(request);
  // No PAGE_RESP comes: the disable answers the wait itself (INVALID), then returns
  // once everything accepted before it has completed.
  EXPECT_EQ(wq_disable(c.fd(), c.dev, wq), kOk);
  EXPECT_EQ(status_of(c.at(record(0))), IOASID_DSA_COMP_PAGE_FAULT_IR | IOASID_DSA_COMP_STATUS_WRITE);
  EXPECT_EQ(status_of(c.at(record(1))), IOASID_DSA_COMP_SUCCESS) << "completed before the disable returned";
  EXPECT_TRUE(refused(c.submit(wq, c.make(IOASID_DSA_OPCODE_NOOP, 0)), EINVAL)) << "accepting after a disable";
  // The owner's late answer finds its group outstanding and changes nothing.
  EXPECT_EQ(page_resp(c.fd(), c.dev, c.pasid, request->grpid, IOASID_PAGE_RESP_SUCCESS), kOk);
  EXPECT_EQ(c.enable(wq), kOk) << "free again";
}

TEST(DsaLifecycle, ClosingWithDescriptorsWaitingForPagesDoesNotHang) {
  auto owner = std::make_unique<Client>(31);
  Client other(32);
  const uint32_t mine = 6, shared = 7;
  ASSERT_EQ(owner->enable(mine, kShared | IOASID_WQ_BOF, 4), kOk);
  ASSERT_EQ(other.enable(shared, kShared | IOASID_WQ_BOF, 4), kOk);
  // The owner's own WQ: two descriptors behind a page request.
  owner->run(mine, owner->make(IOASID_DSA_OPCODE_MEMFILL, kRecord | kBof, record(0), 1, owner->end(), 8));
  owner->run(mine, owner->make(IOASID_DSA_OPCODE_NOOP, kRecord, record(1)));
  // Its descriptor waiting alone on another file's shared WQ (work of that file queued
  // behind it would make it give way: DsaIsolation.AnotherFileCannotStallASharedBlockOnFaultWq).
  owner->run(shared, owner->make(IOASID_DSA_OPCODE_MEMFILL, kRecord | kBof, record(2), 1, owner->end(), 8));
  ASSERT_TRUE(next_fault(owner->node));
  ASSERT_TRUE(next_fault(owner->node));

  const auto start = std::chrono::steady_clock::now();
  owner->close();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s) << "close(2) returns";
  if (!admin_socket_path().empty()) {  // the release answered the closed file's page request itself
    auto waits = [&] {
      const auto reply = nlohmann::json::parse(admin_request(R"({"cmd":"devices"})"), nullptr, false);
      if (!reply.is_object() || !reply.value("ok", false)) return true;
      for (const auto& row : reply["result"])
        if (row["name"] == "dsa0") return row["wqs"].at(shared).value("waiting_for_page", true);
      return true;
    };
    EXPECT_TRUE(eventually([&] { return !waits(); }, 1s)) << "the closed file's descriptor still waits";
  }
  EXPECT_TRUE(other.expect(shared, 0, other.make(IOASID_DSA_OPCODE_NOOP, kRecord), rec(IOASID_DSA_COMP_SUCCESS)))
      << "the shared WQ goes on";
  Node fresh;
  EXPECT_EQ(ioctl_value(fresh.fd(), IOASID_GET_API_VERSION, 0), IOASID_API_VERSION) << "the daemon answers";
  const uint32_t dev = bind_device(fresh, "dsa0");
  EXPECT_EQ(wq_enable(fresh.fd(), wq_request(dev, mine, kShared)), kOk) << "the closed file's WQ was disabled";
  EXPECT_EQ(wq_disable(fresh.fd(), dev, mine), kOk);
  owner.reset();
  expect_daemon_alive();
}


// ================================================================ regressions

using Millis = std::chrono::milliseconds;
Millis elapsed_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - start);
}
// What "returns promptly" means where descriptors wait for page responses: well under the
// page timeout (the harness daemon runs with --page-timeout 1500), i.e. without waiting
// for one.
constexpr Millis kPrompt{1000};

// Another file opens the node and its GET_API_VERSION is answered, within kPrompt.
::testing::AssertionResult another_file_answers_promptly() {
  const auto start = std::chrono::steady_clock::now();
  Node other;
  Errno err;
  const long version = ioctl_value(other.fd(), IOASID_GET_API_VERSION, 0, &err);
  const auto took = elapsed_since(start);
  if (version != IOASID_API_VERSION)
    return ::testing::AssertionFailure() << "GET_API_VERSION answered " << version << " (" << err << ")";
  if (took >= kPrompt)
    return ::testing::AssertionFailure() << "another file's open + GET_API_VERSION took " << took.count() << " ms";
  return ::testing::AssertionSuccess();
}

// ATTACH_IOASID_PASID of `pasid` to the client's IOASID through its dsa0.
Errno attach_to(const Client& c, uint32_t pasid) {
  ioasid_attach attach{.dev_id = c.dev, .ioasid = c.ioasid, .pasid = pasid};
  return ioctl_errno(c.fd(), IOASID_ATTACH_IOASID_PASID, &attach);
}

// FREE of `pasid` by its owner `a` counts 1, yet `other` cannot ALLOC that number while
// something still runs at it (`while_what`); if it could, it attaches it as its own.
// True when the number was held, as it must be.
bool expect_freed_but_held(const Client& a, const Client& other, uint32_t pasid, const char* while_what) {
  const auto freed = pasid_free(a.fd(), pasid, pasid);
  EXPECT_EQ(freed.err, kOk);
  EXPECT_EQ(freed.pasid, 1u);
  const auto taken = pasid_alloc(other.fd(), pasid, pasid);
  EXPECT_EQ(taken.err, Err(ENOSPC)) << "ALLOC of " << pasid << " by another file " << while_what;
  if (taken.err == kOk) {  // the regression: the other file uses the number as its own
    EXPECT_EQ(attach_to(other, pasid), kOk);
  }
  return taken.err != kOk;
}

// A dedicated WQ runs at its PASID for as long as it is enabled, so it holds the PASID:
// a FREE detaches it and leaves the number FREE_PENDING until the WQ is disabled. Were it
// given to another file, the WQ's owner would write into that file's memory.
TEST(DsaPasidLifetime, AFreedPasidOfADedicatedWqIsNotReallocatedWhileItIsEnabled) {
  Client a(43), other(44);
  const uint32_t wq = 2;
  const uint32_t p = a.pasid;
  ASSERT_EQ(a.enable(wq, IOASID_WQ_ENABLE), kOk);
  EXPECT_TRUE(a.expect(wq, 0, a.make(IOASID_DSA_OPCODE_NOOP, kRecord), rec(IOASID_DSA_COMP_SUCCESS)));
  // A pending number is not free: ALLOC of exactly it finds no free PASID.
  const bool held = expect_freed_but_held(a, other, p, "while the dedicated WQ is enabled");

  // The WQ's PASID is not this file's any more: its submits are refused.
  const auto fill = a.make(IOASID_DSA_OPCODE_MEMFILL, kRecord, record(1), 0x4141414141414141ull, kData, 4096);
  const auto s = a.submit(wq, fill);
  EXPECT_TRUE(refused(s, ENOENT)) << s;
  if (accepted(s)) wait_record(other.at(record(1)), 2s);  // the regression: give it time to land
  EXPECT_TRUE(all_zero(other.at(kBase), other.mem.size)) << "nothing lands in the other file's memory";
  EXPECT_TRUE(all_zero(a.at(record(1)), kDefaultSize - 32)) << "nor in a's: nothing ran";

  // Disabling the WQ drops its hold: the number is free for anyone, and then another
  // file's; a's dedicated WQ cannot take it back.
  ASSERT_EQ(wq_disable(a.fd(), a.dev, wq), kOk);
  if (held) {
    const auto reused = pasid_alloc_retry(other.fd(), p, p);
    ASSERT_EQ(reused.err, kOk) << "the number stayed pending after the WQ was disabled";
    EXPECT_EQ(reused.pasid, p);
    EXPECT_EQ(attach_to(other, p), kOk);
  }
  EXPECT_EQ(a.enable(wq, IOASID_WQ_ENABLE), Err(EACCES)) << "dedicated to another file's PASID";
  EXPECT_TRUE(refused(a.submit(wq, fill), EINVAL)) << "disabled";
  EXPECT_TRUE(all_zero(other.at(kBase), other.mem.size));
}

// Descriptors queued at a PASID keep it until they complete: a FREE meanwhile detaches
// it (they fault) and leaves the number FREE_PENDING, so they never run in the address
// space of a file that got the number next.
TEST(DsaPasidLifetime, QueuedDescriptorsOfAFreedPasidNeverWriteAnotherFilesMemory) {
  Client holder(45), a(46), other(47);
  const uint32_t wq = 3;
  ASSERT_EQ(holder.enable(wq, kShared | IOASID_WQ_BOF), kOk);
  // The holder's descriptor parks the WQ on a page request; a's queue behind it.
  holder.run(wq, holder.make(IOASID_DSA_OPCODE_MEMFILL, kRecord | kBof, record(0), 1, holder.end(), 8));
  const auto request = next_fault(holder.node);
  ASSERT_TRUE(request) << "no page request within 5 s";
  const uint32_t p = a.pasid;
  a.run(wq, a.make(IOASID_DSA_OPCODE_MEMFILL, kRecord, record(1), 0x4242424242424242ull, kData, 4096));
  a.run(wq, a.make(IOASID_DSA_OPCODE_MEMFILL, 0, 0, 0x4343434343434343ull, kData + k4K, 4096));
  const bool held = expect_freed_but_held(a, other, p, "while descriptors at it are queued");

  ASSERT_EQ(page_resp(holder.fd(), holder.dev, holder.pasid, request->grpid, IOASID_PAGE_RESP_INVALID), kOk);
  EXPECT_TRUE(record_is(holder.at(record(0)),
                        rec(IOASID_DSA_COMP_PAGE_FAULT_IR | IOASID_DSA_COMP_STATUS_WRITE, 0, holder.end())));
  ASSERT_TRUE(holder.sync(wq)) << "a's descriptors have completed";
  EXPECT_TRUE(all_zero(other.at(kBase), other.mem.size)) << "nothing lands in the other file's memory";
  EXPECT_TRUE(all_zero(a.at(kBase), a.mem.size)) << "nor in a's: the FREE detached the route";
  // The first one's record could not be written (its PASID has no route): a fault record.
  const auto fault = next_fault(a.node);
  ASSERT_TRUE(fault) << "no fault record for the unreachable completion record";
  EXPECT_EQ(fault->type, uint32_t(IOASID_FAULT_DMA_UNRECOV));
  EXPECT_EQ(fault->dev_id, a.dev);
  EXPECT_EQ(fault->pasid, p);
  EXPECT_EQ(fault->reason, uint32_t(IOASID_FAULT_REASON_PASID_INVALID)) << "no route at the PASID";
  EXPECT_EQ(fault->addr, record(1));
  EXPECT_TRUE(drain_faults(a.node).empty());

  // Completed: the number is free again.
  if (held) {
    const auto reused = pasid_alloc_retry(other.fd(), p, p);
    ASSERT_EQ(reused.err, kOk) << "the number stayed pending after its descriptors completed";
    EXPECT_EQ(reused.pasid, p);
    EXPECT_EQ(attach_to(other, p), kOk);
  }
  ASSERT_TRUE(holder.sync(wq));
  EXPECT_TRUE(all_zero(other.at(kBase), other.mem.size));
}

// A move whose destination overlaps the end of its source runs backwards; if the
// destination runs into unmapped memory it moves nothing (a backward prefix would have
// overwritten source bytes the rest needs), so software can redo it, and a resumed
// block-on-fault move gives memmove's result.
TEST(DsaFaults, AnOverlappingMoveThatFaultsMovesNothing) {
  Client c(48);
  const uint32_t wq = 4, bof_wq = 5;
  ASSERT_EQ(c.enable(wq), kOk);
  ASSERT_EQ(c.enable(bof_wq, kShared | IOASID_WQ_BOF), kOk);
  const uint64_t end = c.end();
  const uint64_t src = end - 0x2800, dst = end - 0x1800;
  const uint32_t size = 0x2000;  // dst runs 0x800 past the memory
  const auto original = pattern(0x2800, 0x5c);
  c.write(src, original);
  EXPECT_TRUE(c.expect(wq, 0, c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, 0, src, dst, size),
                       rec(IOASID_DSA_COMP_PAGE_FAULT_NOBOF | IOASID_DSA_COMP_STATUS_WRITE, 0, end)));
  EXPECT_TRUE(c.holds(src, original)) << "nothing moved";

  c.run(bof_wq, c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord | kBof, record(1), src, dst, size));
  const auto request = next_fault(c.node);
  ASSERT_TRUE(request) << "no page request within 5 s";
  expect_page_request(*request, c, end, IOASID_FAULT_PERM_WRITE);
  EXPECT_EQ(status_of(c.at(record(1))), 0);
  EXPECT_TRUE(c.holds(src, original)) << "nothing moved while it waits";
  Memfd more(k4K, true);
  ASSERT_EQ(c.map(more, end), kOk);
  ASSERT_EQ(page_resp(c.fd(), c.dev, c.pasid, request->grpid, IOASID_PAGE_RESP_SUCCESS), kOk);
  EXPECT_TRUE(record_is(c.at(record(1)), rec(IOASID_DSA_COMP_SUCCESS)));
  auto expected = original;
  expected.resize(0x3000, 0);
  std::memmove(expected.data() + (dst - src), expected.data(), size);
  EXPECT_TRUE(c.holds(src, std::vector<uint8_t>(expected.begin(), expected.begin() + 0x2800))) << "memmove's result";
  EXPECT_TRUE(std::equal(expected.begin() + 0x2800, expected.end(), more.bytes())) << "memmove's result, past the end";
  EXPECT_TRUE(all_zero(more.bytes() + 0x800, k4K - 0x800));
  EXPECT_TRUE(drain_faults(c.node).empty());
}

// Disabling a BOF WQ answers its parked descriptor itself and raises no new page request
// while it drains: it returns without waiting for page responses or their timeout,
// however many descriptors wait behind, and the daemon answers other files meanwhile.
TEST(DsaLifecycle, DisablingABofWqWithDescriptorsWaitingForPagesIsPrompt) {
  Client c(49);
  const uint32_t wq = 5;
  const unsigned n = 5;
  ASSERT_EQ(c.enable(wq, kShared | IOASID_WQ_BOF), kOk);
  for (unsigned i = 0; i < n; ++i)
    c.run(wq, c.make(IOASID_DSA_OPCODE_MEMFILL, kRecord | kBof, record(i), 1, c.end() + i * k4K, 8));
  const auto request = next_fault(c.node);
  ASSERT_TRUE(request) << "no page request within 5 s";
  expect_page_request(*request, c, c.end(), IOASID_FAULT_PERM_WRITE);

  // Two disables at once: the second waits for the first.
  Errno err[2];
  std::atomic<long> took[2] = {-1, -1};
  std::vector<std::thread> disables;
  for (int k = 0; k < 2; ++k)
    disables.emplace_back([&, k] {
      const auto start = std::chrono::steady_clock::now();
      err[k] = wq_disable(c.fd(), c.dev, wq);
      took[k] = elapsed_since(start).count();
    });
  EXPECT_TRUE(another_file_answers_promptly()) << "while the WQ is being disabled";
  for (auto& t : disables) t.join();
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ(err[k], kOk) << "disable " << k;
    EXPECT_LT(took[k], kPrompt.count()) << "disable " << k << " took " << took[k] << " ms";
  }
  // Everything accepted completed before the disables returned.
  EXPECT_TRUE(record_is(c.at(record(0)), rec(IOASID_DSA_COMP_PAGE_FAULT_IR | IOASID_DSA_COMP_STATUS_WRITE, 0, c.end())))
      << "the parked descriptor";
  for (unsigned i = 1; i < n; ++i)
    EXPECT_TRUE(record_is(c.at(record(i)),
                          rec(IOASID_DSA_COMP_PAGE_FAULT_NOBOF | IOASID_DSA_COMP_STATUS_WRITE, 0, c.end() + i * k4K)))
        << "descriptor " << i << ": no page request while the WQ drains";
  EXPECT_TRUE(drain_faults(c.node).empty()) << "no new page request";
  EXPECT_TRUE(refused(c.submit(wq, c.make(IOASID_DSA_OPCODE_NOOP, 0)), EINVAL)) << "disabled";
  // The parked descriptor's group stays outstanding: a late answer is accepted and changes nothing.
  EXPECT_EQ(page_resp(c.fd(), c.dev, c.pasid, request->grpid, IOASID_PAGE_RESP_SUCCESS), kOk);
  EXPECT_EQ(c.enable(wq), kOk) << "free again";
  EXPECT_TRUE(c.expect(wq, n, c.make(IOASID_DSA_OPCODE_NOOP, kRecord), rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_EQ(status_of(c.at(record(0))), IOASID_DSA_COMP_PAGE_FAULT_IR | IOASID_DSA_COMP_STATUS_WRITE);
}

// WQ_CONFIG ENABLE racing DEVICE_UNBIND of the same file: whichever wins, the WQ is not
// left enabled by a file that no longer has the device (nobody could disable it then).
TEST(DsaLifecycle, EnableRacingUnbindNeverLeavesTheWqEnabled) {
  const uint32_t wq = 6;
  Node b;
  const uint32_t bdev = bind_device(b, "dsa0");
  const auto deadline = std::chrono::steady_clock::now() + 3s;  // bounded: the suite also runs in a slow VM
  unsigned rounds = 0;
  for (; rounds < 300 && std::chrono::steady_clock::now() < deadline; ++rounds) {
    {
      Node a;
      const uint32_t dev = bind_device(a, "dsa0");
      std::atomic<bool> started{false};
      std::thread enabler([&] {
        started = true;
        for (;;) {  // until the unbind makes dev_id unknown
          const Errno e = wq_config(a.fd(), wq_request(dev, wq, kShared));
          if (e == Err(ENOENT)) break;
          if (e == kOk) wq_disable(a.fd(), dev, wq);
        }
      });
      while (!started) std::this_thread::yield();
      // A different point of the enabler's loop each round.
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(rounds % 50 * 20);
      while (std::chrono::steady_clock::now() < until) std::this_thread::yield();
      ioasid_device_unbind unbind{.dev_id = dev};
      EXPECT_EQ(ioctl_errno(a.fd(), IOASID_DEVICE_UNBIND, &unbind), kOk);
      enabler.join();
    }
    // a is closed: its WQs are free.
    Errno err;
    eventually([&] { return (err = wq_config(b.fd(), wq_request(bdev, wq, kShared))) != Err(EBUSY); }, kReleaseTimeout);
    ASSERT_EQ(err, kOk) << "round " << rounds << ": the WQ stayed enabled by a file that unbound dsa0 and closed";
    ASSERT_EQ(wq_disable(b.fd(), bdev, wq), kOk);
  }
  EXPECT_GT(rounds, 0u);
  RecordProperty("rounds", static_cast<int>(rounds));
}

// Files closing while another file's descriptors wait for page requests in their shared
// WQs: each release disables its WQ without waiting for page responses, so the WQs are
// free again, and the daemon answers, well before a page timeout.
TEST(DsaLifecycle, ClosingOwnersOfWqsWhereAnotherFileWaitsForPagesIsPrompt) {
  const unsigned n = 4;
  const uint32_t wqs[2] = {0, 1};
  Client b(55);
  auto a1 = std::make_unique<Client>(56);
  auto a2 = std::make_unique<Client>(57);
  ASSERT_EQ(a1->enable(wqs[0], kShared | IOASID_WQ_BOF), kOk);
  ASSERT_EQ(a2->enable(wqs[1], kShared | IOASID_WQ_BOF), kOk);
  auto where = [&](unsigned w, unsigned i) { return b.end() + (w * n + i) * k4K; };
  for (unsigned w = 0; w < 2; ++w)
    for (unsigned i = 0; i < n; ++i)
      b.run(wqs[w], b.make(IOASID_DSA_OPCODE_MEMFILL, kRecord | kBof, record(w * n + i), 1, where(w, i), 8));
  const auto first = next_fault(b.node);
  ASSERT_TRUE(first) << "no page request within 5 s";

  const auto start = std::chrono::steady_clock::now();
  a1->close();
  a2->close();
  EXPECT_TRUE(another_file_answers_promptly()) << "while the closed files are released";
  Node fresh;
  const uint32_t dev = bind_device(fresh, "dsa0");
  for (uint32_t wq : wqs) {
    Errno err;
    eventually([&] { return (err = wq_config(fresh.fd(), wq_request(dev, wq, kShared))) != Err(EBUSY); },
               kReleaseTimeout);
    EXPECT_EQ(err, kOk) << "wq " << wq << " of a closed file";
  }
  const auto took = elapsed_since(start);
  EXPECT_LT(took, kPrompt) << "the closed files' WQs were free after " << took.count() << " ms";

  // A disabled WQ has completed what it accepted: b's front descriptors ended
  // PAGE_FAULT_IR if they raised a page request, the others with no page request.
  std::vector<ioasid_fault> requests{*first};
  for (const auto& f : drain_faults(b.node)) requests.push_back(f);
  for (const auto& r : requests) {
    EXPECT_EQ(r.type, uint32_t(IOASID_FAULT_PAGE_REQ));
    EXPECT_TRUE(r.addr == where(0, 0) || r.addr == where(1, 0)) << "a page request for 0x" << std::hex << r.addr;
  }
  for (unsigned w = 0; w < 2; ++w) {
    const bool requested =
        std::any_of(requests.begin(), requests.end(), [&](const ioasid_fault& r) { return r.addr == where(w, 0); });
    const uint8_t front = requested ? IOASID_DSA_COMP_PAGE_FAULT_IR : IOASID_DSA_COMP_PAGE_FAULT_NOBOF;
    EXPECT_TRUE(record_is(b.at(record(w * n)), rec(front | IOASID_DSA_COMP_STATUS_WRITE, 0, where(w, 0))))
        << "wq " << wqs[w] << " descriptor 0";
    for (unsigned i = 1; i < n; ++i)
      EXPECT_TRUE(record_is(b.at(record(w * n + i)),
                            rec(IOASID_DSA_COMP_PAGE_FAULT_NOBOF | IOASID_DSA_COMP_STATUS_WRITE, 0, where(w, i))))
          << "wq " << wqs[w] << " descriptor " << i;
  }
  for (uint32_t wq : wqs) EXPECT_EQ(wq_disable(fresh.fd(), dev, wq), kOk);
  expect_daemon_alive();
}

// A client that truncates its memfd under a descriptor does not bring the daemon down:
// the operation faults (the memory is gone: PAGE_FAULT_NOBOF, block on fault or not),
// and a record that cannot be written is a fault record.
TEST(DsaFaults, TruncatingTheMemoryUnderADescriptorFaultsIt) {
  Client c(58), other(59);
  const uint32_t wq = 2, bof_wq = 3;
  ASSERT_EQ(c.enable(wq), kOk);
  ASSERT_EQ(c.enable(bof_wq, kShared | IOASID_WQ_BOF), kOk);
  // Records and an intact source in memory of their own, away from c.mem.
  Memfd intact(k4K, true);
  const uint64_t records = c.end() + 16 * k4K, source = records + 2048;
  ASSERT_EQ(c.map(intact, records), kOk);
  auto record_at = [&](unsigned i) { return intact.bytes() + 32 * i; };
  std::fill(intact.bytes() + 2048, intact.bytes() + k4K, 0x37);
  c.write(kData, pattern(2 * k4K, 0x31));
  EXPECT_TRUE(c.expect(wq, 0, c.make(IOASID_DSA_OPCODE_NOOP, kRecord), rec(IOASID_DSA_COMP_SUCCESS)));
  // c.mem's pages are gone, the daemon's mapping of them too; the test touches them no more.
  ASSERT_EQ(::ftruncate(c.mem.fd, 0), 0);

  constexpr uint8_t kNobof = IOASID_DSA_COMP_PAGE_FAULT_NOBOF, kWrite = IOASID_DSA_COMP_STATUS_WRITE;
  c.run(wq, c.make(IOASID_DSA_OPCODE_CRCGEN, kRecord, records, kData, 0, 4096));
  const auto crc = record_is(record_at(0), rec(kNobof, 0, kData));
  expect_daemon_alive();
  ASSERT_TRUE(crc) << "CRCGEN reading it";
  c.run(wq, c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, records + 32, source, kData + k4K, 512));
  EXPECT_TRUE(record_is(record_at(1), rec(kNobof | kWrite, 0, kData + k4K))) << "MEMMOVE writing it";
  c.run(wq, c.make(IOASID_DSA_OPCODE_COMPARE, kRecord, records + 64, source, kData, 512));
  EXPECT_TRUE(record_is(record_at(2), rec(kNobof, 0, kData))) << "COMPARE reading it";
  c.run(bof_wq, c.make(IOASID_DSA_OPCODE_MEMFILL, kRecord | kBof, records + 96, 5, kData, 64));
  EXPECT_TRUE(record_is(record_at(3), rec(kNobof | kWrite, 0, kData))) << "with block on fault: no page request";
  // A record in it cannot be written: a fault record.
  c.run(wq, c.make(IOASID_DSA_OPCODE_NOOP, kRecord, record(5)));
  const auto fault = next_fault(c.node);
  ASSERT_TRUE(fault) << "no fault record within 5 s";
  EXPECT_EQ(fault->type, uint32_t(IOASID_FAULT_DMA_UNRECOV));
  EXPECT_EQ(fault->pasid, c.pasid);
  EXPECT_EQ(fault->reason, uint32_t(IOASID_FAULT_REASON_UNKNOWN)) << "the translation held, the memory is gone";
  EXPECT_EQ(fault->addr, record(5));
  EXPECT_TRUE(drain_faults(c.node).empty()) << "no page request";
  EXPECT_TRUE(all_zero(record_at(4), 1024 - 4 * 32)) << "no other record";

  expect_daemon_alive();
  EXPECT_TRUE(another_file_answers_promptly());
  const uint32_t others = 4;
  ASSERT_EQ(other.enable(others), kOk);
  EXPECT_TRUE(other.expect(others, 0, other.make(IOASID_DSA_OPCODE_MEMFILL, kRecord, 0, ~0ull, kData, 64),
                           rec(IOASID_DSA_COMP_SUCCESS)));
  EXPECT_EQ(other.at(kData)[63], 0xff);
  c.run(wq, c.make(IOASID_DSA_OPCODE_NOOP, kRecord, records + 128));
  EXPECT_TRUE(record_is(record_at(4), rec(IOASID_DSA_COMP_SUCCESS))) << "c's WQ goes on";
}

// COMPARE reports the offset of the first differing byte also when its operands
// overlap and span two mappings (only a move's overlap changes the direction).
TEST(DsaOps, CompareOfOverlappingOperandsReportsTheFirstDifference) {
  Client c(61);
  const uint32_t wq = 3;
  ASSERT_EQ(c.enable(wq), kOk);
  Memfd more(k4K, true);
  ASSERT_EQ(c.map(more, c.end()), kOk);
  const uint64_t low = c.end() - 0x1000, high = c.end() - 0x800;  // high runs 0x800 into `more`
  c.at(low)[0x10] = 1;      // low[0x10] != high[0x10]: the first difference
  more.bytes()[0x100] = 2;  // high[0x900] != low[0x900]: a later one, in the other mapping
  EXPECT_TRUE(c.expect(wq, 0, c.make(IOASID_DSA_OPCODE_COMPARE, kRecord, 0, low, high, 0x1000),
                       rec(IOASID_DSA_COMP_SUCCESS, 0x10, 0, 1)))
      << "src below dst";
  EXPECT_TRUE(c.expect(wq, 1, c.make(IOASID_DSA_OPCODE_COMPARE, kRecord, 0, high, low, 0x1000),
                       rec(IOASID_DSA_COMP_SUCCESS, 0x10, 0, 1)))
      << "src above dst";
  c.at(low)[0x10] = 0;
  EXPECT_TRUE(c.expect(wq, 2, c.make(IOASID_DSA_OPCODE_COMPARE, kRecord, 0, low, high, 0x1000),
                       rec(IOASID_DSA_COMP_SUCCESS, 0x900, 0, 1)))
      << "the later difference once the first is gone";
}

// `pgtable` of one file's IOASID lists that file's routes only, though another file
// attached its own PASID of the shared dsa0 to its own IOASID of the same number.
TEST(DsaAdmin, PgtableOfASharedDeviceListsOnlyTheRoutesOfTheFileAsked) {
  if (admin_socket_path().empty()) GTEST_SKIP() << "no admin socket (an outside node)";
  Client a(62), b(63);
  const auto devices = nlohmann::json::parse(admin_request(R"({"cmd":"devices"})"), nullptr, false);
  ASSERT_TRUE(devices.is_object() && devices.value("ok", false)) << devices.dump();
  std::map<uint32_t, uint32_t> route_context;  // pasid -> context
  for (const auto& row : devices["result"])
    if (row["name"] == "dsa0")
      for (const auto& route : row["routes"])
        if (!route["pasid"].is_null()) route_context[route["pasid"]] = route["context"];
  ASSERT_TRUE(route_context.count(a.pasid) && route_context.count(b.pasid)) << devices.dump();
  for (const Client* c : {&a, &b}) {
    const uint32_t context = route_context[c->pasid];
    const auto reply = nlohmann::json::parse(admin_request(R"({"cmd":"pgtable","context":)" + std::to_string(context) +
                                                           R"(,"ioasid":)" + std::to_string(c->ioasid) + "}"),
                                             nullptr, false);
    ASSERT_TRUE(reply.is_object() && reply.value("ok", false)) << reply.dump();
    const auto expected =
        nlohmann::json::array({nlohmann::json{{"device", "dsa0"}, {"dev_id", c->dev}, {"pasid", c->pasid}}});
    EXPECT_EQ(reply["result"]["routes"], expected)
        << "context " << context << " ioasid " << c->ioasid << " (a's PASID " << a.pasid << ", b's " << b.pasid << ")";
  }
}


// Another file cannot stall a shared block-on-fault WQ: b submits block-on-fault
// descriptors at unmapped addresses of its own PASID to a's WQ and never answers their
// page requests. a's work submitted afterwards completes well within the page timeout
// (the harness daemon runs with --page-timeout 1500), both when it finds room behind
// b's waiting descriptor and when b has filled the WQ (a's submission then meets
// RETRY). b's descriptors end as they would without block on fault: partial records.
TEST(DsaIsolation, AnotherFileCannotStallASharedBlockOnFaultWq) {
  constexpr Millis kWellUnderThePageTimeout{750};
  Client a(50), b(51);
  const uint32_t wq = 2;
  ASSERT_EQ(a.enable(wq, kShared | IOASID_WQ_BOF, 16), kOk);
  const auto data = pattern(256, 0x31);
  a.write(kData, data);
  constexpr uint8_t kGaveWay = IOASID_DSA_COMP_PAGE_FAULT_NOBOF | IOASID_DSA_COMP_STATUS_WRITE;

  // b's descriptor waits for a page; a's MEMMOVE finds room behind it.
  b.run(wq, b.make(IOASID_DSA_OPCODE_MEMFILL, kRecord | kBof, record(0), 1, b.end(), 8));
  const auto request = next_fault(b.node);
  ASSERT_TRUE(request) << "no page request within 5 s";
  auto start = std::chrono::steady_clock::now();
  a.run(wq, a.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, record(0), kData, kData + k4K, 256));
  auto moved = wait_record(a.at(record(0)), kWellUnderThePageTimeout);
  ASSERT_TRUE(moved) << "a's MEMMOVE did not complete within " << kWellUnderThePageTimeout.count()
                     << " ms behind b's unanswered page request";
  EXPECT_EQ(moved->status, IOASID_DSA_COMP_SUCCESS);
  EXPECT_LT(elapsed_since(start), kWellUnderThePageTimeout);
  EXPECT_TRUE(a.holds(kData + k4K, data));
  EXPECT_TRUE(record_is(b.at(record(0)), rec(kGaveWay, 0, b.end()))) << "b's descriptor gave way";

  // b fills the WQ: one descriptor waits for a page, the rest of its own queue behind it.
  EXPECT_TRUE(drain_faults(b.node).empty()) << "b's first page request is its only one";
  unsigned queued = 0;
  for (Submitted s; queued < 64; ++queued) {
    s = b.submit(wq, b.make(IOASID_DSA_OPCODE_MEMFILL, kRecord | kBof, record(1 + queued), 1,
                            b.end() + (1 + queued) * k4K, 8));
    if (retry(s)) break;
    ASSERT_TRUE(accepted(s)) << s;
  }
  ASSERT_LT(queued, 64u) << "b never met a full WQ";
  const auto waiting = next_fault(b.node);
  ASSERT_TRUE(waiting) << "no page request within 5 s";
  EXPECT_EQ(waiting->addr, b.end() + k4K);

  // a's submission meets RETRY at first, then gets in and completes.
  start = std::chrono::steady_clock::now();
  Submitted s;
  while (retry(s = a.submit(wq, a.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, record(1), kData, kData + 2 * k4K, 256))) &&
         elapsed_since(start) < kWellUnderThePageTimeout)
    std::this_thread::sleep_for(100us);
  ASSERT_TRUE(accepted(s)) << "a's MEMMOVE still not accepted after " << elapsed_since(start).count()
                           << " ms: b's descriptors hold the WQ: " << s;
  moved = wait_record(a.at(record(1)), kWellUnderThePageTimeout);
  ASSERT_TRUE(moved) << "a's MEMMOVE did not complete";
  EXPECT_EQ(moved->status, IOASID_DSA_COMP_SUCCESS);
  EXPECT_LT(elapsed_since(start), kWellUnderThePageTimeout) << "submitted and completed";
  EXPECT_TRUE(a.holds(kData + 2 * k4K, data));
  for (unsigned i = 0; i < queued; ++i)
    EXPECT_TRUE(record_is(b.at(record(1 + i)), rec(kGaveWay, 0, b.end() + (1 + i) * k4K))) << "b's descriptor " << i;
  EXPECT_TRUE(drain_faults(b.node).empty()) << "no page request raised while a's work waited";
  ASSERT_TRUE(a.sync(wq));
}


// A descriptor that ends with a page-fault status is a dsa_fault event (docs/EVENTS.md):
// the device, the PASID, the work queue, the status and the faulting address.
TEST(EventDsa, AFaultedDescriptorIsADsaFaultEvent) {
  if (admin_socket_path().empty()) GTEST_SKIP() << "needs the admin socket of a harness-owned daemon";
  let_the_event_budget_refill();
  AdminEvents events;
  ASSERT_TRUE(events.ok());
  Client c(57);
  const uint32_t wq = 5;
  ASSERT_EQ(c.enable(wq), kOk);
  constexpr uint8_t kNobof = IOASID_DSA_COMP_PAGE_FAULT_NOBOF, kWrite = IOASID_DSA_COMP_STATUS_WRITE;
  ASSERT_TRUE(c.expect(wq, 0, c.make(IOASID_DSA_OPCODE_MEMMOVE, kRecord, 0, kData, c.end() - 100, 300),
                       rec(kNobof | kWrite, 100, c.end())));
  const std::string pid = "\"pid\":" + std::to_string(::getpid()) + ",";
  const std::string heard = events.wait_for({"\"event\":\"dsa_fault\"", pid}, 3s);
  ASSERT_FALSE(heard.empty()) << "no dsa_fault event";
  EXPECT_NE(heard.find("\"device\":\"dsa0\""), std::string::npos) << heard;
  EXPECT_NE(heard.find("\"pasid\":" + std::to_string(c.pasid) + ","), std::string::npos) << heard;
  EXPECT_NE(heard.find("\"wq\":" + std::to_string(wq)), std::string::npos) << heard;
  EXPECT_NE(heard.find("\"address\":" + std::to_string(c.end()) + ","), std::string::npos) << heard;
  EXPECT_NE(heard.find("\"status\":" + std::to_string(kNobof | kWrite) + ","), std::string::npos) << heard;
  // A descriptor that succeeds is none.
  EXPECT_TRUE(c.sync(wq));
  EXPECT_EQ(events.count({"\"event\":\"dsa_fault\"", pid}, 300ms), 0u) << "a successful DRAIN was a dsa_fault";
}

}  // namespace
}  // namespace conf

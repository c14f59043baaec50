// SPDX-License-Identifier: MIT
// DEVICE_DMA through the emulated IOMMU, fault records on read()/poll(), and dirty
// tracking: the rows of UAPI.md and the data path, with memory from memfds (mapped
// into the daemon) and private anonymous mappings (reached through /proc/<pid>/mem).
#include "harness.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

namespace conf {
namespace {

constexpr uint64_t k4K = 4096, k2M = 2ull << 20;
constexpr uint32_t kMapRW = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE;

ioasid_device_dma dma_request(uint32_t dev_id, uint64_t iova, std::span<uint8_t> buffer, uint32_t flags = 0,
                              uint32_t pasid = 0) {
  return {.dev_id = dev_id,
          .flags = flags,
          .pasid = pasid,
          .iova = iova,
          .length = buffer.size(),
          .buf_uptr = reinterpret_cast<uint64_t>(buffer.data())};
}

// DEVICE_DMA that must run; returns the struct with its outcome.
ioasid_device_dma run_dma(int fd, uint32_t dev_id, uint64_t iova, std::span<uint8_t> buffer, uint32_t flags = 0,
                          uint32_t pasid = 0) {
  auto dma = dma_request(dev_id, iova, buffer, flags, pasid);
  EXPECT_EQ(ioctl_errno(fd, IOASID_DEVICE_DMA, &dma), kOk);
  return dma;
}

Errno unmap(int fd, uint32_t ioasid, uint64_t iova, uint64_t length) {
  ioasid_unmap_dma request{.ioasid = ioasid, .iova = iova, .length = length};
  return ioctl_errno(fd, IOASID_UNMAP_DMA, &request);
}

std::vector<uint8_t> pattern(size_t size, uint8_t seed) {
  std::vector<uint8_t> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 12));
  return bytes;
}

// A file (O_NONBLOCK unless `flags` say otherwise) with dma1 (no PASID) attached by RID
// to a fresh IOASID, which the tests map memory in.
struct RidSetup {
  explicit RidSetup(int flags = O_NONBLOCK)
      : node(flags), ioas(must(client::Ioas::allocate(node.file()))), ioasid(ioas.id()) {
    auto dma1 = bound_device(node, "dma1");
    must(client::Attachment::attach(dma1, ioas)).release();
    dev = dma1.release();
  }
  int fd() const { return node.fd(); }
  Node node;
  client::Ioas ioas;
  uint32_t ioasid;
  uint32_t dev = 0;
};

TEST(DeviceDma, Rows) {
  RidSetup s;
  Memfd file(k4K);
  const uint64_t iova = map_memfd(s.ioas, file);
  std::vector<uint8_t> buffer(k4K);
  auto expect = [&](ioasid_device_dma dma, Errno err, const char* why) {
    EXPECT_EQ(ioctl_errno(s.fd(), IOASID_DEVICE_DMA, &dma), err) << why;
  };
  expect(dma_request(s.dev, iova, buffer, 1u << 7), Err(EOPNOTSUPP), "unknown flag");
  auto reserved = dma_request(s.dev, iova, buffer);
  reserved.__reserved = 1;
  expect(reserved, Err(EOPNOTSUPP), "non-zero __reserved");
  expect(dma_request(s.dev + 40, iova, buffer), Err(ENOENT), "no such dev_id");
  expect(dma_request(s.dev, iova, std::span(buffer).first(0)), Err(EINVAL), "length 0");
  auto huge = dma_request(s.dev, iova, buffer);
  huge.length = 1ull << 40;
  expect(huge, Err(EINVAL), "above the maximum transfer");
  auto wraps = dma_request(s.dev, ~0ull - 100, buffer);
  expect(wraps, Err(EOVERFLOW), "iova + length wraps");
  expect(dma_request(s.dev, iova, buffer, IOASID_DMA_PASID, 100), Err(EOPNOTSUPP), "PASID on dma1");
  expect(dma_request(s.dev, iova, buffer, 0, 100), Err(EINVAL), "pasid without the PASID flag");
  auto bad_buffer = dma_request(s.dev, iova, buffer, IOASID_DMA_WRITE);
  bad_buffer.buf_uptr = 8;
  expect(bad_buffer, Err(EFAULT), "device write from an unmapped buffer");
  EXPECT_TRUE(drain_faults(s.node).empty()) << "errors queue no fault";

  Node other;
  const uint32_t dma0 = bind_device(other, "dma0");
  ioasid_device_dma pasid0 = dma_request(dma0, iova, buffer, IOASID_DMA_PASID, 0);
  EXPECT_EQ(ioctl_errno(other.fd(), IOASID_DEVICE_DMA, &pasid0), Err(EINVAL)) << "PASID 0 is RID_PASID";
  ioasid_device_dma too_wide = dma_request(dma0, iova, buffer, IOASID_DMA_PASID, 1u << 20);
  EXPECT_EQ(ioctl_errno(other.fd(), IOASID_DEVICE_DMA, &too_wide), Err(EINVAL)) << "pasid beyond 20 bits";
}

// On PCIe the privileged bit travels in the PASID prefix: a request without PASID
// cannot be a supervisor request. The row is EINVAL, changes nothing (no byte moves,
// no fault is queued), and the daemon's log says why.
TEST(DeviceDma, PrivWithoutPasidIsEinvalAndMovesNothing) {
  RidSetup s;
  Memfd file(k4K, /*map_it=*/true);
  ASSERT_NE(file.bytes(), nullptr);
  const uint64_t iova = map_memfd(s.ioas, file);
  auto data = pattern(k4K, 0x5a);
  const auto log = daemon_log_path();
  std::streamoff offset = 0;
  if (log) offset = std::ifstream(*log, std::ios::ate).tellg();

  auto priv_write = dma_request(s.dev, iova, data, IOASID_DMA_WRITE | IOASID_DMA_PRIV);
  EXPECT_EQ(ioctl_errno(s.fd(), IOASID_DEVICE_DMA, &priv_write), Err(EINVAL)) << "PRIV without PASID, write";
  EXPECT_EQ(priv_write.out_status, 0u);
  EXPECT_TRUE(std::all_of(file.bytes(), file.bytes() + k4K, [](uint8_t b) { return b == 0; })) << "no byte moved";
  std::vector<uint8_t> back(k4K, 0xee);
  auto priv_read = dma_request(s.dev, iova, back, IOASID_DMA_PRIV);
  EXPECT_EQ(ioctl_errno(s.fd(), IOASID_DEVICE_DMA, &priv_read), Err(EINVAL)) << "PRIV without PASID, read";
  EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](uint8_t b) { return b == 0xee; })) << "buffer untouched";
  EXPECT_TRUE(drain_faults(s.node).empty()) << "errors queue no fault";

  // Only the flag was wrong: the same request without it runs.
  auto plain = run_dma(s.fd(), s.dev, iova, data, IOASID_DMA_WRITE);
  EXPECT_EQ(plain.out_status, uint32_t(IOASID_DMA_OK));
  EXPECT_TRUE(std::equal(data.begin(), data.end(), file.bytes()));

  // A PASID-capable device (dma0) without the PASID flag: the same row.
  Node other;
  const uint32_t dma0 = bind_device(other, "dma0");
  auto on_dma0 = dma_request(dma0, iova, data, IOASID_DMA_PRIV);
  EXPECT_EQ(ioctl_errno(other.fd(), IOASID_DEVICE_DMA, &on_dma0), Err(EINVAL)) << "PRIV without PASID on dma0";

  if (!log) return;  // the daemon is not the harness's (IOASID_DEV is set)
  EXPECT_TRUE(eventually(
      [&] {
        std::ifstream in(*log);
        in.seekg(offset);
        for (std::string line; std::getline(in, line);)
          if (line.find("IOASID_DEVICE_DMA") != std::string::npos && line.find("EINVAL") != std::string::npos &&
              line.find("PASID prefix") != std::string::npos)
            return true;
        return false;
      },
      std::chrono::seconds(2)))
      << "no log line says why PRIV without PASID was refused";
}

// Both directions byte for byte, for one kind of memory mapped at `iova`, whose bytes
// the client sees at `client`.
void expect_byte_exact(const RidSetup& s, uint64_t iova, uint8_t* client, size_t size) {
  auto written = pattern(size, 0x31);
  auto out = run_dma(s.fd(), s.dev, iova, written, IOASID_DMA_WRITE);
  EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_OK));
  EXPECT_TRUE(std::equal(written.begin(), written.end(), client)) << "device write seen by the client";

  // The client writes; the next device read sees it with no ioctl between.
  auto fresh = pattern(size, 0x77);
  std::copy(fresh.begin(), fresh.end(), client);
  std::vector<uint8_t> read_back(size);
  out = run_dma(s.fd(), s.dev, iova, read_back);
  EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_OK));
  EXPECT_EQ(read_back, fresh) << "client write seen by the device";

  // An unaligned piece in the middle, across a page boundary.
  std::vector<uint8_t> piece(3 * k4K + 123, 0xa5);
  out = run_dma(s.fd(), s.dev, iova + k4K - 17, piece, IOASID_DMA_WRITE);
  EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_OK));
  EXPECT_TRUE(std::all_of(client + k4K - 17, client + k4K - 17 + piece.size(), [](uint8_t b) { return b == 0xa5; }));
  EXPECT_EQ(client[k4K - 18], fresh[k4K - 18]) << "the byte before the piece is untouched";
  EXPECT_EQ(client[k4K - 17 + piece.size()], fresh[k4K - 17 + piece.size()]) << "and the byte after";
  EXPECT_TRUE(drain_faults(s.node).empty());
}

TEST(DeviceDma, MemfdByteExactBothWaysAndCoherent) {
  RidSetup s;
  Memfd file(2 * k2M, true);
  const uint64_t iova = map_memfd(s.ioas, file);
  expect_byte_exact(s, iova, file.bytes(), file.size);
}

TEST(DeviceDma, SharedMappingByteExactThroughMapDma) {
  RidSetup s;
  Memfd file(8 * k4K, true);
  const uint64_t iova = map_memory(s.ioas, file.mapped());
  expect_byte_exact(s, iova, file.bytes(), file.size);
}

TEST(DeviceDma, PrivateAnonymousByteExactBothWays) {
  RidSetup s;
  const size_t size = 16 * k4K;
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  std::memset(p, 0, size);
  const uint64_t iova = map_memory(s.ioas, {static_cast<std::byte*>(p), size});
  expect_byte_exact(s, iova, static_cast<uint8_t*>(p), size);
  munmap(p, size);
}

TEST(DeviceDma, StopsAtTheFirstFaultWithEverythingBeforeItDone) {
  RidSetup s;
  Memfd file(2 * k4K, true);
  const uint64_t iova = map_memfd(s.ioas, file);
  // Three pages from the mapping's start: the third is not mapped (an IOVA hole:
  // the areas are placed with gaps, or nothing follows).
  auto data = pattern(3 * k4K, 0x11);
  auto out = run_dma(s.fd(), s.dev, iova, data, IOASID_DMA_WRITE);
  ASSERT_EQ(out.out_status, uint32_t(IOASID_DMA_FAULT));
  EXPECT_EQ(out.out_fault_addr, iova + 2 * k4K);
  EXPECT_EQ(out.out_fault_reason, uint32_t(IOASID_FAULT_REASON_ACCESS));
  EXPECT_TRUE(std::equal(data.begin(), data.begin() + 2 * k4K, file.bytes())) << "the two mapped pages were written";

  const auto faults = drain_faults(s.node);
  ASSERT_EQ(faults.size(), 1u);
  const ioasid_fault& f = faults[0];
  EXPECT_EQ(f.type, uint32_t(IOASID_FAULT_DMA_UNRECOV));
  EXPECT_EQ(f.flags, uint32_t(IOASID_FAULT_ADDR_VALID | IOASID_FAULT_FETCH_ADDR_VALID));
  EXPECT_EQ(f.dev_id, s.dev);
  EXPECT_EQ(f.pasid, 0u);
  EXPECT_EQ(f.ioasid, s.ioasid);
  EXPECT_EQ(f.reason, uint32_t(IOASID_FAULT_REASON_ACCESS));
  EXPECT_EQ(f.perm, uint32_t(IOASID_FAULT_PERM_WRITE));
  EXPECT_EQ(f.addr, iova + 2 * k4K);
  EXPECT_NE(f.fetch_addr, 0u) << "the HPA of the non-present entry";

  // A device read the same way: the bytes before the fault arrive in the buffer.
  std::vector<uint8_t> in(3 * k4K, 0xee);
  out = run_dma(s.fd(), s.dev, iova + k4K, in);
  ASSERT_EQ(out.out_status, uint32_t(IOASID_DMA_FAULT));
  EXPECT_EQ(out.out_fault_addr, iova + 2 * k4K);
  EXPECT_TRUE(std::equal(in.begin(), in.begin() + k4K, data.begin() + k4K));
  EXPECT_EQ(in[k4K], 0xee) << "nothing past the fault";
  const auto read_faults = drain_faults(s.node);
  ASSERT_EQ(read_faults.size(), 1u);
  EXPECT_EQ(read_faults[0].perm, uint32_t(IOASID_FAULT_PERM_READ));
}

TEST(DeviceDma, AfterUnmapFaultsAndTouchesNothing) {
  RidSetup s;
  Memfd file(4 * k4K, true);
  const uint64_t iova = map_memfd(s.ioas, file);
  auto data = pattern(file.size, 0x21);
  EXPECT_EQ(run_dma(s.fd(), s.dev, iova, data, IOASID_DMA_WRITE).out_status, uint32_t(IOASID_DMA_OK));
  std::vector<uint8_t> warm(file.size);
  EXPECT_EQ(run_dma(s.fd(), s.dev, iova, warm).out_status, uint32_t(IOASID_DMA_OK)) << "translations cached";
  ASSERT_EQ(unmap(s.fd(), s.ioasid, iova, file.size), kOk);
  std::memset(file.bytes(), 0, file.size);
  auto out = run_dma(s.fd(), s.dev, iova, data, IOASID_DMA_WRITE);
  EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_FAULT));
  EXPECT_EQ(out.out_fault_addr, iova);
  EXPECT_EQ(out.out_fault_reason, uint32_t(IOASID_FAULT_REASON_ACCESS));
  EXPECT_TRUE(std::all_of(file.bytes(), file.bytes() + file.size, [](uint8_t b) { return b == 0; }))
      << "no byte reached the unmapped memory";
  const auto faults = drain_faults(s.node);
  ASSERT_GE(faults.size(), 1u);
  EXPECT_EQ(faults.back().addr, iova);
}

TEST(DeviceDma, WriteToReadOnlyMappingIsPermissionFault) {
  RidSetup s;
  Memfd file(k4K, true);
  const uint64_t iova = map_memfd(s.ioas, file, {.flags = IOASID_MAP_READABLE});
  std::vector<uint8_t> data(64, 0x5a);
  auto out = run_dma(s.fd(), s.dev, iova, data, IOASID_DMA_WRITE);
  EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_FAULT));
  EXPECT_EQ(out.out_fault_reason, uint32_t(IOASID_FAULT_REASON_PERMISSION));
  EXPECT_EQ(file.bytes()[0], 0);
  EXPECT_EQ(run_dma(s.fd(), s.dev, iova, data).out_status, uint32_t(IOASID_DMA_OK)) << "reading is allowed";
}

TEST(DeviceDma, NoRouteIsPasidInvalid) {
  Node node(O_NONBLOCK);
  const auto dma0 = bound_device(node, "dma0");
  const uint32_t dev = dma0.id();
  std::vector<uint8_t> data(64);
  auto out = run_dma(node.fd(), dev, 0x100000, data);
  EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_FAULT));
  EXPECT_EQ(out.out_fault_reason, uint32_t(IOASID_FAULT_REASON_PASID_INVALID));
  auto faults = drain_faults(node);
  ASSERT_EQ(faults.size(), 1u);
  EXPECT_EQ(faults[0].ioasid, 0u);
  EXPECT_EQ(faults[0].flags, uint32_t(IOASID_FAULT_ADDR_VALID));

  // At a PASID: attached, DMA runs; detached, it faults with the PASID in the record.
  const uint32_t pasid = alloc_pasid(node, slot(40));
  const auto ioas = must(client::Ioas::allocate(node.file()));
  Memfd file(k4K, true);
  const uint64_t iova = map_memfd(ioas, file);
  must(client::Attachment::attach_pasid(dma0, ioas, pasid)).release();
  data.assign(64, 0x42);
  EXPECT_EQ(run_dma(node.fd(), dev, iova, data, IOASID_DMA_WRITE | IOASID_DMA_PASID, pasid).out_status,
            uint32_t(IOASID_DMA_OK));
  EXPECT_EQ(file.bytes()[63], 0x42);
  out = run_dma(node.fd(), dev, iova, data, IOASID_DMA_WRITE);
  EXPECT_EQ(out.out_fault_reason, uint32_t(IOASID_FAULT_REASON_PASID_INVALID)) << "the RID has no route";
  ioasid_attach detach{.dev_id = dev, .ioasid = ioas.id(), .pasid = pasid};
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_DETACH_IOASID_PASID, &detach), kOk);
  out = run_dma(node.fd(), dev, iova, data, IOASID_DMA_PASID | IOASID_DMA_PRIV, pasid);
  EXPECT_EQ(out.out_fault_reason, uint32_t(IOASID_FAULT_REASON_PASID_INVALID));
  faults = drain_faults(node);
  ASSERT_EQ(faults.size(), 2u);
  EXPECT_EQ(faults[1].flags, uint32_t(IOASID_FAULT_ADDR_VALID | IOASID_FAULT_PASID_VALID));
  EXPECT_EQ(faults[1].pasid, pasid);
  EXPECT_EQ(faults[1].perm, uint32_t(IOASID_FAULT_PERM_READ | IOASID_FAULT_PERM_PRIV));
}

TEST(DeviceDma, TruncatedFileFaultsAndTheDaemonLives) {
  RidSetup s;
  Memfd file(4 * k4K);
  const uint64_t iova = map_memfd(s.ioas, file);
  std::vector<uint8_t> data(file.size, 0x12);
  ASSERT_EQ(run_dma(s.fd(), s.dev, iova, data, IOASID_DMA_WRITE).out_status, uint32_t(IOASID_DMA_OK));
  ASSERT_EQ(ftruncate(file.fd, 2 * k4K), 0);  // the last two pages are gone under the mapping
  auto out = run_dma(s.fd(), s.dev, iova, data, IOASID_DMA_WRITE);
  EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_FAULT));
  EXPECT_EQ(out.out_fault_reason, uint32_t(IOASID_FAULT_REASON_UNKNOWN)) << "translated, but no memory behind it";
  EXPECT_GE(out.out_fault_addr, iova);
  EXPECT_LE(out.out_fault_addr, iova + 2 * k4K);
  expect_daemon_alive();
  EXPECT_EQ(ioctl_value(s.fd(), IOASID_GET_API_VERSION, 0), IOASID_API_VERSION);
}

TEST(DeviceDma, ABufferThatEndsEarlyIsEfault) {
  RidSetup s;
  Memfd file(4 * k4K);
  const uint64_t iova = map_memfd(s.ioas, file);
  // Two pages of buffer followed by an unmapped page.
  auto* buffer = static_cast<uint8_t*>(mmap(nullptr, 3 * k4K, PROT_READ | PROT_WRITE,
                                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(buffer, MAP_FAILED);
  ASSERT_EQ(munmap(buffer + 2 * k4K, k4K), 0);
  for (uint32_t flags : {0u, uint32_t(IOASID_DMA_WRITE)}) {
    auto dma = dma_request(s.dev, iova, std::span(buffer, 3 * k4K), flags);
    EXPECT_EQ(ioctl_errno(s.fd(), IOASID_DEVICE_DMA, &dma), Err(EFAULT)) << "flags " << flags;
  }
  EXPECT_TRUE(drain_faults(s.node).empty()) << "a bad buffer is the caller's error, not a device fault";
  munmap(buffer, 2 * k4K);
}

TEST(DeviceDma, IovaBeyondTheAddressWidthIsOutOfRange) {
  RidSetup s;
  Memfd file(k4K);
  map_memfd(s.ioas, file);
  std::vector<uint8_t> data(64);
  const uint64_t beyond = 1ull << get_info(s.fd()).addr_width;
  auto out = run_dma(s.fd(), s.dev, beyond, data);
  EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_FAULT));
  EXPECT_EQ(out.out_fault_reason, uint32_t(IOASID_FAULT_REASON_OOR_ADDRESS));
}

TEST(DeviceDma, FaultsWakeABlockedReaderAndPoll) {
  const RidSetup s(0);  // blocking reads
  const Node& node = s.node;
  const uint32_t dev = s.dev;
  pollfd p{node.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 0), 0) << "nothing queued yet";

  std::atomic<ssize_t> got{-2};
  ioasid_fault record{};
  std::thread reader([&] { got = ::read(node.fd(), &record, sizeof record); });
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(got.load(), -2) << "read() blocks while nothing is queued";
  std::vector<uint8_t> data(64);
  EXPECT_EQ(run_dma(node.fd(), dev, 0x200000, data).out_status, uint32_t(IOASID_DMA_FAULT));
  if (!eventually([&] { return got.load() != -2; }, 5s)) {
    ADD_FAILURE() << "the fault did not wake the blocked read()";
    reader.detach();  // stuck in the kernel: the watchdog ends the suite if it must
    return;
  }
  reader.join();
  EXPECT_EQ(got.load(), ssize_t(sizeof record));
  EXPECT_EQ(record.addr, 0x200000u);
  EXPECT_EQ(record.reason, uint32_t(IOASID_FAULT_REASON_ACCESS));

  EXPECT_EQ(run_dma(node.fd(), dev, 0x300000, data).out_status, uint32_t(IOASID_DMA_FAULT));
  p = {node.fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 1000), 1);
  EXPECT_TRUE(p.revents & POLLIN);
  EXPECT_EQ(::read(node.fd(), &record, sizeof record), ssize_t(sizeof record));
  EXPECT_EQ(record.addr, 0x300000u);
  p = {node.fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "drained";
}

// A client maps its private memory, hands its file to another process and exits: the
// mapping stays in the IOASID, but DMA can no longer reach any process's memory.
TEST(DeviceDma, FilePassedOnAndOwnerExitedNeverWrites) {
  int sockets[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets), 0);
  ChildGuard guard;
  const pid_t owner = ::fork();
  ASSERT_GE(owner, 0);
  if (owner == 0) {
    // Only syscalls here: set up, send the fd and the IOVA, exit.
    const int fd = ::open(node_path().c_str(), O_RDWR | O_CLOEXEC);
    ioasid_device_bind bind{};
    std::snprintf(bind.name, sizeof bind.name, "dma1");
    for (int i = 0; i < 300 && ::ioctl(fd, IOASID_DEVICE_BIND, &bind) != 0; ++i) ::usleep(10000);
    ioasid_alloc alloc{};
    void* memory = ::mmap(nullptr, 4 * k4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    std::memset(memory, 0x33, 4 * k4K);
    if (fd < 0 || bind.out_dev_id == 0 || ::ioctl(fd, IOASID_ALLOC, &alloc) != 0) ::_exit(1);
    ioasid_map_dma map{.flags = kMapRW, .ioasid = alloc.out_ioasid,
                       .user_va = reinterpret_cast<uint64_t>(memory), .length = 4 * k4K};
    ioasid_attach attach{.dev_id = bind.out_dev_id, .ioasid = alloc.out_ioasid};
    if (::ioctl(fd, IOASID_MAP_DMA, &map) != 0 || ::ioctl(fd, IOASID_ATTACH_IOASID, &attach) != 0) ::_exit(2);
    uint64_t message[2] = {map.iova, bind.out_dev_id};
    iovec iov{message, sizeof message};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
    ::_exit(::sendmsg(sockets[1], &msg, 0) == sizeof message ? 0 : 3);
  }
  guard.add(owner);
  uint64_t message[2] = {};
  iovec iov{message, sizeof message};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  ASSERT_EQ(::recvmsg(sockets[0], &msg, 0), ssize_t(sizeof message));
  int fd = -1;
  std::memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof fd);
  int status = 0;
  ASSERT_TRUE(wait_pid_for(owner, 5s, &status));
  guard.reaped(owner);
  ASSERT_EQ(status, 0) << describe_status(status);
  ::close(sockets[0]);
  ::close(sockets[1]);

  const uint64_t iova = message[0];
  const auto dev = static_cast<uint32_t>(message[1]);
  // This process has memory of its own at addresses like the owner's: a write must
  // reach neither.
  std::vector<uint8_t> data(4 * k4K, 0x66);
  auto out = run_dma(fd, dev, iova, data, IOASID_DMA_WRITE);
  EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_FAULT)) << "the owner's address space is gone";
  EXPECT_EQ(out.out_fault_addr, iova);
  EXPECT_EQ(out.out_fault_reason, uint32_t(IOASID_FAULT_REASON_UNKNOWN));
  std::vector<uint8_t> in(4 * k4K, 0);
  out = run_dma(fd, dev, iova, in);
  EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_FAULT));
  EXPECT_TRUE(std::all_of(in.begin(), in.end(), [](uint8_t b) { return b == 0; }));
  ::close(fd);
}

Errno set_tracking(int fd, uint32_t ioasid, uint32_t flags) {
  ioasid_dirty_tracking request{.ioasid = ioasid, .flags = flags};
  return ioctl_errno(fd, IOASID_SET_DIRTY_TRACKING, &request);
}

struct Bitmap {
  Errno err;
  std::vector<uint64_t> words;
};

Bitmap get_bitmap(int fd, uint32_t ioasid, uint64_t iova, uint64_t length, uint64_t page_size = k4K,
                  uint32_t flags = 0) {
  Bitmap out;
  out.words.assign(std::max<uint64_t>(1, (length / std::max<uint64_t>(page_size, 1) + 63) / 64), ~0ull);
  ioasid_dirty_bitmap request{.ioasid = ioasid,
                              .flags = flags,
                              .iova = iova,
                              .length = length,
                              .page_size = page_size,
                              .bitmap_uptr = reinterpret_cast<uint64_t>(out.words.data())};
  out.err = ioctl_errno(fd, IOASID_GET_DIRTY_BITMAP, &request);
  return out;
}

TEST(DirtyTracking, Rows) {
  RidSetup s;
  Memfd file(8 * k4K);
  const uint64_t iova = map_memfd(s.ioas, file);
  EXPECT_EQ(set_tracking(s.fd(), s.ioasid, 1u << 3), Err(EOPNOTSUPP)) << "unknown flag";
  EXPECT_EQ(set_tracking(s.fd(), s.ioasid + 40, IOASID_DIRTY_ENABLE), Err(ENOENT));
  EXPECT_EQ(get_bitmap(s.fd(), s.ioasid, iova, file.size).err, Err(EINVAL)) << "tracking not enabled";
  ASSERT_EQ(set_tracking(s.fd(), s.ioasid, IOASID_DIRTY_ENABLE), kOk);
  EXPECT_EQ(get_bitmap(s.fd(), s.ioasid, iova, file.size).err, kOk);
  EXPECT_EQ(get_bitmap(s.fd(), s.ioasid + 40, iova, file.size).err, Err(ENOENT));
  EXPECT_EQ(get_bitmap(s.fd(), s.ioasid, iova, file.size, k4K, 1u << 4).err, Err(EOPNOTSUPP)) << "unknown flag";
  EXPECT_EQ(get_bitmap(s.fd(), s.ioasid, iova, file.size, 0).err, Err(EINVAL)) << "page_size 0";
  EXPECT_EQ(get_bitmap(s.fd(), s.ioasid, iova, file.size, 3 * k4K).err, Err(EINVAL)) << "page_size not 2^n";
  EXPECT_EQ(get_bitmap(s.fd(), s.ioasid, iova + 512, k4K).err, Err(EINVAL)) << "misaligned iova";
  EXPECT_EQ(get_bitmap(s.fd(), s.ioasid, iova, 0).err, Err(EINVAL)) << "length 0";
  EXPECT_EQ(get_bitmap(s.fd(), s.ioasid, iova, file.size + k4K).err, Err(EINVAL)) << "not wholly mapped";
  EXPECT_EQ(get_bitmap(s.fd(), s.ioasid, iova - k4K, 2 * k4K).err, Err(EINVAL)) << "starts before the mapping";
  ioasid_dirty_bitmap bad{.ioasid = s.ioasid, .iova = iova, .length = file.size, .page_size = k4K, .bitmap_uptr = 8};
  EXPECT_EQ(ioctl_errno(s.fd(), IOASID_GET_DIRTY_BITMAP, &bad), Err(EFAULT));
  EXPECT_EQ(set_tracking(s.fd(), s.ioasid, 0), kOk);
  EXPECT_EQ(get_bitmap(s.fd(), s.ioasid, iova, file.size).err, Err(EINVAL)) << "disabled again";
}

TEST(DirtyTracking, DeviceWritesAreReportedAndCleared) {
  RidSetup s;
  Memfd file(8 * k4K, true);
  const uint64_t iova = map_memfd(s.ioas, file);
  std::vector<uint8_t> data(100, 0x44);
  run_dma(s.fd(), s.dev, iova + 6 * k4K, data, IOASID_DMA_WRITE);  // before tracking: not reported
  ASSERT_EQ(set_tracking(s.fd(), s.ioasid, IOASID_DIRTY_ENABLE), kOk);
  EXPECT_EQ(get_bitmap(s.fd(), s.ioasid, iova, file.size).words, std::vector<uint64_t>{0}) << "enabling starts clean";

  run_dma(s.fd(), s.dev, iova + 1 * k4K + 10, data, IOASID_DMA_WRITE);
  run_dma(s.fd(), s.dev, iova + 5 * k4K - 50, data, IOASID_DMA_WRITE);  // pages 4 and 5
  run_dma(s.fd(), s.dev, iova + 3 * k4K, data);                          // a read dirties nothing
  file.bytes()[7 * k4K] = 1;  // nor does the CPU: only device writes count
  const uint64_t expected = (1u << 1) | (1u << 4) | (1u << 5);
  auto bitmap = get_bitmap(s.fd(), s.ioasid, iova, file.size, k4K, IOASID_DIRTY_NO_CLEAR);
  ASSERT_EQ(bitmap.err, kOk);
  EXPECT_EQ(bitmap.words[0], expected);
  EXPECT_EQ(get_bitmap(s.fd(), s.ioasid, iova, file.size).words[0], expected) << "NO_CLEAR kept them";
  EXPECT_EQ(get_bitmap(s.fd(), s.ioasid, iova, file.size).words[0], 0u) << "cleared by the previous read";

  // Cached translations must not hide the next write of a cleaned page.
  run_dma(s.fd(), s.dev, iova + 1 * k4K, data, IOASID_DMA_WRITE);
  EXPECT_EQ(get_bitmap(s.fd(), s.ioasid, iova, file.size).words[0], 1u << 1);
  // A sub-range: bit 0 is its first page.
  run_dma(s.fd(), s.dev, iova + 6 * k4K, data, IOASID_DMA_WRITE);
  EXPECT_EQ(get_bitmap(s.fd(), s.ioasid, iova + 4 * k4K, 4 * k4K).words[0], 1u << 2);
}

TEST(DirtyTracking, LargerPagesAndAreasSideBySide) {
  RidSetup s;
  Memfd first(k2M), second(k2M);
  const uint64_t iova = 1ull << 32;
  map_memfd(s.ioas, first, {.iova = iova});
  map_memfd(s.ioas, second, {.iova = iova + k2M});
  ASSERT_EQ(set_tracking(s.fd(), s.ioasid, IOASID_DIRTY_ENABLE), kOk);
  std::vector<uint8_t> data(64, 1);
  run_dma(s.fd(), s.dev, iova + k2M + 5 * k4K, data, IOASID_DMA_WRITE);
  auto bitmap = get_bitmap(s.fd(), s.ioasid, iova, 2 * k2M, k2M, IOASID_DIRTY_NO_CLEAR);
  ASSERT_EQ(bitmap.err, kOk) << "two adjacent areas cover the range";
  EXPECT_EQ(bitmap.words[0], 1u << 1);
  // Dirty state is kept per leaf: both areas are mapped with one 2 MiB page each, so
  // a write anywhere in the second reports all 512 of its 4 KiB pages.
  bitmap = get_bitmap(s.fd(), s.ioasid, iova, 2 * k2M);
  ASSERT_EQ(bitmap.words.size(), 16u);
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(bitmap.words[i], i < 8 ? 0 : ~0ull) << "word " << i;
}

// The admin view of what DMA did: the page-table dump and the translation caches.
TEST(DeviceDma, AdminShowsTheTableAndTheCaches) {
  if (admin_socket_path().empty()) GTEST_SKIP() << "needs the admin socket of a harness-owned daemon";
  RidSetup s;
  Memfd file(2 * k4K);
  const uint64_t iova = map_memfd(s.ioas, file);
  std::vector<uint8_t> data(64, 1);
  run_dma(s.fd(), s.dev, iova, data, IOASID_DMA_WRITE);
  run_dma(s.fd(), s.dev, iova, data, IOASID_DMA_WRITE);

  const std::string context = own_context_id();
  ASSERT_FALSE(context.empty());
  const std::string dump = admin_request(R"({"cmd":"pgtable","context":)" + context +
                                         R"(,"ioasid":)" + std::to_string(s.ioasid) + "}");
  EXPECT_NE(dump.find("\"ok\":true"), std::string::npos) << dump;
  char iova_text[32];
  std::snprintf(iova_text, sizeof iova_text, "0x%llx", static_cast<unsigned long long>(iova));
  EXPECT_NE(dump.find(iova_text), std::string::npos) << "the area's IOVA in the dump: " << dump;
  EXPECT_NE(dump.find("dma1"), std::string::npos) << "the route: " << dump;
  const std::string missing = admin_request(R"({"cmd":"pgtable","context":)" + context + R"(,"ioasid":999})");
  EXPECT_NE(missing.find("ENOENT"), std::string::npos) << missing;

  const std::string stats = admin_request(R"({"cmd":"stats"})");
  for (const char* key : {"\"iotlb\"", "\"pasid_cache\"", "\"device_tlbs\"", "\"hits\""})
    EXPECT_NE(stats.find(key), std::string::npos) << key << " in " << stats;
}

}  // namespace
}  // namespace conf

// SPDX-License-Identifier: MIT
// ALLOC, FREE, MAP_DMA, MAP_FILE, UNMAP_DMA, IOVA_RANGES: kernel-managed IOASIDs and
// the rows of UAPI.md, with client memory from memfds and private anonymous mappings.
#include "harness.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

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


// ================================================================ events (docs/EVENTS.md)

std::string own_pid_field() { return "\"pid\":" + std::to_string(::getpid()) + ","; }

TEST(EventIoasid, AllocAndFreeOfKernelManagedAndNestedIoasidsAreEvents) {
  if (admin_socket_path().empty()) GTEST_SKIP() << "needs the admin socket of a harness-owned daemon";
  let_the_event_budget_refill();
  AdminEvents events;
  ASSERT_TRUE(events.ok());
  Node node;
  const uint32_t parent = alloc_ioas(node);
  const std::string id = "\"ioasid\":" + std::to_string(parent);
  EXPECT_FALSE(events.wait_for({"\"event\":\"ioasid_alloc\"", own_pid_field(), id + ","}, 3s).empty())
      << "no ioasid_alloc event for IOASID " << parent;
  ioasid_alloc nested{.flags = IOASID_ALLOC_NESTED, .parent = parent};
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_ALLOC, &nested), kOk);
  const std::string child = "\"ioasid\":" + std::to_string(nested.out_ioasid);
  EXPECT_FALSE(events.wait_for({"\"event\":\"ioasid_alloc\"", own_pid_field(), child + ",",
                                "\"parent\":" + std::to_string(parent) + ","}, 3s).empty())
      << "no ioasid_alloc event naming the parent of nested IOASID " << nested.out_ioasid;
  for (uint32_t ioasid : {nested.out_ioasid, parent}) {
    ioasid_free free{.ioasid = ioasid};
    ASSERT_EQ(ioctl_errno(node.fd(), IOASID_FREE, &free), kOk);
    EXPECT_FALSE(events.wait_for({"\"event\":\"ioasid_free\"", own_pid_field(),
                                  "\"ioasid\":" + std::to_string(ioasid) + ","}, 3s).empty())
        << "no ioasid_free event for IOASID " << ioasid;
  }
}

TEST(EventMap, MapAndUnmapAreEventsWithTheirRange) {
  if (admin_socket_path().empty()) GTEST_SKIP() << "needs the admin socket of a harness-owned daemon";
  let_the_event_budget_refill();
  AdminEvents events;
  ASSERT_TRUE(events.ok());
  Node node;
  const uint32_t ioasid = alloc_ioas(node);
  Memfd memory(4 * k4K, true);
  auto map = map_dma_request(ioasid, memory.va, memory.size, kRW | IOASID_MAP_FIXED_IOVA);
  map.iova = 0x40000000;
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_MAP_DMA, &map), kOk);
  const std::string mapped = events.wait_for({"\"event\":\"map\"", own_pid_field()}, 3s);
  ASSERT_FALSE(mapped.empty()) << "no map event";
  EXPECT_NE(mapped.find("\"iova\":1073741824,"), std::string::npos) << mapped;
  EXPECT_NE(mapped.find("\"length\":16384,"), std::string::npos) << mapped;
  EXPECT_NE(mapped.find("\"ioasid\":" + std::to_string(ioasid) + ","), std::string::npos) << mapped;
  // MAP_FILE is a map too.
  auto file_map = map_file_request(ioasid, memory.fd, 0, k4K, IOASID_MAP_READABLE | IOASID_MAP_FIXED_IOVA);
  file_map.iova = 0x50000000;
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_MAP_FILE, &file_map), kOk);
  EXPECT_FALSE(events.wait_for({"\"event\":\"map\"", own_pid_field(), "\"iova\":1342177280,"}, 3s).empty())
      << "no map event for MAP_FILE";
  ioasid_unmap_dma unmap{.ioasid = ioasid, .iova = 0x40000000, .length = 64 * k4K};  // the whole area in it
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_UNMAP_DMA, &unmap), kOk);
  const std::string unmapped = events.wait_for({"\"event\":\"unmap\"", own_pid_field()}, 3s);
  ASSERT_FALSE(unmapped.empty()) << "no unmap event";
  EXPECT_NE(unmapped.find("\"iova\":1073741824,"), std::string::npos) << unmapped;
  EXPECT_NE(unmapped.find("\"length\":16384,"), std::string::npos) << "the bytes unmapped: " << unmapped;
  // A refused MAP is no event.
  auto refused = map_dma_request(ioasid, memory.va + 1, k4K, kRW);
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_MAP_DMA, &refused), Err(EINVAL));
  EXPECT_EQ(events.count({"\"event\":\"map\"", own_pid_field()}, 300ms), 0u) << "a failed MAP_DMA was announced";
}

// One user mapping in a loop cannot flood the event stream: beyond 1000 a second its
// map/unmap events are dropped, and its next event that is sent says how many were.
TEST(EventMap, AFloodOfMapsIsBoundedPerUser) {
  if (admin_socket_path().empty()) GTEST_SKIP() << "needs the admin socket of a harness-owned daemon";
  let_the_event_budget_refill();
  AdminEvents events;
  ASSERT_TRUE(events.ok());
  Node node;
  const uint32_t ioasid = alloc_ioas(node);
  Memfd memory(k4K, true);
  constexpr int kRounds = 1500;  // 3000 events asked for
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kRounds; ++i) {
    auto map = map_dma_request(ioasid, memory.va, k4K, kRW | IOASID_MAP_FIXED_IOVA);
    map.iova = 0x40000000;
    ASSERT_EQ(ioctl_errno(node.fd(), IOASID_MAP_DMA, &map), kOk);
    ioasid_unmap_dma unmap{.ioasid = ioasid, .iova = 0x40000000, .length = k4K};
    ASSERT_EQ(ioctl_errno(node.fd(), IOASID_UNMAP_DMA, &unmap), kOk);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<std::string> lines;
  const size_t sent = events.count({own_pid_field(), "map\""}, 500ms, &lines);
  // Each sent event says how many of this user's were dropped just before it.
  auto suppressed_in = [](const std::string& line) -> uint64_t {
    const size_t at = line.find("\"suppressed\":");
    return at == std::string::npos ? 0 : std::stoull(line.substr(at + 13));
  };
  uint64_t suppressed = 0;
  for (const auto& line : lines) suppressed += suppressed_in(line);
  // The budget: a full bucket of 1000, then 1000 a second.
  const double allowed = 1000 + 1000 * seconds + 5;
  EXPECT_LE(static_cast<double>(sent), allowed) << "sent " << sent << " map/unmap events in " << seconds << " s";
  // Once the budget has refilled, the next event carries what is still unaccounted for.
  let_the_event_budget_refill();
  auto map = map_dma_request(ioasid, memory.va, k4K, kRW | IOASID_MAP_FIXED_IOVA);
  map.iova = 0x40000000;
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_MAP_DMA, &map), kOk);
  const std::string next = events.wait_for({"\"event\":\"map\"", own_pid_field()}, 3s);
  ASSERT_FALSE(next.empty()) << "no map event once the budget refilled";
  suppressed += suppressed_in(next);
  EXPECT_EQ(sent + suppressed, uint64_t(2 * kRounds))
      << "sent " << sent << " and suppressed " << suppressed << " do not add up to the events asked for";
  if (2 * kRounds > allowed + 100) {
    EXPECT_GT(suppressed, 0u) << "the loop overran the budget, yet nothing was suppressed";
  }
}

// ================================================================ ioasidctl pgtable

// ioasidctl --socket (the harness daemon's) ARGS, its output (stdout and stderr) and
// exit status.
struct Ran {
  int status = -1;
  std::string out;
};
Ran ioasidctl(const std::string& args) {
  const char* env = std::getenv("IOASIDCTL");
#ifdef IOASIDCTL_PATH
  const std::string binary = env && *env ? env : IOASIDCTL_PATH;
#else
  const std::string binary = env && *env ? env : "";
#endif
  Ran ran;
  if (binary.empty()) return ran;
  const std::string command = binary + " --socket '" + admin_socket_path() + "' " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return ran;
  char chunk[4096];
  for (size_t got; (got = std::fread(chunk, 1, sizeof chunk, pipe)) > 0;) ran.out.append(chunk, got);
  const int status = ::pclose(pipe);
  ran.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return ran;
}

// Why `text` is not a digraph as ioasidctl writes them, or "" when it is one: one
// `digraph NAME {` ... `}`, statements ended by `;`, balanced subgraph braces, closed
// quotes, and every edge's ends declared as nodes. Graphviz is not a dependency; this
// checks the subset of the DOT grammar the command uses.
std::string dot_problem(const std::string& text) {
  std::istringstream lines(text);
  std::string line;
  if (!std::getline(lines, line) || !line.starts_with("digraph ") || !line.ends_with(" {"))
    return "does not start with 'digraph NAME {': " + line;
  int depth = 1;
  std::set<std::string> nodes;
  std::vector<std::pair<std::string, std::string>> edges;
  static const std::regex kQuoted(R"re("((?:[^"\\]|\\.)*)")re");
  static const std::regex kNode(R"re(^\s*("(?:[^"\\]|\\.)*")\s*(\[.*\])?;$)re");
  static const std::regex kEdge(R"re(^\s*("(?:[^"\\]|\\.)*")\s*->\s*("(?:[^"\\]|\\.)*")\s*(\[.*\])?;$)re");
  static const std::regex kSubgraph(R"re(^\s*subgraph\s+"(?:[^"\\]|\\.)*"\s*\{$)re");
  static const std::regex kAttribute(R"re(^\s*(rankdir|label)=("(?:[^"\\]|\\.)*"|[A-Za-z]+);$)re");
  static const std::regex kDefaults(R"re(^\s*node\s*\[.*\];$)re");
  while (std::getline(lines, line)) {
    if (depth == 0) return "text after the closing brace: " + line;
    std::smatch m;
    if (std::count(line.begin(), line.end(), '"') % 2 != 0 && line.find("\\\"") == std::string::npos)
      return "an unclosed quote: " + line;
    if (std::regex_match(line, m, kEdge)) {
      edges.emplace_back(m[1], m[2]);
    } else if (std::regex_match(line, m, kNode)) {
      nodes.insert(m[1]);
    } else if (std::regex_match(line, kSubgraph)) {
      ++depth;
    } else if (std::regex_match(line, kAttribute) || std::regex_match(line, kDefaults)) {
    } else if (std::regex_match(line, std::regex(R"(^\s*\}$)"))) {
      --depth;
    } else {
      return "not a statement: " + line;
    }
  }
  if (depth != 0) return "unbalanced braces";
  for (const auto& [from, to] : edges)
    if (!nodes.contains(from) || !nodes.contains(to)) return "an edge to an undeclared node: " + from + " -> " + to;
  return {};
}

TEST(AdminPgtable, RangePidAndTheWalkAsAGraph) {
  if (admin_socket_path().empty()) GTEST_SKIP() << "needs the admin socket of a harness-owned daemon";
  if (ioasidctl("--version").status != 0) GTEST_SKIP() << "needs the ioasidctl binary (IOASIDCTL)";
  Node node;
  const uint32_t ioasid = alloc_ioas(node);
  std::vector<std::unique_ptr<Memfd>> pages;
  for (uint64_t iova : {0x100000ull, 0x200000ull, 0x300000ull}) {
    pages.push_back(std::make_unique<Memfd>(k4K, true));
    auto map = map_dma_request(ioasid, pages.back()->va, k4K, kRW | IOASID_MAP_FIXED_IOVA);
    map.iova = iova;
    ASSERT_EQ(ioctl_errno(node.fd(), IOASID_MAP_DMA, &map), kOk);
  }
  const std::string context = own_context_id();
  ASSERT_FALSE(context.empty());
  const std::string id = std::to_string(ioasid);

  const Ran one = ioasidctl("pgtable " + context + " " + id + " --range 0x200000+0x1000");
  ASSERT_EQ(one.status, 0) << one.out;
  EXPECT_NE(one.out.find("iova 0x200000 ->"), std::string::npos) << one.out;
  EXPECT_EQ(one.out.find("iova 0x100000 ->"), std::string::npos) << "outside the range:\n" << one.out;
  EXPECT_EQ(one.out.find("iova 0x300000 ->"), std::string::npos) << "outside the range:\n" << one.out;

  const Ran by_pid = ioasidctl("pgtable --pid " + std::to_string(::getpid()) + " " + id + " --range 0x100000-0x300000");
  ASSERT_EQ(by_pid.status, 0) << by_pid.out;
  EXPECT_NE(by_pid.out.find("iova 0x100000 ->"), std::string::npos) << by_pid.out;
  EXPECT_NE(by_pid.out.find("iova 0x200000 ->"), std::string::npos) << by_pid.out;
  EXPECT_EQ(by_pid.out.find("iova 0x300000 ->"), std::string::npos) << "END is exclusive:\n" << by_pid.out;
  EXPECT_NE(by_pid.out.find("context " + context + ", IOASID " + id), std::string::npos) << by_pid.out;

  const Ran graph = ioasidctl("pgtable " + context + " " + id + " --format dot");
  ASSERT_EQ(graph.status, 0) << graph.out;
  EXPECT_EQ(dot_problem(graph.out), "") << graph.out;
  EXPECT_EQ(std::count(graph.out.begin(), graph.out.end(), '>'), 3) << "one IOVA -> HPA edge per page:\n" << graph.out;

  // Nested: GVA (its guest table) -> GPA (the parent's IOVAs) -> HPA.
  ioasid_alloc nested{.flags = IOASID_ALLOC_NESTED, .parent = ioasid};
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_ALLOC, &nested), kOk);
  const Ran walk = ioasidctl("pgtable " + context + " " + std::to_string(nested.out_ioasid) + " --format dot");
  ASSERT_EQ(walk.status, 0) << walk.out;
  EXPECT_EQ(dot_problem(walk.out), "") << walk.out;
  EXPECT_NE(walk.out.find("GVA"), std::string::npos) << walk.out;
  EXPECT_NE(walk.out.find("GPA space"), std::string::npos) << walk.out;
  EXPECT_NE(walk.out.find("\"hpa_"), std::string::npos) << walk.out;

  // Bad ranges: refused by ioasidctl (usage, 2), and by the daemon whatever a client sends.
  EXPECT_EQ(ioasidctl("pgtable " + context + " " + id + " --range 0x300000-0x100000").status, 2);
  EXPECT_EQ(ioasidctl("pgtable " + context + " " + id + " --range 0x1000+0").status, 2);
  EXPECT_EQ(ioasidctl("pgtable " + context + " " + id + " --format svg").status, 2);
  EXPECT_EQ(ioasidctl("pgtable --pid 0 " + id).status, 2);
  const std::string ask = R"({"cmd":"pgtable","context":)" + context + R"(,"ioasid":)" + id;
  for (const std::string& bad : {std::string(R"(,"iova_begin":8,"iova_end":8})"),
                                 std::string(R"(,"iova_begin":9,"iova_end":8})"),
                                 std::string(R"(,"iova_begin":-1})"), std::string(R"(,"iova_end":"0x10"})"),
                                 std::string(R"(,"iova_end":1.5})")}) {
    const std::string reply = admin_request(ask + bad);
    EXPECT_NE(reply.find("\"errno\":\"EINVAL\""), std::string::npos) << bad << " -> " << reply;
  }
}

}  // namespace
}  // namespace conf

// SPDX-License-Identifier: MIT
// Where client pages live (locate_pages, Backing::location), how many backings pin
// each (PinnedPages), slices of backings, and hugetlbfs memory through
// backing_for_range. Clients are forked children that set up their memory, report
// its layout through a pipe and answer peek/poke commands until destroyed.
//
// The huge page tests need a hugetlb pool (sysctl vm.nr_hugepages=8 or more) and
// skip without one.
#include "memory/address_space.h"
#include "memory/backing_for_file.h"
#include "memory/backing_for_range.h"
#include "memory/locate_pages.h"
#include "memory/mapped_file_backing.h"
#include "memory/physical_memory.h"
#include "memory/pinned_pages.h"
#include "memory/remote_backing.h"
#include "memory/slice_backing.h"
#include "base/unique_fd.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

namespace ioasid {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kPage = kPageSize;
constexpr uint64_t kHuge = 2ull << 20;

std::byte file_byte(size_t i) { return std::byte((i * 11 + 2) & 0xff); }
std::byte private_byte(size_t i) { return std::byte((i * 7 + 1) & 0xff); }
std::byte huge_byte(size_t i) { return std::byte((i * 3 + 5) & 0xff); }

bool read_all(int fd, void* data, size_t size) {
  auto* bytes = static_cast<char*>(data);
  while (size > 0) {
    const ssize_t got = ::read(fd, bytes, size);
    if (got <= 0) return false;
    bytes += got;
    size -= static_cast<size_t>(got);
  }
  return true;
}

// A forked child that runs `set_up` (no gtest there: system calls and plain memory),
// reports the Layout it returns and then answers peek64/poke64 until destroyed.
template <typename Layout>
class Child {
 public:
  explicit Child(Layout (*set_up)()) {
    int to_child[2], from_child[2];
    EXPECT_EQ(::pipe2(to_child, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(from_child, O_CLOEXEC), 0);
    std::fflush(nullptr);  // or the child may print our buffered output again
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(to_child[1]);
      ::close(from_child[0]);
      serve(set_up, to_child[0], from_child[1]);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    commands_.reset(to_child[1]);
    replies_.reset(from_child[0]);
    EXPECT_TRUE(read_all(replies_.get(), &layout_, sizeof layout_));
  }
  ~Child() { stop(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  const Layout& layout() const { return layout_; }

  uint64_t peek64(uint64_t address) { return request(false, address, 0); }
  void poke64(uint64_t address, uint64_t value) { request(true, address, value); }

  void stop() {
    if (pid_ <= 0) return;
    commands_.reset();
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  struct Command {
    uint64_t poke;
    uint64_t address;
    uint64_t value;
  };

  uint64_t request(bool poke, uint64_t address, uint64_t value) {
    const Command command{poke, address, value};
    EXPECT_EQ(::write(commands_.get(), &command, sizeof command), static_cast<ssize_t>(sizeof command));
    uint64_t reply = ~0ull;
    EXPECT_TRUE(read_all(replies_.get(), &reply, sizeof reply));
    return reply;
  }

  [[noreturn]] static void serve(Layout (*set_up)(), int commands, int replies) {
    const Layout layout = set_up();
    if (::write(replies, &layout, sizeof layout) != sizeof layout) ::_exit(103);
    Command command;
    while (read_all(commands, &command, sizeof command)) {
      uint64_t reply = 0;
      if (command.poke)
        *reinterpret_cast<volatile uint64_t*>(command.address) = command.value;
      else
        reply = *reinterpret_cast<volatile uint64_t*>(command.address);
      if (::write(replies, &reply, sizeof reply) != sizeof reply) ::_exit(104);
    }
    ::_exit(0);
  }

  pid_t pid_ = -1;
  UniqueFd commands_;
  UniqueFd replies_;
  Layout layout_{};
};

// The client's memory. Addresses are in the child; 0 means "could not be mapped".
struct Layout {
  int memfd = -1;                 // 4 pages, file_byte pattern
  uint64_t shared_va = 0;         // 4 pages: MAP_SHARED of memfd from offset 0
  uint64_t shared_tail_va = 0;    // 2 pages: MAP_SHARED of memfd from offset 2 pages
  uint64_t shared_anon_va = 0;    // 2 pages, MAP_SHARED | MAP_ANONYMOUS
  uint64_t sysv_va = 0;           // 2 pages of a SysV segment
  uint64_t private_va = 0;        // 4 pages, private anonymous, private_byte pattern
  uint64_t mixed_va = 0;          // page 0 of memfd (shared), then a private page
  uint64_t hole_va = 0;           // 3 pages, the middle one unmapped
  uint64_t inaccessible_va = 0;   // 1 page, PROT_NONE
  uint64_t huge_shared_va = 0;    // 3 huge pages, MAP_SHARED|MAP_ANONYMOUS|MAP_HUGETLB, huge_byte
  uint64_t huge_private_va = 0;   // 1 huge page, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB, huge_byte
  int huge_memfd = -1;            // 2 huge pages (MFD_HUGETLB), mapped at huge_memfd_va
  uint64_t huge_memfd_va = 0;
};

std::byte* map_or_die(size_t length, int protection, int flags, int fd = -1, off_t offset = 0) {
  void* at = ::mmap(nullptr, length, protection, flags, fd, offset);
  if (at == MAP_FAILED) ::_exit(100);
  return static_cast<std::byte*>(at);
}

// Runs in the child.
Layout set_up_client() {
  Layout layout;
  layout.memfd = ::memfd_create("located", 0);
  if (layout.memfd < 0 || ::ftruncate(layout.memfd, 4 * kPage) != 0) ::_exit(101);
  auto* shared = map_or_die(4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, layout.memfd);
  for (size_t i = 0; i < 4 * kPage; ++i) shared[i] = file_byte(i);
  layout.shared_va = reinterpret_cast<uint64_t>(shared);
  layout.shared_tail_va =
      reinterpret_cast<uint64_t>(map_or_die(2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, layout.memfd, 2 * kPage));
  layout.shared_anon_va =
      reinterpret_cast<uint64_t>(map_or_die(2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS));
  const int segment = ::shmget(IPC_PRIVATE, 2 * kPage, IPC_CREAT | 0600);
  void* sysv = segment < 0 ? reinterpret_cast<void*>(-1) : ::shmat(segment, nullptr, 0);
  if (sysv == reinterpret_cast<void*>(-1)) ::_exit(102);
  ::shmctl(segment, IPC_RMID, nullptr);  // goes with the last detach
  layout.sysv_va = reinterpret_cast<uint64_t>(sysv);

  auto* private_bytes = map_or_die(4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  for (size_t i = 0; i < 4 * kPage; ++i) private_bytes[i] = private_byte(i);
  layout.private_va = reinterpret_cast<uint64_t>(private_bytes);

  auto* mixed = map_or_die(2 * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS);
  if (::mmap(mixed, kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, layout.memfd, 0) == MAP_FAILED ||
      ::mmap(mixed + kPage, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
          MAP_FAILED)
    ::_exit(105);
  layout.mixed_va = reinterpret_cast<uint64_t>(mixed);

  auto* hole = map_or_die(3 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  ::munmap(hole + kPage, kPage);
  layout.hole_va = reinterpret_cast<uint64_t>(hole);
  layout.inaccessible_va = reinterpret_cast<uint64_t>(map_or_die(kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS));

  // Huge pages only if the pool has them (mmap reserves them, or fails).
  void* huge = ::mmap(nullptr, 3 * kHuge, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  if (huge != MAP_FAILED) {
    for (size_t i = 0; i < 3 * kHuge; ++i) static_cast<std::byte*>(huge)[i] = huge_byte(i);
    layout.huge_shared_va = reinterpret_cast<uint64_t>(huge);
  }
  huge = ::mmap(nullptr, kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  if (huge != MAP_FAILED) {
    for (size_t i = 0; i < kHuge; ++i) static_cast<std::byte*>(huge)[i] = huge_byte(i);
    layout.huge_private_va = reinterpret_cast<uint64_t>(huge);
  }
  const int huge_memfd = ::memfd_create("located-huge", MFD_HUGETLB);
  if (huge_memfd >= 0 && ::ftruncate(huge_memfd, 2 * kHuge) == 0) {
    huge = ::mmap(nullptr, 2 * kHuge, PROT_READ | PROT_WRITE, MAP_SHARED, huge_memfd, 0);
    if (huge != MAP_FAILED) {
      for (size_t i = 0; i < 2 * kHuge; ++i) static_cast<std::byte*>(huge)[i] = huge_byte(i);
      layout.huge_memfd = huge_memfd;
      layout.huge_memfd_va = reinterpret_cast<uint64_t>(huge);
    }
  }
  return layout;
}

using Client = Child<Layout>;

struct stat stat_of(const std::string& path) {
  struct stat status {};
  EXPECT_EQ(::stat(path.c_str(), &status), 0) << path << ": " << std::strerror(errno);
  return status;
}

// The file the daemon opens for a shared mapping of pid at va (backing_for_range does
// it through map_files), as fstat sees it.
struct stat stat_of_mapping(pid_t pid, uint64_t va) {
  auto maps = read_process_maps(pid);
  EXPECT_TRUE(maps.ok());
  for (const MapsEntry& entry : *maps)
    if (entry.start <= va && va < entry.end)
      return stat_of(fmt::format("/proc/{}/map_files/{}", pid, entry.map_files_name()));
  ADD_FAILURE() << "nothing maps " << va;
  return {};
}

std::vector<LocatedPage> located(pid_t pid, uint64_t va, uint64_t length) {
  auto pages = locate_pages(pid, va, length);
  EXPECT_TRUE(pages.ok()) << pages.error().why;
  if (!pages) return {};
  EXPECT_EQ(pages->size(), length / kPage);
  return std::move(*pages);
}

std::shared_ptr<Backing> range(pid_t pid, uint64_t va, uint64_t length, MapAccess access = MapAccess::kReadWrite) {
  auto backing = backing_for_range(pid, va, length, access);
  EXPECT_TRUE(backing.ok()) << backing.error().why;
  return backing.ok() ? std::move(*backing) : nullptr;
}

uint32_t pins_at(const PageLocation& location) { return PinnedPages::global().pins_at(location); }

// Every page of `backing` is where locate_pages says the client's [va, +size) is,
// wherever inside the page one asks.
void expect_located_like_the_client(const Backing& backing, pid_t pid, uint64_t va) {
  const auto pages = located(pid, va, backing.size());
  ASSERT_EQ(pages.size(), backing.size() / kPage);
  for (size_t i = 0; i < pages.size(); ++i) {
    const auto at = backing.location(i * kPage);
    ASSERT_TRUE(at.has_value()) << i;
    EXPECT_EQ(*at, pages[i].location) << "page " << i << ": " << at->name() << " vs " << pages[i].location.name();
    const auto inside = backing.location(i * kPage + 123);
    ASSERT_TRUE(inside.has_value());
    EXPECT_EQ(*inside, *at);
  }
  EXPECT_FALSE(backing.location(backing.size()).has_value());
}

// ---- locate_pages --------------------------------------------------------------

TEST(LocatePages, SharedFilePagesAreTheFilesPages) {
  Client client(set_up_client);
  const Layout& layout = client.layout();
  const struct stat file = stat_of(fmt::format("/proc/{}/fd/{}", client.pid(), layout.memfd));
  const auto pages = located(client.pid(), layout.shared_va, 4 * kPage);
  ASSERT_EQ(pages.size(), 4u);
  for (size_t i = 0; i < pages.size(); ++i) {
    const PageLocation& page = pages[i].location;
    EXPECT_EQ(page.kind, PageLocation::Kind::kFile);
    EXPECT_EQ(page.device, file.st_dev);
    EXPECT_EQ(page.inode, file.st_ino);
    EXPECT_EQ(page.offset, i * kPage);
    EXPECT_FALSE(pages[i].huge);
  }
  // Another mapping of the same file reaches the same pages; other offsets differ.
  const auto tail = located(client.pid(), layout.shared_tail_va, 2 * kPage);
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_EQ(tail[0].location, pages[2].location);
  EXPECT_EQ(tail[1].location, pages[3].location);
  EXPECT_NE(tail[0].location, pages[0].location);
}

TEST(LocatePages, SharedAnonymousAndSysvMemoryAreFilePages) {
  Client client(set_up_client);
  const Layout& layout = client.layout();
  for (uint64_t va : {layout.shared_anon_va, layout.sysv_va}) {
    const struct stat file = stat_of_mapping(client.pid(), va);
    const auto pages = located(client.pid(), va, 2 * kPage);
    ASSERT_EQ(pages.size(), 2u);
    for (size_t i = 0; i < pages.size(); ++i) {
      EXPECT_EQ(pages[i].location.kind, PageLocation::Kind::kFile) << pages[i].location.name();
      EXPECT_EQ(pages[i].location.device, file.st_dev);
      EXPECT_EQ(pages[i].location.inode, file.st_ino);
      EXPECT_EQ(pages[i].location.offset, i * kPage);
    }
  }
  // Two shmem files: the same offsets, not the same pages.
  EXPECT_NE(located(client.pid(), layout.shared_anon_va, kPage)[0].location,
            located(client.pid(), layout.sysv_va, kPage)[0].location);
}

TEST(LocatePages, PrivatePagesAreTheAddressSpacesPages) {
  Client client(set_up_client);
  const Layout& layout = client.layout();
  auto handle = AddressSpace::of(client.pid(), MapAccess::kRead);
  ASSERT_TRUE(handle.ok()) << handle.error().why;
  auto writable_handle = AddressSpace::of(client.pid(), MapAccess::kReadWrite);
  ASSERT_TRUE(writable_handle.ok());
  const auto pages = located(client.pid(), layout.private_va, 4 * kPage);
  ASSERT_EQ(pages.size(), 4u);
  for (size_t i = 0; i < pages.size(); ++i) {
    const PageLocation& page = pages[i].location;
    EXPECT_EQ(page.kind, PageLocation::Kind::kPrivate);
    EXPECT_EQ(page.space.get(), handle->get()) << "not the live handle AddressSpace::of gives";
    EXPECT_EQ(page.va, layout.private_va + i * kPage);
    EXPECT_FALSE(pages[i].huge);
    // A read-write handle of the same mm names the same page.
    EXPECT_EQ(page, PageLocation::private_page(*writable_handle, layout.private_va + i * kPage));
  }
  EXPECT_NE(pages[0].location, pages[1].location);
  // One range over a shared page and a private one.
  const auto mixed = located(client.pid(), layout.mixed_va, 2 * kPage);
  ASSERT_EQ(mixed.size(), 2u);
  EXPECT_EQ(mixed[0].location, located(client.pid(), layout.shared_va, kPage)[0].location);
  EXPECT_EQ(mixed[1].location.kind, PageLocation::Kind::kPrivate);
  EXPECT_EQ(mixed[1].location.va, layout.mixed_va + kPage);
}

struct NoLayout {
  int unused = 0;
};
NoLayout set_up_nothing() { return {}; }

// After a fork the child's private pages are its own (another mm), even at the same
// address; the pages of a shared mapping stay the same pages.
TEST(LocatePages, AForkChildsPrivatePageIsNotTheParents) {
  auto* private_page =
      static_cast<uint64_t*>(::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(private_page, MAP_FAILED);
  *private_page = 1;
  UniqueFd memfd(::memfd_create("forked", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(memfd.get(), kPage), 0);
  void* shared_page = ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
  ASSERT_NE(shared_page, MAP_FAILED);
  const auto private_va = reinterpret_cast<uint64_t>(private_page);
  const auto shared_va = reinterpret_cast<uint64_t>(shared_page);
  {
    Child<NoLayout> child(set_up_nothing);
    const auto ours = located(::getpid(), private_va, kPage);
    const auto theirs = located(child.pid(), private_va, kPage);
    ASSERT_EQ(ours.size(), 1u);
    ASSERT_EQ(theirs.size(), 1u);
    EXPECT_EQ(ours[0].location.kind, PageLocation::Kind::kPrivate);
    EXPECT_EQ(theirs[0].location.kind, PageLocation::Kind::kPrivate);
    EXPECT_EQ(ours[0].location.va, theirs[0].location.va);
    EXPECT_NE(ours[0].location, theirs[0].location);
    EXPECT_NE(ours[0].location.space->mm_id(), theirs[0].location.space->mm_id());
    EXPECT_EQ(located(::getpid(), shared_va, kPage)[0].location, located(child.pid(), shared_va, kPage)[0].location);
  }
  ::munmap(private_page, kPage);
  ::munmap(shared_page, kPage);
}

TEST(LocatePages, Errors) {
  Client client(set_up_client);
  const Layout& layout = client.layout();
  EXPECT_EQ(locate_pages(client.pid(), layout.private_va + 8, kPage).code(), EINVAL);
  EXPECT_EQ(locate_pages(client.pid(), layout.private_va, kPage + 8).code(), EINVAL);
  EXPECT_EQ(locate_pages(client.pid(), layout.private_va, 0).code(), EINVAL);
  EXPECT_EQ(locate_pages(client.pid(), ~0ull & ~(kPage - 1), 2 * kPage).code(), EOVERFLOW);
  auto hole = locate_pages(client.pid(), layout.hole_va, 3 * kPage);
  EXPECT_EQ(hole.code(), EFAULT);
  EXPECT_THAT(hole.error().why, HasSubstr(fmt::format("{:#x}", layout.hole_va + kPage)));
  EXPECT_TRUE(locate_pages(client.pid(), layout.hole_va + 2 * kPage, kPage).ok());
  EXPECT_EQ(locate_pages(client.pid(), layout.inaccessible_va, kPage).code(), EFAULT);
  const pid_t pid = client.pid();
  client.stop();
  EXPECT_EQ(locate_pages(pid, layout.private_va, kPage).code(), ESRCH);
}

TEST(AddressSpace, ReadAndWriteHandlesOfOneMmShareItsId) {
  Client client(set_up_client);
  Child<NoLayout> other(set_up_nothing);
  auto read = AddressSpace::of(client.pid(), MapAccess::kRead);
  auto write = AddressSpace::of(client.pid(), MapAccess::kReadWrite);
  auto theirs = AddressSpace::of(other.pid(), MapAccess::kRead);
  ASSERT_TRUE(read.ok() && write.ok() && theirs.ok());
  EXPECT_NE(read->get(), write->get()) << "a read-only MAP must not get a writable handle";
  EXPECT_EQ((*read)->mm_id(), (*write)->mm_id());
  EXPECT_NE((*read)->mm_id(), (*theirs)->mm_id());
  EXPECT_EQ((*AddressSpace::of(client.pid(), MapAccess::kRead))->mm_id(), (*read)->mm_id());
}

// ---- Backing::location ----------------------------------------------------------

TEST(BackingLocation, IsWhereTheClientsPagesAre) {
  Client client(set_up_client);
  const Layout& layout = client.layout();
  struct Case {
    uint64_t va;
    uint64_t length;
    MapAccess access;
    bool zero_copy;
  };
  for (const Case& c : {Case{layout.shared_va + kPage, 3 * kPage, MapAccess::kReadWrite, true},
                        Case{layout.shared_tail_va, 2 * kPage, MapAccess::kRead, true},
                        Case{layout.shared_anon_va, 2 * kPage, MapAccess::kReadWrite, true},
                        Case{layout.sysv_va, 2 * kPage, MapAccess::kReadWrite, true},
                        Case{layout.private_va, 4 * kPage, MapAccess::kReadWrite, false},
                        Case{layout.private_va + kPage, kPage, MapAccess::kRead, false},
                        Case{layout.mixed_va, 2 * kPage, MapAccess::kReadWrite, false}}) {
    SCOPED_TRACE(fmt::format("va {:#x} length {:#x}", c.va, c.length));
    auto backing = range(client.pid(), c.va, c.length, c.access);
    ASSERT_TRUE(backing);
    // SysV segment 0 has inode number 0, which backing_for_range does not map.
    if (c.va != layout.sysv_va) {
      EXPECT_EQ(backing->zero_copy(), c.zero_copy);
    }
    expect_located_like_the_client(*backing, client.pid(), c.va);
  }
  // MAP_FILE of the memfd is where the client's shared mapping of it is.
  auto file = backing_for_file(client.pid(), layout.memfd, kPage, 2 * kPage, MapAccess::kRead);
  ASSERT_TRUE(file.ok()) << file.error().why;
  expect_located_like_the_client(**file, client.pid(), layout.shared_va + kPage);
  // A RemoteBacking made without a layout is private memory.
  auto remote = RemoteBacking::open(client.pid(), layout.private_va, kPage, MapAccess::kRead);
  ASSERT_TRUE(remote.ok());
  expect_located_like_the_client(**remote, client.pid(), layout.private_va);
}

// ---- PinnedPages ----------------------------------------------------------------

TEST(PinnedPages, CountsOverlappingRangesAndForgetsThem) {
  PinnedPages registry;
  const PageLocation file = PageLocation::file(makedev(0, 1), 77, 0);
  const PageLocation other_file = PageLocation::file(makedev(0, 1), 78, 0);
  auto count = [&](const PageLocation& base, uint64_t page) { return registry.pins_at(base.plus(page * kPage)); };
  {
    auto first = registry.pin(file, 4 * kPage);                    // pages 0-3
    auto second = registry.pin(file.plus(2 * kPage), 4 * kPage);  // pages 2-5
    auto elsewhere = registry.pin(other_file, kPage);
    const std::vector<uint32_t> expected = {1, 1, 2, 2, 1, 1, 0};
    for (uint64_t page = 0; page < expected.size(); ++page) EXPECT_EQ(count(file, page), expected[page]) << page;
    EXPECT_EQ(count(other_file, 0), 1u);
    EXPECT_EQ(count(other_file, 1), 0u);
    EXPECT_LE(registry.pieces(), 6u);
    first.reset();
    EXPECT_EQ(count(file, 1), 0u);
    EXPECT_EQ(count(file, 2), 1u);
    // A moved pin counts once and is released once.
    PinnedPages::Pin moved = std::move(second);
    EXPECT_EQ(count(file, 5), 1u);
    second.reset();
    EXPECT_EQ(count(file, 5), 1u);
  }
  EXPECT_EQ(registry.pieces(), 0u) << "the registry grows only with live pins";
  EXPECT_EQ(count(file, 2), 0u);

  // Private pages: by address space, whichever handle names it.
  auto read = AddressSpace::of(::getpid(), MapAccess::kRead);
  auto write = AddressSpace::of(::getpid(), MapAccess::kReadWrite);
  ASSERT_TRUE(read.ok() && write.ok());
  {
    auto pin = registry.pin(PageLocation::private_page(*read, 0x10000), kPage);
    EXPECT_EQ(registry.pins_at(PageLocation::private_page(*write, 0x10000)), 1u);
    EXPECT_EQ(registry.pins_at(PageLocation::private_page(*write, 0x11000)), 0u);
    EXPECT_EQ(registry.pins_at(PageLocation::file(makedev(0, 1), 0, 0x10000)), 0u);
  }
  EXPECT_EQ(registry.pieces(), 0u);

  // Many pins of one page stay two boundaries.
  std::vector<PinnedPages::Pin> pins;
  for (int i = 0; i < 100; ++i) pins.push_back(registry.pin(file, kPage));
  EXPECT_EQ(registry.pins_at(file), 100u);
  EXPECT_EQ(registry.pieces(), 2u);
  pins.clear();
  EXPECT_EQ(registry.pieces(), 0u);
}

// Threads pinning overlapping and separate ranges of several files at once: every
// count is right while they hold their pins, and nothing is left after.
TEST(PinnedPages, ConcurrentPinsBalance) {
  PinnedPages registry;
  constexpr int kThreads = 8;
  constexpr int kRounds = 2000;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const PageLocation shared = PageLocation::file(makedev(0, 1), 500, 0);
      const PageLocation own = PageLocation::file(makedev(0, 1), 600 + t, 0);
      for (int round = 0; round < kRounds; ++round) {
        auto a = registry.pin(shared.plus((round % 7) * kPage), 3 * kPage);
        auto b = registry.pin(own.plus((round % 5) * kPage), 2 * kPage);
        auto c = registry.pin(own.plus((round % 5 + 1) * kPage), kPage);
        if (registry.pins_at(own.plus((round % 5 + 1) * kPage)) != 2) wrong.fetch_add(1);
        if (registry.pins_at(own.plus((round % 5 + 2) * kPage)) != 0) wrong.fetch_add(1);
        if (registry.pins_at(shared.plus((round % 7 + 1) * kPage)) == 0) wrong.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(registry.pieces(), 0u);
}

TEST(PinnedPages, BackingsPinWhileTheyLive) {
  Client client(set_up_client);
  const Layout& layout = client.layout();
  const PageLocation page = located(client.pid(), layout.shared_va + kPage, kPage)[0].location;
  const PageLocation before = located(client.pid(), layout.shared_va, kPage)[0].location;
  const PageLocation after = located(client.pid(), layout.shared_va + 2 * kPage, kPage)[0].location;
  EXPECT_EQ(pins_at(page), 0u);
  auto first = range(client.pid(), layout.shared_va, 2 * kPage);
  EXPECT_EQ(pins_at(page), 1u);
  EXPECT_EQ(pins_at(before), 1u);
  EXPECT_EQ(pins_at(after), 0u);
  // Two MAPs of the same page count twice.
  auto second = range(client.pid(), layout.shared_va + kPage, kPage);
  EXPECT_EQ(pins_at(page), 2u);
  EXPECT_EQ(pins_at(before), 1u);
  // A slice does not pin again.
  auto slice = slice_of(first, kPage, kPage);
  ASSERT_TRUE(slice.ok()) << slice.error().why;
  EXPECT_EQ(pins_at(page), 2u);
  slice->reset();
  EXPECT_EQ(pins_at(page), 2u);
  second.reset();
  EXPECT_EQ(pins_at(page), 1u);
  first.reset();
  EXPECT_EQ(pins_at(page), 0u);
  EXPECT_EQ(pins_at(before), 0u);

  // The same page reached as a MAP_FILE of the memfd, through another mapping of it,
  // and through a remote backing of a range spanning two mappings: all its pins.
  {
    auto file = backing_for_file(client.pid(), layout.memfd, 0, 2 * kPage, MapAccess::kRead);
    ASSERT_TRUE(file.ok());
    auto mixed = range(client.pid(), layout.mixed_va, 2 * kPage);
    ASSERT_FALSE(mixed->zero_copy());
    EXPECT_EQ(pins_at(before), 2u);
    EXPECT_EQ(pins_at(page), 1u);
    const PageLocation mixed_private = located(client.pid(), layout.mixed_va + kPage, kPage)[0].location;
    EXPECT_EQ(pins_at(mixed_private), 1u);
  }
  EXPECT_EQ(pins_at(before), 0u);

  // Private pages, read-only and read-write MAPs alike.
  const PageLocation private_page = located(client.pid(), layout.private_va + kPage, kPage)[0].location;
  EXPECT_EQ(pins_at(private_page), 0u);
  auto reading = range(client.pid(), layout.private_va, 4 * kPage, MapAccess::kRead);
  EXPECT_EQ(pins_at(private_page), 1u);
  auto writing = range(client.pid(), layout.private_va + kPage, kPage, MapAccess::kReadWrite);
  EXPECT_EQ(pins_at(private_page), 2u);
  reading.reset();
  EXPECT_EQ(pins_at(private_page), 1u);
  writing.reset();
  EXPECT_EQ(pins_at(private_page), 0u);
}

// ---- slice_of --------------------------------------------------------------------

TEST(SliceOf, ReachesTheRightBytesOfItsWhole) {
  Client client(set_up_client);
  const Layout& layout = client.layout();
  for (const bool mapped : {true, false}) {
    SCOPED_TRACE(mapped ? "mapped" : "remote");
    const uint64_t va = mapped ? layout.shared_va : layout.private_va;
    auto pattern = mapped ? file_byte : private_byte;
    auto whole = range(client.pid(), va, 4 * kPage);
    ASSERT_TRUE(whole);
    auto sliced = slice_of(whole, kPage, 2 * kPage);
    ASSERT_TRUE(sliced.ok()) << sliced.error().why;
    Backing& slice = **sliced;
    EXPECT_EQ(slice.size(), 2 * kPage);
    EXPECT_EQ(slice.zero_copy(), whole->zero_copy());
    EXPECT_EQ(slice.writable(), whole->writable());
    EXPECT_EQ(slice.description(), whole->description());

    std::vector<std::byte> bytes(2 * kPage);
    ASSERT_TRUE(slice.read(0, bytes).ok());
    for (size_t i = 0; i < bytes.size(); ++i) ASSERT_EQ(bytes[i], pattern(kPage + i)) << i;
    ASSERT_TRUE(slice.write64(8, 0x5111ce).ok());
    EXPECT_EQ(client.peek64(va + kPage + 8), 0x5111ceu);
    client.poke64(va + 2 * kPage + 16, 0xfeed);
    EXPECT_EQ(*slice.read64(kPage + 16), 0xfeedu);
    uint64_t expected = 0xfeed;
    EXPECT_TRUE(*slice.compare_exchange64(kPage + 16, expected, 0xbeef));
    EXPECT_EQ(client.peek64(va + 2 * kPage + 16), 0xbeefu);
    const std::vector<std::byte> written(100, std::byte{0x3c});
    size_t done = 0;
    ASSERT_TRUE(slice.write(kPage - 50, written, &done).ok());
    EXPECT_EQ(done, 100u);
    EXPECT_EQ(client.peek64(va + 2 * kPage) & 0xff, 0x3cu);
    // Its own size bounds it, though the whole goes on.
    EXPECT_EQ(slice.read64(2 * kPage).code(), EFAULT);
    EXPECT_EQ(slice.read(2 * kPage - 8, bytes, &done).code(), EFAULT);
    EXPECT_EQ(slice.location(0), whole->location(kPage));
    EXPECT_EQ(slice.location(kPage + 5), whole->location(2 * kPage));
    EXPECT_FALSE(slice.location(2 * kPage).has_value());
    if (mapped) {
      const auto span = slice.mapped(8, 16, true);
      ASSERT_EQ(span.size(), 16u);
      EXPECT_EQ(span.data(), whole->mapped(kPage + 8, 16, true).data());
      EXPECT_NE(slice.guard_cpu_access(), nullptr);
    } else {
      EXPECT_TRUE(slice.mapped(0, 8, false).empty());
    }
    EXPECT_FALSE(slice.failed());

    // A slice of the slice reaches the whole's third page; the slices keep the whole.
    auto inner = slice_of(*sliced, kPage, kPage);
    ASSERT_TRUE(inner.ok());
    whole.reset();
    sliced->reset();
    EXPECT_EQ((*inner)->read(0, std::span(bytes).first(kPage)).code(), 0);
    EXPECT_EQ(bytes[200], pattern(2 * kPage + 200));
    EXPECT_EQ((*inner)->location(0), located(client.pid(), va + 2 * kPage, kPage)[0].location);
  }
  // Read-only wholes give read-only slices.
  auto read_only = range(client.pid(), layout.shared_va, 2 * kPage, MapAccess::kRead);
  auto slice = slice_of(read_only, 0, kPage);
  ASSERT_TRUE(slice.ok());
  EXPECT_FALSE((*slice)->writable());
  EXPECT_EQ((*slice)->write64(0, 1).code(), EACCES);
}

TEST(SliceOf, RefusesBadRanges) {
  UniqueFd memfd(::memfd_create("slice", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(memfd.get(), 4 * kPage), 0);
  auto made = MappedFileBacking::create(memfd.get(), 0, 4 * kPage, MapAccess::kReadWrite, "memfd");
  ASSERT_TRUE(made.ok());
  std::shared_ptr<Backing> whole = std::move(*made);
  EXPECT_EQ(slice_of(whole, 100, kPage).code(), EINVAL);
  EXPECT_EQ(slice_of(whole, kPage, 100).code(), EINVAL);
  EXPECT_EQ(slice_of(whole, kPage, 0).code(), EINVAL);
  EXPECT_EQ(slice_of(whole, 3 * kPage, 2 * kPage).code(), EINVAL);
  EXPECT_EQ(slice_of(whole, 4 * kPage, kPage).code(), EINVAL);
  EXPECT_EQ(slice_of(whole, ~0ull & ~(kPage - 1), 2 * kPage).code(), EINVAL);
  EXPECT_EQ(slice_of(nullptr, 0, kPage).code(), EINVAL);
  EXPECT_TRUE(slice_of(whole, 0, 4 * kPage).ok());
  EXPECT_TRUE(slice_of(whole, 3 * kPage, kPage).ok());
  // A slice's own bounds are checked against the slice.
  auto slice = *slice_of(whole, kPage, 2 * kPage);
  EXPECT_EQ(slice_of(slice, kPage, 2 * kPage).code(), EINVAL);
  EXPECT_TRUE(slice_of(slice, kPage, kPage).ok());
  // The whole's failure is the slice's: the file shrank under the mapping.
  ASSERT_EQ(::ftruncate(memfd.get(), kPage), 0);
  EXPECT_EQ(slice->read64(0).code(), EFAULT);
  EXPECT_TRUE(slice->failed());
  EXPECT_TRUE(whole->failed());
}

// ---- huge pages -----------------------------------------------------------------

TEST(HugePages, LocatedAsHuge) {
  Client client(set_up_client);
  const Layout& layout = client.layout();
  if (layout.huge_shared_va == 0 || layout.huge_private_va == 0 || layout.huge_memfd_va == 0)
    GTEST_SKIP() << "no huge page could be mapped (sysctl vm.nr_hugepages)";
  const struct stat file = stat_of_mapping(client.pid(), layout.huge_shared_va);
  const auto shared = located(client.pid(), layout.huge_shared_va + kHuge - kPage, 2 * kPage);
  ASSERT_EQ(shared.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(shared[i].huge);
    EXPECT_EQ(shared[i].location.kind, PageLocation::Kind::kFile);
    EXPECT_EQ(shared[i].location.device, file.st_dev);
    EXPECT_EQ(shared[i].location.inode, file.st_ino);
    EXPECT_EQ(shared[i].location.offset, kHuge - kPage + i * kPage);
  }
  const auto privately = located(client.pid(), layout.huge_private_va + 3 * kPage, kPage);
  ASSERT_EQ(privately.size(), 1u);
  EXPECT_TRUE(privately[0].huge);
  EXPECT_EQ(privately[0].location.kind, PageLocation::Kind::kPrivate);
  EXPECT_EQ(privately[0].location.va, layout.huge_private_va + 3 * kPage);
  const auto memfd = located(client.pid(), layout.huge_memfd_va, kPage);
  ASSERT_EQ(memfd.size(), 1u);
  EXPECT_TRUE(memfd[0].huge);
  EXPECT_EQ(memfd[0].location.inode, stat_of(fmt::format("/proc/{}/fd/{}", client.pid(), layout.huge_memfd)).st_ino);
  // Ordinary pages next to them are not.
  EXPECT_FALSE(located(client.pid(), layout.shared_va, kPage)[0].huge);
  EXPECT_FALSE(located(client.pid(), layout.private_va, kPage)[0].huge);
}

TEST(HugePages, SharedHugetlbRangesAreMappedAndCoherent) {
  Client client(set_up_client);
  const Layout& layout = client.layout();
  if (layout.huge_shared_va == 0) GTEST_SKIP() << "no huge page could be mapped (sysctl vm.nr_hugepages)";
  const uint64_t base = layout.huge_shared_va;
  const uint64_t size_before = stat_of_mapping(client.pid(), base).st_size;
  EXPECT_EQ(size_before, 3 * kHuge);
  struct Case {
    uint64_t offset;
    uint64_t length;
  };
  // Inside a huge page, across the boundary of two, and the whole mapping.
  for (const Case& c : {Case{5 * kPage, 3 * kPage}, Case{kHuge - kPage, 2 * kPage}, Case{0, 3 * kHuge}}) {
    SCOPED_TRACE(fmt::format("offset {:#x} length {:#x}", c.offset, c.length));
    auto backing = range(client.pid(), base + c.offset, c.length);
    ASSERT_TRUE(backing);
    EXPECT_TRUE(backing->zero_copy());
    std::vector<std::byte> bytes(c.length);
    ASSERT_TRUE(backing->read(0, bytes).ok());
    for (size_t i = 0; i < bytes.size(); i += 511) ASSERT_EQ(bytes[i], huge_byte(c.offset + i)) << i;
    const uint64_t last = c.length - 8;
    ASSERT_TRUE(backing->write64(last, 0xab0000 + c.offset).ok());
    EXPECT_EQ(client.peek64(base + c.offset + last), 0xab0000 + c.offset);
    client.poke64(base + c.offset + 8, 0xcd);
    EXPECT_EQ(*backing->read64(8), 0xcdu);
    expect_located_like_the_client(*backing, client.pid(), base + c.offset);
    EXPECT_EQ(pins_at(*backing->location(0)), 1u);
  }
  // The daemon's view of the file did not grow it (a writable hugetlbfs mmap past the
  // end would have).
  EXPECT_EQ(stat_of_mapping(client.pid(), base).st_size, size_before);

  // MAP_FILE of a hugetlbfs memfd, from a 4 KiB offset inside its second huge page.
  if (layout.huge_memfd_va != 0) {
    auto file = backing_for_file(client.pid(), layout.huge_memfd, kHuge + 3 * kPage, 2 * kPage, MapAccess::kReadWrite);
    ASSERT_TRUE(file.ok()) << file.error().why;
    ASSERT_TRUE((*file)->write64(kPage, 0x77).ok());
    EXPECT_EQ(client.peek64(layout.huge_memfd_va + kHuge + 4 * kPage), 0x77u);
    expect_located_like_the_client(**file, client.pid(), layout.huge_memfd_va + kHuge + 3 * kPage);
  }
}

TEST(HugePages, PrivateHugetlbRangesAreRemoteAndCoherent) {
  Client client(set_up_client);
  const Layout& layout = client.layout();
  if (layout.huge_private_va == 0) GTEST_SKIP() << "no huge page could be mapped (sysctl vm.nr_hugepages)";
  const uint64_t va = layout.huge_private_va + 3 * kPage;
  auto backing = range(client.pid(), va, 2 * kPage);
  ASSERT_TRUE(backing);
  EXPECT_FALSE(backing->zero_copy());
  std::vector<std::byte> bytes(2 * kPage);
  ASSERT_TRUE(backing->read(0, bytes).ok());
  for (size_t i = 0; i < bytes.size(); ++i) ASSERT_EQ(bytes[i], huge_byte(3 * kPage + i)) << i;
  ASSERT_TRUE(backing->write64(kPage + 8, 0x1234).ok());
  EXPECT_EQ(client.peek64(va + kPage + 8), 0x1234u);
  client.poke64(va + 16, 0x4321);
  EXPECT_EQ(*backing->read64(16), 0x4321u);
  expect_located_like_the_client(*backing, client.pid(), va);
}

}  // namespace
}  // namespace ioasid

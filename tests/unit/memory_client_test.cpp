// SPDX-License-Identifier: MIT
// Backings of real client processes: /proc/<pid>/mem for private memory, files
// reopened through /proc/<pid>/fd and /proc/<pid>/map_files, the choice between them
// from /proc/<pid>/maps, and what happens when the client unmaps, truncates or exits.
// Clients are forked children that set up their memory, report its layout through a
// pipe and then answer peek/poke/unmap commands until told to exit.
#include "memory/backing_for_file.h"
#include "memory/backing_for_range.h"
#include "memory/client_file.h"
#include "memory/hpa_space.h"
#include "memory/mapped_file_backing.h"
#include "memory/process_maps.h"
#include "memory/remote_backing.h"
#include "base/unique_fd.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

namespace ioasid {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kPage = kPageSize;

std::byte private_byte(size_t i) { return std::byte((i * 7 + 1) & 0xff); }
std::byte shared_byte(size_t i) { return std::byte((i * 11 + 2) & 0xff); }

// The memory a client child sets up. Addresses are in the child.
struct ClientLayout {
  uint64_t private_va = 0;      // 4 pages, private anonymous, private_byte pattern
  uint64_t shared_va = 0;       // 4 pages, MAP_SHARED of `memfd`, shared_byte pattern
  int memfd = -1;               // 4 pages
  int readonly_fd = -1;         // `memfd` reopened O_RDONLY
  int pipe_fd = -1;             // not a regular file
  uint64_t shared_anon_va = 0;  // 2 pages, MAP_SHARED | MAP_ANONYMOUS
  uint64_t readonly_va = 0;     // 1 page, private, PROT_READ
  uint64_t hole_va = 0;         // 3 pages, the middle one unmapped
  uint64_t mixed_va = 0;        // 2 pages: a shared memfd page, then a private one
  uint64_t split_va = 0;        // 4 pages of one memfd, the middle two made read-only
  uint64_t two_files_va = 0;    // 2 pages: one page each of two memfds
};

enum class Op : uint64_t { kExit, kPeek64, kPoke64, kUnmap, kTruncateMemfd };
struct Command {
  Op op;
  uint64_t address;
  uint64_t value;
};

void* map(void* at, size_t length, int protection, int flags, int fd = -1, off_t offset = 0) {
  void* result = mmap(at, length, protection, flags | (at != nullptr ? MAP_FIXED : 0), fd, offset);
  if (result == MAP_FAILED) _exit(100);
  return result;
}

int make_memfd(size_t size) {
  const int fd = memfd_create("client", 0);
  if (fd < 0 || ftruncate(fd, static_cast<off_t>(size)) != 0) _exit(101);
  return fd;
}

// Runs in the child: no gtest, only system calls and plain memory.
ClientLayout set_up_client() {
  ClientLayout layout;
  auto* private_bytes = static_cast<std::byte*>(
      map(nullptr, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
  for (size_t i = 0; i < 4 * kPage; ++i) private_bytes[i] = private_byte(i);
  layout.private_va = reinterpret_cast<uint64_t>(private_bytes);

  layout.memfd = make_memfd(4 * kPage);
  auto* shared_bytes = static_cast<std::byte*>(
      map(nullptr, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, layout.memfd));
  for (size_t i = 0; i < 4 * kPage; ++i) shared_bytes[i] = shared_byte(i);
  layout.shared_va = reinterpret_cast<uint64_t>(shared_bytes);
  layout.readonly_fd = open(fmt::format("/proc/self/fd/{}", layout.memfd).c_str(), O_RDONLY);
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) _exit(102);
  layout.pipe_fd = pipe_fds[0];

  layout.shared_anon_va = reinterpret_cast<uint64_t>(
      map(nullptr, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS));
  layout.readonly_va =
      reinterpret_cast<uint64_t>(map(nullptr, kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS));

  auto* hole = static_cast<std::byte*>(
      map(nullptr, 3 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS));
  munmap(hole + kPage, kPage);
  layout.hole_va = reinterpret_cast<uint64_t>(hole);

  // Reserve, then place mappings side by side inside the reservation.
  const int other_memfd = make_memfd(2 * kPage);
  auto* mixed =
      static_cast<std::byte*>(map(nullptr, 2 * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS));
  map(mixed, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, other_memfd, 0);
  map(mixed + kPage, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  layout.mixed_va = reinterpret_cast<uint64_t>(mixed);

  auto* split = static_cast<std::byte*>(
      map(nullptr, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, layout.memfd));
  mprotect(split + kPage, 2 * kPage, PROT_READ);
  layout.split_va = reinterpret_cast<uint64_t>(split);

  auto* two =
      static_cast<std::byte*>(map(nullptr, 2 * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS));
  map(two, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, layout.memfd, 0);
  map(two + kPage, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, other_memfd, kPage);
  layout.two_files_va = reinterpret_cast<uint64_t>(two);
  return layout;
}

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

class Client {
 public:
  Client() {
    int to_child[2], from_child[2];
    EXPECT_EQ(pipe2(to_child, O_CLOEXEC), 0);
    EXPECT_EQ(pipe2(from_child, O_CLOEXEC), 0);
    std::fflush(nullptr);  // or the child may print our buffered output again
    pid_ = fork();
    if (pid_ == 0) {
      close(to_child[1]);
      close(from_child[0]);
      serve(to_child[0], from_child[1]);
    }
    close(to_child[0]);
    close(from_child[1]);
    commands_.reset(to_child[1]);
    replies_.reset(from_child[0]);
    EXPECT_TRUE(read_all(replies_.get(), &layout_, sizeof layout_));
  }
  ~Client() { exit(); }

  pid_t pid() const { return pid_; }
  const ClientLayout& layout() const { return layout_; }

  uint64_t request(Op op, uint64_t address = 0, uint64_t value = 0) {
    const Command command{op, address, value};
    EXPECT_EQ(::write(commands_.get(), &command, sizeof command),
              static_cast<ssize_t>(sizeof command));
    uint64_t reply = ~0ull;
    EXPECT_TRUE(read_all(replies_.get(), &reply, sizeof reply));
    return reply;
  }
  uint64_t peek64(uint64_t address) { return request(Op::kPeek64, address); }
  void poke64(uint64_t address, uint64_t value) { request(Op::kPoke64, address, value); }

  // Tells the child to exit and reaps it.
  void exit() {
    if (pid_ <= 0) return;
    commands_.reset();
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  [[noreturn]] static void serve(int commands, int replies) {
    const ClientLayout layout = set_up_client();
    if (::write(replies, &layout, sizeof layout) != sizeof layout) _exit(103);
    Command command;
    while (read_all(commands, &command, sizeof command)) {
      uint64_t reply = 0;
      switch (command.op) {
        case Op::kExit:
          _exit(0);
        case Op::kPeek64:
          reply = *reinterpret_cast<volatile uint64_t*>(command.address);
          break;
        case Op::kPoke64:
          *reinterpret_cast<volatile uint64_t*>(command.address) = command.value;
          break;
        case Op::kUnmap:
          reply = munmap(reinterpret_cast<void*>(command.address), command.value);
          break;
        case Op::kTruncateMemfd:
          reply = ftruncate(layout.memfd, static_cast<off_t>(command.value));
          break;
      }
      if (::write(replies, &reply, sizeof reply) != sizeof reply) _exit(104);
    }
    _exit(0);
  }

  pid_t pid_ = -1;
  UniqueFd commands_;
  UniqueFd replies_;
  ClientLayout layout_;
};

std::vector<std::byte> read_backing(Backing& backing, uint64_t offset, size_t size) {
  std::vector<std::byte> bytes(size);
  auto result = backing.read(offset, bytes);
  EXPECT_TRUE(result.ok()) << result.error().why;
  return bytes;
}

// ---- RemoteBacking --------------------------------------------------------------

TEST(RemoteBacking, ReadsAndWritesAChildsPrivateMemory) {
  Client client;
  const uint64_t va = client.layout().private_va;
  auto backing = RemoteBacking::open(client.pid(), va, 4 * kPage, MapAccess::kReadWrite);
  ASSERT_TRUE(backing.ok()) << backing.error().why;
  Backing& remote = **backing;
  EXPECT_FALSE(remote.zero_copy());
  const auto bytes = read_backing(remote, 0, 4 * kPage);
  for (size_t i = 0; i < bytes.size(); ++i) ASSERT_EQ(bytes[i], private_byte(i)) << i;

  // A write across a page boundary lands in the child.
  const uint64_t value = 0x1122334455667788;
  std::vector<std::byte> data(sizeof value);
  std::memcpy(data.data(), &value, sizeof value);
  ASSERT_TRUE(remote.write(kPage - 4, data).ok());
  EXPECT_EQ(client.peek64(va + kPage - 8) >> 32, value << 32 >> 32);
  ASSERT_TRUE(remote.write64(2 * kPage, 0xfeed).ok());
  EXPECT_EQ(client.peek64(va + 2 * kPage), 0xfeedu);
  client.poke64(va + 3 * kPage, 41);
  EXPECT_EQ(*remote.read64(3 * kPage), 41u);
  uint64_t expected = 41;
  EXPECT_TRUE(*remote.compare_exchange64(3 * kPage, expected, 42));
  EXPECT_FALSE(*remote.compare_exchange64(3 * kPage, expected, 43));
  EXPECT_EQ(expected, 42u);
  EXPECT_EQ(client.peek64(va + 3 * kPage), 42u);
}

TEST(RemoteBacking, ReadOnlyOpenRefusesWrites) {
  Client client;
  auto backing =
      RemoteBacking::open(client.pid(), client.layout().private_va, kPage, MapAccess::kRead);
  ASSERT_TRUE(backing.ok());
  EXPECT_EQ((*backing)->write64(0, 1).code(), EACCES);
  EXPECT_TRUE((*backing)->read64(0).ok());
}

TEST(RemoteBacking, ShortTransferWhenTheClientUnmaps) {
  Client client;
  const uint64_t va = client.layout().private_va;
  auto backing = *RemoteBacking::open(client.pid(), va, 4 * kPage, MapAccess::kReadWrite);
  ASSERT_EQ(client.request(Op::kUnmap, va + 2 * kPage, kPage), 0u);
  std::vector<std::byte> bytes(4 * kPage);
  size_t done = 0;
  auto result = backing->read(0, bytes, &done);
  EXPECT_EQ(result.code(), EFAULT);
  EXPECT_EQ(done, 2 * kPage);
  EXPECT_THAT(result.error().why, HasSubstr(fmt::format("{:#x}", va + 2 * kPage)));
  result = backing->write(2 * kPage + 8, std::span<const std::byte>(bytes).first(100), &done);
  EXPECT_EQ(result.code(), EFAULT);
  EXPECT_EQ(done, 0u);
  EXPECT_EQ(backing->read64(2 * kPage).code(), EFAULT);
  EXPECT_TRUE(backing->read64(3 * kPage).ok());  // the page after the hole is still there
}

TEST(RemoteBacking, FailsCleanlyOnceTheClientExited) {
  auto client = std::make_unique<Client>();
  const uint64_t va = client->layout().private_va;
  auto backing = *RemoteBacking::open(client->pid(), va, 4 * kPage, MapAccess::kReadWrite);
  client.reset();  // exits and is reaped; its pid may be reused from now on
  // Whoever has that pid now, the open file still refers to the dead address space.
  auto other = std::make_unique<Client>();
  std::vector<std::byte> bytes(kPage, std::byte{0x5a});
  size_t done = 99;
  auto result = backing->write(0, bytes, &done);
  EXPECT_EQ(result.code(), EFAULT);
  EXPECT_EQ(done, 0u);
  EXPECT_THAT(result.error().why, HasSubstr("gone"));
  EXPECT_EQ(backing->read(0, bytes, &done).code(), EFAULT);
  EXPECT_EQ(backing->read64(0).code(), EFAULT);
  uint64_t expected = 0;
  EXPECT_EQ(backing->compare_exchange64(0, expected, 1).code(), EFAULT);
  // If the new client sits at the same address, it was not written.
  if (other->layout().private_va == va) {
    EXPECT_EQ(other->peek64(va) & 0xff, 1u);
  }
}

TEST(RemoteBacking, NoSuchProcess) {
  Client client;
  const pid_t pid = client.pid();
  client.exit();
  EXPECT_EQ(RemoteBacking::open(pid, 0x10000, kPage, MapAccess::kRead).code(), ESRCH);
}

// ---- MappedFileBacking (in-process memfd) --------------------------------------

UniqueFd memfd_of_size(size_t size) {
  UniqueFd fd(memfd_create("backing-test", MFD_CLOEXEC));
  EXPECT_TRUE(fd);
  EXPECT_EQ(ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  return fd;
}

TEST(MappedFileBacking, MapsTheRangeAtItsOffset) {
  UniqueFd fd = memfd_of_size(4 * kPage);
  const uint64_t marker = 0x0123456789abcdef;
  ASSERT_EQ(pwrite(fd.get(), &marker, sizeof marker, 2 * kPage + 16),
            static_cast<ssize_t>(sizeof marker));
  auto backing = MappedFileBacking::create(fd.get(), kPage, 2 * kPage, MapAccess::kRead, "memfd");
  ASSERT_TRUE(backing.ok()) << backing.error().why;
  fd.reset();  // the mapping keeps the file
  EXPECT_TRUE((*backing)->zero_copy());
  EXPECT_EQ((*backing)->size(), 2 * kPage);
  EXPECT_EQ(*(*backing)->read64(kPage + 16), marker);
  EXPECT_EQ((*backing)->read64(2 * kPage).code(), EFAULT);  // past its end
  EXPECT_EQ((*backing)->write64(0, 1).code(), EACCES);      // mapped read-only
}

TEST(MappedFileBacking, RejectsBadRanges) {
  UniqueFd fd = memfd_of_size(4 * kPage);
  EXPECT_EQ(MappedFileBacking::create(fd.get(), 0, 5 * kPage, MapAccess::kRead, "m").code(),
            EINVAL);
  EXPECT_EQ(MappedFileBacking::create(fd.get(), 4 * kPage, kPage, MapAccess::kRead, "m").code(),
            EINVAL);
  EXPECT_EQ(MappedFileBacking::create(fd.get(), 100, kPage, MapAccess::kRead, "m").code(), EINVAL);
  EXPECT_EQ(MappedFileBacking::create(fd.get(), 0, 100, MapAccess::kRead, "m").code(), EINVAL);
  EXPECT_EQ(MappedFileBacking::create(fd.get(), 0, 0, MapAccess::kRead, "m").code(), EINVAL);
  EXPECT_EQ(
      MappedFileBacking::create(fd.get(), ~0ull & ~(kPage - 1), 2 * kPage, MapAccess::kRead, "m")
          .code(),
      EOVERFLOW);
  UniqueFd readonly(open(fmt::format("/proc/self/fd/{}", fd.get()).c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_EQ(MappedFileBacking::create(readonly.get(), 0, kPage, MapAccess::kReadWrite, "m").code(),
            EACCES);
  EXPECT_TRUE(MappedFileBacking::create(readonly.get(), 0, kPage, MapAccess::kRead, "m").ok());
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  EXPECT_EQ(MappedFileBacking::create(read_end.get(), 0, kPage, MapAccess::kRead, "pipe").code(),
            EINVAL);
}

// Atomics on the shared page race correctly with the owner's own atomics.
TEST(MappedFileBacking, CompareExchangeIsAtomicWithTheOwnersAtomics) {
  UniqueFd fd = memfd_of_size(kPage);
  void* own = mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(own, MAP_FAILED);
  auto backing = *MappedFileBacking::create(fd.get(), 0, kPage, MapAccess::kReadWrite, "memfd");
  std::atomic_ref<uint64_t> word(*static_cast<uint64_t*>(own));
  constexpr int kIncrements = 50000;
  std::thread owner([&] {
    for (int i = 0; i < kIncrements; ++i) word.fetch_add(1);
  });
  for (int i = 0; i < kIncrements; ++i) {
    uint64_t current = *backing->read64(0);
    while (!*backing->compare_exchange64(0, current, current + 1)) {
    }
  }
  owner.join();
  EXPECT_EQ(word.load(), 2u * kIncrements);
  munmap(own, kPage);
}

// A client truncating its file under the mapping kills the mapping, not the daemon.
TEST(MappedFileBacking, TruncatedFileFailsWithEfault) {
  UniqueFd fd = memfd_of_size(4 * kPage);
  auto backing = *MappedFileBacking::create(fd.get(), 0, 4 * kPage, MapAccess::kReadWrite, "memfd");
  ASSERT_TRUE(backing->write64(3 * kPage, 7).ok());
  ASSERT_EQ(ftruncate(fd.get(), static_cast<off_t>(kPage)), 0);
  EXPECT_TRUE(backing->read64(0).ok());  // still inside the file
  auto result = backing->read64(3 * kPage);
  EXPECT_EQ(result.code(), EFAULT);
  EXPECT_THAT(result.error().why, HasSubstr("SIGBUS"));
  EXPECT_TRUE(backing->broken());
  std::vector<std::byte> bytes(kPage);
  EXPECT_EQ(backing->read(0, bytes).code(), EFAULT);  // dead for good
  EXPECT_EQ(backing->write(0, bytes).code(), EFAULT);
}

// A SIGBUS outside any guarded access is not swallowed: it goes to the previous
// disposition, so the process dies of it as it would without the handler.
TEST(MappedFileBacking, ForeignSigbusStillKills) {
  UniqueFd fd = memfd_of_size(2 * kPage);
  auto backing = *MappedFileBacking::create(fd.get(), 0, 2 * kPage, MapAccess::kRead, "memfd");
  void* own = mmap(nullptr, 2 * kPage, PROT_READ, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(own, MAP_FAILED);
  ASSERT_EQ(ftruncate(fd.get(), 0), 0);
  std::fflush(nullptr);
  const pid_t child = fork();
  if (child == 0) {
    // A sanitizer reports the expected crash; keep it out of the test log.
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, STDERR_FILENO);
    const volatile auto* word = static_cast<const volatile uint64_t*>(own);
    (void)*word;  // unguarded: beyond the end of the file
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  // Killed by SIGBUS, or (under a sanitizer, whose handler was the previous one)
  // reported and exited with an error; never carried on.
  if (WIFSIGNALED(status)) {
    EXPECT_EQ(WTERMSIG(status), SIGBUS);
  } else {
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << status;
  }
  EXPECT_EQ(backing->read64(0).code(), EFAULT);  // the guarded access in this process survives
  munmap(own, 2 * kPage);
}

// hugetlbfs maps whole huge pages; a 4 KiB-aligned range inside one still works.
TEST(MappedFileBacking, RangeInsideAHugePage) {
  UniqueFd fd(memfd_create("huge", MFD_CLOEXEC | MFD_HUGETLB));
  const size_t huge = 2u << 20;
  if (!fd || ftruncate(fd.get(), huge) != 0) GTEST_SKIP() << "no hugetlbfs";
  void* probe = mmap(nullptr, huge, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (probe == MAP_FAILED) GTEST_SKIP() << "no huge pages reserved (vm.nr_hugepages)";
  static_cast<uint64_t*>(probe)[(5 * kPage) / 8] = 0xbeef;
  auto backing =
      MappedFileBacking::create(fd.get(), 5 * kPage, 2 * kPage, MapAccess::kReadWrite, "huge");
  ASSERT_TRUE(backing.ok()) << backing.error().why;
  EXPECT_EQ(*(*backing)->read64(0), 0xbeefu);
  munmap(probe, huge);
}

// ---- backing_for_file (MAP_FILE) -----------------------------------------------

TEST(BackingForFile, ReopensAChildsMemfdCoherently) {
  Client client;
  const ClientLayout& layout = client.layout();
  auto backing =
      backing_for_file(client.pid(), layout.memfd, kPage, 2 * kPage, MapAccess::kReadWrite);
  ASSERT_TRUE(backing.ok()) << backing.error().why;
  EXPECT_TRUE((*backing)->zero_copy());
  EXPECT_THAT((*backing)->description(), HasSubstr("memfd:client"));
  const auto bytes = read_backing(**backing, 0, 2 * kPage);
  for (size_t i = 0; i < bytes.size(); ++i) ASSERT_EQ(bytes[i], shared_byte(kPage + i)) << i;

  // Through the HPA space, both ways, including an atomic.
  HpaSpace space;
  const Hpa base = *space.add_segment(*backing);
  ASSERT_TRUE(space.write64(base + 8, 0xabc).ok());
  EXPECT_EQ(client.peek64(layout.shared_va + kPage + 8), 0xabcu);
  client.poke64(layout.shared_va + 2 * kPage, 0x55);
  EXPECT_EQ(*space.read64(base + kPage), 0x55u);
  uint64_t expected = 0x55;
  EXPECT_TRUE(*space.compare_exchange64(base + kPage, expected, 0x155));
  EXPECT_EQ(client.peek64(layout.shared_va + 2 * kPage), 0x155u);
}

TEST(BackingForFile, ChecksTheClientsRights) {
  Client client;
  const ClientLayout& layout = client.layout();
  auto write = backing_for_file(client.pid(), layout.readonly_fd, 0, kPage, MapAccess::kReadWrite);
  EXPECT_EQ(write.code(), EACCES);
  EXPECT_THAT(write.error().why, HasSubstr("O_RDWR"));
  auto read = backing_for_file(client.pid(), layout.readonly_fd, 0, kPage, MapAccess::kRead);
  ASSERT_TRUE(read.ok()) << read.error().why;
  EXPECT_EQ((*read)->write64(0, 1).code(), EACCES);
}

TEST(BackingForFile, Errors) {
  Client client;
  const ClientLayout& layout = client.layout();
  EXPECT_EQ(backing_for_file(client.pid(), 999, 0, kPage, MapAccess::kRead).code(), EBADF);
  EXPECT_EQ(backing_for_file(client.pid(), -1, 0, kPage, MapAccess::kRead).code(), EBADF);
  EXPECT_EQ(backing_for_file(client.pid(), layout.pipe_fd, 0, kPage, MapAccess::kRead).code(),
            EINVAL);
  EXPECT_EQ(backing_for_file(client.pid(), layout.memfd, 0, 5 * kPage, MapAccess::kRead).code(),
            EINVAL);
  EXPECT_EQ(backing_for_file(client.pid(), layout.memfd, 4 * kPage, kPage, MapAccess::kRead).code(),
            EINVAL);
  EXPECT_EQ(backing_for_file(client.pid(), layout.memfd, 1, kPage, MapAccess::kRead).code(),
            EINVAL);
  EXPECT_EQ(backing_for_file(client.pid(), layout.memfd, 0, 0, MapAccess::kRead).code(), EINVAL);
  const pid_t pid = client.pid();
  client.exit();
  EXPECT_EQ(backing_for_file(pid, 3, 0, kPage, MapAccess::kRead).code(), ESRCH);
}

// ---- backing_for_range (MAP_DMA) ----------------------------------------------

TEST(BackingForRange, SharedFileMappingIsMappedAndCoherent) {
  Client client;
  const ClientLayout& layout = client.layout();
  auto backing =
      backing_for_range(client.pid(), layout.shared_va + kPage, 2 * kPage, MapAccess::kReadWrite);
  ASSERT_TRUE(backing.ok()) << backing.error().why;
  EXPECT_TRUE((*backing)->zero_copy());
  const auto bytes = read_backing(**backing, 0, 2 * kPage);
  for (size_t i = 0; i < bytes.size(); ++i) ASSERT_EQ(bytes[i], shared_byte(kPage + i)) << i;
  ASSERT_TRUE((*backing)->write64(16, 0x77).ok());
  EXPECT_EQ(client.peek64(layout.shared_va + kPage + 16), 0x77u);
  client.poke64(layout.shared_va + 2 * kPage + 8, 0x99);
  EXPECT_EQ(*(*backing)->read64(kPage + 8), 0x99u);
}

TEST(BackingForRange, SharedAnonymousMemoryIsMapped) {
  Client client;
  auto backing = backing_for_range(client.pid(), client.layout().shared_anon_va, 2 * kPage,
                                   MapAccess::kReadWrite);
  ASSERT_TRUE(backing.ok()) << backing.error().why;
  EXPECT_TRUE((*backing)->zero_copy());
  ASSERT_TRUE((*backing)->write64(kPage, 5).ok());
  EXPECT_EQ(client.peek64(client.layout().shared_anon_va + kPage), 5u);
}

TEST(BackingForRange, OneFileSplitByMprotectIsStillMapped) {
  Client client;
  // The middle pages are read-only, so only a read mapping covers all four.
  auto backing =
      backing_for_range(client.pid(), client.layout().split_va, 4 * kPage, MapAccess::kRead);
  ASSERT_TRUE(backing.ok()) << backing.error().why;
  EXPECT_TRUE((*backing)->zero_copy());
  EXPECT_EQ(read_backing(**backing, 3 * kPage, 1)[0], shared_byte(3 * kPage));
  EXPECT_EQ(
      backing_for_range(client.pid(), client.layout().split_va, 4 * kPage, MapAccess::kReadWrite)
          .code(),
      EFAULT);
}

TEST(BackingForRange, PrivateAnonymousMemoryIsRemote) {
  Client client;
  const uint64_t va = client.layout().private_va;
  auto backing = backing_for_range(client.pid(), va, 4 * kPage, MapAccess::kReadWrite);
  ASSERT_TRUE(backing.ok()) << backing.error().why;
  EXPECT_FALSE((*backing)->zero_copy());
  EXPECT_EQ(read_backing(**backing, kPage + 5, 1)[0], private_byte(kPage + 5));
  ASSERT_TRUE((*backing)->write64(0, 3).ok());
  EXPECT_EQ(client.peek64(va), 3u);
}

TEST(BackingForRange, RangesOverSeveralMappingsAreRemote) {
  Client client;
  const ClientLayout& layout = client.layout();
  for (uint64_t va : {layout.mixed_va, layout.two_files_va}) {
    auto backing = backing_for_range(client.pid(), va, 2 * kPage, MapAccess::kReadWrite);
    ASSERT_TRUE(backing.ok()) << backing.error().why;
    EXPECT_FALSE((*backing)->zero_copy());
    ASSERT_TRUE((*backing)->write64(kPage - 8, 0x42).ok());
    ASSERT_TRUE((*backing)->write64(kPage, 0x43).ok());
    EXPECT_EQ(client.peek64(va + kPage - 8), 0x42u);
    EXPECT_EQ(client.peek64(va + kPage), 0x43u);
  }
}

TEST(BackingForRange, HolesAndMissingPermissionsAreEfault) {
  Client client;
  const ClientLayout& layout = client.layout();
  auto hole = backing_for_range(client.pid(), layout.hole_va, 3 * kPage, MapAccess::kRead);
  EXPECT_EQ(hole.code(), EFAULT);
  EXPECT_THAT(hole.error().why, HasSubstr(fmt::format("{:#x}", layout.hole_va + kPage)));
  EXPECT_TRUE(backing_for_range(client.pid(), layout.hole_va, kPage, MapAccess::kRead).ok());
  EXPECT_EQ(
      backing_for_range(client.pid(), layout.readonly_va, kPage, MapAccess::kReadWrite).code(),
      EFAULT);
  EXPECT_EQ(backing_for_range(client.pid(), layout.readonly_va, kPage, MapAccess::kWrite).code(),
            EFAULT);
  EXPECT_TRUE(backing_for_range(client.pid(), layout.readonly_va, kPage, MapAccess::kRead).ok());
  EXPECT_EQ(backing_for_range(client.pid(), 0x1000, kPage, MapAccess::kRead).code(), EFAULT);
  EXPECT_EQ(backing_for_range(client.pid(), layout.private_va + 1, kPage, MapAccess::kRead).code(),
            EINVAL);
  EXPECT_EQ(backing_for_range(client.pid(), layout.private_va, 0, MapAccess::kRead).code(), EINVAL);
  EXPECT_EQ(
      backing_for_range(client.pid(), ~0ull & ~(kPage - 1), 2 * kPage, MapAccess::kRead).code(),
      EOVERFLOW);
}

TEST(BackingForRange, NoSuchProcess) {
  Client client;
  const pid_t pid = client.pid();
  client.exit();
  EXPECT_EQ(backing_for_range(pid, 0x10000, kPage, MapAccess::kRead).code(), ESRCH);
}

// Without ptrace rights over the client every path is EPERM with a reason. The
// "daemon" here is a child that dropped to an unprivileged uid; the client is us.
TEST(BackingPermissions, NoPtraceRightsIsEperm) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to drop to another uid";
  std::vector<std::byte> here(kPage);
  const auto va = reinterpret_cast<uint64_t>(here.data()) & ~(kPage - 1);
  UniqueFd memfd = memfd_of_size(kPage);
  const pid_t client = getpid();
  std::fflush(nullptr);
  const pid_t daemon = fork();
  if (daemon == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(200);
    auto range = backing_for_range(client, va, kPage, MapAccess::kRead);
    if (range.code() != EPERM || range.error().why.find("ptrace") == std::string::npos) _exit(1);
    if (RemoteBacking::open(client, va, kPage, MapAccess::kRead).code() != EPERM) _exit(2);
    if (backing_for_file(client, memfd.get(), 0, kPage, MapAccess::kRead).code() != EPERM) _exit(3);
    if (read_process_maps(client).code() != EPERM) _exit(4);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(daemon, &status, 0), daemon);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: range, 2: remote, 3: file, 4: maps, 200: setuid";
}

// ---- /proc/<pid>/maps ----------------------------------------------------------

TEST(ProcessMaps, ParsesLines) {
  auto entry =
      parse_maps_line("7f00a000-7f00c000 rw-s 00003000 00:01 1234        /memfd:a b (deleted)");
  ASSERT_TRUE(entry.ok()) << entry.error().why;
  EXPECT_EQ(entry->start, 0x7f00a000u);
  EXPECT_EQ(entry->end, 0x7f00c000u);
  EXPECT_TRUE(entry->readable && entry->writable && entry->shared);
  EXPECT_FALSE(entry->executable);
  EXPECT_EQ(entry->offset, 0x3000u);
  EXPECT_EQ(entry->device_major, 0u);
  EXPECT_EQ(entry->device_minor, 1u);
  EXPECT_EQ(entry->inode, 1234u);
  EXPECT_EQ(entry->path, "/memfd:a b (deleted)");
  EXPECT_EQ(entry->map_files_name(), "7f00a000-7f00c000");

  entry = parse_maps_line("55d0c000-55d2d000 r-xp 00000000 fd:01 98 ");
  ASSERT_TRUE(entry.ok());
  EXPECT_FALSE(entry->shared || entry->writable);
  EXPECT_TRUE(entry->executable);
  EXPECT_EQ(entry->device_major, 0xfdu);
  EXPECT_EQ(entry->path, "");
  EXPECT_EQ(parse_maps_line("garbage").code(), EIO);
  EXPECT_EQ(parse_maps_line("2000-1000 rw-p 0 00:00 0").code(), EIO);
}

TEST(ProcessMaps, ReadsOurOwnMaps) {
  auto maps = read_process_maps(getpid());
  ASSERT_TRUE(maps.ok()) << maps.error().why;
  const auto here = reinterpret_cast<uint64_t>(&maps);
  bool found = false;
  for (const MapsEntry& entry : *maps) found |= entry.start <= here && here < entry.end;
  EXPECT_TRUE(found);
}

MapsEntry entry(uint64_t start, uint64_t end, const char* permissions, uint64_t inode = 0,
                uint64_t offset = 0) {
  return *parse_maps_line(
      fmt::format("{:x}-{:x} {} {:08x} 00:01 {} /x", start, end, permissions, offset, inode));
}

TEST(ProcessMaps, CoveringAndSharedFileDecisions) {
  const std::vector<MapsEntry> maps = {
      entry(0x10000, 0x12000, "rw-s", 7, 0x0),     // file 7 [0, 2 pages)
      entry(0x12000, 0x13000, "r--s", 7, 0x2000),  // file 7 continues, read-only
      entry(0x13000, 0x14000, "rw-s", 7, 0x8000),  // file 7, not contiguous
      entry(0x14000, 0x15000, "rw-p"),             // private
      entry(0x16000, 0x17000, "---p"),             // after a hole; no access
  };
  auto covering = mappings_covering(maps, 0x10000, 0x3000, MapAccess::kRead);
  ASSERT_TRUE(covering.ok());
  EXPECT_EQ(covering->size(), 2u);
  EXPECT_TRUE(is_one_shared_file(*covering));
  EXPECT_EQ(mappings_covering(maps, 0x10000, 0x3000, MapAccess::kReadWrite).code(), EFAULT);
  covering = mappings_covering(maps, 0x11000, 0x3000, MapAccess::kRead);
  ASSERT_TRUE(covering.ok());
  EXPECT_FALSE(is_one_shared_file(*covering));  // offsets jump
  covering = mappings_covering(maps, 0x13000, 0x2000, MapAccess::kRead);
  ASSERT_TRUE(covering.ok());
  EXPECT_FALSE(is_one_shared_file(*covering));  // shared then private
  EXPECT_EQ(mappings_covering(maps, 0x14000, 0x2000, MapAccess::kRead).code(), EFAULT);  // hole
  EXPECT_EQ(mappings_covering(maps, 0x16000, 0x1000, MapAccess::kRead).code(),
            EFAULT);  // PROT_NONE
  EXPECT_EQ(mappings_covering(maps, 0x1000, 0x1000, MapAccess::kRead).code(),
            EFAULT);  // before all
  EXPECT_EQ(mappings_covering(maps, 0x20000, 0x1000, MapAccess::kRead).code(),
            EFAULT);  // after all
}


// ---- shared handles: one daemon fd per address space, one mapping per file ------

namespace {
size_t open_fds() {
  size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) count += !entry.is_directory();
  return count;
}
}  // namespace

TEST(AddressSpace, RangesOfOneProcessShareOneHandleAndOthersGetTheirOwn) {
  Client client;
  const uint64_t va = client.layout().private_va;
  const size_t before = open_fds();
  std::vector<std::shared_ptr<RemoteBacking>> backings;
  for (int i = 0; i < 100; ++i)
    backings.push_back(*RemoteBacking::open(client.pid(), va + (i % 4) * kPage, kPage, MapAccess::kReadWrite));
  EXPECT_LE(open_fds(), before + 1) << "an fd per range";
  {
    // Another process, however alike (a fork of the same parent), is another address space.
    Client other;
    auto theirs = *RemoteBacking::open(other.pid(), other.layout().private_va, kPage, MapAccess::kReadWrite);
    ASSERT_TRUE(theirs->write64(0, 0x7777).ok());
    EXPECT_EQ(other.peek64(other.layout().private_va), 0x7777u);
    EXPECT_NE(client.peek64(va), 0x7777u);
    ASSERT_TRUE(backings[0]->write64(0, 0x6666).ok());
    EXPECT_EQ(client.peek64(va), 0x6666u);
    EXPECT_NE(other.peek64(other.layout().private_va), 0x6666u);
  }
  backings.clear();
  EXPECT_LE(open_fds(), before) << "the last range of an address space closes its handle";
}

// After an exec the process has a new address space: a MAP then gets a handle of its
// own (the shared one still reaches only the old, dead space).
TEST(AddressSpace, AnExecGetsANewHandle) {
  int to_parent[2], to_child[2];
  ASSERT_EQ(::pipe2(to_parent, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(to_child, O_CLOEXEC), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto* page = static_cast<uint64_t*>(
        ::mmap(nullptr, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    *page = 0x42;
    const uint64_t va = reinterpret_cast<uint64_t>(page);
    (void)!::write(to_parent[1], &va, sizeof va);
    char go;
    (void)!::read(to_child[0], &go, 1);
    ::execl("/bin/sleep", "sleep", "30", nullptr);
    ::_exit(127);
  }
  uint64_t va = 0;
  ASSERT_EQ(::read(to_parent[0], &va, sizeof va), ssize_t(sizeof va));
  auto before = RemoteBacking::open(child, va, kPage, MapAccess::kRead);
  ASSERT_TRUE(before.ok()) << before.error().why;
  EXPECT_EQ(*(*before)->read64(0), 0x42u);
  ASSERT_EQ(::write(to_child[1], "x", 1), 1);
  // Wait for the new image, then take a private page of it: its stack.
  std::optional<MapsEntry> stack;
  for (int i = 0; i < 500 && !stack; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (std::filesystem::read_symlink(fmt::format("/proc/{}/exe", child)).filename() != "sleep") continue;
    if (auto maps = read_process_maps(child))
      for (const MapsEntry& entry : *maps)
        if (entry.path == "[stack]") stack = entry;
  }
  ASSERT_TRUE(stack.has_value()) << "the child did not exec /bin/sleep";
  auto after = RemoteBacking::open(child, stack->end - kPage, kPage, MapAccess::kRead);
  ASSERT_TRUE(after.ok()) << after.error().why;
  EXPECT_TRUE((*after)->read64(0).ok()) << "the MAP after the exec got the old, dead address space";
  EXPECT_EQ((*before)->read64(0).code(), EFAULT);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  for (int fd : {to_parent[0], to_parent[1], to_child[0], to_child[1]}) ::close(fd);
}

TEST(BackingForFile, MapsOfOneFileShareOneDaemonMapping) {
  Client client;
  const ClientLayout& layout = client.layout();
  auto first = backing_for_file(client.pid(), layout.memfd, 0, kPage, MapAccess::kReadWrite);
  auto second = backing_for_file(client.pid(), layout.memfd, 2 * kPage, 2 * kPage, MapAccess::kReadWrite);
  ASSERT_TRUE(first.ok() && second.ok());
  const auto& a = dynamic_cast<const MappedFileBacking&>(**first);
  const auto& b = dynamic_cast<const MappedFileBacking&>(**second);
  EXPECT_EQ(&a.view(), &b.view());
  auto read_only = backing_for_file(client.pid(), layout.memfd, 0, kPage, MapAccess::kRead);
  ASSERT_TRUE(read_only.ok());
  EXPECT_FALSE((*read_only)->writable());
  EXPECT_EQ((*read_only)->write64(0, 1).code(), EACCES);
}

TEST(BackingForFile, RefusesANodeTheDaemonServes) {
  Client client;
  const ClientLayout& layout = client.layout();
  struct stat status {};
  ASSERT_EQ(::stat(fmt::format("/proc/{}/fd/{}", client.pid(), layout.memfd).c_str(), &status), 0);
  add_served_device(status.st_dev);
  auto refused = backing_for_file(client.pid(), layout.memfd, 0, kPage, MapAccess::kRead);
  remove_served_device(status.st_dev);
  EXPECT_EQ(refused.code(), EINVAL);
  EXPECT_THAT(refused.error().why, HasSubstr("serves"));
  EXPECT_TRUE(backing_for_file(client.pid(), layout.memfd, 0, kPage, MapAccess::kRead).ok());
}

}  // namespace
}  // namespace ioasid

// SPDX-License-Identifier: MIT
// The program ioasid_run_test runs under ioasid-run: it issues the ioctls the launcher
// traps and reports how they ended as its exit code (the errno, 0 on success), so a test
// sees what the launcher made of them. Knows the iommufd uAPI only.
//
//   ioctl PATH fault-alloc|test-cmd [OP [SIZE]]   the ioctl on PATH; exit 100 when it
//                                                 left a descriptor behind on failure
//   bad-pointer PATH fault-alloc|test-cmd         the ioctl with an unmapped argument
//   fork COMMAND...  /  thread COMMAND...         COMMAND in a child process / a thread
//   exit N  /  raise SIGNAL  /  wait-signal  /  args WORD...
//   fault-queue IOMMU  /  create-access IOMMU     the end-to-end commands against ioasidd:
//                                                 prints the fd; exit 0 when it is open,
//                                                 O_CLOEXEC and the struct's outputs are set
#include <linux/iommufd.h>
#include "iommufd_test/iommufd_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kDescriptorLeft = 100;
constexpr int kUsage = 99;

int open_descriptors() {
  int count = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return -1;
  while (::readdir(dir)) ++count;
  ::closedir(dir);
  return count;
}

unsigned long request_named(const std::string& name) {
  if (name == "fault-alloc") return IOMMU_FAULT_QUEUE_ALLOC;
  if (name == "test-cmd") return IOMMU_TEST_CMD;
  std::fprintf(stderr, "probe: unknown request %s\n", name.c_str());
  std::exit(kUsage);
}

int run(int argc, char** argv);

// ioctl PATH REQUEST [OP [SIZE]]: a struct of SIZE bytes (default: the struct's own) whose
// size field says SIZE.
int issue_ioctl(int argc, char** argv) {
  if (argc < 3) return kUsage;
  const unsigned long request = request_named(argv[2]);
  const uint32_t op = argc > 3 ? static_cast<uint32_t>(std::stoul(argv[3])) : uint32_t{IOMMU_TEST_OP_CREATE_ACCESS};
  const uint32_t size = argc > 4 ? static_cast<uint32_t>(std::stoul(argv[4]))
                                 : (request == IOMMU_TEST_CMD ? sizeof(iommu_test_cmd) : sizeof(iommu_fault_alloc));
  const int fd = ::open(argv[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) return kUsage;
  std::vector<uint32_t> buffer(std::max<size_t>(size, sizeof(iommu_test_cmd)) / 4 + 1, 0);
  buffer[0] = size;
  if (request == IOMMU_TEST_CMD) buffer[1] = op;
  const int before = open_descriptors();
  const int code = ::ioctl(fd, request, buffer.data()) < 0 ? errno : 0;
  if (code != 0 && open_descriptors() != before) return kDescriptorLeft;
  return code;
}

int issue_with_bad_pointer(int argc, char** argv) {
  if (argc < 3) return kUsage;
  const int fd = ::open(argv[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) return kUsage;
  // A page mapped then unmapped: nothing is there.
  void* page = ::mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ::munmap(page, 4096);
  return ::ioctl(fd, request_named(argv[2]), page) < 0 ? errno : 0;
}

int in_child(int argc, char** argv) {
  const pid_t child = ::fork();
  if (child == 0) std::_Exit(run(argc, argv));
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int in_thread(int argc, char** argv) {
  int code = 0;
  std::thread([&] { code = run(argc, argv); }).join();
  return code;
}

// The fd an end-to-end command returned: open, close-on-exec.
bool is_open_cloexec(int fd) {
  const int flags = ::fcntl(fd, F_GETFD);
  return flags >= 0 && (flags & FD_CLOEXEC);
}

int fault_queue(const char* iommu) {
  const int fd = ::open(iommu, O_RDWR | O_CLOEXEC);
  if (fd < 0) return errno;
  iommu_fault_alloc alloc{.size = sizeof alloc, .out_fault_id = 0, .out_fault_fd = 0xffffffff};
  if (::ioctl(fd, IOMMU_FAULT_QUEUE_ALLOC, &alloc) < 0) return errno;
  std::printf("fault_id %u fd %d\n", alloc.out_fault_id, static_cast<int>(alloc.out_fault_fd));
  return alloc.out_fault_id != 0 && is_open_cloexec(static_cast<int>(alloc.out_fault_fd)) ? 0 : 1;
}

int create_access(const char* iommu) {
  const int fd = ::open(iommu, O_RDWR | O_CLOEXEC);
  if (fd < 0) return errno;
  iommu_ioas_alloc ioas{.size = sizeof ioas};
  if (::ioctl(fd, IOMMU_IOAS_ALLOC, &ioas) < 0) return errno;
  iommu_test_cmd cmd{.size = sizeof cmd, .op = IOMMU_TEST_OP_CREATE_ACCESS, .id = ioas.out_ioas_id};
  cmd.create_access.out_access_fd = 0xffffffff;
  if (::ioctl(fd, IOMMU_TEST_CMD, &cmd) < 0) return errno;
  const int access = static_cast<int>(cmd.create_access.out_access_fd);
  std::printf("access fd %d\n", access);
  if (!is_open_cloexec(access)) return 1;
  // The selftest names the access by its fd: the daemon must know this number.
  iommu_test_cmd destroy{.size = sizeof destroy, .op = IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, .id = static_cast<uint32_t>(access)};
  destroy.destroy_access_pages.access_pages_id = 0x7fffffff;  // none such: ENOENT, not EBADF/EINVAL
  const int code = ::ioctl(fd, IOMMU_TEST_CMD, &destroy) < 0 ? errno : 0;
  std::printf("destroy of an unknown access_pages_id: %s\n", std::strerror(code));
  return code == ENOENT ? 0 : 2;
}

int run(int argc, char** argv) {
  if (argc < 1) return kUsage;
  const std::string command = argv[0];
  if (command == "ioctl") return issue_ioctl(argc, argv);
  if (command == "bad-pointer") return issue_with_bad_pointer(argc, argv);
  if (command == "fork") return in_child(argc - 1, argv + 1);
  if (command == "thread") return in_thread(argc - 1, argv + 1);
  if (command == "exit" && argc == 2) return std::atoi(argv[1]);
  if (command == "raise" && argc == 2) {
    ::signal(std::atoi(argv[1]), SIG_DFL);
    ::raise(std::atoi(argv[1]));
    return kUsage;
  }
  if (command == "wait-signal") {
    std::printf("ready\n");
    std::fflush(stdout);
    ::pause();
    return kUsage;
  }
  if (command == "args") {
    for (int index = 1; index < argc; ++index) std::printf("%s\n", argv[index]);
    return 0;
  }
  if (command == "fault-queue" && argc == 2) return fault_queue(argv[1]);
  if (command == "create-access" && argc == 2) return create_access(argv[1]);
  std::fprintf(stderr, "probe: unknown command %s\n", command.c_str());
  return kUsage;
}

}  // namespace

int main(int argc, char** argv) { return run(argc - 1, argv + 1); }

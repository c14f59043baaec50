// SPDX-License-Identifier: MIT
// The iommufd commands that return a file descriptor, in the two steps of
// <linux/ioasid_iommu_fd.h>: libioasid's iommufd_fd_command, and the steps ioasid-run
// shares with it.
#include "internal.h"

#include <linux/ioasid_iommu_fd.h>
#include <linux/iommufd.h>
#include "iommufd_test/iommufd_test.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

namespace ioasid::client {

namespace iommu_fd {

namespace {

// The command's name in error messages: "IOMMU_FAULT_QUEUE_ALLOC".
std::string iommufd_command_name(uint32_t cmd) {
  switch (cmd) {
    case IOMMU_FAULT_QUEUE_ALLOC: return "IOMMU_FAULT_QUEUE_ALLOC";
    case IOMMU_TEST_CMD: return "IOMMU_TEST_CMD";
    default: return command_name(cmd);
  }
}

// Closes a descriptor on every path that does not hand it to the caller.
class OwnedFd {
 public:
  explicit OwnedFd(int fd) : fd_(fd) {}
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  ~OwnedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

}  // namespace

std::optional<size_t> fd_field_offset(uint32_t cmd, const void* cmd_struct) {
  switch (cmd) {
    case IOMMU_FAULT_QUEUE_ALLOC:
      return offsetof(iommu_fault_alloc, out_fault_fd);
    case IOMMU_TEST_CMD: {
      uint32_t op;
      std::memcpy(&op, static_cast<const std::byte*>(cmd_struct) + offsetof(iommu_test_cmd, op), sizeof op);
      if (op != IOMMU_TEST_OP_CREATE_ACCESS) return std::nullopt;
      return offsetof(iommu_test_cmd, create_access.out_access_fd);
    }
    default:
      return std::nullopt;
  }
}

Result<PendingObject> make_object(int iommu_fd, uint32_t cmd, void* cmd_struct) {
  const std::string name = "IOASID_IOMMU_FD_CMD (" + iommufd_command_name(cmd) + ")";
  const auto offset = fd_field_offset(cmd, cmd_struct);
  if (!offset) return Error{EINVAL, name + ": the command returns no file descriptor"};
  uint32_t size;
  std::memcpy(&size, cmd_struct, sizeof size);
  // The fd is written there afterwards: a struct that does not reach it would be overrun.
  if (size < *offset + sizeof(uint32_t))
    return Error{EINVAL, name + ": size " + std::to_string(size) + " does not reach the fd field"};

  ioasid_iommu_fd_cmd request{.size = sizeof(ioasid_iommu_fd_cmd),
                              .cmd = cmd,
                              .cmd_uptr = reinterpret_cast<uintptr_t>(cmd_struct)};
  if (::ioctl(iommu_fd, IOASID_IOMMU_FD_CMD, &request) < 0) return detail::errno_error(name, errno);
  return PendingObject{.token = request.out_token, .fd_offset = *offset};
}

Result<int> open_object_file(const char* companion_path, uint64_t token, FdNumber number) {
  OwnedFd file(::open(companion_path, O_RDWR | O_CLOEXEC));
  if (file.get() < 0) return detail::errno_error(std::string("open ") + companion_path, errno);
  ioasid_iommu_fd_attach attach{.token = token,
                                .fd_number = number == FdNumber::this_process ? file.get() : -1};
  if (::ioctl(file.get(), IOASID_IOMMU_FD_ATTACH, &attach) < 0)
    return detail::errno_error("IOASID_IOMMU_FD_ATTACH", errno);
  return file.release();
}

Result<void> set_fd_number(int object_fd, int32_t number) {
  if (::ioctl(object_fd, IOASID_IOMMU_FD_SET_NUMBER, &number) < 0)
    return detail::errno_error("IOASID_IOMMU_FD_SET_NUMBER", errno);
  return {};
}

void store_fd(void* cmd_struct, const PendingObject& object, int32_t fd) {
  std::memcpy(static_cast<std::byte*>(cmd_struct) + object.fd_offset, &fd, sizeof fd);
}

}  // namespace iommu_fd

Result<int> iommufd_fd_command(int iommu_fd, uint32_t cmd, void* arg, const char* companion_path) {
  auto object = iommu_fd::make_object(iommu_fd, cmd, arg);
  IOASID_CLIENT_TRY(object);
  auto file = iommu_fd::open_object_file(companion_path, object->token, iommu_fd::FdNumber::this_process);
  IOASID_CLIENT_TRY(file);
  iommu_fd::store_fd(arg, *object, *file);
  return file;
}

}  // namespace ioasid::client

// SPDX-License-Identifier: MIT
// A memfd also mapped shared in this process: memory a program gives the daemon
// (MAP_FILE, zero copy) and still reads and writes itself, as a VMM does guest RAM.
#pragma once

#include "common/node.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <utility>

namespace ioasid::examples {

class SharedMemory {
 public:
  static client::Result<SharedMemory> create(const char* name, size_t size) {
    SharedMemory memory;
    memory.fd_ = ::memfd_create(name, MFD_CLOEXEC);
    if (memory.fd_ < 0) return fail(errno, "memfd_create: {}", std::strerror(errno));
    if (::ftruncate(memory.fd_, static_cast<off_t>(size)) != 0)
      return fail(errno, "ftruncate of the memfd to {} bytes: {}", size, std::strerror(errno));
    void* data = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, memory.fd_, 0);
    if (data == MAP_FAILED) return fail(errno, "mmap of the memfd: {}", std::strerror(errno));
    memory.data_ = static_cast<std::byte*>(data);
    memory.size_ = size;
    return memory;
  }

  SharedMemory(SharedMemory&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)), data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)) {}
  SharedMemory& operator=(SharedMemory&& other) noexcept {
    std::swap(fd_, other.fd_);
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  ~SharedMemory() {
    if (data_) ::munmap(data_, size_);
    if (fd_ >= 0) ::close(fd_);
  }

  int fd() const { return fd_; }
  std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  SharedMemory() = default;
  int fd_ = -1;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ioasid::examples

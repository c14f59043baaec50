// SPDX-License-Identifier: MIT
#include "memory/mapping.h"

#include <sys/mman.h>

#include <cstring>

namespace ioasid {

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

Result<Mapping> Mapping::map_shared(int fd, uint64_t offset, size_t size, bool writable) {
  const int protection = PROT_READ | (writable ? PROT_WRITE : 0);
  void* address = ::mmap(nullptr, size, protection, MAP_SHARED | MAP_NORESERVE, fd, static_cast<off_t>(offset));
  if (address == MAP_FAILED) {
    const int error = errno;
    return fail(error, "mmap of {} bytes at file offset {:#x} ({}): {}", size, offset,
                writable ? "read-write" : "read-only", std::strerror(error));
  }
  return Mapping(static_cast<std::byte*>(address), size);
}

Result<Mapping> Mapping::anonymous(size_t size) {
  void* address = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (address == MAP_FAILED) {
    const int error = errno;
    return fail(error, "anonymous mmap of {} bytes: {}", size, std::strerror(error));
  }
  return Mapping(static_cast<std::byte*>(address), size);
}

void Mapping::reset() {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace ioasid

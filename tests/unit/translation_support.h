// SPDX-License-Identifier: MIT
// Shared by the translation and DMA-function tests: a memfd standing for a client's
// memory, mapped into an IoPageTable as MAP_FILE would map it (a MappedFileBacking plus
// a pin charge), and the PASID-table entry that routes requests to that table. The
// tests look at the memfd with pread/pwrite to see what a DMA really did.
#pragma once

#include "base/unique_fd.h"
#include "iommu/io_pagetable.h"
#include "memory/mapped_file_backing.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace ioasid::iommu::test_support {

inline constexpr uint64_t k4K = 1ull << 12, k2M = 1ull << 21;

class MemfdMemory {
 public:
  explicit MemfdMemory(uint64_t size) : fd_(memfd_create("translation-test", MFD_CLOEXEC)) {
    if (fd_ && ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) fd_.reset();
  }
  bool ok() const { return static_cast<bool>(fd_); }
  int fd() const { return fd_.get(); }

  // Maps [offset, offset + length) of the memfd at `iova` (else the lowest hole) with
  // the given rights; returns the IOVA.
  Result<uint64_t> map(Iommu& iommu, IoPageTable& table, uint64_t offset, uint64_t length,
                       std::optional<uint64_t> iova, bool readable = true, bool writeable = true) const {
    auto backing = MappedFileBacking::create(fd_.get(), offset, length, MapAccess::kReadWrite, "memfd");
    IOASID_TRY(backing);
    auto charge = iommu.pins().charge(getuid(), length / k4K);
    IOASID_TRY(charge);
    return table.map({.backing = std::move(*backing), .charge = std::move(*charge), .iova = iova,
                      .readable = readable, .writeable = writeable});
  }

  std::vector<std::byte> read(uint64_t offset, size_t size) const {
    std::vector<std::byte> out(size);
    if (pread(fd_.get(), out.data(), size, static_cast<off_t>(offset)) != static_cast<ssize_t>(size)) out.clear();
    return out;
  }
  bool write(uint64_t offset, std::span<const std::byte> in) const {
    return pwrite(fd_.get(), in.data(), in.size(), static_cast<off_t>(offset)) == static_cast<ssize_t>(in.size());
  }
  // The whole memfd mapped shared in this process, as a client sees its memory (null
  // on failure); unmapped with the object.
  std::byte* map_here() {
    if (here_.empty()) {
      struct stat st {};
      if (fstat(fd_.get(), &st) != 0) return nullptr;
      void* mapped = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
      if (mapped == MAP_FAILED) return nullptr;
      here_ = {static_cast<std::byte*>(mapped), static_cast<size_t>(st.st_size)};
    }
    return here_.data();
  }
  ~MemfdMemory() {
    if (!here_.empty()) munmap(here_.data(), here_.size());
  }
  MemfdMemory(const MemfdMemory&) = delete;
  MemfdMemory& operator=(const MemfdMemory&) = delete;

 private:
  UniqueFd fd_;
  std::span<std::byte> here_;
};

// The entry a second-level attach of `table` writes into a device's PASID table.
inline PasidEntry second_level_entry(const IoPageTable& table, uint32_t ioasid) {
  return PasidEntry{.ioasid = ioasid,
                    .domain = table.domain(),
                    .type = TranslationType::kSecondLevel,
                    .levels = static_cast<uint8_t>(table.levels()),
                    .root = table.root()};
}

// Bytes that differ from their neighbours and from zero, so a shifted or partial copy shows.
inline std::vector<std::byte> pattern(size_t size, unsigned seed) {
  std::vector<std::byte> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = std::byte(((i * 31 + seed) % 251) + 1);
  return bytes;
}

}  // namespace ioasid::iommu::test_support

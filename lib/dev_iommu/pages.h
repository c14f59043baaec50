// SPDX-License-Identifier: MIT
// The user memory of one IOAS_MAP (iommufd's iopt_pages): a range of the mapping
// process's address space, recorded at MAP and pinned only while something needs the
// pages (a domain the IOAS fills); areas made by COPY share it, and with it the pin.
#pragma once

#include "base/result.h"
#include "memory/address_space.h"
#include "memory/backing.h"
#include "memory/pin_accounting.h"

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <span>

namespace ioasid::dev_iommu {

inline constexpr uint64_t kPageSize = 4096;
constexpr uint64_t page_floor(uint64_t value) { return value & ~(kPageSize - 1); }
constexpr uint64_t page_ceil(uint64_t value) { return (value + kPageSize - 1) & ~(kPageSize - 1); }

// Pinned pages: a backing of a page-rounded range of the mapping process's memory.
struct PagesPin {
  std::shared_ptr<Backing> backing;
  uint64_t start_va;  // the user address backing offset 0 stands for
  PinCharge charge;
};

// Whom the pinned pages are charged to: a user (iommufd's default) or, with
// IOMMU_OPTION_RLIMIT_MODE 1, the mapping process (its tgid as the key of a separate
// accounting with the same limit).
struct PinAccount {
  PinAccounting* pins;
  uid_t key;
};

class Pages {
 public:
  // Records [uptr, uptr + length) of the process `pid`. EINVAL/EOVERFLOW as iommufd
  // for a length or range it cannot hold.
  static Result<std::shared_ptr<Pages>> record(pid_t pid, PinAccount account, uint64_t uptr, uint64_t length,
                                               bool writable);
  // Takes the address space the process runs in now, once, when an area of the pages
  // is about to exist (a MAP that fails its IOVA checks never reads /proc). EFAULT
  // with no such process.
  Result<void> bind_address_space();

  uint64_t uptr() const { return uptr_; }
  uint64_t length() const { return length_; }
  bool writable() const { return writable_; }
  pid_t pid() const { return pid_; }

  // The pinned pages, shared by every holder. EFAULT when the recorded process is gone
  // (or execed) or the range has a hole; the pin limit's errno when over it.
  Result<std::shared_ptr<PagesPin>> pin();
  // The pages holding [va, va + length) (inside the range), pinned: the whole range's
  // pin when it has one, else a pin of just those pages, as an access pins only the
  // pages it asks for.
  Result<std::shared_ptr<PagesPin>> pin_part(uint64_t va, uint64_t length);
  // The whole range's pin while something holds it.
  std::shared_ptr<PagesPin> pinned() const { return pinned_.lock(); }
  // Reads or writes bytes at `va` (inside the range) without pinning: through the
  // address space MAP recorded, so an exec or exit since then reaches nothing (EFAULT).
  Result<void> transfer(uint64_t va, std::span<std::byte> buffer, bool write);

 private:
  Pages(pid_t pid, PinAccount account, uint64_t uptr, uint64_t length, bool writable)
      : pid_(pid), account_(account), uptr_(uptr), length_(length), writable_(writable) {}

  // Pins the pages of [first, first + size) (page aligned) of the recorded address space.
  Result<std::shared_ptr<PagesPin>> pin_pages(uint64_t first, uint64_t size);

  std::shared_ptr<AddressSpace> space_;  // the mm MAP recorded
  const pid_t pid_;
  const PinAccount account_;
  const uint64_t uptr_;
  const uint64_t length_;
  const bool writable_;
  std::weak_ptr<PagesPin> pinned_;
};

}  // namespace ioasid::dev_iommu

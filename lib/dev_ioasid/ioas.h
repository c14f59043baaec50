// SPDX-License-Identifier: MIT
// An IOASID object of a file. Kernel-managed: the daemon's second-level table,
// changed with MAP/UNMAP. Nested: a guest's first-level table (bound with BIND_PGTBL)
// whose guest-physical addresses translate through its kernel-managed parent.
#pragma once

#include "iommu/io_pagetable.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>

namespace ioasid::dev_ioasid {

// What BIND_PGTBL bound: kept as given and reported by the admin.
struct FirstLevelBinding {
  uint64_t pgtbl_addr = 0;  // GPA of the root
  uint32_t addr_width = 0;  // 48 or 57
  uint64_t flags = 0;       // IOASID_VTD_FL_*
  uint32_t pat = 0;
  uint32_t emt = 0;
};

struct Ioas;

struct Nested;

// One user of an IOASID (an attached route, a nested IOASID on top): FREE is EBUSY while
// any lives.
class IoasUser {
 public:
  IoasUser() = default;
  explicit IoasUser(std::shared_ptr<Ioas> ioas);
  IoasUser(IoasUser&& other) noexcept = default;
  IoasUser& operator=(IoasUser&& other) noexcept;
  IoasUser(const IoasUser&) = delete;
  IoasUser& operator=(const IoasUser&) = delete;
  ~IoasUser();
  Ioas* operator->() const { return ioas_.get(); }
  Ioas& operator*() const { return *ioas_; }

 private:
  std::shared_ptr<Ioas> ioas_;
};

struct Ioas {
  std::unique_ptr<iommu::IoPageTable> table;  // kernel-managed only
  std::unique_ptr<Nested> nested;             // nested only
  UserQuota::Charge charge;                   // one of the opener's --max-ioasids-per-user
  // Devices attached and nested IOASIDs on top: FREE is EBUSY while any.
  std::atomic<uint32_t> users{0};

  bool is_nested() const { return nested != nullptr; }
};

inline IoasUser::IoasUser(std::shared_ptr<Ioas> ioas) : ioas_(std::move(ioas)) {
  if (ioas_) ioas_->users.fetch_add(1);
}
inline IoasUser& IoasUser::operator=(IoasUser&& other) noexcept {
  if (this != &other) {
    if (ioas_) ioas_->users.fetch_sub(1);
    ioas_ = std::move(other.ioas_);
  }
  return *this;
}
inline IoasUser::~IoasUser() {
  if (ioas_) ioas_->users.fetch_sub(1);
}

// A nested IOASID's own state. It counts as a user of its parent and is one of the
// parent table's nested domains for as long as it lives.
struct Nested {
  Nested(std::shared_ptr<Ioas> parent_ioas, uint32_t parent, iommu::Domain own_domain)
      : parent(std::move(parent_ioas)), parent_id(parent), domain(std::move(own_domain)) {
    this->parent->table->add_nested_domain(domain.id());
  }
  ~Nested() { parent->table->remove_nested_domain(domain.id()); }
  Nested(const Nested&) = delete;
  Nested& operator=(const Nested&) = delete;

  const IoasUser parent;  // kernel-managed
  const uint32_t parent_id;
  const iommu::Domain domain;  // the IOTLB tag of its translations
  std::optional<FirstLevelBinding> binding;  // changed under the file's routes_mutex
};

}  // namespace ioasid::dev_ioasid

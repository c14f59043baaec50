// SPDX-License-Identifier: MIT
// The selftest's access object (iommufd's iommufd_access behind the mock driver's
// file): an in-daemon user of an IOAS that reads and writes its memory by IOVA and
// pins pages of it. Its file is a companion-node file (fd_objects.h); the selftest
// names it by that file's number. Every method runs under the owning file's lock.
#pragma once

#include "dev_iommu/objects.h"

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

namespace ioasid::dev_iommu {

class Access final : public Object, public FileBacked {
 public:
  // needs_pin_pages: MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES (IOVAs page aligned).
  explicit Access(bool needs_pin_pages) : Object(ObjectType::Access), needs_pin_pages_(needs_pin_pages) {}
  ~Access() override { detach(); }

  // Uses the IOAS from now on (EADDRINUSE: an area breaks the access's alignment);
  // what was pinned in the previous one is released first.
  Result<void> attach(std::shared_ptr<Ioas> ioas);
  // Releases every pin and leaves the IOAS.
  void detach();
  Ioas* ioas() const { return ioas_.get(); }
  bool needs_pin_pages() const { return needs_pin_pages_; }

  // Pins [iova, iova + length) until unpin(id); returns the pins (for the caller's
  // check) and the id.
  struct Pinned {
    uint32_t id;
    std::vector<PinnedPiece> pieces;
  };
  Result<Pinned> pin(uint64_t iova, uint64_t length, bool write);
  Result<void> unpin(uint32_t id);
  // The IOAS is unmapping [iova, iova + length): pins meeting it go.
  void unmapped(uint64_t iova, uint64_t length);

 private:
  struct Item {
    uint64_t iova;
    uint64_t length;
    std::vector<PinnedPiece> pieces;
  };
  void release(std::map<uint32_t, Item>::iterator it);

  const bool needs_pin_pages_;
  Use<Ioas> ioas_;
  std::map<uint32_t, Item> items_;
  uint32_t next_item_id_ = 0;
};

}  // namespace ioasid::dev_iommu

// SPDX-License-Identifier: MIT
// The IOVA side of one IOAS (iommufd's io_pagetable): areas of user memory at IOVAs,
// the reserved and allowed ranges, the IOVA alignment, and the paging domains
// (engine second-level tables) kept equal to the areas. Rules as iommufd's uAPI
// documents them; every failing call changes nothing, except UNMAP, which like
// iommufd keeps what it unmapped before it met an area it may not split.
//
// The engine's tables map 4 KiB pages: an area lands in a domain as the 4 KiB pages
// around it, so its IOVA and its user address must share their offset in the page,
// and two areas may not share an IOVA page while a domain exists (EADDRINUSE: the
// kernel's mock domain, with 2 KiB pages, could).
#pragma once

#include "base/result.h"
#include "base/user_quota.h"
#include "dev_iommu/pages.h"
#include "iommu/io_pagetable.h"
#include "iommu/iova_space.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <vector>

namespace ioasid::dev_iommu {

using iommu::IovaRange;

inline constexpr uint64_t kLastIova = ~0ull;

// A paging domain an IOAS fills: an engine table, the smallest IO page it offers and
// the IOVAs it can translate.
struct DomainSlot {
  iommu::IoPageTable* table = nullptr;
  uint64_t page_size = kPageSize;
  IovaRange aperture{0, kLastIova};
};

// Bytes of one Pages: what COPY takes from a source and maps in a destination.
struct PagesPiece {
  std::shared_ptr<Pages> pages;
  uint64_t start_byte = 0;  // from pages->uptr()
  uint64_t length = 0;
};

// Bytes of the pages an access reads or holds: [offset, offset + length) of the pin's
// backing, or, for a read or write of pages nobody pinned (no pin), `length` bytes at
// `va` of the pages' recorded address space.
struct PinnedPiece {
  std::shared_ptr<PagesPin> pin;
  uint64_t offset = 0;
  uint64_t length = 0;
  std::shared_ptr<Pages> pages;
  uint64_t va = 0;
};

struct AreaView {
  uint64_t iova;
  uint64_t length;
  uint64_t user_va;
  bool readable;
  bool writeable;
};

class IovaAreas {
 public:
  IovaAreas(UserQuota& maps_quota, uid_t uid) : maps_quota_(maps_quota), uid_(uid) {}
  ~IovaAreas();
  IovaAreas(const IovaAreas&) = delete;
  IovaAreas& operator=(const IovaAreas&) = delete;

  // Maps the pieces at consecutive IOVAs: `fixed` or the first fitting hole. Returns
  // the IOVA. With domains the pages are pinned and mapped in every one first.
  Result<uint64_t> map(std::span<const PagesPiece> pieces, std::optional<uint64_t> fixed, bool readable,
                       bool writeable);
  // Unmaps the areas inside [iova, iova + length); returns the bytes unmapped (0: none
  // there). ENOENT when one is only partly inside.
  Result<uint64_t> unmap(uint64_t iova, uint64_t length);
  uint64_t unmap_all();
  // The pages behind [iova, iova + length) of contiguous areas (any byte range).
  Result<std::vector<PagesPiece>> pieces(uint64_t iova, uint64_t length) const;
  // Whether areas cover [iova, iova + length) without a gap (false when empty).
  bool covers(uint64_t iova, uint64_t length) const;
  // Cuts the area holding `iova` in two there (VFIO type1 unmaps part of a mapping).
  Result<void> split_at(uint64_t iova);

  // Reserved ranges (EADDRINUSE over an area or an allowed range), removed by owner.
  Result<void> reserve(uint64_t start, uint64_t last, const void* owner);
  void unreserve(const void* owner);
  size_t reserved_count() const { return reserved_.size(); }
  // Replaces the allowed ranges (none: everything is allowed). EINVAL for an empty or
  // overlapping range or one with start >= last,
  // EADDRINUSE over a reserved one.
  Result<void> allow(std::vector<IovaRange> ranges);
  // What IOVA_RANGES reports: [0, ~0] less the reserved ranges.
  std::vector<IovaRange> usable() const;

  uint64_t alignment() const;
  bool large_pages() const { return !large_pages_disabled_; }
  // EINVAL with both domains and areas; EADDRINUSE if an area is not page aligned.
  Result<void> disable_large_pages();
  void enable_large_pages() { large_pages_disabled_ = false; }

  // An access (iommufd's in-kernel user of an IOAS, here the selftest's access object):
  // its IOVA alignment joins the IOAS's (EADDRINUSE when an area breaks it), and it is
  // told of each area about to be unmapped, before it is, so it drops what it holds.
  using UnmapNotice = std::function<void(uint64_t iova, uint64_t length)>;
  Result<void> add_access(const void* owner, uint64_t alignment, UnmapNotice notice);
  void remove_access(const void* owner);
  // The pages behind [iova, iova + length) of contiguous areas, for an access: EPERM
  // without the areas' permission (write or read), ENOENT for a hole, EINVAL when
  // `whole_pages` and a page of memory would be shared with bytes outside (as
  // iommufd's access_pin_pages). `hold`: pinned, and the areas count the access's pin
  // until release_access_pins (such an area cannot be split); otherwise pinned pages
  // come pinned and the others unpinned, for one read or write (as iommufd's
  // access_rw goes through the recorded mm when nothing pinned them).
  Result<std::vector<PinnedPiece>> access_pins(uint64_t iova, uint64_t length, bool write, bool whole_pages,
                                               bool hold);
  void release_access_pins(uint64_t iova, uint64_t length);

  // Fills the domain with every area (pins them) and keeps it filled until removed.
  Result<void> add_domain(DomainSlot slot, const void* owner);
  void remove_domain(const void* owner);
  bool has_domains() const { return !domains_.empty(); }
  bool has_areas() const { return !areas_.empty(); }
  std::vector<uint64_t> domain_page_sizes() const;
  std::vector<AreaView> areas() const;

 private:
  struct Area {
    uint64_t length;
    std::shared_ptr<Pages> pages;
    uint64_t start_byte;
    bool readable;
    bool writeable;
    UserQuota::Charge mapping;               // one of the user's --max-maps-per-user
    std::shared_ptr<PagesPin> pinned;     // while domains exist
    uint32_t access_holds = 0;            // pins of accesses on it
  };
  struct Access {
    const void* owner;
    uint64_t alignment;
    UnmapNotice notice;
  };
  struct Reserved {
    uint64_t last;
    const void* owner;
  };
  struct Domain {
    DomainSlot slot;
    const void* owner;
  };

  bool overlaps_area(uint64_t start, uint64_t last) const;
  bool overlaps_reserved(uint64_t start, uint64_t last) const;
  bool overlaps_allowed(uint64_t start, uint64_t last) const;
  Result<void> check_alignment(uint64_t alignment) const;
  Result<uint64_t> find_iova(uint64_t user_va, uint64_t length) const;
  Result<void> check_fixed(uint64_t iova, uint64_t length) const;
  // Maps one area in one domain (pinning it if needed) / takes it out.
  Result<void> map_in(uint64_t iova, Area& area, const DomainSlot& slot);
  void unmap_from(uint64_t iova, const Area& area, const DomainSlot& slot);
  Result<void> pin(Area& area);
  void drop(std::map<uint64_t, Area>::iterator it);
  // Tells every access the area is going (they release their pins of it; the map of
  // areas itself does not change).
  void notify_accesses(uint64_t iova, uint64_t length);

  UserQuota& maps_quota_;
  const uid_t uid_;
  std::map<uint64_t, Area> areas_;                  // by IOVA
  std::multimap<uint64_t, Reserved> reserved_;      // by start
  std::vector<IovaRange> allowed_;                  // sorted, disjoint
  std::vector<Domain> domains_;
  std::vector<Access> accesses_;
  bool large_pages_disabled_ = false;
};

}  // namespace ioasid::dev_iommu

// SPDX-License-Identifier: MIT
#include "dev_iommu/iova_areas.h"

#include "memory/slice_backing.h"

#include <algorithm>
#include <bit>

namespace ioasid::dev_iommu {
namespace {

// iommufd aligns automatic IOVAs at most to a huge page: more buys nothing.
constexpr uint64_t kMaxAutoAlignment = 2ull << 20;

uint64_t last_of(uint64_t start, uint64_t length) { return start + (length - 1); }

// The first IOVA of [start, last] aligned to `alignment`, with the user address's
// offset in its page, where `length` bytes fit; nullopt if none.
std::optional<uint64_t> fit(uint64_t start, uint64_t last, uint64_t length, uint64_t alignment,
                            uint64_t page_offset) {
  if (start > last || last - start < length - 1) return std::nullopt;
  if (start > ~0ull - (alignment - 1)) return std::nullopt;
  const uint64_t candidate = ((start + alignment - 1) & ~(alignment - 1)) | page_offset;
  if (candidate < start || candidate > last || last - candidate < length - 1) return std::nullopt;
  return candidate;
}

}  // namespace

IovaAreas::~IovaAreas() {
  // Domains hold their IOAS, so none is left; areas go with their pins and charges.
  while (!areas_.empty()) drop(areas_.begin());
}

bool IovaAreas::overlaps_area(uint64_t start, uint64_t last) const {
  auto it = areas_.upper_bound(last);
  if (it == areas_.begin()) return false;
  --it;
  return last_of(it->first, it->second.length) >= start;
}

bool IovaAreas::overlaps_reserved(uint64_t start, uint64_t last) const {
  for (const auto& [first, range] : reserved_) {
    if (first > last) break;
    if (range.last >= start) return true;
  }
  return false;
}

bool IovaAreas::overlaps_allowed(uint64_t start, uint64_t last) const {
  return std::ranges::any_of(allowed_, [&](const IovaRange& r) { return r.start <= last && r.last >= start; });
}

uint64_t IovaAreas::alignment() const {
  uint64_t alignment = large_pages_disabled_ ? kPageSize : 1;
  for (const Domain& domain : domains_) alignment = std::max(alignment, domain.slot.page_size);
  for (const Access& access : accesses_) alignment = std::max(alignment, access.alignment);
  return alignment;
}

Result<void> IovaAreas::check_alignment(uint64_t alignment) const {
  const uint64_t mask = alignment - 1;
  for (const auto& [iova, area] : areas_) {
    const uint64_t page_offset = (area.pages->uptr() + area.start_byte) % kPageSize;
    if ((iova & mask) || (area.length & mask) || (page_offset & mask))
      return fail(EADDRINUSE, "area [{:#x}, +{:#x}) (page offset {:#x}) is not {}-byte aligned", iova, area.length,
                  page_offset, alignment);
  }
  return success();
}

Result<uint64_t> IovaAreas::find_iova(uint64_t user_va, uint64_t length) const {
  if (length == 0 || length >= ~0ull / 2) return fail(EOVERFLOW, "length {:#x} cannot be placed", length);
  // Keep the alignment the user address has, up to the length's: a huge page stays one.
  uint64_t alignment = std::bit_ceil(length);
  if (user_va != 0) alignment = std::min(alignment, uint64_t{1} << std::countr_zero(user_va));
  alignment = std::min(alignment, kMaxAutoAlignment);
  if (alignment < this->alignment())
    return fail(EINVAL, "user_va {:#x} and length {:#x} allow {}-byte IOVA alignment, the IOAS needs {}", user_va,
                length, alignment, this->alignment());
  const uint64_t page_offset = user_va % kPageSize;

  // Reserved ranges and areas, merged in IOVA order.
  std::vector<IovaRange> taken;
  for (const auto& [start, range] : reserved_) taken.push_back({start, range.last});
  for (const auto& [iova, area] : areas_) taken.push_back({iova, last_of(iova, area.length)});
  std::ranges::sort(taken, {}, &IovaRange::start);

  // Never IOVA 0, nor the last page: iommufd's window for automatic IOVAs.
  const IovaRange window{kPageSize, kLastIova - kPageSize};
  std::vector<IovaRange> allowed = allowed_;
  if (allowed.empty()) allowed.push_back(window);
  for (const IovaRange& range : allowed) {
    const uint64_t first = std::max(range.start, window.start), last = std::min(range.last, window.last);
    if (first > last) continue;
    uint64_t cursor = first;
    for (const IovaRange& used : taken) {
      if (used.last < cursor) continue;
      if (used.start > last) break;
      if (used.start > cursor)
        if (auto iova = fit(cursor, used.start - 1, length, alignment, page_offset)) return *iova;
      if (used.last >= last) {
        cursor = 0;  // nothing left in this range
        break;
      }
      cursor = used.last + 1;
    }
    if (cursor != 0)
      if (auto iova = fit(cursor, last, length, alignment, page_offset)) return *iova;
  }
  return fail(ENOSPC, "no free IOVA range of {:#x} bytes ({}-byte aligned)", length, alignment);
}

Result<void> IovaAreas::check_fixed(uint64_t iova, uint64_t length) const {
  if (iova % alignment()) return fail(EINVAL, "iova {:#x} is not {}-byte aligned", iova, alignment());
  if (iova + (length - 1) < iova) return fail(EOVERFLOW, "iova {:#x} + length {:#x} wraps", iova, length);
  const uint64_t last = last_of(iova, length);
  if (overlaps_reserved(iova, last)) return fail(EINVAL, "[{:#x}, {:#x}] meets a reserved range", iova, last);
  if (overlaps_area(iova, last)) return fail(EEXIST, "[{:#x}, {:#x}] meets a mapped area", iova, last);
  return success();
}

Result<void> IovaAreas::pin(Area& area) {
  if (area.pinned) return success();
  auto pinned = area.pages->pin();
  IOASID_TRY(pinned);
  area.pinned = std::move(*pinned);
  return success();
}

Result<void> IovaAreas::map_in(uint64_t iova, Area& area, const DomainSlot& slot) {
  IOASID_TRY(pin(area));
  const uint64_t user_va = area.pages->uptr() + area.start_byte;
  if (iova % kPageSize != user_va % kPageSize)
    return fail(EINVAL,
                "iova {:#x} and user_va {:#x} differ in their offset in the 4 KiB page the engine's tables map",
                iova, user_va);
  const uint64_t first = page_floor(iova);
  const uint64_t size = page_ceil(iova + area.length) - first;
  auto slice = slice_of(area.pinned->backing, page_floor(user_va) - area.pinned->start_va, size);
  IOASID_TRY(slice);
  auto mapped = slot.table->map({.backing = std::move(*slice),
                                 .charge = {},
                                 .mapping = {},
                                 .iova = first,
                                 .readable = area.readable,
                                 .writeable = area.writeable});
  if (!mapped) {
    if (mapped.code() == EEXIST)
      return fail(EADDRINUSE, "IOVA page {:#x} of area [{:#x}, +{:#x}) is another area's in the domain", first, iova,
                  area.length);
    return std::move(mapped).error();
  }
  return success();
}

void IovaAreas::unmap_from(uint64_t iova, const Area& area, const DomainSlot& slot) {
  const uint64_t first = page_floor(iova);
  (void)slot.table->unmap(first, page_ceil(iova + area.length) - first);
}

void IovaAreas::drop(std::map<uint64_t, Area>::iterator it) {
  for (const Domain& domain : domains_) unmap_from(it->first, it->second, domain.slot);
  areas_.erase(it);
}

Result<uint64_t> IovaAreas::map(std::span<const PagesPiece> pieces, std::optional<uint64_t> fixed, bool readable,
                                bool writeable) {
  uint64_t length = 0;
  for (const PagesPiece& piece : pieces) {
    if (writeable && !piece.pages->writable()) return fail(EPERM, "WRITEABLE over pages mapped read-only");
    length += piece.length;
  }
  if (pieces.empty() || length == 0) return fail(EINVAL, "nothing to map");
  uint64_t iova = 0;
  if (fixed) {
    IOASID_TRY(check_fixed(*fixed, length));
    iova = *fixed;
  } else {
    auto found = find_iova(pieces.front().pages->uptr() + pieces.front().start_byte, length);
    IOASID_TRY(found);
    iova = *found;
  }
  const uint64_t mask = alignment() - 1;
  std::map<uint64_t, Area> added;
  uint64_t at = iova;
  for (const PagesPiece& piece : pieces) {
    const uint64_t page_offset = (piece.pages->uptr() + piece.start_byte) % kPageSize;
    if ((at & mask) || (piece.length & mask) || (page_offset & mask))
      return fail(EINVAL, "area [{:#x}, +{:#x}) at page offset {:#x} of its memory is not {}-byte aligned", at,
                  piece.length, page_offset, mask + 1);
    auto charge = maps_quota_.charge(uid_);
    IOASID_TRY(charge);
    // With domains, pinning the pages below binds them (one read of the address space's
    // identity per MAP, not one here and one more to check it when pinning).
    if (domains_.empty()) IOASID_TRY(piece.pages->bind_address_space());
    added.emplace(at, Area{piece.length, piece.pages, piece.start_byte, readable, writeable, std::move(*charge), {}});
    at += piece.length;
  }
  // In every domain before the areas exist: a failure unmaps what was mapped.
  for (auto area = added.begin(); area != added.end(); ++area) {
    for (size_t d = 0; d < domains_.size(); ++d) {
      if (auto mapped = map_in(area->first, area->second, domains_[d].slot); !mapped) {
        for (size_t undo = 0; undo < d; ++undo) unmap_from(area->first, area->second, domains_[undo].slot);
        for (auto done = added.begin(); done != area; ++done)
          for (const Domain& domain : domains_) unmap_from(done->first, done->second, domain.slot);
        return std::move(mapped).error();
      }
    }
  }
  areas_.merge(added);
  return iova;
}

Result<uint64_t> IovaAreas::unmap(uint64_t iova, uint64_t length) {
  if (length == 0) return fail(EINVAL, "length 0");
  if (iova + (length - 1) < iova) return fail(EOVERFLOW, "iova {:#x} + length {:#x} wraps", iova, length);
  const uint64_t last = last_of(iova, length);
  uint64_t unmapped = 0;
  auto it = areas_.upper_bound(iova);
  if (it != areas_.begin() && last_of(std::prev(it)->first, std::prev(it)->second.length) >= iova) --it;
  while (it != areas_.end() && it->first <= last) {
    const uint64_t area_last = last_of(it->first, it->second.length);
    if (it->first < iova || area_last > last)
      return fail(ENOENT, "area [{:#x}, {:#x}] is only partly inside [{:#x}, {:#x}] ({:#x} bytes unmapped before)",
                  it->first, area_last, iova, last, unmapped);
    unmapped += it->second.length;
    notify_accesses(it->first, it->second.length);
    auto next = std::next(it);
    drop(it);
    it = next;
  }
  return unmapped;
}

uint64_t IovaAreas::unmap_all() {
  uint64_t unmapped = 0;
  while (!areas_.empty()) {
    unmapped += areas_.begin()->second.length;
    notify_accesses(areas_.begin()->first, areas_.begin()->second.length);
    drop(areas_.begin());
  }
  return unmapped;
}

Result<std::vector<PagesPiece>> IovaAreas::pieces(uint64_t iova, uint64_t length) const {
  if (length == 0) return fail(EINVAL, "length 0");
  if (iova + (length - 1) < iova) return fail(EOVERFLOW, "iova {:#x} + length {:#x} wraps", iova, length);
  const uint64_t last = last_of(iova, length);
  std::vector<PagesPiece> out;
  uint64_t cursor = iova;
  auto it = areas_.upper_bound(iova);
  if (it == areas_.begin()) return fail(ENOENT, "IOVA {:#x} is not mapped", iova);
  for (--it; it != areas_.end(); ++it) {
    const uint64_t area_last = last_of(it->first, it->second.length);
    if (it->first > cursor || area_last < cursor) break;
    const uint64_t end = std::min(area_last, last);
    out.push_back({it->second.pages, it->second.start_byte + (cursor - it->first), end - cursor + 1});
    if (end == last) return out;
    cursor = end + 1;
  }
  return fail(ENOENT, "IOVA {:#x} inside [{:#x}, {:#x}] is not mapped", cursor, iova, last);
}

bool IovaAreas::covers(uint64_t iova, uint64_t length) const {
  if (length == 0 || iova + (length - 1) < iova) return false;
  const uint64_t last = last_of(iova, length);
  uint64_t cursor = iova;
  auto it = areas_.upper_bound(iova);
  if (it == areas_.begin()) return false;
  for (--it; it != areas_.end() && it->first <= cursor; ++it) {
    const uint64_t area_last = last_of(it->first, it->second.length);
    if (area_last < cursor) return false;
    if (area_last >= last) return true;
    cursor = area_last + 1;
  }
  return false;
}

Result<void> IovaAreas::split_at(uint64_t iova) {
  auto it = areas_.upper_bound(iova);
  if (it == areas_.begin()) return success();
  --it;
  Area& area = it->second;
  const uint64_t area_iova = it->first;
  if (area_iova == iova || last_of(area_iova, area.length) < iova) return success();
  // As iommufd: what an access pinned is not tracked finely enough to be cut.
  if (area.access_holds != 0)
    return fail(EINVAL, "area [{:#x}, +{:#x}) has pages an access pinned", area_iova, area.length);
  if (!domains_.empty() && (iova % kPageSize))
    return fail(EINVAL, "cannot cut area [{:#x}, +{:#x}) inside a 4 KiB page of its domains", area_iova, area.length);
  auto charge = maps_quota_.charge(uid_);
  IOASID_TRY(charge);
  const uint64_t head = iova - area_iova;
  Area tail{area.length - head, area.pages, area.start_byte + head, area.readable, area.writeable,
            std::move(*charge), area.pinned};
  // The domains map the two halves as two areas, so each can go alone.
  for (const Domain& domain : domains_) unmap_from(area_iova, area, domain.slot);
  area.length = head;
  for (const Domain& domain : domains_) {
    (void)map_in(area_iova, area, domain.slot);
    (void)map_in(iova, tail, domain.slot);
  }
  areas_.emplace(iova, std::move(tail));
  return success();
}

void IovaAreas::notify_accesses(uint64_t iova, uint64_t length) {
  // A copy: a notice may end an access, which removes itself.
  const std::vector<Access> accesses = accesses_;
  for (const Access& access : accesses) access.notice(iova, length);
}

Result<void> IovaAreas::add_access(const void* owner, uint64_t alignment, UnmapNotice notice) {
  if (alignment > this->alignment()) IOASID_TRY(check_alignment(alignment));
  accesses_.push_back({owner, alignment, std::move(notice)});
  return success();
}

void IovaAreas::remove_access(const void* owner) { std::erase_if(accesses_, [&](const Access& a) { return a.owner == owner; }); }

Result<std::vector<PinnedPiece>> IovaAreas::access_pins(uint64_t iova, uint64_t length, bool write, bool whole_pages,
                                                        bool hold) {
  if (length == 0) return fail(EINVAL, "length 0");
  if (iova + (length - 1) < iova) return fail(EOVERFLOW, "iova {:#x} + length {:#x} wraps", iova, length);
  const uint64_t last = last_of(iova, length);
  std::vector<std::map<uint64_t, Area>::iterator> covering;
  uint64_t cursor = iova;
  auto it = areas_.upper_bound(iova);
  if (it != areas_.begin()) --it;
  for (; it != areas_.end() && it->first <= cursor; ++it) {
    const uint64_t area_last = last_of(it->first, it->second.length);
    if (area_last < cursor) continue;
    const Area& area = it->second;
    if (!(write ? area.writeable : area.readable))
      return fail(EPERM, "area [{:#x}, +{:#x}) is not {}", it->first, area.length, write ? "writeable" : "readable");
    if (whole_pages) {
      // Pages go whole to an access: its first byte starts a page of memory, and an
      // area it runs past ends one.
      const uint64_t user_va = area.pages->uptr() + area.start_byte + (cursor - it->first);
      const uint64_t area_end_va = area.pages->uptr() + area.start_byte + area.length;
      if (user_va % kPageSize || (area_last < last && area_end_va % kPageSize))
        return fail(EINVAL, "[{:#x}, +{:#x}) does not cover whole pages of memory at IOVA {:#x}", iova, length,
                    cursor);
    }
    covering.push_back(it);
    if (area_last >= last) break;
    cursor = area_last + 1;
  }
  if (covering.empty() || last_of(covering.back()->first, covering.back()->second.length) < last)
    return fail(ENOENT, "[{:#x}, {:#x}] is not mapped by contiguous areas", iova, last);

  std::vector<PinnedPiece> pieces;
  for (auto area_it : covering) {
    const Area& area = area_it->second;
    const uint64_t from = std::max(iova, area_it->first);
    const uint64_t to = std::min(last, last_of(area_it->first, area.length));
    const uint64_t va = area.pages->uptr() + area.start_byte + (from - area_it->first);
    if (!hold && !area.pages->pinned()) {
      pieces.push_back({nullptr, 0, to - from + 1, area.pages, va});
      continue;
    }
    auto pin = area.pages->pin_part(va, to - from + 1);
    IOASID_TRY(pin);
    const uint64_t offset = va - (*pin)->start_va;
    pieces.push_back({std::move(*pin), offset, to - from + 1, area.pages, va});
  }
  if (hold)
    for (auto area_it : covering) ++area_it->second.access_holds;
  return pieces;
}

void IovaAreas::release_access_pins(uint64_t iova, uint64_t length) {
  const uint64_t last = last_of(iova, length);
  auto it = areas_.upper_bound(iova);
  if (it != areas_.begin()) --it;
  for (; it != areas_.end() && it->first <= last; ++it)
    if (last_of(it->first, it->second.length) >= iova && it->second.access_holds != 0) --it->second.access_holds;
}

Result<void> IovaAreas::reserve(uint64_t start, uint64_t last, const void* owner) {
  if (overlaps_area(start, last)) return fail(EADDRINUSE, "[{:#x}, {:#x}] meets a mapped area", start, last);
  if (overlaps_allowed(start, last)) return fail(EADDRINUSE, "[{:#x}, {:#x}] meets an allowed range", start, last);
  reserved_.emplace(start, Reserved{last, owner});
  return success();
}

void IovaAreas::unreserve(const void* owner) {
  std::erase_if(reserved_, [&](const auto& entry) { return entry.second.owner == owner; });
}

Result<void> IovaAreas::allow(std::vector<IovaRange> ranges) {
  std::ranges::sort(ranges, {}, &IovaRange::start);
  for (size_t i = 0; i < ranges.size(); ++i) {
    // iommufd takes only ranges of two IOVAs or more.
    if (ranges[i].start >= ranges[i].last)
      return fail(EINVAL, "allowed range [{:#x}, {:#x}] must have start < last", ranges[i].start, ranges[i].last);
    if (i > 0 && ranges[i].start <= ranges[i - 1].last)
      return fail(EINVAL, "allowed ranges [{:#x}, {:#x}] and [{:#x}, {:#x}] overlap", ranges[i - 1].start,
                  ranges[i - 1].last, ranges[i].start, ranges[i].last);
    if (overlaps_reserved(ranges[i].start, ranges[i].last))
      return fail(EADDRINUSE, "allowed range [{:#x}, {:#x}] meets a reserved range", ranges[i].start, ranges[i].last);
  }
  allowed_ = std::move(ranges);
  return success();
}

std::vector<IovaRange> IovaAreas::usable() const {
  std::vector<IovaRange> out;
  uint64_t cursor = 0;
  bool done = false;
  for (const auto& [start, range] : reserved_) {
    if (range.last < cursor) continue;
    if (start > cursor) out.push_back({cursor, start - 1});
    if (range.last == kLastIova) {
      done = true;
      break;
    }
    cursor = std::max(cursor, range.last + 1);
  }
  if (!done) out.push_back({cursor, kLastIova});
  return out;
}

Result<void> IovaAreas::disable_large_pages() {
  if (large_pages_disabled_) return success();
  if (!domains_.empty() && !areas_.empty())
    return fail(EINVAL, "large pages cannot be disabled while domains map areas");
  const uint64_t raised = std::max(alignment(), kPageSize);
  IOASID_TRY(check_alignment(raised));
  large_pages_disabled_ = true;
  return success();
}

Result<void> IovaAreas::add_domain(DomainSlot slot, const void* owner) {
  const uint64_t raised = std::max(alignment(), slot.page_size);
  if (raised > kPageSize) return fail(EINVAL, "IO page size {} is above the CPU's", raised);
  if (raised != alignment()) IOASID_TRY(check_alignment(raised));
  auto undo = [&] { unreserve(owner); };
  if (slot.aperture.start != 0)
    if (auto r = reserve(0, slot.aperture.start - 1, owner); !r) {
      undo();
      return r;
    }
  if (slot.aperture.last != kLastIova)
    if (auto r = reserve(slot.aperture.last + 1, kLastIova, owner); !r) {
      undo();
      return r;
    }
  for (auto area = areas_.begin(); area != areas_.end(); ++area) {
    if (auto mapped = map_in(area->first, area->second, slot); !mapped) {
      for (auto done = areas_.begin(); done != area; ++done) unmap_from(done->first, done->second, slot);
      if (domains_.empty())
        for (auto& [iova, unpinned] : areas_) unpinned.pinned.reset();
      undo();
      return std::move(mapped).error();
    }
  }
  domains_.push_back({slot, owner});
  return success();
}

void IovaAreas::remove_domain(const void* owner) {
  auto it = std::ranges::find(domains_, owner, &Domain::owner);
  if (it == domains_.end()) return;
  for (const auto& [iova, area] : areas_) unmap_from(iova, area, it->slot);
  domains_.erase(it);
  unreserve(owner);
  if (domains_.empty())
    for (auto& [iova, area] : areas_) area.pinned.reset();  // nothing needs the pages pinned now
}

std::vector<uint64_t> IovaAreas::domain_page_sizes() const {
  std::vector<uint64_t> sizes;
  for (const Domain& domain : domains_) sizes.push_back(domain.slot.page_size);
  return sizes;
}

std::vector<AreaView> IovaAreas::areas() const {
  std::vector<AreaView> out;
  for (const auto& [iova, area] : areas_)
    out.push_back({iova, area.length, area.pages->uptr() + area.start_byte, area.readable, area.writeable});
  return out;
}

}  // namespace ioasid::dev_iommu

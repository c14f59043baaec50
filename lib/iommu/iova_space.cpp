// SPDX-License-Identifier: MIT
#include "iommu/iova_space.h"

#include "base/fail_nth.h"

#include <algorithm>

namespace ioasid::iommu {
namespace {

// Sorts and merges so that holes between reserved ranges are easy to walk.
std::vector<IovaRange> normalized(std::vector<IovaRange> ranges, uint64_t last_iova) {
  std::erase_if(ranges, [&](const IovaRange& r) { return r.start > r.last || r.start > last_iova; });
  std::sort(ranges.begin(), ranges.end(), [](const auto& a, const auto& b) { return a.start < b.start; });
  std::vector<IovaRange> merged;
  for (IovaRange range : ranges) {
    range.last = std::min(range.last, last_iova);
    if (!merged.empty() && (merged.back().last == ~0ull || range.start <= merged.back().last + 1))
      merged.back().last = std::max(merged.back().last, range.last);
    else
      merged.push_back(range);
  }
  return merged;
}

// The first value >= value that is a multiple of alignment; false on overflow.
bool align_up(uint64_t value, uint64_t alignment, uint64_t& out) {
  const uint64_t mask = alignment - 1;
  if (value > ~0ull - mask) return false;
  out = (value + mask) & ~mask;
  return true;
}

}  // namespace

IovaSpace::IovaSpace(uint64_t last_iova, std::vector<IovaRange> reserved)
    : last_iova_(last_iova), reserved_(normalized(std::move(reserved), last_iova)) {}

std::vector<IovaRange> IovaSpace::allowed_ranges() const {
  std::vector<IovaRange> allowed;
  uint64_t next = 0;
  bool exhausted = false;
  for (const IovaRange& reserved : reserved_) {
    if (reserved.start > next) allowed.push_back({next, reserved.start - 1});
    if (reserved.last >= last_iova_) {
      exhausted = true;
      break;
    }
    next = reserved.last + 1;
  }
  if (!exhausted) allowed.push_back({next, last_iova_});
  return allowed;
}

bool IovaSpace::allowed(uint64_t first, uint64_t last) const {
  if (last > last_iova_) return false;
  return std::none_of(reserved_.begin(), reserved_.end(),
                      [&](const IovaRange& r) { return r.start <= last && first <= r.last; });
}

Result<void> IovaSpace::claim(uint64_t iova, uint64_t length) {
  if (length == 0) return fail(EINVAL, "an area of 0 bytes");
  if (iova + (length - 1) < iova) return fail(EOVERFLOW, "iova {:#x} + length {:#x} wraps", iova, length);
  const uint64_t last = iova + (length - 1);
  if (!allowed(iova, last))
    return fail(EINVAL, "[{:#x}, {:#x}] is outside the allowed IOVA ranges (width or reserved window)", iova, last);
  if (auto hit = overlapping(iova, last); !hit.empty())
    return fail(EEXIST, "[{:#x}, {:#x}] overlaps the area [{:#x}, {:#x}]", iova, last, hit.front().start,
                hit.front().last);
  IOASID_TRY(fail_nth::point(fail_nth::Site::kAllocation, "an IOVA area"));
  areas_.emplace(iova, last);
  return success();
}

Result<uint64_t> IovaSpace::claim_any(uint64_t length, uint64_t alignment) {
  if (length == 0) return fail(EINVAL, "an area of 0 bytes");
  // Candidate holes: allowed ranges cut by areas, walked from low to high.
  for (const IovaRange& range : allowed_ranges()) {
    uint64_t cursor = std::max<uint64_t>(range.start, 1);  // IOVA 0 is never chosen
    while (true) {
      uint64_t start = 0;
      if (!align_up(cursor, alignment, start) || start > range.last) break;
      if (range.last - start < length - 1) break;
      const uint64_t last = start + (length - 1);
      // Areas are disjoint and sorted: the first one ending at or after start is the
      // one holding start, else the next one; it decides whether [start, last] is free.
      auto area = areas_.upper_bound(start);
      if (area != areas_.begin() && std::prev(area)->second >= start) area = std::prev(area);
      if (area == areas_.end() || area->first > last) {
        IOASID_TRY(fail_nth::point(fail_nth::Site::kAllocation, "an IOVA area"));
        areas_.emplace(start, last);
        return start;
      }
      if (area->second == ~0ull) break;
      cursor = area->second + 1;
    }
  }
  return fail(ENOSPC, "no free IOVA hole of {:#x} bytes aligned to {:#x}", length, alignment);
}

void IovaSpace::release(uint64_t iova) { areas_.erase(iova); }

std::vector<IovaRange> IovaSpace::overlapping(uint64_t first, uint64_t last) const {
  std::vector<IovaRange> out;
  auto it = areas_.upper_bound(first);
  if (it != areas_.begin()) {
    auto previous = std::prev(it);
    if (previous->second >= first) out.push_back({previous->first, previous->second});
  }
  for (; it != areas_.end() && it->first <= last; ++it) out.push_back({it->first, it->second});
  return out;
}

std::vector<IovaRange> IovaSpace::areas() const {
  std::vector<IovaRange> out;
  for (const auto& [start, last] : areas_) out.push_back({start, last});
  return out;
}

}  // namespace ioasid::iommu

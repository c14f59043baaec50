// SPDX-License-Identifier: MIT
#include "memory/hpa_space.h"

#include "base/fail_nth.h"

#include <algorithm>
#include <mutex>
#include <shared_mutex>

namespace ioasid {
namespace {

constexpr uint64_t k2MiB = 2ull << 20;
constexpr uint64_t k1GiB = 1ull << 30;

uint64_t align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) & ~(alignment - 1);
}

// Adds the HPA to a backing's reason, keeping its errno.
Error at_hpa(Error error, Hpa hpa) {
  error.why = fmt::format("HPA {:#x}: {}", hpa, error.why);
  return error;
}

}  // namespace

HpaSpace::HpaSpace(uint64_t max_table_pages) : tables_(kTableWindowBase, max_table_pages) {}

HpaSpace::~HpaSpace() = default;

const HpaSpace::Segment* HpaSpace::segment_at(Hpa hpa) const {
  // The last segment starting at or below hpa is the only candidate.
  const auto after =
      std::upper_bound(segments_.begin(), segments_.end(), hpa,
                       [](Hpa address, const Segment& s) { return address < s.base; });
  if (after == segments_.begin()) return nullptr;
  const Segment& candidate = *std::prev(after);
  return hpa - candidate.base < candidate.size ? &candidate : nullptr;
}

// ---- PhysicalMemory ------------------------------------------------------------

Result<uint64_t> HpaSpace::read64(Hpa hpa) {
  if (tables_.contains(hpa)) return tables_.read64(hpa);
  std::shared_lock lock(segments_mutex_);
  const Segment* segment = segment_at(hpa);
  if (segment == nullptr) [[unlikely]]
    return fail(EFAULT, "nothing is mapped at HPA {:#x}", hpa);
  auto value = segment->backing->read64(hpa - segment->base);
  if (!value) [[unlikely]]
    return at_hpa(std::move(value).error(), hpa);
  return value;
}

Result<void> HpaSpace::write64(Hpa hpa, uint64_t value) {
  if (tables_.contains(hpa)) return tables_.write64(hpa, value);
  std::shared_lock lock(segments_mutex_);
  const Segment* segment = segment_at(hpa);
  if (segment == nullptr) [[unlikely]]
    return fail(EFAULT, "nothing is mapped at HPA {:#x}", hpa);
  auto written = segment->backing->write64(hpa - segment->base, value);
  if (!written) [[unlikely]]
    return at_hpa(std::move(written).error(), hpa);
  return success();
}

Result<bool> HpaSpace::compare_exchange64(Hpa hpa, uint64_t& expected, uint64_t desired) {
  if (tables_.contains(hpa)) return tables_.compare_exchange64(hpa, expected, desired);
  std::shared_lock lock(segments_mutex_);
  const Segment* segment = segment_at(hpa);
  if (segment == nullptr) [[unlikely]]
    return fail(EFAULT, "nothing is mapped at HPA {:#x}", hpa);
  auto exchanged = segment->backing->compare_exchange64(hpa - segment->base, expected, desired);
  if (!exchanged) [[unlikely]]
    return at_hpa(std::move(exchanged).error(), hpa);
  return exchanged;
}

Result<Hpa> HpaSpace::alloc_table() { return tables_.alloc(); }

void HpaSpace::free_table(Hpa table) {
  { std::unique_lock no_walk_inside(walks_); }
  tables_.free(table);
}

// ---- Segments ------------------------------------------------------------------

std::optional<Hpa> HpaSpace::place(uint64_t size, Hpa from) const {
  const uint64_t alignment = size >= k1GiB ? k1GiB : size >= k2MiB ? k2MiB : kPageSize;
  Hpa candidate = align_up(from, alignment);
  // Segments wholly behind the candidate (guard included) cannot collide with it; ends
  // are sorted like bases, so skip them in one binary search.
  auto next = std::partition_point(segments_.begin(), segments_.end(), [&](const Segment& s) {
    return s.end() + kSegmentGuard <= candidate;
  });
  for (; next != segments_.end(); ++next) {
    if (candidate + size + kSegmentGuard <= next->base) break;  // fits in front of it
    candidate = align_up(next->end() + kSegmentGuard, alignment);
  }
  if (candidate > kSegmentWindowEnd || kSegmentWindowEnd - candidate < size) return std::nullopt;
  return candidate;
}

Result<Hpa> HpaSpace::add_segment(std::shared_ptr<Backing> backing) {
  if (backing == nullptr) return fail(EINVAL, "no backing for the segment");
  const uint64_t size = backing->size();
  if (size == 0 || size % kPageSize != 0)
    return fail(EINVAL, "segment size {:#x} ({}) is not a non-zero multiple of 4 KiB", size,
                backing->description());
  if (size > kSegmentWindowEnd - kSegmentWindowBase)
    return fail(ENOSPC, "segment of {:#x} bytes is larger than the HPA window", size);
  IOASID_TRY(fail_nth::point(fail_nth::Site::kAllocation, "an HPA segment"));
  std::unique_lock lock(segments_mutex_);
  std::optional<Hpa> base = place(size, next_segment_hpa_);
  if (!base) base = place(size, kSegmentWindowBase);  // wrap around
  if (!base)
    return fail(ENOSPC, "no room for a segment of {:#x} bytes in the HPA window ({} segments)",
                size, segments_.size());
  const auto position =
      std::lower_bound(segments_.begin(), segments_.end(), *base,
                       [](const Segment& s, Hpa address) { return s.base < address; });
  segments_.insert(position, Segment{*base, size, std::move(backing)});
  next_segment_hpa_ = *base + size + kSegmentGuard;
  return *base;
}

Result<void> HpaSpace::remove_segment(Hpa base) {
  std::shared_ptr<Backing> released;  // dropped after the lock: munmap/close outside it
  {
    std::unique_lock lock(segments_mutex_);
    const auto position =
        std::lower_bound(segments_.begin(), segments_.end(), base,
                         [](const Segment& s, Hpa address) { return s.base < address; });
    if (position == segments_.end() || position->base != base)
      return fail(ENOENT, "no segment starts at HPA {:#x}", base);
    released = std::move(position->backing);
    segments_.erase(position);
  }
  return success();
}

std::optional<SegmentInfo> HpaSpace::find_segment(Hpa hpa) const {
  std::shared_lock lock(segments_mutex_);
  const Segment* segment = segment_at(hpa);
  if (segment == nullptr) return std::nullopt;
  return SegmentInfo{segment->base, segment->size, segment->backing};
}

std::vector<SegmentInfo> HpaSpace::segments() const {
  std::shared_lock lock(segments_mutex_);
  std::vector<SegmentInfo> list;
  list.reserve(segments_.size());
  for (const Segment& segment : segments_)
    list.push_back({segment.base, segment.size, segment.backing});
  return list;
}

HpaSpaceStats HpaSpace::stats() const {
  HpaSpaceStats stats;
  {
    std::shared_lock lock(segments_mutex_);
    stats.segments = segments_.size();
    for (const Segment& segment : segments_) stats.segment_bytes += segment.size;
  }
  stats.table_pages = tables_.live_pages();
  stats.table_page_limit = tables_.max_pages();
  return stats;
}

// ---- DMA -----------------------------------------------------------------------

template <typename Span, typename Move>
Result<void> HpaSpace::transfer(Hpa hpa, Span data, size_t* bytes_done, const char* what,
                                Move move) {
  size_t done = 0;
  Result<void> result = [&]() -> Result<void> {
    if (data.empty()) return success();
    if (tables_.contains(hpa))
      return fail(EFAULT, "DMA {} at HPA {:#x}: that is a page-table page", what, hpa);
    std::shared_lock lock(segments_mutex_);
    const Segment* segment = segment_at(hpa);
    if (segment == nullptr)
      return fail(EFAULT, "DMA {} at HPA {:#x}: nothing is mapped there", what, hpa);
    const uint64_t inside = std::min<uint64_t>(data.size(), segment->end() - hpa);
    Result<void> moved = move(*segment->backing, hpa - segment->base, data.first(inside), &done);
    if (!moved) return at_hpa(std::move(moved).error(), hpa + done);
    if (inside < data.size())
      return fail(EFAULT, "DMA {} of {} bytes at HPA {:#x} runs off its segment at HPA {:#x}", what,
                  data.size(), hpa, segment->end());
    return success();
  }();
  if (bytes_done != nullptr) *bytes_done = done;
  return result;
}

Result<bool> HpaSpace::with_mapped(std::span<const HpaRange> ranges, size_t writable_from, const MappedIo& io) {
  std::vector<std::span<std::byte>> spans;
  spans.reserve(ranges.size());
  std::shared_lock lock(segments_mutex_);
  for (size_t i = 0; i < ranges.size(); ++i) {
    const HpaRange& range = ranges[i];
    const Segment* segment = segment_at(range.hpa);
    if (segment == nullptr || range.size > segment->end() - range.hpa) return false;
    auto span = segment->backing->mapped(range.hpa - segment->base, range.size, i >= writable_from);
    if (span.size() != range.size) return false;
    spans.push_back(span);
  }
  // Kernel copies into a truncated page fail with EFAULT, but a device touching it
  // with the CPU would get SIGBUS: every access runs guarded, and a mapping that died
  // meanwhile turns the whole access into an error.
  std::vector<Backing*> backings;
  std::vector<std::unique_ptr<SigbusGuard>> guards;
  for (const HpaRange& range : ranges) {
    Backing* backing = segment_at(range.hpa)->backing.get();
    if (std::find(backings.begin(), backings.end(), backing) != backings.end()) continue;
    backings.push_back(backing);
    if (auto guard = backing->guard_cpu_access()) guards.push_back(std::move(guard));
  }
  auto done = io(spans);
  while (!guards.empty()) guards.pop_back();  // innermost first
  for (const Backing* backing : backings)
    if (backing->failed())
      return fail(EFAULT, "{} faulted (SIGBUS) during a device access; the mapping is dead", backing->description());
  IOASID_TRY(done);
  return true;
}

Result<void> HpaSpace::read(Hpa hpa, std::span<std::byte> out, size_t* bytes_done) {
  return transfer(hpa, out, bytes_done, "read",
                  [](Backing& backing, uint64_t offset, std::span<std::byte> part, size_t* done) {
                    return backing.read(offset, part, done);
                  });
}

Result<void> HpaSpace::write(Hpa hpa, std::span<const std::byte> in, size_t* bytes_done) {
  return transfer(hpa, in, bytes_done, "write",
                  [](Backing& backing, uint64_t offset, std::span<const std::byte> part,
                     size_t* done) { return backing.write(offset, part, done); });
}

}  // namespace ioasid

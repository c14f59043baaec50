// SPDX-License-Identifier: MIT
// IOMMU_TEST_CMD: the mock driver Linux's iommufd selftest drives, over the engine.
// Mock devices are engine devices; a check of what a domain maps walks the engine's
// own table and compares the memory behind it with what the caller's address maps now;
// a pin count is the number of live pins of the engine on that page.
#include "dev_iommu/handlers.h"
#include "dev_iommu/service.h"
#include "memory/locate_pages.h"
#include "memory/pinned_pages.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

namespace ioasid::dev_iommu {
namespace {

constexpr uint64_t kMockPageSize = kPageSize / 2;
// ADD_RESERVED ranges one IOAS may hold: each is daemon memory the client asks for.
constexpr size_t kMaxReservedPerIoas = 4096;
constexpr uint64_t kMaxCheckLength = 1ull << 30;

Result<long> add_reserved(Call& call, iommu_test_cmd& cmd) {
  const uint64_t start = cmd.add_reserved.start, length = cmd.add_reserved.length;
  if (length == 0) return fail(EINVAL, "length 0");
  if (start + (length - 1) < start) return fail(EOVERFLOW, "start {:#x} + length {:#x} wraps", start, length);
  auto ioas = find_object<Ioas>(call, cmd.id, ObjectType::Ioas);
  IOASID_TRY(ioas);
  if ((*ioas)->areas.reserved_count() >= kMaxReservedPerIoas)
    return fail(ENOSPC, "IOAS {} has {} reserved ranges, the most one may hold", cmd.id, kMaxReservedPerIoas);
  IOASID_TRY((*ioas)->areas.reserve(start, start + (length - 1), nullptr));
  return 0;
}

Result<long> mock_domain(Call& call, iommu_test_cmd& cmd) {
  const uint32_t flags = cmd.op == IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS ? cmd.mock_domain_flags.dev_flags : 0;
  auto& engine = call.service.engine();
  auto mock_charge = engine.ioasids_quota().charge(call.context.client().uid);
  IOASID_TRY(mock_charge);
  auto device_charge = engine.ioasids_quota().charge(call.context.client().uid);
  IOASID_TRY(device_charge);
  auto bound = bind_mock_device(call, flags);
  IOASID_TRY(bound);
  // Ids in iommufd's order: the selftest object, its device, then an automatic domain.
  auto mock = std::make_shared<MockDevice>(Use<BoundDevice>());
  const uint32_t stdev_id = call.context.objects().insert(mock, std::move(*mock_charge));
  const uint32_t idev_id = call.context.objects().insert(*bound, std::move(*device_charge));
  mock->idev = Use<BoundDevice>(*bound);
  auto hwpt_id = attach_device(call, **bound, cmd.id);
  if (!hwpt_id) {
    destroy_mock_device(call, *mock);
    return std::move(hwpt_id).error();
  }
  cmd.mock_domain.out_stdev_id = stdev_id;
  cmd.mock_domain.out_hwpt_id = *hwpt_id;
  cmd.mock_domain.out_idev_id = idev_id;
  return 0;
}

Result<long> mock_domain_replace(Call& call, iommu_test_cmd& cmd) {
  auto mock = find_object<MockDevice>(call, cmd.id, ObjectType::MockDevice);
  IOASID_TRY(mock);
  auto hwpt_id = attach_device(call, *(*mock)->idev, cmd.mock_domain_replace.pt_id);
  IOASID_TRY(hwpt_id);
  cmd.mock_domain_replace.pt_id = *hwpt_id;
  return 0;
}

// The caller's pages as it maps them now, page by page from page_floor(uptr). One
// call checks at most kMaxCheckLength: each page is an entry of daemon memory.
Result<std::vector<LocatedPage>> caller_pages(Call& call, uint64_t uptr, uint64_t length) {
  if (length > kMaxCheckLength)
    return fail(EINVAL, "length {:#x} is above the {:#x} bytes one check covers", length, kMaxCheckLength);
  if (call.memory.pid() == 0) return fail(EFAULT, "no client process");
  const uint64_t first = page_floor(uptr);
  return locate_pages(call.memory.pid(), first, page_ceil(uptr + length) - first);
}

Result<long> check_map(Call& call, iommu_test_cmd& cmd) {
  const uint64_t iova = cmd.check_map.iova, length = cmd.check_map.length, uptr = cmd.check_map.uptr;
  if (iova % kMockPageSize || length % kMockPageSize || uptr % kMockPageSize || uptr + length < uptr)
    return fail(EINVAL, "iova {:#x}, length {:#x}, uptr {:#x} must be {}-byte aligned", iova, length, uptr,
                kMockPageSize);
  auto hwpt = find_object<HwptPaging>(call, cmd.id, ObjectType::HwptPaging);
  IOASID_TRY(hwpt);
  if (length == 0) return 0;
  auto pages = caller_pages(call, uptr, length);
  IOASID_TRY(pages);
  const iommu::IoPageTable& table = *(*hwpt)->table;
  for (uint64_t done = 0; done < length; done += kMockPageSize) {
    const uint64_t at = iova + done, va = uptr + done;
    const auto hpa = table.lookup(at);
    if (!hpa) return fail(EINVAL, "IOVA {:#x} is not mapped in HWPT {}", at, cmd.id);
    if (*hpa % kPageSize != va % kPageSize)
      return fail(EINVAL, "IOVA {:#x} maps offset {:#x} of a page, user address {:#x} is at {:#x}", at,
                  *hpa % kPageSize, va, va % kPageSize);
    const auto segment = table.memory().find_segment(*hpa);
    const auto location =
        segment ? segment->backing->location(page_floor(*hpa - segment->base)) : std::optional<PageLocation>();
    const LocatedPage& expected = (*pages)[(page_floor(va) - page_floor(uptr)) / kPageSize];
    if (!location || !(*location == expected.location))
      return fail(EINVAL, "IOVA {:#x} maps other memory than user address {:#x} does now", at, va);
  }
  return 0;
}

// The first page whose pin count is not `refs` (compound pages skipped, as iommufd's
// check skips them), or nullopt.
std::optional<uint64_t> page_with_other_refs(const std::vector<LocatedPage>& pages, uint32_t refs, uint32_t& found) {
  for (size_t i = 0; i < pages.size(); ++i) {
    if (pages[i].huge) continue;
    found = ioasid::PinnedPages::global().pins_at(pages[i].location);
    if (found != refs) return i;
  }
  return std::nullopt;
}

Result<long> check_refs(Call& call, iommu_test_cmd& cmd) {
  const uint64_t length = cmd.check_refs.length, uptr = cmd.check_refs.uptr;
  if (length % kPageSize || uptr % kPageSize || uptr + length < uptr)
    return fail(EINVAL, "uptr {:#x} and length {:#x} must be page aligned", uptr, length);
  if (length == 0) return 0;
  auto pages = caller_pages(call, uptr, length);
  IOASID_TRY(pages);
  // A FUSE release reaches the daemon after the close that caused it returned: pins of
  // files whose release is being served are waited for (bounded), so the check sees
  // what the kernel's would. No wait otherwise: a wrong count answers at once.
  constexpr auto kStep = std::chrono::milliseconds(2);
  constexpr int kMaxSteps = 500;
  uint32_t found = 0;
  for (int step = 0;; ++step) {
    const auto page = page_with_other_refs(*pages, cmd.check_refs.refs, found);
    if (!page) return 0;
    if (step >= kMaxSteps || (step > 0 && call.service.releases_in_flight() == 0))
      return fail(EIO, "page {:#x} has {} pins, expected {}", uptr + *page * kPageSize, found, cmd.check_refs.refs);
    std::this_thread::sleep_for(kStep);
  }
}

Result<long> check_iotlb(Call& call, iommu_test_cmd& cmd) {
  auto nested = find_object<HwptNested>(call, cmd.id, ObjectType::HwptNested);
  IOASID_TRY(nested);
  const uint32_t entry = cmd.check_iotlb.id;
  if (entry >= HwptNested::kIotlbEntries) return fail(EINVAL, "iotlb entry {} (0 to {})", entry, HwptNested::kIotlbEntries - 1);
  if ((*nested)->iotlb[entry] != cmd.check_iotlb.iotlb)
    return fail(EINVAL, "iotlb entry {} is {:#x}, not {:#x}", entry, (*nested)->iotlb[entry], cmd.check_iotlb.iotlb);
  return 0;
}

// IOMMU_TEST_OP_DIRTY: the mock driver marks the IOPTEs of the set bits dirty, as if
// its device had written them. A mock IOPTE is half a leaf of the engine table (see
// make_hwpt_paging), so each mark is that half's software dirty bit in the engine's
// own PTE, read back and cleared by GET_DIRTY_BITMAP with the hardware D bit.
// iommufd_test_dirty's bound: at most 16M * 8 bits per call (EOVERFLOW above).
constexpr uint64_t kMaxDirtyBits = (16ull << 20) * 8;

Result<long> mark_dirty(Call& call, iommu_test_cmd& cmd) {
  const uint64_t iova = cmd.dirty.iova, length = cmd.dirty.length, page_size = cmd.dirty.page_size;
  if (page_size == 0 || length == 0 || iova % page_size || length % page_size || cmd.dirty.uptr == 0)
    return fail(EINVAL, "iova {:#x}, length {:#x}, page_size {:#x}, uptr {:#x}", iova, length, page_size,
                cmd.dirty.uptr);
  const uint64_t bits = length / page_size;
  if (bits > kMaxDirtyBits) return fail(EOVERFLOW, "{} bits are above the {} one call marks", bits, kMaxDirtyBits);
  auto hwpt = find_object<HwptPaging>(call, cmd.id, ObjectType::HwptPaging);
  IOASID_TRY(hwpt);
  iommu::IoPageTable& table = *(*hwpt)->table;
  if (!table.dirty_tracking()) return fail(EINVAL, "dirty tracking is off on HWPT {}", cmd.id);
  std::vector<std::byte> bitmap((bits + 7) / 8);
  IOASID_TRY(call.memory.read(cmd.dirty.uptr, bitmap));
  const IovaAreas& areas = (*hwpt)->ioas->areas;
  uint64_t marked = 0;
  for (uint64_t byte = 0; byte < bitmap.size(); ++byte) {
    if (bitmap[byte] == std::byte{0}) continue;
    for (uint64_t bit = byte * 8; bit < std::min(bits, byte * 8 + 8); ++bit) {
      if ((bitmap[byte] & (std::byte{1} << (bit % 8))) == std::byte{0}) continue;
      // The mock IOPTE holding this IOVA: counted where one exists, inside an area of
      // the IOAS (the engine's 4 KiB leaf may reach past an area by half a page).
      // iommufd's mock looks its IOPTE up at iova / page_size, the same for the 2 KiB
      // pages the selftest marks.
      const uint64_t at = iova + bit * page_size;
      if (!areas.covers(at, 1)) continue;
      auto found = table.mark_half_dirty(at);
      IOASID_TRY(found);
      if (*found) ++marked;
    }
  }
  cmd.dirty.out_nr_dirty = marked;
  return 0;
}

}  // namespace

Result<long> test_cmd(Call& call, iommu_test_cmd& cmd) {
  // Only the ops that return ids write the struct back.
  call.reply = cmd.op == IOMMU_TEST_OP_MOCK_DOMAIN || cmd.op == IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS ||
               cmd.op == IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE || cmd.op == IOMMU_TEST_OP_CREATE_ACCESS ||
               cmd.op == IOMMU_TEST_OP_ACCESS_PAGES || cmd.op == IOMMU_TEST_OP_DIRTY;
  if (call.fd_token && cmd.op != IOMMU_TEST_OP_CREATE_ACCESS)
    return fail(EINVAL, "test op {} makes no object with a file", cmd.op);
  switch (cmd.op) {
    case IOMMU_TEST_OP_ADD_RESERVED: return add_reserved(call, cmd);
    case IOMMU_TEST_OP_MOCK_DOMAIN:
    case IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS: return mock_domain(call, cmd);
    case IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE: return mock_domain_replace(call, cmd);
    case IOMMU_TEST_OP_MD_CHECK_MAP: return check_map(call, cmd);
    case IOMMU_TEST_OP_MD_CHECK_REFS:
      end_closed_accesses(call);
      return check_refs(call, cmd);
    case IOMMU_TEST_OP_DIRTY: return mark_dirty(call, cmd);
    case IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT:
      // iommufd's pinning batch size; this daemon pins a MAP as one backing, so there is
      // nothing to tune, but the bound is the same.
      if (cmd.memory_limit.limit < sizeof(unsigned long) + sizeof(uint32_t))
        return fail(EINVAL, "memory limit {} is below one batch element", cmd.memory_limit.limit);
      return 0;
    case IOMMU_TEST_OP_MD_CHECK_IOTLB: return check_iotlb(call, cmd);
    case IOMMU_TEST_OP_TRIGGER_IOPF: return trigger_iopf(call, cmd);
    case IOMMU_TEST_OP_CREATE_ACCESS: return create_access(call, cmd);
    case IOMMU_TEST_OP_DESTROY_ACCESS_PAGES: return destroy_access_pages(call, cmd);
    case IOMMU_TEST_OP_ACCESS_PAGES: return access_pages(call, cmd);
    case IOMMU_TEST_OP_ACCESS_RW: return access_rw(call, cmd);
    case IOMMU_TEST_OP_ACCESS_REPLACE_IOAS: return access_replace_ioas(call, cmd);
    default: return fail(EOPNOTSUPP, "unknown test op {}", cmd.op);
  }
}

}  // namespace ioasid::dev_iommu

// SPDX-License-Identifier: MIT
#include "dev_iommu/access.h"

#include "dev_iommu/fd_objects.h"
#include "dev_iommu/handlers.h"
#include "dev_iommu/service.h"
#include "memory/locate_pages.h"

#include <array>

namespace ioasid::dev_iommu {

Result<void> Access::attach(std::shared_ptr<Ioas> ioas) {
  if (ioas.get() == ioas_.get()) return success();
  const uint64_t alignment = needs_pin_pages_ ? kPageSize : 1;
  IOASID_TRY(ioas->areas.add_access(this, alignment, [this](uint64_t iova, uint64_t length) { unmapped(iova, length); }));
  detach();
  ioas_ = Use<Ioas>(std::move(ioas));
  return success();
}

void Access::detach() {
  if (!ioas_) return;
  while (!items_.empty()) release(items_.begin());
  ioas_->areas.remove_access(this);
  ioas_.reset();
}

Result<Access::Pinned> Access::pin(uint64_t iova, uint64_t length, bool write) {
  if (!ioas_) return fail(ENOENT, "the access has no IOAS");
  auto pieces = ioas_->areas.access_pins(iova, length, write, /*whole_pages=*/true, /*hold=*/true);
  IOASID_TRY(pieces);
  const uint32_t id = next_item_id_++;
  items_.emplace(id, Item{iova, length, *pieces});
  return Pinned{id, std::move(*pieces)};
}

Result<void> Access::unpin(uint32_t id) {
  auto it = items_.find(id);
  if (it == items_.end()) return fail(ENOENT, "the access has no pinned pages {}", id);
  release(it);
  return success();
}

void Access::unmapped(uint64_t iova, uint64_t length) {
  const uint64_t last = iova + (length - 1);
  for (auto it = items_.begin(); it != items_.end();) {
    const auto next = std::next(it);
    if (it->second.iova <= last && it->second.iova + (it->second.length - 1) >= iova) release(it);
    it = next;
  }
}

void Access::release(std::map<uint32_t, Item>::iterator it) {
  ioas_->areas.release_access_pins(it->second.iova, it->second.length);
  items_.erase(it);
}

}  // namespace ioasid::dev_iommu

// The selftest's commands on an access, named by its file's number (IOMMU_TEST_CMD's id).

namespace ioasid::dev_iommu {
namespace {

// The mock driver's bound on one call: each is daemon memory (or time) per call.
constexpr uint64_t kMaxAccessLength = 16ull << 20;

Result<std::shared_ptr<Access>> find_access(Call& call, uint32_t fd) {
  std::shared_ptr<Access> found;
  for (const auto& object : call.context.objects().all(ObjectType::Access)) {
    auto access = std::static_pointer_cast<Access>(object);
    if (access->fd_number == static_cast<int>(fd) && (!found || access->fd_sequence > found->fd_sequence))
      found = std::move(access);
  }
  if (!found) return fail(EBADFD, "file {} of the caller is no access object of this iommufd file", fd);
  return found;
}

// MOCK_FLAGS_ACCESS_SYZ: the IOVA is {nth area, offset} (syzkaller's encoding); 0 when
// there is no such area, as the mock driver answers.
uint64_t syzkaller_iova(const Access& access, uint64_t encoded) {
  if (!access.ioas()) return 0;
  const auto nth = static_cast<uint32_t>(encoded), offset = static_cast<uint32_t>(encoded >> 32);
  const auto areas = access.ioas()->areas.areas();
  return nth < areas.size() ? areas[nth].iova + offset : 0;
}

// Do the pinned pages hold what the caller's `uptr` maps now? (The mock driver's check.)
Result<void> check_pinned_pages(Call& call, const std::vector<PinnedPiece>& pieces, uint64_t uptr) {
  std::vector<PageLocation> pinned;
  for (const PinnedPiece& piece : pieces)
    for (uint64_t offset = page_floor(piece.offset); offset < piece.offset + piece.length; offset += kPageSize) {
      auto location = piece.pin->backing->location(offset);
      if (!location) return fail(EBADE, "pinned page at offset {:#x} has no known location", offset);
      pinned.push_back(*location);
    }
  if (call.memory.pid() == 0) return fail(EFAULT, "no client process");
  auto expected = locate_pages(call.memory.pid(), uptr, pinned.size() * kPageSize);
  IOASID_TRY(expected);
  for (size_t i = 0; i < pinned.size(); ++i)
    if (i >= expected->size() || !((*expected)[i].location == pinned[i]))
      return fail(EBADE, "pinned page {} is not what user address {:#x} maps", i, uptr + i * kPageSize);
  return success();
}

}  // namespace

void end_closed_accesses(Call& call) {
  for (const auto& object : call.context.objects().all(ObjectType::Access)) {
    auto& access = static_cast<Access&>(*object);
    if (!caller_closed_file(call, access)) continue;
    access.detach();
    call.context.objects().erase(access.id());
  }
}

Result<long> create_access(Call& call, iommu_test_cmd& cmd) {
  const uint32_t flags = cmd.create_access.flags;
  if (flags & ~MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES)
    return fail(EOPNOTSUPP, "unknown flag bits {:#x}", flags & ~MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
  if (!call.fd_token)
    return fail(EOPNOTSUPP,
                "CREATE_ACCESS hands the caller a file, which a daemon cannot: run the program under ioasid-run, "
                "or use libioasid's iommufd_fd_command");
  auto ioas = find_object<Ioas>(call, cmd.id, ObjectType::Ioas);
  IOASID_TRY(ioas);
  auto charge = call.service.engine().ioasids_quota().charge(call.context.client().uid);
  IOASID_TRY(charge);
  auto access = std::make_shared<Access>(flags & MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES);
  IOASID_TRY(access->attach(std::move(*ioas)));
  const uint32_t id = call.context.objects().insert(access, std::move(*charge));
  auto token = call.service.fd_objects().issue(call.context.shared_from_this(), access);
  if (!token) {
    call.context.objects().erase(id);
    return std::move(token).error();
  }
  *call.fd_token = *token;
  cmd.create_access.out_access_fd = ~0u;  // the caller's file comes with the token
  return 0;
}

Result<long> access_pages(Call& call, iommu_test_cmd& cmd) {
  const uint32_t flags = cmd.access_pages.flags;
  if (cmd.access_pages.length > kMaxAccessLength)
    return fail(ENOMEM, "length {:#x} is above the {:#x} one call pins", cmd.access_pages.length, kMaxAccessLength);
  if (flags & ~(MOCK_FLAGS_ACCESS_WRITE | MOCK_FLAGS_ACCESS_SYZ))
    return fail(EOPNOTSUPP, "unknown flag bits {:#x}", flags & ~(MOCK_FLAGS_ACCESS_WRITE | MOCK_FLAGS_ACCESS_SYZ));
  auto access = find_access(call, cmd.id);
  IOASID_TRY(access);
  if (!(*access)->needs_pin_pages())
    return fail(EOPNOTSUPP, "the access was made without NEEDS_PIN_PAGES");
  uint64_t iova = cmd.access_pages.iova;
  if (flags & MOCK_FLAGS_ACCESS_SYZ) iova = syzkaller_iova(**access, iova);
  auto pinned = (*access)->pin(iova, cmd.access_pages.length, flags & MOCK_FLAGS_ACCESS_WRITE);
  IOASID_TRY(pinned);
  if (cmd.access_pages.uptr != 0)
    if (auto same = check_pinned_pages(call, pinned->pieces, cmd.access_pages.uptr - (iova - page_floor(iova)));
        !same) {
      (void)(*access)->unpin(pinned->id);
      return std::move(same).error();
    }
  cmd.access_pages.out_access_pages_id = pinned->id;
  return 0;
}

Result<long> destroy_access_pages(Call& call, iommu_test_cmd& cmd) {
  auto access = find_access(call, cmd.id);
  IOASID_TRY(access);
  IOASID_TRY((*access)->unpin(cmd.destroy_access_pages.access_pages_id));
  return 0;
}

Result<long> access_rw(Call& call, iommu_test_cmd& cmd) {
  constexpr uint32_t kKnown = MOCK_ACCESS_RW_WRITE | MOCK_ACCESS_RW_SLOW_PATH | MOCK_FLAGS_ACCESS_SYZ;
  const uint32_t flags = cmd.access_rw.flags;
  const uint64_t length = cmd.access_rw.length;
  if (length > kMaxAccessLength)
    return fail(ENOMEM, "length {:#x} is above the {:#x} one call moves", length, kMaxAccessLength);
  if (flags & ~kKnown) return fail(EOPNOTSUPP, "unknown flag bits {:#x}", flags & ~kKnown);
  auto access = find_access(call, cmd.id);
  IOASID_TRY(access);
  uint64_t iova = cmd.access_rw.iova;
  if (flags & MOCK_FLAGS_ACCESS_SYZ) iova = syzkaller_iova(**access, iova);
  if (!(*access)->ioas()) return fail(ENOENT, "the access has no IOAS");
  const bool write = flags & MOCK_ACCESS_RW_WRITE;
  auto pieces = (*access)->ioas()->areas.access_pins(iova, length, write, /*whole_pages=*/false, /*hold=*/false);
  IOASID_TRY(pieces);
  // In chunks: one call's bytes never sit whole in the daemon.
  std::array<std::byte, 64 * 1024> chunk;
  uint64_t user = cmd.access_rw.uptr;
  for (const PinnedPiece& piece : *pieces) {
    // Pinned pages through their backing; others through the recorded address space.
    auto move = [&](uint64_t done, std::span<std::byte> part) {
      if (piece.pin)
        return write ? piece.pin->backing->write(piece.offset + done, part)
                     : piece.pin->backing->read(piece.offset + done, part);
      return piece.pages->transfer(piece.va + done, part, write);
    };
    for (uint64_t done = 0; done < piece.length;) {
      const auto part = std::span(chunk).first(std::min<uint64_t>(chunk.size(), piece.length - done));
      if (write) {
        IOASID_TRY(call.memory.read(user, part));
        IOASID_TRY(move(done, part));
      } else {
        IOASID_TRY(move(done, part));
        IOASID_TRY(call.memory.write(user, part));
      }
      done += part.size();
      user += part.size();
    }
  }
  return 0;
}

Result<long> access_replace_ioas(Call& call, iommu_test_cmd& cmd) {
  auto access = find_access(call, cmd.id);
  IOASID_TRY(access);
  if (!(*access)->ioas()) return fail(ENOENT, "the access has no IOAS");
  auto ioas = find_object<Ioas>(call, cmd.access_replace_ioas.ioas_id, ObjectType::Ioas);
  IOASID_TRY(ioas);
  IOASID_TRY((*access)->attach(std::move(*ioas)));
  return 0;
}

}  // namespace ioasid::dev_iommu

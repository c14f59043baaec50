// SPDX-License-Identifier: MIT
// mini-vmm: a prototype VMM giving its guest shared virtual addressing (vSVA) with a
// device, through /dev/ioasid, one line per step.
//
// The guest is imaginary but its memory and page tables are real. Guest RAM is a memfd
// that the VMM maps at GPA 0 of a kernel-managed IOASID: the second stage, GPA -> host.
// The "guest kernel" builds an x86-64 first-level page table in that RAM, as Linux does
// for a process whose buffer a device shares, and the VMM binds it on a nested IOASID
// (BIND_PGTBL). dma0, attached at the host PASID behind the guest's PASID, then DMAs
// with guest virtual addresses: GVA -> GPA through the guest's table, GPA -> host
// through the second stage. The rest is what a vIOMMU forwards from its guest: cache
// invalidations named by the guest's own PASID number (CACHE_INVLD), and page requests
// (read from the fd) that the guest answers after mapping the page (PAGE_RESP).
//
// It drives the node through libioasid (lib/client, <ioasid/client.hpp>; docs/UAPI.md
// explains every ioctl) and uses one piece of the engine: the first-level table builder
// (lib/pgtable/first_level_builder.h), standing in for the guest kernel's page-table code.
#include "common/cli.h"
#include "common/names.h"
#include "common/node.h"
#include "common/shared_memory.h"
#include "common/steps.h"
#include "pgtable/first_level_builder.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <iostream>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace po = boost::program_options;
using namespace ioasid::examples;
using client::Result;
namespace fl = ioasid::pgtable::first_level;

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kRamSize = 64ull << 20;              // guest RAM: GPA [0, 64 MiB)
constexpr uint64_t kTablePages = 1ull << 20;            // the guest kernel's page-table pages:
constexpr uint64_t kTablePagesEnd = 2ull << 20;         //   GPA [1 MiB, 2 MiB)
constexpr uint64_t kBufferGva = 0x7f0000000000ull;      // a guest process's buffer ...
constexpr uint64_t kBufferGpa = 16ull << 20;            // ... in guest RAM at 16 MiB
constexpr uint64_t kBufferPages = 4;                    // mapped from the start
constexpr uint64_t kUnmappedPage = 2;                   // the page the guest unmaps
constexpr uint64_t kDemandPage = kBufferPages;          // the page mapped on a page request

constexpr uint64_t gva_of_page(uint64_t page) { return kBufferGva + page * kPage; }
constexpr uint64_t gpa_of_page(uint64_t page) { return kBufferGpa + page * kPage; }

// Exit codes: 0 every step worked, 1 a step failed, 2 bad usage or a daemon without
// the features guest SVA needs.
constexpr int kExitFailed = 1;
constexpr int kExitUnsupported = 2;


// "OK", or "FAULT at 0x7f0000002000, reason ACCESS" for a DMA that did not complete.
std::string dma_outcome(const client::DmaOutcome& dma) {
  if (dma.ok()) return "OK";
  return fmt::format("{} at {:#x}, reason {}", dma_status_name(dma.status), dma.fault_addr,
                     fault_reason_name(dma.fault_reason));
}

// The page-table builder is the engine's and reports ioasid::Error; the VMM's steps
// report libioasid's.
template <typename T>
Result<T> from_engine(ioasid::Result<T> result) {
  if (!result) return client::Error{result.code(), std::move(result).error().why};
  if constexpr (std::is_void_v<T>)
    return {};
  else
    return *std::move(result);
}

// ---- the guest's memory, as the VMM sees it ----

// Guest RAM: a memfd, mapped in the VMM (to play the guest) and into the stage-2 IOASID.
class GuestRam {
 public:
  Result<void> create(uint64_t size) {
    auto memory = SharedMemory::create("mini-vmm-guest-ram", size);
    IOASID_CLIENT_TRY(memory);
    memory_.emplace(std::move(*memory));
    return {};
  }

  int fd() const { return memory_->fd(); }
  const void* host_address() const { return memory_->data(); }
  std::byte* at(uint64_t gpa) { return memory_->data() + gpa; }
  // The NUL-terminated text at a GPA (at most `limit` bytes).
  std::string text(uint64_t gpa, size_t limit = 128) {
    const char* start = reinterpret_cast<const char*>(at(gpa));
    return std::string(start, ::strnlen(start, limit));
  }
  // Page-table entries are shared with the IOMMU, which sets A/D bits in them while it
  // walks: every access is one atomic 64-bit load or store. (The engine's Result: these
  // serve the table builder.)
  ioasid::Result<uint64_t> read64(uint64_t gpa) {
    IOASID_TRY(check(gpa));
    return std::atomic_ref(*reinterpret_cast<uint64_t*>(at(gpa))).load();
  }
  ioasid::Result<void> write64(uint64_t gpa, uint64_t value) {
    IOASID_TRY(check(gpa));
    std::atomic_ref(*reinterpret_cast<uint64_t*>(at(gpa))).store(value);
    return ioasid::success();
  }

 private:
  ioasid::Result<void> check(uint64_t gpa) const {
    if (gpa % 8 || gpa >= memory_->size()) return ioasid::fail(EFAULT, "GPA {:#x} is not an aligned word of guest RAM", gpa);
    return ioasid::success();
  }

  std::optional<SharedMemory> memory_;
};

// The guest kernel's page-table memory: zeroed pages from [1 MiB, 2 MiB) of its RAM,
// reached through the VMM's mmap.
ioasid::pgtable::GuestTableMemory guest_table_memory(GuestRam& ram, uint64_t& next_page) {
  return {
      .alloc_page = [&ram, &next_page]() -> ioasid::Result<uint64_t> {
        if (next_page >= kTablePagesEnd) return ioasid::fail(ENOMEM, "the guest's page-table pages are used up");
        const uint64_t gpa = next_page;
        next_page += kPage;
        std::memset(ram.at(gpa), 0, kPage);
        return gpa;
      },
      .read64 = [&ram](uint64_t gpa) { return ram.read64(gpa); },
      .write64 = [&ram](uint64_t gpa, uint64_t value) { return ram.write64(gpa, value); },
      .free_page = nullptr,
  };
}

// ---- ioctls ----

// DEVICE_BIND. A device whose owner has just closed its file can still be bound for a
// moment (FUSE sends the release after close() returns), so EBUSY is retried for up to
// 2 s before it counts.
Result<client::Device> bind_device(const client::File& node, const std::string& name) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    auto bound = client::Device::bind(node, name);
    if (bound || bound.code() != EBUSY || std::chrono::steady_clock::now() >= deadline) return bound;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The next record queued to the file, which must be a page request.
Result<ioasid_fault> read_page_request(const client::File& node) {
  auto record = node.next_fault(std::chrono::seconds(5));
  IOASID_CLIENT_TRY(record);
  if (record->type != IOASID_FAULT_PAGE_REQ)
    return fail(EIO, "read a {} record (reason {}, addr {:#x}), expected a PAGE_REQ", fault_type_name(record->type),
                fault_reason_name(record->reason), record->addr);
  return record;
}

std::string describe_page_request(const ioasid_fault& record) {
  return fmt::format("type {}, grpid {}, dev_id {}, pasid {}, ioasid {}, addr {:#x}, perm {}, reason {}",
                     fault_type_name(record.type), record.grpid, record.dev_id, record.pasid, record.ioasid,
                     record.addr, fault_perm_list(record.perm), fault_reason_name(record.reason));
}

// ---- the flow ----

struct Options {
  std::string device = "dma0";
  uint32_t gpasid = 5;
};

// The features guest SVA uses; each one missing is named.
std::string missing_features(uint32_t features) {
  std::string missing;
  for (uint32_t feature : {IOASID_FEAT_PASID, IOASID_FEAT_NESTING, IOASID_FEAT_BIND_PGTBL, IOASID_FEAT_CACHE_INVLD,
                           IOASID_FEAT_PAGE_RESP, IOASID_FEAT_GPASID, IOASID_FEAT_MAP_FILE})
    if (!(features & (1u << feature))) missing += (missing.empty() ? "" : " ") + feature_name(feature);
  return missing;
}

// What the guest session leaves for close() to free; the last step names it.
struct LeftToClose {
  uint32_t pasid = 0;
  uint32_t nested = 0;
  uint32_t stage2 = 0;
};

// Every step on one open file, from GET_INFO to the teardown. `unsupported` is set when
// the daemon lacks a feature (exit 2 rather than 1). On an error, the objects made so
// far undo their ioctls as they go out of scope.
Result<LeftToClose> run_guest(const client::File& node, const Options& options, bool& unsupported) {
  // ---- what the daemon offers ----
  auto info = node.info();
  IOASID_CLIENT_TRY(info);
  std::string missing = missing_features(info->features);
  if (!(info->pgtbl_formats & (1u << IOASID_PGTBL_VTD_FL)))
    missing += (missing.empty() ? "" : " ") + std::string("page-table format VTD_FL");
  if (!missing.empty()) {
    unsupported = true;
    return fail(EOPNOTSUPP, "{} does not offer what guest SVA needs: missing {} (features: {})", node.path(), missing,
                feature_list(info->features));
  }
  step("open {} + GET_INFO -> API {}, {} PASID bits, features {}: guest SVA has all it needs", node.path(),
       info->api_version, info->pasid_bits, feature_list(info->features));

  // ---- guest RAM and the stage-2 IOASID ----
  GuestRam ram;
  IOASID_CLIENT_TRY(ram.create(kRamSize));
  auto stage2 = client::Ioas::allocate(node);
  IOASID_CLIENT_TRY(stage2);
  auto guest_ram = client::Mapping::map_file(*stage2, ram.fd(), 0, kRamSize, {.iova = 0});
  IOASID_CLIENT_TRY(guest_ram);
  step("guest RAM: memfd of {} MiB, mmap'd by the VMM at {}; ALLOC -> IOASID {} (stage 2); MAP_FILE FIXED_IOVA "
       "at iova {:#x} -> 0: IOVA = GPA for [0, {:#x})",
       kRamSize >> 20, ram.host_address(), stage2->id(), guest_ram->iova(), kRamSize);

  // ---- the nested IOASID the guest's table will be bound on ----
  auto nested = client::Ioas::allocate_nested(*stage2);
  IOASID_CLIENT_TRY(nested);
  step("ALLOC NESTED parent {} -> IOASID {}: its first stage will be the guest's table, its GPAs translate "
       "through IOASID {}",
       stage2->id(), nested->id(), stage2->id());

  // ---- the guest's PASID and the host PASID behind it ----
  const client::PasidRange range{1, info->pasid_bits >= 32 ? UINT32_MAX : (1u << info->pasid_bits) - 1};
  auto pasid = client::Pasid::allocate(node, range, options.gpasid);
  IOASID_CLIENT_TRY(pasid);
  auto looked_up = client::Pasid::lookup(node, options.gpasid);
  IOASID_CLIENT_TRY(looked_up);
  if (*looked_up != pasid->value())
    return fail(EIO, "PASID_LOOKUP of guest PASID {} answered {}, ALLOC gave {}", options.gpasid, *looked_up,
                pasid->value());
  step("guest allocates PASID {}: PASID_REQUEST ALLOC|GPASID gpasid {} in [{}, {}] -> host PASID {}; "
       "PASID_LOOKUP gpasid {} -> {}",
       options.gpasid, options.gpasid, range.min, range.max, pasid->value(), options.gpasid, *looked_up);

  // ---- the guest kernel's page table, bound on the nested IOASID ----
  uint64_t next_table_page = kTablePages;
  auto builder = from_engine(ioasid::pgtable::FirstLevelBuilder::create(guest_table_memory(ram, next_table_page), 4));
  IOASID_CLIENT_TRY(builder);
  const fl::LeafFlags user_data{.writable = true, .user = true, .execute_disable = true};
  IOASID_CLIENT_TRY(from_engine(builder->map(kBufferGva, kBufferGpa, kBufferPages * kPage, user_data)));
  step("guest kernel: 4-level table in its RAM, root at GPA {:#x} ({} table pages); GVA [{:#x}, {:#x}) -> "
       "GPA [{:#x}, {:#x}), user read/write, no-execute",
       builder->root(), (next_table_page - kTablePages) / kPage, gva_of_page(0), gva_of_page(kBufferPages),
       gpa_of_page(0), gpa_of_page(kBufferPages));

  // A Linux guest sharing a process's memory (user SVA) leaves SRE off: the device may
  // make user requests only. WPE matters only with SRE (supervisor writes honour R/W).
  auto binding = client::PgtblBinding::bind(*nested, {.root_gpa = builder->root(), .addr_width = 48, .flags = 0});
  IOASID_CLIENT_TRY(binding);
  step("BIND_PGTBL IOASID {} format VTD_FL root GPA {:#x} addr_width 48, flags 0 (user SVA as Linux binds a "
       "process: no SRE, so no WPE) -> 0",
       nested->id(), builder->root());

  // ---- the device, at the host PASID ----
  auto device = bind_device(node, options.device);
  if (!device) {
    const client::Error& error = device.error();
    if (error.code == ENOENT)
      return fail(ENOENT, "{}: the daemon has no device {} (see `ioasidctl devices`)", error.what, options.device);
    if (error.code == EBUSY)
      return fail(EBUSY, "{}: {} is bound by another open file (`ioasidctl contexts` shows who); wait for it to "
                  "close, or pick another device with --device",
                  error.what, options.device);
    return error;
  }
  auto device_info = device->info();
  IOASID_CLIENT_TRY(device_info);
  if (device_info->type != IOASID_DEVICE_TYPE_DMA)
    return fail(EOPNOTSUPP, "{} is not a dma device (type {}): try --device dma0", options.device, device_info->type);
  if (!(device_info->flags & IOASID_DEVICE_PASID) || !(device_info->flags & IOASID_DEVICE_PRI))
    return fail(EOPNOTSUPP, "{} has {}: guest SVA needs PASID and PRI (try --device dma0)", options.device,
                !(device_info->flags & IOASID_DEVICE_PASID) ? "no PASID capability" : "PASID but no PRI");
  const bool has_ats = device_info->flags & IOASID_DEVICE_ATS;
  auto route = client::Attachment::attach_pasid(*device, *nested, pasid->value());
  IOASID_CLIENT_TRY(route);
  step("DEVICE_BIND {} -> dev_id {} (PASID, PRI{}); ATTACH_IOASID_PASID PASID {} -> IOASID {}: its requests at "
       "PASID {} now walk the guest's table",
       options.device, device->id(), has_ats ? ", ATS" : "", pasid->value(), nested->id(), pasid->value());
  const std::string caches = has_ats ? "the IOTLB and the device-TLB" : "the IOTLB";
  const client::DmaOptions at_pasid{.pasid = pasid->value()};

  // ---- DMA with guest virtual addresses ----
  std::vector<std::byte> pages(kBufferPages * kPage);
  for (uint64_t page = 0; page < kBufferPages; ++page) {
    const std::string text = fmt::format("{} wrote this at GVA {:#x} (guest PASID {})", options.device,
                                         gva_of_page(page), options.gpasid);
    std::memcpy(pages.data() + page * kPage, text.data(), text.size());
  }
  auto written = device->dma_write(kBufferGva, pages, at_pasid);
  IOASID_CLIENT_TRY(written);
  if (!written->ok()) return fail(EIO, "DEVICE_DMA WRITE at GVA {:#x}: {}", kBufferGva, dma_outcome(*written));
  if (std::memcmp(ram.at(kBufferGpa), pages.data(), pages.size()) != 0)
    return fail(EIO, "the DMA reported OK but guest RAM at GPA {:#x} does not hold the bytes", kBufferGpa);
  step("DEVICE_DMA WRITE pasid {} GVA {:#x} {} bytes -> {}; the guest reads at GPA {:#x}: \"{}\" (each of the {} "
       "pages starts with its own line)",
       pasid->value(), kBufferGva, pages.size(), dma_outcome(*written), kBufferGpa, ram.text(kBufferGpa),
       kBufferPages);

  auto leaf = from_engine(builder->entry_gpa(kBufferGva, 1));
  IOASID_CLIENT_TRY(leaf);
  auto pte = from_engine(ram.read64(*leaf));
  IOASID_CLIENT_TRY(pte);
  std::vector<std::byte> readback(pages.size());
  auto read = device->dma_read(kBufferGva, readback, at_pasid);
  IOASID_CLIENT_TRY(read);
  if (!read->ok()) return fail(EIO, "DEVICE_DMA read at GVA {:#x}: {}", kBufferGva, dma_outcome(*read));
  if (readback != pages) return fail(EIO, "the DMA read reported OK but returned other bytes than were written");
  step("DEVICE_DMA read pasid {} GVA {:#x} {} bytes -> {}: the same bytes; the walk set A{} in the guest's PTE "
       "(GPA {:#x} = {:#x})",
       pasid->value(), kBufferGva, readback.size(), dma_outcome(*read), (*pte & fl::kDirty) ? " and D" : "", *leaf,
       *pte);

  // ---- the guest unmaps a page: stale until invalidated, then a page request ----
  const uint64_t stale_gva = gva_of_page(kUnmappedPage);
  const uint64_t stale_gpa = gpa_of_page(kUnmappedPage);
  auto stale_pte = from_engine(builder->entry_gpa(stale_gva, 1));
  IOASID_CLIENT_TRY(stale_pte);
  auto unmapped = from_engine(builder->unmap(stale_gva, kPage));
  IOASID_CLIENT_TRY(unmapped);
  step("guest unmaps GVA {:#x} ({} bytes): its PTE at GPA {:#x} is 0 now, and it does not invalidate yet", stale_gva,
       *unmapped, *stale_pte);

  std::vector<std::byte> stale(64);
  const std::string stale_text = "a stale write through a forgotten translation";
  std::memcpy(stale.data(), stale_text.data(), stale_text.size());
  auto stale_write = device->dma_write(stale_gva, stale, at_pasid);
  IOASID_CLIENT_TRY(stale_write);
  if (!stale_write->ok() || ram.text(stale_gpa) != stale_text)
    return fail(EIO, "DEVICE_DMA WRITE at the just-unmapped GVA {:#x} ended {}, guest RAM at GPA {:#x} holds \"{}\": "
                "expected the stale translation to be used",
                stale_gva, dma_outcome(*stale_write), stale_gpa, ram.text(stale_gpa));
  step("DEVICE_DMA WRITE pasid {} GVA {:#x} -> {}: still reaches the old page, GPA {:#x} reads \"{}\" ({} kept "
       "the translation)",
       pasid->value(), stale_gva, dma_outcome(*stale_write), stale_gpa, ram.text(stale_gpa), caches);

  // As a Linux guest does after clearing a PTE of a process sharing its memory: a
  // PASID-based IOTLB invalidation (with the leaf hint) and a device-TLB invalidation,
  // the PASID being the guest's own number, which the vIOMMU passes on with GPASID.
  const ioasid_cache_invalidate_info page_at_guest_pasid{
      .granularity = IOASID_INV_GRANU_ADDR,
      .flags = IOASID_INV_FLAGS_PASID | IOASID_INV_FLAGS_GPASID,
      .pasid = options.gpasid,
      .addr = stale_gva,
      .granule_size = kPage,
      .nb_granules = 1,
  };
  ioasid_cache_invalidate_info entries[2] = {page_at_guest_pasid, page_at_guest_pasid};
  entries[0].cache = IOASID_CACHE_IOTLB;
  entries[0].flags |= IOASID_INV_FLAGS_LEAF;
  entries[1].cache = IOASID_CACHE_DEV_IOTLB;
  IOASID_CLIENT_TRY(nested->invalidate_caches(entries));
  step("guest invalidates: CACHE_INVLD IOASID {} [IOTLB ADDR {:#x} x1 4K PASID|GPASID|LEAF gpasid {}, DEV_IOTLB "
       "ADDR {:#x} x1 4K PASID|GPASID gpasid {}] -> 0, entry_num {}",
       nested->id(), stale_gva, options.gpasid, stale_gva, options.gpasid, std::size(entries));

  auto nowait = device->dma_write(stale_gva, stale, {.pasid = pasid->value(), .nowait = true});
  IOASID_CLIENT_TRY(nowait);
  if (nowait->status != IOASID_DMA_PAGE_REQ)
    return fail(EIO, "DEVICE_DMA WRITE|NOWAIT at GVA {:#x} after the invalidation ended {}, expected PAGE_REQ",
                stale_gva, dma_outcome(*nowait));
  step("DEVICE_DMA WRITE|NOWAIT pasid {} GVA {:#x} -> out_status {}, out_fault_addr {:#x}, out_fault_reason {}: "
       "{} has PRI, so the fault is a page request",
       pasid->value(), stale_gva, dma_status_name(nowait->status), nowait->fault_addr,
       fault_reason_name(nowait->fault_reason), options.device);
  auto unanswered = read_page_request(node);
  IOASID_CLIENT_TRY(unanswered);
  step("poll -> POLLIN; read() -> {}", describe_page_request(*unanswered));

  // ---- a page request the guest answers while the DMA waits ----
  // The device writes across the end of the last mapped page into the next one, which
  // the guest has not mapped yet (as a process's memory is populated on first touch).
  std::vector<std::byte> message(64);
  const std::string message_text = "written across a page boundary, half of it after a page request";
  std::memcpy(message.data(), message_text.data(), std::min(message_text.size(), message.size() - 1));
  const uint64_t message_gva = gva_of_page(kDemandPage) - message.size() / 2;
  auto waiting = std::async(std::launch::async,
                            [&] { return device->dma_write(message_gva, message, at_pasid); });
  auto demand = read_page_request(node);
  if (!demand) return std::move(demand).error();  // the DMA gives up at the daemon's time limit
  const bool still_waiting = waiting.wait_for(std::chrono::milliseconds(100)) == std::future_status::timeout;
  step("DEVICE_DMA WRITE pasid {} GVA {:#x} {} bytes on a thread; poll + read() -> {}{}", pasid->value(),
       message_gva, message.size(), describe_page_request(*demand),
       still_waiting ? "; the DMA waits for the answer" : "; but the DMA has ended already");

  IOASID_CLIENT_TRY(from_engine(builder->map(demand->addr, gpa_of_page(kDemandPage), kPage, user_data)));
  IOASID_CLIENT_TRY(device->page_response(*demand, IOASID_PAGE_RESP_SUCCESS));
  step("guest maps GVA {:#x} -> GPA {:#x}; PAGE_RESP dev_id {} pasid {} grpid {} SUCCESS -> 0", demand->addr,
       gpa_of_page(kDemandPage), device->id(), demand->pasid, demand->grpid);

  auto completed = waiting.get();
  IOASID_CLIENT_TRY(completed);
  const uint64_t message_gpa = gpa_of_page(kDemandPage) - message.size() / 2;
  if (!completed->ok() || std::memcmp(ram.at(message_gpa), message.data(), message.size()) != 0)
    return fail(EIO, "the waiting DMA ended {}; guest RAM at GPA {:#x} reads \"{}\"", dma_outcome(*completed),
                message_gpa, ram.text(message_gpa));
  step("the waiting DEVICE_DMA returns out_status {}: the device retried where it stopped; GPA {:#x} reads \"{}\"",
       dma_outcome(*completed), message_gpa, ram.text(message_gpa));

  // ---- the NOWAIT request's group ----
  // Its group stays outstanding (one of the device's 512) until a PAGE_RESP closes it
  // or the file closes. The guest unmapped that page on purpose: it answers INVALID, as
  // Linux does for an address the process has no mapping at.
  IOASID_CLIENT_TRY(device->page_response(*unanswered, IOASID_PAGE_RESP_INVALID));
  auto again = device->page_response(*unanswered, IOASID_PAGE_RESP_INVALID);
  if (again) return fail(EIO, "a second PAGE_RESP for group {} was accepted", unanswered->grpid);
  step("PAGE_RESP grpid {} INVALID (the NOWAIT request of GVA {:#x}, which the guest unmapped) -> 0: the group is "
       "closed; the same PAGE_RESP again -> {}",
       unanswered->grpid, unanswered->addr, errno_name(again.code()));

  // ---- teardown ----
  IOASID_CLIENT_TRY(binding->unbind());
  auto unbound = device->dma_read(kBufferGva, std::span(readback).first(8), at_pasid);
  IOASID_CLIENT_TRY(unbound);
  if (unbound->status != IOASID_DMA_FAULT)
    return fail(EIO, "DEVICE_DMA after UNBIND_PGTBL ended {}, expected FAULT", dma_outcome(*unbound));
  step("UNBIND_PGTBL IOASID {} -> 0; DEVICE_DMA read pasid {} GVA {:#x} -> {} (nothing cached survives)",
       nested->id(), pasid->value(), kBufferGva, dma_outcome(*unbound));

  IOASID_CLIENT_TRY(route->detach());
  step("DETACH_IOASID_PASID {} PASID {} -> 0", options.device, pasid->value());

  // The rest is left to close(): release() hands each object over to the daemon.
  guest_ram->release();
  device->release();
  return LeftToClose{pasid->release(), nested->release(), stage2->release()};
}

Result<void> run(const std::string& path, const Options& options, bool& unsupported) {
  LeftToClose left;
  {
    auto node = client::File::open(path);
    IOASID_CLIENT_TRY(node);
    auto guest = run_guest(*node, options, unsupported);
    IOASID_CLIENT_TRY(guest);
    left = *guest;
  }  // close()

  auto reopened = client::File::open(path);
  IOASID_CLIENT_TRY(reopened);
  auto rebound = bind_device(*reopened, options.device);
  if (!rebound) return fail(rebound.code(), "{} in a new open file: {}", options.device, rebound.error().what);
  step("close(): the daemon frees PASID {} (gpasid {}), IOASIDs {} and {}, unbinds {}; a new open file binds {} "
       "again -> dev_id {}",
       left.pasid, options.gpasid, left.nested, left.stage2, options.device, options.device, rebound->id());
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  std::string dev;
  Options options;
  po::options_description description(
      "Usage: mini-vmm [--dev PATH] [--device NAME] [--gpasid N]\n"
      "A prototype VMM giving a guest shared virtual addressing with a device, one line\n"
      "per step: guest RAM in a stage-2 IOASID, a nested IOASID with the guest's own page\n"
      "table bound, DMA with guest virtual addresses at the guest's PASID, a stale\n"
      "translation until the guest invalidates it, page requests the guest answers.\n\n"
      "Options");
  description.add_options()
      ("help,h", "print this help and exit")
      ("dev,d", po::value(&dev)->value_name("PATH"), "the node to open (default: $IOASID_DEV, else /dev/ioasid)")
      ("device", po::value(&options.device)->value_name("NAME")->default_value(options.device),
       "the dma device with PASID and PRI to give the guest (see `ioasidctl devices`)")
      ("gpasid", po::value(&options.gpasid)->value_name("N")->default_value(options.gpasid),
       "the guest's PASID number");
  po::variables_map vm;
  if (auto exit_code = parse_command_line(argc, argv, "mini-vmm", description, vm)) return *exit_code;

  const std::string path = node_path(dev);
  fmt::print("mini-vmm: guest SVA through {} (pid {})\n", path, ::getpid());
  std::fflush(stdout);
  bool unsupported = false;
  if (auto done = run(path, options, unsupported); !done) {
    std::fflush(stdout);
    std::cerr << fmt::format("mini-vmm: step [{}] failed: {} ({})\n", step_number + 1, done.error().what,
                             errno_name(done.error().code));
    return unsupported ? kExitUnsupported : kExitFailed;
  }
  return 0;
}

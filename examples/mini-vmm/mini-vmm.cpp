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
// Besides the uAPI header (uapi/linux/ioasid.h; docs/UAPI.md explains every ioctl) it
// uses one piece of the project's library: the first-level table builder
// (lib/pgtable/first_level_builder.h), standing in for the guest kernel's page-table code.
#include "common/cli.h"
#include "common/names.h"
#include "common/node.h"
#include "common/steps.h"
#include "pgtable/first_level_builder.h"

#include <fmt/format.h>
#include <poll.h>
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
#include <vector>

namespace po = boost::program_options;
using namespace ioasid::examples;
using ioasid::Result;
using ioasid::fail;
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
std::string dma_outcome(const ioasid_device_dma& dma) {
  if (dma.out_status == IOASID_DMA_OK) return "OK";
  return fmt::format("{} at {:#x}, reason {}", dma_status_name(dma.out_status), dma.out_fault_addr,
                     fault_reason_name(dma.out_fault_reason));
}

// ---- the guest's memory, as the VMM sees it ----

// Guest RAM: a memfd, mapped in the VMM (to play the guest) and into the stage-2 IOASID.
class GuestRam {
 public:
  GuestRam() = default;
  GuestRam(const GuestRam&) = delete;
  GuestRam& operator=(const GuestRam&) = delete;
  ~GuestRam() {
    if (data_) ::munmap(data_, size_);
  }

  Result<void> create(uint64_t size) {
    fd_ = ioasid::UniqueFd(::memfd_create("mini-vmm-guest-ram", MFD_CLOEXEC));
    if (!fd_) return fail(errno, "memfd_create: {}", std::strerror(errno));
    if (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0)
      return fail(errno, "ftruncate of guest RAM to {} bytes: {}", size, std::strerror(errno));
    void* data = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    if (data == MAP_FAILED) return fail(errno, "mmap of guest RAM: {}", std::strerror(errno));
    data_ = static_cast<std::byte*>(data);
    size_ = size;
    return ioasid::success();
  }

  int fd() const { return fd_.get(); }
  const void* host_address() const { return data_; }
  std::byte* at(uint64_t gpa) { return data_ + gpa; }
  // The NUL-terminated text at a GPA (at most `limit` bytes).
  std::string text(uint64_t gpa, size_t limit = 128) {
    const char* start = reinterpret_cast<const char*>(at(gpa));
    return std::string(start, ::strnlen(start, limit));
  }
  // Page-table entries are shared with the IOMMU, which sets A/D bits in them while it
  // walks: every access is one atomic 64-bit load or store.
  Result<uint64_t> read64(uint64_t gpa) {
    IOASID_TRY(check(gpa));
    return std::atomic_ref(*reinterpret_cast<uint64_t*>(at(gpa))).load();
  }
  Result<void> write64(uint64_t gpa, uint64_t value) {
    IOASID_TRY(check(gpa));
    std::atomic_ref(*reinterpret_cast<uint64_t*>(at(gpa))).store(value);
    return ioasid::success();
  }

 private:
  Result<void> check(uint64_t gpa) const {
    if (gpa % 8 || gpa >= size_) return fail(EFAULT, "GPA {:#x} is not an aligned word of guest RAM", gpa);
    return ioasid::success();
  }

  ioasid::UniqueFd fd_;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// The guest kernel's page-table memory: zeroed pages from [1 MiB, 2 MiB) of its RAM,
// reached through the VMM's mmap.
ioasid::pgtable::GuestTableMemory guest_table_memory(GuestRam& ram, uint64_t& next_page) {
  return {
      .alloc_page = [&ram, &next_page]() -> Result<uint64_t> {
        if (next_page >= kTablePagesEnd) return fail(ENOMEM, "the guest's page-table pages are used up");
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

// The device moves `buffer.size()` bytes at guest virtual address `gva`, its requests
// tagged with `pasid`: into guest memory with IOASID_DMA_WRITE, else out of it.
Result<ioasid_device_dma> device_dma(const Node& node, uint32_t dev_id, uint32_t flags, uint32_t pasid, uint64_t gva,
                                     std::span<std::byte> buffer) {
  ioasid_device_dma dma{};
  dma.dev_id = dev_id;
  dma.flags = flags | IOASID_DMA_PASID;
  dma.pasid = pasid;
  dma.iova = gva;
  dma.length = buffer.size();
  dma.buf_uptr = reinterpret_cast<uintptr_t>(buffer.data());
  IOASID_TRY(node.call(IOASID_DEVICE_DMA, dma, "IOASID_DEVICE_DMA"));
  return dma;
}

// DEVICE_BIND -> dev_id. A device whose owner has just closed its file can still be
// bound for a moment (FUSE sends the release after close() returns), so EBUSY is
// retried for up to 2 s before it counts.
Result<uint32_t> bind_device(const Node& node, const std::string& name) {
  ioasid_device_bind bind{};
  if (name.size() >= sizeof bind.name) return fail(EINVAL, "device name \"{}\" is too long", name);
  std::memcpy(bind.name, name.data(), name.size());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    auto bound = node.call(IOASID_DEVICE_BIND, bind, "IOASID_DEVICE_BIND");
    if (bound) return bind.out_dev_id;
    if (bound.code() != EBUSY || std::chrono::steady_clock::now() >= deadline) return std::move(bound).error();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The next fault record queued to the file: poll for POLLIN, then read(2) one record.
Result<ioasid_fault> read_fault(const Node& node) {
  pollfd ready{.fd = node.fd(), .events = POLLIN, .revents = 0};
  const int polled = ::poll(&ready, 1, 5000);
  if (polled < 0) return fail(errno, "poll: {}", std::strerror(errno));
  if (polled == 0 || !(ready.revents & POLLIN)) return fail(ETIMEDOUT, "no fault record is readable after 5 s");
  ioasid_fault record{};
  const ssize_t got = ::read(node.fd(), &record, sizeof record);
  if (got < 0) return fail(errno, "read of a fault record: {}", std::strerror(errno));
  if (got != sizeof record) return fail(EIO, "read returned {} bytes, expected {}", got, sizeof record);
  return record;
}

Result<ioasid_fault> read_page_request(const Node& node) {
  auto record = read_fault(node);
  IOASID_TRY(record);
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

Result<long> page_response(const Node& node, uint32_t dev_id, uint32_t pasid, uint32_t grpid, uint32_t code) {
  ioasid_page_response response{};
  response.dev_id = dev_id;
  response.flags = IOASID_PAGE_RESP_PASID_VALID;
  response.pasid = pasid;
  response.grpid = grpid;
  response.code = code;
  return node.call(IOASID_PAGE_RESP, response, "IOASID_PAGE_RESP");
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

// Everything from opening the node to closing it. `unsupported` is set when the daemon
// lacks a feature (exit 2 rather than 1).
Result<void> run(const std::string& path, const Options& options, bool& unsupported) {
  std::optional<Node> node;
  {
    auto opened = Node::open(path);
    IOASID_TRY(opened);
    node.emplace(std::move(*opened));
  }

  // ---- what the daemon offers ----
  auto info = node->info();
  IOASID_TRY(info);
  std::string missing = missing_features(info->features);
  if (!(info->pgtbl_formats & (1u << IOASID_PGTBL_VTD_FL)))
    missing += (missing.empty() ? "" : " ") + std::string("page-table format VTD_FL");
  if (!missing.empty()) {
    unsupported = true;
    return fail(EOPNOTSUPP, "{} does not offer what guest SVA needs: missing {} (features: {})", path, missing,
                feature_list(info->features));
  }
  step("open {} + GET_INFO -> API {}, {} PASID bits, features {}: guest SVA has all it needs", path,
       info->api_version, info->pasid_bits, feature_list(info->features));

  // ---- guest RAM and the stage-2 IOASID ----
  GuestRam ram;
  IOASID_TRY(ram.create(kRamSize));
  ioasid_alloc stage2{};
  IOASID_TRY(node->call(IOASID_ALLOC, stage2, "IOASID_ALLOC"));
  ioasid_map_file map{};
  map.flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE | IOASID_MAP_FIXED_IOVA;
  map.ioasid = stage2.out_ioasid;
  map.fd = ram.fd();
  map.offset = 0;
  map.length = kRamSize;
  map.iova = 0;
  IOASID_TRY(node->call(IOASID_MAP_FILE, map, "IOASID_MAP_FILE"));
  step("guest RAM: memfd of {} MiB, mmap'd by the VMM at {}; ALLOC -> IOASID {} (stage 2); MAP_FILE FIXED_IOVA "
       "at iova {:#x} -> 0: IOVA = GPA for [0, {:#x})",
       kRamSize >> 20, ram.host_address(), stage2.out_ioasid, map.iova, kRamSize);

  // ---- the nested IOASID the guest's table will be bound on ----
  ioasid_alloc nested{};
  nested.flags = IOASID_ALLOC_NESTED;
  nested.parent = stage2.out_ioasid;
  IOASID_TRY(node->call(IOASID_ALLOC, nested, "IOASID_ALLOC NESTED"));
  const uint32_t nested_id = nested.out_ioasid;
  step("ALLOC NESTED parent {} -> IOASID {}: its first stage will be the guest's table, its GPAs translate "
       "through IOASID {}",
       stage2.out_ioasid, nested_id, stage2.out_ioasid);

  // ---- the guest's PASID and the host PASID behind it ----
  ioasid_pasid_request request{};
  request.flags = IOASID_PASID_ALLOC | IOASID_PASID_GPASID;
  request.min = 1;
  request.max = info->pasid_bits >= 32 ? UINT32_MAX : (1u << info->pasid_bits) - 1;
  request.gpasid = options.gpasid;
  IOASID_TRY(node->call(IOASID_PASID_REQUEST, request, "IOASID_PASID_REQUEST ALLOC|GPASID"));
  const uint32_t pasid = request.pasid;
  ioasid_pasid_lookup lookup{};
  lookup.gpasid = options.gpasid;
  IOASID_TRY(node->call(IOASID_PASID_LOOKUP, lookup, "IOASID_PASID_LOOKUP"));
  if (lookup.out_pasid != pasid)
    return fail(EIO, "PASID_LOOKUP of guest PASID {} answered {}, ALLOC gave {}", options.gpasid, lookup.out_pasid,
                pasid);
  step("guest allocates PASID {}: PASID_REQUEST ALLOC|GPASID gpasid {} in [{}, {}] -> host PASID {}; "
       "PASID_LOOKUP gpasid {} -> {}",
       options.gpasid, options.gpasid, request.min, request.max, pasid, options.gpasid, lookup.out_pasid);

  // ---- the guest kernel's page table, bound on the nested IOASID ----
  uint64_t next_table_page = kTablePages;
  auto builder = ioasid::pgtable::FirstLevelBuilder::create(guest_table_memory(ram, next_table_page), 4);
  IOASID_TRY(builder);
  const fl::LeafFlags user_data{.writable = true, .user = true, .execute_disable = true};
  IOASID_TRY(builder->map(kBufferGva, kBufferGpa, kBufferPages * kPage, user_data));
  step("guest kernel: 4-level table in its RAM, root at GPA {:#x} ({} table pages); GVA [{:#x}, {:#x}) -> "
       "GPA [{:#x}, {:#x}), user read/write, no-execute",
       builder->root(), (next_table_page - kTablePages) / kPage, gva_of_page(0), gva_of_page(kBufferPages),
       gpa_of_page(0), gpa_of_page(kBufferPages));

  // A Linux guest sharing a process's memory (user SVA) leaves SRE off: the device may
  // make user requests only. WPE matters only with SRE (supervisor writes honour R/W).
  ioasid_bind_pgtbl bind{};
  bind.ioasid = nested_id;
  bind.format = IOASID_PGTBL_VTD_FL;
  bind.flags = 0;
  bind.pgtbl_addr = builder->root();
  bind.addr_width = 48;
  IOASID_TRY(node->call(IOASID_BIND_PGTBL, bind, "IOASID_BIND_PGTBL"));
  step("BIND_PGTBL IOASID {} format VTD_FL root GPA {:#x} addr_width 48, flags 0 (user SVA as Linux binds a "
       "process: no SRE, so no WPE) -> 0",
       nested_id, bind.pgtbl_addr);

  // ---- the device, at the host PASID ----
  auto bound = bind_device(*node, options.device);
  if (!bound) {
    const ioasid::Error& error = bound.error();
    if (error.code == ENOENT)
      return fail(ENOENT, "{}: the daemon has no device {} (see `ioasidctl devices`)", error.why, options.device);
    if (error.code == EBUSY)
      return fail(EBUSY, "{}: {} is bound by another open file (`ioasidctl contexts` shows who); wait for it to "
                  "close, or pick another device with --device",
                  error.why, options.device);
    return error;
  }
  const uint32_t dev_id = *bound;
  ioasid_device_info device{};
  device.dev_id = dev_id;
  IOASID_TRY(node->call(IOASID_DEVICE_GET_INFO, device, "IOASID_DEVICE_GET_INFO"));
  if (device.type != IOASID_DEVICE_TYPE_DMA)
    return fail(EOPNOTSUPP, "{} is not a dma device (type {}): try --device dma0", options.device, device.type);
  if (!(device.flags & IOASID_DEVICE_PASID) || !(device.flags & IOASID_DEVICE_PRI))
    return fail(EOPNOTSUPP, "{} has {}: guest SVA needs PASID and PRI (try --device dma0)", options.device,
                !(device.flags & IOASID_DEVICE_PASID) ? "no PASID capability" : "PASID but no PRI");
  const bool has_ats = device.flags & IOASID_DEVICE_ATS;
  ioasid_attach attach{};
  attach.dev_id = dev_id;
  attach.ioasid = nested_id;
  attach.pasid = pasid;
  IOASID_TRY(node->call(IOASID_ATTACH_IOASID_PASID, attach, "IOASID_ATTACH_IOASID_PASID"));
  step("DEVICE_BIND {} -> dev_id {} (PASID, PRI{}); ATTACH_IOASID_PASID PASID {} -> IOASID {}: its requests at "
       "PASID {} now walk the guest's table",
       options.device, dev_id, has_ats ? ", ATS" : "", pasid, nested_id, pasid);
  const std::string caches = has_ats ? "the IOTLB and the device-TLB" : "the IOTLB";

  // ---- DMA with guest virtual addresses ----
  std::vector<std::byte> pages(kBufferPages * kPage);
  for (uint64_t page = 0; page < kBufferPages; ++page) {
    const std::string text = fmt::format("{} wrote this at GVA {:#x} (guest PASID {})", options.device,
                                         gva_of_page(page), options.gpasid);
    std::memcpy(pages.data() + page * kPage, text.data(), text.size());
  }
  auto written = device_dma(*node, dev_id, IOASID_DMA_WRITE, pasid, kBufferGva, pages);
  IOASID_TRY(written);
  if (written->out_status != IOASID_DMA_OK)
    return fail(EIO, "DEVICE_DMA WRITE at GVA {:#x}: {}", kBufferGva, dma_outcome(*written));
  if (std::memcmp(ram.at(kBufferGpa), pages.data(), pages.size()) != 0)
    return fail(EIO, "the DMA reported OK but guest RAM at GPA {:#x} does not hold the bytes", kBufferGpa);
  step("DEVICE_DMA WRITE pasid {} GVA {:#x} {} bytes -> {}; the guest reads at GPA {:#x}: \"{}\" (each of the {} "
       "pages starts with its own line)",
       pasid, kBufferGva, pages.size(), dma_outcome(*written), kBufferGpa, ram.text(kBufferGpa), kBufferPages);

  auto leaf = builder->entry_gpa(kBufferGva, 1);
  IOASID_TRY(leaf);
  auto pte = ram.read64(*leaf);
  IOASID_TRY(pte);
  std::vector<std::byte> readback(pages.size());
  auto read = device_dma(*node, dev_id, 0, pasid, kBufferGva, readback);
  IOASID_TRY(read);
  if (read->out_status != IOASID_DMA_OK)
    return fail(EIO, "DEVICE_DMA read at GVA {:#x}: {}", kBufferGva, dma_outcome(*read));
  if (readback != pages) return fail(EIO, "the DMA read reported OK but returned other bytes than were written");
  step("DEVICE_DMA read pasid {} GVA {:#x} {} bytes -> {}: the same bytes; the walk set A{} in the guest's PTE "
       "(GPA {:#x} = {:#x})",
       pasid, kBufferGva, readback.size(), dma_outcome(*read), (*pte & fl::kDirty) ? " and D" : "", *leaf, *pte);

  // ---- the guest unmaps a page: stale until invalidated, then a page request ----
  const uint64_t stale_gva = gva_of_page(kUnmappedPage);
  const uint64_t stale_gpa = gpa_of_page(kUnmappedPage);
  auto stale_pte = builder->entry_gpa(stale_gva, 1);
  IOASID_TRY(stale_pte);
  auto unmapped = builder->unmap(stale_gva, kPage);
  IOASID_TRY(unmapped);
  step("guest unmaps GVA {:#x} ({} bytes): its PTE at GPA {:#x} is 0 now, and it does not invalidate yet", stale_gva,
       *unmapped, *stale_pte);

  std::vector<std::byte> stale(64);
  const std::string stale_text = "a stale write through a forgotten translation";
  std::memcpy(stale.data(), stale_text.data(), stale_text.size());
  auto stale_write = device_dma(*node, dev_id, IOASID_DMA_WRITE, pasid, stale_gva, stale);
  IOASID_TRY(stale_write);
  if (stale_write->out_status != IOASID_DMA_OK || ram.text(stale_gpa) != stale_text)
    return fail(EIO, "DEVICE_DMA WRITE at the just-unmapped GVA {:#x} ended {}, guest RAM at GPA {:#x} holds \"{}\": "
                "expected the stale translation to be used",
                stale_gva, dma_outcome(*stale_write), stale_gpa, ram.text(stale_gpa));
  step("DEVICE_DMA WRITE pasid {} GVA {:#x} -> {}: still reaches the old page, GPA {:#x} reads \"{}\" ({} kept "
       "the translation)",
       pasid, stale_gva, dma_outcome(*stale_write), stale_gpa, ram.text(stale_gpa), caches);

  // As a Linux guest does after clearing a PTE of a process sharing its memory: a
  // PASID-based IOTLB invalidation (with the leaf hint) and a device-TLB invalidation,
  // the PASID being the guest's own number, which the vIOMMU passes on with GPASID.
  ioasid_cache_invalidate_info entries[2] = {};
  entries[0].cache = IOASID_CACHE_IOTLB;
  entries[0].flags = IOASID_INV_FLAGS_PASID | IOASID_INV_FLAGS_GPASID | IOASID_INV_FLAGS_LEAF;
  entries[1].cache = IOASID_CACHE_DEV_IOTLB;
  entries[1].flags = IOASID_INV_FLAGS_PASID | IOASID_INV_FLAGS_GPASID;
  for (auto& entry : entries) {
    entry.granularity = IOASID_INV_GRANU_ADDR;
    entry.pasid = options.gpasid;
    entry.addr = stale_gva;
    entry.granule_size = kPage;
    entry.nb_granules = 1;
  }
  ioasid_cache_invalidate invalidate{};
  invalidate.ioasid = nested_id;
  invalidate.entry_len = sizeof entries[0];
  invalidate.entry_num = 2;
  invalidate.entries_uptr = reinterpret_cast<uintptr_t>(entries);
  if (auto done = node->call(IOASID_CACHE_INVLD, invalidate, "IOASID_CACHE_INVLD"); !done)
    return fail(done.code(), "{} (entries processed: {})", done.error().why, invalidate.entry_num);
  step("guest invalidates: CACHE_INVLD IOASID {} [IOTLB ADDR {:#x} x1 4K PASID|GPASID|LEAF gpasid {}, DEV_IOTLB "
       "ADDR {:#x} x1 4K PASID|GPASID gpasid {}] -> 0, entry_num {}",
       nested_id, stale_gva, options.gpasid, stale_gva, options.gpasid, invalidate.entry_num);

  auto nowait = device_dma(*node, dev_id, IOASID_DMA_WRITE | IOASID_DMA_NOWAIT, pasid, stale_gva, stale);
  IOASID_TRY(nowait);
  if (nowait->out_status != IOASID_DMA_PAGE_REQ)
    return fail(EIO, "DEVICE_DMA WRITE|NOWAIT at GVA {:#x} after the invalidation ended {}, expected PAGE_REQ",
                stale_gva, dma_outcome(*nowait));
  step("DEVICE_DMA WRITE|NOWAIT pasid {} GVA {:#x} -> out_status {}, out_fault_addr {:#x}, out_fault_reason {}: "
       "{} has PRI, so the fault is a page request",
       pasid, stale_gva, dma_status_name(nowait->out_status), nowait->out_fault_addr,
       fault_reason_name(nowait->out_fault_reason), options.device);
  auto unanswered = read_page_request(*node);
  IOASID_TRY(unanswered);
  step("poll -> POLLIN; read() -> {}", describe_page_request(*unanswered));

  // ---- a page request the guest answers while the DMA waits ----
  // The device writes across the end of the last mapped page into the next one, which
  // the guest has not mapped yet (as a process's memory is populated on first touch).
  std::vector<std::byte> message(64);
  const std::string message_text = "written across a page boundary, half of it after a page request";
  std::memcpy(message.data(), message_text.data(), std::min(message_text.size(), message.size() - 1));
  const uint64_t message_gva = gva_of_page(kDemandPage) - message.size() / 2;
  auto waiting = std::async(std::launch::async, [&] {
    return device_dma(*node, dev_id, IOASID_DMA_WRITE, pasid, message_gva, message);
  });
  auto demand = read_page_request(*node);
  if (!demand) return std::move(demand).error();  // the DMA gives up at the daemon's time limit
  const bool still_waiting = waiting.wait_for(std::chrono::milliseconds(100)) == std::future_status::timeout;
  step("DEVICE_DMA WRITE pasid {} GVA {:#x} {} bytes on a thread; poll + read() -> {}{}", pasid, message_gva,
       message.size(), describe_page_request(*demand),
       still_waiting ? "; the DMA waits for the answer" : "; but the DMA has ended already");

  IOASID_TRY(builder->map(demand->addr, gpa_of_page(kDemandPage), kPage, user_data));
  IOASID_TRY(page_response(*node, dev_id, demand->pasid, demand->grpid, IOASID_PAGE_RESP_SUCCESS));
  step("guest maps GVA {:#x} -> GPA {:#x}; PAGE_RESP dev_id {} pasid {} grpid {} SUCCESS -> 0", demand->addr,
       gpa_of_page(kDemandPage), dev_id, demand->pasid, demand->grpid);

  auto completed = waiting.get();
  IOASID_TRY(completed);
  const uint64_t message_gpa = gpa_of_page(kDemandPage) - message.size() / 2;
  if (completed->out_status != IOASID_DMA_OK || std::memcmp(ram.at(message_gpa), message.data(), message.size()) != 0)
    return fail(EIO, "the waiting DMA ended {}; guest RAM at GPA {:#x} reads \"{}\"", dma_outcome(*completed),
                message_gpa, ram.text(message_gpa));
  step("the waiting DEVICE_DMA returns out_status {}: the device retried where it stopped; GPA {:#x} reads \"{}\"",
       dma_outcome(*completed), message_gpa, ram.text(message_gpa));

  // ---- the NOWAIT request's group ----
  // Its group stays outstanding (one of the device's 512) until a PAGE_RESP closes it
  // or the file closes. The guest unmapped that page on purpose: it answers INVALID, as
  // Linux does for an address the process has no mapping at.
  IOASID_TRY(page_response(*node, dev_id, unanswered->pasid, unanswered->grpid, IOASID_PAGE_RESP_INVALID));
  auto again = page_response(*node, dev_id, unanswered->pasid, unanswered->grpid, IOASID_PAGE_RESP_INVALID);
  if (again) return fail(EIO, "a second PAGE_RESP for group {} was accepted", unanswered->grpid);
  step("PAGE_RESP grpid {} INVALID (the NOWAIT request of GVA {:#x}, which the guest unmapped) -> 0: the group is "
       "closed; the same PAGE_RESP again -> {}",
       unanswered->grpid, unanswered->addr, errno_name(again.code()));

  // ---- teardown ----
  ioasid_unbind_pgtbl unbind{};
  unbind.ioasid = nested_id;
  IOASID_TRY(node->call(IOASID_UNBIND_PGTBL, unbind, "IOASID_UNBIND_PGTBL"));
  auto unbound = device_dma(*node, dev_id, 0, pasid, kBufferGva, std::span(readback).first(8));
  IOASID_TRY(unbound);
  if (unbound->out_status != IOASID_DMA_FAULT)
    return fail(EIO, "DEVICE_DMA after UNBIND_PGTBL ended {}, expected FAULT", dma_outcome(*unbound));
  step("UNBIND_PGTBL IOASID {} -> 0; DEVICE_DMA read pasid {} GVA {:#x} -> {} (nothing cached survives)", nested_id,
       pasid, kBufferGva, dma_outcome(*unbound));

  ioasid_attach detach = attach;
  IOASID_TRY(node->call(IOASID_DETACH_IOASID_PASID, detach, "IOASID_DETACH_IOASID_PASID"));
  step("DETACH_IOASID_PASID {} PASID {} -> 0", options.device, pasid);

  node.reset();
  auto reopened = Node::open(path);
  IOASID_TRY(reopened);
  auto rebound = bind_device(*reopened, options.device);
  if (!rebound) return fail(rebound.code(), "{} in a new open file: {}", options.device, rebound.error().why);
  step("close(): the daemon frees PASID {} (gpasid {}), IOASIDs {} and {}, unbinds {}; a new open file binds {} "
       "again -> dev_id {}",
       pasid, options.gpasid, nested_id, stage2.out_ioasid, options.device, options.device, *rebound);
  return ioasid::success();
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
      ("help,h", "show this help and exit")
      ("dev,d", po::value(&dev)->value_name("PATH"), "the node to open (default: $IOASID_DEV, else /dev/ioasid)")
      ("device", po::value(&options.device)->value_name("NAME")->default_value(options.device),
       "the dma device with PASID and PRI to give the guest (see `ioasidctl devices`)")
      ("gpasid", po::value(&options.gpasid)->value_name("N")->default_value(options.gpasid),
       "the guest's PASID number");
  po::variables_map vm;
  if (auto exit_code = parse_command_line(argc, argv, "mini-vmm", description, vm)) return *exit_code;

  const std::string path = resolve_node_path(dev);
  fmt::print("mini-vmm: guest SVA through {} (pid {})\n", path, ::getpid());
  std::fflush(stdout);
  bool unsupported = false;
  if (auto done = run(path, options, unsupported); !done) {
    std::fflush(stdout);
    std::cerr << fmt::format("mini-vmm: step [{}] failed: {} ({})\n", step_number + 1, done.error().why,
                             errno_name(done.error().code));
    return unsupported ? kExitUnsupported : kExitFailed;
  }
  return 0;
}

// SPDX-License-Identifier: MIT
// Nested IOASIDs, BIND_PGTBL, UNBIND_PGTBL and CACHE_INVLD: a "guest" keeps its RAM in
// a memfd mapped at GPA 0 of a kernel-managed IOASID, builds an x86 first-level table
// in it by hand, binds it on a nested IOASID and lets dma0 (PASID, ATS) and dma1 (RID)
// DMA with guest virtual addresses. The tables here are written independently of the
// daemon's own first-level code.
#include "harness.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <set>
#include <thread>

namespace conf {
namespace {

constexpr uint64_t k4K = 4096, k2M = 2ull << 20;
constexpr uint64_t kP = 1, kRW = 2, kUS = 4, kA = 1ull << 5, kD = 1ull << 6;
constexpr uint64_t kFrame = 0x000ffffffffff000ull;

Errno free_ioas(int fd, uint32_t ioasid) {
  ioasid_free request{.ioasid = ioasid};
  return ioctl_errno(fd, IOASID_FREE, &request);
}

uint32_t alloc_nested(int fd, uint32_t parent, Errno expect = kOk) {
  ioasid_alloc alloc{.flags = IOASID_ALLOC_NESTED, .parent = parent};
  EXPECT_EQ(ioctl_errno(fd, IOASID_ALLOC, &alloc), expect) << "parent " << parent;
  return alloc.out_ioasid;
}

ioasid_bind_pgtbl bind_request(uint32_t ioasid, uint64_t root, uint64_t flags = 0) {
  return {.ioasid = ioasid, .format = IOASID_PGTBL_VTD_FL, .flags = flags, .pgtbl_addr = root, .addr_width = 48};
}

Errno bind(int fd, const ioasid_bind_pgtbl& request) {
  ioasid_bind_pgtbl copy = request;
  return ioctl_errno(fd, IOASID_BIND_PGTBL, &copy);
}

Errno unbind(int fd, uint32_t ioasid, uint32_t flags = 0) {
  ioasid_unbind_pgtbl request{.ioasid = ioasid, .flags = flags};
  return ioctl_errno(fd, IOASID_UNBIND_PGTBL, &request);
}

// Guest RAM at GPA 0 with a 4-level first-level table at GPA 0x1000; table pages come
// from [0x1000, 1 MiB), data pages above. The IOASIDs are kept to attach devices to.
struct Guest {
  explicit Guest(const Node& owner)
      : node(owner.fd()), ram(kRamSize, true), parent_ioas(must(client::Ioas::allocate(owner.file()))),
        nested_ioas(must(client::Ioas::allocate_nested(parent_ioas))), parent(parent_ioas.id()),
        nested(nested_ioas.id()) {
    map_memfd(parent_ioas, ram, {.iova = 0});  // guest RAM at GPA 0
    root = new_table();
  }
  static constexpr uint64_t kRamSize = 8 * k2M;

  uint64_t& word(uint64_t gpa) { return *reinterpret_cast<uint64_t*>(ram.bytes() + gpa); }
  uint8_t* bytes(uint64_t gpa) { return ram.bytes() + gpa; }
  uint64_t new_table() {
    const uint64_t gpa = next_table;
    next_table += k4K;
    std::memset(bytes(gpa), 0, k4K);
    return gpa;
  }
  // The leaf entry of gva (4 KiB pages), creating the tables on the way.
  uint64_t& leaf(uint64_t gva) {
    uint64_t table = root;
    for (int level = 4; level > 1; --level) {
      uint64_t& entry = word(table + ((gva >> (12 + 9 * (level - 1))) & 511) * 8);
      if (!(entry & kP)) entry = new_table() | kP | kRW | kUS;
      table = entry & kFrame;
    }
    return word(table + ((gva >> 12) & 511) * 8);
  }
  void map(uint64_t gva, uint64_t gpa, uint64_t flags = kP | kRW | kUS) { leaf(gva) = gpa | flags; }
  Errno bind_table(uint64_t flags = 0) { return bind(node, bind_request(nested, root, flags)); }

  int node;
  Memfd ram;
  client::Ioas parent_ioas, nested_ioas;
  uint32_t parent = 0, nested = 0;
  uint64_t next_table = 0x1000;
  uint64_t root = 0;
};

constexpr uint64_t kGva = 0x7f1234560000ull;
constexpr uint64_t kDataGpa = 0x400000;

ioasid_device_dma dma(int fd, uint32_t dev, uint64_t iova, std::span<uint8_t> buffer, uint32_t flags,
                      uint32_t pasid = 0) {
  ioasid_device_dma request{.dev_id = dev,
                            .flags = flags | (pasid ? IOASID_DMA_PASID : 0u),
                            .pasid = pasid,
                            .iova = iova,
                            .length = buffer.size(),
                            .buf_uptr = reinterpret_cast<uint64_t>(buffer.data())};
  EXPECT_EQ(ioctl_errno(fd, IOASID_DEVICE_DMA, &request), kOk);
  return request;
}

// dma0 attached at a fresh PASID to the guest's nested IOASID.
struct VsvaSetup {
  VsvaSetup() : node(O_NONBLOCK), guest(node) {
    auto dma0 = bound_device(node, "dma0");
    pasid = alloc_pasid(node, slot(50));
    must(client::Attachment::attach_pasid(dma0, guest.nested_ioas, pasid)).release();
    dev = dma0.release();
  }
  int fd() const { return node.fd(); }
  uint8_t read_byte(uint64_t gva, uint32_t flags = 0) {
    uint8_t value = 0;
    auto out = dma(fd(), dev, gva, std::span(&value, 1), flags, pasid);
    EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_OK)) << "reason " << out.out_fault_reason;
    return value;
  }
  Node node;
  Guest guest;
  uint32_t dev = 0;
  uint32_t pasid = 0;
};

TEST(NestedAlloc, Rows) {
  Node node;
  const uint32_t parent = alloc_ioas(node);
  const uint32_t nested = alloc_nested(node.fd(), parent);
  alloc_nested(node.fd(), parent + 40, Err(ENOENT));
  alloc_nested(node.fd(), nested, Err(EINVAL));  // nested on nested
  Node other;
  alloc_nested(other.fd(), parent, Err(ENOENT));  // another file's parent
  ioasid_iova_ranges ranges{.ioasid = nested};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_IOVA_RANGES, &ranges), Err(EINVAL)) << "IOVA_RANGES of a nested IOASID";
  EXPECT_EQ(free_ioas(node.fd(), parent), Err(EBUSY)) << "a nested IOASID uses it";

  Memfd file(k4K, true);
  ioasid_map_dma map{.flags = IOASID_MAP_READABLE, .ioasid = nested, .user_va = file.va, .length = k4K};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_MAP_DMA, &map), Err(EINVAL)) << "a nested IOASID has no kernel table";
  ioasid_map_file map_file{.flags = IOASID_MAP_READABLE, .ioasid = nested, .fd = file.fd, .length = k4K};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_MAP_FILE, &map_file), Err(EINVAL));
  ioasid_unmap_dma unmap{.ioasid = nested, .iova = 0, .length = ~0ull};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_UNMAP_DMA, &unmap), Err(EINVAL));
  ioasid_dirty_tracking tracking{.ioasid = nested, .flags = IOASID_DIRTY_ENABLE};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_SET_DIRTY_TRACKING, &tracking), Err(EINVAL));

  EXPECT_EQ(free_ioas(node.fd(), nested), kOk);
  EXPECT_EQ(free_ioas(node.fd(), parent), kOk) << "free again once the nested IOASID is gone";
  const auto info = get_info(node.fd());
  EXPECT_TRUE(info.features & (1u << IOASID_FEAT_NESTING));
  EXPECT_TRUE(info.features & (1u << IOASID_FEAT_BIND_PGTBL));
  EXPECT_TRUE(info.features & (1u << IOASID_FEAT_CACHE_INVLD));
  EXPECT_TRUE(info.pgtbl_formats & (1u << IOASID_PGTBL_VTD_FL));
}

TEST(BindPgtbl, Rows) {
  Node node;
  Guest guest(node);
  auto request = bind_request(guest.nested, guest.root);
  auto with = [&](auto change) {
    auto copy = request;
    change(copy);
    return bind(node.fd(), copy);
  };
  EXPECT_EQ(with([&](auto& r) { r.ioasid = guest.parent; }), Err(EINVAL)) << "not nested";
  EXPECT_EQ(with([&](auto& r) { r.ioasid = guest.nested + 40; }), Err(ENOENT));
  EXPECT_EQ(with([](auto& r) { r.format = 2; }), Err(EOPNOTSUPP)) << "unknown format";
  EXPECT_EQ(with([](auto& r) { r.flags = 1ull << 7; }), Err(EOPNOTSUPP)) << "unknown flag";
  EXPECT_EQ(with([](auto& r) { r.__reserved = 1; }), Err(EOPNOTSUPP));
  EXPECT_EQ(with([](auto& r) { r.addr_width = 39; }), Err(EINVAL));
  EXPECT_EQ(with([](auto& r) { r.pgtbl_addr += 8; }), Err(EINVAL)) << "not 4 KiB aligned";
  EXPECT_EQ(with([](auto& r) { r.pgtbl_addr = Guest::kRamSize + k2M; }), Err(EINVAL)) << "not mapped in the parent";
  EXPECT_EQ(with([](auto& r) { r.flags = IOASID_VTD_FL_SRE | IOASID_VTD_FL_WPE | IOASID_VTD_FL_CD; }), kOk);
  EXPECT_EQ(bind(node.fd(), request), Err(EBUSY)) << "bound already";
  EXPECT_EQ(unbind(node.fd(), guest.nested, 1), Err(EOPNOTSUPP));
  EXPECT_EQ(unbind(node.fd(), guest.parent), Err(EINVAL));
  EXPECT_EQ(unbind(node.fd(), guest.nested), kOk);
  EXPECT_EQ(unbind(node.fd(), guest.nested), kOk) << "idempotent";
  request.addr_width = 57;
  EXPECT_EQ(bind(node.fd(), request), kOk) << "5 levels";
}

TEST(NestedDma, GuestVirtualAddressesReachGuestRam) {
  VsvaSetup s;
  s.guest.map(kGva, kDataGpa);
  s.guest.map(kGva + k4K, kDataGpa + 3 * k4K, kP | kUS);  // read-only for the device
  std::vector<uint8_t> data(64, 0x5c);

  auto out = dma(s.fd(), s.dev, kGva, data, IOASID_DMA_WRITE, s.pasid);
  EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_FAULT)) << "bound nothing yet";
  EXPECT_EQ(out.out_fault_reason, uint32_t(IOASID_FAULT_REASON_BAD_PASID_ENTRY));
  EXPECT_EQ(drain_faults(s.node).size(), 1u) << "an unrecoverable fault: no page request for a PASID entry";
  ASSERT_EQ(s.guest.bind_table(), kOk);

  out = dma(s.fd(), s.dev, kGva + 100, data, IOASID_DMA_WRITE, s.pasid);
  ASSERT_EQ(out.out_status, uint32_t(IOASID_DMA_OK)) << "reason " << out.out_fault_reason;
  EXPECT_EQ(s.guest.bytes(kDataGpa)[100], 0x5c);
  EXPECT_EQ(s.guest.bytes(kDataGpa)[99], 0);
  EXPECT_EQ(s.guest.leaf(kGva) & (kA | kD), kA | kD) << "the walk set A and D in the guest's leaf";

  // A read sets A only.
  s.guest.bytes(kDataGpa + 3 * k4K)[0] = 0x77;
  EXPECT_EQ(s.read_byte(kGva + k4K), 0x77);
  EXPECT_EQ(s.guest.leaf(kGva + k4K) & (kA | kD), kA);

  // dma0 has PRI: at a PASID a translation fault becomes a page request (NOWAIT:
  // reported at once).
  out = dma(s.fd(), s.dev, kGva + k4K, data, IOASID_DMA_WRITE | IOASID_DMA_NOWAIT, s.pasid);
  EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_PAGE_REQ));
  EXPECT_EQ(out.out_fault_reason, uint32_t(IOASID_FAULT_REASON_PERMISSION)) << "R/W 0 in the guest's leaf";
  out = dma(s.fd(), s.dev, kGva + 5 * k4K + 12, data, IOASID_DMA_NOWAIT, s.pasid);
  EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_PAGE_REQ));
  EXPECT_EQ(out.out_fault_reason, uint32_t(IOASID_FAULT_REASON_ACCESS));
  EXPECT_EQ(out.out_fault_addr, kGva + 5 * k4K + 12) << "the fault address is the guest virtual address";
  auto faults = drain_faults(s.node);
  ASSERT_EQ(faults.size(), 2u);
  const ioasid_fault& request = faults.back();
  EXPECT_EQ(request.type, uint32_t(IOASID_FAULT_PAGE_REQ));
  EXPECT_EQ(request.flags, uint32_t(IOASID_FAULT_PASID_VALID | IOASID_FAULT_ADDR_VALID | IOASID_FAULT_LAST_PAGE));
  EXPECT_EQ(request.addr, kGva + 5 * k4K) << "a page request names the page";
  EXPECT_EQ(request.pasid, s.pasid);
  EXPECT_EQ(request.ioasid, s.guest.nested);
  EXPECT_EQ(request.perm, uint32_t(IOASID_FAULT_PERM_READ));
  EXPECT_NE(request.grpid, faults.front().grpid) << "one group per request";
}

// Without PRI (dma1, by RID) a nested fault is unrecoverable, and its record tells
// the guest virtual address from the guest-physical address of the entry that stopped
// the walk.
TEST(NestedDma, UnrecoverableFaultsNameTheFetchAddress) {
  Node node(O_NONBLOCK);
  Guest guest(node);
  const auto dma1 = bound_device(node, "dma1");
  must(client::Attachment::attach(dma1, guest.nested_ioas)).release();
  const uint32_t dev = dma1.id();
  guest.map(kGva, kDataGpa);
  ASSERT_EQ(guest.bind_table(), kOk);
  std::vector<uint8_t> data(8);
  EXPECT_EQ(dma(node.fd(), dev, kGva, data, IOASID_DMA_WRITE).out_status, uint32_t(IOASID_DMA_OK));
  auto out = dma(node.fd(), dev, kGva + 5 * k4K, data, 0);
  EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_FAULT));
  EXPECT_EQ(out.out_fault_reason, uint32_t(IOASID_FAULT_REASON_ACCESS));
  const auto faults = drain_faults(node);
  ASSERT_EQ(faults.size(), 1u);
  const ioasid_fault& fault = faults[0];
  EXPECT_EQ(fault.type, uint32_t(IOASID_FAULT_DMA_UNRECOV));
  EXPECT_EQ(fault.addr, kGva + 5 * k4K);
  ASSERT_TRUE(fault.flags & IOASID_FAULT_FETCH_ADDR_VALID);
  // The leaf table of kGva holds the entry of kGva + 5 pages, not present.
  const uint64_t expected = reinterpret_cast<uint8_t*>(&guest.leaf(kGva + 5 * k4K)) - guest.ram.bytes();
  EXPECT_EQ(fault.fetch_addr, expected) << "the GPA of the guest's non-present leaf entry";
}

// A second-stage fault (the parent IOASID's table refuses the GPA) belongs to the VMM,
// not the guest: even on a PRI device at a PASID it is an unrecoverable fault whose
// record says SECOND_STAGE and names the GPA, never a page request (issue 15).
TEST(NestedDma, SecondStageFaultsAreUnrecoverableAndNameTheGpa) {
  VsvaSetup s;
  constexpr uint64_t kUnmappedGpa = 0x4000000;  // beyond guest RAM: not in the parent
  constexpr uint64_t kReadOnlyGpa = 0x2000000;  // mapped read-only in the parent
  Memfd read_only(k4K, true);
  map_memfd(s.guest.parent_ioas, read_only, {.flags = IOASID_MAP_READABLE, .iova = kReadOnlyGpa});
  s.guest.map(kGva, kUnmappedGpa);
  s.guest.map(kGva + k4K, kReadOnlyGpa);  // writable for the guest, read-only for its VMM
  ASSERT_EQ(s.guest.bind_table(), kOk);
  drain_faults(s.node);
  std::vector<uint8_t> data(8, 0x11);

  struct Case {
    uint64_t gva;
    uint32_t flags;
    uint64_t gpa;
    uint32_t reason;
    uint32_t perm;
    const char* what;
  };
  const Case cases[] = {
      {kGva + 0x10, 0, kUnmappedGpa + 0x10, IOASID_FAULT_REASON_ACCESS, IOASID_FAULT_PERM_READ,
       "a GPA the parent lacks"},
      {kGva + 0x10, IOASID_DMA_WRITE, kUnmappedGpa + 0x10, IOASID_FAULT_REASON_ACCESS, IOASID_FAULT_PERM_WRITE,
       "a write to a GPA the parent lacks"},
      {kGva + k4K + 0x20, IOASID_DMA_WRITE, kReadOnlyGpa + 0x20, IOASID_FAULT_REASON_PERMISSION,
       IOASID_FAULT_PERM_WRITE, "a write to a GPA the parent maps read-only"},
  };
  for (const Case& c : cases) {
    for (const uint32_t wait : {0u, uint32_t(IOASID_DMA_NOWAIT)}) {
      const auto out = dma(s.fd(), s.dev, c.gva, data, c.flags | wait, s.pasid);
      EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_FAULT)) << c.what << ": not a page request";
      EXPECT_EQ(out.out_fault_addr, c.gva) << c.what;
      EXPECT_EQ(out.out_fault_reason, c.reason) << c.what;
      const auto records = drain_faults(s.node);
      ASSERT_EQ(records.size(), 1u) << c.what;
      const ioasid_fault& record = records[0];
      EXPECT_EQ(record.type, uint32_t(IOASID_FAULT_DMA_UNRECOV)) << c.what;
      EXPECT_TRUE(record.flags & IOASID_FAULT_SECOND_STAGE) << c.what;
      EXPECT_TRUE(record.flags & IOASID_FAULT_ADDR_VALID) << c.what;
      EXPECT_EQ(record.addr, c.gva) << c.what << ": the guest virtual address";
      EXPECT_EQ(record.gpa, c.gpa) << c.what << ": the GPA the parent refused";
      EXPECT_EQ(record.reason, c.reason) << c.what;
      EXPECT_EQ(record.perm, c.perm) << c.what;
      EXPECT_EQ(record.pasid, s.pasid) << c.what;
      EXPECT_EQ(record.ioasid, s.guest.nested) << c.what;
      EXPECT_EQ(record.__reserved, 0u) << c.what;
    }
  }
  // A read of the read-only GPA works; a first-stage fault stays a page request.
  EXPECT_EQ(s.read_byte(kGva + k4K), 0);
  const auto out = dma(s.fd(), s.dev, kGva + 7 * k4K, data, IOASID_DMA_NOWAIT, s.pasid);
  EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_PAGE_REQ)) << "the guest's own missing page";
  const auto records = drain_faults(s.node);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].type, uint32_t(IOASID_FAULT_PAGE_REQ));
  EXPECT_FALSE(records[0].flags & IOASID_FAULT_SECOND_STAGE);
  EXPECT_EQ(records[0].gpa, 0u);
}

// The walk's own reads of the guest's table are second-stage too: a first-level table
// the parent lacks is the VMM's fault, reported with the table entry's GPA.
TEST(NestedDma, ASecondStageFaultOnTheGuestsTableNamesTheEntrysGpa) {
  VsvaSetup s;
  s.guest.map(kGva, kDataGpa);
  // Point the guest's leaf table pointer (level 2 entry) beyond guest RAM.
  uint64_t table = s.guest.root;
  for (int level = 4; level > 2; --level)
    table = s.guest.word(table + ((kGva >> (12 + 9 * (level - 1))) & 511) * 8) & kFrame;
  uint64_t& pde = s.guest.word(table + ((kGva >> 21) & 511) * 8);
  constexpr uint64_t kMissingTable = 0x6000000;
  pde = kMissingTable | kP | kRW | kUS;
  ASSERT_EQ(s.guest.bind_table(), kOk);
  drain_faults(s.node);
  std::vector<uint8_t> data(8);
  const auto out = dma(s.fd(), s.dev, kGva, data, IOASID_DMA_NOWAIT, s.pasid);
  EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_FAULT)) << "not a page request";
  const auto records = drain_faults(s.node);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].type, uint32_t(IOASID_FAULT_DMA_UNRECOV));
  EXPECT_TRUE(records[0].flags & IOASID_FAULT_SECOND_STAGE);
  const uint64_t entry_gpa = kMissingTable + ((kGva >> 12) & 511) * 8;
  EXPECT_EQ(records[0].gpa, entry_gpa) << "the GPA of the leaf entry the walk could not read";
  EXPECT_EQ(records[0].fetch_addr, entry_gpa);
}

TEST(NestedDma, SupervisorRequestsNeedSreAndUserPagesNeedUs) {
  VsvaSetup s;
  s.guest.map(kGva, kDataGpa);
  s.guest.map(kGva + k4K, kDataGpa + k4K, kP | kRW);  // supervisor only
  ASSERT_EQ(s.guest.bind_table(), kOk);
  std::vector<uint8_t> byte(1);
  auto out = dma(s.fd(), s.dev, kGva, byte, IOASID_DMA_PRIV | IOASID_DMA_NOWAIT, s.pasid);
  EXPECT_EQ(out.out_fault_reason, uint32_t(IOASID_FAULT_REASON_PERMISSION)) << "PRIV without SRE";
  out = dma(s.fd(), s.dev, kGva + k4K, byte, IOASID_DMA_NOWAIT, s.pasid);
  EXPECT_EQ(out.out_fault_reason, uint32_t(IOASID_FAULT_REASON_PERMISSION)) << "a user request to a supervisor page";
  ASSERT_EQ(unbind(s.fd(), s.guest.nested), kOk);
  ASSERT_EQ(s.guest.bind_table(IOASID_VTD_FL_SRE), kOk);
  EXPECT_EQ(dma(s.fd(), s.dev, kGva + k4K, byte, IOASID_DMA_PRIV, s.pasid).out_status, uint32_t(IOASID_DMA_OK));
  EXPECT_EQ(dma(s.fd(), s.dev, kGva + k4K, byte, IOASID_DMA_NOWAIT, s.pasid).out_fault_reason,
            uint32_t(IOASID_FAULT_REASON_PERMISSION))
      << "a cached supervisor translation must not serve a user request";
}

TEST(NestedDma, UnbindMakesDevicesFaultAndRebindServesAgain) {
  VsvaSetup s;
  s.guest.map(kGva, kDataGpa);
  ASSERT_EQ(s.guest.bind_table(), kOk);
  s.guest.bytes(kDataGpa)[0] = 9;
  EXPECT_EQ(s.read_byte(kGva), 9);
  ASSERT_EQ(unbind(s.fd(), s.guest.nested), kOk);
  std::vector<uint8_t> byte(1);
  EXPECT_EQ(dma(s.fd(), s.dev, kGva, byte, 0, s.pasid).out_fault_reason,
            uint32_t(IOASID_FAULT_REASON_BAD_PASID_ENTRY))
      << "nothing cached survives UNBIND";
  ASSERT_EQ(s.guest.bind_table(), kOk);
  EXPECT_EQ(s.read_byte(kGva), 9);
}

ioasid_cache_invalidate_info entry(uint8_t cache, uint8_t granularity, uint32_t pasid = 0, uint64_t addr = 0,
                                   uint64_t nb = 0, uint16_t flags = IOASID_INV_FLAGS_PASID) {
  return {.cache = cache, .granularity = granularity, .flags = flags, .pasid = pasid, .addr = addr,
          .granule_size = nb ? k4K : 0, .nb_granules = nb};
}

// ATS through a nested IOASID: a model translates a guest virtual address once (GVA ->
// GPA in the guest's table, A and D set there as a walk does; GPA -> this process's view
// of guest RAM), and the guest's device-TLB invalidation, not its IOTLB one, reaches it.
TEST(NestedAts, TranslatesGuestVirtualAddressesAndObeysDevIotlbInvalidations) {
  VsvaSetup s;
  s.guest.map(kGva, kDataGpa);
  ASSERT_EQ(s.guest.bind_table(), kOk);
  ioasid_ats_run run{};
  ioasid_ats_translate request{.flags = IOASID_ATS_PASID | IOASID_ATS_WRITE,
                               .dev_id = s.dev,
                               .pasid = s.pasid,
                               .num_runs = 1,
                               .iova = kGva + 0x10,
                               .length = 0x100,
                               .runs_uptr = reinterpret_cast<uint64_t>(&run)};
  ASSERT_EQ(ioctl_errno(s.fd(), IOASID_ATS_TRANSLATE, &request), kOk);
  ASSERT_EQ(request.out_status, uint32_t(IOASID_ATS_OK)) << "reason " << request.out_fault_reason;
  EXPECT_EQ(run.uaddr, reinterpret_cast<uint64_t>(s.guest.bytes(kDataGpa + 0x10)))
      << "guest RAM is a memfd this process maps: the run is in that mapping";
  EXPECT_EQ(run.perm, uint32_t(IOASID_ATS_RUN_WRITE | IOASID_ATS_RUN_FILE));
  EXPECT_EQ(s.guest.leaf(kGva) & (kA | kD), kA | kD) << "the write translation set A and D in the guest's leaf";

  auto invalidate = [&](uint8_t cache) {
    const auto info = entry(cache, IOASID_INV_GRANU_ADDR, s.pasid, kGva, 1);
    ioasid_cache_invalidate inv{.ioasid = s.guest.nested,
                                .entry_len = sizeof info,
                                .entry_num = 1,
                                .entries_uptr = reinterpret_cast<uint64_t>(&info)};
    return ioctl_errno(s.fd(), IOASID_CACHE_INVLD, &inv);
  };
  EXPECT_EQ(invalidate(IOASID_CACHE_IOTLB), kOk);
  EXPECT_TRUE(drain_faults(s.node).empty()) << "an IOTLB invalidation does not reach device TLBs";
  std::optional<ioasid_ats_invalidation> seen;
  std::thread model([&] {
    auto record = next_fault(s.node);
    if (!record) return;
    seen.emplace();
    std::memcpy(&*seen, &*record, sizeof *seen);
    ioasid_ats_ack ack{.dev_id = seen->dev_id, .itag = seen->itag};
    EXPECT_EQ(ioctl_errno(s.fd(), IOASID_ATS_INV_ACK, &ack), kOk);
  });
  EXPECT_EQ(invalidate(IOASID_CACHE_DEV_IOTLB), kOk);
  model.join();
  ASSERT_TRUE(seen) << "the guest's device-TLB invalidation reached the model";
  EXPECT_EQ(seen->type, uint32_t(IOASID_FAULT_ATS_INVALIDATE));
  EXPECT_EQ(seen->flags, uint32_t(IOASID_FAULT_PASID_VALID));
  EXPECT_EQ(seen->pasid, s.pasid);
  EXPECT_EQ(seen->iova, kGva + 0x10) << "what overlapped of what the model held";
  EXPECT_EQ(seen->length, 0x100u);
}

// The guest moves a page and the device keeps the old translation until the guest
// invalidates what caches it: the IOTLB, and dma0's device-TLB (ATS) separately.
void expect_stale_until(VsvaSetup& s, const std::vector<ioasid_cache_invalidate_info>& wrong,
                        const std::vector<ioasid_cache_invalidate_info>& iotlb,
                        const std::vector<ioasid_cache_invalidate_info>& device_tlb, const char* what) {
  auto invalidate = [&](const std::vector<ioasid_cache_invalidate_info>& entries) {
    if (entries.empty()) return;
    ioasid_cache_invalidate request{.ioasid = s.guest.nested,
                                    .entry_len = sizeof(ioasid_cache_invalidate_info),
                                    .entry_num = static_cast<uint32_t>(entries.size()),
                                    .entries_uptr = reinterpret_cast<uint64_t>(entries.data())};
    EXPECT_EQ(ioctl_errno(s.fd(), IOASID_CACHE_INVLD, &request), kOk) << what;
    EXPECT_EQ(request.entry_num, entries.size());
  };
  s.guest.bytes(kDataGpa)[0] = 1;
  s.guest.bytes(kDataGpa + k4K)[0] = 2;
  // The first read caches the translation. An unrelated invalidation racing with it (an
  // earlier test's file released late, as FUSE releases are) may drop the fill, as any
  // cache may drop more than it was told: then the edit shows at once, and the round
  // starts again. It must hold within a few tries.
  for (int attempt = 0;; ++attempt) {
    s.guest.map(kGva, kDataGpa);
    // Whatever an earlier round left cached goes first.
    invalidate({entry(IOASID_CACHE_IOTLB | IOASID_CACHE_DEV_IOTLB, IOASID_INV_GRANU_PASID, s.pasid)});
    ASSERT_EQ(s.read_byte(kGva), 1) << what;
    s.guest.map(kGva, kDataGpa + k4K);  // the guest's edit
    if (s.read_byte(kGva) == 1) break;   // invisible before an invalidation
    ASSERT_LT(attempt, 20) << what << ": the edit was visible before any invalidation, 20 times";
  }
  invalidate(wrong);
  EXPECT_EQ(s.read_byte(kGva), 1) << what << ": an invalidation of something else changes nothing";
  invalidate(iotlb);
  EXPECT_EQ(s.read_byte(kGva), 1) << what << ": the device-TLB still holds it";
  invalidate(device_tlb);
  EXPECT_EQ(s.read_byte(kGva), 2) << what << ": both invalidated";
}

TEST(CacheInvld, StaleUntilInvalidatedAtEachGranularity) {
  VsvaSetup s;
  ASSERT_EQ(s.guest.bind_table(), kOk);
  const uint32_t other_pasid = alloc_pasid(s.node, slot(51));
  expect_stale_until(s, {entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_ADDR, s.pasid, kGva + k4K, 1),
                         entry(IOASID_CACHE_DEV_IOTLB, IOASID_INV_GRANU_ADDR, other_pasid, kGva, 1)},
                     {entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_ADDR, s.pasid, kGva, 1, IOASID_INV_FLAGS_PASID |
                                                                                        IOASID_INV_FLAGS_LEAF)},
                     {entry(IOASID_CACHE_DEV_IOTLB, IOASID_INV_GRANU_ADDR, s.pasid, kGva, 1)}, "address");
  expect_stale_until(s, {entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_PASID, other_pasid)},
                     {entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_PASID, s.pasid)},
                     {entry(IOASID_CACHE_DEV_IOTLB, IOASID_INV_GRANU_PASID, s.pasid)}, "PASID");
  expect_stale_until(s, {entry(IOASID_CACHE_PASID, IOASID_INV_GRANU_DOMAIN, 0, 0, 0, 0)},
                     {entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_DOMAIN, 0, 0, 0, 0)},
                     {entry(IOASID_CACHE_DEV_IOTLB, IOASID_INV_GRANU_PASID, s.pasid)}, "domain");
}

// Requests without PASID through a nested IOASID (dma1 by RID) are invalidated page by
// page with IOASID_INV_FLAGS_RID_PASID: exactly the page named is dropped (issue 15).
TEST(CacheInvld, RidPasidPageSelective) {
  Node node(O_NONBLOCK);
  Guest guest(node);
  const auto dma1 = bound_device(node, "dma1");
  must(client::Attachment::attach(dma1, guest.nested_ioas)).release();
  const uint32_t dev = dma1.id();
  guest.map(kGva, kDataGpa);
  guest.map(kGva + k4K, kDataGpa + k4K);
  ASSERT_EQ(guest.bind_table(), kOk);
  for (uint64_t page = 0; page < 4; ++page) guest.bytes(kDataGpa + page * k4K)[0] = uint8_t(page + 1);
  auto read = [&](uint64_t gva) {
    uint8_t value = 0;
    const auto out = dma(node.fd(), dev, gva, std::span(&value, 1), 0);
    EXPECT_EQ(out.out_status, uint32_t(IOASID_DMA_OK)) << "reason " << out.out_fault_reason;
    return value;
  };
  auto invalidate = [&](const ioasid_cache_invalidate_info& info) {
    ioasid_cache_invalidate request{.ioasid = guest.nested, .entry_len = sizeof info, .entry_num = 1,
                                    .entries_uptr = reinterpret_cast<uint64_t>(&info)};
    return ioctl_errno(node.fd(), IOASID_CACHE_INVLD, &request);
  };
  ASSERT_EQ(read(kGva), 1);
  ASSERT_EQ(read(kGva + k4K), 2);
  guest.map(kGva, kDataGpa + 2 * k4K);  // the guest's edits
  guest.map(kGva + k4K, kDataGpa + 3 * k4K);
  EXPECT_EQ(read(kGva), 1) << "cached: the edit is invisible before an invalidation";
  EXPECT_EQ(read(kGva + k4K), 2);
  // A PASID's page-selective invalidation does not reach the RID's translations.
  const uint32_t pasid = alloc_pasid(node, slot(55));
  ASSERT_EQ(invalidate(entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_ADDR, pasid, kGva, 1)), kOk);
  EXPECT_EQ(read(kGva), 1) << "another PASID's invalidation";
  ASSERT_EQ(invalidate(entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_ADDR, 0, kGva, 1, IOASID_INV_FLAGS_RID_PASID)),
            kOk);
  EXPECT_EQ(read(kGva), 3) << "the page named was dropped";
  EXPECT_EQ(read(kGva + k4K), 2) << "the page beside it was not";
  ASSERT_EQ(invalidate(entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_PASID, 0, 0, 0, IOASID_INV_FLAGS_RID_PASID)),
            kOk);
  EXPECT_EQ(read(kGva + k4K), 4) << "RID_PASID at PASID granularity drops the RID's translations";

  // Rows: RID_PASID with PASID, at DOMAIN granularity, or with a non-zero pasid is
  // EINVAL; GPASID needs PASID as ever.
  EXPECT_EQ(invalidate(entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_ADDR, pasid, kGva, 1,
                             IOASID_INV_FLAGS_PASID | IOASID_INV_FLAGS_RID_PASID)),
            Err(EINVAL));
  EXPECT_EQ(invalidate(entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_DOMAIN, 0, 0, 0, IOASID_INV_FLAGS_RID_PASID)),
            Err(EINVAL));
  EXPECT_EQ(invalidate(entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_ADDR, 1, kGva, 1, IOASID_INV_FLAGS_RID_PASID)),
            Err(EINVAL));
  EXPECT_EQ(invalidate(entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_ADDR, 0, kGva, 1,
                             IOASID_INV_FLAGS_RID_PASID | IOASID_INV_FLAGS_GPASID)),
            Err(EINVAL));
  EXPECT_EQ(invalidate(entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_ADDR, 0, kGva, 1, 1u << 4)), Err(EOPNOTSUPP))
      << "the next bit is still unknown";
}

TEST(CacheInvld, GuestPasidEntries) {
  Node node(O_NONBLOCK);
  Guest guest(node);
  const auto dma0 = bound_device(node, "dma0");
  const uint32_t dev = dma0.id();
  const uint32_t pasid = alloc_pasid(node, slot(52), 7);
  must(client::Attachment::attach_pasid(dma0, guest.nested_ioas, pasid)).release();
  guest.map(kGva, kDataGpa);
  ASSERT_EQ(guest.bind_table(), kOk);
  guest.bytes(kDataGpa)[0] = 1;
  guest.bytes(kDataGpa + k4K)[0] = 2;
  uint8_t value = 0;
  dma(node.fd(), dev, kGva, std::span(&value, 1), 0, pasid);
  EXPECT_EQ(value, 1);
  guest.map(kGva, kDataGpa + k4K);
  const ioasid_cache_invalidate_info entries[] = {
      entry(IOASID_CACHE_IOTLB | IOASID_CACHE_DEV_IOTLB, IOASID_INV_GRANU_PASID, 7, 0, 0,
            IOASID_INV_FLAGS_PASID | IOASID_INV_FLAGS_GPASID)};
  ioasid_cache_invalidate request{.ioasid = guest.nested, .entry_len = sizeof entries[0], .entry_num = 1,
                                  .entries_uptr = reinterpret_cast<uint64_t>(entries)};
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_CACHE_INVLD, &request), kOk);
  dma(node.fd(), dev, kGva, std::span(&value, 1), 0, pasid);
  EXPECT_EQ(value, 2) << "guest PASID 7 named the host PASID";
  ioasid_cache_invalidate_info unmapped = entries[0];
  unmapped.pasid = 8;
  request.entry_num = 1;
  request.entries_uptr = reinterpret_cast<uint64_t>(&unmapped);
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_CACHE_INVLD, &request), Err(ENOENT)) << "no guest PASID 8";
}

TEST(CacheInvld, Rows) {
  Node node;
  Guest guest(node);
  const uint32_t p = alloc_pasid(node, slot(53));
  Node other;
  const uint32_t theirs = alloc_pasid(other, slot(54));

  auto run = [&](std::vector<ioasid_cache_invalidate_info> entries, uint32_t ioasid = 0, uint32_t entry_len = 32,
                 uint32_t* processed = nullptr, uint64_t uptr = 1) {
    ioasid_cache_invalidate request{.ioasid = ioasid ? ioasid : guest.nested,
                                    .entry_len = entry_len,
                                    .entry_num = static_cast<uint32_t>(entries.size()),
                                    .entries_uptr = uptr == 1 ? reinterpret_cast<uint64_t>(entries.data()) : uptr};
    const Errno err = ioctl_errno(node.fd(), IOASID_CACHE_INVLD, &request);
    if (processed) *processed = request.entry_num;
    return err;
  };
  const auto valid = entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_PASID, p);
  EXPECT_EQ(run({}), kOk) << "probe: entry_num 0";
  EXPECT_EQ(run({valid}, guest.parent), Err(EINVAL)) << "not nested";
  EXPECT_EQ(run({valid}, guest.nested + 40), Err(ENOENT));
  EXPECT_EQ(run({valid}, 0, 16), Err(EINVAL)) << "entry_len below 32";
  EXPECT_EQ(run({valid}, 0, 32, nullptr, 0), Err(EINVAL)) << "entries_uptr 0";
  EXPECT_EQ(run({valid}, 0, 32, nullptr, 8), Err(EFAULT)) << "entries_uptr unreadable";

  struct Row {
    ioasid_cache_invalidate_info info;
    Errno err;
    const char* what;
  };
  const Row rows[] = {
      {entry(0, IOASID_INV_GRANU_PASID, p), Err(EINVAL), "cache 0"},
      {entry(1u << 3, IOASID_INV_GRANU_PASID, p), Err(EINVAL), "unknown cache bit"},
      {entry(IOASID_CACHE_IOTLB, 3, p), Err(EINVAL), "granularity 3"},
      {entry(IOASID_CACHE_DEV_IOTLB, IOASID_INV_GRANU_DOMAIN, 0, 0, 0, 0), Err(EINVAL), "DOMAIN with DEV_IOTLB"},
      {entry(IOASID_CACHE_PASID, IOASID_INV_GRANU_ADDR, p, 0, 1), Err(EINVAL), "ADDR with the PASID cache"},
      {entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_PASID, p, 0, 0, 0), Err(EINVAL), "PASID without the flag"},
      {entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_ADDR, p, 0, 1, 0), Err(EINVAL), "ADDR without the flag"},
      {entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_ADDR, p, 0x1000, 0), Err(EINVAL), "nb_granules 0"},
      {entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_ADDR, p, 0x1800, 1), Err(EINVAL), "addr not aligned"},
      {entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_ADDR, p, ~0ull - 0xfff, 2), Err(EINVAL), "overflow"},
      {entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_PASID, p, 0, 0, 1u << 5), Err(EOPNOTSUPP), "unknown flag"},
      {entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_PASID, slot(53).hi), Err(ENOENT), "unallocated PASID"},
      {entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_PASID, theirs), Err(EACCES), "another file's PASID"},
      {entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_PASID, 99, 0, 0, IOASID_INV_FLAGS_PASID | IOASID_INV_FLAGS_GPASID),
       Err(ENOENT), "unmapped guest PASID"},
  };
  for (const Row& row : rows) {
    uint32_t processed = 99;
    EXPECT_EQ(run({valid, valid, row.info, valid}, 0, 32, &processed), row.err) << row.what;
    EXPECT_EQ(processed, 2u) << row.what << ": entry_num is the index of the bad entry";
  }
  auto granule = entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_ADDR, p, 0, 1);
  granule.granule_size = 8192;
  EXPECT_EQ(run({granule}), Err(EINVAL)) << "granule_size 8K";
  granule.granule_size = k2M;
  EXPECT_EQ(run({granule}), kOk) << "granule_size 2M";

  // Every valid pair.
  std::vector<ioasid_cache_invalidate_info> all = {
      entry(IOASID_CACHE_IOTLB, IOASID_INV_GRANU_DOMAIN, 0, 0, 0, 0),
      entry(IOASID_CACHE_PASID, IOASID_INV_GRANU_DOMAIN, 0, 0, 0, 0),
      entry(IOASID_CACHE_IOTLB | IOASID_CACHE_DEV_IOTLB | IOASID_CACHE_PASID, IOASID_INV_GRANU_PASID, p),
      entry(IOASID_CACHE_IOTLB | IOASID_CACHE_DEV_IOTLB, IOASID_INV_GRANU_ADDR, p, 0x10000, 16,
            IOASID_INV_FLAGS_PASID | IOASID_INV_FLAGS_LEAF)};
  uint32_t processed = 0;
  EXPECT_EQ(run(all, 0, 32, &processed), kOk);
  EXPECT_EQ(processed, all.size());

  // Longer entries: the tail must be zero.
  std::vector<uint8_t> wide(2 * 40, 0);
  std::memcpy(wide.data(), &valid, sizeof valid);
  std::memcpy(wide.data() + 40, &valid, sizeof valid);
  ioasid_cache_invalidate request{.ioasid = guest.nested, .entry_len = 40, .entry_num = 2,
                                  .entries_uptr = reinterpret_cast<uint64_t>(wide.data())};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_CACHE_INVLD, &request), kOk);
  wide[40 + 35] = 1;
  request.entry_num = 2;
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_CACHE_INVLD, &request), Err(E2BIG));
  EXPECT_EQ(request.entry_num, 1u);

  // Bounds that keep one call short: entries up to a page, up to 65536 of them (the
  // fuzzer once made the daemon size one buffer as entry_num * entry_len).
  std::vector<uint8_t> page_entries(2 * k4K, 0);
  std::memcpy(page_entries.data(), &valid, sizeof valid);
  std::memcpy(page_entries.data() + k4K, &valid, sizeof valid);
  request = {.ioasid = guest.nested, .entry_len = 4096, .entry_num = 2,
             .entries_uptr = reinterpret_cast<uint64_t>(page_entries.data())};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_CACHE_INVLD, &request), kOk) << "4 KiB entries";
  EXPECT_EQ(request.entry_num, 2u);
  page_entries[2 * k4K - 1] = 1;
  request.entry_num = 2;
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_CACHE_INVLD, &request), Err(E2BIG)) << "the last byte of a 4 KiB entry";
  EXPECT_EQ(request.entry_num, 1u);
  request = {.ioasid = guest.nested, .entry_len = 4097, .entry_num = 1,
             .entries_uptr = reinterpret_cast<uint64_t>(page_entries.data())};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_CACHE_INVLD, &request), Err(EINVAL)) << "entry_len above 4096";
  request = {.ioasid = guest.nested, .entry_len = 0xfffff000u, .entry_num = 1024,
             .entries_uptr = reinterpret_cast<uint64_t>(page_entries.data())};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_CACHE_INVLD, &request), Err(EINVAL)) << "entry_len near 4 GiB";
  request = {.ioasid = guest.nested, .entry_len = 32, .entry_num = 65537,
             .entries_uptr = reinterpret_cast<uint64_t>(page_entries.data())};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_CACHE_INVLD, &request), Err(EINVAL)) << "more than 65536 entries";
  EXPECT_EQ(request.entry_num, 0u);

  // Entries running into unmapped memory: EFAULT names the first unreadable entry,
  // and the ones before it were applied.
  void* pages = ::mmap(nullptr, 2 * k4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(pages, MAP_FAILED);
  ::munmap(static_cast<uint8_t*>(pages) + k4K, k4K);
  auto* last_two = reinterpret_cast<ioasid_cache_invalidate_info*>(static_cast<uint8_t*>(pages) + k4K - 2 * 32);
  last_two[0] = valid;
  last_two[1] = valid;
  request = {.ioasid = guest.nested, .entry_len = 32, .entry_num = 4, .entries_uptr = reinterpret_cast<uint64_t>(last_two)};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_CACHE_INVLD, &request), Err(EFAULT));
  EXPECT_EQ(request.entry_num, 2u) << "the index of the entry that could not be read";
  ::munmap(pages, k4K);
  expect_daemon_alive();
}

void ignore_signal(int) {}

// A signal to the caller ends a long CACHE_INVLD between batches of 1024 entries:
// EINTR, with entry_num the entries applied (a multiple of 1024, below the count).
TEST(CacheInvld, ASignalEndsALongCallBetweenBatches) {
  Node node;
  Guest guest(node);
  const uint32_t p = alloc_pasid(node, slot(55));
  const std::vector<ioasid_cache_invalidate_info> entries(
      65536, entry(IOASID_CACHE_IOTLB | IOASID_CACHE_DEV_IOTLB | IOASID_CACHE_PASID, IOASID_INV_GRANU_PASID, p));
  const int fd = node.fd();
  const uint32_t nested = guest.nested;
  std::string why;
  // In a child: the signal handler and the signalling thread stay out of the suite.
  const int rc = run_in_child(
      [&] {
        struct sigaction action {};
        action.sa_handler = ignore_signal;  // no SA_RESTART
        if (::sigaction(SIGUSR1, &action, nullptr) != 0) return 10;
        // A signal that comes before the daemon has the request aborts it in the
        // kernel (entry_num stays as given); try until the daemon saw one.
        for (int attempt = 0; attempt < 50; ++attempt) {
          ioasid_cache_invalidate request{.ioasid = nested, .entry_len = 32, .entry_num = 65536,
                                          .entries_uptr = reinterpret_cast<uint64_t>(entries.data())};
          std::atomic<bool> done{false};
          int result = 0, error = 0;
          std::thread caller([&] {
            result = ::ioctl(fd, IOASID_CACHE_INVLD, &request);
            error = errno;
            done = true;
          });
          for (int tick = 0; !done && tick < 10000; ++tick) {
            std::this_thread::sleep_for(std::chrono::microseconds(200 + 100 * attempt));
            if (!done) ::pthread_kill(caller.native_handle(), SIGUSR1);
          }
          caller.join();
          if (result == 0) {
            if (request.entry_num != 65536) return 11;  // done whole: every entry applied
            continue;                                   // finished before a signal landed
          }
          if (error != EINTR) return 64 + std::min(error, 190);
          if (request.entry_num == 65536) continue;     // aborted before the daemon saw it
          if (request.entry_num % 1024 != 0) return 12;
          return ::ioctl(fd, IOASID_GET_API_VERSION) == 1 ? 0 : 13;  // the file still works
        }
        return 14;  // never interrupted inside the daemon
      },
      60s, &why);
  EXPECT_EQ(rc, 0) << why << " (11: a whole call did not report every entry; 12: entry_num not between batches; "
                     "13: the file broke; 14: never interrupted in the daemon; 64+: errno)";
  expect_daemon_alive();
}

// ---- page requests: dma0 (PRI) at a PASID asks the owner for missing pages ----

Errno respond(int fd, uint32_t dev, uint32_t grpid, uint32_t code, std::optional<uint32_t> pasid,
              uint32_t flags_extra = 0) {
  ioasid_page_response response{.dev_id = dev,
                                .flags = (pasid ? IOASID_PAGE_RESP_PASID_VALID : 0u) | flags_extra,
                                .pasid = pasid.value_or(0),
                                .grpid = grpid,
                                .code = code};
  return ioctl_errno(fd, IOASID_PAGE_RESP, &response);
}

// The next page request record, waiting up to 5 s for it.
std::optional<ioasid_fault> next_page_request(const Node& node) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto record = node.file().next_fault(100ms);
    if (record && record->type == IOASID_FAULT_PAGE_REQ) return *record;
  }
  return std::nullopt;
}

TEST(PageResp, Rows) {
  VsvaSetup s;
  ASSERT_EQ(s.guest.bind_table(), kOk);
  std::vector<uint8_t> data(8);
  ASSERT_EQ(dma(s.fd(), s.dev, kGva, data, IOASID_DMA_NOWAIT, s.pasid).out_status, uint32_t(IOASID_DMA_PAGE_REQ));
  const auto request = next_page_request(s.node);
  ASSERT_TRUE(request);
  const uint32_t g = request->grpid;
  EXPECT_EQ(respond(s.fd(), s.dev, g, 3, s.pasid), Err(EINVAL)) << "code 3";
  EXPECT_EQ(respond(s.fd(), s.dev, g, 0, s.pasid, 1u << 4), Err(EOPNOTSUPP)) << "unknown flag";
  ioasid_page_response reserved{.dev_id = s.dev, .flags = IOASID_PAGE_RESP_PASID_VALID, .pasid = s.pasid,
                                .grpid = g, .__reserved = 1};
  EXPECT_EQ(ioctl_errno(s.fd(), IOASID_PAGE_RESP, &reserved), Err(EOPNOTSUPP));
  EXPECT_EQ(respond(s.fd(), s.dev + 40, g, 0, s.pasid), Err(ENOENT)) << "no such dev_id";
  EXPECT_EQ(respond(s.fd(), s.dev, (g + 1) % 512, 0, s.pasid), Err(EINVAL)) << "no such group";
  EXPECT_EQ(respond(s.fd(), s.dev, g, 0, s.pasid + 1), Err(EINVAL)) << "another PASID";
  EXPECT_EQ(respond(s.fd(), s.dev, g, 0, std::nullopt), Err(EINVAL)) << "the request had a PASID";
  EXPECT_EQ(respond(s.fd(), s.dev, g, IOASID_PAGE_RESP_SUCCESS, s.pasid), kOk);
  EXPECT_EQ(respond(s.fd(), s.dev, g, IOASID_PAGE_RESP_SUCCESS, s.pasid), Err(EINVAL)) << "answered already";
}

struct WaitingDma {
  WaitingDma(VsvaSetup& s, uint64_t gva, size_t length, uint32_t flags)
      : data(length, 0x3c), thread([this, &s, gva, flags] {
          const auto start = std::chrono::steady_clock::now();
          ioasid_device_dma request{.dev_id = s.dev, .flags = flags | IOASID_DMA_PASID, .pasid = s.pasid,
                                    .iova = gva, .length = data.size(),
                                    .buf_uptr = reinterpret_cast<uint64_t>(data.data())};
          err = ioctl_errno(s.fd(), IOASID_DEVICE_DMA, &request);
          result = request;
          elapsed = std::chrono::steady_clock::now() - start;
          done = true;
        }) {}
  ~WaitingDma() { thread.join(); }
  std::vector<uint8_t> data;
  std::atomic<bool> done{false};
  Errno err;
  ioasid_device_dma result{};
  std::chrono::steady_clock::duration elapsed{};
  std::thread thread;
};

TEST(PageRequest, SuccessRetriesTheDmaWhereItStopped) {
  VsvaSetup s;
  s.guest.map(kGva, kDataGpa);
  ASSERT_EQ(s.guest.bind_table(), kOk);
  {
    WaitingDma waiter(s, kGva + k4K - 16, 32, IOASID_DMA_WRITE);  // the second page is missing
    const auto request = next_page_request(s.node);
    ASSERT_TRUE(request);
    EXPECT_EQ(request->addr, kGva + k4K);
    EXPECT_EQ(request->perm, uint32_t(IOASID_FAULT_PERM_WRITE));
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(waiter.done) << "the DMA waits for the response";
    s.guest.map(kGva + k4K, kDataGpa + 2 * k4K);  // the "guest" maps the page
    ASSERT_EQ(respond(s.fd(), s.dev, request->grpid, IOASID_PAGE_RESP_SUCCESS, s.pasid), kOk);
    ASSERT_TRUE(eventually([&] { return waiter.done.load(); }, 5s));
    EXPECT_EQ(waiter.err, kOk);
    EXPECT_EQ(waiter.result.out_status, uint32_t(IOASID_DMA_OK));
  }
  EXPECT_EQ(s.guest.bytes(kDataGpa + k4K - 16)[0], 0x3c) << "the first part";
  EXPECT_EQ(s.guest.bytes(kDataGpa + 2 * k4K)[15], 0x3c) << "the retried part";
}

TEST(PageRequest, InvalidTimeoutAndDetachFailTheDma) {
  VsvaSetup s;
  ASSERT_EQ(s.guest.bind_table(), kOk);
  {
    WaitingDma waiter(s, kGva, 8, 0);
    const auto request = next_page_request(s.node);
    ASSERT_TRUE(request);
    ASSERT_EQ(respond(s.fd(), s.dev, request->grpid, IOASID_PAGE_RESP_INVALID, s.pasid), kOk);
    ASSERT_TRUE(eventually([&] { return waiter.done.load(); }, 5s));
    EXPECT_EQ(waiter.result.out_status, uint32_t(IOASID_DMA_FAULT)) << "INVALID";
    EXPECT_EQ(waiter.result.out_fault_addr, kGva);
  }
  {
    WaitingDma waiter(s, kGva, 8, 0);
    ASSERT_TRUE(next_page_request(s.node));
    ASSERT_TRUE(eventually([&] { return waiter.done.load(); }, 20s)) << "the daemon's page-response limit";
    EXPECT_EQ(waiter.result.out_status, uint32_t(IOASID_DMA_FAULT)) << "no response";
  }
  {
    WaitingDma waiter(s, kGva, 8, 0);
    ASSERT_TRUE(next_page_request(s.node));
    ioasid_attach detach{.dev_id = s.dev, .ioasid = s.guest.nested, .pasid = s.pasid};
    ASSERT_EQ(ioctl_errno(s.fd(), IOASID_DETACH_IOASID_PASID, &detach), kOk);
    ASSERT_TRUE(eventually([&] { return waiter.done.load(); }, 5s));
    EXPECT_EQ(waiter.result.out_status, uint32_t(IOASID_DMA_FAULT)) << "detached";
    EXPECT_LT(waiter.elapsed, 1200ms) << "answered by the detach, not by the time limit";
  }
}

TEST(PageRequest, ASignalInterruptsTheWait) {
  struct sigaction action{};
  action.sa_handler = ignore_signal;  // no SA_RESTART
  struct sigaction previous{};
  ASSERT_EQ(::sigaction(SIGUSR1, &action, &previous), 0);
  VsvaSetup s;
  ASSERT_EQ(s.guest.bind_table(), kOk);
  {
    WaitingDma waiter(s, kGva, 8, 0);
    ASSERT_TRUE(next_page_request(s.node));
    ::pthread_kill(waiter.thread.native_handle(), SIGUSR1);
    ASSERT_TRUE(eventually([&] { return waiter.done.load(); }, 5s));
    EXPECT_EQ(waiter.err, Err(EINTR));
    EXPECT_LT(waiter.elapsed, 1200ms) << "ended by the signal, not by the time limit";
  }
  ::sigaction(SIGUSR1, &previous, nullptr);
}

// The state letter of a thread from /proc/PID/stat: 'S' (interruptible wait), 'D'
// (uninterruptible or killable wait), 'T' (stopped); '?' if it cannot be read.
char thread_state(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  const std::string text((std::istreambuf_iterator<char>(stat)), {});
  const size_t end_of_name = text.rfind(") ");
  return end_of_name == std::string::npos || end_of_name + 2 >= text.size() ? '?' : text[end_of_name + 2];
}

// Exit codes of a forked waiter.
constexpr int kDmaOk = 0, kDmaNotOk = 1, kDmaEintr = 2, kDmaOtherErrno = 3;

// A forked process (it shares the test's file) in DEVICE_DMA at kGva, waiting for a page
// response; with `handle_sigusr1`, SIGUSR1 has a handler (no SA_RESTART). It exits with
// one of the codes above.
pid_t fork_waiting_dma(const VsvaSetup& s, bool handle_sigusr1) {
  std::fflush(stdout);
  const pid_t child = ::fork();
  if (child != 0) return child;
  if (handle_sigusr1) {
    struct sigaction action{};
    action.sa_handler = ignore_signal;
    ::sigaction(SIGUSR1, &action, nullptr);
  }
  uint8_t bytes[8] = {};
  ioasid_device_dma request{.dev_id = s.dev, .flags = IOASID_DMA_PASID, .pasid = s.pasid, .iova = kGva,
                            .length = sizeof bytes, .buf_uptr = reinterpret_cast<uint64_t>(bytes)};
  if (::ioctl(s.fd(), IOASID_DEVICE_DMA, &request) != 0) ::_exit(errno == EINTR ? kDmaEintr : kDmaOtherErrno);
  ::_exit(request.out_status == IOASID_DMA_OK ? kDmaOk : kDmaNotOk);
}

std::string waiter_outcome(int status) {
  if (!WIFEXITED(status)) return describe_status(status);
  switch (WEXITSTATUS(status)) {
    case kDmaOk: return "DMA OK";
    case kDmaNotOk: return "DMA not OK";
    case kDmaEintr: return "EINTR";
    default: return "another errno";
  }
}

// SIGSTOP makes FUSE send its one INTERRUPT for the waiting call and then wait killably
// ('D'); a daemon that ended the wait for it let the caller stop ('T') and return EINTR.
// Returns the state seen once the daemon has had time to read the interrupt.
char stop_waiter(pid_t child) {
  ::kill(child, SIGSTOP);
  eventually([&] { return thread_state(child) == 'D' || thread_state(child) == 'T'; }, 2s);
  std::this_thread::sleep_for(300ms);
  return thread_state(child);
}

// Ctrl-Z and fg, strace or gdb attaching: a stop and a continue deliver nothing to the
// caller, so its call goes on and completes once the page response comes.
TEST(PageRequest, AStoppedAndContinuedCallerIsNotCancelled) {
  VsvaSetup s;
  ASSERT_EQ(s.guest.bind_table(), kOk);
  ChildGuard guard;
  const pid_t child = fork_waiting_dma(s, false);
  ASSERT_GT(child, 0);
  guard.add(child);
  const auto request = next_page_request(s.node);
  ASSERT_TRUE(request);
  ASSERT_TRUE(eventually([&] { return thread_state(child) == 'S'; }, 2s)) << "the DMA waits";
  const char stopped = stop_waiter(child);
  ::kill(child, SIGCONT);
  std::this_thread::sleep_for(200ms);
  s.guest.map(kGva, kDataGpa);
  EXPECT_EQ(respond(s.fd(), s.dev, request->grpid, IOASID_PAGE_RESP_SUCCESS, s.pasid), kOk) << "the DMA still waits";
  int status = 0;
  ASSERT_TRUE(wait_pid_for(child, 5s, &status));
  guard.reaped(child);
  EXPECT_EQ(waiter_outcome(status), "DMA OK");
  EXPECT_EQ(stopped, 'D') << "stopped, the caller stays in its call";
}

// The kernel interrupts a call once: after an ignored stop, the daemon keeps watching the
// caller, so a signal that does run a handler, or SIGKILL, still ends the wait at once.
TEST(PageRequest, AfterAStopAHandledSignalOrSigkillStillEndsTheWait) {
  VsvaSetup s;
  ASSERT_EQ(s.guest.bind_table(), kOk);
  for (const int signal : {SIGUSR1, SIGKILL}) {
    SCOPED_TRACE(signal == SIGKILL ? "SIGKILL" : "SIGUSR1 with a handler");
    ChildGuard guard;
    const pid_t child = fork_waiting_dma(s, signal == SIGUSR1);
    ASSERT_GT(child, 0);
    guard.add(child);
    ASSERT_TRUE(next_page_request(s.node));
    ASSERT_TRUE(eventually([&] { return thread_state(child) == 'S'; }, 2s)) << "the DMA waits";
    stop_waiter(child);
    ::kill(child, SIGCONT);
    std::this_thread::sleep_for(100ms);
    const auto sent = std::chrono::steady_clock::now();
    ::kill(child, signal);
    int status = 0;
    ASSERT_TRUE(wait_pid_for(child, 5s, &status));
    guard.reaped(child);
    // The harness's --page-timeout (1.5 s) would end the wait about 1 s after the signal.
    EXPECT_LT(std::chrono::steady_clock::now() - sent, 600ms) << "ended by the signal, not by the time limit";
    EXPECT_EQ(waiter_outcome(status), signal == SIGKILL ? describe_status(SIGKILL) : "EINTR");
  }
}

TEST(PageRequest, SeveralWaitersAtOnceAreAllServed) {
  VsvaSetup s;
  ASSERT_EQ(s.guest.bind_table(), kOk);
  constexpr int kWaiters = 4;  // more than the daemon's default session threads
  std::vector<std::unique_ptr<WaitingDma>> waiters;
  for (int i = 0; i < kWaiters; ++i)
    waiters.push_back(std::make_unique<WaitingDma>(s, kGva + uint64_t(i) * k4K, 8, IOASID_DMA_WRITE));
  std::vector<ioasid_fault> requests;
  for (int i = 0; i < kWaiters; ++i) {
    auto request = next_page_request(s.node);
    ASSERT_TRUE(request) << "request " << i;
    requests.push_back(*request);
  }
  for (const auto& request : requests) {
    s.guest.map(request.addr, kDataGpa + (request.addr - kGva));
    EXPECT_EQ(respond(s.fd(), s.dev, request.grpid, IOASID_PAGE_RESP_SUCCESS, s.pasid), kOk);
  }
  for (auto& waiter : waiters) {
    ASSERT_TRUE(eventually([&] { return waiter->done.load(); }, 5s));
    EXPECT_EQ(waiter->result.out_status, uint32_t(IOASID_DMA_OK));
  }
}

TEST(PageRequest, AKilledWaiterReleasesEverything) {
  ChildGuard guard;
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    try {
      VsvaSetup s;
      if (s.guest.bind_table() != kOk) ::_exit(1);
      char go = 1;
      if (::write(ready[1], &go, 1) != 1) ::_exit(2);
      uint8_t byte = 0;
      ioasid_device_dma request{.dev_id = s.dev, .flags = IOASID_DMA_PASID, .pasid = s.pasid, .iova = kGva,
                                .length = 1, .buf_uptr = reinterpret_cast<uint64_t>(&byte)};
      for (;;) ::ioctl(s.fd(), IOASID_DEVICE_DMA, &request);  // waits, again and again
    } catch (const SetupFailed&) {
      ::_exit(1);  // not into gtest: the child must not run the rest of the suite
    }
  }
  guard.add(child);
  char go = 0;
  ASSERT_EQ(::read(ready[0], &go, 1), 1);
  std::this_thread::sleep_for(200ms);  // inside the wait
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_TRUE(wait_pid_for(child, 5s, &status));
  guard.reaped(child);
  ::close(ready[0]);
  ::close(ready[1]);
  expect_daemon_alive();
  Node node;
  EXPECT_EQ(ioctl_value(node.fd(), IOASID_GET_API_VERSION, 0), IOASID_API_VERSION);
  EXPECT_NE(bind_device(node, "dma0"), 0u) << "the dead client's device came back";
}

// A full fault queue leaves no page-request group open that no record announced: as
// VT-d does on a page-request-queue overflow, the IOMMU answers the group itself
// (Success, "retry"), and the device model sees out_status RETRY. Issue 15: 600 NOWAIT
// faults at one PASID used to leave groups open whose grpid nobody could read, and new
// faults unrecoverable until guessed grpids were answered.
TEST(PageRequest, AFullFaultQueueLeavesNoGroupUnannounced) {
  VsvaSetup s;
  ASSERT_EQ(s.guest.bind_table(), kOk);  // nothing mapped: every access raises a page request
  drain_faults(s.node);
  constexpr int kFaults = 600;
  std::vector<uint8_t> data(8);
  int requested = 0, retry = 0;
  for (int i = 0; i < kFaults; ++i) {
    const auto out = dma(s.fd(), s.dev, kGva + uint64_t(i) * k4K, data, IOASID_DMA_NOWAIT, s.pasid);
    if (out.out_status == IOASID_DMA_PAGE_REQ) {
      EXPECT_EQ(retry, 0) << "fault " << i << ": a page request queued after the queue was full";
      ++requested;
    } else {
      ASSERT_EQ(out.out_status, uint32_t(IOASID_DMA_RETRY)) << "fault " << i;
      EXPECT_EQ(out.out_fault_addr, kGva + uint64_t(i) * k4K) << "where the device stopped";
      EXPECT_EQ(out.out_fault_reason, uint32_t(IOASID_FAULT_REASON_ACCESS));
      ++retry;
    }
  }
  EXPECT_GT(retry, 0) << "the queue (--fault-queue) holds fewer than 600 records";
  EXPECT_LT(requested, 512) << "the queue, not the 512 group indexes, is what filled up";

  // A waiting DMA with the queue full does not wait for an answer nobody can give.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(dma(s.fd(), s.dev, kGva + uint64_t(kFaults) * k4K, data, 0, s.pasid).out_status,
            uint32_t(IOASID_DMA_RETRY));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s) << "answered at once, not after --page-timeout";

  // Every group that is open was announced by a record.
  const auto records = drain_faults(s.node);
  std::set<uint32_t> announced;
  for (const auto& record : records)
    if (record.type == IOASID_FAULT_PAGE_REQ) announced.insert(record.grpid);
  EXPECT_EQ(announced.size(), size_t(requested)) << "one record per open group, each with its own grpid";
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.back().type, uint32_t(IOASID_FAULT_LOST)) << "the LOST record follows the survivors";

  // A new fault is recoverable at once, its grpid read, not guessed.
  ASSERT_EQ(dma(s.fd(), s.dev, kGva, data, IOASID_DMA_NOWAIT, s.pasid).out_status, uint32_t(IOASID_DMA_PAGE_REQ));
  const auto fresh = next_page_request(s.node);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(announced.count(fresh->grpid), 0u) << "a group of its own";
  announced.insert(fresh->grpid);

  // The overflowed groups were answered by the IOMMU: once the announced ones are
  // answered, no grpid of the device is outstanding.
  for (const uint32_t grpid : announced)
    EXPECT_EQ(respond(s.fd(), s.dev, grpid, IOASID_PAGE_RESP_INVALID, s.pasid), kOk) << "grpid " << grpid;
  for (uint32_t grpid = 0; grpid < 512; ++grpid)
    ASSERT_EQ(respond(s.fd(), s.dev, grpid, IOASID_PAGE_RESP_INVALID, s.pasid), Err(EINVAL))
        << "grpid " << grpid << " is still open, though no record announced it";
}

TEST(BindPgtbl, TheAdminReportsTheBindingAsGiven) {
  if (admin_socket_path().empty()) GTEST_SKIP() << "needs the admin socket of a harness-owned daemon";
  Node node;
  Guest guest(node);
  auto request = bind_request(guest.nested, guest.root, IOASID_VTD_FL_SRE | IOASID_VTD_FL_CD);
  request.pat = 0x00070406;
  request.emt = 3;
  ASSERT_EQ(bind(node.fd(), request), kOk);
  const std::string context = own_context_id();
  ASSERT_FALSE(context.empty());
  const std::string dump = admin_request(R"({"cmd":"pgtable","context":)" + context + R"(,"ioasid":)" +
                                         std::to_string(guest.nested) + "}");
  EXPECT_NE(dump.find("\"flags\":65"), std::string::npos) << "SRE|CD kept: " << dump;
  EXPECT_NE(dump.find("\"pgtbl_addr\":" + std::to_string(guest.root)), std::string::npos) << dump;
  EXPECT_NE(dump.find("\"emt\":3"), std::string::npos) << dump;
  EXPECT_NE(dump.find("\"parent\":" + std::to_string(guest.parent)), std::string::npos) << dump;
}

// BIND_PGTBL and UNBIND_PGTBL announce BIND and UNBIND for every PASID attached.
TEST(BindPgtbl, SubscribersSeeBindAndUnbindForAttachedPasids) {
  if (admin_socket_path().empty()) GTEST_SKIP() << "needs the admin socket of a harness-owned daemon";
  AdminEvents events;
  ASSERT_TRUE(events.ok());
  VsvaSetup s;
  const std::string pasid = "\"pasid\":" + std::to_string(s.pasid) + ",";
  ASSERT_EQ(s.guest.bind_table(), kOk);
  EXPECT_FALSE(events.wait_for({"\"event\":\"pasid_bind\"", pasid}, 3s).empty()) << "BIND for PASID " << s.pasid;
  ASSERT_EQ(unbind(s.fd(), s.guest.nested), kOk);
  EXPECT_FALSE(events.wait_for({"\"event\":\"pasid_unbind\"", pasid}, 3s).empty()) << "UNBIND for PASID " << s.pasid;
}

}  // namespace
}  // namespace conf

// SPDX-License-Identifier: MIT
// The emulated VT-d registers GET_INFO reports (iommu/vtd_regs.h): every field read at
// its VT-d spec position (as Linux's cap_*()/ecap_*() macros read it, written out here
// on their own), and every capability bit set tied to the engine behaviour it
// advertises: a guest's first-level table nested over a second-level one (4- and
// 5-level, 1 GiB leaves), second-level 2M/1G leaves, supervisor requests with SRE,
// EA with EAFE, second-level dirty bits, page requests at a PRI device, device-TLB
// invalidation and page-selective invalidation up to MAMV.
#include "devices/device_spec.h"
#include "devices/dma_function.h"
#include "iommu/iommu.h"
#include "iommu/io_pagetable.h"
#include "iommu/page_requests.h"
#include "iommu/pasid_table.h"
#include "iommu/vtd_regs.h"
#include "pgtable/first_level_builder.h"
#include "translation_support.h"

#include <gtest/gtest.h>
#include <linux/ioasid.h>

#include <array>
#include <cstring>

namespace ioasid::iommu {
namespace {

using test_support::k2M;
using test_support::k4K;
using test_support::MemfdMemory;
using test_support::pattern;
using test_support::second_level_entry;

constexpr uint64_t k1G = 1ull << 30;
constexpr pgtable::Access kRead{.read = true};
constexpr pgtable::Access kWrite{.write = true};

// The fields as the VT-d spec places them (Linux drivers/iommu/intel/iommu.h).
constexpr uint64_t field(uint64_t reg, int low, int width) { return (reg >> low) & ((1ull << width) - 1); }
constexpr bool bit(uint64_t reg, int position) { return (reg >> position) & 1; }

// ---------------------------------------------------------------------------------
// The values, at the spec's positions

TEST(VtdRegisters, CapabilityFieldsAtTheirSpecPositions) {
  for (const uint32_t width : {48u, 57u}) {
    SCOPED_TRACE(width);
    const uint64_t cap = capability_register(width);
    EXPECT_EQ(field(cap, 0, 3), 6u);                     // ND: 64K domain ids
    EXPECT_EQ(field(cap, 8, 5), width == 57 ? 0b01100u : 0b00100u);  // SAGAW: 4-level (+ 5-level)
    EXPECT_EQ(field(cap, 16, 6) + 1, width);             // MGAW
    EXPECT_EQ(field(cap, 34, 4), 0b0011u);               // SLLPS: 2M and 1G
    EXPECT_TRUE(bit(cap, 39));                           // PSI
    EXPECT_EQ(field(cap, 48, 6), width - 12);            // MAMV
    EXPECT_TRUE(bit(cap, 56));                           // FL1GP
    EXPECT_TRUE(bit(cap, 60));                           // FL5LP
    // Nothing else: AFL, RWBF, PLMR, PHMR, CM, ZLR, FRO, NFR, DWD, DRD, PI and the
    // reserved bits are 0.
    const uint64_t advertised = field(cap, 0, 3) | (field(cap, 8, 5) << 8) | (field(cap, 16, 6) << 16) |
                                (field(cap, 34, 4) << 34) | (1ull << 39) | (field(cap, 48, 6) << 48) |
                                (1ull << 56) | (1ull << 60);
    EXPECT_EQ(cap, advertised) << std::hex << (cap ^ advertised);
  }
  EXPECT_EQ(capability_register(48), 0x1124'008C'002F'0406ull);
}

TEST(VtdRegisters, ExtendedCapabilityFieldsAtTheirSpecPositions) {
  for (const uint32_t pasid_bits : {1u, 8u, 20u}) {
    SCOPED_TRACE(pasid_bits);
    const uint64_t ecap = extended_capability_register(pasid_bits);
    EXPECT_TRUE(bit(ecap, 1));                          // QI
    EXPECT_TRUE(bit(ecap, 2));                          // DT
    EXPECT_TRUE(bit(ecap, 26));                         // NEST
    EXPECT_TRUE(bit(ecap, 29));                         // PRS
    EXPECT_TRUE(bit(ecap, 31));                         // SRS
    EXPECT_TRUE(bit(ecap, 34));                         // EAFS
    EXPECT_EQ(field(ecap, 35, 5), pasid_bits - 1);      // PSS
    EXPECT_TRUE(bit(ecap, 40));                         // PASID
    EXPECT_TRUE(bit(ecap, 43));                         // SMTS
    EXPECT_TRUE(bit(ecap, 45));                         // SLADS
    EXPECT_TRUE(bit(ecap, 46));                         // SLTS
    EXPECT_TRUE(bit(ecap, 47));                         // FLTS
    // Not modelled: C, IR, EIM, PT, SC, MTS, DIS, ERS, NWFS, DIT, VCS, SMPWC, RPS...
    for (const int off : {0, 3, 4, 6, 7, 25, 27, 30, 33, 41, 44, 48, 49})
      EXPECT_FALSE(bit(ecap, off)) << "bit " << off;
    const uint64_t advertised = (1ull << 1) | (1ull << 2) | (1ull << 26) | (1ull << 29) | (1ull << 31) |
                                (1ull << 34) | (uint64_t{pasid_bits - 1} << 35) | (1ull << 40) | (1ull << 43) |
                                (1ull << 45) | (1ull << 46) | (1ull << 47);
    EXPECT_EQ(ecap, advertised) << std::hex << (ecap ^ advertised);
  }
}

// ---------------------------------------------------------------------------------
// The behaviour behind each bit

// Guest RAM: a memfd mapped at GPA (= IOVA of the second level) 0, with 1 GiB leaves.
// The guest's first-level tables live in its RAM, from kTablesGpa up.
class VtdBehaviourTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kRam = 2 * k1G;
  static constexpr uint64_t kTablesGpa = 0x10'0000, kTablesEnd = 0x20'0000;
  static constexpr uint64_t kSmallIova = 4 * k1G;  // a second, 4 MiB memfd: 2 MiB leaves
  static constexpr uint32_t kNestedPasid = 7, kSecondLevelPasid = 8;
  static constexpr uint32_t kIoasid = 3, kNestedIoasid = 4;

  void SetUp() override {
    ASSERT_TRUE(ram_.ok() && small_.ok());
    auto table = IoPageTable::create(iommu_);
    ASSERT_TRUE(table.ok()) << table.error().why;
    table_ = std::move(*table);
    auto mapped = ram_.map(iommu_, *table_, 0, kRam, uint64_t{0});
    ASSERT_TRUE(mapped.ok()) << mapped.error().why;
    auto small = small_.map(iommu_, *table_, 0, 2 * k2M, kSmallIova);
    ASSERT_TRUE(small.ok()) << small.error().why;
    pasids_.set(kSecondLevelPasid, second_level_entry(*table_, kIoasid));
    auto domain = iommu_.allocate_domain();
    ASSERT_TRUE(domain.ok());
    nested_domain_ = *domain;
  }

  pgtable::GuestTableMemory guest_tables() {
    return pgtable::GuestTableMemory{
        .alloc_page = [this]() -> Result<uint64_t> {
          if (next_table_ == kTablesEnd) return fail(ENOMEM, "guest table pages used up");
          const uint64_t gpa = next_table_;
          next_table_ += k4K;
          return gpa;  // a memfd reads zeros until written
        },
        .read64 = [this](uint64_t gpa) -> Result<uint64_t> {
          const auto bytes = ram_.read(gpa, 8);
          if (bytes.size() != 8) return fail(EIO, "read at GPA {:#x}", gpa);
          uint64_t value;
          std::memcpy(&value, bytes.data(), 8);
          return value;
        },
        .write64 = [this](uint64_t gpa, uint64_t value) -> Result<void> {
          std::array<std::byte, 8> bytes;
          std::memcpy(bytes.data(), &value, 8);
          if (!ram_.write(gpa, bytes)) return fail(EIO, "write at GPA {:#x}", gpa);
          return {};
        },
        .free_page = nullptr};
  }

  pgtable::FirstLevelBuilder guest_table(int levels) {
    auto builder = pgtable::FirstLevelBuilder::create(guest_tables(), levels);
    EXPECT_TRUE(builder.ok());
    return std::move(*builder);
  }

  // Routes kNestedPasid through `guest` nested over the second-level table.
  void route_nested(const pgtable::FirstLevelBuilder& guest, uint8_t flags = 0) {
    pasids_.set(kNestedPasid, PasidEntry{.ioasid = kNestedIoasid,
                                         .domain = nested_domain_,
                                         .type = TranslationType::kNested,
                                         .levels = static_cast<uint8_t>(table_->levels()),
                                         .root = table_->root(),
                                         .second_level_domain = table_->domain(),
                                         .first_level_levels = static_cast<uint8_t>(guest.levels()),
                                         .first_level_flags = flags,
                                         .first_level_root = guest.root()});
  }

  TranslateResult translate(uint32_t pasid, uint64_t iova, pgtable::Access access, bool privileged = false,
                            Iotlb* device_tlb = nullptr) {
    return iommu_.translate(pasids_, {.pasid = pasid, .iova = iova, .access = access, .privileged = privileged},
                            device_tlb);
  }

  // The bytes at `hpa` are those of the memfd at `offset`.
  void expect_reaches(const MemfdMemory& memory, uint64_t offset, Hpa hpa, unsigned seed) {
    const auto bytes = pattern(64, seed);
    ASSERT_TRUE(memory.write(offset, bytes));
    std::vector<std::byte> seen(bytes.size());
    ASSERT_TRUE(iommu_.memory().read(hpa, seen).ok());
    EXPECT_EQ(seen, bytes);
  }

  uint64_t guest_entry(const pgtable::FirstLevelBuilder& guest, uint64_t gva, int level) {
    auto gpa = guest.entry_gpa(gva, level);
    EXPECT_TRUE(gpa.ok());
    auto value = guest_tables().read64(*gpa);
    EXPECT_TRUE(value.ok());
    return *value;
  }

  // Destroyed in reverse: the PASID table, the I/O page table, then the IOMMU.
  Iommu iommu_{IommuConfig{.addr_width = 48, .pin_limit_pages = 0}};
  MemfdMemory ram_{kRam};
  MemfdMemory small_{2 * k2M};
  std::unique_ptr<IoPageTable> table_;
  PasidTable pasids_{iommu_.pasid_cache()};
  uint16_t nested_domain_ = 0;
  uint64_t next_table_ = kTablesGpa;
};

// NEST, FLTS: a guest's 4-level first-level table nested over the second level.
TEST_F(VtdBehaviourTest, NestAndFltsANestedPasidTranslatesGvaToGpaToHpa) {
  ASSERT_TRUE(bit(extended_capability_register(20), 26) && bit(extended_capability_register(20), 47));
  auto guest = guest_table(4);
  const uint64_t gva = 0x7f12'3456'7000, gpa = 0x30'5000;
  ASSERT_TRUE(guest.map(gva, gpa, k4K, {.writable = true, .user = true}, k4K).ok());
  route_nested(guest);
  auto result = translate(kNestedPasid, gva + 0x18, kWrite);
  ASSERT_TRUE(result.ok()) << result.fault().reason;
  EXPECT_EQ(result.translated().ioasid, kNestedIoasid);
  expect_reaches(ram_, gpa + 0x18, result.translated().hpa, 1);
  // The walk set A and D in the guest's leaf, as first-level hardware does.
  EXPECT_EQ(guest_entry(guest, gva, 1) & 0x60, 0x60u);
}

// FL1GP: a first-level 1 GiB leaf.
TEST_F(VtdBehaviourTest, Fl1gpAFirstLevel1GiBLeafTranslates) {
  ASSERT_TRUE(bit(capability_register(48), 56));
  auto guest = guest_table(4);
  const uint64_t gva = 0x80'0000'0000;  // 512 GiB
  ASSERT_TRUE(guest.map(gva, k1G, k1G, {.writable = true, .user = true}, k1G).ok());
  EXPECT_TRUE(guest_entry(guest, gva, 3) & (1u << 7)) << "PS in the PDPTE: a 1 GiB leaf";
  route_nested(guest);
  const uint64_t offset = 0x2345'6789;
  auto result = translate(kNestedPasid, gva + offset, kRead);
  ASSERT_TRUE(result.ok()) << result.fault().reason;
  EXPECT_EQ(result.translated().contiguous, k1G - offset);  // one 1 GiB page at both levels
  expect_reaches(ram_, k1G + offset, result.translated().hpa, 2);
}

// FL5LP: a 5-level first-level table, at a GVA a 4-level table cannot hold.
TEST_F(VtdBehaviourTest, Fl5lpAFiveLevelFirstLevelTableTranslates) {
  ASSERT_TRUE(bit(capability_register(48), 60));
  auto guest = guest_table(5);
  const uint64_t gva = 0x00ab'cdef'0000'0000, gpa = 0x40'0000;
  ASSERT_TRUE(guest.map(gva, gpa, k2M, {.writable = true, .user = true}, k2M).ok());
  route_nested(guest);
  auto result = translate(kNestedPasid, gva + 0x1234, kWrite);
  ASSERT_TRUE(result.ok()) << result.fault().reason;
  expect_reaches(ram_, gpa + 0x1234, result.translated().hpa, 3);
  // A 4-level table cannot hold the GVA: it is not canonical for 48 bits.
  auto four = guest_table(4);
  route_nested(four);
  iommu_.flush_domain(nested_domain_);  // the IOTLB still holds the 5-level translation
  EXPECT_FALSE(translate(kNestedPasid, gva + 0x1234, kWrite).ok());
}

// SLTS, SLLPS: second-level 1 GiB and 2 MiB leaves.
TEST_F(VtdBehaviourTest, SllpsSecondLevelLargeLeavesTranslate) {
  const uint64_t cap = capability_register(48);
  ASSERT_EQ(field(cap, 34, 4), 0b0011u);
  ASSERT_TRUE(bit(extended_capability_register(20), 46));
  auto big = translate(kSecondLevelPasid, k1G + 0x5000, kRead);
  ASSERT_TRUE(big.ok()) << big.fault().reason;
  EXPECT_EQ(big.translated().contiguous, k1G - 0x5000);  // a 1 GiB leaf
  expect_reaches(ram_, k1G + 0x5000, big.translated().hpa, 4);
  auto medium = translate(kSecondLevelPasid, kSmallIova + k2M + 0x10, kWrite);
  ASSERT_TRUE(medium.ok()) << medium.fault().reason;
  EXPECT_EQ(medium.translated().contiguous, k2M - 0x10);  // a 2 MiB leaf
  expect_reaches(small_, k2M + 0x10, medium.translated().hpa, 5);
}

// SRS: a privileged request is honoured when the PASID entry enables SRE, and
// blocked without it.
TEST_F(VtdBehaviourTest, SrsASupervisorRequestIsHonouredWithSre) {
  ASSERT_TRUE(bit(extended_capability_register(20), 31));
  auto guest = guest_table(4);
  const uint64_t gva = 0xffff'8000'0000'0000, gpa = 0x50'0000;  // a kernel address
  ASSERT_TRUE(guest.map(gva, gpa, k4K, {.writable = true, .user = false}, k4K).ok());
  route_nested(guest, IOASID_VTD_FL_SRE);
  auto privileged = translate(kNestedPasid, gva + 8, kWrite, /*privileged=*/true);
  ASSERT_TRUE(privileged.ok()) << privileged.fault().reason;
  expect_reaches(ram_, gpa + 8, privileged.translated().hpa, 6);
  // A user request to the supervisor page is refused.
  auto user = translate(kNestedPasid, gva + 8, kWrite);
  ASSERT_FALSE(user.ok());
  EXPECT_EQ(user.fault().reason, uint32_t{IOASID_FAULT_REASON_PERMISSION});
  // Without SRE the privileged request is blocked.
  route_nested(guest, 0);
  auto blocked = translate(kNestedPasid, gva + 8, kWrite, /*privileged=*/true);
  ASSERT_FALSE(blocked.ok());
  EXPECT_EQ(blocked.fault().reason, uint32_t{IOASID_FAULT_REASON_PERMISSION});
}

// EAFS: with EAFE the walk sets EA (bit 10) with A; without it EA stays clear.
TEST_F(VtdBehaviourTest, EafsTheExtendedAccessedFlagIsSetWithEafe) {
  ASSERT_TRUE(bit(extended_capability_register(20), 34));
  auto guest = guest_table(4);
  const uint64_t plain = 0x1000'0000, extended = 0x2000'0000;
  ASSERT_TRUE(guest.map(plain, 0x60'0000, k4K, {.user = true}, k4K).ok());
  ASSERT_TRUE(guest.map(extended, 0x61'0000, k4K, {.user = true}, k4K).ok());
  route_nested(guest, 0);
  ASSERT_TRUE(translate(kNestedPasid, plain, kRead).ok());
  route_nested(guest, IOASID_VTD_FL_EAFE);
  ASSERT_TRUE(translate(kNestedPasid, extended, kRead).ok());
  EXPECT_EQ(guest_entry(guest, plain, 1) & ((1u << 10) | (1u << 5)), 1u << 5);
  EXPECT_EQ(guest_entry(guest, extended, 1) & ((1u << 10) | (1u << 5)), (1u << 10) | (1u << 5));
}

// SLADS: second-level D is set by a write while dirty tracking is on.
TEST_F(VtdBehaviourTest, SladsAWriteSetsTheSecondLevelDirtyBit) {
  ASSERT_TRUE(bit(extended_capability_register(20), 45));
  ASSERT_TRUE(table_->set_dirty_tracking(true).ok());
  std::array<uint64_t, 1> bitmap{};
  ASSERT_TRUE(table_->read_dirty(kSmallIova, 2 * k2M, k2M, false, bitmap).ok());
  EXPECT_EQ(bitmap[0], 0u);
  ASSERT_TRUE(translate(kSecondLevelPasid, kSmallIova + k2M + 8, kWrite).ok());
  ASSERT_TRUE(table_->read_dirty(kSmallIova, 2 * k2M, k2M, false, bitmap).ok());
  EXPECT_EQ(bitmap[0], 0b10u);
}

// PRS: a fault at a PASID of a PRI device is what the daemon answers with a page
// request (dev_ioasid/dma.cpp: the device has PRI, the request a PASID, the fault is
// resolvable): a group opens, the owner's response closes it, and after the owner
// mapped the page the retried access translates.
TEST_F(VtdBehaviourTest, PrsAFaultAtAPriDeviceRaisesAPageRequest) {
  ASSERT_TRUE(bit(extended_capability_register(20), 29));
  auto spec = devices::parse_device_spec("dma,name=pri0,pci=00:03.0,pasid=20,pri,ats");
  ASSERT_TRUE(spec.ok());
  ASSERT_TRUE(spec->pri);
  auto guest = guest_table(4);
  route_nested(guest);
  const uint64_t gva = 0x4000'0000;
  auto range = devices::translate_range(iommu_, pasids_, nullptr, kNestedPasid, gva, k4K, kWrite, false);
  ASSERT_TRUE(range.fault);
  EXPECT_EQ(range.bytes, 0u);
  ASSERT_TRUE(devices::resolvable_by_page_request(*range.fault));
  PageRequests requests;
  // The record announcing the group is queued (a fault queue with room).
  auto group = requests.open(/*dev_id=*/1, kNestedPasid, /*will_wait=*/false, [](uint32_t) { return true; });
  ASSERT_TRUE(group);
  EXPECT_EQ(requests.outstanding(), 1u);
  ASSERT_TRUE(guest.map(gva, 0x70'0000, k4K, {.writable = true, .user = true}, k4K).ok());
  EXPECT_TRUE(requests.respond(1, group->grpid, kNestedPasid, PageResponse::kSuccess));
  EXPECT_EQ(requests.outstanding(), 0u);
  auto retried = devices::translate_range(iommu_, pasids_, nullptr, kNestedPasid, gva, k4K, kWrite, false);
  EXPECT_FALSE(retried.fault);
  EXPECT_EQ(retried.bytes, k4K);
}

// DT: a device-TLB caches translations, and the invalidations CACHE_INVLD DEV_IOTLB
// and the daemon's own flushes send reach it.
TEST_F(VtdBehaviourTest, DtDeviceTlbInvalidationsReachTheDevicesAtc) {
  ASSERT_TRUE(bit(extended_capability_register(20), 2));
  Iotlb atc(64);
  auto registration = iommu_.register_device_tlb(atc);
  const uint64_t iova = kSmallIova + 0x3000;
  ASSERT_TRUE(translate(kSecondLevelPasid, iova, kRead, false, &atc).ok());
  ASSERT_TRUE(atc.lookup(table_->domain(), kSecondLevelPasid, iova));
  // A guest's DEV_IOTLB invalidation (what nested.cpp's CACHE_INVLD applies).
  atc.invalidate_range(table_->domain(), kSecondLevelPasid, kSmallIova, k2M, Iotlb::Epoch::kAnnounced);
  EXPECT_FALSE(atc.lookup(table_->domain(), kSecondLevelPasid, iova));
  // The daemon's own flush (UNMAP, detach) reaches the registered device-TLB.
  ASSERT_TRUE(translate(kSecondLevelPasid, iova, kRead, false, &atc).ok());
  ASSERT_TRUE(atc.lookup(table_->domain(), kSecondLevelPasid, iova));
  iommu_.flush_range(table_->domain(), iova, k4K);
  EXPECT_FALSE(atc.lookup(table_->domain(), kSecondLevelPasid, iova));
}

// PSI with MAMV: one page-selective invalidation may cover the whole address space.
TEST_F(VtdBehaviourTest, PsiUpToMamvCoversTheAddressSpace) {
  const uint64_t mamv = field(capability_register(48), 48, 6);
  ASSERT_EQ(mamv, 36u);
  const uint64_t iova = kSmallIova + 0x3000;
  ASSERT_TRUE(translate(kSecondLevelPasid, iova, kRead).ok());
  ASSERT_TRUE(iommu_.iotlb().lookup(table_->domain(), kSecondLevelPasid, iova));
  iommu_.iotlb().invalidate_range(table_->domain(), kSecondLevelPasid, 0, k4K << mamv);
  EXPECT_FALSE(iommu_.iotlb().lookup(table_->domain(), kSecondLevelPasid, iova));
}

}  // namespace
}  // namespace ioasid::iommu

// SPDX-License-Identifier: MIT
// The emulated VT-d capability registers GET_INFO reports (Intel VT-d spec rev 4.x,
// 11.4.2 Capability Register, 11.4.3 Extended Capability Register; the positions are
// those of Linux's drivers/iommu/intel/iommu.h cap_*() and ecap_*() macros).
// A bit is set exactly when the engine models what it advertises (tests/unit/
// vtd_regs_test.cpp ties each one to that behaviour); everything else stays 0, and
// the bits a VMM might expect are listed below with the reason they are 0.
#pragma once

#include <cstdint>

namespace ioasid::iommu {

namespace cap {
// ND 2:0: 2^(4+2*6) = 64K domain ids, the engine's 16-bit IOTLB tags (it never hands
// out id 0, which Linux does not use either).
inline constexpr uint64_t kNumDomains16Bit = 6;
inline constexpr int kSagawShift = 8;            // SAGAW 12:8: second-level table depths the walker takes
inline constexpr uint64_t kSagaw4Level = 1u << 2;  // 48-bit, 4-level
inline constexpr uint64_t kSagaw5Level = 1u << 3;  // 57-bit, 5-level
inline constexpr int kMgawShift = 16;              // MGAW 21:16 = address width - 1
inline constexpr int kSllpsShift = 34;             // SLLPS 37:34: second-level 2M (bit 34), 1G (bit 35)
inline constexpr uint64_t kSllps2M1G = 0b0011;     // the second-level table writes and walks 2M and 1G leaves
inline constexpr uint64_t kPageSelectiveInvalidation = 1ull << 39;  // PSI
inline constexpr int kMamvShift = 48;                               // MAMV 53:48: largest PSI address mask
inline constexpr uint64_t kFirstLevel1G = 1ull << 56;               // FL1GP: first-level 1 GiB leaves
inline constexpr uint64_t kFirstLevel5Level = 1ull << 60;           // FL5LP: 5-level first-level tables
// 0, not modelled: AFL (3, advanced fault logging), RWBF (4, no write buffer to flush),
// PLMR/PHMR (5/6, no protected memory regions), CM (7: the IOTLB caches only present
// translations, as hardware with CM=0 does), ZLR (22: DEVICE_DMA of length 0 is EINVAL),
// FRO/NFR (33:24, 47:40: faults are read from the file, there are no fault recording
// registers), DWD/DRD (54/55, no drain), PI (59, no interrupt remapping).
}  // namespace cap

namespace ecap {
inline constexpr uint64_t kQueuedInvalidation = 1ull << 1;  // QI (CACHE_INVLD takes queued entries)
inline constexpr uint64_t kDeviceTlb = 1ull << 2;           // DT: ATS devices have a device-TLB the flushes reach
inline constexpr uint64_t kNested = 1ull << 26;             // NEST: first level nested over second level
inline constexpr uint64_t kPageRequests = 1ull << 29;       // PRS: a PRI device's fault at a PASID is a page request
inline constexpr uint64_t kSupervisorRequests = 1ull << 31;  // SRS: privileged requests (PASID entry's SRE)
inline constexpr uint64_t kExtendedAccessed = 1ull << 34;    // EAFS: first-level EA with the PASID entry's EAFE
inline constexpr int kPssShift = 35;                         // PSS 39:35 = pasid bits - 1
inline constexpr uint64_t kPasid = 1ull << 40;               // PASID
inline constexpr uint64_t kScalableMode = 1ull << 43;        // SMTS
inline constexpr uint64_t kSecondLevelAccessedDirty = 1ull << 45;  // SLADS: A/D in second-level tables (dirty tracking)
inline constexpr uint64_t kSecondLevel = 1ull << 46;               // SLTS: second-level translation
inline constexpr uint64_t kFirstLevel = 1ull << 47;                // FLTS: first-level translation
// 0, not modelled: C (0) and SMPWC (48, page-walk coherency is no property of a model:
// 0 only asks software for flushes it does anyway), IR/EIM (3/4, no interrupt
// remapping), PT (6: the engine has pass-through, but no uAPI path attaches it),
// SC (7, no snoop control), DIS (27), ERS (30: no device model issues execute
// requests, DEVICE_DMA has no execute flag), NWFS (33), DIT (41), VCS (44), MTS (25:
// BIND_PGTBL's PAT/EMT are kept, memory types are not modelled), RPS (49: RID_PASID is
// fixed at 0). Requests without PASID carry no PRIV (DEVICE_DMA refuses it).
}  // namespace ecap

inline uint64_t capability_register(uint32_t addr_width) {
  const uint64_t sagaw = addr_width >= 57 ? (cap::kSagaw4Level | cap::kSagaw5Level) : cap::kSagaw4Level;
  // CACHE_INVLD takes any number of granules, so a PSI may cover the whole address
  // space: 2^(addr_width - 12) 4 KiB pages.
  const uint64_t mamv = uint64_t{addr_width - 12};
  return cap::kNumDomains16Bit | (sagaw << cap::kSagawShift) | (uint64_t{addr_width - 1} << cap::kMgawShift) |
         (cap::kSllps2M1G << cap::kSllpsShift) | cap::kPageSelectiveInvalidation | (mamv << cap::kMamvShift) |
         cap::kFirstLevel1G | cap::kFirstLevel5Level;
}

inline uint64_t extended_capability_register(uint32_t pasid_bits) {
  return ecap::kQueuedInvalidation | ecap::kDeviceTlb | ecap::kNested | ecap::kPageRequests |
         ecap::kSupervisorRequests | ecap::kExtendedAccessed | (uint64_t{pasid_bits - 1} << ecap::kPssShift) |
         ecap::kPasid | ecap::kScalableMode | ecap::kSecondLevelAccessedDirty | ecap::kSecondLevel |
         ecap::kFirstLevel;
}

}  // namespace ioasid::iommu

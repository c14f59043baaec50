// The emulated VT-d capability registers GET_INFO reports (VT-d spec 3.x, 11.4.2-3).
// Only what the daemon models is advertised.
#pragma once

#include <cstdint>

namespace ioasid::iommu {

namespace cap {
inline constexpr uint64_t kNumDomains16Bit = 6;            // ND: 2^(4+2*6) domain ids
inline constexpr int kSagawShift = 8;                      // SAGAW
inline constexpr uint64_t kSagaw4Level = 1u << 2;          // 48-bit, 4-level
inline constexpr uint64_t kSagaw5Level = 1u << 3;          // 57-bit, 5-level
inline constexpr int kMgawShift = 16;                      // MGAW = width - 1
inline constexpr int kSllpsShift = 34;                     // second-level 2M (bit0), 1G (bit1)
inline constexpr uint64_t kPageSelectiveInvalidation = 1ull << 39;  // PSI
inline constexpr uint64_t kFirstLevel1G = 1ull << 56;      // FL1GP
inline constexpr uint64_t kFirstLevel5Level = 1ull << 60;  // FL5LP
}  // namespace cap

namespace ecap {
inline constexpr uint64_t kQueuedInvalidation = 1ull << 1;  // QI
inline constexpr int kPssShift = 35;                        // PSS = pasid bits - 1
inline constexpr uint64_t kPasid = 1ull << 40;              // PASID
inline constexpr uint64_t kScalableMode = 1ull << 43;       // SMTS
}  // namespace ecap

inline uint64_t capability_register(uint32_t addr_width) {
  const uint64_t sagaw = addr_width >= 57 ? (cap::kSagaw4Level | cap::kSagaw5Level) : cap::kSagaw4Level;
  return cap::kNumDomains16Bit | (sagaw << cap::kSagawShift) |
         (uint64_t{addr_width - 1} << cap::kMgawShift) | cap::kPageSelectiveInvalidation;
}

inline uint64_t extended_capability_register(uint32_t pasid_bits) {
  return ecap::kQueuedInvalidation | ecap::kScalableMode | ecap::kPasid |
         (uint64_t{pasid_bits - 1} << ecap::kPssShift);
}

}  // namespace ioasid::iommu

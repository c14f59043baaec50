// SPDX-License-Identifier: MIT
// DSA descriptors as the device reads them, and the completion record it writes.
// The checks are the device's: a bad descriptor is not an ioctl error but a
// completion record with a status saying what was wrong.
#pragma once

#include <linux/ioasid.h>

#include <cstdint>
#include <optional>

namespace ioasid::devices::dsa {

// The device's limits (what a DSA's GENCAP reports).
inline constexpr uint64_t kMaxTransfer = 2ull << 20;
inline constexpr uint32_t kMinBatch = 2;
inline constexpr uint32_t kMaxBatch = 32;
inline constexpr uint64_t kCompletionAlign = 32;
inline constexpr uint64_t kDescriptorListAlign = 64;

inline uint32_t opcode(const ioasid_dsa_desc& desc) { return desc.opflags >> IOASID_DSA_OPCODE_SHIFT; }
inline uint32_t flags(const ioasid_dsa_desc& desc) { return desc.opflags & ((1u << IOASID_DSA_OPCODE_SHIFT) - 1); }
inline bool wants(const ioasid_dsa_desc& desc, uint32_t flag) { return flags(desc) & flag; }

// What a completion record says; to_record() lays it out.
struct Completion {
  uint8_t status = IOASID_DSA_COMP_SUCCESS;  // with IOASID_DSA_COMP_STATUS_WRITE for a write fault
  uint8_t result = 0;
  uint32_t bytes_completed = 0;
  uint64_t fault_addr = 0;
  uint32_t value = 0;  // invalid_flags or crc_val

  bool succeeded() const { return status == IOASID_DSA_COMP_SUCCESS || status == IOASID_DSA_COMP_SUCCESS_PRED; }
};
ioasid_dsa_completion to_record(const Completion& completion);

// The device's checks of a descriptor before it runs; the failing completion, if any.
// In a batch, BATCH and DRAIN are not allowed.
std::optional<Completion> check(const ioasid_dsa_desc& desc, bool in_batch);

// A completion record is written when CRAV is set and either RCR is or it failed.
inline bool writes_record(const ioasid_dsa_desc& desc, const Completion& completion) {
  return wants(desc, IOASID_DSA_FLAG_CRAV) &&
         (wants(desc, IOASID_DSA_FLAG_RCR) || completion.status != IOASID_DSA_COMP_SUCCESS);
}

const char* opcode_name(uint32_t opcode);

}  // namespace ioasid::devices::dsa

// SPDX-License-Identifier: MIT
#include "devices/dsa/descriptor.h"

namespace ioasid::devices::dsa {
namespace {

constexpr uint32_t kReservedPasidBits = ~(IOASID_DSA_PASID_MASK | IOASID_DSA_PRIV);
constexpr uint32_t kCommonFlags =
    IOASID_DSA_FLAG_FENCE | IOASID_DSA_FLAG_BOF | IOASID_DSA_FLAG_CRAV | IOASID_DSA_FLAG_RCR | IOASID_DSA_FLAG_CC;

Completion failed(uint8_t status, uint32_t value = 0) { return Completion{.status = status, .value = value}; }

bool moves_data(uint32_t op) {
  return op == IOASID_DSA_OPCODE_MEMMOVE || op == IOASID_DSA_OPCODE_MEMFILL || op == IOASID_DSA_OPCODE_COMPARE ||
         op == IOASID_DSA_OPCODE_COMPVAL || op == IOASID_DSA_OPCODE_CRCGEN;
}

bool compares(uint32_t op) { return op == IOASID_DSA_OPCODE_COMPARE || op == IOASID_DSA_OPCODE_COMPVAL; }

// Which of src and dst are addresses (MEMFILL's src and COMPVAL's dst are patterns).
bool uses_src(uint32_t op) { return op != IOASID_DSA_OPCODE_MEMFILL; }
bool uses_dst(uint32_t op) {
  return op == IOASID_DSA_OPCODE_MEMMOVE || op == IOASID_DSA_OPCODE_MEMFILL || op == IOASID_DSA_OPCODE_COMPARE;
}

bool wraps(uint64_t address, uint64_t size) { return address + (size - 1) < address; }

}  // namespace

ioasid_dsa_completion to_record(const Completion& completion) {
  ioasid_dsa_completion record{};
  record.status = completion.status;
  record.result = completion.result;
  record.bytes_completed = completion.bytes_completed;
  record.fault_addr = completion.fault_addr;
  record.crc_val = completion.value;
  return record;
}

const char* opcode_name(uint32_t op) {
  switch (op) {
    case IOASID_DSA_OPCODE_NOOP: return "NOOP";
    case IOASID_DSA_OPCODE_BATCH: return "BATCH";
    case IOASID_DSA_OPCODE_DRAIN: return "DRAIN";
    case IOASID_DSA_OPCODE_MEMMOVE: return "MEMMOVE";
    case IOASID_DSA_OPCODE_MEMFILL: return "MEMFILL";
    case IOASID_DSA_OPCODE_COMPARE: return "COMPARE";
    case IOASID_DSA_OPCODE_COMPVAL: return "COMPVAL";
    case IOASID_DSA_OPCODE_CRCGEN: return "CRCGEN";
    default: return "unknown";
  }
}

std::optional<Completion> check(const ioasid_dsa_desc& desc, bool in_batch) {
  const uint32_t op = opcode(desc);
  const bool known = moves_data(op) || op == IOASID_DSA_OPCODE_NOOP || op == IOASID_DSA_OPCODE_BATCH ||
                     op == IOASID_DSA_OPCODE_DRAIN;
  if (!known || (in_batch && (op == IOASID_DSA_OPCODE_BATCH || op == IOASID_DSA_OPCODE_DRAIN)))
    return failed(IOASID_DSA_COMP_BAD_OPCODE);
  const uint32_t allowed = kCommonFlags | (compares(op) ? IOASID_DSA_FLAG_CR : 0);
  if (const uint32_t invalid = flags(desc) & ~allowed) return failed(IOASID_DSA_COMP_INVALID_FLAGS, invalid);
  if (desc.pasid & IOASID_DSA_PRIV) return failed(IOASID_DSA_COMP_PRIV_BAD);
  // Bytes 40-43 carry expected_res (one byte) or the CRC seed; nothing else uses them.
  const uint32_t argument_mask = op == IOASID_DSA_OPCODE_CRCGEN ? ~0u : compares(op) ? 0xffu : 0u;
  if ((desc.pasid & kReservedPasidBits) || desc.__reserved1 || desc.__reserved2 || desc.__reserved3[0] ||
      desc.__reserved3[1] || (desc.crc_seed & ~argument_mask))
    return failed(IOASID_DSA_COMP_NOZERO_RESERVE);
  if (desc.int_handle) return failed(IOASID_DSA_COMP_INT_HANDLE_INVAL);
  if (moves_data(op) && (desc.xfer_size == 0 || desc.xfer_size > kMaxTransfer || (uses_src(op) && wraps(desc.src, desc.xfer_size)) ||
                         (uses_dst(op) && wraps(desc.dst, desc.xfer_size))))
    return failed(IOASID_DSA_COMP_XFER_ERANGE);
  if (op == IOASID_DSA_OPCODE_BATCH) {
    if (desc.xfer_size < kMinBatch || desc.xfer_size > kMaxBatch ||
        wraps(desc.src, uint64_t{desc.xfer_size} * sizeof(ioasid_dsa_desc)))
      return failed(IOASID_DSA_COMP_DESC_CNT_ERANGE);
    if (desc.src % kDescriptorListAlign) return failed(IOASID_DSA_COMP_DESCLIST_ALIGN);
  }
  return std::nullopt;
}

}  // namespace ioasid::devices::dsa

// SPDX-License-Identifier: MIT
// DSA descriptors and completion records (Intel DSA's layout, spelled out in
// <linux/ioasid.h>).
#include "internal.h"

#include <atomic>
#include <cstdio>
#include <thread>

namespace ioasid::client::dsa {

namespace {

// The fields every operation shares: PASID, opcode and flags, the completion record.
ioasid_dsa_desc descriptor(uint8_t opcode, const DescOptions& options) {
  ioasid_dsa_desc desc{};
  uint32_t flags = options.flags;
  if (options.completion_addr) {
    flags |= IOASID_DSA_FLAG_CRAV | (options.record_on_success ? IOASID_DSA_FLAG_RCR : 0u);
    desc.completion_addr = *options.completion_addr;
  }
  if (options.expected_result) {
    flags |= IOASID_DSA_FLAG_CR;
    desc.expected_res = *options.expected_result;
  }
  desc.pasid = options.pasid;
  desc.opflags = IOASID_DSA_OPFLAGS(opcode, flags);
  return desc;
}

// An operation on memory: source, destination (or pattern), size.
ioasid_dsa_desc transfer(uint8_t opcode, uint64_t src, uint64_t dst, uint32_t size, const DescOptions& options) {
  ioasid_dsa_desc desc = descriptor(opcode, options);
  desc.src = src;
  desc.dst = dst;
  desc.xfer_size = size;
  return desc;
}

}  // namespace

ioasid_dsa_desc noop(const DescOptions& options) { return descriptor(IOASID_DSA_OPCODE_NOOP, options); }

ioasid_dsa_desc drain(const DescOptions& options) { return descriptor(IOASID_DSA_OPCODE_DRAIN, options); }

ioasid_dsa_desc memmove(uint64_t dst, uint64_t src, uint32_t size, const DescOptions& options) {
  return transfer(IOASID_DSA_OPCODE_MEMMOVE, src, dst, size, options);
}

ioasid_dsa_desc fill(uint64_t dst, uint64_t pattern, uint32_t size, const DescOptions& options) {
  return transfer(IOASID_DSA_OPCODE_MEMFILL, pattern, dst, size, options);  // the pattern travels in src
}

ioasid_dsa_desc compare(uint64_t src1, uint64_t src2, uint32_t size, const DescOptions& options) {
  return transfer(IOASID_DSA_OPCODE_COMPARE, src1, src2, size, options);
}

ioasid_dsa_desc compval(uint64_t src, uint64_t pattern, uint32_t size, const DescOptions& options) {
  return transfer(IOASID_DSA_OPCODE_COMPVAL, src, pattern, size, options);  // the pattern travels in dst
}

ioasid_dsa_desc crcgen(uint64_t src, uint32_t size, uint32_t seed, const DescOptions& options) {
  ioasid_dsa_desc desc = transfer(IOASID_DSA_OPCODE_CRCGEN, src, 0, size, options);
  desc.crc_seed = seed;
  return desc;
}

ioasid_dsa_desc batch(uint64_t list, uint32_t count, const DescOptions& options) {
  return transfer(IOASID_DSA_OPCODE_BATCH, list, 0, count, options);  // xfer_size counts descriptors
}

std::string status_name(uint8_t status_code) {
  switch (status_code) {
    case IOASID_DSA_COMP_NONE: return "NONE";
    case IOASID_DSA_COMP_SUCCESS: return "SUCCESS";
    case IOASID_DSA_COMP_SUCCESS_PRED: return "SUCCESS_PRED";
    case IOASID_DSA_COMP_PAGE_FAULT_NOBOF: return "PAGE_FAULT_NOBOF";
    case IOASID_DSA_COMP_PAGE_FAULT_IR: return "PAGE_FAULT_IR";
    case IOASID_DSA_COMP_BATCH_FAIL: return "BATCH_FAIL";
    case IOASID_DSA_COMP_BATCH_PAGE_FAULT: return "BATCH_PAGE_FAULT";
    case IOASID_DSA_COMP_BAD_OPCODE: return "BAD_OPCODE";
    case IOASID_DSA_COMP_INVALID_FLAGS: return "INVALID_FLAGS";
    case IOASID_DSA_COMP_NOZERO_RESERVE: return "NOZERO_RESERVE";
    case IOASID_DSA_COMP_XFER_ERANGE: return "XFER_ERANGE";
    case IOASID_DSA_COMP_DESC_CNT_ERANGE: return "DESC_CNT_ERANGE";
    case IOASID_DSA_COMP_DESCLIST_ALIGN: return "DESCLIST_ALIGN";
    case IOASID_DSA_COMP_INT_HANDLE_INVAL: return "INT_HANDLE_INVAL";
    case IOASID_DSA_COMP_PRIV_BAD: return "PRIV_BAD";
    case IOASID_DSA_COMP_TRANSLATION_FAIL: return "TRANSLATION_FAIL";
  }
  char text[8];
  std::snprintf(text, sizeof text, "%#04x", status_code);
  return text;
}

Result<ioasid_dsa_completion> wait_for_completion(ioasid_dsa_completion& record, std::chrono::milliseconds timeout) {
  // The daemon writes the record into this process's memory from another process:
  // the status byte is read atomically, and only once it is set is the rest copied.
  const std::atomic_ref<uint8_t> status(record.status);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (unsigned spins = 0; status.load(std::memory_order_acquire) == IOASID_DSA_COMP_NONE; ++spins) {
    if (std::chrono::steady_clock::now() >= deadline)
      return Error{ETIMEDOUT, "no completion record after " + std::to_string(timeout.count()) + " ms"};
    if (spins < 1000)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return record;
}

}  // namespace ioasid::client::dsa

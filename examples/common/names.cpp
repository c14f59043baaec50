// SPDX-License-Identifier: MIT
#include "names.h"

#include <linux/ioasid.h>

#include <fmt/format.h>

#include <array>
#include <initializer_list>
#include <utility>
#include <cstring>

namespace ioasid::examples {

namespace {
// Indexed by IOASID_FAULT_REASON_* (UNKNOWN 0 .. OOR_ADDRESS 8).
constexpr std::array<const char*, IOASID_FAULT_REASON_OOR_ADDRESS + 1> kFaultReasonNames = {
    "UNKNOWN", "PASID_FETCH", "BAD_PASID_ENTRY", "PASID_INVALID", "WALK_EABT",
    "PTE_FETCH", "PERMISSION", "ACCESS", "OOR_ADDRESS"};
}  // namespace

std::string feature_list(uint32_t features) {
  std::string list;
  for (uint32_t index = 0; index < 32; ++index) {
    if (!(features & (1u << index))) continue;
    if (!list.empty()) list += ' ';
    list += feature_name(index);
  }
  return list.empty() ? "none" : list;
}

std::string page_size_list(uint64_t bitmap) {
  std::string list;
  for (uint32_t shift = 0; shift < 64; ++shift) {
    if (!(bitmap & (uint64_t{1} << shift))) continue;
    if (!list.empty()) list += ' ';
    if (shift >= 30)
      list += fmt::format("{}G", uint64_t{1} << (shift - 30));
    else if (shift >= 20)
      list += fmt::format("{}M", uint64_t{1} << (shift - 20));
    else if (shift >= 10)
      list += fmt::format("{}K", uint64_t{1} << (shift - 10));
    else
      list += fmt::format("{}", uint64_t{1} << shift);
  }
  return list.empty() ? "none" : list;
}

int errno_from_name(const std::string& name) {
  for (int code = 1; code < 256; ++code) {
    const char* candidate = strerrorname_np(code);
    if (candidate && name == candidate) return code;
  }
  return 0;
}

std::string fault_reason_name(uint32_t reason) {
  return reason < kFaultReasonNames.size() ? kFaultReasonNames[reason] : fmt::format("REASON{}", reason);
}

std::string fault_type_name(uint32_t type) {
  switch (type) {
    case IOASID_FAULT_DMA_UNRECOV: return "DMA_UNRECOV";
    case IOASID_FAULT_PAGE_REQ: return "PAGE_REQ";
    case IOASID_FAULT_LOST: return "LOST";
    default: return fmt::format("TYPE{}", type);
  }
}

namespace {

// The names of the set bits, "|"-separated; "0" when none is set.
std::string bit_list(uint32_t value, std::initializer_list<std::pair<uint32_t, const char*>> names) {
  std::string list;
  for (const auto& [bit, name] : names)
    if (value & bit) list += (list.empty() ? "" : "|") + std::string(name);
  return list.empty() ? "0" : list;
}

}  // namespace

std::string fault_flag_list(uint32_t flags) {
  return bit_list(flags, {{IOASID_FAULT_PASID_VALID, "PASID_VALID"},
                          {IOASID_FAULT_ADDR_VALID, "ADDR_VALID"},
                          {IOASID_FAULT_FETCH_ADDR_VALID, "FETCH_ADDR_VALID"},
                          {IOASID_FAULT_LAST_PAGE, "LAST_PAGE"}});
}

std::string fault_perm_list(uint32_t perm) {
  return bit_list(perm, {{IOASID_FAULT_PERM_READ, "READ"},
                         {IOASID_FAULT_PERM_WRITE, "WRITE"},
                         {IOASID_FAULT_PERM_EXEC, "EXEC"},
                         {IOASID_FAULT_PERM_PRIV, "PRIV"}});
}

const char* dma_status_name(uint32_t status) {
  switch (status) {
    case IOASID_DMA_OK: return "OK";
    case IOASID_DMA_FAULT: return "FAULT";
    case IOASID_DMA_PAGE_REQ: return "PAGE_REQ";
    case IOASID_DMA_RETRY: return "RETRY";
  }
  return "?";
}

}  // namespace ioasid::examples

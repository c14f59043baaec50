// SPDX-License-Identifier: MIT
// Names for the uAPI's numbers, shared by the example programs.
#pragma once

#include "base/names.h"  // errno_name, feature_name: the daemon's names too

#include <cstdint>
#include <string>

namespace ioasid::examples {

using ioasid::errno_name;
using ioasid::feature_name;
// Every feature whose bit is set, space separated ("PASID NESTING ...").
std::string feature_list(uint32_t features);
// "4K 2M 1G" for a page-size bitmap (bit n = 2^n bytes).
std::string page_size_list(uint64_t bitmap);
// EINVAL for "EINVAL"; 0 if unknown.
int errno_from_name(const std::string& name);
// "ACCESS" for IOASID_FAULT_REASON_ACCESS; "REASON<n>" past the known ones.
std::string fault_reason_name(uint32_t reason);
// "DMA_UNRECOV", "PAGE_REQ", "LOST" for an IOASID_FAULT_* record type; "TYPE<n>" else.
std::string fault_type_name(uint32_t type);
// "PASID_VALID|ADDR_VALID" for a fault record's flags; "0" when none.
std::string fault_flag_list(uint32_t flags);
// "READ|PRIV" for a fault record's perm; "0" when none.
std::string fault_perm_list(uint32_t perm);
// "OK", "FAULT", "PAGE_REQ" for DEVICE_DMA's out_status; "?" else.
const char* dma_status_name(uint32_t status);

}  // namespace ioasid::examples

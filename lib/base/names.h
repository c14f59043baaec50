// SPDX-License-Identifier: MIT
// The one table of names for what logs, the admin socket and the tools print: errno
// values ("EINVAL") and the uAPI's feature bits ("NESTING").
#pragma once

#include <linux/ioasid.h>

#include <fmt/format.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <string>

namespace ioasid {

inline std::string errno_name(int code) {
  const char* name = ::strerrorname_np(code);
  return name ? name : fmt::format("E{}", code);
}

// Indexed by the IOASID_FEAT_* bit (the CHECK_EXTENSION argument).
inline constexpr std::array<const char*, IOASID_FEAT_COUNT> kFeatureNames = {
    "PASID", "NESTING", "BIND_PGTBL", "CACHE_INVLD", "PAGE_RESP", "DIRTY_TRACKING", "GPASID", "MAP_FILE", "SIOV", "ATS"};

inline std::string feature_name(uint32_t bit) {
  return bit < kFeatureNames.size() ? kFeatureNames[bit] : fmt::format("BIT{}", bit);
}

}  // namespace ioasid

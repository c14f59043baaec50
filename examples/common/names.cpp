#include "names.h"

#include <linux/ioasid.h>

#include <fmt/format.h>

#include <array>
#include <cstring>

namespace ioasid::examples {

namespace {
constexpr std::array<const char*, IOASID_FEAT_COUNT> kFeatureNames = {
    "PASID", "NESTING", "BIND_PGTBL", "CACHE_INVLD", "PAGE_RESP",
    "DIRTY_TRACKING", "GPASID", "MAP_FILE", "SIOV"};
}  // namespace

std::string feature_name(uint32_t index) {
  return index < kFeatureNames.size() ? kFeatureNames[index] : fmt::format("BIT{}", index);
}

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

std::string errno_name(int code) {
  const char* name = strerrorname_np(code);
  return name ? name : fmt::format("E{}", code);
}

int errno_from_name(const std::string& name) {
  for (int code = 1; code < 256; ++code) {
    const char* candidate = strerrorname_np(code);
    if (candidate && name == candidate) return code;
  }
  return 0;
}

}  // namespace ioasid::examples

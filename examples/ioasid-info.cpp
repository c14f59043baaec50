// SPDX-License-Identifier: MIT
// ioasid-info: what the emulated IOMMU behind /dev/ioasid offers.
// GET_API_VERSION, GET_INFO and CHECK_EXTENSION for every feature, printed readably
// or as JSON.
#include "common/cli.h"
#include "common/names.h"
#include "common/node.h"

#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <iostream>
#include <string>
#include <vector>

namespace po = boost::program_options;
using namespace ioasid::examples;
using json = nlohmann::json;

namespace {

uint64_t bits(uint64_t value, unsigned low, unsigned high) {
  return (value >> low) & ((uint64_t{1} << (high - low + 1)) - 1);
}

// The capability bits a VT-d user looks for first (VT-d spec, CAP_REG and ECAP_REG).
std::string decode_cap(uint64_t cap) {
  std::string text = fmt::format("MGAW {} bits, SAGAW {:#x}, ND {}", bits(cap, 16, 21) + 1,
                                 bits(cap, 8, 12), bits(cap, 0, 2));
  if (bits(cap, 34, 37) & 1) text += ", SL 2M";
  if (bits(cap, 34, 37) & 2) text += ", SL 1G";
  if (cap & (uint64_t{1} << 39)) text += fmt::format(", PSI (MAMV {})", bits(cap, 48, 53));
  if (cap & (uint64_t{1} << 56)) text += ", FL1GP";
  if (cap & (uint64_t{1} << 60)) text += ", FL5LP";
  return text;
}

std::string decode_ecap(uint64_t ecap) {
  struct Bit {
    unsigned index;
    const char* name;
  };
  static constexpr Bit kBits[] = {{1, "QI"},    {2, "DT"},    {6, "PT"},    {7, "SC"},
                                  {26, "NEST"}, {29, "PRS"},  {31, "SRS"},   {34, "EAFS"},
                                  {40, "PASID"}, {43, "SMTS"},
                                  {45, "SLADS"}, {46, "SLTS"}, {47, "FLTS"}};
  std::string text;
  for (const Bit& bit : kBits)
    if (ecap & (uint64_t{1} << bit.index)) text += fmt::format("{} ", bit.name);
  if (ecap & (uint64_t{1} << 40)) text += fmt::format("(PSS {} -> {} PASID bits)", bits(ecap, 35, 39), bits(ecap, 35, 39) + 1);
  return text.empty() ? "none of the usual bits" : text;
}

std::string format_list(uint32_t formats) {
  std::string list;
  if (formats & (1u << IOASID_PGTBL_VTD_FL)) list += "VTD_FL (VT-d first level)";
  for (uint32_t index = 0; index < 32; ++index)
    if ((formats & (1u << index)) && index != IOASID_PGTBL_VTD_FL)
      list += fmt::format("{}format {}", list.empty() ? "" : ", ", index);
  return list.empty() ? "none" : list;
}

int run(const client::File& node, bool as_json) {
  auto version = node.api_version();
  if (!version) {
    std::cerr << "ioasid-info: " << version.error().what << "\n";
    return 1;
  }
  auto info = node.info();
  if (!info) {
    std::cerr << "ioasid-info: " << info.error().what << "\n";
    return 1;
  }
  std::vector<std::pair<uint32_t, bool>> extensions;
  for (uint32_t index = 0; index < IOASID_FEAT_COUNT; ++index) {
    auto offered = node.check_extension(index);
    if (!offered) {
      std::cerr << "ioasid-info: " << offered.error().what << "\n";
      return 1;
    }
    extensions.emplace_back(index, *offered);
  }

  if (as_json) {
    json out = {{"node", node.path()},
                {"api_version", *version},
                {"features", info->features},
                {"feature_names", json::array()},
                {"extensions", json::object()},
                {"pasid_bits", info->pasid_bits},
                {"pasid_quota", info->pasid_quota},
                {"pasids_allocated", info->pasids_allocated},
                {"addr_width", info->addr_width},
                {"pgtbl_formats", info->pgtbl_formats},
                {"pgsize_bitmap", info->pgsize_bitmap},
                {"cap_reg", fmt::format("{:#018x}", info->cap_reg)},
                {"ecap_reg", fmt::format("{:#018x}", info->ecap_reg)}};
    for (uint32_t index = 0; index < 32; ++index)
      if (info->features & (1u << index)) out["feature_names"].push_back(feature_name(index));
    for (const auto& [index, offered] : extensions) out["extensions"][feature_name(index)] = offered;
    std::cout << out.dump(2) << "\n";
    return 0;
  }

  fmt::print("{}: ioasid uAPI version {}{}\n", node.path(), *version,
             *version == IOASID_API_VERSION ? "" : fmt::format(" (this program knows {})", IOASID_API_VERSION));
  fmt::print("  features       {} ({:#x})\n", feature_list(info->features), info->features);
  std::string checked;
  for (const auto& [index, offered] : extensions) {
    const bool in_info = info->features & (1u << index);
    checked += fmt::format("{}{}{}", checked.empty() ? "" : " ", offered ? "+" : "-", feature_name(index));
    if (offered != in_info) checked += "(!GET_INFO disagrees)";
  }
  fmt::print("  extensions     {}  (CHECK_EXTENSION: + offered, - not)\n", checked);
  fmt::print("  PASIDs         {} bits; quota {} per open file, {} allocated by this file\n",
             info->pasid_bits, info->pasid_quota, info->pasids_allocated);
  fmt::print("  address width  {} bits\n", info->addr_width);
  fmt::print("  page sizes     {} ({:#x})\n", page_size_list(info->pgsize_bitmap), info->pgsize_bitmap);
  fmt::print("  page tables    {}\n", format_list(info->pgtbl_formats));
  fmt::print("  cap_reg        {:#018x}  {}\n", info->cap_reg, decode_cap(info->cap_reg));
  fmt::print("  ecap_reg       {:#018x}  {}\n", info->ecap_reg, decode_ecap(info->ecap_reg));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dev;
  bool as_json = false;
  po::options_description options(
      "Usage: ioasid-info [--dev PATH] [--json]\n"
      "Shows what the emulated IOMMU behind /dev/ioasid offers: API version, features\n"
      "(GET_INFO and CHECK_EXTENSION), PASID bits and quota, address width, page sizes,\n"
      "page-table formats and the emulated VT-d CAP/ECAP registers.\n\nOptions");
  options.add_options()
      ("help,h", "print this help and exit")
      ("dev,d", po::value(&dev)->value_name("PATH"),
       "the node to open (default: $IOASID_DEV, else /dev/ioasid)")
      ("json,j", po::bool_switch(&as_json), "print one JSON object instead of text");
  po::variables_map vm;
  if (auto exit_code = parse_command_line(argc, argv, "ioasid-info", options, vm)) return *exit_code;

  auto node = client::File::open(node_path(dev));
  if (!node) {
    std::cerr << "ioasid-info: " << node.error().what << "\n";
    return 1;
  }
  return run(*node, as_json);
}

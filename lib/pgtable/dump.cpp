// SPDX-License-Identifier: MIT
#include "pgtable/dump.h"

#include "pgtable/geometry.h"
#include "pgtable/second_level_format.h"

#include <fmt/format.h>

#include <optional>

namespace ioasid::pgtable {

std::string page_size_name(uint64_t size) {
  switch (size) {
    case kPageSize4K: return "4K";
    case kPageSize2M: return "2M";
    case kPageSize1G: return "1G";
    default: return fmt::format("{:#x}", size);
  }
}

std::string describe_second_level_leaf(const LeafEntry& first, uint64_t count) {
  using namespace second_level;
  const uint64_t entry = first.value;
  const auto flag = [entry](uint64_t bit, char name) { return (entry & bit) != 0 ? name : '-'; };
  // D0/D1: a half of the leaf marked dirty in software (mark_half_dirty).
  return fmt::format("iova {:#x} -> hpa {:#x} {}{} {}{}{} {} {}{}{}{}", first.iova, output_address(entry),
                     page_size_name(first.size), count > 1 ? fmt::format(" x{}", count) : std::string{},
                     flag(kRead, 'R'), flag(kWrite, 'W'), flag(kExecute, 'X'), flag(kAccessed, 'A'),
                     flag(kDirty, 'D'), (entry & kSnoop) != 0 ? " SNP" : "",
                     (entry & kHalfDirtyLow) != 0 ? " D0" : "", (entry & kHalfDirtyHigh) != 0 ? " D1" : "");
}

Result<std::vector<std::string>> dump_second_level(PhysicalMemory& memory, Hpa root, int levels,
                                                   const DumpOptions& options) {
  std::vector<std::string> lines;
  std::optional<LeafEntry> run;  // the first leaf of the run being coalesced
  uint64_t run_length = 0;
  const auto extends_run = [&](const LeafEntry& leaf) {
    if (!run || leaf.size != run->size) return false;
    const uint64_t offset = run_length * run->size;
    constexpr uint64_t kAttributes = ~second_level::kAddressMask;
    return leaf.iova == run->iova + offset &&
           second_level::output_address(leaf.value) == second_level::output_address(run->value) + offset &&
           (leaf.value & kAttributes) == (run->value & kAttributes);
  };
  const auto flush = [&] {
    if (run) lines.push_back(describe_second_level_leaf(*run, run_length));
  };

  IOASID_TRY(for_each_second_level_leaf(memory, root, levels, options.begin, options.end,
                                        [&](const LeafEntry& leaf) -> Result<void> {
                                          if (options.coalesce && extends_run(leaf)) {
                                            ++run_length;
                                            return success();
                                          }
                                          flush();
                                          run = leaf;
                                          run_length = 1;
                                          return success();
                                        }));
  flush();
  return lines;
}

}  // namespace ioasid::pgtable

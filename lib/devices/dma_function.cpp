// SPDX-License-Identifier: MIT
#include "devices/dma_function.h"

#include <linux/ioasid.h>

#include <algorithm>
#include <memory>
#include <vector>

namespace ioasid::devices {
namespace {

// The bounce buffer for memory the daemon has not mapped, kept per thread.
constexpr size_t kStagingBytes = 1u << 20;

std::span<std::byte> staging() {
  thread_local const auto buffer = std::make_unique_for_overwrite<std::byte[]>(kStagingBytes);
  return {buffer.get(), kStagingBytes};
}

// Moves [run.offset + from, run end) through the staging buffer; the returned count is
// what reached its destination. A memory failure ends it early without an error; a
// client buffer failure is the error.
Result<uint64_t> move_staged(HpaSpace& memory, const DmaTransfer& transfer, const TranslatedRun& run, uint64_t from) {
  uint64_t moved = from;
  while (moved < run.range.size) {
    const auto bounce = staging().first(std::min<uint64_t>(kStagingBytes, run.range.size - moved));
    const uint64_t address = transfer.buffer_address + run.offset + moved;
    const Hpa hpa = run.range.hpa + moved;
    size_t done = 0;
    if (transfer.to_memory) {
      IOASID_TRY(transfer.buffer_memory->read(address, bounce));
      const bool ok = memory.write(hpa, bounce, &done).ok();
      moved += done;
      if (!ok) break;
    } else {
      const bool ok = memory.read(hpa, bounce, &done).ok();
      IOASID_TRY(transfer.buffer_memory->write(address, bounce.first(done)));
      moved += done;
      if (!ok) break;
    }
  }
  return moved;
}

}  // namespace

TranslatedRange translate_range(iommu::Iommu& iommu, const iommu::PasidTable& table, iommu::Iotlb* device_tlb,
                                uint32_t pasid, uint64_t iova, uint64_t length, pgtable::Access access,
                                bool privileged) {
  TranslatedRange out;
  while (out.bytes < length) {
    const uint64_t address = iova + out.bytes;
    const auto result = iommu.translate(table,
                                        {.pasid = pasid,
                                         .iova = address,
                                         .access = access,
                                         .privileged = privileged,
                                         .length = length - out.bytes},
                                        device_tlb);
    if (!result.ok()) {
      const auto& fault = result.fault();
      out.fault = DmaFault{address, fault.reason, fault.ioasid, fault.fetch_address, fault.second_stage_gpa};
      break;
    }
    const auto& target = result.translated();
    out.ioasid = target.ioasid;
    const uint64_t chunk = std::min(target.contiguous, length - out.bytes);
    if (!out.runs.empty() && out.runs.back().range.hpa + out.runs.back().range.size == target.hpa)
      out.runs.back().range.size += chunk;
    else
      out.runs.push_back({out.bytes, {target.hpa, chunk}});
    out.bytes += chunk;
  }
  return out;
}

Result<DmaOutcome> run_dma(iommu::Iommu& iommu, const iommu::PasidTable& table, iommu::Iotlb* device_tlb,
                           const DmaTransfer& transfer) {
  DmaOutcome outcome;
  const pgtable::Access access{.read = !transfer.to_memory, .write = transfer.to_memory};
  TranslatedRange translated = translate_range(iommu, table, device_tlb, transfer.pasid, transfer.iova,
                                               transfer.length, access, transfer.privileged);
  outcome.fault = translated.fault;
  const std::vector<TranslatedRun>& runs = translated.runs;
  const uint32_t ioasid = translated.ioasid;

  // One copy, kernel to the daemon's mappings, when all of it is mapped here.
  HpaSpace& memory = iommu.memory();
  std::vector<HpaRange> ranges;
  for (const TranslatedRun& run : runs) ranges.push_back(run.range);
  size_t direct = 0;
  const auto copied = memory.with_mapped(ranges, transfer.to_memory, [&](std::span<const std::span<std::byte>> spans) {
    return transfer.to_memory ? transfer.buffer_memory->gather(transfer.buffer_address, spans, direct)
                              : transfer.buffer_memory->scatter(transfer.buffer_address, spans, direct);
  });
  if (copied.ok() && *copied) {
    outcome.bytes_done = translated.bytes;
    return outcome;
  }
  // Otherwise (or for what a short vectored copy left) run by run through staging,
  // which tells a failing buffer from failing memory.
  for (const TranslatedRun& run : runs) {
    if (direct >= run.offset + run.range.size) continue;
    const uint64_t from = direct > run.offset ? direct - run.offset : 0;
    auto moved = move_staged(memory, transfer, run, from);
    IOASID_TRY(moved);
    outcome.bytes_done = run.offset + *moved;
    if (*moved < run.range.size) {
      // The translation held but the memory behind it is gone: the client that
      // pinned it unmapped it, truncated its file or exited.
      outcome.fault = DmaFault{transfer.iova + outcome.bytes_done, IOASID_FAULT_REASON_UNKNOWN, ioasid, {}};
      return outcome;
    }
  }
  outcome.bytes_done = translated.bytes;
  return outcome;
}

}  // namespace ioasid::devices

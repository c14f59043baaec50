// SPDX-License-Identifier: MIT
// What each data opcode does to memory, as the engine's DMA at one PASID: operands
// are translated through the IOMMU (the device-TLB first), then visited side by side
// in the daemon's mapping of the memory, or through staging buffers for memory it has
// not mapped. An operation stops at the first byte that does not translate, with
// everything before it done, and can resume from there.
#pragma once

#include "devices/dma_function.h"
#include "devices/dsa/descriptor.h"
#include "iommu/iommu.h"

#include <cstdint>
#include <optional>
#include <span>
#include <variant>

namespace ioasid::devices::dsa {

// The device's requests at one PASID.
struct Port {
  iommu::Iommu& iommu;
  const iommu::PasidTable& routes;
  iommu::Iotlb* device_tlb;
  uint32_t pasid;
};

// Where an operation is: resumed after a page response from `done`.
struct Progress {
  uint64_t done = 0;
  uint32_t crc = 0;
};

struct Stopped {
  DmaFault fault;
  bool write = false;
};

// Runs a data opcode (MEMMOVE, MEMFILL, COMPARE, COMPVAL, CRCGEN) from progress.done:
// the completion on success, or the fault that stopped it (progress says how far).
using OperationResult = std::variant<Completion, Stopped>;
OperationResult run_operation(const Port& port, const ioasid_dsa_desc& desc, Progress& progress);

// DMA of a few bytes (completion records, descriptor lists); the fault if any.
std::optional<DmaFault> dma_read(const Port& port, uint64_t iova, std::span<std::byte> out);
std::optional<DmaFault> dma_write_record(const Port& port, uint64_t iova, std::span<const std::byte> record);

}  // namespace ioasid::devices::dsa

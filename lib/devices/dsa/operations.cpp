// SPDX-License-Identifier: MIT
#include "devices/dsa/operations.h"

#include "devices/dsa/crc32c.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

namespace ioasid::devices::dsa {
namespace {

constexpr size_t kStagingBytes = 64u << 10;

std::span<std::byte> staging(int which) {
  thread_local const auto buffers = std::make_unique_for_overwrite<std::byte[]>(2 * kStagingBytes);
  return {buffers.get() + which * kStagingBytes, kStagingBytes};
}

// One side of an operation.
struct Operand {
  uint64_t iova;
  bool write;  // the operation changes these bytes (and does not need them first)
};

// A stretch of the operation contiguous in HPA on both sides.
struct Piece {
  uint64_t offset;
  uint64_t size;
  Hpa a;
  Hpa b;
};

// Sees the bytes [offset, offset + size) of each operand in host memory; false stops.
using Visitor = std::function<bool(uint64_t offset, std::span<std::byte> a, std::span<std::byte> b)>;

struct Visit {
  uint64_t bytes = 0;  // leading bytes visited
  bool stopped = false;
  std::optional<Stopped> fault;
};

std::vector<Piece> pieces_of(const std::optional<Operand>& a, const TranslatedRange& ta,
                             const std::optional<Operand>& b, const TranslatedRange& tb, uint64_t length) {
  std::vector<Piece> pieces;
  size_t ia = 0;
  size_t ib = 0;
  // The HPA of `offset` in one operand's runs, and how far its run goes.
  auto locate = [](const TranslatedRange& t, size_t& index, uint64_t offset, uint64_t& size) {
    while (t.runs[index].offset + t.runs[index].range.size <= offset) ++index;
    const TranslatedRun& run = t.runs[index];
    size = std::min(size, run.offset + run.range.size - offset);
    return run.range.hpa + (offset - run.offset);
  };
  for (uint64_t offset = 0; offset < length;) {
    uint64_t size = length - offset;
    const Hpa hpa_a = a ? locate(ta, ia, offset, size) : 0;
    const Hpa hpa_b = b ? locate(tb, ib, offset, size) : 0;
    pieces.push_back({offset, size, hpa_a, hpa_b});
    offset += size;
  }
  return pieces;
}

// Visits `length` bytes of one or two operands side by side (backwards when a move's
// destination overlaps the end of its source), up to the first fault.
Visit visit(const Port& port, const std::optional<Operand>& a, const std::optional<Operand>& b, uint64_t length,
            const Visitor& visitor) {
  Visit out;
  uint64_t reachable = length;
  TranslatedRange ta;
  TranslatedRange tb;
  auto translate = [&](const Operand& operand, TranslatedRange& translated) {
    translated = translate_range(port.iommu, port.routes, port.device_tlb, port.pasid, operand.iova, length,
                                 {.read = !operand.write, .write = operand.write}, false);
    if (translated.bytes < reachable) {
      reachable = translated.bytes;
      out.fault = Stopped{*translated.fault, operand.write};
    }
  };
  if (a) translate(*a, ta);
  if (b) translate(*b, tb);
  // A move whose destination overlaps the end of its source goes backwards. If a
  // fault cuts it short it moves nothing: a backward prefix would overwrite source
  // bytes the rest still needs.
  const bool backwards = a && b && b->write && b->iova > a->iova && b->iova - a->iova < length;
  if (backwards && out.fault) return out;
  const std::vector<Piece> pieces = pieces_of(a, ta, b, tb, reachable);
  auto piece_at = [&](size_t k) -> const Piece& { return pieces[backwards ? pieces.size() - 1 - k : k]; };

  HpaSpace& memory = port.iommu.memory();
  std::vector<HpaRange> ranges;
  if (a)
    for (const Piece& piece : pieces) ranges.push_back({piece.a, piece.size});
  const size_t b_from = ranges.size();
  if (b)
    for (const Piece& piece : pieces) ranges.push_back({piece.b, piece.size});
  const size_t writable_from = b && b->write ? b_from : ranges.size();
  const auto mapped = memory.with_mapped(ranges, writable_from, [&](std::span<const std::span<std::byte>> spans) {
    for (size_t k = 0; k < pieces.size() && !out.stopped; ++k) {
      const size_t i = backwards ? pieces.size() - 1 - k : k;
      out.stopped = !visitor(pieces[i].offset, a ? spans[i] : std::span<std::byte>{},
                             b ? spans[b_from + i] : std::span<std::byte>{});
    }
    return success();
  });
  if (mapped.ok() && *mapped) {
    out.bytes = reachable;
    return out;
  }

  // Memory the daemon has not mapped (reached through /proc/<pid>/mem): staged.
  auto memory_gone = [&](const Operand& operand, const TranslatedRange& translated, uint64_t offset) {
    // The translation held but the memory behind it is gone (unmapped, truncated,
    // its owner exited): the device sees an unrecoverable fault.
    out.fault = Stopped{DmaFault{operand.iova + offset, IOASID_FAULT_REASON_UNKNOWN, translated.ioasid, {}},
                        operand.write};
    out.bytes = backwards ? 0 : offset;
    return out;
  };
  for (size_t k = 0; k < pieces.size(); ++k) {
    const Piece& piece = piece_at(k);
    for (uint64_t step = 0; step < piece.size; step += kStagingBytes) {
      const uint64_t size = std::min<uint64_t>(kStagingBytes, piece.size - step);
      const uint64_t within = backwards ? piece.size - step - size : step;
      const uint64_t offset = piece.offset + within;
      const auto bounce_a = staging(0).first(size);
      const auto bounce_b = staging(1).first(size);
      size_t done = 0;
      if (a && !memory.read(piece.a + within, bounce_a, &done).ok()) return memory_gone(*a, ta, offset + done);
      if (b && !b->write && !memory.read(piece.b + within, bounce_b, &done).ok())
        return memory_gone(*b, tb, offset + done);
      if (!visitor(offset, a ? bounce_a : std::span<std::byte>{}, b ? bounce_b : std::span<std::byte>{})) {
        out.stopped = true;
        return out;
      }
      if (b && b->write && !memory.write(piece.b + within, bounce_b, &done).ok())
        return memory_gone(*b, tb, offset + done);
    }
  }
  out.bytes = reachable;
  return out;
}

// Bytes of an 8-byte pattern repeated from address 0 of the operation: byte i of the
// operand is byte (i mod 8) of the pattern.
uint8_t pattern_byte(uint64_t pattern, uint64_t offset) { return static_cast<uint8_t>(pattern >> (8 * (offset % 8))); }

void fill(std::span<std::byte> out, uint64_t pattern, uint64_t offset) {
  size_t i = 0;
  for (; i < out.size() && (offset + i) % 8; ++i) out[i] = std::byte{pattern_byte(pattern, offset + i)};
  for (; i + 8 <= out.size(); i += 8) std::memcpy(out.data() + i, &pattern, 8);
  for (; i < out.size(); ++i) out[i] = std::byte{pattern_byte(pattern, offset + i)};
}

// Offset of the first byte of `data` that differs from the pattern, if any.
std::optional<uint64_t> first_difference(std::span<const std::byte> data, uint64_t pattern, uint64_t offset) {
  for (size_t i = 0; i < data.size(); ++i)
    if (data[i] != std::byte{pattern_byte(pattern, offset + i)}) return offset + i;
  return std::nullopt;
}

std::optional<uint64_t> first_difference(std::span<const std::byte> a, std::span<const std::byte> b, uint64_t offset) {
  if (std::memcmp(a.data(), b.data(), a.size()) == 0) return std::nullopt;
  const auto [at, unused] = std::mismatch(a.begin(), a.end(), b.begin());
  return offset + static_cast<uint64_t>(at - a.begin());
}

Completion compared(const ioasid_dsa_desc& desc, std::optional<uint64_t> difference) {
  Completion completion;
  completion.result = difference ? 1 : 0;
  completion.bytes_completed = static_cast<uint32_t>(difference.value_or(0));
  if (wants(desc, IOASID_DSA_FLAG_CR) && completion.result != desc.expected_res)
    completion.status = IOASID_DSA_COMP_SUCCESS_PRED;
  return completion;
}

}  // namespace

OperationResult run_operation(const Port& port, const ioasid_dsa_desc& desc, Progress& progress) {
  const uint64_t from = progress.done;
  const uint64_t length = desc.xfer_size - from;
  const uint32_t op = opcode(desc);
  if (from == 0 && op == IOASID_DSA_OPCODE_CRCGEN) progress.crc = desc.crc_seed;
  std::optional<uint64_t> difference;
  Visit visited;
  switch (op) {
    case IOASID_DSA_OPCODE_MEMMOVE:
      visited = visit(port, Operand{desc.src + from, false}, Operand{desc.dst + from, true}, length,
                      [](uint64_t, std::span<std::byte> src, std::span<std::byte> dst) {
                        std::memmove(dst.data(), src.data(), src.size());
                        return true;
                      });
      break;
    case IOASID_DSA_OPCODE_MEMFILL:
      visited = visit(port, std::nullopt, Operand{desc.dst + from, true}, length,
                      [&](uint64_t offset, std::span<std::byte>, std::span<std::byte> dst) {
                        fill(dst, desc.src, from + offset);
                        return true;
                      });
      break;
    case IOASID_DSA_OPCODE_COMPARE:
      visited = visit(port, Operand{desc.src + from, false}, Operand{desc.dst + from, false}, length,
                      [&](uint64_t offset, std::span<std::byte> a, std::span<std::byte> b) {
                        difference = first_difference(a, b, from + offset);
                        return !difference;
                      });
      break;
    case IOASID_DSA_OPCODE_COMPVAL:
      visited = visit(port, Operand{desc.src + from, false}, std::nullopt, length,
                      [&](uint64_t offset, std::span<std::byte> data, std::span<std::byte>) {
                        difference = first_difference(data, desc.dst, from + offset);
                        return !difference;
                      });
      break;
    case IOASID_DSA_OPCODE_CRCGEN:
      visited = visit(port, Operand{desc.src + from, false}, std::nullopt, length,
                      [&](uint64_t, std::span<std::byte> data, std::span<std::byte>) {
                        progress.crc = crc32c(progress.crc, data);
                        return true;
                      });
      break;
    default:
      return Completion{.status = IOASID_DSA_COMP_BAD_OPCODE};
  }
  if (visited.stopped) return compared(desc, difference);
  progress.done += visited.bytes;
  if (visited.fault) return *visited.fault;
  if (op == IOASID_DSA_OPCODE_COMPARE || op == IOASID_DSA_OPCODE_COMPVAL) return compared(desc, std::nullopt);
  return Completion{.value = op == IOASID_DSA_OPCODE_CRCGEN ? progress.crc : 0};
}

std::optional<DmaFault> dma_read(const Port& port, uint64_t iova, std::span<std::byte> out) {
  const Visit visited = visit(port, Operand{iova, false}, std::nullopt, out.size(),
                              [&](uint64_t offset, std::span<std::byte> data, std::span<std::byte>) {
                                std::memcpy(out.data() + offset, data.data(), data.size());
                                return true;
                              });
  if (visited.fault) return visited.fault->fault;
  return std::nullopt;
}

std::optional<DmaFault> dma_write_record(const Port& port, uint64_t iova, std::span<const std::byte> record) {
  // The status byte (the first) goes last, in a write of its own, so a poller that
  // sees it sees the rest, whether the memory is mapped here or staged.
  const Visit rest = visit(port, std::nullopt, Operand{iova + 1, true}, record.size() - 1,
                           [&](uint64_t offset, std::span<std::byte>, std::span<std::byte> out) {
                             std::memcpy(out.data(), record.data() + 1 + offset, out.size());
                             return true;
                           });
  if (rest.fault) {  // a 32-byte aligned record lies in one page: name the record
    DmaFault fault = rest.fault->fault;
    fault.address = iova;
    return fault;
  }
  const Visit status = visit(port, std::nullopt, Operand{iova, true}, 1,
                             [&](uint64_t, std::span<std::byte>, std::span<std::byte> out) {
                               std::atomic_ref<std::byte>(out[0]).store(record[0], std::memory_order_release);
                               return true;
                             });
  if (status.fault) return status.fault->fault;
  return std::nullopt;
}

}  // namespace ioasid::devices::dsa

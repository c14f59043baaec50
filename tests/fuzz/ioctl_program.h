// SPDX-License-Identifier: MIT
// The input format of dispatcher_fuzzer: a program of steps over a few open files.
//
// One visitor (visit_step) describes the format for both directions: FdpReader
// decodes fuzz input with FuzzedDataProvider, SeedWriter encodes the steps that
// make_seeds builds. Since both walk the same code, a format change regenerates
// valid seeds instead of silently breaking them.
//
// Per ioctl, every field the engine cares about (ids, flags, pointers, lengths) has
// a choice: keep the raw struct bytes from the input, a literal, or a "structured"
// value — an id an earlier reply returned (the per-file pools), a pointer into the
// sandbox client's regions, known flag bits — so deep paths are reachable.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>
#include <linux/ioasid.h>

#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

namespace ioasid_fuzz {

inline constexpr uint8_t kContexts = 4;
inline constexpr size_t kMaxSteps = 96;
inline constexpr size_t kMaxPayload = 256;

// The sandbox client: regions at fixed addresses and file descriptors at fixed
// numbers, so inputs stay reproducible across runs.
struct Region {
  uint64_t base;
  uint64_t size;
};
inline constexpr std::array kRegions = {
    Region{0x500000000000ull, 2ull << 20},    // memfd, MAP_SHARED: zero-copy backings
    Region{0x500000400000ull, 1ull << 20},    // anonymous, private: /proc/<pid>/mem
    Region{0x500000600000ull, 64ull << 10},   // anonymous, read-only
};
inline constexpr uint32_t kRegionMaxPages = (2u << 20) / 4096;
// memfd read-write, the same memfd read-only, /dev/null (not a regular file), closed.
inline constexpr std::array<int, 4> kClientFds = {200, 201, 202, 203};

// Reply values kept per file, to be fed into later requests.
enum class Slot : uint8_t { kPasid, kGpasid, kIoasid, kDevId, kIova, kGrpid, kCount };

enum class FieldKind : uint8_t {
  kFlags,       // structured: a value within the known bits (param)
  kNumber,      // structured: 0..param
  kZero,        // structured: 0 (reserved fields)
  kId,          // structured: from pool `slot`
  kIova,        // structured: a pooled IOVA plus a multiple of 32 bytes
  kUserPtr,     // structured: an address in a sandbox region
  kLength,      // structured: 1..param pages
  kFd,          // structured: one of kClientFds
  kFileOffset,  // structured: a page offset in the memfd
  kDevName,     // structured: one of kDeviceNames (the field is 32 bytes)
  kDsaOpflags,  // structured: a real opcode and flags
  kChoice,      // structured: one of kChoices[param]
};

struct Field {
  const char* name;
  uint16_t offset;
  uint8_t width;  // 4, 8, or 32 for names
  FieldKind kind;
  Slot slot = Slot::kCount;
  uint64_t param = 0;
};

inline constexpr std::array<std::string_view, 7> kDeviceNames = {
    "dma0", "dma1", "dsa0", "0000:00:03.0", "00:05.0", "nosuch", "unterminated"};
inline constexpr std::array<uint8_t, 8> kDsaOpcodes = {
    IOASID_DSA_OPCODE_NOOP,    IOASID_DSA_OPCODE_BATCH,   IOASID_DSA_OPCODE_DRAIN,  IOASID_DSA_OPCODE_MEMMOVE,
    IOASID_DSA_OPCODE_MEMFILL, IOASID_DSA_OPCODE_COMPARE, IOASID_DSA_OPCODE_COMPVAL, IOASID_DSA_OPCODE_CRCGEN};
enum ChoiceList : uint64_t { kPageSizes, kAddrWidths, kEntryLens };
inline constexpr std::array<std::array<uint64_t, 4>, 3> kChoices = {{
    {4096, 2ull << 20, 1ull << 30, 8192},
    {48, 57, 39, 64},
    {32, 40, 64, 16},
}};

#define IOASID_FUZZ_FIELD(type, member, ...) \
  Field { #member, static_cast<uint16_t>(offsetof(type, member)), sizeof(type::member), __VA_ARGS__ }
#define IOASID_FUZZ_DESC(member, ...)                                                                  \
  Field {                                                                                              \
    "desc." #member,                                                                                   \
        static_cast<uint16_t>(offsetof(ioasid_device_submit, desc) + offsetof(ioasid_dsa_desc, member)), \
        sizeof(ioasid_dsa_desc::member), __VA_ARGS__                                                   \
  }

inline constexpr std::array<Field, 0> kNoFields{};
inline constexpr std::array kInfoFields = {IOASID_FUZZ_FIELD(ioasid_info, flags, FieldKind::kFlags, Slot::kCount, 0)};
inline constexpr std::array kPasidRequestFields = {
    IOASID_FUZZ_FIELD(ioasid_pasid_request, flags, FieldKind::kFlags, Slot::kCount, 7),
    IOASID_FUZZ_FIELD(ioasid_pasid_request, min, FieldKind::kId, Slot::kPasid),
    IOASID_FUZZ_FIELD(ioasid_pasid_request, max, FieldKind::kId, Slot::kPasid),
    IOASID_FUZZ_FIELD(ioasid_pasid_request, gpasid, FieldKind::kId, Slot::kGpasid),
    IOASID_FUZZ_FIELD(ioasid_pasid_request, __reserved, FieldKind::kZero)};
inline constexpr std::array kPasidLookupFields = {
    IOASID_FUZZ_FIELD(ioasid_pasid_lookup, flags, FieldKind::kFlags, Slot::kCount, 0),
    IOASID_FUZZ_FIELD(ioasid_pasid_lookup, gpasid, FieldKind::kId, Slot::kGpasid),
    IOASID_FUZZ_FIELD(ioasid_pasid_lookup, __reserved, FieldKind::kZero)};
inline constexpr std::array kAllocFields = {
    IOASID_FUZZ_FIELD(ioasid_alloc, flags, FieldKind::kFlags, Slot::kCount, 1),
    IOASID_FUZZ_FIELD(ioasid_alloc, parent, FieldKind::kId, Slot::kIoasid),
    IOASID_FUZZ_FIELD(ioasid_alloc, __reserved, FieldKind::kZero)};
inline constexpr std::array kFreeFields = {IOASID_FUZZ_FIELD(ioasid_free, ioasid, FieldKind::kId, Slot::kIoasid),
                                           IOASID_FUZZ_FIELD(ioasid_free, __reserved, FieldKind::kZero)};
inline constexpr std::array kMapDmaFields = {
    IOASID_FUZZ_FIELD(ioasid_map_dma, flags, FieldKind::kFlags, Slot::kCount, 7),
    IOASID_FUZZ_FIELD(ioasid_map_dma, ioasid, FieldKind::kId, Slot::kIoasid),
    IOASID_FUZZ_FIELD(ioasid_map_dma, user_va, FieldKind::kUserPtr),
    IOASID_FUZZ_FIELD(ioasid_map_dma, length, FieldKind::kLength, Slot::kCount, 600),
    IOASID_FUZZ_FIELD(ioasid_map_dma, iova, FieldKind::kIova, Slot::kIova)};
inline constexpr std::array kMapFileFields = {
    IOASID_FUZZ_FIELD(ioasid_map_file, flags, FieldKind::kFlags, Slot::kCount, 7),
    IOASID_FUZZ_FIELD(ioasid_map_file, ioasid, FieldKind::kId, Slot::kIoasid),
    IOASID_FUZZ_FIELD(ioasid_map_file, fd, FieldKind::kFd),
    IOASID_FUZZ_FIELD(ioasid_map_file, __reserved, FieldKind::kZero),
    IOASID_FUZZ_FIELD(ioasid_map_file, offset, FieldKind::kFileOffset),
    IOASID_FUZZ_FIELD(ioasid_map_file, length, FieldKind::kLength, Slot::kCount, 600),
    IOASID_FUZZ_FIELD(ioasid_map_file, iova, FieldKind::kIova, Slot::kIova)};
inline constexpr std::array kUnmapFields = {
    IOASID_FUZZ_FIELD(ioasid_unmap_dma, ioasid, FieldKind::kId, Slot::kIoasid),
    IOASID_FUZZ_FIELD(ioasid_unmap_dma, flags, FieldKind::kFlags, Slot::kCount, 0),
    IOASID_FUZZ_FIELD(ioasid_unmap_dma, iova, FieldKind::kIova, Slot::kIova),
    IOASID_FUZZ_FIELD(ioasid_unmap_dma, length, FieldKind::kLength, Slot::kCount, 600)};
inline constexpr std::array kIovaRangesFields = {
    IOASID_FUZZ_FIELD(ioasid_iova_ranges, ioasid, FieldKind::kId, Slot::kIoasid),
    IOASID_FUZZ_FIELD(ioasid_iova_ranges, num_ranges, FieldKind::kNumber, Slot::kCount, 4),
    IOASID_FUZZ_FIELD(ioasid_iova_ranges, ranges_uptr, FieldKind::kUserPtr)};
inline constexpr std::array kBindFields = {
    IOASID_FUZZ_FIELD(ioasid_bind_pgtbl, ioasid, FieldKind::kId, Slot::kIoasid),
    IOASID_FUZZ_FIELD(ioasid_bind_pgtbl, format, FieldKind::kNumber, Slot::kCount, 2),
    IOASID_FUZZ_FIELD(ioasid_bind_pgtbl, flags, FieldKind::kFlags, Slot::kCount, 0x7f),
    IOASID_FUZZ_FIELD(ioasid_bind_pgtbl, pgtbl_addr, FieldKind::kIova, Slot::kIova),
    IOASID_FUZZ_FIELD(ioasid_bind_pgtbl, addr_width, FieldKind::kChoice, Slot::kCount, kAddrWidths),
    IOASID_FUZZ_FIELD(ioasid_bind_pgtbl, pat, FieldKind::kNumber, Slot::kCount, 0xff),
    IOASID_FUZZ_FIELD(ioasid_bind_pgtbl, emt, FieldKind::kNumber, Slot::kCount, 7),
    IOASID_FUZZ_FIELD(ioasid_bind_pgtbl, __reserved, FieldKind::kZero)};
inline constexpr std::array kUnbindFields = {
    IOASID_FUZZ_FIELD(ioasid_unbind_pgtbl, ioasid, FieldKind::kId, Slot::kIoasid),
    IOASID_FUZZ_FIELD(ioasid_unbind_pgtbl, flags, FieldKind::kFlags, Slot::kCount, 0)};
inline constexpr std::array kCacheInvalidateFields = {
    IOASID_FUZZ_FIELD(ioasid_cache_invalidate, ioasid, FieldKind::kId, Slot::kIoasid),
    IOASID_FUZZ_FIELD(ioasid_cache_invalidate, flags, FieldKind::kFlags, Slot::kCount, 0),
    IOASID_FUZZ_FIELD(ioasid_cache_invalidate, entry_len, FieldKind::kChoice, Slot::kCount, kEntryLens),
    IOASID_FUZZ_FIELD(ioasid_cache_invalidate, entry_num, FieldKind::kNumber, Slot::kCount, 8),
    IOASID_FUZZ_FIELD(ioasid_cache_invalidate, entries_uptr, FieldKind::kUserPtr)};
inline constexpr std::array kDeviceBindFields = {
    IOASID_FUZZ_FIELD(ioasid_device_bind, flags, FieldKind::kFlags, Slot::kCount, 0),
    IOASID_FUZZ_FIELD(ioasid_device_bind, name, FieldKind::kDevName)};
inline constexpr std::array kDeviceUnbindFields = {
    IOASID_FUZZ_FIELD(ioasid_device_unbind, dev_id, FieldKind::kId, Slot::kDevId),
    IOASID_FUZZ_FIELD(ioasid_device_unbind, flags, FieldKind::kFlags, Slot::kCount, 0)};
inline constexpr std::array kDeviceInfoFields = {
    IOASID_FUZZ_FIELD(ioasid_device_info, dev_id, FieldKind::kId, Slot::kDevId)};
inline constexpr std::array kAttachFields = {
    IOASID_FUZZ_FIELD(ioasid_attach, dev_id, FieldKind::kId, Slot::kDevId),
    IOASID_FUZZ_FIELD(ioasid_attach, ioasid, FieldKind::kId, Slot::kIoasid),
    IOASID_FUZZ_FIELD(ioasid_attach, pasid, FieldKind::kId, Slot::kPasid),
    IOASID_FUZZ_FIELD(ioasid_attach, flags, FieldKind::kFlags, Slot::kCount, 1)};
inline constexpr std::array kPageResponseFields = {
    IOASID_FUZZ_FIELD(ioasid_page_response, dev_id, FieldKind::kId, Slot::kDevId),
    IOASID_FUZZ_FIELD(ioasid_page_response, flags, FieldKind::kFlags, Slot::kCount, 1),
    IOASID_FUZZ_FIELD(ioasid_page_response, pasid, FieldKind::kId, Slot::kPasid),
    IOASID_FUZZ_FIELD(ioasid_page_response, grpid, FieldKind::kId, Slot::kGrpid),
    IOASID_FUZZ_FIELD(ioasid_page_response, code, FieldKind::kNumber, Slot::kCount, 3),
    IOASID_FUZZ_FIELD(ioasid_page_response, __reserved, FieldKind::kZero)};
inline constexpr std::array kDirtyTrackingFields = {
    IOASID_FUZZ_FIELD(ioasid_dirty_tracking, ioasid, FieldKind::kId, Slot::kIoasid),
    IOASID_FUZZ_FIELD(ioasid_dirty_tracking, flags, FieldKind::kFlags, Slot::kCount, 1)};
inline constexpr std::array kDirtyBitmapFields = {
    IOASID_FUZZ_FIELD(ioasid_dirty_bitmap, ioasid, FieldKind::kId, Slot::kIoasid),
    IOASID_FUZZ_FIELD(ioasid_dirty_bitmap, flags, FieldKind::kFlags, Slot::kCount, 1),
    IOASID_FUZZ_FIELD(ioasid_dirty_bitmap, iova, FieldKind::kIova, Slot::kIova),
    IOASID_FUZZ_FIELD(ioasid_dirty_bitmap, length, FieldKind::kLength, Slot::kCount, 600),
    IOASID_FUZZ_FIELD(ioasid_dirty_bitmap, page_size, FieldKind::kChoice, Slot::kCount, kPageSizes),
    IOASID_FUZZ_FIELD(ioasid_dirty_bitmap, bitmap_uptr, FieldKind::kUserPtr)};
inline constexpr std::array kDeviceDmaFields = {
    IOASID_FUZZ_FIELD(ioasid_device_dma, dev_id, FieldKind::kId, Slot::kDevId),
    IOASID_FUZZ_FIELD(ioasid_device_dma, flags, FieldKind::kFlags, Slot::kCount, 0xf),
    IOASID_FUZZ_FIELD(ioasid_device_dma, pasid, FieldKind::kId, Slot::kPasid),
    IOASID_FUZZ_FIELD(ioasid_device_dma, iova, FieldKind::kIova, Slot::kIova),
    IOASID_FUZZ_FIELD(ioasid_device_dma, length, FieldKind::kLength, Slot::kCount, 64),
    IOASID_FUZZ_FIELD(ioasid_device_dma, buf_uptr, FieldKind::kUserPtr),
    IOASID_FUZZ_FIELD(ioasid_device_dma, __reserved, FieldKind::kZero)};
inline constexpr std::array kWqConfigFields = {
    IOASID_FUZZ_FIELD(ioasid_wq_config, dev_id, FieldKind::kId, Slot::kDevId),
    IOASID_FUZZ_FIELD(ioasid_wq_config, wq, FieldKind::kNumber, Slot::kCount, 8),
    IOASID_FUZZ_FIELD(ioasid_wq_config, flags, FieldKind::kFlags, Slot::kCount, 7),
    IOASID_FUZZ_FIELD(ioasid_wq_config, pasid, FieldKind::kId, Slot::kPasid),
    IOASID_FUZZ_FIELD(ioasid_wq_config, size, FieldKind::kNumber, Slot::kCount, 129),
    IOASID_FUZZ_FIELD(ioasid_wq_config, priority, FieldKind::kNumber, Slot::kCount, 16),
    IOASID_FUZZ_FIELD(ioasid_wq_config, __reserved, FieldKind::kZero)};
inline constexpr std::array kSubmitFields = {
    IOASID_FUZZ_FIELD(ioasid_device_submit, dev_id, FieldKind::kId, Slot::kDevId),
    IOASID_FUZZ_FIELD(ioasid_device_submit, wq, FieldKind::kNumber, Slot::kCount, 8),
    IOASID_FUZZ_FIELD(ioasid_device_submit, flags, FieldKind::kFlags, Slot::kCount, 1),
    IOASID_FUZZ_DESC(pasid, FieldKind::kId, Slot::kPasid),
    IOASID_FUZZ_DESC(opflags, FieldKind::kDsaOpflags),
    IOASID_FUZZ_DESC(completion_addr, FieldKind::kIova, Slot::kIova),
    IOASID_FUZZ_DESC(src, FieldKind::kIova, Slot::kIova),
    IOASID_FUZZ_DESC(dst, FieldKind::kIova, Slot::kIova),
    IOASID_FUZZ_DESC(xfer_size, FieldKind::kNumber, Slot::kCount, 0x10000)};

inline constexpr std::array kAtsTranslateFields = {
    IOASID_FUZZ_FIELD(ioasid_ats_translate, dev_id, FieldKind::kId, Slot::kDevId),
    IOASID_FUZZ_FIELD(ioasid_ats_translate, flags, FieldKind::kFlags, Slot::kCount, 0xf),
    IOASID_FUZZ_FIELD(ioasid_ats_translate, pasid, FieldKind::kId, Slot::kPasid),
    IOASID_FUZZ_FIELD(ioasid_ats_translate, num_runs, FieldKind::kNumber, Slot::kCount, 600),
    IOASID_FUZZ_FIELD(ioasid_ats_translate, iova, FieldKind::kIova, Slot::kIova),
    IOASID_FUZZ_FIELD(ioasid_ats_translate, length, FieldKind::kLength, Slot::kCount, 64),
    IOASID_FUZZ_FIELD(ioasid_ats_translate, runs_uptr, FieldKind::kUserPtr)};
inline constexpr std::array kAtsAckFields = {
    IOASID_FUZZ_FIELD(ioasid_ats_ack, flags, FieldKind::kFlags, Slot::kCount, 1),
    IOASID_FUZZ_FIELD(ioasid_ats_ack, dev_id, FieldKind::kId, Slot::kDevId),
    IOASID_FUZZ_FIELD(ioasid_ats_ack, itag, FieldKind::kNumber, Slot::kCount, 64),
    IOASID_FUZZ_FIELD(ioasid_ats_ack, __reserved, FieldKind::kZero)};

struct Command {
  const char* name;
  uint32_t cmd;
  std::span<const Field> fields;
};

// Row i is ioctl IOASID_BASE + i, as in the dispatcher's table.
inline constexpr std::array<Command, 29> kCommands = {{
    {"GET_API_VERSION", IOASID_GET_API_VERSION, kNoFields},
    {"CHECK_EXTENSION", IOASID_CHECK_EXTENSION, kNoFields},
    {"GET_INFO", IOASID_GET_INFO, kInfoFields},
    {"PASID_REQUEST", IOASID_PASID_REQUEST, kPasidRequestFields},
    {"PASID_LOOKUP", IOASID_PASID_LOOKUP, kPasidLookupFields},
    {"ALLOC", IOASID_ALLOC, kAllocFields},
    {"FREE", IOASID_FREE, kFreeFields},
    {"MAP_DMA", IOASID_MAP_DMA, kMapDmaFields},
    {"MAP_FILE", IOASID_MAP_FILE, kMapFileFields},
    {"UNMAP_DMA", IOASID_UNMAP_DMA, kUnmapFields},
    {"IOVA_RANGES", IOASID_IOVA_RANGES, kIovaRangesFields},
    {"BIND_PGTBL", IOASID_BIND_PGTBL, kBindFields},
    {"UNBIND_PGTBL", IOASID_UNBIND_PGTBL, kUnbindFields},
    {"CACHE_INVLD", IOASID_CACHE_INVLD, kCacheInvalidateFields},
    {"DEVICE_BIND", IOASID_DEVICE_BIND, kDeviceBindFields},
    {"DEVICE_UNBIND", IOASID_DEVICE_UNBIND, kDeviceUnbindFields},
    {"DEVICE_GET_INFO", IOASID_DEVICE_GET_INFO, kDeviceInfoFields},
    {"ATTACH_IOASID", IOASID_ATTACH_IOASID, kAttachFields},
    {"ATTACH_IOASID_PASID", IOASID_ATTACH_IOASID_PASID, kAttachFields},
    {"DETACH_IOASID", IOASID_DETACH_IOASID, kAttachFields},
    {"DETACH_IOASID_PASID", IOASID_DETACH_IOASID_PASID, kAttachFields},
    {"PAGE_RESP", IOASID_PAGE_RESP, kPageResponseFields},
    {"SET_DIRTY_TRACKING", IOASID_SET_DIRTY_TRACKING, kDirtyTrackingFields},
    {"GET_DIRTY_BITMAP", IOASID_GET_DIRTY_BITMAP, kDirtyBitmapFields},
    {"DEVICE_DMA", IOASID_DEVICE_DMA, kDeviceDmaFields},
    {"WQ_CONFIG", IOASID_WQ_CONFIG, kWqConfigFields},
    {"DEVICE_SUBMIT", IOASID_DEVICE_SUBMIT, kSubmitFields},
    {"ATS_TRANSLATE", IOASID_ATS_TRANSLATE, kAtsTranslateFields},
    {"ATS_INV_ACK", IOASID_ATS_INV_ACK, kAtsAckFields},
}};
inline constexpr size_t kMaxFields = 10;

constexpr bool commands_are_indexed_by_number() {
  for (size_t i = 0; i < kCommands.size(); ++i)
    if (_IOC_NR(kCommands[i].cmd) != IOASID_BASE + i || kCommands[i].fields.size() > kMaxFields) return false;
  return true;
}
static_assert(commands_are_indexed_by_number());

// ---------------------------------------------------------------------------------
// Steps.

enum class OpKind : uint8_t { kIoctl, kReadFaults, kReopen, kPoke, kWaitIdle, kAdmin };

// The op selector is a byte so the mix is weighted: mostly ioctls.
constexpr OpKind op_kind(uint8_t selector) {
  if (selector < 168) return OpKind::kIoctl;
  if (selector < 190) return OpKind::kReadFaults;
  if (selector < 202) return OpKind::kReopen;
  if (selector < 232) return OpKind::kPoke;
  if (selector < 240) return OpKind::kWaitIdle;
  return OpKind::kAdmin;
}
constexpr uint8_t selector_of(OpKind kind) {
  constexpr std::array<uint8_t, 6> first = {0, 168, 190, 202, 232, 240};
  return first[static_cast<size_t>(kind)];
}

enum class FieldHow : uint8_t { kKeep, kStructured, kLiteral };

struct FieldChoice {
  FieldHow how = FieldHow::kKeep;
  uint64_t value = 0;  // literal; or a number, length, page, flags, offset
  uint8_t pick = 0;    // pool index (0-7 own file, 8-15 the next file), region, list index
  uint16_t byte = 0;   // kUserPtr: byte offset in the page
};

// Which number: a row of the table as is, a row with its direction and size
// mutated, or any 32-bit number.
enum class CommandHow : uint8_t { kTable, kMutated, kRandom };

struct IoctlStep {
  uint8_t how_selector = 0;  // 0-12 table, 13-14 mutated, 15 random
  uint8_t command = 0;       // row of kCommands
  uint8_t direction = 0;     // kMutated
  uint16_t size = 0;         // kMutated
  uint32_t raw_cmd = 0;      // kRandom
  uint8_t arg_wide = 0;      // _IO commands: 0: arg is a byte, 1: 64 bits
  uint64_t arg = 0;
  std::vector<uint8_t> payload;  // the leading struct bytes; the rest is zero
  std::array<FieldChoice, kMaxFields> fields{};

  CommandHow how() const {
    return how_selector < 13 ? CommandHow::kTable : how_selector < 15 ? CommandHow::kMutated : CommandHow::kRandom;
  }
  const Command* row() const { return how() == CommandHow::kRandom ? nullptr : &kCommands[command]; }
  uint32_t cmd() const {
    switch (how()) {
      case CommandHow::kTable: return kCommands[command].cmd;
      case CommandHow::kMutated: return _IOC(direction, IOASID_TYPE, IOASID_BASE + command, size);
      case CommandHow::kRandom: break;
    }
    return raw_cmd;
  }
};

struct Step {
  uint8_t op_selector = 0;
  uint8_t context = 0;
  IoctlStep ioctl;
  // kReadFaults: whole records, or any size.
  uint8_t read_exact = 1;
  uint16_t read_records = 1;
  uint16_t read_size = 0;
  // kPoke: bytes the client writes into one of its regions (page tables, descriptor
  // lists, invalidation entries), kAdmin: which view.
  uint8_t region = 0;
  uint32_t offset = 0;
  std::vector<uint8_t> bytes;
  uint8_t admin = 0;
  uint8_t pick = 0;

  OpKind kind() const { return op_kind(op_selector); }
};

// ---------------------------------------------------------------------------------
// The visitor: one description of the format for decoding and encoding.

template <typename Io>
void visit_field(Io& io, const Field& field, FieldChoice& choice) {
  uint8_t how = static_cast<uint8_t>(choice.how);
  io.integral(how, uint8_t{0}, uint8_t{2});
  choice.how = static_cast<FieldHow>(how);
  if (choice.how == FieldHow::kLiteral) {
    if (field.width == 4) {
      uint32_t literal = static_cast<uint32_t>(choice.value);
      io.integral(literal, uint32_t{0}, UINT32_MAX);
      choice.value = literal;
    } else if (field.width == 8) {
      io.integral(choice.value, uint64_t{0}, UINT64_MAX);
    }
    return;
  }
  if (choice.how != FieldHow::kStructured) return;
  switch (field.kind) {
    case FieldKind::kFlags:
    case FieldKind::kNumber: io.integral(choice.value, uint64_t{0}, field.param); break;
    case FieldKind::kZero: break;
    case FieldKind::kId: io.integral(choice.pick, uint8_t{0}, uint8_t{15}); break;
    case FieldKind::kIova:
      io.integral(choice.pick, uint8_t{0}, uint8_t{15});
      io.integral(choice.value, uint64_t{0}, uint64_t{2047});
      break;
    case FieldKind::kUserPtr:
      io.integral(choice.pick, uint8_t{0}, uint8_t{kRegions.size() - 1});
      io.integral(choice.value, uint64_t{0}, uint64_t{kRegionMaxPages - 1});
      io.integral(choice.byte, uint16_t{0}, uint16_t{4095});
      break;
    case FieldKind::kLength: io.integral(choice.value, uint64_t{1}, field.param); break;
    case FieldKind::kFd: io.integral(choice.pick, uint8_t{0}, uint8_t{kClientFds.size() - 1}); break;
    case FieldKind::kFileOffset: io.integral(choice.value, uint64_t{0}, uint64_t{kRegionMaxPages}); break;
    case FieldKind::kDevName: io.integral(choice.pick, uint8_t{0}, uint8_t{kDeviceNames.size() - 1}); break;
    case FieldKind::kDsaOpflags:
      io.integral(choice.pick, uint8_t{0}, uint8_t{kDsaOpcodes.size() - 1});
      io.integral(choice.value, uint64_t{0}, uint64_t{0x1ff});
      break;
    case FieldKind::kChoice: io.integral(choice.pick, uint8_t{0}, uint8_t{3}); break;
  }
}

template <typename Io>
void visit_ioctl(Io& io, IoctlStep& step) {
  io.integral(step.how_selector, uint8_t{0}, uint8_t{15});
  if (step.how() == CommandHow::kRandom) {
    io.integral(step.raw_cmd, uint32_t{0}, UINT32_MAX);
  } else {
    io.integral(step.command, uint8_t{0}, uint8_t{kCommands.size() - 1});
    if (step.how() == CommandHow::kMutated) {
      io.integral(step.direction, uint8_t{0}, uint8_t{3});
      io.integral(step.size, uint16_t{0}, uint16_t{kMaxPayload});
    }
  }
  const uint32_t cmd = step.cmd();
  if (_IOC_DIR(cmd) == _IOC_NONE) {
    io.integral(step.arg_wide, uint8_t{0}, uint8_t{1});
    io.integral(step.arg, uint64_t{0}, step.arg_wide ? UINT64_MAX : uint64_t{255});
  }
  io.bytes(step.payload, std::min<size_t>(_IOC_SIZE(cmd), kMaxPayload));
  if (const Command* row = step.row())
    for (size_t i = 0; i < row->fields.size(); ++i) visit_field(io, row->fields[i], step.fields[i]);
}

template <typename Io>
void visit_step(Io& io, Step& step) {
  io.integral(step.op_selector, uint8_t{0}, uint8_t{255});
  io.integral(step.context, uint8_t{0}, uint8_t{kContexts - 1});
  switch (step.kind()) {
    case OpKind::kIoctl: visit_ioctl(io, step.ioctl); break;
    case OpKind::kReadFaults:
      io.integral(step.read_exact, uint8_t{0}, uint8_t{1});
      if (step.read_exact)
        io.integral(step.read_records, uint16_t{0}, uint16_t{8});
      else
        io.integral(step.read_size, uint16_t{0}, uint16_t{700});
      break;
    case OpKind::kReopen:
    case OpKind::kWaitIdle: break;
    case OpKind::kPoke:
      io.integral(step.region, uint8_t{0}, uint8_t{1});  // the writable ones
      io.integral(step.offset, uint32_t{0}, uint32_t{(2u << 20) - 1});
      io.bytes(step.bytes, 512);
      break;
    case OpKind::kAdmin:
      io.integral(step.admin, uint8_t{0}, uint8_t{3});
      io.integral(step.pick, uint8_t{0}, uint8_t{15});
      break;
  }
}

// ---------------------------------------------------------------------------------
// The two directions.

// Decodes fuzz input.
class FdpReader {
 public:
  explicit FdpReader(FuzzedDataProvider& fdp) : fdp_(fdp) {}
  template <typename T>
  void integral(T& value, T min, T max) {
    static_assert(std::is_unsigned_v<T>);
    value = fdp_.ConsumeIntegralInRange<T>(min, max);
  }
  void bytes(std::vector<uint8_t>& out, size_t max) {
    size_t length = 0;
    integral(length, size_t{0}, max);
    out = fdp_.ConsumeBytes<uint8_t>(length);
  }
  bool exhausted() const { return fdp_.remaining_bytes() == 0; }

 private:
  FuzzedDataProvider& fdp_;
};

// Encodes steps as FuzzedDataProvider will read them: byte strings from the front,
// integers from the back, each integer's most significant byte last in the file.
class SeedWriter {
 public:
  template <typename T>
  void integral(T& value, T min, T max) {
    static_assert(std::is_unsigned_v<T>);
    assert(min <= value && value <= max);
    const uint64_t range = uint64_t{max} - uint64_t{min}, offset = uint64_t{value} - uint64_t{min};
    int count = 0;
    for (size_t shift = 0; shift < sizeof(T) * 8 && (range >> shift) > 0; shift += 8) ++count;
    for (int i = count - 1; i >= 0; --i) back_.push_back(static_cast<uint8_t>(offset >> (8 * i)));
  }
  void bytes(std::vector<uint8_t>& in, size_t max) {
    assert(in.size() <= max);
    size_t length = in.size();
    integral(length, size_t{0}, max);
    front_.insert(front_.end(), in.begin(), in.end());
  }
  std::vector<uint8_t> finish() const {
    std::vector<uint8_t> out = front_;
    out.insert(out.end(), back_.rbegin(), back_.rend());
    return out;
  }

 private:
  std::vector<uint8_t> front_, back_;
};

}  // namespace ioasid_fuzz

// SPDX-License-Identifier: MIT
// Writes the seed corpus of dispatcher_fuzzer: small programs that walk the main
// paths (PASIDs, IOAS maps, device DMA and page requests, nesting, DSA work queues,
// two files, the generic rules). Encoded with the same visitor the fuzzer decodes
// with (ioctl_program.h), and checked by decoding them back.
//
//   make_seeds DIR     (DIR is tests/fuzz/corpus in the repository)
#include "ioctl_program.h"

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <string>
#include <utility>

namespace ioasid_fuzz {
namespace {

// Fills in one ioctl step field by field, by the names of the fuzzer's field table.
class IoctlEditor {
 public:
  explicit IoctlEditor(IoctlStep& step) : step_(step) {}

  // The raw value, as the fuzzer's "literal" choice.
  IoctlEditor& set(std::string_view field, uint64_t value) { return choose(field, FieldHow::kLiteral, value); }
  // The structured choice: `pick` is a pool index (0-7 this file's, 8-15 the next
  // file's), a region, a list index; `value` a number, page count or 32-byte offset.
  IoctlEditor& from(std::string_view field, uint8_t pick, uint64_t value = 0, uint16_t byte = 0) {
    return choose(field, FieldHow::kStructured, value, pick, byte);
  }
  IoctlEditor& pages(std::string_view field, uint64_t count) { return from(field, 0, count); }
  IoctlEditor& user_ptr(std::string_view field, uint8_t region, uint32_t page, uint16_t byte = 0) {
    return from(field, region, page, byte);
  }
  IoctlEditor& arg(uint64_t value) {
    step_.arg_wide = value > 255;
    step_.arg = value;
    return *this;
  }

 private:
  IoctlEditor& choose(std::string_view name, FieldHow how, uint64_t value, uint8_t pick = 0, uint16_t byte = 0) {
    const Command* row = step_.row();
    for (size_t i = 0; row && i < row->fields.size(); ++i) {
      if (row->fields[i].name != name) continue;
      step_.fields[i] = {.how = how, .value = value, .pick = pick, .byte = byte};
      return *this;
    }
    std::fprintf(stderr, "make_seeds: %s has no field %.*s\n", row ? row->name : "a random command",
                 static_cast<int>(name.size()), name.data());
    std::exit(1);
  }
  IoctlStep& step_;
};

class Program {
 public:
  IoctlEditor ioctl(uint8_t context, uint32_t cmd) {
    Step& step = add(OpKind::kIoctl, context);
    step.ioctl.command = static_cast<uint8_t>(_IOC_NR(cmd) - IOASID_BASE);
    return IoctlEditor(step.ioctl);
  }
  // A table command issued with another direction or size.
  IoctlEditor mutated(uint8_t context, uint32_t cmd, uint8_t direction, uint16_t size) {
    Step& step = add(OpKind::kIoctl, context);
    step.ioctl = {.how_selector = 13, .command = static_cast<uint8_t>(_IOC_NR(cmd) - IOASID_BASE),
                  .direction = direction, .size = size};
    return IoctlEditor(step.ioctl);
  }
  Program& random(uint8_t context, uint32_t raw_cmd, std::vector<uint8_t> payload = {}) {
    Step& step = add(OpKind::kIoctl, context);
    step.ioctl = {.how_selector = 15, .raw_cmd = raw_cmd, .payload = std::move(payload)};
    return *this;
  }
  Program& read_faults(uint8_t context, uint16_t records) {
    add(OpKind::kReadFaults, context).read_records = records;
    return *this;
  }
  Program& read_bytes(uint8_t context, uint16_t size) {
    Step& step = add(OpKind::kReadFaults, context);
    step.read_exact = 0;
    step.read_size = size;
    return *this;
  }
  Program& reopen(uint8_t context) {
    add(OpKind::kReopen, context);
    return *this;
  }
  Program& wait_idle() {
    add(OpKind::kWaitIdle, 0);
    return *this;
  }
  Program& admin(uint8_t context, uint8_t view, uint8_t pick = 0) {
    Step& step = add(OpKind::kAdmin, context);
    step.admin = view;
    step.pick = pick;
    return *this;
  }
  // The client writes 64-bit words into its own memory (page tables, descriptors).
  Program& poke(uint8_t region, uint32_t offset, std::initializer_list<uint64_t> words) {
    Step& step = add(OpKind::kPoke, 0);
    step.region = region;
    step.offset = offset;
    for (uint64_t word : words)
      for (int i = 0; i < 8; ++i) step.bytes.push_back(static_cast<uint8_t>(word >> (8 * i)));
    return *this;
  }

  size_t size() const { return steps_.size(); }

  std::vector<uint8_t> encode() {
    if (steps_.size() > kMaxSteps) fail("more steps than the fuzzer runs");
    SeedWriter writer;
    for (Step& step : steps_) visit_step(writer, step);
    return writer.finish();
  }

 private:
  [[noreturn]] static void fail(const char* why) {
    std::fprintf(stderr, "make_seeds: %s\n", why);
    std::exit(1);
  }
  Step& add(OpKind kind, uint8_t context) {
    Step& step = steps_.emplace_back();
    step.op_selector = selector_of(kind);
    step.context = context;
    return step;
  }
  std::deque<Step> steps_;  // stable references for the editors
};

// Decoding the bytes as the fuzzer does and encoding what came out must give the
// same bytes: the seed means what it was built to mean.
bool round_trips(const std::vector<uint8_t>& bytes, size_t expected_steps) {
  FuzzedDataProvider provider(bytes.data(), bytes.size());
  FdpReader reader(provider);
  SeedWriter writer;
  size_t steps = 0;
  for (; steps < kMaxSteps && !reader.exhausted(); ++steps) {
    Step step;
    visit_step(reader, step);
    visit_step(writer, step);
  }
  return steps == expected_steps && writer.finish() == bytes;
}

constexpr uint32_t kRw = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE;
constexpr uint32_t kRwFixed = kRw | IOASID_MAP_FIXED_IOVA;
constexpr uint8_t kMemfd = 0, kAnon = 1, kReadOnly = 2;
constexpr uint8_t kDma0 = 0, kDma1 = 1, kDsa0 = 2;  // kDeviceNames indexes
constexpr uint64_t kAllCaches = IOASID_CACHE_IOTLB | IOASID_CACHE_DEV_IOTLB | IOASID_CACHE_PASID;

// A PASID in [1, 1000] for `context`, optionally with a guest PASID.
void alloc_pasid(Program& p, uint8_t context, uint32_t gpasid = 0) {
  auto request = p.ioctl(context, IOASID_PASID_REQUEST)
                     .set("flags", IOASID_PASID_ALLOC | (gpasid ? IOASID_PASID_GPASID : 0))
                     .set("min", 1)
                     .set("max", 1000);
  if (gpasid) request.set("gpasid", gpasid);
}

void bind(Program& p, uint8_t context, uint8_t device) { p.ioctl(context, IOASID_DEVICE_BIND).from("name", device); }

std::vector<std::pair<std::string, Program>> seeds() {
  std::vector<std::pair<std::string, Program>> out;
  auto seed = [&](std::string name, const std::function<void(Program&)>& build) {
    Program program;
    build(program);
    out.emplace_back(std::move(name), std::move(program));
  };

  seed("pasid-alloc-free", [](Program& p) {
    p.ioctl(0, IOASID_GET_API_VERSION);
    p.ioctl(0, IOASID_CHECK_EXTENSION).arg(IOASID_FEAT_SIOV);
    p.ioctl(0, IOASID_GET_INFO);
    alloc_pasid(p, 0);
    alloc_pasid(p, 0, 7);
    p.ioctl(0, IOASID_PASID_LOOKUP).from("gpasid", 0);
    alloc_pasid(p, 0, 7);  // EEXIST
    p.ioctl(0, IOASID_PASID_REQUEST).set("flags", IOASID_PASID_FREE).from("min", 0).from("max", 0);
    p.ioctl(0, IOASID_PASID_REQUEST).set("flags", IOASID_PASID_FREE).set("min", 1).set("max", 1u << 20);
  });
  seed("pasid-quota", [](Program& p) {
    for (int i = 0; i < 17; ++i) alloc_pasid(p, 1);  // the 17th: ENOSPC
    p.ioctl(1, IOASID_GET_INFO);
    p.ioctl(1, IOASID_PASID_REQUEST).set("flags", IOASID_PASID_FREE).set("min", 1).set("max", 8);
  });
  seed("ioas-map-unmap", [](Program& p) {
    p.ioctl(0, IOASID_ALLOC);
    p.ioctl(0, IOASID_MAP_DMA).set("flags", kRw).from("ioasid", 0).user_ptr("user_va", kAnon, 0).pages("length", 4);
    p.ioctl(0, IOASID_MAP_DMA).set("flags", kRwFixed).from("ioasid", 0).user_ptr("user_va", kMemfd, 0)
        .pages("length", 16).set("iova", 0x100000);
    p.ioctl(0, IOASID_MAP_DMA).set("flags", kRwFixed).from("ioasid", 0).user_ptr("user_va", kReadOnly, 0)
        .pages("length", 1).set("iova", 0x400000);  // EFAULT: not writable
    p.ioctl(0, IOASID_IOVA_RANGES).from("ioasid", 0).set("num_ranges", 4).user_ptr("ranges_uptr", kAnon, 8);
    p.ioctl(0, IOASID_UNMAP_DMA).from("ioasid", 0).from("iova", 0).pages("length", 4);
    p.ioctl(0, IOASID_UNMAP_DMA).from("ioasid", 0).set("iova", 0).set("length", ~0ull);
    p.ioctl(0, IOASID_FREE).from("ioasid", 0);
  });
  seed("map-file", [](Program& p) {
    p.ioctl(0, IOASID_ALLOC);
    for (uint8_t fd = 0; fd < kClientFds.size(); ++fd)
      p.ioctl(0, IOASID_MAP_FILE).set("flags", kRwFixed).from("ioasid", 0).from("fd", fd).pages("offset", 16)
          .pages("length", 16).set("iova", 0x200000 + fd * 0x100000ull);
    p.ioctl(0, IOASID_MAP_FILE).set("flags", IOASID_MAP_READABLE).from("ioasid", 0).from("fd", 1)
        .pages("offset", 500).pages("length", 16);  // beyond the end of the file
  });
  seed("pin-limit", [](Program& p) {
    p.ioctl(0, IOASID_ALLOC);
    for (int i = 0; i < 9; ++i)  // 8 x 512 pages is the limit: the 9th is ENOMEM
      p.ioctl(0, IOASID_MAP_DMA).set("flags", kRw).from("ioasid", 0).user_ptr("user_va", kMemfd, 0)
          .pages("length", 512);
  });
  seed("device-dma", [](Program& p) {
    bind(p, 0, kDma1);
    p.ioctl(0, IOASID_DEVICE_GET_INFO).from("dev_id", 0);
    p.ioctl(0, IOASID_ALLOC);
    p.ioctl(0, IOASID_MAP_DMA).set("flags", kRwFixed).from("ioasid", 0).user_ptr("user_va", kAnon, 0)
        .pages("length", 8).set("iova", 0x10000);
    p.ioctl(0, IOASID_ATTACH_IOASID).from("dev_id", 0).from("ioasid", 0);
    p.ioctl(0, IOASID_DEVICE_DMA).from("dev_id", 0).set("flags", IOASID_DMA_WRITE).set("iova", 0x10000)
        .pages("length", 1).user_ptr("buf_uptr", kAnon, 64);
    p.ioctl(0, IOASID_DEVICE_DMA).from("dev_id", 0).set("iova", 0x11000).set("length", 100)
        .user_ptr("buf_uptr", kMemfd, 3, 17);
    p.ioctl(0, IOASID_DEVICE_DMA).from("dev_id", 0).set("iova", 0x17000).pages("length", 2)
        .user_ptr("buf_uptr", kAnon, 64);  // runs off the mapping: a fault
    p.read_faults(0, 4);
    p.ioctl(0, IOASID_DETACH_IOASID).from("dev_id", 0).from("ioasid", 0);
    p.ioctl(0, IOASID_DEVICE_UNBIND).from("dev_id", 0);
  });
  seed("page-request", [](Program& p) {
    bind(p, 0, kDma0);
    alloc_pasid(p, 0);
    p.ioctl(0, IOASID_ALLOC);
    p.ioctl(0, IOASID_ATTACH_IOASID_PASID).from("dev_id", 0).from("ioasid", 0).from("pasid", 0);
    p.ioctl(0, IOASID_DEVICE_DMA).from("dev_id", 0).set("flags", IOASID_DMA_PASID | IOASID_DMA_NOWAIT)
        .from("pasid", 0).set("iova", 0x20000).pages("length", 1).user_ptr("buf_uptr", kAnon, 0);
    p.read_faults(0, 2);
    p.ioctl(0, IOASID_MAP_DMA).set("flags", kRwFixed).from("ioasid", 0).user_ptr("user_va", kAnon, 16)
        .pages("length", 1).set("iova", 0x20000);
    p.ioctl(0, IOASID_PAGE_RESP).from("dev_id", 0).set("flags", IOASID_PAGE_RESP_PASID_VALID).from("pasid", 0)
        .from("grpid", 0).set("code", IOASID_PAGE_RESP_SUCCESS);
    p.ioctl(0, IOASID_PAGE_RESP).from("dev_id", 0).set("flags", IOASID_PAGE_RESP_PASID_VALID).from("pasid", 0)
        .from("grpid", 0);  // answered already: EINVAL
    p.ioctl(0, IOASID_DEVICE_DMA).from("dev_id", 0).set("flags", IOASID_DMA_PASID).from("pasid", 0)
        .set("iova", 0x30000).pages("length", 1).user_ptr("buf_uptr", kAnon, 0);  // waits, times out
    p.ioctl(0, IOASID_DEVICE_DMA).from("dev_id", 0).set("flags", IOASID_DMA_PASID | IOASID_DMA_NOWAIT)
        .from("pasid", 0).set("iova", 0x40000).pages("length", 1).user_ptr("buf_uptr", kAnon, 0);
    p.ioctl(0, IOASID_PASID_REQUEST).set("flags", IOASID_PASID_FREE).from("min", 0).from("max", 0);  // attached
  });
  seed("nested-bind", [](Program& p) {
    // A guest's 4-level first-level table in the memfd, GPA 0x40000000 onwards:
    // PML4 -> PDPT -> PD -> PT, VA 0 and 0x1000 mapped to GPA 0x40010000 and +0x1000.
    constexpr uint64_t kGpa = 0x40000000, kPresentWritable = 0x3;
    p.poke(kMemfd, 0x0000, {(kGpa + 0x1000) | kPresentWritable});
    p.poke(kMemfd, 0x1000, {(kGpa + 0x2000) | kPresentWritable});
    p.poke(kMemfd, 0x2000, {(kGpa + 0x3000) | kPresentWritable});
    p.poke(kMemfd, 0x3000, {(kGpa + 0x10000) | kPresentWritable, (kGpa + 0x11000) | kPresentWritable});
    p.ioctl(0, IOASID_ALLOC);                                                  // parent: pool 0
    p.ioctl(0, IOASID_ALLOC).set("flags", IOASID_ALLOC_NESTED).from("parent", 0);  // nested: pool 1
    p.ioctl(0, IOASID_MAP_DMA).set("flags", kRwFixed).from("ioasid", 0).user_ptr("user_va", kMemfd, 0)
        .pages("length", 32).set("iova", kGpa);
    p.ioctl(0, IOASID_MAP_DMA).set("flags", kRwFixed).from("ioasid", 1).user_ptr("user_va", kMemfd, 0)
        .pages("length", 1).set("iova", 0);  // EINVAL: nested
    p.ioctl(0, IOASID_BIND_PGTBL).from("ioasid", 1).set("format", IOASID_PGTBL_VTD_FL).set("pgtbl_addr", kGpa)
        .from("addr_width", 0);
    p.ioctl(0, IOASID_BIND_PGTBL).from("ioasid", 1).set("format", IOASID_PGTBL_VTD_FL).set("pgtbl_addr", kGpa)
        .from("addr_width", 0);  // EBUSY
    bind(p, 0, kDma0);
    alloc_pasid(p, 0, 5);
    p.ioctl(0, IOASID_ATTACH_IOASID_PASID).from("dev_id", 0).from("ioasid", 1).from("pasid", 0);
    p.ioctl(0, IOASID_DEVICE_DMA).from("dev_id", 0).set("flags", IOASID_DMA_PASID | IOASID_DMA_WRITE)
        .from("pasid", 0).set("iova", 0).pages("length", 2).user_ptr("buf_uptr", kAnon, 0);
    p.ioctl(0, IOASID_DEVICE_DMA).from("dev_id", 0).set("flags", IOASID_DMA_PASID | IOASID_DMA_NOWAIT)
        .from("pasid", 0).set("iova", 0x5000).pages("length", 1).user_ptr("buf_uptr", kAnon, 0);
    // Invalidation entries: the domain's IOTLB, then the guest PASID's caches.
    p.poke(kAnon, 0x8000, {IOASID_CACHE_IOTLB | (IOASID_INV_GRANU_DOMAIN << 8), 0, 0, 0});
    constexpr uint64_t kGuestPasidFlags = IOASID_INV_FLAGS_PASID | IOASID_INV_FLAGS_GPASID;
    p.poke(kAnon, 0x8020, {kAllCaches | (IOASID_INV_GRANU_PASID << 8) | (kGuestPasidFlags << 16) | (5ull << 32), 0, 0, 0});
    p.ioctl(0, IOASID_CACHE_INVLD).from("ioasid", 1).set("entry_len", 32).set("entry_num", 2)
        .user_ptr("entries_uptr", kAnon, 8);
    p.ioctl(0, IOASID_UNBIND_PGTBL).from("ioasid", 1);
    p.ioctl(0, IOASID_FREE).from("ioasid", 0);  // EBUSY: the nested one's parent
    p.ioctl(0, IOASID_DETACH_IOASID_PASID).from("dev_id", 0).from("ioasid", 1).from("pasid", 0);
    p.ioctl(0, IOASID_FREE).from("ioasid", 1);
  });
  seed("cache-invalidate", [](Program& p) {
    p.ioctl(0, IOASID_ALLOC);
    p.ioctl(0, IOASID_ALLOC).set("flags", IOASID_ALLOC_NESTED).from("parent", 0);
    p.ioctl(0, IOASID_CACHE_INVLD).from("ioasid", 1).set("entry_len", 32);  // entry_num 0: a probe
    // Domain-wide IOTLB entries 128 KiB apart in the anonymous region (zero elsewhere).
    p.poke(kAnon, 0x00000, {IOASID_CACHE_IOTLB | (IOASID_INV_GRANU_DOMAIN << 8)});
    p.poke(kAnon, 0x20000, {IOASID_CACHE_IOTLB | (IOASID_INV_GRANU_DOMAIN << 8)});
    p.ioctl(0, IOASID_CACHE_INVLD).from("ioasid", 1).set("entry_len", 0x20000).set("entry_num", 2)
        .user_ptr("entries_uptr", kAnon, 0);  // long entries, zero tails
    p.ioctl(0, IOASID_CACHE_INVLD).from("ioasid", 1).set("entry_len", 0xfffff000).set("entry_num", 1)
        .user_ptr("entries_uptr", kAnon, 0);  // a 4 GiB entry: EFAULT past the region, no 4 GiB buffer
    p.poke(kAnon, 0x20000 + 40, {1});
    p.ioctl(0, IOASID_CACHE_INVLD).from("ioasid", 1).set("entry_len", 0x20000).set("entry_num", 2)
        .user_ptr("entries_uptr", kAnon, 0);  // E2BIG at entry 1
    p.ioctl(0, IOASID_CACHE_INVLD).from("ioasid", 1).set("entry_len", 0x10).set("entry_num", 1)
        .user_ptr("entries_uptr", kAnon, 0);  // below the entry size: EINVAL
  });
  seed("dirty-tracking", [](Program& p) {
    bind(p, 0, kDma1);
    p.ioctl(0, IOASID_ALLOC);
    p.ioctl(0, IOASID_MAP_DMA).set("flags", kRwFixed).from("ioasid", 0).user_ptr("user_va", kMemfd, 0)
        .pages("length", 16).set("iova", 0x100000);
    p.ioctl(0, IOASID_ATTACH_IOASID).from("dev_id", 0).from("ioasid", 0);
    p.ioctl(0, IOASID_SET_DIRTY_TRACKING).from("ioasid", 0).set("flags", IOASID_DIRTY_ENABLE);
    p.ioctl(0, IOASID_DEVICE_DMA).from("dev_id", 0).set("flags", IOASID_DMA_WRITE).set("iova", 0x102000)
        .pages("length", 3).user_ptr("buf_uptr", kAnon, 0);
    p.ioctl(0, IOASID_GET_DIRTY_BITMAP).from("ioasid", 0).set("iova", 0x100000).pages("length", 16)
        .from("page_size", 0).user_ptr("bitmap_uptr", kAnon, 4);
    p.ioctl(0, IOASID_GET_DIRTY_BITMAP).from("ioasid", 0).set("flags", IOASID_DIRTY_NO_CLEAR).set("iova", 0x100000)
        .pages("length", 16).from("page_size", 0).user_ptr("bitmap_uptr", kAnon, 4);
    p.ioctl(0, IOASID_SET_DIRTY_TRACKING).from("ioasid", 0);
  });
  seed("wq-submit", [](Program& p) {
    bind(p, 0, kDsa0);
    alloc_pasid(p, 0, 9);
    p.ioctl(0, IOASID_ALLOC);
    p.ioctl(0, IOASID_MAP_DMA).set("flags", kRwFixed).from("ioasid", 0).user_ptr("user_va", kMemfd, 0)
        .pages("length", 16).set("iova", 0x100000);
    p.ioctl(0, IOASID_ATTACH_IOASID_PASID).from("dev_id", 0).from("ioasid", 0).from("pasid", 0);
    p.ioctl(0, IOASID_WQ_CONFIG).from("dev_id", 0).set("wq", 0).set("flags", IOASID_WQ_ENABLE).from("pasid", 0)
        .set("size", 4).set("priority", 1);
    p.ioctl(0, IOASID_WQ_CONFIG).from("dev_id", 0).set("wq", 1).set("flags", IOASID_WQ_ENABLE | IOASID_WQ_SHARED)
        .set("size", 2).set("priority", 2);
    const uint64_t kOpflags = IOASID_DSA_FLAG_CRAV | IOASID_DSA_FLAG_RCR;
    for (uint8_t opcode = 0; opcode < kDsaOpcodes.size(); ++opcode)
      p.ioctl(0, IOASID_DEVICE_SUBMIT).from("dev_id", 0).set("wq", 0).from("desc.opflags", opcode, kOpflags)
          .set("desc.completion_addr", 0x100000 + 32 * opcode).set("desc.src", 0x101000)
          .set("desc.dst", 0x104000).set("desc.xfer_size", 4096);
    p.ioctl(0, IOASID_DEVICE_SUBMIT).from("dev_id", 0).set("wq", 1).from("desc.pasid", 0)
        .from("desc.opflags", 3, kOpflags).set("desc.completion_addr", 0x100400).set("desc.src", 0x102000)
        .set("desc.dst", 0x10f000).set("desc.xfer_size", 8192);  // runs off the mapping
    p.ioctl(0, IOASID_DEVICE_SUBMIT).from("dev_id", 0).set("wq", 1).set("flags", IOASID_SUBMIT_GPASID)
        .set("desc.pasid", 9).from("desc.opflags", 4, kOpflags).set("desc.completion_addr", 0x100420)
        .set("desc.dst", 0x103000).set("desc.xfer_size", 64);
    p.wait_idle();
    p.read_faults(0, 8);
    p.ioctl(0, IOASID_WQ_CONFIG).from("dev_id", 0).set("wq", 0);
    p.ioctl(0, IOASID_WQ_CONFIG).from("dev_id", 0).set("wq", 1);
  });
  seed("wq-block-on-fault", [](Program& p) {
    bind(p, 0, kDsa0);
    alloc_pasid(p, 0);
    p.ioctl(0, IOASID_ALLOC);
    p.ioctl(0, IOASID_MAP_DMA).set("flags", kRwFixed).from("ioasid", 0).user_ptr("user_va", kAnon, 0)
        .pages("length", 4).set("iova", 0x100000);
    p.ioctl(0, IOASID_ATTACH_IOASID_PASID).from("dev_id", 0).from("ioasid", 0).from("pasid", 0);
    p.ioctl(0, IOASID_WQ_CONFIG).from("dev_id", 0).set("wq", 2).set("flags", IOASID_WQ_ENABLE | IOASID_WQ_BOF)
        .from("pasid", 0).set("size", 8).set("priority", 3);
    p.ioctl(0, IOASID_DEVICE_SUBMIT).from("dev_id", 0).set("wq", 2)
        .from("desc.opflags", 3, IOASID_DSA_FLAG_CRAV | IOASID_DSA_FLAG_BOF).set("desc.completion_addr", 0x100000)
        .set("desc.src", 0x101000).set("desc.dst", 0x200000).set("desc.xfer_size", 4096);
    p.wait_idle();
    p.read_faults(0, 2);
    p.ioctl(0, IOASID_MAP_DMA).set("flags", kRwFixed).from("ioasid", 0).user_ptr("user_va", kAnon, 8)
        .pages("length", 1).set("iova", 0x200000);
    p.ioctl(0, IOASID_PAGE_RESP).from("dev_id", 0).set("flags", IOASID_PAGE_RESP_PASID_VALID).from("pasid", 0)
        .from("grpid", 0);
    p.wait_idle();
    p.ioctl(0, IOASID_DEVICE_SUBMIT).from("dev_id", 0).set("wq", 2)
        .from("desc.opflags", 4, IOASID_DSA_FLAG_CRAV | IOASID_DSA_FLAG_BOF).set("desc.completion_addr", 0x100020)
        .set("desc.dst", 0x300000).set("desc.xfer_size", 64);  // left parked: the close answers it
  });
  seed("two-files", [](Program& p) {
    bind(p, 0, kDma0);
    bind(p, 1, kDma0);  // EBUSY
    bind(p, 1, kDsa0);
    bind(p, 0, kDsa0);  // shared: both may bind it
    alloc_pasid(p, 0);
    p.ioctl(1, IOASID_ALLOC);
    p.ioctl(1, IOASID_ATTACH_IOASID_PASID).from("dev_id", 0).from("ioasid", 0).from("pasid", 8);  // EACCES
    p.ioctl(1, IOASID_DEVICE_GET_INFO).from("dev_id", 8);  // the other file's id
    p.reopen(0);
    bind(p, 1, kDma0);
    p.admin(1, 1);
    p.admin(1, 2);
  });
  seed("generic-rules", [](Program& p) {
    p.mutated(0, IOASID_PASID_REQUEST, _IOC_READ | _IOC_WRITE, 64).set("flags", IOASID_PASID_ALLOC).set("min", 1)
        .set("max", 10);  // bigger, zero tail: served
    p.mutated(0, IOASID_PASID_REQUEST, _IOC_READ | _IOC_WRITE, 16);  // below v1: EINVAL
    p.mutated(0, IOASID_ALLOC, _IOC_WRITE, 16);                        // wrong direction: ENOTTY
    p.mutated(0, IOASID_GET_API_VERSION, _IOC_NONE, 8);                // _IO with a size: ENOTTY
    p.random(0, _IOWR('i', 127, ioasid_pasid_request));
    p.random(0, _IOWR('j', 103, ioasid_pasid_request), {1, 2, 3});
    p.ioctl(0, IOASID_GET_INFO).set("flags", 1);
    p.read_bytes(0, 63);
    p.read_faults(0, 0);
    p.admin(0, 0);
  });
  seed("close-with-everything", [](Program& p) {
    bind(p, 2, kDma0);
    bind(p, 2, kDsa0);
    alloc_pasid(p, 2, 3);
    p.ioctl(2, IOASID_ALLOC);
    p.ioctl(2, IOASID_ALLOC).set("flags", IOASID_ALLOC_NESTED).from("parent", 0);
    p.ioctl(2, IOASID_MAP_DMA).set("flags", kRw).from("ioasid", 0).user_ptr("user_va", kMemfd, 0)
        .pages("length", 8);
    p.ioctl(2, IOASID_ATTACH_IOASID).from("dev_id", 0).from("ioasid", 0);
    p.ioctl(2, IOASID_ATTACH_IOASID_PASID).from("dev_id", 1).from("ioasid", 0).from("pasid", 0);
    p.ioctl(2, IOASID_ATTACH_IOASID_PASID).from("dev_id", 0).from("ioasid", 1).from("pasid", 0);
    p.ioctl(2, IOASID_WQ_CONFIG).from("dev_id", 1).set("wq", 3).set("flags", IOASID_WQ_ENABLE).from("pasid", 0)
        .set("size", 1).set("priority", 1);
    p.ioctl(2, IOASID_DEVICE_SUBMIT).from("dev_id", 1).set("wq", 3).from("desc.opflags", 4).from("desc.dst", 0)
        .set("desc.xfer_size", 4096);
    p.ioctl(2, IOASID_DEVICE_SUBMIT).from("dev_id", 1).set("wq", 3).from("desc.opflags", 0);  // RETRY: full
    p.admin(2, 3, 0);
  });
  return out;
}

}  // namespace
}  // namespace ioasid_fuzz

int main(int argc, char** argv) {
  using namespace ioasid_fuzz;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  for (auto& [name, program] : seeds()) {
    const std::vector<uint8_t> bytes = program.encode();
    if (!round_trips(bytes, program.size())) {
      std::fprintf(stderr, "make_seeds: %s does not decode to what was encoded\n", name.c_str());
      return 1;
    }
    const std::string path = std::string(argv[1]) + "/" + name;
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    std::printf("%s: %zu bytes\n", path.c_str(), bytes.size());
  }
  return 0;
}

// SPDX-License-Identifier: MIT
// dma-demo: a device's DMA through the emulated IOMMU, one line per step.
//
// The program binds a dma device, gives it an I/O address space (an IOASID) with a
// 2 MiB memfd mapped in, and lets the device write and read that memory through the
// IOMMU: first with its RID (requests without PASID), then at a PASID. Then it unmaps
// the memory and shows the DMA fault that follows, both as DEVICE_DMA reports it and
// as the fault record read(2) returns. It uses libioasid (lib/client, <ioasid/client.hpp>),
// whose objects undo their ioctls when they go out of scope; docs/UAPI.md explains every ioctl.
#include "common/cli.h"
#include "common/names.h"
#include "common/node.h"
#include "common/shared_memory.h"
#include "common/steps.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace po = boost::program_options;
using namespace ioasid::examples;
using client::Result;

namespace {

constexpr uint64_t kBufferSize = 2ull << 20;  // the memfd the device reads and writes
constexpr uint64_t kPasidOffset = 1ull << 20;  // where the DMA at a PASID writes into it


// A pattern that differs from page to page, so a page landing in the wrong place shows.
void fill_pattern(std::span<std::byte> buffer) {
  for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = std::byte((i * 31 + i / 4096 + 3) & 0xff);
}

// "03 22 41 60 7f 9e bd dc" — the first bytes of a buffer.
std::string first_bytes(const std::byte* data) {
  std::string text;
  for (int i = 0; i < 8; ++i) text += fmt::format("{}{:02x}", i ? " " : "", std::to_integer<unsigned>(data[i]));
  return text;
}

// "FAULT at 0x200000, reason ACCESS" for a DMA that did not complete.
std::string dma_outcome(const client::DmaOutcome& dma) {
  if (dma.ok()) return "OK";
  return fmt::format("{} at {:#x}, reason {}", dma_status_name(dma.status), dma.fault_addr,
                     fault_reason_name(dma.fault_reason));
}

struct Options {
  std::string device = "dma0";
  bool pause = false;
};

// Every object below undoes its ioctl when run() returns, in reverse order: DETACH,
// FREE of the PASID, UNMAP, FREE of the IOASID, DEVICE_UNBIND.
Result<void> run(const client::File& node, const Options& options) {
  // What the daemon serves.
  auto info = node.info();
  IOASID_CLIENT_TRY(info);
  if (!(info->features & (1u << IOASID_FEAT_MAP_FILE)))
    return fail(EOPNOTSUPP, "this daemon does not offer MAP_FILE (features: {})", feature_list(info->features));

  // 1. The device becomes this file's: dev_id names it from now on.
  auto device = client::Device::bind(node, options.device);
  if (!device) {
    const client::Error& error = device.error();
    if (error.code == ENOENT)
      return fail(ENOENT, "{}: the daemon has no device {} (see `ioasidctl devices`)", error.what, options.device);
    if (error.code == EBUSY) return fail(EBUSY, "{}: another open file has bound {}", error.what, options.device);
    return error;
  }
  auto device_info = device->info();
  IOASID_CLIENT_TRY(device_info);
  if (device_info->type != IOASID_DEVICE_TYPE_DMA)
    return fail(EOPNOTSUPP, "{} is not a dma device (type {}): pick one with --device", options.device,
                device_info->type);
  const bool has_pasid = device_info->flags & IOASID_DEVICE_PASID;
  step("DEVICE_BIND {} -> dev_id {}: rid {:#06x}, {} PASID bits{}{}", options.device, device->id(), device_info->rid,
       device_info->pasid_bits, (device_info->flags & IOASID_DEVICE_PRI) ? ", PRI" : "",
       (device_info->flags & IOASID_DEVICE_ATS) ? ", ATS (it caches translations in its device-TLB)" : "");

  // 2. An empty I/O address space; the daemon keeps its second-level page table.
  auto ioas = client::Ioas::allocate(node);
  IOASID_CLIENT_TRY(ioas);
  step("ALLOC -> IOASID {}: an empty I/O address space (a file's ids count up across devices and IOASIDs)",
       ioas->id());

  // 3. The memory the device will reach: a memfd, mapped here too so we can look at it.
  auto memory = SharedMemory::create("dma-demo", kBufferSize);
  IOASID_CLIENT_TRY(memory);
  step("memfd_create + ftruncate {} MiB, mmap'd in this process at {}", kBufferSize >> 20,
       static_cast<const void*>(memory->data()));

  // 4. Put the memfd into the address space; the daemon picks the IOVA.
  auto mapping = client::Mapping::map_file(*ioas, memory->fd(), 0, kBufferSize);
  IOASID_CLIENT_TRY(mapping);
  const uint64_t iova = mapping->iova();
  step("MAP_FILE memfd [0, {:#x}) READABLE|WRITEABLE into IOASID {} -> iova {:#x}", kBufferSize, ioas->id(), iova);

  // 5. Route the device's own requests (its RID, no PASID) to the address space.
  auto rid_route = client::Attachment::attach(*device, *ioas);
  IOASID_CLIENT_TRY(rid_route);
  step("ATTACH_IOASID {} -> IOASID {}: its requests without PASID now translate through it", options.device,
       ioas->id());

  // 6. The device writes a pattern into memory; the memfd shows it.
  std::vector<std::byte> pattern(kBufferSize);
  fill_pattern(pattern);
  auto written = device->dma_write(iova, pattern);
  IOASID_CLIENT_TRY(written);
  if (!written->ok()) return fail(EIO, "DEVICE_DMA WRITE ended {}", dma_outcome(*written));
  if (std::memcmp(memory->data(), pattern.data(), kBufferSize) != 0)
    return fail(EIO, "the DMA reported OK but the memfd does not hold the pattern");
  step("DEVICE_DMA WRITE {} bytes at iova {:#x}: {}; the memfd now holds them ({} ...)", kBufferSize, iova,
       dma_outcome(*written), first_bytes(memory->data()));

  // 7. The device reads the memory back into another buffer.
  std::vector<std::byte> readback(kBufferSize);
  auto read = device->dma_read(iova, readback);
  IOASID_CLIENT_TRY(read);
  if (!read->ok()) return fail(EIO, "DEVICE_DMA read ended {}", dma_outcome(*read));
  if (readback != pattern) return fail(EIO, "the DMA read reported OK but returned other bytes than were written");
  step("DEVICE_DMA read {} bytes at iova {:#x}: {}; they equal what the device wrote", kBufferSize, iova,
       dma_outcome(*read));

  // 8-10. The same address space at a PASID: requests tagged with it translate the same way.
  std::optional<client::Pasid> pasid;
  std::optional<client::Attachment> pasid_route;
  if (!has_pasid || !(info->features & (1u << IOASID_FEAT_PASID))) {
    step("{} has no PASID capability: skipping the PASID steps (try --device dma0)", options.device);
  } else {
    const uint32_t bits = std::min(device_info->pasid_bits, info->pasid_bits);
    const client::PasidRange range{1, bits >= 32 ? UINT32_MAX : (1u << bits) - 1};
    auto allocated = client::Pasid::allocate(node, range);
    IOASID_CLIENT_TRY(allocated);
    pasid = *std::move(allocated);
    step("PASID_REQUEST ALLOC in [{}, {}] -> PASID {}", range.min, range.max, pasid->value());

    auto attached = client::Attachment::attach_pasid(*device, *ioas, pasid->value());
    IOASID_CLIENT_TRY(attached);
    pasid_route = *std::move(attached);
    step("ATTACH_IOASID_PASID {} PASID {} -> IOASID {}: requests with PASID {} translate through it too",
         options.device, pasid->value(), ioas->id(), pasid->value());

    std::vector<std::byte> message(4096);
    const std::string text = fmt::format("hello from {} at PASID {}", options.device, pasid->value());
    std::memcpy(message.data(), text.data(), text.size());
    auto tagged = device->dma_write(iova + kPasidOffset, message, {.pasid = pasid->value()});
    IOASID_CLIENT_TRY(tagged);
    if (!tagged->ok()) return fail(EIO, "DEVICE_DMA WRITE|PASID ended {}", dma_outcome(*tagged));
    if (std::memcmp(memory->data() + kPasidOffset, message.data(), message.size()) != 0)
      return fail(EIO, "the DMA at PASID {} reported OK but the memfd does not hold its bytes", pasid->value());
    step("DEVICE_DMA WRITE|PASID pasid {} {} bytes at iova {:#x}: {}; memfd offset {:#x} now reads \"{}\"",
         pasid->value(), message.size(), iova + kPasidOffset, dma_outcome(*tagged), kPasidOffset,
         reinterpret_cast<const char*>(memory->data() + kPasidOffset));
  }

  if (options.pause) {
    fmt::print("    paused before UNMAP: look with `ioasidctl contexts` (pid {}) and `ioasidctl pgtable CONTEXT {}`;"
               " press Enter to go on ...",
               ::getpid(), ioas->id());
    std::fflush(stdout);
    std::string line;
    std::getline(std::cin, line);
  }

  // 11. Take the memory out of the address space.
  auto unmapped = mapping->unmap();
  IOASID_CLIENT_TRY(unmapped);
  step("UNMAP_DMA iova {:#x} length {:#x} -> {} bytes unmapped; every IOTLB and device-TLB forgot them", iova,
       kBufferSize, *unmapped);

  // 12. The same DMA now faults: the IOMMU finds nothing mapped at the IOVA.
  auto faulted = device->dma_write(iova, std::span(pattern).first(4096));
  IOASID_CLIENT_TRY(faulted);
  if (faulted->status != IOASID_DMA_FAULT)
    return fail(EIO, "DEVICE_DMA after UNMAP ended {}, expected FAULT", dma_outcome(*faulted));
  step("DEVICE_DMA WRITE 4096 bytes at iova {:#x}: out_status {}, out_fault_addr {:#x}, out_fault_reason {}({})",
       iova, dma_status_name(faulted->status), faulted->fault_addr, fault_reason_name(faulted->fault_reason),
       faulted->fault_reason);

  // 13. The fault was also queued to this file: poll says POLLIN, read() returns it.
  auto record = node.next_fault(std::chrono::seconds(2));
  IOASID_CLIENT_TRY(record);
  std::string fetch;  // the HPA of the page-table entry the walk stopped at
  if (record->flags & IOASID_FAULT_FETCH_ADDR_VALID) fetch = fmt::format(", fetch_addr {:#x}", record->fetch_addr);
  step("poll -> POLLIN; read() -> {}-byte fault record: type {}, flags {}, dev_id {}, pasid {}, ioasid {}, "
       "reason {}({}), perm {}, addr {:#x}{}",
       sizeof *record, fault_type_name(record->type), fault_flag_list(record->flags), record->dev_id, record->pasid,
       record->ioasid, fault_reason_name(record->reason), record->reason, fault_perm_list(record->perm),
       record->addr, fetch);

  fmt::print("leaving run(): libioasid undoes the rest in reverse order: {}FREE IOASID {}, DEVICE_UNBIND {}\n",
             pasid ? fmt::format("DETACH_IOASID_PASID, PASID_REQUEST FREE {}, ", pasid->value()) : std::string(),
             ioas->id(), options.device);
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  std::string dev;
  Options options;
  po::options_description description(
      "Usage: dma-demo [--dev PATH] [--device NAME] [--pause]\n"
      "A device's DMA through the emulated IOMMU, one line per step: bind a dma device,\n"
      "allocate an IOASID, map a 2 MiB memfd into it, attach the device (RID, then a\n"
      "PASID), let it write and read the memfd, unmap, and show the fault that follows\n"
      "(DEVICE_DMA's report and the record read(2) returns).\n\n"
      "Options");
  description.add_options()
      ("help,h", "print this help and exit")
      ("dev,d", po::value(&dev)->value_name("PATH"), "the node to open (default: $IOASID_DEV, else /dev/ioasid)")
      ("device", po::value(&options.device)->value_name("NAME")->default_value(options.device),
       "the dma device to bind (see `ioasidctl devices`)")
      ("pause", po::bool_switch(&options.pause),
       "wait for Enter before unmapping (to look at the table with `ioasidctl pgtable`)");
  po::variables_map vm;
  if (auto exit_code = parse_command_line(argc, argv, "dma-demo", description, vm)) return *exit_code;

  auto node = client::File::open(node_path(dev));
  if (!node) {
    std::cerr << "dma-demo: " << node.error().what << "\n";
    return 1;
  }
  fmt::print("dma-demo: opened {} (pid {})\n", node->path(), ::getpid());
  std::fflush(stdout);
  if (auto done = run(*node, options); !done) {
    std::fflush(stdout);
    std::cerr << fmt::format("dma-demo: step [{}] failed: {} ({})\n", step_number + 1, done.error().what,
                             errno_name(done.error().code));
    return 1;
  }
  return 0;
}

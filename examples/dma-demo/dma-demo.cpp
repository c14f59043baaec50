// dma-demo: a device's DMA through the emulated IOMMU, one line per step.
//
// The program binds a dma device, gives it an I/O address space (an IOASID) with a
// 2 MiB memfd mapped in, and lets the device write and read that memory through the
// IOMMU: first with its RID (requests without PASID), then at a PASID. Then it unmaps
// the memory and shows the DMA fault that follows, both as DEVICE_DMA reports it and
// as the fault record read(2) returns. Only the uAPI header is used
// (uapi/linux/ioasid.h; docs/UAPI.md explains every ioctl).
#include "common/cli.h"
#include "common/names.h"
#include "common/node.h"
#include "common/steps.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <span>
#include <string>
#include <vector>

namespace po = boost::program_options;
using namespace ioasid::examples;
using ioasid::Result;
using ioasid::fail;

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

// The device moves `buffer.size()` bytes at `iova`: from the buffer into memory with
// IOASID_DMA_WRITE, else from memory into the buffer. With `pasid` (not 0) the
// requests carry that PASID. The ioctl succeeds whenever the device ran; out_status
// says how the transfer ended.
Result<ioasid_device_dma> device_dma(const Node& node, uint32_t dev_id, bool write, uint32_t pasid, uint64_t iova,
                                     std::span<std::byte> buffer) {
  ioasid_device_dma dma{};
  dma.dev_id = dev_id;
  dma.flags = (write ? IOASID_DMA_WRITE : 0) | (pasid ? IOASID_DMA_PASID : 0);
  dma.pasid = pasid;
  dma.iova = iova;
  dma.length = buffer.size();
  dma.buf_uptr = reinterpret_cast<uintptr_t>(buffer.data());
  IOASID_TRY(node.call(IOASID_DEVICE_DMA, dma, "IOASID_DEVICE_DMA"));
  return dma;
}

// A memfd of `size` bytes, also mapped in this process (so we can look at it).
struct SharedBuffer {
  ioasid::UniqueFd fd;
  std::byte* data = nullptr;
  size_t size = 0;
  SharedBuffer() = default;
  SharedBuffer(const SharedBuffer&) = delete;
  SharedBuffer& operator=(const SharedBuffer&) = delete;
  ~SharedBuffer() {
    if (data) ::munmap(data, size);
  }
};

Result<void> create_buffer(SharedBuffer& buffer, size_t size) {
  buffer.fd = ioasid::UniqueFd(::memfd_create("dma-demo", MFD_CLOEXEC));
  if (!buffer.fd) return fail(errno, "memfd_create: {}", std::strerror(errno));
  if (::ftruncate(buffer.fd.get(), static_cast<off_t>(size)) != 0)
    return fail(errno, "ftruncate of the memfd to {} bytes: {}", size, std::strerror(errno));
  void* data = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, buffer.fd.get(), 0);
  if (data == MAP_FAILED) return fail(errno, "mmap of the memfd: {}", std::strerror(errno));
  buffer.data = static_cast<std::byte*>(data);
  buffer.size = size;
  return ioasid::success();
}

struct Options {
  std::string device = "dma0";
  bool pause = false;
};

Result<void> run(const Node& node, const Options& options) {
  // What the daemon serves.
  auto info = node.info();
  IOASID_TRY(info);
  if (!(info->features & (1u << IOASID_FEAT_MAP_FILE)))
    return fail(EOPNOTSUPP, "this daemon does not offer MAP_FILE (features: {})", feature_list(info->features));

  // 1. The device becomes this file's: dev_id names it from now on.
  ioasid_device_bind bind{};
  if (options.device.size() >= sizeof bind.name) return fail(EINVAL, "device name \"{}\" is too long", options.device);
  std::memcpy(bind.name, options.device.data(), options.device.size());
  if (auto bound = node.call(IOASID_DEVICE_BIND, bind, "IOASID_DEVICE_BIND"); !bound) {
    const ioasid::Error& error = bound.error();
    if (error.code == ENOENT)
      return fail(ENOENT, "{}: the daemon has no device {} (see `ioasidctl devices`)", error.why, options.device);
    if (error.code == EBUSY) return fail(EBUSY, "{}: another open file has bound {}", error.why, options.device);
    return error;
  }
  const uint32_t dev_id = bind.out_dev_id;
  ioasid_device_info device{};
  device.dev_id = dev_id;
  IOASID_TRY(node.call(IOASID_DEVICE_GET_INFO, device, "IOASID_DEVICE_GET_INFO"));
  if (device.type != IOASID_DEVICE_TYPE_DMA)
    return fail(EOPNOTSUPP, "{} is not a dma device (type {}): pick one with --device", options.device, device.type);
  const bool has_pasid = device.flags & IOASID_DEVICE_PASID;
  step("DEVICE_BIND {} -> dev_id {}: rid {:#06x}, {} PASID bits{}{}", options.device, dev_id, device.rid,
       device.pasid_bits, (device.flags & IOASID_DEVICE_PRI) ? ", PRI" : "",
       (device.flags & IOASID_DEVICE_ATS) ? ", ATS (it caches translations in its device-TLB)" : "");

  // 2. An empty I/O address space; the daemon keeps its second-level page table.
  ioasid_alloc alloc{};
  IOASID_TRY(node.call(IOASID_ALLOC, alloc, "IOASID_ALLOC"));
  const uint32_t ioasid = alloc.out_ioasid;
  step("ALLOC -> IOASID {}: an empty I/O address space (a file's ids count up across devices and IOASIDs)",
       ioasid);

  // 3. The memory the device will reach: a memfd, mapped here too so we can look at it.
  SharedBuffer memory;
  IOASID_TRY(create_buffer(memory, kBufferSize));
  step("memfd_create + ftruncate {} MiB, mmap'd in this process at {}", kBufferSize >> 20,
       static_cast<const void*>(memory.data));

  // 4. Put the memfd into the address space; the daemon picks the IOVA.
  ioasid_map_file map{};
  map.flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE;
  map.ioasid = ioasid;
  map.fd = memory.fd.get();
  map.offset = 0;
  map.length = kBufferSize;
  IOASID_TRY(node.call(IOASID_MAP_FILE, map, "IOASID_MAP_FILE"));
  const uint64_t iova = map.iova;
  step("MAP_FILE memfd [0, {:#x}) READABLE|WRITEABLE into IOASID {} -> iova {:#x}", kBufferSize, ioasid, iova);

  // 5. Route the device's own requests (its RID, no PASID) to the address space.
  ioasid_attach attach{};
  attach.dev_id = dev_id;
  attach.ioasid = ioasid;
  IOASID_TRY(node.call(IOASID_ATTACH_IOASID, attach, "IOASID_ATTACH_IOASID"));
  step("ATTACH_IOASID {} -> IOASID {}: its requests without PASID now translate through it", options.device,
       ioasid);

  // 6. The device writes a pattern into memory; the memfd shows it.
  std::vector<std::byte> pattern(kBufferSize);
  fill_pattern(pattern);
  auto written = device_dma(node, dev_id, true, 0, iova, pattern);
  IOASID_TRY(written);
  if (written->out_status != IOASID_DMA_OK)
    return fail(EIO, "DEVICE_DMA WRITE ended {} at {:#x}, reason {}", dma_status_name(written->out_status),
                written->out_fault_addr, fault_reason_name(written->out_fault_reason));
  if (std::memcmp(memory.data, pattern.data(), kBufferSize) != 0)
    return fail(EIO, "the DMA reported OK but the memfd does not hold the pattern");
  step("DEVICE_DMA WRITE {} bytes at iova {:#x}: {}; the memfd now holds them ({} ...)", kBufferSize, iova,
       dma_status_name(written->out_status), first_bytes(memory.data));

  // 7. The device reads the memory back into another buffer.
  std::vector<std::byte> readback(kBufferSize);
  auto read = device_dma(node, dev_id, false, 0, iova, readback);
  IOASID_TRY(read);
  if (read->out_status != IOASID_DMA_OK)
    return fail(EIO, "DEVICE_DMA read ended {} at {:#x}, reason {}", dma_status_name(read->out_status),
                read->out_fault_addr, fault_reason_name(read->out_fault_reason));
  if (readback != pattern) return fail(EIO, "the DMA read reported OK but returned other bytes than were written");
  step("DEVICE_DMA read {} bytes at iova {:#x}: {}; they equal what the device wrote", kBufferSize, iova,
       dma_status_name(read->out_status));

  // 8-10. The same address space at a PASID: requests tagged with it translate the same way.
  uint32_t pasid = 0;
  if (!has_pasid || !(info->features & (1u << IOASID_FEAT_PASID))) {
    step("{} has no PASID capability: skipping the PASID steps (try --device dma0)", options.device);
  } else {
    const uint32_t bits = std::min(device.pasid_bits, info->pasid_bits);
    ioasid_pasid_request request{};
    request.flags = IOASID_PASID_ALLOC;
    request.min = 1;
    request.max = bits >= 32 ? UINT32_MAX : (1u << bits) - 1;
    IOASID_TRY(node.call(IOASID_PASID_REQUEST, request, "IOASID_PASID_REQUEST"));
    pasid = request.pasid;
    step("PASID_REQUEST ALLOC in [{}, {}] -> PASID {}", request.min, request.max, pasid);

    ioasid_attach at_pasid{};
    at_pasid.dev_id = dev_id;
    at_pasid.ioasid = ioasid;
    at_pasid.pasid = pasid;
    IOASID_TRY(node.call(IOASID_ATTACH_IOASID_PASID, at_pasid, "IOASID_ATTACH_IOASID_PASID"));
    step("ATTACH_IOASID_PASID {} PASID {} -> IOASID {}: requests with PASID {} translate through it too",
         options.device, pasid, ioasid, pasid);

    std::vector<std::byte> message(4096);
    const std::string text = fmt::format("hello from {} at PASID {}", options.device, pasid);
    std::memcpy(message.data(), text.data(), text.size());
    auto tagged = device_dma(node, dev_id, true, pasid, iova + kPasidOffset, message);
    IOASID_TRY(tagged);
    if (tagged->out_status != IOASID_DMA_OK)
      return fail(EIO, "DEVICE_DMA WRITE|PASID ended {} at {:#x}, reason {}", dma_status_name(tagged->out_status),
                  tagged->out_fault_addr, fault_reason_name(tagged->out_fault_reason));
    if (std::memcmp(memory.data + kPasidOffset, message.data(), message.size()) != 0)
      return fail(EIO, "the DMA at PASID {} reported OK but the memfd does not hold its bytes", pasid);
    step("DEVICE_DMA WRITE|PASID pasid {} {} bytes at iova {:#x}: {}; memfd offset {:#x} now reads \"{}\"", pasid,
         message.size(), iova + kPasidOffset, dma_status_name(tagged->out_status), kPasidOffset,
         reinterpret_cast<const char*>(memory.data + kPasidOffset));
  }

  if (options.pause) {
    fmt::print("    paused before UNMAP: look with `ioasidctl contexts` (pid {}) and `ioasidctl pgtable CONTEXT {}`;"
               " press Enter to go on ...",
               ::getpid(), ioasid);
    std::fflush(stdout);
    std::string line;
    std::getline(std::cin, line);
  }

  // 11. Take the memory out of the address space.
  ioasid_unmap_dma unmap{};
  unmap.ioasid = ioasid;
  unmap.iova = iova;
  unmap.length = kBufferSize;
  IOASID_TRY(node.call(IOASID_UNMAP_DMA, unmap, "IOASID_UNMAP_DMA"));
  step("UNMAP_DMA iova {:#x} length {:#x} -> {} bytes unmapped; every IOTLB and device-TLB forgot them", iova,
       kBufferSize, unmap.length);

  // 12. The same DMA now faults: the IOMMU finds nothing mapped at the IOVA.
  auto faulted = device_dma(node, dev_id, true, 0, iova, std::span(pattern).first(4096));
  IOASID_TRY(faulted);
  if (faulted->out_status != IOASID_DMA_FAULT)
    return fail(EIO, "DEVICE_DMA after UNMAP ended {}, expected FAULT", dma_status_name(faulted->out_status));
  step("DEVICE_DMA WRITE 4096 bytes at iova {:#x}: out_status {}, out_fault_addr {:#x}, out_fault_reason {}({})",
       iova, dma_status_name(faulted->out_status), faulted->out_fault_addr,
       fault_reason_name(faulted->out_fault_reason), faulted->out_fault_reason);

  // 13. The fault was also queued to this file: poll says POLLIN, read() returns it.
  pollfd ready{.fd = node.fd(), .events = POLLIN, .revents = 0};
  const int polled = ::poll(&ready, 1, 2000);
  if (polled < 0) return fail(errno, "poll: {}", std::strerror(errno));
  if (polled == 0 || !(ready.revents & POLLIN)) return fail(ETIMEDOUT, "no fault record is readable after 2 s");
  ioasid_fault record{};
  const ssize_t got = ::read(node.fd(), &record, sizeof record);
  if (got < 0) return fail(errno, "read of a fault record: {}", std::strerror(errno));
  if (got != sizeof record) return fail(EIO, "read returned {} bytes, expected {}", got, sizeof record);
  std::string fetch;  // the HPA of the page-table entry the walk stopped at
  if (record.flags & IOASID_FAULT_FETCH_ADDR_VALID) fetch = fmt::format(", fetch_addr {:#x}", record.fetch_addr);
  step("poll -> POLLIN; read() -> {}-byte fault record: type {}, flags {}, dev_id {}, pasid {}, ioasid {}, "
       "reason {}({}), perm {}, addr {:#x}{}",
       got, fault_type_name(record.type), fault_flag_list(record.flags), record.dev_id, record.pasid, record.ioasid,
       fault_reason_name(record.reason), record.reason, fault_perm_list(record.perm), record.addr, fetch);

  fmt::print("close(): the daemon detaches {}, unbinds it and frees IOASID {}{}\n", options.device, ioasid,
             pasid ? fmt::format(" and PASID {}", pasid) : std::string());
  return ioasid::success();
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
      ("help,h", "show this help and exit")
      ("dev,d", po::value(&dev)->value_name("PATH"), "the node to open (default: $IOASID_DEV, else /dev/ioasid)")
      ("device", po::value(&options.device)->value_name("NAME")->default_value(options.device),
       "the dma device to bind (see `ioasidctl devices`)")
      ("pause", po::bool_switch(&options.pause),
       "wait for Enter before unmapping (to look at the table with `ioasidctl pgtable`)");
  po::variables_map vm;
  if (auto exit_code = parse_command_line(argc, argv, "dma-demo", description, vm)) return *exit_code;

  auto node = Node::open(resolve_node_path(dev));
  if (!node) {
    std::cerr << "dma-demo: " << node.error().why << "\n";
    return 1;
  }
  fmt::print("dma-demo: opened {} (pid {})\n", node->path(), ::getpid());
  std::fflush(stdout);
  if (auto done = run(*node, options); !done) {
    std::fflush(stdout);
    std::cerr << fmt::format("dma-demo: step [{}] failed: {} ({})\n", step_number + 1, done.error().why,
                             errno_name(done.error().code));
    return 1;
  }
  return 0;
}

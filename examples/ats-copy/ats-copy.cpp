// SPDX-License-Identifier: MIT
// ats-copy: a device model that moves data itself, as a PCIe device with ATS does.
//
// A "VMM" (the main thread) gives its guest 8 MiB of RAM (its own private memory,
// MAP_DMA'd at guest-physical address 0) and binds dma0, which has ATS. A copy engine
// model runs in a thread of its own and is programmed like real hardware: through a
// ring of descriptors in guest RAM and a doorbell. For every access it makes — fetching
// a descriptor, copying or checksumming a buffer, writing the status back — it goes
// through its AtsCache: the IOMMU translates once (IOASID_ATS_TRANSLATE), the engine
// copies with plain memory accesses, and when the VMM unmaps guest RAM the IOMMU asks
// the engine to drop what it holds (an invalidation read from the file, answered with
// IOASID_ATS_INV_ACK) before UNMAP returns. The VMM then moves one guest page to other
// memory: the engine's next access is translated again and reaches the new page.
// It uses libioasid (<ioasid/client.hpp>); docs/UAPI.md, "ATS for device models".
#include "common/cli.h"
#include "common/node.h"
#include "common/steps.h"

#include <sys/mman.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

namespace po = boost::program_options;
using namespace ioasid::examples;
using client::Result;

namespace {

constexpr uint64_t kGuestRam = 8ull << 20;
constexpr uint64_t kRing = 0;             // GPA of the descriptor ring
constexpr uint32_t kRingSlots = 16;
constexpr uint64_t kBuffers = 1ull << 20;  // GPA where the buffers start
constexpr uint32_t kChunk = 256u << 10;

// The engine's descriptor, as the guest writes it into its RAM.
struct Descriptor {
  uint32_t op;      // kCopy, kCrc
  uint32_t status;  // written by the engine: kDone or kFailed
  uint64_t src;     // GPAs
  uint64_t dst;
  uint32_t length;
  uint32_t crc;  // kCrc: the CRC-32C of [src, src + length)
};
static_assert(sizeof(Descriptor) == 32);
enum : uint32_t { kCopy = 1, kCrc = 2, kDone = 1, kFailed = 2 };

uint32_t crc32c(std::span<const std::byte> bytes, uint32_t crc = 0) {
  crc = ~crc;
  for (std::byte b : bytes) {
    crc ^= static_cast<uint8_t>(b);
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

// Private memory of this process: the guest's RAM, or a page to move it to.
struct Memory {
  explicit Memory(size_t size) : size(size) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    data = p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
  }
  ~Memory() {
    if (data) munmap(data, size);
  }
  std::span<std::byte> bytes() const { return {data, size}; }
  size_t size;
  std::byte* data;
};

// The copy engine: its own thread, its ATC, a doorbell the driver rings with the ring's
// new tail (an MMIO register on real hardware).
class CopyEngine {
 public:
  explicit CopyEngine(client::AtsCache& atc) : atc_(atc), thread_([this] { run(); }) {}
  ~CopyEngine() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    rung_.notify_one();
    thread_.join();
  }
  void ring(uint32_t tail) {
    {
      std::lock_guard lock(mutex_);
      tail_ = tail;
    }
    rung_.notify_one();
  }
  // Waits until the engine has processed every descriptor before `tail`.
  void wait_idle(uint32_t tail) {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [&] { return head_ == tail; });
  }

 private:
  void run() {
    for (;;) {
      uint32_t head, tail;
      {
        std::unique_lock lock(mutex_);
        rung_.wait(lock, [&] { return stopping_ || head_ != tail_; });
        if (stopping_) return;
        head = head_;
        tail = tail_;
      }
      for (; head != tail; ++head) execute(kRing + (head % kRingSlots) * sizeof(Descriptor));
      {
        std::lock_guard lock(mutex_);
        head_ = head;
      }
      idle_.notify_all();
    }
  }

  // Every byte the engine touches goes through its ATC.
  void execute(uint64_t gpa) {
    Descriptor desc{};
    auto fetched = atc_.read(gpa, std::as_writable_bytes(std::span(&desc, 1)));
    if (!fetched || !fetched->ok()) return;  // a device cannot report what it cannot read
    bool ok = false;
    if (desc.op == kCopy) {
      auto copied = atc_.copy(desc.dst, desc.src, desc.length);
      ok = copied && copied->ok();
    } else if (desc.op == kCrc) {
      std::vector<std::byte> bytes(desc.length);
      auto read = atc_.read(desc.src, bytes);
      ok = read && read->ok();
      desc.crc = crc32c(bytes);
    }
    desc.status = ok ? kDone : kFailed;
    (void)atc_.write(gpa, std::as_bytes(std::span(&desc, 1)));
  }

  client::AtsCache& atc_;
  std::mutex mutex_;
  std::condition_variable rung_, idle_;
  uint32_t head_ = 0, tail_ = 0;
  bool stopping_ = false;
  std::thread thread_;  // last: it starts running in the constructor
};

// The guest driver: writes descriptors into its RAM (this process's memory) and rings.
struct Driver {
  std::byte* ram;
  CopyEngine& engine;
  uint32_t tail = 0;
  Descriptor& slot(uint32_t n) const {
    return *reinterpret_cast<Descriptor*>(ram + kRing + (n % kRingSlots) * sizeof(Descriptor));
  }
  // Submits a batch, waits for the engine, returns the descriptors as completed.
  std::vector<Descriptor> run(const std::vector<Descriptor>& batch) {
    const uint32_t first = tail;
    for (const Descriptor& desc : batch) slot(tail++) = desc;
    engine.ring(tail);
    engine.wait_idle(tail);
    std::vector<Descriptor> done;
    for (uint32_t n = first; n != tail; ++n) done.push_back(slot(n));
    return done;
  }
};

Result<void> run_demo(const client::File& node) {
  Memory ram(kGuestRam), other_page(4096);
  if (!ram.data || !other_page.data) return fail(ENOMEM, "cannot allocate the guest's RAM");
  auto ioas = client::Ioas::allocate(node);
  IOASID_CLIENT_TRY(ioas);
  auto mapping = client::Mapping::map_dma(*ioas, ram.bytes(), {.iova = 0});
  IOASID_CLIENT_TRY(mapping);
  auto dma0 = client::Device::bind(node, "dma0");
  IOASID_CLIENT_TRY(dma0);
  auto route = client::Attachment::attach(*dma0, *ioas);
  IOASID_CLIENT_TRY(route);
  step("guest RAM: 8 MiB of this process mapped at GPA 0 of IOASID {}; dma0 (ATS) attached by RID", ioas->id());

  client::AtsCache atc(*dma0);
  auto server = client::AtsInvalidationServer::start(node, {&atc});
  IOASID_CLIENT_TRY(server);
  CopyEngine engine(atc);
  Driver driver{ram.data, engine};
  step("copy engine started in its own thread: descriptors in a ring at GPA {:#x}, a doorbell, an ATC", kRing);

  for (uint64_t i = 0; i < 4 * kChunk; ++i) ram.data[kBuffers + i] = std::byte(i * 31 + (i >> 12));
  std::vector<Descriptor> batch;
  for (uint32_t i = 0; i < 4; ++i)
    batch.push_back({.op = kCopy, .src = kBuffers + i * kChunk, .dst = kBuffers + (4 + i) * kChunk,
                     .length = kChunk});
  batch.push_back({.op = kCrc, .src = kBuffers + 4 * kChunk, .length = 4 * kChunk});
  const auto done = driver.run(batch);
  const uint32_t expected = crc32c(std::span(ram.data + kBuffers, 4 * kChunk));
  for (const Descriptor& desc : done)
    if (desc.status != kDone) return fail(EIO, "a descriptor failed (op {})", desc.op);
  if (std::memcmp(ram.data + kBuffers, ram.data + kBuffers + 4 * kChunk, 4 * kChunk) != 0)
    return fail(EIO, "the copies differ from their sources");
  if (done.back().crc != expected) return fail(EIO, "CRC {:#x}, expected {:#x}", done.back().crc, expected);
  auto stats = atc.stats();
  step("4 copies of 256 KiB and a CRC-32C of 1 MiB ({:#010x}) done by the engine with {} translations: "
       "the rest were ATC hits",
       expected, stats.translations);

  // The VMM moves the guest page at `moved` to other memory, as when it migrates or
  // swaps guest RAM: UNMAP, then MAP of the new page at the same GPA.
  const uint64_t moved = kBuffers + 4 * kChunk;
  std::memset(other_page.data, 0x42, 4096);
  auto unmapped = mapping->unmap();
  IOASID_CLIENT_TRY(unmapped);
  step("UNMAP of guest RAM returned after the engine dropped its translations and acknowledged "
       "({} invalidation(s) so far)",
       atc.stats().invalidations);
  auto below = client::Mapping::map_dma(*ioas, ram.bytes().first(moved), {.iova = 0});
  IOASID_CLIENT_TRY(below);
  auto page = client::Mapping::map_dma(*ioas, other_page.bytes(), {.iova = moved});
  IOASID_CLIENT_TRY(page);
  auto above = client::Mapping::map_dma(*ioas, ram.bytes().subspan(moved + 4096), {.iova = moved + 4096});
  IOASID_CLIENT_TRY(above);
  const auto after = driver.run({{.op = kCrc, .src = moved, .length = 4096}});
  const uint32_t new_crc = crc32c(other_page.bytes());
  if (after[0].status != kDone || after[0].crc != new_crc)
    return fail(EIO, "the engine read {:#x}, the new page's CRC is {:#x}", after[0].crc, new_crc);
  stats = atc.stats();
  step("the page at GPA {:#x} now lives elsewhere: the engine translated again and read the new page "
       "(CRC {:#010x}); {} translations, {} invalidations in all",
       moved, new_crc, stats.translations, stats.invalidations);
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  std::string dev;
  po::options_description options(
      "Usage: ats-copy [--dev PATH]\n"
      "A copy engine model that translates through ATS and moves data itself.\n\nOptions");
  options.add_options()("help,h", "print this help and exit")(
      "dev", po::value(&dev)->value_name("PATH"), "the node (default: $IOASID_DEV, else /dev/ioasid)");
  po::variables_map vm;
  if (auto exit_code = parse_command_line(argc, argv, "ats-copy", options, vm)) return *exit_code;
  auto node = client::File::open(node_path(dev));
  if (!node) {
    std::cerr << "ats-copy: " << node.error().what << "\n";
    return 1;
  }
  if (auto done = run_demo(*node); !done) {
    std::cerr << "ats-copy: " << done.error().what << "\n";
    return 1;
  }
  step("done: closing the file detaches dma0 and unmaps the guest's RAM");
  return 0;
}

// SPDX-License-Identifier: MIT
// dsa-memmove: work submitted to a DSA-like engine through a shared work queue, the way
// a process uses ENQCMD, and the same from inside a "VM" whose guest PASIDs the VMM
// maps to host PASIDs.
//
// The process binds dsa0, attaches one of its PASIDs to an I/O address space holding a
// memfd, enables a shared work queue and submits descriptors — MEMMOVE, MEMFILL,
// COMPARE, CRCGEN, a BATCH — each naming its PASID and a completion record in that
// memory, which it then polls. A MEMMOVE that runs off the mapping ends with a partial
// record saying how far it got (DSA software then finishes the rest itself). Then a VMM
// maps guest PASID 7 to a host PASID and its guest submits with the guest PASID: the
// engine runs it at the host PASID, and a guest PASID the VMM never mapped is refused.
// It uses libioasid (<ioasid/client.hpp>); docs/UAPI-REFERENCE.md explains every ioctl.
#include "common/cli.h"
#include "common/node.h"
#include "common/shared_memory.h"
#include "common/steps.h"

#include <fmt/format.h>

#include <cstring>
#include <iostream>
#include <string_view>

namespace po = boost::program_options;
using namespace ioasid::examples;
using client::Result;

namespace {

constexpr uint64_t kMemory = 6ull << 20;  // memfd: records, then data
constexpr uint64_t kData = 1ull << 20;    // where data starts in it
constexpr uint32_t kBlock = 1u << 20;     // the MEMMOVE size
constexpr uint32_t kWq = 0;
constexpr uint32_t kGuestPasid = 7;
constexpr auto kPatience = std::chrono::seconds(5);

// The memory the engine reaches, seen from here and from the device.
struct Window {
  SharedMemory& memory;
  uint64_t iova;  // where the memfd starts in the IOASID
  std::byte* at(uint64_t offset) const { return memory.data() + offset; }
  uint64_t device(uint64_t offset) const { return iova + offset; }
  // Completion record n, 32-byte aligned, at the start of the memfd.
  ioasid_dsa_completion& record(int n) const {
    return *reinterpret_cast<ioasid_dsa_completion*>(memory.data() + 32 * n);
  }
};

std::string record_text(const ioasid_dsa_completion& record) {
  std::string text = client::dsa::status_name(client::dsa::status_code(record));
  if (record.status & IOASID_DSA_COMP_STATUS_WRITE) text += " (write)";
  return text;
}

// Submits to the shared WQ (retrying while it says RETRY, as ENQCMD users do) and waits
// for record n.
Result<ioasid_dsa_completion> run(const client::WorkQueue& wq, const Window& window, int n, ioasid_dsa_desc desc,
                                  client::SubmitOptions options = {}) {
  std::memset(&window.record(n), 0, sizeof(ioasid_dsa_completion));
  desc.completion_addr = window.device(32 * n);
  desc.opflags |= IOASID_DSA_FLAG_CRAV | IOASID_DSA_FLAG_RCR;
  for (;;) {
    auto submitted = wq.submit(desc, options);
    IOASID_CLIENT_TRY(submitted);
    if (*submitted == client::SubmitStatus::accepted) break;
  }
  return client::dsa::wait_for_completion(window.record(n), kPatience);
}

Result<void> process_part(const client::File& node, const client::Device& dsa, const client::Ioas& ioas,
                          const Window& window) {
  auto pasid = client::Pasid::allocate(node);
  IOASID_CLIENT_TRY(pasid);
  auto route = client::Attachment::attach_pasid(dsa, ioas, pasid->value());
  IOASID_CLIENT_TRY(route);
  step("PASID {} allocated and attached: dsa0's requests tagged with it translate through IOASID {}", pasid->value(),
       ioas.id());
  auto wq = client::WorkQueue::enable_shared(dsa, kWq, {.size = 16});
  IOASID_CLIENT_TRY(wq);
  step("WQ_CONFIG wq {} ENABLE|SHARED, 16 slots: any file bound to dsa0 may now submit to it at its own PASIDs",
       kWq);
  const client::dsa::DescOptions at_pasid{.pasid = pasid->value()};

  for (uint32_t i = 0; i < kBlock; ++i) *window.at(kData + i) = std::byte(i * 7 + i / 4096);
  auto moved = run(*wq, window, 0,
                   client::dsa::memmove(window.device(kData + kBlock), window.device(kData), kBlock, at_pasid));
  IOASID_CLIENT_TRY(moved);
  const bool same = std::memcmp(window.at(kData), window.at(kData + kBlock), kBlock) == 0;
  step("MEMMOVE 1 MiB at PASID {}: record {}, destination {}", pasid->value(), record_text(*moved),
       same ? "equal to the source" : "DIFFERENT");

  auto filled = run(*wq, window, 1,
                    client::dsa::fill(window.device(kData + 2 * kBlock), 0x0123456789abcdef, 4096, at_pasid));
  IOASID_CLIENT_TRY(filled);
  step("MEMFILL 4 KiB with 0x0123456789abcdef: record {}, memory starts {:02x} {:02x} {:02x}", record_text(*filled),
       std::to_integer<int>(*window.at(kData + 2 * kBlock)), std::to_integer<int>(*window.at(kData + 2 * kBlock + 1)),
       std::to_integer<int>(*window.at(kData + 2 * kBlock + 2)));

  *window.at(kData + kBlock + 1000) ^= std::byte{0xff};
  auto compared = run(*wq, window, 2,
                      client::dsa::compare(window.device(kData), window.device(kData + kBlock), kBlock, at_pasid));
  IOASID_CLIENT_TRY(compared);
  step("COMPARE after flipping byte 1000 of the copy: record {}, result {}, first difference at {}",
       record_text(*compared), compared->result, compared->bytes_completed);

  constexpr std::string_view kCheck = "123456789";
  std::memcpy(window.at(kData + 3 * kBlock), kCheck.data(), kCheck.size());
  auto crc = run(*wq, window, 3, client::dsa::crcgen(window.device(kData + 3 * kBlock), kCheck.size(), 0, at_pasid));
  IOASID_CLIENT_TRY(crc);
  step("CRCGEN of \"{}\": record {}, CRC-32C {:#010x} (the standard check value is 0xe3069283)", kCheck,
       record_text(*crc), crc->crc_val);

  // A batch: three descriptors fetched by the engine from memory, each with its record.
  auto* list = reinterpret_cast<ioasid_dsa_desc*>(window.at(32 * 64));
  client::dsa::DescOptions child = at_pasid;
  for (int i = 0; i < 3; ++i) {
    child.completion_addr = window.device(32 * (8 + i));
    std::memset(&window.record(8 + i), 0, sizeof(ioasid_dsa_completion));
    list[i] = client::dsa::fill(window.device(kData + 3 * kBlock + 4096 * (i + 1)), 0x1111111111111111ull * (i + 1),
                                4096, child);
  }
  auto batch = run(*wq, window, 4, client::dsa::batch(window.device(32 * 64), 3, at_pasid));
  IOASID_CLIENT_TRY(batch);
  step("BATCH of 3 MEMFILLs: record {}, {} descriptors run, their records {} {} {}", record_text(*batch),
       batch->bytes_completed, record_text(window.record(8)), record_text(window.record(9)),
       record_text(window.record(10)));

  // Off the end of the mapping: the engine stops at the first byte it cannot translate.
  const uint64_t near_end = kMemory - 4096;
  auto partial = run(*wq, window, 5,
                     client::dsa::memmove(window.device(near_end), window.device(kData), 3 * 4096, at_pasid));
  IOASID_CLIENT_TRY(partial);
  step("MEMMOVE of 12 KiB into the last 4 KiB of the mapping: record {}, {} bytes done, fault at iova {:#x}",
       record_text(*partial), partial->bytes_completed, partial->fault_addr);
  return {};
}

Result<void> vm_part(const client::File& node, const client::Device& dsa, const client::Ioas& guest_ram,
                     const Window& window) {
  // The VMM: the guest's PASID 7 is host PASID N for this file, and dsa0 uses N.
  auto host = client::Pasid::allocate(node, {}, kGuestPasid);
  IOASID_CLIENT_TRY(host);
  auto route = client::Attachment::attach_pasid(dsa, guest_ram, host->value());
  IOASID_CLIENT_TRY(route);
  step("VMM: guest PASID {} -> host PASID {} (PASID_REQUEST ALLOC|GPASID), attached to dsa0 over guest RAM",
       kGuestPasid, host->value());
  auto wq = client::WorkQueue::enable_shared(dsa, kWq + 1, {.size = 16});
  IOASID_CLIENT_TRY(wq);

  // The guest: it knows only its own PASID, and submits as ENQCMD does inside a VM.
  std::memset(window.at(kData + kBlock), 0, 64);
  const client::SubmitOptions guest{.guest_pasid = true};
  auto moved = run(*wq, window, 6,
                   client::dsa::memmove(window.device(kData + kBlock), window.device(kData), 64,
                                        {.pasid = kGuestPasid}),
                   guest);
  IOASID_CLIENT_TRY(moved);
  step("guest: MEMMOVE naming guest PASID {} with IOASID_SUBMIT_GPASID ran at host PASID {}: record {}, {}",
       kGuestPasid, host->value(), record_text(*moved),
       std::memcmp(window.at(kData), window.at(kData + kBlock), 64) == 0 ? "copied" : "NOT copied");

  auto refused = wq->submit(client::dsa::noop({.pasid = kGuestPasid + 1}), guest);
  step("guest: a descriptor naming guest PASID {}, which the VMM never mapped: {}", kGuestPasid + 1,
       refused ? "accepted (unexpected)" : refused.error().what);
  return {};
}

Result<void> run_demo(const client::File& node) {
  auto info = node.info();
  IOASID_CLIENT_TRY(info);
  if (!(info->features & (1u << IOASID_FEAT_SIOV)))
    return fail(EOPNOTSUPP, "this daemon does not serve SIOV work queues (feature 8)");
  auto dsa = client::Device::bind(node, "dsa0");
  IOASID_CLIENT_TRY(dsa);
  auto dsa_info = dsa->info();
  IOASID_CLIENT_TRY(dsa_info);
  step("DEVICE_BIND dsa0 -> dev_id {}: {} work queues, {} PASID bits (a SIOV device: other files may bind it too)",
       dsa->id(), dsa_info->num_wqs, dsa_info->pasid_bits);
  auto ioas = client::Ioas::allocate(node);
  IOASID_CLIENT_TRY(ioas);
  auto memory = SharedMemory::create("dsa-memmove", kMemory);
  IOASID_CLIENT_TRY(memory);
  auto mapping = client::Mapping::map_file(*ioas, memory->fd(), 0, kMemory);
  IOASID_CLIENT_TRY(mapping);
  step("IOASID {} with a {} MiB memfd at iova {:#x} (completion records at its start, data from +1 MiB)",
       ioas->id(), kMemory >> 20, mapping->iova());
  const Window window{*memory, mapping->iova()};
  IOASID_CLIENT_TRY(process_part(node, *dsa, *ioas, window));
  return vm_part(node, *dsa, *ioas, window);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dev;
  po::options_description options(
      "Usage: dsa-memmove [--dev PATH]\n"
      "Submits work to dsa0's shared work queue, in a process and in a VM.\n\nOptions");
  options.add_options()("help,h", "print this help and exit")(
      "dev", po::value(&dev)->value_name("PATH"), "the node (default: $IOASID_DEV, else /dev/ioasid)");
  po::variables_map vm;
  if (auto exit_code = parse_command_line(argc, argv, "dsa-memmove", options, vm)) return *exit_code;
  auto node = client::File::open(node_path(dev));
  if (!node) {
    std::cerr << "dsa-memmove: " << node.error().what << "\n";
    return 1;
  }
  if (auto done = run_demo(*node); !done) {
    std::cerr << "dsa-memmove: " << done.error().what << "\n";
    return 1;
  }
  step("done: closing the file disables the work queues, detaches, unmaps and frees everything");
  return 0;
}

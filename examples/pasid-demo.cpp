// SPDX-License-Identifier: MIT
// pasid-demo: a guided tour of PASID management through /dev/ioasid.
// Each step prints the ioctl it issues and what came back, errors included.
#include "common/cli.h"
#include "common/names.h"
#include "common/node.h"

#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

namespace po = boost::program_options;
using namespace ioasid::examples;

namespace {

int step_number = 0;

void step(const std::string& title) { fmt::print("\n[{}] {}\n", ++step_number, title); }

// Prints a failed call the way a user should read it: errno name and reason.
void show_error(const client::Error& error) {
  fmt::print("    -> failed: {} ({})\n", errno_name(error.code), error.what);
}

struct Demo {
  const client::File& node;
  uint32_t first;   // the PASID range the demo allocates in
  uint32_t last;
  uint32_t count;
  uint32_t gpasid;
};

void show_quota(const client::File& node) {
  auto info = node.info();
  if (!info) return show_error(info.error());
  fmt::print("    -> this file holds {} of its quota of {} PASIDs\n", info->pasids_allocated, info->pasid_quota);
}

// `held` keeps the PASIDs the demo allocates (each one FREEd when destroyed), so that
// --pause can show them before the program ends.
int run(const Demo& demo, std::vector<client::Pasid>& held) {
  const client::File& node = demo.node;
  const client::PasidRange range{demo.first, demo.last};

  step("IOASID_GET_INFO: what does the IOMMU offer?");
  auto info = node.info();
  if (!info) {
    show_error(info.error());
    return 1;
  }
  fmt::print("    -> API {}, {} PASID bits, features: {}\n", info->api_version, info->pasid_bits,
             feature_list(info->features));
  fmt::print("    -> quota {} PASIDs per open file, {} allocated by this one\n", info->pasid_quota,
             info->pasids_allocated);
  const uint32_t pasid_max = info->pasid_bits >= 32 ? UINT32_MAX : (1u << info->pasid_bits) - 1;
  if (demo.last > pasid_max) {
    fmt::print("    the demo range ends at {} but PASIDs end at {}; pick a smaller --first\n", demo.last, pasid_max);
    return 1;
  }

  step(fmt::format("IOASID_PASID_REQUEST ALLOC x{} in [{}, {}]: PASIDs are system-wide numbers owned by this file",
                   demo.count, demo.first, demo.last));
  std::vector<uint32_t> pasids;
  for (uint32_t i = 0; i < demo.count; ++i) {
    auto pasid = client::Pasid::allocate(node, range);
    if (!pasid) {
      show_error(pasid.error());
      break;
    }
    fmt::print("    -> PASID {}\n", pasid->value());
    pasids.push_back(pasid->value());
    held.push_back(*std::move(pasid));
  }

  const bool has_gpasid = info->features & (1u << IOASID_FEAT_GPASID);
  if (has_gpasid) {
    step(fmt::format("IOASID_PASID_REQUEST ALLOC|GPASID gpasid={}: a guest's PASID backed by a host PASID",
                     demo.gpasid));
    if (auto pasid = client::Pasid::allocate(node, range, demo.gpasid)) {
      fmt::print("    -> host PASID {} now stands for guest PASID {} in this file\n", pasid->value(), demo.gpasid);
      held.push_back(*std::move(pasid));
    } else {
      show_error(pasid.error());
    }

    step(fmt::format("IOASID_PASID_LOOKUP gpasid={}: the host PASID a guest's ENQCMD would use", demo.gpasid));
    if (auto host = client::Pasid::lookup(node, demo.gpasid))
      fmt::print("    -> gpasid {} -> host PASID {}\n", demo.gpasid, *host);
    else
      show_error(host.error());

    step(fmt::format("IOASID_PASID_REQUEST ALLOC|GPASID gpasid={} again: one mapping per guest PASID", demo.gpasid));
    if (auto again = client::Pasid::allocate(node, range, demo.gpasid))
      fmt::print("    -> unexpectedly got PASID {}\n", again->value());
    else
      show_error(again.error());
  } else {
    step("GPASID is not offered by this daemon: skipping the guest PASID steps");
  }

  step("IOASID_GET_INFO again: quota use");
  show_quota(node);

  if (pasids.size() >= 2) {
    const uint32_t low = pasids[0];
    const uint32_t high = std::max(low, pasids[pasids.size() / 2]);
    step(fmt::format("IOASID_PASID_REQUEST FREE [{}, {}]: frees every PASID this file owns in the range", low, high));
    if (auto freed = client::free_pasids(node, {low, high})) {
      fmt::print("    -> {} PASID(s) freed\n", *freed);
      // Those PASIDs are gone: their objects let go of them rather than FREE them again.
      std::erase_if(held, [&](client::Pasid& pasid) {
        const bool in_range = pasid.value() >= low && pasid.value() <= high;
        if (in_range) pasid.release();
        return in_range;
      });
    } else {
      show_error(freed.error());
    }
    show_quota(node);
  }

  step("IOASID_PASID_REQUEST ALLOC with min 0: PASID 0 is never handed out");
  if (auto bad = client::Pasid::allocate(node, client::PasidRange{0, demo.last}))
    fmt::print("    -> unexpectedly got PASID {}\n", bad->value());
  else
    show_error(bad.error());

  step("IOASID_PASID_REQUEST with both ALLOC and FREE: exactly one is allowed");
  ioasid_pasid_request both{.flags = IOASID_PASID_ALLOC | IOASID_PASID_FREE, .min = demo.first, .max = demo.last};
  if (auto rc = node.call(IOASID_PASID_REQUEST, both))  // libioasid would not build this request: the raw ioctl
    fmt::print("    -> unexpectedly succeeded\n");
  else
    show_error(rc.error());

  step("IOASID_PASID_LOOKUP of a guest PASID never mapped");
  if (auto missing = client::Pasid::lookup(node, demo.gpasid + 1000))
    fmt::print("    -> unexpectedly found host PASID {}\n", *missing);
  else
    show_error(missing.error());

  step(fmt::format("leaving: the {} Pasid object(s) still held FREE their PASIDs, then close() - the daemon frees "
                   "whatever a file still owns when it closes",
                   held.size()));
  fmt::print("    -> watch it with `ioasidctl monitor pasid` or `ioasidctl pasids` in another terminal\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dev;
  uint32_t first = 100;
  uint32_t count = 3;
  uint32_t gpasid = 5;
  bool pause = false;
  po::options_description options(
      "Usage: pasid-demo [--dev PATH] [--first N] [--count N] [--gpasid G] [--pause]\n"
      "A guided tour of PASID management through /dev/ioasid: GET_INFO, allocating\n"
      "PASIDs (one backed by a guest PASID), PASID_LOOKUP, quota use, freeing a range\n"
      "and the errors that bad requests get. Every step prints its ioctl and result.\n\n"
      "Options");
  options.add_options()
      ("help,h", "print this help and exit")
      ("dev,d", po::value(&dev)->value_name("PATH"), "the node to open (default: $IOASID_DEV, else /dev/ioasid)")
      ("first", po::value(&first)->value_name("N")->default_value(first),
       "allocate PASIDs in [N, N+63]")
      ("count", po::value(&count)->value_name("N")->default_value(count), "how many plain PASIDs to allocate (1..64)")
      ("gpasid", po::value(&gpasid)->value_name("G")->default_value(gpasid), "the guest PASID to map")
      ("pause", po::bool_switch(&pause), "wait for Enter before closing the node (to inspect with ioasidctl)");
  po::variables_map vm;
  if (auto exit_code = parse_command_line(argc, argv, "pasid-demo", options, vm)) return *exit_code;
  if (first == 0 || count == 0 || count > 64 || first > UINT32_MAX - 63) {
    std::cerr << "pasid-demo: --first must be at least 1 and --count within 1..64\n";
    return 2;
  }

  auto node = client::File::open(node_path(dev));
  if (!node) {
    std::cerr << "pasid-demo: " << node.error().what << "\n";
    return 1;
  }
  fmt::print("pasid-demo: opened {}\n", node->path());
  std::vector<client::Pasid> held;  // after the File: destroyed before it closes
  const int status = run(Demo{*node, first, first + 63, count, gpasid}, held);
  if (pause) {
    fmt::print("\npress Enter to close {} ...", node->path());
    std::fflush(stdout);
    std::string line;
    std::getline(std::cin, line);
  }
  return status;
}

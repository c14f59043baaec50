// pasid-demo: a guided tour of PASID management through /dev/ioasid.
// Each step prints the ioctl it issues and what came back, errors included.
#include "common/cli.h"
#include "common/names.h"
#include "common/node.h"

#include <fmt/format.h>

#include <iostream>
#include <string>
#include <vector>

namespace po = boost::program_options;
using namespace ioasid::examples;

namespace {

int step_number = 0;

void step(const std::string& title) { fmt::print("\n[{}] {}\n", ++step_number, title); }

// Prints a failed call the way a user should read it: errno name and reason.
void show_error(const ioasid::Error& error) {
  fmt::print("    -> failed: {} ({})\n", errno_name(error.code), error.why);
}

struct Demo {
  const Node& node;
  uint32_t first;   // the PASID range the demo allocates in
  uint32_t last;
  uint32_t count;
  uint32_t gpasid;
};

ioasid::Result<uint32_t> allocate(const Node& node, uint32_t min, uint32_t max,
                                  std::optional<uint32_t> gpasid) {
  ioasid_pasid_request request{};
  request.flags = IOASID_PASID_ALLOC | (gpasid ? IOASID_PASID_GPASID : 0);
  request.min = min;
  request.max = max;
  request.gpasid = gpasid.value_or(0);
  if (auto rc = node.call(IOASID_PASID_REQUEST, request, "IOASID_PASID_REQUEST"); !rc)
    return std::move(rc).error();
  return request.pasid;
}

void show_quota(const Node& node) {
  auto info = node.info();
  if (!info) return show_error(info.error());
  fmt::print("    -> this file holds {} of its quota of {} PASIDs\n", info->pasids_allocated, info->pasid_quota);
}

int run(const Demo& demo) {
  const Node& node = demo.node;

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
    auto pasid = allocate(node, demo.first, demo.last, std::nullopt);
    if (!pasid) {
      show_error(pasid.error());
      break;
    }
    fmt::print("    -> PASID {}\n", *pasid);
    pasids.push_back(*pasid);
  }

  const bool has_gpasid = info->features & (1u << IOASID_FEAT_GPASID);
  if (has_gpasid) {
    step(fmt::format("IOASID_PASID_REQUEST ALLOC|GPASID gpasid={}: a guest's PASID backed by a host PASID",
                     demo.gpasid));
    auto pasid = allocate(node, demo.first, demo.last, demo.gpasid);
    if (pasid)
      fmt::print("    -> host PASID {} now stands for guest PASID {} in this file\n", *pasid, demo.gpasid);
    else
      show_error(pasid.error());

    step(fmt::format("IOASID_PASID_LOOKUP gpasid={}: the host PASID a guest's ENQCMD would use", demo.gpasid));
    ioasid_pasid_lookup lookup{};
    lookup.gpasid = demo.gpasid;
    if (auto rc = node.call(IOASID_PASID_LOOKUP, lookup, "IOASID_PASID_LOOKUP"); rc)
      fmt::print("    -> gpasid {} -> host PASID {}\n", demo.gpasid, lookup.out_pasid);
    else
      show_error(rc.error());

    step(fmt::format("IOASID_PASID_REQUEST ALLOC|GPASID gpasid={} again: one mapping per guest PASID", demo.gpasid));
    if (auto again = allocate(node, demo.first, demo.last, demo.gpasid); again)
      fmt::print("    -> unexpectedly got PASID {}\n", *again);
    else
      show_error(again.error());
  } else {
    step("GPASID is not offered by this daemon: skipping the guest PASID steps");
  }

  step("IOASID_GET_INFO again: quota use");
  show_quota(node);

  if (pasids.size() >= 2) {
    const uint32_t low = pasids[0];
    const uint32_t high = pasids[pasids.size() / 2];
    step(fmt::format("IOASID_PASID_REQUEST FREE [{}, {}]: frees every PASID this file owns in the range", low,
                     std::max(low, high)));
    ioasid_pasid_request request{};
    request.flags = IOASID_PASID_FREE;
    request.min = low;
    request.max = std::max(low, high);
    if (auto rc = node.call(IOASID_PASID_REQUEST, request, "IOASID_PASID_REQUEST"); rc)
      fmt::print("    -> {} PASID(s) freed\n", request.pasid);
    else
      show_error(rc.error());
    show_quota(node);
  }

  step("IOASID_PASID_REQUEST ALLOC with min 0: PASID 0 is never handed out");
  if (auto bad = allocate(node, 0, demo.last, std::nullopt); bad)
    fmt::print("    -> unexpectedly got PASID {}\n", *bad);
  else
    show_error(bad.error());

  step("IOASID_PASID_REQUEST with both ALLOC and FREE: exactly one is allowed");
  ioasid_pasid_request both{};
  both.flags = IOASID_PASID_ALLOC | IOASID_PASID_FREE;
  both.min = demo.first;
  both.max = demo.last;
  if (auto rc = node.call(IOASID_PASID_REQUEST, both, "IOASID_PASID_REQUEST"); rc)
    fmt::print("    -> unexpectedly succeeded\n");
  else
    show_error(rc.error());

  step("IOASID_PASID_LOOKUP of a guest PASID never mapped");
  ioasid_pasid_lookup missing{};
  missing.gpasid = demo.gpasid + 1000;
  if (auto rc = node.call(IOASID_PASID_LOOKUP, missing, "IOASID_PASID_LOOKUP"); rc)
    fmt::print("    -> unexpectedly found host PASID {}\n", missing.out_pasid);
  else
    show_error(rc.error());

  step("close(): the daemon frees whatever this file still owns");
  fmt::print("    -> watch it with `ioasid-monitor` or `ioasidctl pasids` in another terminal\n");
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
      ("help,h", "show this help and exit")
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

  auto node = Node::open(resolve_node_path(dev));
  if (!node) {
    std::cerr << "pasid-demo: " << node.error().why << "\n";
    return 1;
  }
  fmt::print("pasid-demo: opened {}\n", node->path());
  const int status = run(Demo{*node, first, first + 63, count, gpasid});
  if (pause) {
    fmt::print("\npress Enter to close {} ...", node->path());
    std::fflush(stdout);
    std::string line;
    std::getline(std::cin, line);
  }
  return status;
}

// SPDX-License-Identifier: MIT
#include "options.h"

#include "session_threads.h"

#include "base/usage_error.h"

#include <boost/program_options.hpp>
#include <spdlog/common.h>

#include <grp.h>
#include <sys/un.h>

#include <charconv>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ioasid::daemon {
namespace po = boost::program_options;
namespace {

constexpr const char* kUsage = R"(ioasidd - serves /dev/ioasid and /dev/iommu, an emulated VT-d style IOMMU, from
user space: /dev/ioasid speaks this project's uAPI, /dev/iommu Linux's iommufd uAPI
(with the selftest's mock devices), over one engine.

Usage: ioasidd [OPTION]...

Front ends: with CUSE each node is a real character device, /dev/DEVNAME and
/dev/IOMMU-DEVNAME (needs root and the cuse module; a node that exists already,
such as a kernel's own /dev/iommu, is not served). The FUSE fallback mounts a file
system at DIR (--fuse) holding the files DIR/ioasid and DIR/iommu, that answer the
same ioctls; as root it can also bind-mount them onto paths such as /dev/ioasid
(--bind-node, --bind-iommu-node). The default, --frontend auto, picks CUSE when
/dev/cuse exists, else FUSE, and logs its choice; falling back to FUSE as root, it
bind-mounts each node without a --bind-* path onto /dev/DEVNAME, /dev/IOMMU-DEVNAME
and its -fd companion, unless a device node is there already, so clients find the
nodes at the same paths either way. Programs find the node through
IOASID_DEV (default /dev/ioasid); ioasidctl (and its monitor) talk to the admin
socket.

Every per-user limit counts what both nodes make the daemon hold (IOASIDs and
iommufd objects, MAP areas, pinned pages); open files are counted per node.

SIGINT, SIGTERM and SIGHUP stop the daemon: every open file is released, the
nodes removed, the admin socket unlinked; exit 0. More in ioasidd(8).

Options)";

// An option taking a value shown as `name` in --help, whose default is what `variable`
// holds now.
template <typename T>
po::typed_value<T>* with_default(T& variable, const char* name) {
  return po::value(&variable)->value_name(name)->default_value(variable);
}

// A bad command line, worded "--OPTION: what is wrong": every error reads alike, the
// ones Boost finds included.
class UsageError : public std::runtime_error {
 public:
  UsageError(const std::string& option, const std::string& why) : std::runtime_error(option + ": " + why) {}
};

// The whole of `text` as a number in [min, max]: no sign, no trailing characters, no
// wrap-around (Boost would read "-1" as 2^32-1 and "12abc" as 12).
template <typename T>
T number(const char* option, const std::string& text, T min, T max) {
  T value{};
  const char* end = text.data() + text.size();
  const auto [stop, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc{} || stop != end || value < min || value > max)
    throw UsageError(option, "must be " + std::to_string(min) + ".." + std::to_string(max) + ", got '" + text + "'");
  return value;
}

std::optional<gid_t> group_id(const char* option, const std::string& name) {
  if (name.empty()) return std::nullopt;
  if (const group* entry = getgrnam(name.c_str())) return entry->gr_gid;
  throw UsageError(option, "no group named '" + name + "'");
}

void require_value(const char* option, const std::string& text) {
  if (text.empty()) throw UsageError(option, "must not be empty");
}

}  // namespace

std::optional<Options> parse_options(int argc, char** argv, int& exit_code) {
  Options options;
  std::string frontend = "auto";
  std::string serve = "ioasid,iommu";
  std::string node_mode = "0660";
  std::string node_group;
  std::string admin_group;
  bool no_netlink = false;
  std::vector<std::string> device_specs;
  // Numbers are taken as text and range-checked below (number()).
  auto text = [](auto value) { return std::to_string(value); };
  const dev_ioasid::ServiceConfig& defaults = options.service;
  std::string threads = text(options.session_threads);
  std::string workers = text(options.workers);
  std::string pin_limit_mib = text((PinAccounting::kDefaultLimitPages * kPageSize) >> 20);
  std::string max_files = text(defaults.max_files_per_user);
  std::string max_maps = text(defaults.max_maps_per_user);
  std::string max_ioasids = text(defaults.max_ioasids_per_user);
  std::string max_waits = text(defaults.max_waits_per_user);
  std::string pasid_quota = text(defaults.default_pasid_quota);
  std::string pasid_bits = text(defaults.pasid_bits);
  std::string addr_width = text(defaults.addr_width);
  std::string fault_queue = text(defaults.fault_queue_depth);
  std::string page_timeout_ms = text(defaults.page_response_timeout.count());
  std::string ats_timeout_ms = text(defaults.ats_timeout.count());
  std::string dsa_poll_us = text(defaults.dsa_idle_poll.count());
  std::string netlink_group = text(options.netlink_group);

  // The default devices are named from the list itself, so the help cannot go stale.
  std::string device_help =
      "add an emulated device; repeatable. SPEC is TYPE,name=NAME,pci=BB:DD.F and any of ,pasid=BITS ,pri ,ats "
      ",wqs=N; TYPE is dma or dsa (dsa defaults to pasid=20,wqs=8). NAME is 1.." +
      std::to_string(devices::kMaxNameLength) + " of A-Z a-z 0-9 _ . -, BITS 0.." +
      std::to_string(devices::kMaxPasidBits) + ", N 1.." + std::to_string(devices::kMaxWorkQueues) + "; at most " +
      std::to_string(devices::kMaxDevices) + " devices. Without --device:";
  for (const devices::DeviceSpec& device : devices::default_devices()) device_help += " " + device.name;
  device_help += " (ioasidctl devices shows them)";

  // Descriptions get 48 of the 80 columns; option names longer than the rest get a line
  // of their own.
  po::options_description desc(kUsage, 80, 48);
  desc.add_options()
      ("help,h", "print this help and exit")
      ("version", "print the version and exit")
      ("frontend", with_default(frontend, "KIND"),
       "how to serve the node: cuse, fuse, or auto (CUSE when /dev/cuse exists, else FUSE)")
      ("serve", with_default(serve, "LIST"),
       "the nodes to serve, comma separated: ioasid (this project's uAPI), iommu (Linux's iommufd uAPI)")
      ("devname", with_default(options.devname, "NAME"), "CUSE: the ioasid node is /dev/NAME")
      ("iommu-devname", with_default(options.iommu_devname, "NAME"), "CUSE: the iommu node is /dev/NAME")
      ("fuse", with_default(options.fuse_dir, "DIR"),
       "FUSE: mount the nodes' file system at DIR (created if missing); the nodes are DIR/ioasid and DIR/iommu")
      ("bind-node", po::value(&options.bind_node)->value_name("PATH"),
       "FUSE: also bind-mount the ioasid node onto PATH, e.g. /dev/ioasid (needs root); a PATH created for it "
       "is removed on exit")
      ("bind-iommu-node", po::value(&options.bind_iommu_node)->value_name("PATH"),
       "FUSE: the same for the iommu node, e.g. /dev/iommu")
      ("node-mode", with_default(node_mode, "MODE"),
       "FUSE: the node's permission bits, in octal, 0..7777 (CUSE: the udev rule sets them)")
      ("node-group", po::value(&node_group)->value_name("GROUP"),
       "FUSE: the group owning the node (CUSE: the udev rule sets it)")
      ("threads", with_default(threads, "N"),
       "session threads reading the node's requests from the kernel, 1..64; more are started (up to 64) while "
       "DMAs wait for page responses")
      ("workers", with_default(workers, "N"),
       "threads of the event loop (signals, the admin socket, event publishing), 1..64, and as many again "
       "running device work (dsa work queues)")
      ("device", po::value(&device_specs)->value_name("SPEC")->composing(),
       device_help.c_str())
      ("pin-limit", with_default(pin_limit_mib, "MIB"),
       "MiB of client memory each uid may have pinned by MAP_DMA/MAP_FILE; past it they fail with ENOMEM. "
       "0..1073741824 (1 PiB); 0: no limit")
      ("max-files-per-user", with_default(max_files, "N"),
       "open files of the node each uid but root may hold; one more open fails with EMFILE. 0..65536; 0: no limit")
      ("max-maps-per-user", with_default(max_maps, "N"),
       "MAP_DMA/MAP_FILE mappings each uid but root may hold; one more fails with ENOSPC. 0..1048576; 0: no limit")
      ("max-ioasids-per-user", with_default(max_ioasids, "N"),
       "IOASIDs each uid but root may hold; one more IOASID_ALLOC fails with ENOSPC. 0..1048576; 0: no limit")
      ("max-waits-per-user", with_default(max_waits, "N"),
       "calls each uid but root may have sleeping at once for a page response or an ATS acknowledgement; one more "
       "does not wait (DEVICE_DMA, ATS_TRANSLATE: PAGE_REQ; an ATS invalidation: the device fails). 0..64; 0: no "
       "limit")
      ("pasid-quota", with_default(pasid_quota, "N"),
       "PASIDs each open file may hold, 1..2^BITS-1 (ioasidctl set-quota changes one file's)")
      ("pasid-bits", with_default(pasid_bits, "BITS"),
       "width of the system PASID space, 1..20: PASIDs 1 to 2^BITS-1")
      ("addr-width", with_default(addr_width, "BITS"),
       "IOVA width of the emulated IOMMU: 48 (4-level tables) or 57 (5-level)")
      ("fault-queue", with_default(fault_queue, "N"),
       "slots of each open file's fault queue, 2..65536, the LOST record's included: at most N-1 records "
       "wait, then one LOST record stands for those dropped")
      ("page-timeout", with_default(page_timeout_ms, "MS"),
       "milliseconds a DMA waits for the PAGE_RESP to its page request before it fails, 1..3600000")
      ("ats-timeout", with_default(ats_timeout_ms, "MS"),
       "milliseconds an ioctl waits for a device model to acknowledge an ATS invalidation, 1..60000; "
       "then the device is failed")
      ("dsa-poll", with_default(dsa_poll_us, "US"),
       "microseconds a dsa work queue's runner keeps its thread, spinning, for the next descriptor after its "
       "queue ran dry, 0..1000; 0: it sleeps at once (each descriptor then waits for a thread to wake)")
      ("admin-socket", with_default(options.admin_socket, "PATH"),
       "the unix socket ioasidctl uses; 'none': no admin socket")
      ("admin-group", po::value(&admin_group)->value_name("GROUP"),
       "also admit members of GROUP to the admin socket (root and the daemon's own uid always are)")
      ("netlink-group", with_default(netlink_group, "N"),
       "NETLINK_USERSOCK multicast group the events go to, 1..32; 0: none")
      ("no-netlink", po::bool_switch(&no_netlink), "publish no netlink events (--netlink-group 0)")
      ("log-level", with_default(options.log_level, "LEVEL"), "trace, debug, info, warn, error or off")
      ("log-file", po::value(&options.log_file)->value_name("PATH"), "append the log to PATH instead of stderr");

  try {
    po::variables_map vm;
    // No positional arguments: a stray word is an error, not ignored.
    const po::positional_options_description no_arguments;
    po::store(po::command_line_parser(argc, argv).options(desc).positional(no_arguments).run(), vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      exit_code = 0;
      return std::nullopt;
    }
    if (vm.count("version")) {
      std::cout << "ioasidd " << IOASID_VERSION << "\n";
      exit_code = 0;
      return std::nullopt;
    }
    if (frontend == "auto") options.frontend = FrontendKind::Auto;
    else if (frontend == "cuse") options.frontend = FrontendKind::Cuse;
    else if (frontend == "fuse") options.frontend = FrontendKind::Fuse;
    else throw UsageError("--frontend", "must be auto, cuse or fuse, got '" + frontend + "'");
    options.serve_ioasid = options.serve_iommu = false;
    for (size_t at = 0; at <= serve.size();) {
      const size_t comma = std::min(serve.find(',', at), serve.size());
      const std::string name = serve.substr(at, comma - at);
      if (name == "ioasid") options.serve_ioasid = true;
      else if (name == "iommu") options.serve_iommu = true;
      else throw UsageError("--serve", "takes ioasid and/or iommu, got '" + name + "'");
      at = comma + 1;
    }
    for (const auto& [option, name] : {std::pair{"--devname", &options.devname},
                                       std::pair{"--iommu-devname", &options.iommu_devname}}) {
      if (name->empty() || name->find('/') != std::string::npos)
        throw UsageError(option, "must be a name without '/', got '" + *name + "'");
    }
    require_value("--fuse", options.fuse_dir);
    if (vm.count("bind-node")) require_value("--bind-node", options.bind_node);
    if (vm.count("bind-iommu-node")) require_value("--bind-iommu-node", options.bind_iommu_node);
    if (vm.count("log-file")) require_value("--log-file", options.log_file);
    require_value("--admin-socket", options.admin_socket);
    if (options.admin_socket.size() >= sizeof(sockaddr_un{}.sun_path))
      throw UsageError("--admin-socket", "must be shorter than " + std::to_string(sizeof(sockaddr_un{}.sun_path)) +
                                             " bytes, got " + std::to_string(options.admin_socket.size()));
    {
      // Octal, as chmod takes it.
      unsigned mode = 0;
      const char* end = node_mode.data() + node_mode.size();
      const auto [stop, error] = std::from_chars(node_mode.data(), end, mode, 8);
      if (node_mode.empty() || error != std::errc{} || stop != end || mode > 07777)
        throw UsageError("--node-mode", "must be octal 0..7777, got '" + node_mode + "'");
      options.node_mode = static_cast<mode_t>(mode);
    }
    options.node_group = group_id("--node-group", node_group);
    options.admin_group = group_id("--admin-group", admin_group);
    if (options.admin_socket == "none") options.admin_socket.clear();
    if (!device_specs.empty()) {
      if (device_specs.size() > devices::kMaxDevices)
        throw UsageError("--device", "given " + std::to_string(device_specs.size()) + " times, at most " +
                                         std::to_string(devices::kMaxDevices));
      options.service.devices.clear();
      for (const auto& spec_text : device_specs) {
        auto spec = devices::parse_device_spec(spec_text);
        if (!spec) throw UsageError("--device", spec.error().why);
        for (const auto& other : options.service.devices)
          if (other.name == spec->name || other.rid == spec->rid)
            throw UsageError("--device", "name or PCI address of '" + spec_text + "' given twice");
        options.service.devices.push_back(std::move(*spec));
      }
    }
    options.session_threads = number<unsigned>("--threads", threads, 1, SessionThreads::kMaxThreads);
    options.workers = number<unsigned>("--workers", workers, 1, 64);
    // Up to 1 PiB; 0 is no limit.
    options.service.pin_limit_pages = (number<uint64_t>("--pin-limit", pin_limit_mib, 0, 1u << 30) << 20) >> kPageShift;
    options.service.max_files_per_user = number<uint32_t>("--max-files-per-user", max_files, 0, 1u << 16);
    options.service.max_maps_per_user = number<uint32_t>("--max-maps-per-user", max_maps, 0, 1u << 20);
    options.service.max_ioasids_per_user = number<uint32_t>("--max-ioasids-per-user", max_ioasids, 0, 1u << 20);
    options.service.max_waits_per_user = number<uint32_t>("--max-waits-per-user", max_waits, 0, 64);
    options.service.pasid_bits = number<uint32_t>("--pasid-bits", pasid_bits, 1, 20);
    // A file's quota is carved out of the PASID space: PASIDs 1..2^BITS-1.
    options.service.default_pasid_quota =
        number<uint32_t>("--pasid-quota", pasid_quota, 1, (1u << options.service.pasid_bits) - 1);
    if (addr_width != "48" && addr_width != "57")
      throw UsageError("--addr-width", "must be 48 or 57, got '" + addr_width + "'");
    options.service.addr_width = addr_width == "48" ? 48 : 57;
    // One slot is the LOST record's: a smaller queue could hold no record at all.
    options.service.fault_queue_depth = number<size_t>("--fault-queue", fault_queue, 2, 1u << 16);
    options.service.page_response_timeout =
        std::chrono::milliseconds(number<uint32_t>("--page-timeout", page_timeout_ms, 1, 3600000));
    options.service.ats_timeout = std::chrono::milliseconds(number<uint32_t>("--ats-timeout", ats_timeout_ms, 1, 60000));
    options.service.dsa_idle_poll = std::chrono::microseconds(
        number<uint32_t>("--dsa-poll", dsa_poll_us, 0, devices::dsa::kMaxIdlePoll.count()));
    options.netlink_group = number<uint32_t>("--netlink-group", netlink_group, 0, 32);
    if (no_netlink) options.netlink_group = 0;
    if (const auto level = spdlog::level::from_str(options.log_level);
        level == spdlog::level::off && options.log_level != "off")
      throw UsageError("--log-level", "must be trace, debug, info, warn, error or off, got '" + options.log_level + "'");
    return options;
  } catch (const po::error& error) {
    print_usage_error(std::cerr, "ioasidd", usage_error_text(error));
    exit_code = 2;
    return std::nullopt;
  } catch (const UsageError& error) {
    print_usage_error(std::cerr, "ioasidd", error.what());
    exit_code = 2;
    return std::nullopt;
  }
}

}  // namespace ioasid::daemon

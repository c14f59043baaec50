#include "options.h"

#include <boost/program_options.hpp>

#include <grp.h>

#include <iostream>
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
/dev/cuse exists, else FUSE, and logs its choice. Programs find the node through
IOASID_DEV (default /dev/ioasid); ioasidctl and ioasid-monitor talk to the admin
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

std::optional<gid_t> group_id(const std::string& name) {
  if (name.empty()) return std::nullopt;
  if (const group* entry = getgrnam(name.c_str())) return entry->gr_gid;
  throw po::error("unknown group '" + name + "'");
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
  uint64_t pin_limit_mib = (PinAccounting::kDefaultLimitPages * kPageSize) >> 20;
  uint64_t page_timeout_ms = static_cast<uint64_t>(options.service.page_response_timeout.count());
  uint64_t ats_timeout_ms = static_cast<uint64_t>(options.service.ats_timeout.count());

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
       "FUSE: the node's permission bits, in octal (CUSE: the udev rule sets them)")
      ("node-group", po::value(&node_group)->value_name("GROUP"),
       "FUSE: the group owning the node (CUSE: the udev rule sets it)")
      ("threads", with_default(options.session_threads, "N"),
       "session threads reading the node's requests from the kernel; more are started while DMAs wait for "
       "page responses")
      ("workers", with_default(options.workers, "N"),
       "threads of the event loop (signals, the admin socket, event publishing), and as many again running "
       "device work (dsa work queues)")
      ("device", po::value(&device_specs)->value_name("SPEC")->composing(),
       device_help.c_str())
      ("pin-limit", with_default(pin_limit_mib, "MIB"),
       "MiB of client memory each uid may have pinned by MAP_DMA/MAP_FILE; past it they fail with ENOMEM. "
       "0: no limit")
      ("max-files-per-user", with_default(options.service.max_files_per_user, "N"),
       "open files of the node each uid but root may hold; one more open fails with EMFILE. 0: no limit")
      ("max-maps-per-user", with_default(options.service.max_maps_per_user, "N"),
       "MAP_DMA/MAP_FILE mappings each uid but root may hold; one more fails with ENOSPC. 0: no limit")
      ("max-ioasids-per-user", with_default(options.service.max_ioasids_per_user, "N"),
       "IOASIDs each uid but root may hold; one more IOASID_ALLOC fails with ENOSPC. 0: no limit")
      ("pasid-quota", with_default(options.service.default_pasid_quota, "N"),
       "PASIDs each open file may hold (ioasidctl set-quota changes one file's)")
      ("pasid-bits", with_default(options.service.pasid_bits, "BITS"),
       "width of the system PASID space, 1..20: PASIDs 1 to 2^BITS-1")
      ("addr-width", with_default(options.service.addr_width, "BITS"),
       "IOVA width of the emulated IOMMU: 48 (4-level tables) or 57 (5-level)")
      ("fault-queue", with_default(options.service.fault_queue_depth, "N"),
       "slots of each open file's fault queue, the LOST record's included: at most N-1 records wait, "
       "then one LOST record stands for those dropped")
      ("page-timeout", with_default(page_timeout_ms, "MS"),
       "milliseconds a DMA waits for the PAGE_RESP to its page request before it fails")
      ("ats-timeout", with_default(ats_timeout_ms, "MS"),
       "milliseconds an ioctl waits for a device model to acknowledge an ATS invalidation, 1..60000; "
       "then the device is failed")
      ("admin-socket", with_default(options.admin_socket, "PATH"),
       "the unix socket ioasidctl and ioasid-monitor use; 'none': no admin socket")
      ("admin-group", po::value(&admin_group)->value_name("GROUP"),
       "also admit members of GROUP to the admin socket (root and the daemon's own uid always are)")
      ("netlink-group", with_default(options.netlink_group, "N"),
       "NETLINK_USERSOCK multicast group the events go to, 1..32; 0: none")
      ("no-netlink", po::bool_switch(&no_netlink), "publish no netlink events (--netlink-group 0)")
      ("log-level", with_default(options.log_level, "LEVEL"), "trace, debug, info, warn, error or off")
      ("log-file", po::value(&options.log_file)->value_name("PATH"), "append the log to PATH instead of stderr");

  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
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
    else throw po::error("--frontend must be auto, cuse or fuse");
    options.serve_ioasid = options.serve_iommu = false;
    for (size_t at = 0; at <= serve.size();) {
      const size_t comma = std::min(serve.find(',', at), serve.size());
      const std::string name = serve.substr(at, comma - at);
      if (name == "ioasid") options.serve_ioasid = true;
      else if (name == "iommu") options.serve_iommu = true;
      else throw po::error("--serve takes ioasid and/or iommu, not '" + name + "'");
      at = comma + 1;
    }
    options.node_mode = static_cast<mode_t>(std::stoul(node_mode, nullptr, 8)) & 07777;
    options.node_group = group_id(node_group);
    options.admin_group = group_id(admin_group);
    if (options.admin_socket == "none") options.admin_socket.clear();
    if (no_netlink) options.netlink_group = 0;
    if (!device_specs.empty()) {
      if (device_specs.size() > devices::kMaxDevices)
        throw po::error("--device is given " + std::to_string(device_specs.size()) + " times (at most " +
                        std::to_string(devices::kMaxDevices) + " devices)");
      options.service.devices.clear();
      for (const auto& text : device_specs) {
        auto spec = devices::parse_device_spec(text);
        if (!spec) throw po::error(spec.error().why);
        for (const auto& other : options.service.devices)
          if (other.name == spec->name || other.rid == spec->rid)
            throw po::error("--device " + text + ": name or PCI address given twice");
        options.service.devices.push_back(std::move(*spec));
      }
    }
    options.service.pin_limit_pages = (pin_limit_mib << 20) >> kPageShift;
    options.service.page_response_timeout = std::chrono::milliseconds(page_timeout_ms);
    if (ats_timeout_ms < 1 || ats_timeout_ms > 60000) throw po::error("--ats-timeout must be 1..60000");
    options.service.ats_timeout = std::chrono::milliseconds(ats_timeout_ms);
    if (options.netlink_group > 32) throw po::error("--netlink-group must be 1..32 (0 disables)");
    if (options.service.pasid_bits < 1 || options.service.pasid_bits > 20)
      throw po::error("--pasid-bits must be 1..20");
    if (options.service.addr_width != 48 && options.service.addr_width != 57)
      throw po::error("--addr-width must be 48 or 57");
    if (options.service.default_pasid_quota == 0) throw po::error("--pasid-quota must be at least 1");
    // One slot is the LOST record's: a smaller queue could hold no record at all.
    if (options.service.fault_queue_depth < 2) throw po::error("--fault-queue must be at least 2");
    if (options.session_threads == 0 || options.workers == 0)
      throw po::error("--threads and --workers must be at least 1");
    return options;
  } catch (const std::exception& error) {
    std::cerr << "ioasidd: " << error.what() << "\nTry 'ioasidd --help'.\n";
    exit_code = 2;
    return std::nullopt;
  }
}

}  // namespace ioasid::daemon

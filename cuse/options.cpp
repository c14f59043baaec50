#include "options.h"

#include <boost/program_options.hpp>

#include <grp.h>

#include <iostream>
#include <string>
#include <vector>

namespace ioasid::daemon {
namespace po = boost::program_options;
namespace {

constexpr const char* kUsage = R"(ioasidd - serves /dev/ioasid, an emulated VT-d style IOMMU, from user space.

Usage: ioasidd [options]

Front ends: CUSE creates a real character device /dev/<devname> (needs root and a
kernel with CUSE). The FUSE fallback mounts a file system at --fuse DIR holding one
file node DIR/ioasid that answers the same ioctls; as root it can also bind-mount
that node onto a path such as /dev/ioasid (--bind-node). --frontend auto picks CUSE
when /dev/cuse exists and says which one it chose.

Stop with SIGINT, SIGTERM or SIGHUP: every open file is released, the node removed, exit 0.

Options)";

std::optional<gid_t> group_id(const std::string& name) {
  if (name.empty()) return std::nullopt;
  if (const group* entry = getgrnam(name.c_str())) return entry->gr_gid;
  throw po::error("unknown group '" + name + "'");
}

}  // namespace

std::optional<Options> parse_options(int argc, char** argv, int& exit_code) {
  Options options;
  std::string frontend = "auto";
  std::string node_mode = "0660";
  std::string node_group;
  std::string admin_group;
  bool no_netlink = false;
  std::vector<std::string> device_specs;
  uint64_t pin_limit_mib = (PinAccounting::kDefaultLimitPages * kPageSize) >> 20;
  uint64_t page_timeout_ms = static_cast<uint64_t>(options.service.page_response_timeout.count());

  po::options_description desc(kUsage);
  desc.add_options()
      ("help,h", "print this help and exit")
      ("version", "print the version and exit")
      ("frontend", po::value(&frontend)->default_value(frontend),
       "auto | cuse | fuse")
      ("devname", po::value(&options.devname)->default_value(options.devname),
       "CUSE device name: the node is /dev/<devname>")
      ("fuse", po::value(&options.fuse_dir)->default_value(options.fuse_dir),
       "FUSE fallback: mount directory; the node is DIR/ioasid")
      ("bind-node", po::value(&options.bind_node),
       "FUSE fallback: also bind-mount the node onto this path (e.g. /dev/ioasid); "
       "the file is created if missing and removed on exit")
      ("node-mode", po::value(&node_mode)->default_value(node_mode),
       "FUSE fallback: permission bits of the node (octal)")
      ("node-group", po::value(&node_group),
       "FUSE fallback: group owning the node (CUSE: use a udev rule)")
      ("threads", po::value(&options.session_threads)->default_value(options.session_threads),
       "threads serving requests from the kernel")
      ("workers", po::value(&options.workers)->default_value(options.workers),
       "threads of the event loop (signals, admin socket, events)")
      ("device", po::value(&device_specs)->composing(),
       "an emulated device, repeatable: dma|dsa,name=N,pci=BB:DD.F[,pasid=BITS][,pri][,ats][,wqs=N]; "
       "without any, dma0 (00:03.0, PASID 20 bits, PRI, ATS) and a plain dma1 (00:04.0)")
      ("pin-limit", po::value(&pin_limit_mib)->default_value(pin_limit_mib),
       "MiB of client memory each user may have pinned by MAP_DMA/MAP_FILE (ENOMEM past it); 0: no limit")
      ("pasid-quota", po::value(&options.service.default_pasid_quota)->default_value(options.service.default_pasid_quota),
       "PASIDs each open file may hold (ioasidctl set-quota changes one file's)")
      ("pasid-bits", po::value(&options.service.pasid_bits)->default_value(options.service.pasid_bits),
       "width of the system PASID space, 1..20")
      ("addr-width", po::value(&options.service.addr_width)->default_value(options.service.addr_width),
       "IOVA width of the emulated IOMMU: 48 (4-level) or 57 (5-level)")
      ("fault-queue", po::value(&options.service.fault_queue_depth)->default_value(options.service.fault_queue_depth),
       "fault records queued per open file before a LOST record")
      ("page-timeout", po::value(&page_timeout_ms)->default_value(page_timeout_ms),
       "milliseconds a DMA waits for the PAGE_RESP to its page request before it fails")
      ("admin-socket", po::value(&options.admin_socket)->default_value(options.admin_socket),
       "unix socket for ioasidctl; 'none' disables it")
      ("admin-group", po::value(&admin_group),
       "group whose members may use the admin socket besides root")
      ("netlink-group", po::value(&options.netlink_group)->default_value(options.netlink_group),
       "NETLINK_USERSOCK multicast group for events, 1..32; 0 disables")
      ("no-netlink", po::bool_switch(&no_netlink), "publish no netlink events (same as --netlink-group 0)")
      ("log-level", po::value(&options.log_level)->default_value(options.log_level),
       "trace | debug | info | warn | error | off")
      ("log-file", po::value(&options.log_file), "append logs to this file instead of stderr");

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
    options.node_mode = static_cast<mode_t>(std::stoul(node_mode, nullptr, 8)) & 07777;
    options.node_group = group_id(node_group);
    options.admin_group = group_id(admin_group);
    if (options.admin_socket == "none") options.admin_socket.clear();
    if (no_netlink) options.netlink_group = 0;
    if (!device_specs.empty()) {
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
    if (options.netlink_group > 32) throw po::error("--netlink-group must be 1..32 (0 disables)");
    if (options.service.pasid_bits < 1 || options.service.pasid_bits > 20)
      throw po::error("--pasid-bits must be 1..20");
    if (options.service.addr_width != 48 && options.service.addr_width != 57)
      throw po::error("--addr-width must be 48 or 57");
    if (options.service.default_pasid_quota == 0) throw po::error("--pasid-quota must be at least 1");
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

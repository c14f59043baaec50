// SPDX-License-Identifier: MIT
// ioasidd: serves /dev/ioasid through CUSE or the FUSE fallback. Session threads
// serve the node; the Asio loop owns signals, the admin socket and event publishing.
#include <utility>  // before Asio: Boost 1.74 with -std=c++20 needs it
#include <boost/asio.hpp>

#include "admin_server.h"
#include "asio_executor.h"
#include "event_relay.h"
#include "frontend.h"
#include "iommu_fd_node_ops.h"
#include "iommu_node_ops.h"
#include "netlink_publisher.h"
#include "node_ops.h"
#include "options.h"
#include "service_manager.h"
#include "session_threads.h"

#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <fmt/ranges.h>
#include <systemd/sd-daemon.h>

#include <linux/capability.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <fstream>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

namespace ioasid::daemon {
namespace {

// "%*": the line's syslog priority as sd-daemon(3)'s "<N>" prefix, which the journal
// reads off each line of a service's stderr.
class JournalPriorityFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const char* prefix = SD_INFO;
    switch (msg.level) {
      case spdlog::level::trace:
      case spdlog::level::debug: prefix = SD_DEBUG; break;
      case spdlog::level::info: prefix = SD_INFO; break;
      case spdlog::level::warn: prefix = SD_WARNING; break;
      case spdlog::level::err: prefix = SD_ERR; break;
      case spdlog::level::critical: prefix = SD_CRIT; break;
      default: break;
    }
    dest.append(prefix, prefix + std::strlen(prefix));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JournalPriorityFlag>(); }
};

// --log-level was checked with the other options.
bool setup_logging(const Options& options) {
  // https://no-color.org: a set, non-empty NO_COLOR turns colour off.
  const char* no_color = std::getenv("NO_COLOR");
  const auto colors = no_color && *no_color ? spdlog::color_mode::never : spdlog::color_mode::automatic;
  // The journal stamps each line itself: a second timestamp would only be noise.
  const bool journal = options.log_file.empty() && stderr_is_journal();
  std::shared_ptr<spdlog::logger> logger;
  try {
    logger = !options.log_file.empty() ? spdlog::basic_logger_mt("ioasidd", options.log_file)
             : journal                 ? spdlog::stderr_logger_mt("ioasidd")
                                       : spdlog::stderr_color_mt("ioasidd", colors);
  } catch (const spdlog::spdlog_ex& error) {
    std::cerr << "ioasidd: --log-file: cannot open '" << options.log_file << "': " << error.what() << "\n";
    return false;
  }
  if (journal) {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JournalPriorityFlag>('*').set_pattern("%*%v");
    logger->set_formatter(std::move(formatter));
  } else {
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v");
  }
  logger->set_level(spdlog::level::from_str(options.log_level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(std::move(logger));
  return true;
}

// Client memory is reached with process_vm_readv/writev and /proc/<pid>/{maps,mem,fd}.
// For a client of another uid that takes ptrace rights (CAP_SYS_PTRACE, with Yama's
// consent) and, since those /proc files belong to the client, CAP_DAC_OVERRIDE.
// Without them every ioctl that touches such a client's memory fails with EPERM; say
// so once at start, with the remedy, not only per refused ioctl.
void warn_about_missing_memory_rights() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  const bool capabilities_known = ::syscall(SYS_capget, &header, data) == 0;
  std::string missing;
  for (const auto& [capability, name] : {std::pair{CAP_SYS_PTRACE, "CAP_SYS_PTRACE"},
                                         std::pair{CAP_DAC_OVERRIDE, "CAP_DAC_OVERRIDE"}}) {
    if (capabilities_known && (data[CAP_TO_INDEX(capability)].effective & CAP_TO_MASK(capability)) != 0) continue;
    missing += missing.empty() ? name : std::string(", ") + name;
  }
  int yama_scope = -1;  // -1: no Yama
  std::ifstream("/proc/sys/kernel/yama/ptrace_scope") >> yama_scope;
  if (yama_scope >= 3) {
    spdlog::warn("kernel.yama.ptrace_scope is {}: no process may reach another's memory, so every ioctl that "
                 "touches a client's memory (MAP_DMA, MAP_FILE, DEVICE_DMA, the *_uptr arguments) fails with EPERM",
                 yama_scope);
  } else if (!missing.empty()) {
    spdlog::warn("no {}: ioctls that touch a client's memory (MAP_DMA, MAP_FILE, DEVICE_DMA, the *_uptr "
                 "arguments) fail with EPERM for clients not running as uid {}{}; run ioasidd as root with "
                 "CAP_SYS_PTRACE and CAP_DAC_OVERRIDE to serve every user",
                 missing, ::geteuid(),
                 yama_scope >= 1
                     ? fmt::format(" (and, with kernel.yama.ptrace_scope {}, for most of those too)", yama_scope)
                     : std::string());
  }
}

// The handlers of the nodes to serve, with their CUSE names and FUSE bind paths.
struct ServedNode {
  NodeHandler* handler;
  std::string devname;
  std::string bind_path;
};

Result<std::vector<std::unique_ptr<Frontend>>> start_cuse_nodes(const std::vector<ServedNode>& nodes) {
  std::vector<std::unique_ptr<Frontend>> frontends;
  for (const ServedNode& node : nodes) {
    // A kernel with iommufd has its own /dev/iommu: never shadow a node someone else serves.
    if (const std::string path = "/dev/" + node.devname; ::access(path.c_str(), F_OK) == 0) {
      spdlog::warn("{} exists already (the kernel's or another daemon's): not serving it; --iommu-devname or "
                   "--devname name another node, --serve chooses which to serve",
                   path);
      continue;
    }
    auto frontend = start_cuse(*node.handler, node.devname);
    IOASID_TRY(frontend);
    frontends.push_back(std::move(*frontend));
  }
  if (frontends.empty()) return fail(EEXIST, "every node to serve exists already");
  return frontends;
}

Result<std::vector<std::unique_ptr<Frontend>>> start_fuse_nodes(const Options& options,
                                                                const std::vector<ServedNode>& nodes) {
  FuseNodeOptions fuse{options.fuse_dir, {}, options.node_mode, options.node_group};
  for (const ServedNode& node : nodes) fuse.nodes.push_back({node.devname, node.handler, node.bind_path});
  auto frontend = start_fuse(fuse);
  IOASID_TRY(frontend);
  std::vector<std::unique_ptr<Frontend>> frontends;
  frontends.push_back(std::move(*frontend));
  return frontends;
}

// --frontend auto falling back to FUSE: clients open /dev/ioasid by default, as under
// CUSE, so a node with no bind path of its own is bind-mounted onto /dev/DEVNAME, as
// CUSE would have made it. Like CUSE, never over a device node that exists (a
// kernel's /dev/iommu); a live FUSE node bound there is refused at start as any bind
// path is. Without the right to mount, the nodes stay in the mount only.
std::vector<ServedNode> with_dev_binds(std::vector<ServedNode> nodes) {
  if (::geteuid() != 0) {
    spdlog::info("not root: the FUSE nodes are not bind-mounted onto /dev; clients set IOASID_DEV (or IOMMU_DEV) "
                 "to the node's path in the mount");
    return nodes;
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    ServedNode& node = nodes[i];
    if (!node.bind_path.empty()) continue;
    // The iommu node's companion (NAME-fd) goes where the iommu node goes.
    if (i > 0 && node.devname == nodes[i - 1].devname + "-fd") {
      if (!nodes[i - 1].bind_path.empty()) node.bind_path = nodes[i - 1].bind_path + "-fd";
      continue;
    }
    const std::string path = "/dev/" + node.devname;
    struct stat st {};
    if (on_dead_fuse_mount(path)) {
      // A daemon that died left its bind mount, dead: take the path back.
      spdlog::warn("{}: detaching a stale FUSE bind mount", path);
      ::umount2(path.c_str(), MNT_DETACH);
    }
    // A file left by a daemon that could not remove it is no one's node: bind over it.
    if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
      spdlog::warn("{} exists already (the kernel's or another daemon's): not bind-mounting the FUSE node onto it; "
                   "--bind-node or --bind-iommu-node name another path",
                   path);
      continue;
    }
    node.bind_path = path;
  }
  return nodes;
}

Result<std::vector<std::unique_ptr<Frontend>>> start_frontends(const Options& options,
                                                               const std::vector<ServedNode>& nodes) {
  switch (options.frontend) {
    case FrontendKind::Cuse:
      return start_cuse_nodes(nodes);
    case FrontendKind::Fuse:
      return start_fuse_nodes(options, nodes);
    case FrontendKind::Auto:
      break;
  }
  if (::access("/dev/cuse", F_OK) != 0) {
    spdlog::info("frontend: FUSE fallback (no /dev/cuse on this kernel)");
    return start_fuse_nodes(options, with_dev_binds(nodes));
  }
  auto cuse = start_cuse_nodes(nodes);
  if (cuse) {
    spdlog::info("frontend: CUSE (/dev/cuse present)");
    return cuse;
  }
  spdlog::warn("frontend: CUSE failed ({}), using the FUSE fallback", cuse.error().why);
  return start_fuse_nodes(options, with_dev_binds(nodes));
}

// SIGINT/SIGTERM/SIGHUP wait, blocked, until the Asio signal_set can take them: a stop
// during start-up still releases everything. (The set cannot come first: CUSE set-up
// installs libfuse's handlers, and removing them resets the dispositions.)
void set_termination_signals_blocked(bool blocked) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, nullptr);
}

// Every user's mappings may cost the daemon an fd each, up to the per-user caps
// (docs/SECURITY.md): take all the fds the hard limit allows, not the soft 1024.
void raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == limit.rlim_max) return;
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) spdlog::warn("cannot raise the fd limit: {}", std::strerror(errno));
}

// Gives the heap's free memory back to the system after files close. A released file
// frees everything it held (IOASIDs, mappings, the bookkeeping of their tables) on the
// session thread that served the release, and glibc keeps freed memory in that
// thread's arena unless it lies at the arena's top: 30,000 IOASIDs left 35 MB resident
// after their release, page tables aside (those the table pool gives back itself).
// malloc_trim(0) returns every free page of every arena; it walks them under their
// locks, a few ms for tens of MB, so it runs on the loop, once per burst of closes.
class HeapTrimmer {
 public:
  static constexpr std::chrono::milliseconds kDelay{100};  // lets the burst's last releases finish

  explicit HeapTrimmer(boost::asio::io_context& io) : timer_(io) {}

  // An EventRelay output: outputs are called one at a time, the trim runs on the loop.
  void on_event(const dev_ioasid::Event& event) {
    if (event.type != dev_ioasid::EventType::ContextClose || scheduled_.exchange(true)) return;
    timer_.expires_after(kDelay);
    timer_.async_wait([this](const boost::system::error_code& error) {
      scheduled_ = false;  // a close from now on schedules another trim
      if (error) return;
#ifdef __GLIBC__
      ::malloc_trim(0);
#endif
    });
  }

 private:
  boost::asio::steady_timer timer_;
  std::atomic<bool> scheduled_{false};
};

// How long the nodes may take to appear once served (CUSE's udev-less devtmpfs node: ms).
constexpr std::chrono::seconds kNodeTimeout{10};

int run(const Options& options) {
  set_termination_signals_blocked(true);
  warn_about_missing_memory_rights();
  raise_fd_limit();
  AsioExecutor device_executor(options.workers);  // outlives the service: its engines drain into it
  dev_ioasid::ServiceConfig config = options.service;
  config.executor = &device_executor;
  // One engine, two personalities: /dev/ioasid's files and /dev/iommu's share it.
  engine::Engine engine(config.engine());
  dev_ioasid::Service service(engine, config);
  boost::asio::io_context io;
  HeapTrimmer trimmer(io);  // before the relay: its last drain may still call the trimmer
  EventRelay relay(io, service);
  relay.add_output([&trimmer](const dev_ioasid::Event& event, const std::string&) { trimmer.on_event(event); });

  std::unique_ptr<NetlinkPublisher> netlink;
  if (options.netlink_group != 0) {
    auto opened = NetlinkPublisher::open(options.netlink_group);
    if (opened) {
      netlink = std::move(*opened);
      relay.add_output([&netlink](const dev_ioasid::Event&, const std::string& json) {
        if (auto sent = netlink->publish(json); !sent) spdlog::debug("netlink: {}", sent.error().why);
      });
    } else {
      spdlog::warn("netlink events disabled: {}", opened.error().why);
    }
  }

  dev_iommu::Service iommu_service(engine, config.max_files_per_user);
  NodeOps ops(service);
  IommuNodeOps iommu_ops(iommu_service);
  IommuFdNodeOps iommu_fd_ops(iommu_service);
  std::vector<ServedNode> nodes;
  if (options.serve_ioasid) nodes.push_back({&ops, options.devname, options.bind_node});
  if (options.serve_iommu) {
    nodes.push_back({&iommu_ops, options.iommu_devname, options.bind_iommu_node});
    // The companion node of iommufd's commands that hand out files: NAME-fd beside it.
    nodes.push_back({&iommu_fd_ops, options.iommu_devname + "-fd",
                     options.bind_iommu_node.empty() ? "" : options.bind_iommu_node + "-fd"});
  }
  auto frontends = start_frontends(options, nodes);
  if (!frontends) {
    spdlog::error("cannot start the front end: {}", frontends.error().why);
    notify_service_manager(fmt::format("STATUS=cannot start the front end: {}\nERRNO={}", frontends.error().why,
                                       frontends.error().code));
    return 1;
  }
  std::vector<std::string> node_paths;
  for (const auto& frontend : *frontends)
    for (auto& path : frontend->node_paths()) node_paths.push_back(std::move(path));
  const std::string kind = frontends->front()->kind();
  // The FUSE node's mode is the only gate (a file opened read-only may issue every
  // ioctl): say so when it lets in every local user. (CUSE: the udev rule decides.)
  if (kind == "fuse" && (options.node_mode & 0007) != 0)
    spdlog::warn("--node-mode {:04o} lets every local user use {} (any open, read-only too, may issue every ioctl)",
                 options.node_mode, fmt::join(node_paths, " and "));
  ::signal(SIGPIPE, SIG_IGN);  // a vanished admin client must not kill the daemon

  std::unique_ptr<AdminServer> admin;
  if (!options.admin_socket.empty()) {
    auto info = [&] {
      return nlohmann::json{{"frontend", kind},
                            {"node", node_paths.front()},
                            {"nodes", node_paths},
                            {"pid", ::getpid()},
                            {"version", IOASID_VERSION},
                            {"netlink_group", netlink ? netlink->group() : 0},
                            {"netlink_port", netlink ? netlink->port() : 0}};
    };
    admin = std::make_unique<AdminServer>(io, service, relay,
                                          AdminConfig{options.admin_socket, options.admin_group}, info,
                                          options.serve_iommu ? &iommu_service : nullptr);
    if (auto started = admin->start(); !started) {
      spdlog::error("cannot start the admin socket {}: {}", options.admin_socket, started.error().why);
      return 1;
    }
  }
  relay.start();

  auto keep_running = boost::asio::make_work_guard(io);
  std::atomic<bool> failed{false};  // exit 1: the session ended or the node could not be exposed
  auto stop_loop = [&] {
    keep_running.reset();
    io.stop();
  };
  // SIGHUP too: a closed terminal must not kill the daemon without releasing the node.
  boost::asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  signals.async_wait([&](const boost::system::error_code& error, int signal) {
    if (!error) {
      spdlog::info("{}: shutting down", strsignal(signal));
      notify_service_manager(fmt::format("STOPPING=1\nSTATUS={}: shutting down", strsignal(signal)));
    }
    stop_loop();
  });
  set_termination_signals_blocked(false);
  // A DMA waiting for a page response keeps its thread: another must serve the node.
  std::atomic<SessionThreads*> serving{nullptr};
  service.set_blocking_wait_hook([&serving] {
    if (SessionThreads* threads = serving.load(std::memory_order_acquire)) threads->ensure_free_reader();
  });
  // One set of threads per session (CUSE: one per device); the first serves /dev/ioasid.
  std::vector<std::unique_ptr<SessionThreads>> sessions;
  for (const auto& frontend : *frontends)
    sessions.push_back(std::make_unique<SessionThreads>(frontend->session(), options.session_threads, [&] {
      notify_service_manager("STOPPING=1\nSTATUS=a front-end session ended: shutting down");
      failed = true;
      boost::asio::post(io, stop_loop);
    }));
  serving.store(sessions.front().get(), std::memory_order_release);
  Result<void> exposed = success();
  for (const auto& frontend : *frontends)
    if (exposed = frontend->expose(); !exposed) break;
  // Ready means what a client needs: every node exists (CUSE: the kernel made it once
  // the session answered CUSE_INIT) and answers, the FUSE bind mounts made.
  if (exposed) exposed = wait_for_nodes(node_paths, kNodeTimeout);
  if (!exposed) {
    spdlog::error("cannot expose the node: {}", exposed.error().why);
    notify_service_manager(
        fmt::format("STATUS=cannot expose the node: {}\nERRNO={}", exposed.error().why, exposed.error().code));
    failed = true;
    boost::asio::post(io, stop_loop);
  } else {
    spdlog::info("ioasidd {} serving {} ({}), pid {}, {} session threads, PASID quota {} per file",
                 IOASID_VERSION, fmt::join(node_paths, " and "), kind, ::getpid(), options.session_threads,
                 options.service.default_pasid_quota);
    notify_service_manager(fmt::format("READY=1\nSTATUS=serving {} ({}){}", fmt::join(node_paths, " and "), kind,
                                       admin ? ", admin socket " + options.admin_socket : std::string()));
  }

  std::vector<std::thread> workers;
  for (unsigned i = 1; i < options.workers; ++i) {
    try {
      workers.emplace_back([&io] { io.run(); });
    } catch (const std::system_error& error) {
      // The node is live already: serve with the loop threads there are, never exit.
      spdlog::error("cannot start event loop thread {}: {}; running with {}", i + 1, error.what(), i);
      break;
    }
  }
  io.run();
  for (auto& worker : workers) worker.join();

  for (auto& session : sessions) session->stop();
  relay.keep_all_events();
  iommu_fd_ops.shutdown();  // its objects belong to iommu files
  iommu_ops.shutdown();  // before the engine's files: its mock devices are the engine's
  ops.shutdown();  // answers parked reads and releases every open file's context
  service.release_all();
  relay.stop();  // hands the last events (closes, frees) to the outputs
  if (admin) admin->stop();
  frontends->clear();
  spdlog::info("stopped");
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace ioasid::daemon

int main(int argc, char** argv) {
  int exit_code = 0;
  const auto options = ioasid::daemon::parse_options(argc, argv, exit_code);
  if (!options) return exit_code;
  if (!ioasid::daemon::setup_logging(*options)) return 2;
  return ioasid::daemon::run(*options);
}

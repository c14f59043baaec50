#include "frontend.h"

#include "memory/client_file.h"

#include <cuse_lowlevel.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <string>
#include <utility>

namespace ioasid::daemon {
namespace {

NodeOps& ops_of(fuse_req_t req) { return *static_cast<NodeOps*>(fuse_req_userdata(req)); }

// The device's node path, for init_done (one CUSE device per daemon).
std::string cuse_node_path;
std::optional<dev_t> cuse_device;  // its number once live, refused as memory (client_file.h)

void on_device_live(void*) {
  spdlog::info("CUSE device is live");
  struct stat node {};
  // A stat of the device node reads its inode, never the device: no request to us.
  if (::stat(cuse_node_path.c_str(), &node) == 0 && S_ISCHR(node.st_mode)) {
    cuse_device = node.st_rdev;
    add_served_device(node.st_rdev);
  } else {
    spdlog::warn("{}: cannot read the device number ({}); MAP_FILE still refuses it as not a regular file",
                 cuse_node_path, std::strerror(errno));
  }
}

void cuse_open(fuse_req_t req, fuse_file_info* fi) { ops_of(req).open(req, fi, NodeOps::NodeKind::CharDevice); }
void cuse_release(fuse_req_t req, fuse_file_info* fi) { ops_of(req).release(req, fi); }
void cuse_read(fuse_req_t req, size_t size, off_t, fuse_file_info* fi) { ops_of(req).read(req, size, fi); }
void cuse_poll(fuse_req_t req, fuse_file_info* fi, fuse_pollhandle* ph) { ops_of(req).poll(req, fi, ph); }
void cuse_ioctl(fuse_req_t req, int cmd, void* arg, fuse_file_info* fi, unsigned flags, const void* in_buf,
                size_t in_bufsz, size_t out_bufsz) {
  ops_of(req).ioctl(req, static_cast<unsigned>(cmd), arg, fi, flags, in_buf, in_bufsz, out_bufsz);
}

class CuseFrontend final : public Frontend {
 public:
  CuseFrontend(fuse_session* session, std::string node_path)
      : session_(session), node_path_(std::move(node_path)) {}
  // Not cuse_lowlevel_teardown: it would remove signal handlers that are no longer libfuse's.
  ~CuseFrontend() override {
    fuse_session_destroy(session_);
    if (cuse_device) remove_served_device(*std::exchange(cuse_device, std::nullopt));
  }
  fuse_session* session() const override { return session_; }
  const std::string& node_path() const override { return node_path_; }
  const char* kind() const override { return "cuse"; }

 private:
  fuse_session* session_;
  std::string node_path_;
};

}  // namespace

Result<std::unique_ptr<Frontend>> start_cuse(NodeOps& ops, const std::string& devname) {
  if (access("/dev/cuse", R_OK | W_OK) != 0)
    return fail(ENODEV, "/dev/cuse is not available: the kernel has no CUSE (try 'modprobe cuse' or --frontend fuse)");
  const std::string dev_info = "DEVNAME=" + devname;
  cuse_node_path = "/dev/" + devname;
  const char* dev_info_argv[] = {dev_info.c_str()};
  cuse_info info{};
  info.dev_info_argc = 1;
  info.dev_info_argv = dev_info_argv;
  // No CUSE_UNRESTRICTED_IOCTL: the kernel then copies _IOC_SIZE bytes each way, as FUSE does.
  info.flags = 0;

  static const cuse_lowlevel_ops cuse_ops = {
      .init = nullptr,
      .init_done = on_device_live,
      .destroy = nullptr,
      .open = cuse_open,
      .read = cuse_read,
      .write = nullptr,
      .flush = nullptr,
      .release = cuse_release,
      .fsync = nullptr,
      .ioctl = cuse_ioctl,
      .poll = cuse_poll,
  };
  const char* argv[] = {"ioasidd", "-f", nullptr};
  int multithreaded = 0;
  fuse_session* session =
      cuse_lowlevel_setup(2, const_cast<char**>(argv), &info, &cuse_ops, &multithreaded, &ops);
  if (!session) return fail(EIO, "cuse_lowlevel_setup failed for /dev/{}", devname);
  // The daemon's Asio loop owns SIGINT/SIGTERM.
  fuse_remove_signal_handlers(session);
  return std::unique_ptr<Frontend>(std::make_unique<CuseFrontend>(session, "/dev/" + devname));
}

}  // namespace ioasid::daemon

// SPDX-License-Identifier: MIT
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

// One CUSE device: its handler, its node path and, once live, its device number.
struct CuseNode {
  NodeHandler& handler;
  std::string path;
  std::optional<dev_t> device;  // refused as memory (client_file.h)
};

NodeHandler& handler_of(fuse_req_t req) { return static_cast<CuseNode*>(fuse_req_userdata(req))->handler; }

void on_device_live(void* userdata) {
  auto& node = *static_cast<CuseNode*>(userdata);
  spdlog::info("CUSE device {} is live", node.path);
  struct stat st {};
  // A stat of the device node reads its inode, never the device: no request to us.
  if (::stat(node.path.c_str(), &st) == 0 && S_ISCHR(st.st_mode)) {
    node.device = st.st_rdev;
    add_served_device(st.st_rdev);
  } else {
    spdlog::warn("{}: cannot read the device number ({}); MAP_FILE still refuses it as not a regular file",
                 node.path, std::strerror(errno));
  }
}

void cuse_open(fuse_req_t req, fuse_file_info* fi) { handler_of(req).open(req, fi, NodeHandler::NodeKind::CharDevice); }
void cuse_release(fuse_req_t req, fuse_file_info* fi) { handler_of(req).release(req, fi); }
void cuse_read(fuse_req_t req, size_t size, off_t, fuse_file_info* fi) { handler_of(req).read(req, size, fi); }
void cuse_write(fuse_req_t req, const char* buf, size_t size, off_t, fuse_file_info* fi) {
  handler_of(req).write(req, buf, size, fi);
}
void cuse_poll(fuse_req_t req, fuse_file_info* fi, fuse_pollhandle* ph) { handler_of(req).poll(req, fi, ph); }
void cuse_ioctl(fuse_req_t req, int cmd, void* arg, fuse_file_info* fi, unsigned flags, const void* in_buf,
                size_t in_bufsz, size_t out_bufsz) {
  handler_of(req).ioctl(req, static_cast<unsigned>(cmd), arg, fi, flags, in_buf, in_bufsz, out_bufsz);
}

class CuseFrontend final : public Frontend {
 public:
  explicit CuseFrontend(std::unique_ptr<CuseNode> node) : node_(std::move(node)) {}
  // Not cuse_lowlevel_teardown: it would remove signal handlers that are no longer libfuse's.
  ~CuseFrontend() override {
    if (session_) fuse_session_destroy(session_);
    if (node_->device) remove_served_device(*node_->device);
  }
  void set_session(fuse_session* session) { session_ = session; }
  CuseNode* node() const { return node_.get(); }
  fuse_session* session() const override { return session_; }
  std::vector<std::string> node_paths() const override { return {node_->path}; }
  const char* kind() const override { return "cuse"; }

 private:
  std::unique_ptr<CuseNode> node_;
  fuse_session* session_ = nullptr;
};

}  // namespace

Result<std::unique_ptr<Frontend>> start_cuse(NodeHandler& handler, const std::string& devname) {
  if (access("/dev/cuse", R_OK | W_OK) != 0)
    return fail(ENODEV, "/dev/cuse is not available: the kernel has no CUSE (try 'modprobe cuse' or --frontend fuse)");
  const std::string dev_info = "DEVNAME=" + devname;
  auto frontend = std::make_unique<CuseFrontend>(std::make_unique<CuseNode>(CuseNode{handler, "/dev/" + devname, {}}));
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
      .write = cuse_write,
      .flush = nullptr,
      .release = cuse_release,
      .fsync = nullptr,
      .ioctl = cuse_ioctl,
      .poll = cuse_poll,
  };
  const char* argv[] = {"ioasidd", "-f", nullptr};
  int multithreaded = 0;
  fuse_session* session =
      cuse_lowlevel_setup(2, const_cast<char**>(argv), &info, &cuse_ops, &multithreaded, frontend->node());
  if (!session) return fail(EIO, "cuse_lowlevel_setup failed for /dev/{}", devname);
  // The daemon's Asio loop owns SIGINT/SIGTERM.
  fuse_remove_signal_handlers(session);
  frontend->set_session(session);
  return std::unique_ptr<Frontend>(std::move(frontend));
}

}  // namespace ioasid::daemon

// SPDX-License-Identifier: MIT
// The FUSE fallback for kernels without CUSE: a mount whose root holds the nodes as
// regular files (ioasid, iommu). FUSE serves size-encoded ioctls in restricted mode
// exactly as CUSE does, so the same handlers serve both.
#include "frontend.h"
#include "made_directories.h"

#include "memory/client_file.h"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <filesystem>
#include <algorithm>
#include <optional>
#include <string_view>
#include <vector>

namespace ioasid::daemon {
namespace {

constexpr fuse_ino_t kRootInode = FUSE_ROOT_ID;
constexpr fuse_ino_t kFirstNodeInode = 2;  // node i is inode 2 + i
constexpr double kAttrTimeout = 1.0;

struct FuseContext {
  FuseNodeOptions options;
  time_t started = time(nullptr);

  const FuseNode* node(fuse_ino_t ino) const {
    if (ino < kFirstNodeInode || ino - kFirstNodeInode >= options.nodes.size()) return nullptr;
    return &options.nodes[ino - kFirstNodeInode];
  }
};

FuseContext& context_of(fuse_req_t req) { return *static_cast<FuseContext*>(fuse_req_userdata(req)); }

bool fill_attr(const FuseContext& context, fuse_ino_t ino, struct stat& st) {
  st = {};
  st.st_ino = ino;
  st.st_uid = 0;
  st.st_gid = context.options.group.value_or(0);
  st.st_atime = st.st_mtime = st.st_ctime = context.started;
  if (ino == kRootInode) {
    st.st_mode = S_IFDIR | 0755;
    st.st_nlink = 2;
  } else if (context.node(ino)) {
    st.st_mode = S_IFREG | context.options.mode;
    st.st_nlink = 1;
  } else {
    return false;
  }
  return true;
}

void fuse_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_entry_param entry{};
  const auto& nodes = context_of(req).options.nodes;
  const auto node = std::ranges::find(nodes, std::string_view(name), &FuseNode::name);
  if (parent != kRootInode || node == nodes.end()) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  entry.ino = kFirstNodeInode + (node - nodes.begin());
  fill_attr(context_of(req), entry.ino, entry.attr);
  entry.attr_timeout = entry.entry_timeout = kAttrTimeout;
  fuse_reply_entry(req, &entry);
}

void fuse_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  struct stat st;
  if (!fill_attr(context_of(req), ino, st)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  fuse_reply_attr(req, &st, kAttrTimeout);
}

void fuse_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info*) {
  if (ino != kRootInode) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  std::vector<std::pair<const char*, fuse_ino_t>> entries = {{".", kRootInode}, {"..", kRootInode}};
  const auto& nodes = context_of(req).options.nodes;
  for (size_t i = 0; i < nodes.size(); ++i) entries.emplace_back(nodes[i].name.c_str(), kFirstNodeInode + i);
  std::vector<char> buf(size);
  size_t used = 0;
  for (off_t i = offset; i < static_cast<off_t>(entries.size()); ++i) {
    struct stat st{};
    st.st_ino = entries[i].second;
    st.st_mode = entries[i].second == kRootInode ? S_IFDIR : S_IFREG;
    const size_t need = fuse_add_direntry(req, buf.data() + used, size - used, entries[i].first, &st, i + 1);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

// Only the nodes are open files of a handler; the root directory is opened through
// opendir, and the kernel forwards ioctls on it too (FUSE_IOCTL_DIR), e.g. lsattr -d.
NodeHandler* handler_of(fuse_req_t req, fuse_ino_t ino, int error) {
  if (const FuseNode* node = context_of(req).node(ino)) return node->handler;
  if (error) fuse_reply_err(req, error);
  return nullptr;
}

void fuse_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (NodeHandler* handler = handler_of(req, ino, EISDIR)) handler->open(req, fi, NodeHandler::NodeKind::RegularFile);
}
void fuse_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (NodeHandler* handler = handler_of(req, ino, EBADF)) handler->release(req, fi);
}
void fuse_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t, fuse_file_info* fi) {
  if (NodeHandler* handler = handler_of(req, ino, EISDIR)) handler->read(req, size, fi);
}
void fuse_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t, fuse_file_info* fi) {
  if (NodeHandler* handler = handler_of(req, ino, EISDIR)) handler->write(req, buf, size, fi);
}
void fuse_poll(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, fuse_pollhandle* ph) {
  if (NodeHandler* handler = handler_of(req, ino, 0)) {
    handler->poll(req, fi, ph);
    return;
  }
  if (ph) fuse_pollhandle_destroy(ph);
  fuse_reply_err(req, EBADF);
}
void fuse_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void* arg, fuse_file_info* fi, unsigned flags,
                const void* in_buf, size_t in_bufsz, size_t out_bufsz) {
  if (flags & FUSE_IOCTL_DIR) {
    fuse_reply_err(req, ENOTTY);
    return;
  }
  if (NodeHandler* handler = handler_of(req, ino, ENOTTY))
    handler->ioctl(req, cmd, arg, fi, flags, in_buf, in_bufsz, out_bufsz);
}
void fuse_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

class FuseFrontend final : public Frontend {
 public:
  explicit FuseFrontend(std::unique_ptr<FuseContext> context) : context_(std::move(context)) {}

  ~FuseFrontend() override {
    for (const auto& bound : bound_) {
      if (umount2(bound.path.c_str(), MNT_DETACH) != 0)
        spdlog::warn("cannot unmount {}: {}", bound.path, std::strerror(errno));
      if (bound.created) ::unlink(bound.path.c_str());
    }
    if (session_) {
      if (mounted_) fuse_session_unmount(session_);
      fuse_session_destroy(session_);
    }
    if (served_device_) remove_served_device(*served_device_);
  }

  Result<void> start() {
    static const fuse_lowlevel_ops fuse_ops = [] {
      fuse_lowlevel_ops ops{};
      ops.lookup = fuse_lookup;
      ops.getattr = fuse_getattr;
      ops.readdir = fuse_readdir;
      ops.open = fuse_open;
      ops.read = fuse_read;
      ops.write = fuse_write;
      ops.flush = fuse_flush;
      ops.release = fuse_release;
      ops.ioctl = fuse_ioctl;
      ops.poll = fuse_poll;
      return ops;
    }();
    const auto& options = context_->options;
    if (on_dead_fuse_mount(options.mount_dir)) {
      spdlog::warn("{}: detaching a stale FUSE mount", options.mount_dir);
      ::umount2(options.mount_dir.c_str(), MNT_DETACH);
    }
    std::error_code error = made_directories_.create(options.mount_dir);
    if (error.value() == ENOTCONN) {
      // A daemon that died without unmounting leaves a dead mount behind.
      spdlog::warn("{}: detaching a stale FUSE mount", options.mount_dir);
      ::umount2(options.mount_dir.c_str(), MNT_DETACH);
      error = made_directories_.create(options.mount_dir);
    }
    if (error) return fail(error.value(), "cannot create {}: {}", options.mount_dir, error.message());
    // Checked before mounting anything: a refused start leaves the live daemon alone.
    IOASID_TRY(refuse_live_mount(options.mount_dir, "--fuse"));
    for (const FuseNode& node : options.nodes) {
      if (node.bind_path.empty()) continue;
      if (on_dead_fuse_mount(node.bind_path)) {
        // As for the mount dir: a killed daemon's bind mount, dead, is taken back.
        spdlog::warn("{}: detaching a stale FUSE bind mount", node.bind_path);
        ::umount2(node.bind_path.c_str(), MNT_DETACH);
      }
      IOASID_TRY(refuse_live_mount(node.bind_path, "the bind path"));
      IOASID_TRY(refuse_directory(node.bind_path, node.name));
    }

    // allow_other + default_permissions: other users reach the node, and the
    // kernel checks its mode and group as it would for a device node.
    const char* argv[] = {"ioasidd", "-o", "allow_other,default_permissions,fsname=ioasid,subtype=ioasidd"};
    fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
    session_ = fuse_session_new(&args, &fuse_ops, sizeof fuse_ops, context_.get());
    fuse_opt_free_args(&args);
    if (!session_) return fail(EIO, "fuse_session_new failed");
    if (fuse_session_mount(session_, options.mount_dir.c_str()) != 0)
      return fail(EIO, "cannot mount FUSE on {}", options.mount_dir);
    mounted_ = true;
    // From the kernel's cache: asking would be a request to this daemon, not serving yet.
    struct statx root {};
    if (::statx(AT_FDCWD, options.mount_dir.c_str(), AT_STATX_DONT_SYNC, STATX_TYPE, &root) != 0)
      return fail(errno, "statx {}: {}", options.mount_dir, std::strerror(errno));
    served_device_ = makedev(root.stx_dev_major, root.stx_dev_minor);
    add_served_device(*served_device_);
    return success();
  }

  Result<void> expose() override {
    for (const FuseNode& node : context_->options.nodes)
      if (!node.bind_path.empty()) IOASID_TRY(bind_node(mount_path(node), node.bind_path));
    return success();
  }

  fuse_session* session() const override { return session_; }
  std::vector<std::string> node_paths() const override {
    std::vector<std::string> paths;
    for (const FuseNode& node : context_->options.nodes)
      paths.push_back(node.bind_path.empty() ? mount_path(node) : node.bind_path);
    return paths;
  }
  const char* kind() const override { return "fuse"; }

 private:
  struct Bound {
    std::string path;
    bool created;  // the daemon made the file it bound onto, and removes it
  };

  // Mounting over a mount would hide it, a live daemon's nodes included: refuse. (A dead
  // FUSE mount fails statx with ENOTCONN; start() detaches the mount dir's.)
  static Result<void> refuse_live_mount(const std::string& path, const char* what) {
    struct statx info {};
    if (::statx(AT_FDCWD, path.c_str(), AT_STATX_DONT_SYNC, STATX_TYPE, &info) != 0 ||
        (info.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) == 0 || (info.stx_attributes & STATX_ATTR_MOUNT_ROOT) == 0)
      return success();
    return fail(EBUSY, "{} {} is a mount point already (another ioasidd serving there?): stop that daemon or "
                "unmount it first, or choose another path",
                what, path);
  }

  // A file node bind-mounted onto a directory fails with a bare ENOTDIR, and a user
  // who wrote --bind-node /dev meant /dev/ioasid: say so, before anything is mounted.
  static Result<void> refuse_directory(const std::string& path, const std::string& name) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return success();
    const std::string example = (std::filesystem::path(path) / name).lexically_normal().string();
    return fail(EISDIR, "the bind path {} is a directory: a node is bind-mounted onto a file, e.g. {}", path,
                example);
  }

  std::string mount_path(const FuseNode& node) const { return context_->options.mount_dir + "/" + node.name; }

  Result<void> bind_node(const std::string& source, const std::string& target) {
    bool created = false;
    if (::access(target.c_str(), F_OK) != 0) {
      const int fd = ::open(target.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
      if (fd < 0) return fail(errno, "cannot create bind target {}: {}", target, std::strerror(errno));
      ::close(fd);
      created = true;
    }
    if (::mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      const int error = errno;
      if (created) ::unlink(target.c_str());
      return fail(error, "cannot bind-mount {} onto {}: {}", source, target, std::strerror(error));
    }
    bound_.push_back({target, created});
    return success();
  }

  std::unique_ptr<FuseContext> context_;
  MadeDirectories made_directories_;  // destroyed after the unmount: removes the mount dir it made
  fuse_session* session_ = nullptr;
  bool mounted_ = false;
  std::optional<dev_t> served_device_;  // the mount's, refused as memory (client_file.h)
  std::vector<Bound> bound_;
};

}  // namespace

bool on_dead_fuse_mount(const std::string& path) {
  struct statfs info {};
  return ::statfs(path.c_str(), &info) != 0 && errno == ENOTCONN;
}

Result<std::unique_ptr<Frontend>> start_fuse(const FuseNodeOptions& options) {
  auto frontend = std::make_unique<FuseFrontend>(std::make_unique<FuseContext>(FuseContext{options}));
  IOASID_TRY(frontend->start());
  return std::unique_ptr<Frontend>(std::move(frontend));
}

}  // namespace ioasid::daemon

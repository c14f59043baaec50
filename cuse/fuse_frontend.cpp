// The FUSE fallback for kernels without CUSE: a mount whose root holds one
// regular file, the node. FUSE serves size-encoded ioctls in restricted mode
// exactly as CUSE does, so the same NodeOps serve both.
#include "frontend.h"

#include "memory/client_file.h"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <filesystem>
#include <optional>

namespace ioasid::daemon {
namespace {

constexpr fuse_ino_t kRootInode = FUSE_ROOT_ID;
constexpr fuse_ino_t kNodeInode = 2;
constexpr const char* kNodeName = "ioasid";
constexpr double kAttrTimeout = 1.0;

struct FuseContext {
  NodeOps& ops;
  FuseNodeOptions options;
  time_t started = time(nullptr);
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
  } else if (ino == kNodeInode) {
    st.st_mode = S_IFREG | context.options.mode;
    st.st_nlink = 1;
  } else {
    return false;
  }
  return true;
}

void fuse_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_entry_param entry{};
  if (parent != kRootInode || std::strcmp(name, kNodeName) != 0 ||
      !fill_attr(context_of(req), kNodeInode, entry.attr)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  entry.ino = kNodeInode;
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
  const std::pair<const char*, fuse_ino_t> entries[] = {{".", kRootInode}, {"..", kRootInode}, {kNodeName, kNodeInode}};
  std::vector<char> buf(size);
  size_t used = 0;
  for (off_t i = offset; i < static_cast<off_t>(std::size(entries)); ++i) {
    struct stat st{};
    st.st_ino = entries[i].second;
    st.st_mode = entries[i].second == kRootInode ? S_IFDIR : S_IFREG;
    const size_t need = fuse_add_direntry(req, buf.data() + used, size - used, entries[i].first, &st, i + 1);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void fuse_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (ino != kNodeInode) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  context_of(req).ops.open(req, fi, NodeOps::NodeKind::RegularFile);
}

// Only the node is an open file of NodeOps; the root directory is opened through
// opendir, and the kernel forwards ioctls on it too (FUSE_IOCTL_DIR), e.g. lsattr -d.
bool is_node(fuse_req_t req, fuse_ino_t ino, int error) {
  if (ino == kNodeInode) return true;
  fuse_reply_err(req, error);
  return false;
}

void fuse_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (is_node(req, ino, EBADF)) context_of(req).ops.release(req, fi);
}
void fuse_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t, fuse_file_info* fi) {
  if (is_node(req, ino, EISDIR)) context_of(req).ops.read(req, size, fi);
}
void fuse_poll(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, fuse_pollhandle* ph) {
  if (ino == kNodeInode) {
    context_of(req).ops.poll(req, fi, ph);
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
  if (is_node(req, ino, ENOTTY)) context_of(req).ops.ioctl(req, cmd, arg, fi, flags, in_buf, in_bufsz, out_bufsz);
}
void fuse_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

class FuseFrontend final : public Frontend {
 public:
  explicit FuseFrontend(std::unique_ptr<FuseContext> context)
      : context_(std::move(context)), node_path_(context_->options.mount_dir + "/" + kNodeName) {}

  ~FuseFrontend() override {
    if (bind_mounted_ && umount2(context_->options.bind_path.c_str(), MNT_DETACH) != 0)
      spdlog::warn("cannot unmount {}: {}", context_->options.bind_path, std::strerror(errno));
    if (created_bind_target_) ::unlink(context_->options.bind_path.c_str());
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
      ops.flush = fuse_flush;
      ops.release = fuse_release;
      ops.ioctl = fuse_ioctl;
      ops.poll = fuse_poll;
      return ops;
    }();
    const auto& options = context_->options;
    std::error_code error;
    std::filesystem::create_directories(options.mount_dir, error);
    if (error.value() == ENOTCONN) {
      // A daemon that died without unmounting leaves a dead mount behind.
      spdlog::warn("{}: detaching a stale FUSE mount", options.mount_dir);
      ::umount2(options.mount_dir.c_str(), MNT_DETACH);
      std::filesystem::create_directories(options.mount_dir, error);
    }
    if (error) return fail(error.value(), "cannot create {}: {}", options.mount_dir, error.message());

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
    return context_->options.bind_path.empty() ? success() : bind_node();
  }

  fuse_session* session() const override { return session_; }
  const std::string& node_path() const override {
    return context_->options.bind_path.empty() ? node_path_ : context_->options.bind_path;
  }
  const char* kind() const override { return "fuse"; }

 private:
  Result<void> bind_node() {
    const std::string& target = context_->options.bind_path;
    if (::access(target.c_str(), F_OK) != 0) {
      const int fd = ::open(target.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
      if (fd < 0) return fail(errno, "cannot create bind target {}: {}", target, std::strerror(errno));
      ::close(fd);
      created_bind_target_ = true;
    }
    if (::mount(node_path_.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0)
      return fail(errno, "cannot bind-mount {} onto {}: {}", node_path_, target, std::strerror(errno));
    bind_mounted_ = true;
    return success();
  }

  std::unique_ptr<FuseContext> context_;
  std::string node_path_;
  fuse_session* session_ = nullptr;
  bool mounted_ = false;
  std::optional<dev_t> served_device_;  // the mount's, refused as memory (client_file.h)
  bool bind_mounted_ = false;
  bool created_bind_target_ = false;
};

}  // namespace

Result<std::unique_ptr<Frontend>> start_fuse(NodeOps& ops, const FuseNodeOptions& options) {
  auto frontend = std::make_unique<FuseFrontend>(std::make_unique<FuseContext>(FuseContext{ops, options}));
  IOASID_TRY(frontend->start());
  return std::unique_ptr<Frontend>(std::move(frontend));
}

}  // namespace ioasid::daemon

#include "iommu_fd_node_ops.h"

#include <linux/ioasid_iommu_fd.h>
#include <poll.h>
#include <spdlog/spdlog.h>

#include <cstring>

namespace ioasid::daemon {

void IommuFdNodeOps::open(fuse_req_t req, fuse_file_info* fi, NodeKind kind) {
  const auto opener = opener_of(req, "the iommu-fd node");
  if (!opener) return;
  auto charge = service_.charge_fd_file(opener->uid);
  if (!charge) {
    spdlog::warn("iommu-fd open by pid {} refused: {}", opener->pid, charge.error().why);
    fuse_reply_err(req, charge.code());
    return;
  }
  {
    std::lock_guard lock(mutex_);
    fi->fh = next_fh_++;
    auto file = std::make_shared<File>();
    file->charge = std::move(*charge);
    files_.emplace(fi->fh, std::move(file));
  }
  fi->direct_io = 1;
  fi->nonseekable = 1;
  if (reply_open(req, fi, kind) != 0) release(nullptr, fi);  // the opener is gone: no release will come
}

void IommuFdNodeOps::release(fuse_req_t req, fuse_file_info* fi) {
  std::shared_ptr<File> file;
  {
    std::lock_guard lock(mutex_);
    if (auto it = files_.find(fi->fh); it != files_.end()) {
      file = std::move(it->second);
      files_.erase(it);
    }
  }
  if (file) {
    std::lock_guard lock(file->mutex);
    service_.release_fd_object(file->object);
  }
  if (req) fuse_reply_err(req, 0);
}

// An access object's file has no read (the kernel's has only a release).
void IommuFdNodeOps::read(fuse_req_t req, size_t, fuse_file_info*) { fuse_reply_err(req, EINVAL); }

void IommuFdNodeOps::poll(fuse_req_t req, fuse_file_info*, fuse_pollhandle* ph) {
  if (ph) fuse_pollhandle_destroy(ph);
  fuse_reply_poll(req, POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM);
}

void IommuFdNodeOps::ioctl(fuse_req_t req, unsigned int cmd, void*, fuse_file_info* fi, unsigned, const void* in_buf,
                           size_t in_bufsz, size_t) {
  std::shared_ptr<File> file;
  {
    std::lock_guard lock(mutex_);
    if (auto it = files_.find(fi->fh); it != files_.end()) file = it->second;
  }
  if (!file) {
    fuse_reply_err(req, EBADF);
    return;
  }
  const pid_t caller = fuse_req_ctx(req)->pid;
  auto fail_with = [&](const Error& error) {
    spdlog::info("iommu-fd pid {}: {}: {}", caller, cmd == IOASID_IOMMU_FD_ATTACH ? "ATTACH" : "SET_NUMBER",
                 error.why);
    fuse_reply_err(req, error.code);
  };
  if (cmd == IOASID_IOMMU_FD_ATTACH && in_bufsz >= sizeof(ioasid_iommu_fd_attach)) {
    ioasid_iommu_fd_attach attach;
    std::memcpy(&attach, in_buf, sizeof attach);
    if (attach.__reserved != 0) return fail_with({EINVAL, "__reserved is not 0"});
    std::lock_guard lock(file->mutex);
    if (file->object.context) return fail_with({EBUSY, "the file is an object already"});
    auto object = service_.attach_fd_object(attach.token, fuse_req_ctx(req)->uid, attach.fd_number);
    if (!object) return fail_with(object.error());
    file->object = std::move(*object);
    fuse_reply_ioctl(req, 0, nullptr, 0);
    return;
  }
  if (cmd == IOASID_IOMMU_FD_SET_NUMBER && in_bufsz >= sizeof(int32_t)) {
    int32_t number;
    std::memcpy(&number, in_buf, sizeof number);
    std::lock_guard lock(file->mutex);
    if (auto set = service_.set_fd_number(file->object, number); !set) return fail_with(set.error());
    fuse_reply_ioctl(req, 0, nullptr, 0);
    return;
  }
  fuse_reply_err(req, ENOTTY);
}

void IommuFdNodeOps::shutdown() {
  std::unordered_map<uint64_t, std::shared_ptr<File>> files;
  {
    std::lock_guard lock(mutex_);
    files.swap(files_);
  }
  for (auto& [fh, file] : files) {
    std::lock_guard lock(file->mutex);
    service_.release_fd_object(file->object);
  }
}

}  // namespace ioasid::daemon

// SPDX-License-Identifier: MIT
#include "iommu_fd_node_ops.h"

#include <linux/ioasid_iommu_fd.h>
#include <linux/iommufd.h>
#include <poll.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <span>
#include <utility>
#include <vector>

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
    (void)service_.watch_fd_object(file->object, {});
    service_.release_fd_object(file->object);
    file->poll->set(nullptr);
  }
  if (req) fuse_reply_err(req, 0);
}

void IommuFdNodeOps::PollWaiter::set(fuse_pollhandle* ph) {
  std::lock_guard lock(mutex);
  if (handle) fuse_pollhandle_destroy(handle);
  handle = ph;
}

void IommuFdNodeOps::PollWaiter::notify() {
  std::lock_guard lock(mutex);
  if (handle) {
    (void)fuse_lowlevel_notify_poll(handle);
    fuse_pollhandle_destroy(std::exchange(handle, nullptr));
  }
}

std::shared_ptr<IommuFdNodeOps::File> IommuFdNodeOps::file_of(fuse_req_t req, fuse_file_info* fi) {
  std::lock_guard lock(mutex_);
  if (auto it = files_.find(fi->fh); it != files_.end()) return it->second;
  fuse_reply_err(req, EBADF);
  return nullptr;
}

// A fault queue's records; an access's file has no read (the kernel's has only release).
void IommuFdNodeOps::read(fuse_req_t req, size_t size, fuse_file_info* fi) {
  auto file = file_of(req, fi);
  if (!file) return;
  // At most kMaxRead bytes of whole records per read (a short read, as any file may
  // give); the remainder is kept, so a size that is not whole records still is not.
  constexpr size_t kRecord = sizeof(iommu_hwpt_pgfault), kMaxRead = 64 * 1024;
  std::vector<std::byte> buffer(size <= kMaxRead ? size : kMaxRead - kMaxRead % kRecord + size % kRecord);
  auto done = service_.read_fd_object(file->object, buffer);
  if (!done) {
    spdlog::debug("iommu-fd read of {} bytes: {}", size, done.error().why);
    fuse_reply_err(req, done.code());
    return;
  }
  fuse_reply_buf(req, reinterpret_cast<const char*>(buffer.data()), *done);
}

void IommuFdNodeOps::write(fuse_req_t req, const char* buf, size_t size, fuse_file_info* fi) {
  auto file = file_of(req, fi);
  if (!file) return;
  auto done = service_.write_fd_object(file->object, std::as_bytes(std::span(buf, size)));
  if (!done) {
    spdlog::debug("iommu-fd write of {} bytes: {}", size, done.error().why);
    fuse_reply_err(req, done.code());
    return;
  }
  fuse_reply_write(req, *done);
}

void IommuFdNodeOps::poll(fuse_req_t req, fuse_file_info* fi, fuse_pollhandle* ph) {
  auto file = file_of(req, fi);
  if (!file) {
    if (ph) fuse_pollhandle_destroy(ph);
    return;
  }
  if (ph) file->poll->set(ph);
  const auto readable = service_.watch_fd_object(file->object, [waiter = file->poll] { waiter->notify(); });
  if (!readable) {
    // Not a fault queue: always ready, as the kernel's default poll says.
    file->poll->set(nullptr);
    fuse_reply_poll(req, POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM);
    return;
  }
  fuse_reply_poll(req, POLLOUT | (*readable ? POLLIN | POLLRDNORM : 0));
}

void IommuFdNodeOps::ioctl(fuse_req_t req, unsigned int cmd, void*, fuse_file_info* fi, unsigned, const void* in_buf,
                           size_t in_bufsz, size_t) {
  auto file = file_of(req, fi);
  if (!file) return;
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

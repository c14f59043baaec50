// SPDX-License-Identifier: MIT
#include "iommu_node_ops.h"

#include "memory/client_memory.h"

#include <spdlog/spdlog.h>

#include <poll.h>

namespace ioasid::daemon {

std::shared_ptr<dev_iommu::Context> IommuNodeOps::context_of(fuse_req_t req, fuse_file_info* fi) {
  std::lock_guard lock(mutex_);
  auto it = fi ? files_.find(fi->fh) : files_.end();
  if (it == files_.end()) {
    if (req) fuse_reply_err(req, EBADF);
    return nullptr;
  }
  return it->second;
}

void IommuNodeOps::open(fuse_req_t req, fuse_file_info* fi, NodeKind kind) {
  const auto opener = opener_of(req, "the iommu node");
  if (!opener) return;
  const dev_iommu::ClientIdentity& client = *opener;
  auto context = service_.open(client);
  if (!context) {
    spdlog::warn("iommu open by pid {} refused: {}", client.pid, context.error().why);
    fuse_reply_err(req, context.code());
    return;
  }
  fi->fh = (*context)->id();
  fi->direct_io = 1;
  fi->nonseekable = 1;
  {
    std::lock_guard lock(mutex_);
    files_.emplace(fi->fh, *context);
  }
  spdlog::info("iommu ctx {} opened by pid {} uid {}", (*context)->id() - dev_iommu::kContextIdBase, client.pid,
               client.uid);
  if (reply_open(req, fi, kind) != 0) release(nullptr, fi);  // the opener is gone: no release will come
}

void IommuNodeOps::release(fuse_req_t req, fuse_file_info* fi) {
  std::shared_ptr<dev_iommu::Context> context;
  {
    std::lock_guard lock(mutex_);
    if (auto it = files_.find(fi->fh); it != files_.end()) {
      context = std::move(it->second);
      files_.erase(it);
    }
  }
  if (context) {
    service_.release(*context);
    spdlog::info("iommu ctx {} released", context->id() - dev_iommu::kContextIdBase);
  }
  if (req) fuse_reply_err(req, 0);
}

// iommufd files cannot be read.
void IommuNodeOps::read(fuse_req_t req, size_t, fuse_file_info*) { fuse_reply_err(req, EINVAL); }

// Without a poll of its own a file is always ready, as the kernel's default says.
void IommuNodeOps::poll(fuse_req_t req, fuse_file_info*, fuse_pollhandle* ph) {
  if (ph) fuse_pollhandle_destroy(ph);
  fuse_reply_poll(req, POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM);
}

void IommuNodeOps::ioctl(fuse_req_t req, unsigned int cmd, void* arg, fuse_file_info* fi, unsigned, const void*,
                         size_t, size_t) {
  auto context = context_of(req, fi);
  if (!context) return;
  ProcessMemory memory(fuse_req_ctx(req)->pid);
  auto result = service_.ioctl(*context, cmd, reinterpret_cast<uintptr_t>(arg), memory);
  if (!result) {
    fuse_reply_err(req, result.code());
    return;
  }
  fuse_reply_ioctl(req, static_cast<int>(*result), nullptr, 0);
}

void IommuNodeOps::shutdown() {
  std::unordered_map<uint64_t, std::shared_ptr<dev_iommu::Context>> files;
  {
    std::lock_guard lock(mutex_);
    files.swap(files_);
  }
  for (auto& [fh, context] : files) service_.release(*context);
}

}  // namespace ioasid::daemon

// SPDX-License-Identifier: MIT
// The file operations of the /dev/iommu node: open makes a dev_iommu Context, ioctl
// runs the iommufd table (every struct read and written in the caller's memory),
// release destroys the file's objects. The file has no read or poll of its own.
#pragma once

#include "node_handler.h"
#include "dev_iommu/service.h"

#include <memory>
#include <mutex>
#include <unordered_map>

namespace ioasid::daemon {

class IommuNodeOps final : public NodeHandler {
 public:
  explicit IommuNodeOps(dev_iommu::Service& service) : service_(service) {}
  ~IommuNodeOps() override { shutdown(); }

  void open(fuse_req_t req, fuse_file_info* fi, NodeKind kind) override;
  void release(fuse_req_t req, fuse_file_info* fi) override;
  void read(fuse_req_t req, size_t size, fuse_file_info* fi) override;
  void poll(fuse_req_t req, fuse_file_info* fi, fuse_pollhandle* ph) override;
  void ioctl(fuse_req_t req, unsigned int cmd, void* arg, fuse_file_info* fi, unsigned flags,
             const void* in_buf, size_t in_bufsz, size_t out_bufsz) override;
  void shutdown() override;

 private:
  std::shared_ptr<dev_iommu::Context> context_of(fuse_req_t req, fuse_file_info* fi);

  dev_iommu::Service& service_;
  std::mutex mutex_;
  std::unordered_map<uint64_t, std::shared_ptr<dev_iommu::Context>> files_;  // by fh
};

}  // namespace ioasid::daemon

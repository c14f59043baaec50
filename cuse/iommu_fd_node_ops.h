// SPDX-License-Identifier: MIT
// The companion node of /dev/iommu (uapi/linux/ioasid_iommu_fd.h): a file of it,
// given a token with IOASID_IOMMU_FD_ATTACH, becomes the iommufd object the token
// names (the selftest's access), so the object lives as long as a file of the
// caller's, as iommufd's do; closing the file destroys the object.
#pragma once

#include "node_handler.h"
#include "base/user_quota.h"
#include "dev_iommu/service.h"

#include <memory>
#include <mutex>
#include <unordered_map>

namespace ioasid::daemon {

class IommuFdNodeOps final : public NodeHandler {
 public:
  explicit IommuFdNodeOps(dev_iommu::Service& service) : service_(service) {}
  ~IommuFdNodeOps() override { shutdown(); }

  void open(fuse_req_t req, fuse_file_info* fi, NodeKind kind) override;
  void release(fuse_req_t req, fuse_file_info* fi) override;
  void read(fuse_req_t req, size_t size, fuse_file_info* fi) override;
  void write(fuse_req_t req, const char* buf, size_t size, fuse_file_info* fi) override;
  void poll(fuse_req_t req, fuse_file_info* fi, fuse_pollhandle* ph) override;
  void ioctl(fuse_req_t req, unsigned int cmd, void* arg, fuse_file_info* fi, unsigned flags,
             const void* in_buf, size_t in_bufsz, size_t out_bufsz) override;
  void shutdown() override;

 private:
  // A poll waiting on a fault queue's file, told when a record arrives.
  struct PollWaiter {
    std::mutex mutex;
    fuse_pollhandle* handle = nullptr;
    void set(fuse_pollhandle* ph);
    void notify();
    ~PollWaiter() { set(nullptr); }
  };
  struct File {
    std::mutex mutex;  // one ATTACH at a time
    UserQuota::Charge charge;  // one of the opener's files of this node
    dev_iommu::FdObjectFile object;
    std::shared_ptr<PollWaiter> poll = std::make_shared<PollWaiter>();
  };
  std::shared_ptr<File> file_of(fuse_req_t req, fuse_file_info* fi);

  dev_iommu::Service& service_;
  std::mutex mutex_;
  std::unordered_map<uint64_t, std::shared_ptr<File>> files_;  // by fh
  uint64_t next_fh_ = 1;
};

}  // namespace ioasid::daemon

// SPDX-License-Identifier: MIT
// The file operations of the /dev/ioasid node, shared by the CUSE and FUSE front
// ends: open makes a Context, ioctl runs the dispatcher, read/poll serve the fault
// queue (a blocking read is parked and answered when a fault arrives or the
// caller is interrupted), release destroys the Context.
#pragma once

#include "interrupt_watch.h"
#include "node_handler.h"
#include "dev_ioasid/service.h"

#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace ioasid::daemon {

class NodeOps final : public NodeHandler {
 public:
  explicit NodeOps(dev_ioasid::Service& service);
  ~NodeOps();
  NodeOps(const NodeOps&) = delete;
  NodeOps& operator=(const NodeOps&) = delete;

  void open(fuse_req_t req, fuse_file_info* fi, NodeKind kind) override;
  void release(fuse_req_t req, fuse_file_info* fi) override;
  void read(fuse_req_t req, size_t size, fuse_file_info* fi) override;
  void poll(fuse_req_t req, fuse_file_info* fi, fuse_pollhandle* ph) override;
  void ioctl(fuse_req_t req, unsigned int cmd, void* arg, fuse_file_info* fi, unsigned flags,
             const void* in_buf, size_t in_bufsz, size_t out_bufsz) override;

  // Daemon shutdown: answers every parked read (ENODEV) and releases every file.
  void shutdown() override;

 private:
  struct OpenFile;
  struct ParkedRead {
    fuse_req_t req;
    size_t size;
    OpenFile* file;
  };

  // nullptr (and EBADF answered) for a handle that is not an open node.
  OpenFile* file_of(fuse_req_t req, fuse_file_info* fi) const;
  void on_fault_arrival(OpenFile& file);
  void park(fuse_req_t req, size_t size, OpenFile& file);
  static void on_interrupt(fuse_req_t req, void* self);
  // Replies with records if any are queued; false if none (the read stays pending).
  bool reply_faults(fuse_req_t req, size_t size, OpenFile& file);

  dev_ioasid::Service& service_;
  // Guards open files, parked reads and poll handles. Reads and polls are rare next
  // to ioctls, which never take it.
  std::mutex mutex_;
  // Shared with the fault-arrival listeners (weakly), which may still be running
  // on another thread while the file is released.
  std::unordered_map<OpenFile*, std::shared_ptr<OpenFile>> files_;
  std::vector<ParkedRead> parked_;
  // Decides whether an interrupted ioctl ends (EINTR) or goes on, and keeps looking.
  InterruptWatch interrupt_watch_;
};

}  // namespace ioasid::daemon

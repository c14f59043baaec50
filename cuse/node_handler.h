// SPDX-License-Identifier: MIT
// What a front end hands each request of a node to: one implementation per personality
// (/dev/ioasid's NodeOps, /dev/iommu's IommuNodeOps), behind CUSE or FUSE alike.
#pragma once

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>

#include "dev_ioasid/context.h"

#include <cstddef>
#include <optional>

namespace ioasid::daemon {

class NodeHandler {
 public:
  // What the kernel sees: CUSE makes a character device, the FUSE fallback a
  // regular file, which the kernel treats differently (position lock, fileattr ioctls).
  enum class NodeKind { CharDevice, RegularFile };

  virtual ~NodeHandler() = default;
  virtual void open(fuse_req_t req, fuse_file_info* fi, NodeKind kind) = 0;
  virtual void release(fuse_req_t req, fuse_file_info* fi) = 0;
  virtual void read(fuse_req_t req, size_t size, fuse_file_info* fi) = 0;
  // A node without writes answers EINVAL, as a kernel file without a write op does.
  virtual void write(fuse_req_t req, const char* buf, size_t size, fuse_file_info* fi) {
    (void)buf, (void)size, (void)fi;
    fuse_reply_err(req, EINVAL);
  }
  virtual void poll(fuse_req_t req, fuse_file_info* fi, fuse_pollhandle* ph) = 0;
  virtual void ioctl(fuse_req_t req, unsigned int cmd, void* arg, fuse_file_info* fi, unsigned flags,
                     const void* in_buf, size_t in_bufsz, size_t out_bufsz) = 0;
  // Daemon shutdown: answers what is parked and releases every open file.
  virtual void shutdown() = 0;
};

// Who opens a node: the calling thread's process (files are owned by processes). Only a
// client's request can make the daemon open a file, and its own node must never be one
// (client_file.h refuses it first): a file opened so would be uid 0's, and an open
// waiting on a session thread can take the last one. So the daemon itself is answered
// EPERM here (nullopt: replied).
std::optional<dev_ioasid::ClientIdentity> opener_of(fuse_req_t req, const char* node);

// The reply to an open: a regular file keeps a file-position lock that would make a
// second read() of the same file sleep uninterruptibly behind a parked one, unless it
// is opened as a stream, and libfuse 3.14's fuse_file_info cannot say FOPEN_STREAM.
int reply_open(fuse_req_t req, fuse_file_info* fi, NodeHandler::NodeKind kind);

}  // namespace ioasid::daemon

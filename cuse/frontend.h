// SPDX-License-Identifier: MIT
// A front end owns a libfuse session whose requests reach NodeOps: CUSE (a real
// character device) or the FUSE fallback (a mount holding one file node).
#pragma once

#include "base/result.h"
#include "node_handler.h"

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ioasid::daemon {

class Frontend {
 public:
  virtual ~Frontend() = default;
  virtual fuse_session* session() const = 0;
  // Where clients open the nodes it serves, the first one first.
  virtual std::vector<std::string> node_paths() const = 0;
  virtual const char* kind() const = 0;  // "cuse" or "fuse"
  // Makes the node reachable at its final path (FUSE: the bind mount). Called once
  // session threads serve requests: the kernel asks the daemon about the node
  // while it is being bind-mounted.
  virtual Result<void> expose() { return success(); }
};

// Creates /dev/<devname> through /dev/cuse (one session per device). ENODEV when the
// kernel has no CUSE.
Result<std::unique_ptr<Frontend>> start_cuse(NodeHandler& handler, const std::string& devname);

struct FuseNode {
  std::string name;       // the node is mount_dir/name
  NodeHandler* handler;
  std::string bind_path;  // if set, the node is bind-mounted here too
};

struct FuseNodeOptions {
  std::string mount_dir;
  std::vector<FuseNode> nodes;
  mode_t mode = 0660;
  std::optional<gid_t> group;
};

// True when `path` lies on a FUSE mount whose daemon is gone (a killed ioasidd's). Asks
// with statfs(2), which the kernel never answers from its cache: a stat may succeed on
// a dead mount for as long as the attributes it cached stay valid.
bool on_dead_fuse_mount(const std::string& path);

// One mount holding every node as a file.
Result<std::unique_ptr<Frontend>> start_fuse(const FuseNodeOptions& options);

}  // namespace ioasid::daemon

// SPDX-License-Identifier: MIT
// ioasidd's command line.
#pragma once

#include "dev_ioasid/service.h"

#include <sys/types.h>

#include <optional>
#include <string>

namespace ioasid::daemon {

enum class FrontendKind { Auto, Cuse, Fuse };

struct Options {
  FrontendKind frontend = FrontendKind::Auto;
  std::string devname = "ioasid";
  std::string iommu_devname = "iommu";
  bool serve_ioasid = true;  // --serve: which personalities have a node
  bool serve_iommu = true;
  std::string fuse_dir = "/run/ioasidd/fuse";
  std::string bind_node;
  std::string bind_iommu_node;
  mode_t node_mode = 0660;
  std::optional<gid_t> node_group;
  unsigned session_threads = 2;  // more threads blocked in read() on one FUSE fd cost latency
  unsigned workers = 2;
  dev_ioasid::ServiceConfig service;
  std::string admin_socket = "/run/ioasidd/admin.sock";  // empty: no admin socket
  std::optional<gid_t> admin_group;
  uint32_t netlink_group = 23;  // 0: no netlink events
  std::string log_level = "info";
  std::string log_file;  // empty: stderr
};

// Parses argv. Returns nullopt after printing --help/--version (exit 0) or an
// error (exit_code set to 2).
std::optional<Options> parse_options(int argc, char** argv, int& exit_code);

}  // namespace ioasid::daemon

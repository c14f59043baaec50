// SPDX-License-Identifier: MIT
// The null server: a minimal libfuse server with one file node that answers every
// ioctl at once with its own input. Benchmarks measure the daemon against its round
// trip in the same run.
#pragma once

#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>

#include "bench_daemon.h"

#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <string>

namespace {

constexpr fuse_ino_t kNode = 2;

void null_lookup(fuse_req_t req, fuse_ino_t, const char* name) {
  if (std::strcmp(name, "ioasid") != 0) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  fuse_entry_param entry{};
  entry.ino = kNode;
  entry.attr.st_ino = kNode;
  entry.attr.st_mode = S_IFREG | 0666;
  entry.attr.st_nlink = 1;
  entry.attr_timeout = entry.entry_timeout = 60;
  fuse_reply_entry(req, &entry);
}

void null_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  struct stat st{};
  st.st_ino = ino;
  st.st_mode = ino == kNode ? S_IFREG | 0666 : S_IFDIR | 0755;
  st.st_nlink = 1;
  fuse_reply_attr(req, &st, 60);
}

void null_open(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  fi->direct_io = 1;
  fuse_reply_open(req, fi);
}

void null_ioctl(fuse_req_t req, fuse_ino_t, unsigned int, void*, fuse_file_info*, unsigned, const void* in_buf,
                size_t, size_t out_bufsz) {
  fuse_reply_ioctl(req, 1, out_bufsz ? in_buf : nullptr, out_bufsz);
}

[[noreturn]] void run_null_server(const std::string& dir) {
  fuse_lowlevel_ops ops{};
  ops.lookup = null_lookup;
  ops.getattr = null_getattr;
  ops.open = null_open;
  ops.ioctl = null_ioctl;
  const char* argv[] = {"null-server", "-o", "allow_other"};
  fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
  fuse_session* session = fuse_session_new(&args, &ops, sizeof ops, nullptr);
  if (!session || fuse_session_mount(session, dir.c_str()) != 0) _exit(1);
  fuse_set_signal_handlers(session);
  fuse_session_loop(session);
  fuse_session_unmount(session);
  _exit(0);
}

Server start_null_server() {
  Server server{.dir = temp_dir()};
  const std::string mount = server.dir + "/mnt";
  std::filesystem::create_directory(mount);
  server.node = mount + "/ioasid";
  server.pid = fork();
  if (server.pid == 0) run_null_server(mount);
  return server;
}

}  // namespace

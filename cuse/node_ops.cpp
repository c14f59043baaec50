// SPDX-License-Identifier: MIT
#include "node_ops.h"

#include "memory/client_file.h"

#include <spdlog/spdlog.h>

#include <linux/fs.h>
#include <linux/fuse.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace ioasid::daemon {
namespace {

struct ReadyRead {
  fuse_req_t req;
  std::vector<std::byte> data;
};

// On a regular file FUSE routes these through its fileattr code, which wants a reply
// of exactly the struct's size and never copies it to the caller on error; every
// other command (and every command on a device) goes the generic way, which copies
// whatever the reply carries.
bool kernel_wants_full_reply(NodeOps::NodeKind kind, unsigned int cmd) {
  if (kind != NodeOps::NodeKind::RegularFile) return false;
  return cmd == FS_IOC_GETFLAGS || cmd == FS_IOC_SETFLAGS || cmd == FS_IOC_FSGETXATTR ||
         cmd == FS_IOC_FSSETXATTR;
}

}  // namespace

std::optional<dev_ioasid::ClientIdentity> opener_of(fuse_req_t req, const char* node) {
  const fuse_ctx* caller = fuse_req_ctx(req);
  // fuse_req_ctx()->pid is the calling thread.
  const pid_t group = thread_group_of(caller->pid);
  const dev_ioasid::ClientIdentity client{group ? group : caller->pid, caller->uid, caller->gid};
  if (client.pid == ::getpid()) {
    spdlog::warn("open of {} by the daemon itself refused (thread {})", node, caller->pid);
    fuse_reply_err(req, EPERM);
    return std::nullopt;
  }
  return client;
}

int reply_open(fuse_req_t req, fuse_file_info* fi, NodeHandler::NodeKind kind) {
  if (kind == NodeHandler::NodeKind::CharDevice) return fuse_reply_open(req, fi);
  fuse_open_out out{};
  out.fh = fi->fh;
  // NOFLUSH: a close sends no FLUSH, so a close of the node never waits for a session thread.
  out.open_flags = FOPEN_DIRECT_IO | FOPEN_NONSEEKABLE | FOPEN_STREAM | FOPEN_NOFLUSH;
  return fuse_reply_buf(req, reinterpret_cast<const char*>(&out), sizeof out);
}

struct NodeOps::OpenFile {
  std::shared_ptr<dev_ioasid::Context> context;
  NodeKind kind = NodeKind::CharDevice;
  fuse_pollhandle* poll_handle = nullptr;  // guarded by NodeOps::mutex_
};

NodeOps::NodeOps(dev_ioasid::Service& service) : service_(service) {}

NodeOps::~NodeOps() { shutdown(); }

NodeOps::OpenFile* NodeOps::file_of(fuse_req_t req, fuse_file_info* fi) const {
  auto* file = fi ? reinterpret_cast<OpenFile*>(static_cast<uintptr_t>(fi->fh)) : nullptr;
  if (!file && req) fuse_reply_err(req, EBADF);
  return file;
}

void NodeOps::open(fuse_req_t req, fuse_file_info* fi, NodeKind kind) {
  const auto opener = opener_of(req, "the ioasid node");
  if (!opener) return;
  const dev_ioasid::ClientIdentity& client = *opener;
  auto context = service_.open(client);
  if (!context) {
    spdlog::warn("open by pid {} refused: {}", client.pid, context.error().why);
    fuse_reply_err(req, context.code());
    return;
  }
  auto file = std::make_shared<OpenFile>();
  file->context = std::move(*context);
  file->kind = kind;
  OpenFile* raw = file.get();
  raw->context->faults().set_listener([this, weak = std::weak_ptr<OpenFile>(file)] {
    if (auto live = weak.lock()) on_fault_arrival(*live);
  });
  {
    std::lock_guard lock(mutex_);
    files_.emplace(raw, std::move(file));
  }
  fi->fh = reinterpret_cast<uintptr_t>(raw);
  fi->direct_io = 1;  // reads reach us with the caller's size, never the page cache
  fi->nonseekable = 1;
  fi->keep_cache = 0;
  spdlog::info("ctx {} opened by pid {} uid {}", raw->context->id(), client.pid, client.uid);
  if (reply_open(req, fi, kind) != 0) {
    // The opener is gone (interrupted): no release will ever come for this file.
    spdlog::info("ctx {}: opener vanished before the open completed", raw->context->id());
    release(nullptr, fi);
  }
}

void NodeOps::release(fuse_req_t req, fuse_file_info* fi) {
  OpenFile* file = file_of(req, fi);
  if (!file) return;
  std::shared_ptr<OpenFile> owned;
  {
    std::lock_guard lock(mutex_);
    auto it = files_.find(file);
    if (it != files_.end()) {
      owned = std::move(it->second);
      files_.erase(it);
      if (owned->poll_handle) fuse_pollhandle_destroy(std::exchange(owned->poll_handle, nullptr));
    }
  }
  if (owned) {
    owned->context->faults().set_listener({});
    spdlog::info("ctx {} released (pid {})", owned->context->id(), owned->context->client().pid);
    service_.release(*owned->context);
  }
  if (req) fuse_reply_err(req, 0);
}

void NodeOps::ioctl(fuse_req_t req, unsigned int cmd, void* arg, fuse_file_info* fi, unsigned,
                    const void* in_buf, size_t in_bufsz, size_t out_bufsz) {
  OpenFile* file = file_of(req, fi);
  if (!file) return;
  const size_t size = _IOC_SIZE(cmd);
  thread_local std::vector<std::byte> buf;
  buf.assign(size, std::byte{0});
  // _IO commands carry no struct: both pointers are null, and memcpy must not see them.
  if (const size_t copied = std::min(in_bufsz, size); copied > 0) std::memcpy(buf.data(), in_buf, copied);
  ProcessMemory memory(fuse_req_ctx(req)->pid);
  // A signal to the caller (FUSE_INTERRUPT) ends a DMA's wait for a page response, or
  // a long CACHE_INVLD, if it runs a handler or ends the caller; a stop does not.
  struct Interrupt {
    InterruptWatch::Call call;
    InterruptWatch* watch;
  } interrupt{.watch = &interrupt_watch_};
  interrupt.call.caller_tid = fuse_req_ctx(req)->pid;
  interrupt.call.context = file->context->id();
  interrupt.call.wake = [context = file->context.get()] { context->page_requests().wake(); };
  fuse_req_interrupt_func(
      req,
      [](fuse_req_t, void* data) {
        auto* state = static_cast<Interrupt*>(data);
        state->watch->interrupted(state->call);
      },
      &interrupt);
  auto result =
      service_.ioctl(*file->context, cmd, reinterpret_cast<uintptr_t>(arg), buf, memory, &interrupt.call.cancelled);
  fuse_req_interrupt_func(req, nullptr, nullptr);  // waits for a callback running now
  interrupt_watch_.forget(interrupt.call);
  // Restricted mode copies the reply struct back even with a negative result, which
  // is how rows that report progress on error (entry_num, num_ranges) reach the caller.
  // A command that is not ours (ENOTTY) gets nothing written into the caller's memory.
  const bool foreign = !result && result.code() == ENOTTY && !kernel_wants_full_reply(file->kind, cmd);
  const size_t reply_size = foreign ? 0 : std::min(out_bufsz, size);
  const int value = result ? static_cast<int>(*result) : -result.code();
  fuse_reply_ioctl(req, value, reply_size ? buf.data() : nullptr, reply_size);
}

void NodeOps::read(fuse_req_t req, size_t size, fuse_file_info* fi) {
  OpenFile* file_ptr = file_of(req, fi);
  if (!file_ptr) return;
  OpenFile& file = *file_ptr;
  if (reply_faults(req, size, file)) return;
  if (fi->flags & O_NONBLOCK) {
    fuse_reply_err(req, EAGAIN);
    return;
  }
  park(req, size, file);
}

bool NodeOps::reply_faults(fuse_req_t req, size_t size, OpenFile& file) {
  std::vector<std::byte> data(size);
  auto got = service_.read_faults(*file.context, data);
  if (!got && got.code() == EAGAIN) return false;
  if (!got) {
    spdlog::info("ctx {} read: {}", file.context->id(), got.error().why);
    fuse_reply_err(req, got.code());
  } else {
    fuse_reply_buf(req, reinterpret_cast<const char*>(data.data()), *got);
  }
  return true;
}

void NodeOps::park(fuse_req_t req, size_t size, OpenFile& file) {
  // Registered before the read is listed: if the caller is already interrupted the
  // callback runs now, finds nothing, and the check below answers instead.
  fuse_req_interrupt_func(req, &NodeOps::on_interrupt, this);
  {
    std::lock_guard lock(mutex_);
    if (!fuse_req_interrupted(req)) {
      parked_.push_back({req, size, &file});
      req = nullptr;
    }
  }
  if (req) {
    fuse_reply_err(req, EINTR);
    return;
  }
  // A fault may have arrived between the first attempt and parking.
  on_fault_arrival(file);
}

void NodeOps::on_interrupt(fuse_req_t req, void* self_ptr) {
  auto* self = static_cast<NodeOps*>(self_ptr);
  {
    std::lock_guard lock(self->mutex_);
    auto it = std::ranges::find(self->parked_, req, &ParkedRead::req);
    if (it == self->parked_.end()) return;  // already answered
    self->parked_.erase(it);
  }
  fuse_reply_err(req, EINTR);
}

void NodeOps::on_fault_arrival(OpenFile& file) {
  std::vector<ReadyRead> ready;
  {
    std::lock_guard lock(mutex_);
    // Records are taken while the read is still listed, so an interrupt racing
    // with this either finds it listed (and answers) or finds it gone (and doesn't).
    for (auto it = parked_.begin(); it != parked_.end();) {
      if (it->file != &file) {
        ++it;
        continue;
      }
      std::vector<std::byte> data(it->size);
      auto got = service_.read_faults(*file.context, data);
      if (!got) break;
      data.resize(*got);
      ready.push_back({it->req, std::move(data)});
      it = parked_.erase(it);
    }
    if (file.poll_handle) fuse_lowlevel_notify_poll(file.poll_handle);
  }
  for (auto& read : ready)
    fuse_reply_buf(read.req, reinterpret_cast<const char*>(read.data.data()), read.data.size());
}

void NodeOps::poll(fuse_req_t req, fuse_file_info* fi, fuse_pollhandle* ph) {
  OpenFile* file_ptr = file_of(req, fi);
  if (!file_ptr) {
    if (ph) fuse_pollhandle_destroy(ph);
    return;
  }
  OpenFile& file = *file_ptr;
  if (ph) {
    std::lock_guard lock(mutex_);
    if (file.poll_handle) fuse_pollhandle_destroy(file.poll_handle);
    file.poll_handle = ph;
  }
  const unsigned revents = file.context->faults().size() > 0 ? POLLIN | POLLRDNORM : 0;
  fuse_reply_poll(req, revents);
}

void NodeOps::shutdown() {
  std::vector<ParkedRead> parked;
  std::unordered_map<OpenFile*, std::shared_ptr<OpenFile>> files;
  {
    std::lock_guard lock(mutex_);
    parked.swap(parked_);
    files.swap(files_);
    for (auto& [raw, file] : files)
      if (file->poll_handle) fuse_pollhandle_destroy(std::exchange(file->poll_handle, nullptr));
  }
  for (const auto& read : parked) fuse_reply_err(read.req, ENODEV);
  for (auto& [raw, file] : files) {
    file->context->faults().set_listener({});
    service_.release(*file->context);
  }
}

}  // namespace ioasid::daemon

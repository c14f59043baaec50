// SPDX-License-Identifier: MIT
#include "admin_server.h"
#include "made_directories.h"

#include "base/names.h"

#include <boost/asio/buffers_iterator.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <climits>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace ioasid::daemon {

namespace {

using boost::asio::local::stream_protocol;
using json = nlohmann::json;

// Replies are built from daemon and client data (process names, error texts) that
// need not be UTF-8; dump() would throw on those, so bad bytes become U+FFFD.
std::string to_line(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

json ok_reply(json result) { return json{{"ok", true}, {"result", std::move(result)}}; }

json error_reply(const Error& error) {
  return json{{"ok", false}, {"error", error.why}, {"errno", errno_name(error.code)}};
}

// A request field that must be an unsigned 32-bit number.
Result<uint32_t> u32_field(const json& request, const char* name) {
  auto it = request.find(name);
  if (it == request.end()) return fail(EINVAL, "missing field \"{}\"", name);
  if (!it->is_number_unsigned() || it->get<uint64_t>() > std::numeric_limits<uint32_t>::max())
    return fail(EINVAL, "field \"{}\" must be an integer in 0..4294967295", name);
  return it->get<uint32_t>();
}

// An optional request field that must be an unsigned 64-bit number; `fallback` when absent.
Result<uint64_t> optional_u64_field(const json& request, const char* name, uint64_t fallback) {
  auto it = request.find(name);
  if (it == request.end()) return fallback;
  if (!it->is_number_unsigned()) return fail(EINVAL, "field \"{}\" must be an integer in 0..2^64-1", name);
  return it->get<uint64_t>();
}

// A request field that must be a string.
Result<std::string> string_field(const json& request, const char* name) {
  auto it = request.find(name);
  if (it == request.end()) return fail(EINVAL, "missing field \"{}\"", name);
  if (!it->is_string()) return fail(EINVAL, "field \"{}\" must be a string", name);
  return it->get<std::string>();
}

const char* device_type_name(devices::DeviceType type) {
  switch (type) {
    case devices::DeviceType::Dma: return "dma";
    case devices::DeviceType::Dsa: return "dsa";
  }
  return "unknown";
}

// The device the registry would pick for `name_or_pci` (its name, or its PCI address
// in either form), as DeviceRegistry matches it.
std::shared_ptr<dev_ioasid::Device> find_device(const std::vector<std::shared_ptr<dev_ioasid::Device>>& list,
                                          std::string_view name_or_pci) {
  const auto rid = devices::parse_pci_address(name_or_pci);
  for (const auto& device : list)
    if (device->spec().name == name_or_pci || (rid && device->spec().rid == *rid)) return device;
  return nullptr;
}

json feature_names(uint32_t features) {
  json names = json::array();
  for (uint32_t bit = 0; bit < 32; ++bit) {
    if (!(features & (1u << bit))) continue;
    names.push_back(feature_name(bit));
  }
  return names;
}

const char* state_name(PasidState state) {
  switch (state) {
    case PasidState::Idle: return "idle";
    case PasidState::Active: return "active";
    case PasidState::FreePending: return "free_pending";
  }
  return "unknown";
}

const char* translation_type_name(iommu::TranslationType type) {
  switch (type) {
    case iommu::TranslationType::kSecondLevel: return "second_level";
    case iommu::TranslationType::kPassThrough: return "pass_through";
    case iommu::TranslationType::kNested: return "nested";
  }
  return "unknown";
}

// A route's PASID as replies show it: null for the device's RID (RID_PASID).
json pasid_or_rid(uint32_t pasid) { return pasid == iommu::kRidPasid ? json(nullptr) : json(pasid); }


// The client's command name, for the contexts table. Best effort: "" if it is gone.
std::string process_name(pid_t pid) {
  if (pid <= 0) return {};
  std::ifstream file(fmt::format("/proc/{}/comm", pid));
  std::string name;
  std::getline(file, name);
  return name;
}

// The supplementary groups the peer process really had when it connected (setgroups
// may have dropped some it is configured for): SO_PEERGROUPS, recorded by the kernel at
// connect(2) like SO_PEERCRED, so a peer that exits and leaves its pid to another
// process cannot lend that process's groups. Before Linux 4.13, /proc/<pid>/status;
// if that cannot be read either, the groups the account is configured for.
std::vector<gid_t> peer_groups(int socket, const ucred& peer) {
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 2; ++attempt) {
    socklen_t length = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(socket, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &length) == 0) {
      groups.resize(length / sizeof(gid_t));
      return groups;
    }
    if (errno != ERANGE) break;
    groups.resize(length / sizeof(gid_t));  // the kernel said how much room it needs
  }
  groups.clear();
  if (peer.pid > 0) {
    std::ifstream status(fmt::format("/proc/{}/status", peer.pid));
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("Groups:", 0) != 0) continue;
      std::istringstream numbers(line.substr(7));
      for (gid_t gid; numbers >> gid;) groups.push_back(gid);
      return groups;
    }
  }
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> scratch(16384);
  if (getpwuid_r(peer.uid, &entry, scratch.data(), scratch.size(), &found) != 0 || !found)
    return groups;
  int count = 64;
  groups.resize(count);
  if (getgrouplist(found->pw_name, peer.gid, groups.data(), &count) < 0) {
    groups.resize(count);
    if (getgrouplist(found->pw_name, peer.gid, groups.data(), &count) < 0) count = 0;
  }
  groups.resize(count);
  return groups;
}

std::string group_label(gid_t gid) {
  group entry{};
  group* found = nullptr;
  std::vector<char> scratch(16384);
  if (getgrgid_r(gid, &entry, scratch.data(), scratch.size(), &found) == 0 && found)
    return fmt::format("{} ({})", found->gr_name, gid);
  return std::to_string(gid);
}

// `pgtable` replies with at most this many dump lines (each ~60 bytes); the rest is
// counted in dump_lines.
constexpr size_t kMaxPgtableLines = 10000;


}  // namespace

class AdminSession;

struct AdminServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(boost::asio::io_context& io, dev_ioasid::Service& service, EventRelay& relay, AdminConfig config,
       DaemonInfo daemon_info, const dev_iommu::Service* iommu)
      : io(io), service(service), iommu(iommu), relay(relay), config(std::move(config)),
        daemon_info(std::move(daemon_info)), acceptor(io), accept_retry(io) {}

  // Everything below runs with `mutex` held.
  void accept_next();
  void on_accept(const boost::system::error_code& error, stream_protocol::socket socket);
  Result<void> authorize(int socket, const ucred& peer) const;
  // Answers one request, and logs it when it is refused.
  json handle(AdminSession& session, const json& request);
  json dispatch(AdminSession& session, const json& request);
  // The admin commands: one row each, with the help text `help` answers and the
  // handler that answers a request. Adding a command is one row and one function.
  struct Command {
    const char* cmd;
    const char* args;
    const char* about;
    json (*answer)(Impl& server, AdminSession& session, const json& request);
  };
  static const Command kCommands[];
  void broadcast(const std::string& event_json);
  void close_all();

  Result<json> status() const;
  json contexts() const;
  json iommu_files() const;
  json pasids() const;
  json devices() const;
  json stats() const;
  json pgtable(const json& request) const;
  json device_row(dev_ioasid::Device& device) const;
  json opener_pid(uint32_t context) const;  // null if no such context
  json help() const;
  json set_quota(AdminSession& session, const json& request);
  json device_add(AdminSession& session, const json& request);
  json device_remove(AdminSession& session, const json& request);

  boost::asio::io_context& io;
  dev_ioasid::Service& service;
  const dev_iommu::Service* iommu;
  EventRelay& relay;
  const AdminConfig config;
  const DaemonInfo daemon_info;

  std::mutex mutex;
  stream_protocol::acceptor acceptor;
  boost::asio::steady_timer accept_retry;  // after EMFILE and friends, instead of spinning
  std::unordered_set<std::shared_ptr<AdminSession>> sessions;
  bool running = false;
  bool owns_path = false;  // we bound the socket file, so stop() unlinks it
  MadeDirectories made_directories;  // the socket's, removed with the server
  uint64_t next_session_id = 1;
  uint64_t refused = 0;
};

// One connection. Requests are answered in order; the next request is read only
// once the previous reply is written, so a client that does not read cannot make
// the daemon queue replies. After `events` the session only writes (input is read
// and ignored, to notice the close).
class AdminSession : public std::enable_shared_from_this<AdminSession> {
 public:
  AdminSession(std::shared_ptr<AdminServer::Impl> server, stream_protocol::socket socket,
               uint64_t id, ucred peer)
      : server_(std::move(server)), socket_(std::move(socket)),
        input_(AdminServer::kMaxLineBytes + 1), id_(id), peer_(peer) {
    boost::system::error_code ignored;  // write_some must never block the event loop
    socket_.non_blocking(true, ignored);
  }

  // All members are called with server_->mutex held.
  void start_reading();
  void send(const json& reply) { push(std::make_shared<const std::string>(to_line(reply))); }
  void send_event(const std::shared_ptr<const std::string>& line);
  void close_after_flush();
  // Writes what the socket takes without waiting, then closes (daemon shutdown: the
  // io_context may no longer run, so the last events go out now or never).
  void close_now();
  void close();

  void begin_streaming() { streaming_ = true; }
  bool streaming() const { return streaming_; }
  uint64_t id() const { return id_; }
  const ucred& peer() const { return peer_; }

 private:
  static constexpr size_t kMaxGather = 64;  // lines per write call

  void on_read(const boost::system::error_code& error, size_t length);
  void handle_line(std::string line);
  void queue_loss_notice();  // appends {"event":"events_lost","count":N} if there were losses
  void push(std::shared_ptr<const std::string> line);
  void flush();
  void write_now();
  void consume(size_t bytes);

  std::shared_ptr<AdminServer::Impl> server_;  // dropped from server_->sessions on close
  stream_protocol::socket socket_;
  boost::asio::streambuf input_;  // max size bounds a request line
  std::deque<std::shared_ptr<const std::string>> outbox_;
  size_t front_written_ = 0;  // bytes of outbox_.front() already sent
  std::vector<boost::asio::const_buffer> gather_;  // reused by write_now
  const uint64_t id_;
  const ucred peer_;
  bool reading_ = false;
  bool waiting_writable_ = false;
  bool read_after_flush_ = false;
  bool close_after_flush_ = false;
  bool closed_ = false;
  bool streaming_ = false;
  uint64_t lost_unreported_ = 0;  // events dropped since the last {"event":"events_lost"} line
  uint64_t lost_total_ = 0;
};

// ---------------------------------------------------------------- session

void AdminSession::start_reading() {
  if (closed_ || reading_ || close_after_flush_) return;
  reading_ = true;
  boost::asio::async_read_until(
      socket_, input_, '\n',
      [self = shared_from_this()](const boost::system::error_code& error, size_t length) {
        std::lock_guard lock(self->server_->mutex);
        self->reading_ = false;
        self->on_read(error, length);
      });
}

void AdminSession::on_read(const boost::system::error_code& error, size_t length) {
  if (closed_) return;
  if (error == boost::asio::error::not_found) {  // the buffer filled without a newline
    spdlog::warn("admin: session {} (uid {} pid {}) sent a line over {} bytes; closing", id_,
                 peer_.uid, peer_.pid, AdminServer::kMaxLineBytes);
    send(error_reply(fail(EMSGSIZE, "request line longer than {} bytes",
                          AdminServer::kMaxLineBytes)));
    close_after_flush();
    return;
  }
  if (error == boost::asio::error::eof && !streaming_ && input_.size() > 0) {
    // A last request without its newline (printf '...' | nc -U): answer it.
    auto data = input_.data();
    std::string line(boost::asio::buffers_begin(data), boost::asio::buffers_end(data));
    input_.consume(input_.size());
    handle_line(std::move(line));
    close_after_flush();
    return;
  }
  if (error == boost::asio::error::eof && !streaming_) {
    close_after_flush();  // the client half-closed: write what is pending, then close
    return;
  }
  if (error) {
    if (error != boost::asio::error::operation_aborted && error != boost::asio::error::eof)
      spdlog::debug("admin: session {} read: {}", id_, error.message());
    close();
    return;
  }

  auto data = input_.data();
  std::string line(boost::asio::buffers_begin(data), boost::asio::buffers_begin(data) + length - 1);
  input_.consume(length);
  if (streaming_) {  // input is ignored on an event stream; keep reading to see the close
    start_reading();
    return;
  }
  handle_line(std::move(line));
  if (streaming_ || outbox_.empty())
    start_reading();
  else
    read_after_flush_ = true;
}

void AdminSession::handle_line(std::string line) {
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.find_first_not_of(" \t") == std::string::npos) return;  // blank lines: no reply
  json request = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded() || !request.is_object()) {
    spdlog::info("admin: session {} (uid {} pid {}): a request of {} bytes refused: not a JSON object", id_,
                 peer_.uid, peer_.pid, line.size());
    send(error_reply(fail(EINVAL, "request is not a JSON object (one per line)")));
    return;
  }
  send(server_->handle(*this, request));
}

void AdminSession::send_event(const std::shared_ptr<const std::string>& line) {
  if (closed_ || close_after_flush_) return;
  if (outbox_.size() >= AdminServer::kMaxQueuedEventLines) {
    // A slow reader loses events rather than growing the daemon; it is told how many.
    ++lost_unreported_;
    ++lost_total_;
    return;
  }
  queue_loss_notice();
  push(line);
}

void AdminSession::queue_loss_notice() {
  if (lost_unreported_ == 0 || outbox_.size() >= AdminServer::kMaxQueuedEventLines) return;
  outbox_.push_back(std::make_shared<const std::string>(
      to_line(json{{"event", "events_lost"}, {"count", lost_unreported_}})));
  lost_unreported_ = 0;
}

void AdminSession::push(std::shared_ptr<const std::string> line) {
  if (closed_) return;
  outbox_.push_back(std::move(line));
  flush();
}

// Writes are synchronous and non-blocking: what the socket takes goes out at once,
// the rest waits for room. So the daemon always knows exactly what was sent, and a
// shutdown can still push the last events out without a running io_context.
void AdminSession::flush() {
  if (closed_ || waiting_writable_) return;
  write_now();
  if (closed_) return;
  if (!outbox_.empty()) {
    waiting_writable_ = true;
    socket_.async_wait(stream_protocol::socket::wait_write,
                       [self = shared_from_this()](const boost::system::error_code& error) {
                         std::lock_guard lock(self->server_->mutex);
                         self->waiting_writable_ = false;
                         if (self->closed_) return;
                         if (error) {
                           self->close();
                           return;
                         }
                         self->flush();
                       });
    return;
  }
  if (close_after_flush_) {
    close();
  } else if (read_after_flush_) {
    read_after_flush_ = false;
    start_reading();
  }
}

void AdminSession::write_now() {
  while (!closed_ && !outbox_.empty()) {
    gather_.clear();
    for (const auto& line : outbox_) {
      if (gather_.size() == kMaxGather) break;
      gather_.push_back(boost::asio::buffer(*line) + (gather_.empty() ? front_written_ : 0));
    }
    boost::system::error_code error;
    const size_t written = socket_.write_some(gather_, error);  // MSG_NOSIGNAL: no SIGPIPE
    if (error == boost::asio::error::would_block || error == boost::asio::error::try_again) return;
    if (error == boost::asio::error::interrupted) continue;
    if (error) {
      if (error != boost::asio::error::broken_pipe && error != boost::asio::error::connection_reset)
        spdlog::debug("admin: session {} write: {}", id_, error.message());
      close();
      return;
    }
    consume(written);
  }
}

void AdminSession::consume(size_t bytes) {
  while (bytes > 0 && !outbox_.empty()) {
    const size_t left = outbox_.front()->size() - front_written_;
    if (bytes < left) {
      front_written_ += bytes;
      return;
    }
    bytes -= left;
    outbox_.pop_front();
    front_written_ = 0;
  }
  queue_loss_notice();  // the reader made room: tell it what it missed before later events
}

void AdminSession::close_after_flush() {
  close_after_flush_ = true;
  if (outbox_.empty()) close();
}

void AdminSession::close_now() {
  write_now();
  close();
}

void AdminSession::close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ignored;
  socket_.shutdown(stream_protocol::socket::shutdown_both, ignored);
  socket_.close(ignored);
  outbox_.clear();
  if (lost_total_ != 0)
    spdlog::info("admin: session {} closed; it lost {} event(s) by reading too slowly", id_,
                 lost_total_);
  else
    spdlog::debug("admin: session {} closed", id_);
  server_->sessions.erase(shared_from_this());
}

// ---------------------------------------------------------------- server

void AdminServer::Impl::accept_next() {
  if (!running) return;
  acceptor.async_accept([self = shared_from_this()](const boost::system::error_code& error,
                                                    stream_protocol::socket socket) {
    std::lock_guard lock(self->mutex);
    self->on_accept(error, std::move(socket));
  });
}

void AdminServer::Impl::on_accept(const boost::system::error_code& error,
                                  stream_protocol::socket socket) {
  if (!running) return;
  if (error) {
    // EMFILE/ENFILE/ENOBUFS would fail again at once: wait a little before retrying.
    spdlog::warn("admin: accept on {}: {}; retrying in 100 ms", config.path, error.message());
    accept_retry.expires_after(std::chrono::milliseconds(100));
    accept_retry.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
      if (e) return;
      std::lock_guard lock(self->mutex);
      self->accept_next();
    });
    return;
  }

  ucred peer{};
  socklen_t length = sizeof peer;
  const int socket_fd = socket.native_handle();  // still open: the session below owns it
  const bool have_peer = ::getsockopt(socket_fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) == 0;
  auto session = std::make_shared<AdminSession>(shared_from_this(), std::move(socket),
                                                next_session_id++, peer);
  sessions.insert(session);

  Result<void> allowed = have_peer ? authorize(socket_fd, peer)
                                   : Result<void>(fail(EACCES, "peer credentials unavailable"));
  if (allowed && sessions.size() > AdminServer::kMaxSessions)
    allowed = fail(EBUSY, "too many admin connections (limit {})", AdminServer::kMaxSessions);
  if (!allowed) {
    ++refused;
    spdlog::warn("admin: refused connection from uid {} gid {} pid {}: {}", peer.uid, peer.gid,
                 peer.pid, allowed.error().why);
    session->send(error_reply(allowed.error()));
    session->close_after_flush();
  } else {
    spdlog::debug("admin: session {} opened by uid {} pid {}", session->id(), peer.uid, peer.pid);
    session->start_reading();
  }
  accept_next();
}

Result<void> AdminServer::Impl::authorize(int socket, const ucred& peer) const {
  if (peer.uid == 0 || peer.uid == ::geteuid()) return success();
  if (!config.group)
    return fail(EACCES, "permission denied: uid {} is not root (the admin socket has no group)",
                peer.uid);
  if (peer.gid == *config.group) return success();
  for (gid_t gid : peer_groups(socket, peer))
    if (gid == *config.group) return success();
  return fail(EACCES, "permission denied: uid {} is neither root nor in group {}", peer.uid,
              group_label(*config.group));
}

const AdminServer::Impl::Command AdminServer::Impl::kCommands[] = {
    {"status", "", "engine counters and daemon facts (frontend, node, pid, netlink)",
     [](Impl& server, AdminSession&, const json&) {
       Result<json> result = server.status();
       return result ? ok_reply(std::move(*result)) : error_reply(result.error());
     }},
    {"contexts", "", "open files of the node: id, client pid/uid/gid/comm, quota, PASIDs",
     [](Impl& server, AdminSession&, const json&) { return ok_reply(server.contexts()); }},
    {"iommu-files", "", "open files of the iommu node: number, context id (as devices show it), opener",
     [](Impl& server, AdminSession&, const json&) { return ok_reply(server.iommu_files()); }},
    {"pasids", "", "allocated PASIDs: owner context and its pid, gpasid, state, refcount",
     [](Impl& server, AdminSession&, const json&) { return ok_reply(server.pasids()); }},
    {"set-quota", "\"context\":N, \"quota\":Q", "set a context's PASID quota",
     [](Impl& server, AdminSession& session, const json& request) { return server.set_quota(session, request); }},
    {"devices", "", "emulated devices: type, PCI address, capabilities, the contexts that bound them, their routes",
     [](Impl& server, AdminSession&, const json&) { return ok_reply(server.devices()); }},
    {"stats", "",
     "IOMMU counters: IOTLB, PASID cache, device-TLBs of ATS devices, HPA segments, table pages, pinned pages",
     [](Impl& server, AdminSession&, const json&) { return ok_reply(server.stats()); }},
    {"pgtable", "\"context\":N, \"ioasid\":M[, \"iova_begin\":B][, \"iova_end\":E]",
     "one IOASID's page table: mapped areas, attached routes, second-level leaves, table pages",
     [](Impl& server, AdminSession&, const json& request) { return server.pgtable(request); }},
    {"device-add", "\"spec\":\"dma,name=N,pci=BB:DD.F,...\"", "add an emulated device (dma or dsa; see ioasidd --device)",
     [](Impl& server, AdminSession& session, const json& request) {
       return server.device_add(session, request);
     }},
    {"device-remove", "\"device\":\"NAME or PCI address\"",
     "remove a device; a bound one stays with its owner, answering ENODEV",
     [](Impl& server, AdminSession& session, const json& request) {
       return server.device_remove(session, request);
     }},
    {"events", "", "turn this connection into an event stream (one event JSON per line)",
     [](Impl&, AdminSession& session, const json&) {
       session.begin_streaming();
       spdlog::info("admin: session {} (uid {} pid {}) streams events", session.id(), session.peer().uid,
                    session.peer().pid);
       return ok_reply(json{{"stream", "events"}, {"max_queued", AdminServer::kMaxQueuedEventLines}});
     }},
    {"help", "", "this list", [](Impl& server, AdminSession&, const json&) { return server.help(); }},
};

json AdminServer::Impl::handle(AdminSession& session, const json& request) {
  json reply = dispatch(session, request);
  if (!reply.value("ok", false)) {
    // What the client sent is shown escaped and cut short: it may hold anything.
    const auto cmd = request.find("cmd");
    const std::string name = cmd != request.end() && cmd->is_string() ? cmd->get<std::string>() : "(no cmd)";
    const std::string why = reply.value("error", "");
    spdlog::info("admin: session {} (uid {} pid {}): {:?} refused: {:?} ({})", session.id(), session.peer().uid,
                 session.peer().pid, std::string_view(name).substr(0, 40), std::string_view(why).substr(0, 300),
                 reply.value("errno", ""));
  }
  return reply;
}

json AdminServer::Impl::dispatch(AdminSession& session, const json& request) {
  auto cmd = request.find("cmd");
  if (cmd == request.end() || !cmd->is_string())
    return error_reply(fail(EINVAL, "missing string field \"cmd\" (try {{\"cmd\":\"help\"}})"));
  const std::string& name = cmd->get_ref<const std::string&>();
  spdlog::debug("admin: session {} (uid {}) cmd {}", session.id(), session.peer().uid, name);

  for (const Command& command : kCommands)
    if (name == command.cmd) return command.answer(*this, session, request);
  return error_reply(fail(EINVAL, "unknown command \"{}\" (try {{\"cmd\":\"help\"}})", name));
}


json AdminServer::Impl::help() const {
  json commands = json::array();
  for (const Command& command : kCommands)
    commands.push_back(json{{"cmd", command.cmd}, {"args", command.args}, {"about", command.about}});
  return ok_reply(json{{"commands", std::move(commands)}});
}

json AdminServer::Impl::set_quota(AdminSession& session, const json& request) {
  Result<uint32_t> context = u32_field(request, "context");
  if (!context) return error_reply(context.error());
  Result<uint32_t> quota = u32_field(request, "quota");
  if (!quota) return error_reply(quota.error());
  if (Result<void> set = service.set_quota(*context, *quota); !set) return error_reply(set.error());
  spdlog::info("admin: uid {} pid {} set the PASID quota of context {} to {}", session.peer().uid,
               session.peer().pid, *context, *quota);
  return ok_reply(json{{"context", *context}, {"quota", *quota}});
}

Result<json> AdminServer::Impl::status() const {
  const dev_ioasid::ServiceStatus s = service.status();
  size_t streams = 0;
  for (const auto& session : sessions) streams += session->streaming() ? 1 : 0;
  json result = {
      {"api_version", s.api_version},
      {"features", s.features},
      {"feature_names", feature_names(s.features)},
      {"pasid_bits", s.pasid_bits},
      {"pasid_capacity", s.pasid_capacity},
      {"pasids_allocated", s.pasids_allocated},
      {"pasid_quota_available", s.pasid_quota_available},
      {"default_pasid_quota", s.default_pasid_quota},
      {"contexts", s.contexts},
      {"ioctls", s.ioctls},
      {"ioctl_errors", s.ioctl_errors},
      {"events_relayed", relay.relayed()},
      {"events_dropped", relay.dropped()},
      {"admin_sessions", sessions.size()},
      {"admin_streams", streams},
      {"admin_refused", refused},
  };
  if (daemon_info) {
    json extra;
    try {  // the callback is the daemon's code, but a throw here must not end run()
      extra = daemon_info();
    } catch (const std::exception& e) {
      return fail(EIO, "daemon info failed: {}", e.what());
    }
    if (extra.is_object())
      result.update(extra);
    else if (!extra.is_null())
      result["daemon"] = std::move(extra);
  }
  return result;
}

json AdminServer::Impl::contexts() const {
  json rows = json::array();
  for (const dev_ioasid::ContextInfo& c : service.contexts()) {
    rows.push_back(json{{"id", c.id},
                        {"pid", c.client.pid},
                        {"uid", c.client.uid},
                        {"gid", c.client.gid},
                        {"comm", process_name(c.client.pid)},
                        {"pasid_quota", c.pasid_quota},
                        {"pasids_allocated", c.pasids_allocated},
                        {"ioctls", c.ioctls},
                        {"opened_unix_ns", c.opened_unix_ns}});
  }
  return rows;
}

json AdminServer::Impl::opener_pid(uint32_t context) const {
  if (context >= dev_iommu::kContextIdBase) {
    const auto opener = iommu ? iommu->opener(context) : std::nullopt;
    return opener ? json(opener->pid) : json(nullptr);
  }
  if (context != 0)
    for (const dev_ioasid::ContextInfo& c : service.contexts())
      if (c.id == context) return c.client.pid;
  return nullptr;
}

json AdminServer::Impl::iommu_files() const {
  json rows = json::array();
  if (!iommu) return rows;
  for (const dev_iommu::Service::FileInfo& file : iommu->files())
    rows.push_back(json{{"file", file.number},
                        {"context", file.number + dev_iommu::kContextIdBase},
                        {"pid", file.client.pid},
                        {"uid", file.client.uid},
                        {"gid", file.client.gid},
                        {"comm", process_name(file.client.pid)}});
  return rows;
}

json AdminServer::Impl::pasids() const {
  std::unordered_map<uint32_t, pid_t> openers;  // one look at the contexts, not one per PASID
  for (const dev_ioasid::ContextInfo& c : service.contexts()) openers.emplace(c.id, c.client.pid);
  json rows = json::array();
  for (const dev_ioasid::PasidOwnerInfo& p : service.pasids()) {
    const auto opener = openers.find(p.context);
    rows.push_back(json{{"pasid", p.pasid},
                        {"context", p.context},
                        {"pid", opener != openers.end() ? json(opener->second) : json(nullptr)},
                        {"gpasid", p.gpasid ? json(*p.gpasid) : json(nullptr)},
                        {"state", state_name(p.state)},
                        {"refcount", p.refcount}});
  }
  return rows;
}

json AdminServer::Impl::device_row(dev_ioasid::Device& device) const {
  const devices::DeviceSpec& spec = device.spec();
  const uint32_t owner = device.owner();
  const json owner_id = owner != 0 ? json(owner) : json(nullptr);
  json routes = json::array();
  {
    std::lock_guard lock(device.attach_mutex());  // routes and their owners change under it
    for (const auto& [pasid, entry] : device.pasid_table().entries()) {
      const uint32_t context = device.route_owner(pasid);
      routes.push_back(json{{"pasid", pasid_or_rid(pasid)},
                            {"context", context != 0 ? json(context) : json(nullptr)},
                            {"ioasid", entry.ioasid},
                            {"type", translation_type_name(entry.type)}});
    }
  }
  json wqs = json::array();
  if (devices::dsa::Engine* engine = device.engine()) {
    for (uint32_t wq = 0; wq < engine->num_wqs(); ++wq) {
      const devices::dsa::WqState state = engine->state(wq);
      json row{{"wq", wq},
               {"enabled", state.config.has_value()},
               {"queued", state.queued},
               {"accepted", state.accepted},
               {"retried", state.retried},
               {"completed", state.completed},
               {"waiting_for_page", state.waiting_for_page},
               {"draining", state.draining}};
      if (state.config) {
        row["mode"] = state.config->shared ? "shared" : "dedicated";
        row["pasid"] = state.config->shared ? json(nullptr) : json(state.config->pasid);
        row["size"] = state.config->size;
        row["priority"] = state.config->priority;
        row["block_on_fault"] = state.config->block_on_fault;
        row["owner"] = state.config->owner;
      }
      wqs.push_back(std::move(row));
    }
  }
  return json{{"name", spec.name},
              {"type", device_type_name(spec.type)},
              {"pci", devices::pci_address(spec.rid)},
              {"rid", spec.rid},
              {"pasid_bits", spec.pasid_bits},
              {"pri", spec.pri},
              {"ats", spec.ats},
              {"num_wqs", spec.num_wqs},
              {"capability_flags", spec.capability_flags()},
              {"spec", devices::describe(spec)},
              {"owner", owner_id},
              {"owner_pid", opener_pid(owner)},
              {"bound_by", device.bound_by()},
              {"routes", std::move(routes)},
              {"wqs", std::move(wqs)}};
}

json AdminServer::Impl::devices() const {
  json rows = json::array();
  for (const auto& device : service.devices().list()) rows.push_back(device_row(*device));
  return rows;
}

json AdminServer::Impl::stats() const {
  iommu::Iommu& iommu = service.iommu();
  const iommu::IotlbStats tlb = iommu.iotlb().stats();
  const HpaSpaceStats memory = iommu.memory().stats();
  json pinned = json::object();
  for (const auto& [uid, pages] : iommu.pins().pinned_by_uid()) pinned[std::to_string(uid)] = pages;
  const iommu::PasidCacheStats pasid_cache = iommu.pasid_cache().stats();
  json device_tlbs = json::array();
  for (const auto& device : service.devices().list()) {
    const iommu::Iotlb* device_tlb = device->device_tlb();
    if (!device_tlb) continue;  // no ATS
    const iommu::IotlbStats d = device_tlb->stats();
    device_tlbs.push_back(json{{"device", device->spec().name},
                               {"hits", d.hits},
                               {"misses", d.misses},
                               {"fills", d.fills},
                               {"evictions", d.evictions},
                               {"invalidated", d.invalidated},
                               {"capacity", d.capacity}});
  }
  return json{{"iotlb",
               {{"capacity", tlb.capacity},
                {"hits", tlb.hits},
                {"misses", tlb.misses},
                {"fills", tlb.fills},
                {"evictions", tlb.evictions},
                {"invalidated", tlb.invalidated}}},
              {"pasid_cache",
               {{"hits", pasid_cache.hits},
                {"misses", pasid_cache.misses},
                {"invalidated", pasid_cache.invalidated},
                {"capacity", pasid_cache.capacity}}},
              {"device_tlbs", std::move(device_tlbs)},
              {"hpa",
               {{"segments", memory.segments},
                {"segment_bytes", memory.segment_bytes},
                {"table_pages", memory.table_pages},
                {"table_page_limit", memory.table_page_limit}}},
              {"pinned_pages", {{"by_uid", pinned}, {"limit_per_uid", iommu.pins().limit_pages()}}}};
}

namespace {

// A nested IOASID's parent and binding, or null for a kernel-managed one.
json nested_json(const std::optional<dev_ioasid::NestedDump>& nested) {
  if (!nested) return nullptr;
  json binding = nullptr;
  if (const auto& bound = nested->binding)
    binding = json{{"pgtbl_addr", bound->pgtbl_addr}, {"addr_width", bound->addr_width}, {"flags", bound->flags},
                   {"pat", bound->pat}, {"emt", bound->emt}};
  return json{{"parent", nested->parent}, {"binding", std::move(binding)}};
}

}  // namespace

json AdminServer::Impl::pgtable(const json& request) const {
  Result<uint32_t> context = u32_field(request, "context");
  if (!context) return error_reply(context.error());
  Result<uint32_t> ioasid = u32_field(request, "ioasid");
  if (!ioasid) return error_reply(ioasid.error());
  // [iova_begin, iova_end): every 64-bit range is valid and costs at most what the
  // whole table does; the line cap below bounds the reply whatever the range.
  Result<uint64_t> begin = optional_u64_field(request, "iova_begin", 0);
  if (!begin) return error_reply(begin.error());
  Result<uint64_t> end = optional_u64_field(request, "iova_end", std::numeric_limits<uint64_t>::max());
  if (!end) return error_reply(end.error());
  if (*begin >= *end)
    return error_reply(fail(EINVAL, "iova_begin {:#x} is not below iova_end {:#x}", *begin, *end));
  Result<dev_ioasid::IoasDump> dump = service.dump_ioas(*context, *ioasid, *begin, *end);
  if (!dump) return error_reply(dump.error());
  json areas = json::array();
  for (const iommu::AreaInfo& area : dump->areas)
    areas.push_back(json{{"iova", area.iova},
                         {"length", area.length},
                         {"hpa", area.hpa},
                         {"readable", area.readable},
                         {"writeable", area.writeable},
                         {"source", area.source}});
  json routes = json::array();
  for (const dev_ioasid::IoasRoute& route : dump->routes)
    routes.push_back(json{{"device", route.device},
                          {"dev_id", route.dev_id},
                          {"pasid", pasid_or_rid(route.pasid)}});
  const size_t total = dump->lines.size();
  // Where the first line not sent starts ("iova 0x..."), for the client to ask again from.
  json next_iova = nullptr;
  if (total > kMaxPgtableLines) {
    const std::string& first_unsent = dump->lines[kMaxPgtableLines];
    next_iova = std::strtoull(first_unsent.c_str() + std::min<size_t>(first_unsent.size(), 5), nullptr, 16);
    dump->lines.resize(kMaxPgtableLines);
  }
  return ok_reply(json{{"context", dump->context},
                       {"ioasid", dump->ioasid},
                       {"domain", dump->domain},
                       {"levels", dump->levels},
                       {"root", dump->root},
                       {"table_pages", dump->table_pages},
                       {"dirty_tracking", dump->dirty_tracking},
                       {"areas", std::move(areas)},
                       {"routes", std::move(routes)},
                       {"dump", std::move(dump->lines)},
                       {"dump_lines", total},
                       {"truncated", total > kMaxPgtableLines},
                       {"next_iova", std::move(next_iova)},
                       {"iova_begin", *begin},
                       {"iova_end", *end},
                       {"nested", nested_json(dump->nested)}});
}

json AdminServer::Impl::device_add(AdminSession& session, const json& request) {
  Result<std::string> text = string_field(request, "spec");
  if (!text) return error_reply(text.error());
  Result<devices::DeviceSpec> spec = devices::parse_device_spec(*text);
  if (!spec) return error_reply(spec.error());
  auto added = service.add_device(*spec);
  if (!added) return error_reply(added.error());
  spdlog::info("admin: uid {} pid {} added device {}", session.peer().uid, session.peer().pid,
               devices::describe(*spec));
  return ok_reply(device_row(**added));
}

json AdminServer::Impl::device_remove(AdminSession& session, const json& request) {
  Result<std::string> which = string_field(request, "device");
  if (!which) return error_reply(which.error());
  // Looked up first so the reply can say what went and who still holds it; the
  // owner is read after the removal, from the same object.
  const std::shared_ptr<dev_ioasid::Device> device = find_device(service.devices().list(), *which);
  if (Result<void> removed = service.remove_device(*which); !removed)
    return error_reply(removed.error());
  if (!device) {  // added and removed between our look and the removal
    spdlog::info("admin: uid {} pid {} removed device {}", session.peer().uid, session.peer().pid, *which);
    return ok_reply(json{{"name", *which}, {"owner", nullptr}, {"owner_pid", nullptr},
                         {"bound_by", json::array()}, {"routes", json::array()}});
  }
  json row = device_row(*device);
  spdlog::info("admin: uid {} pid {} removed device {}{}", session.peer().uid, session.peer().pid,
               device->spec().name,
               row["owner"].is_null() ? std::string()
                                      : fmt::format(" (still bound by context {})", row["owner"].dump()));
  return ok_reply(std::move(row));
}

void AdminServer::Impl::broadcast(const std::string& event_json) {
  // A failed write closes its session, which leaves `sessions`: iterate a copy.
  std::vector<std::shared_ptr<AdminSession>> streams;
  for (const auto& session : sessions)
    if (session->streaming()) streams.push_back(session);
  if (streams.empty()) return;
  const auto line = std::make_shared<const std::string>(event_json + "\n");  // shared by all
  for (const auto& session : streams) session->send_event(line);
}

void AdminServer::Impl::close_all() {
  auto all = std::move(sessions);  // close() erases from `sessions`
  sessions.clear();
  for (const auto& session : all) session->close_now();
}

// ---------------------------------------------------------------- public face

namespace {

// Removes a socket file left by a daemon that died, but never one a live daemon
// still serves, nor anything that is not a socket.
Result<void> remove_stale_socket(const std::string& path) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return success();
    return fail(errno, "stat {}: {}", path, std::strerror(errno));
  }
  if (!S_ISSOCK(st.st_mode)) return fail(EEXIST, "{} exists and is not a socket", path);

  boost::asio::io_context probe_io;
  stream_protocol::socket probe(probe_io);
  boost::system::error_code error;
  probe.connect(stream_protocol::endpoint(path), error);
  if (!error) return fail(EADDRINUSE, "{} is served by a running daemon", path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return fail(errno, "remove stale {}: {}", path, std::strerror(errno));
  spdlog::info("admin: removed stale socket {}", path);
  return success();
}

}  // namespace

AdminServer::AdminServer(boost::asio::io_context& io, dev_ioasid::Service& service, EventRelay& relay,
                         AdminConfig config, DaemonInfo daemon_info, const dev_iommu::Service* iommu)
    : impl_(std::make_shared<Impl>(io, service, relay, std::move(config), std::move(daemon_info), iommu)) {
  relay.add_output([weak = std::weak_ptr<Impl>(impl_)](const dev_ioasid::Event&, const std::string& json) {
    auto impl = weak.lock();
    if (!impl) return;
    std::lock_guard lock(impl->mutex);
    if (impl->running) impl->broadcast(json);
  });
}

AdminServer::~AdminServer() { stop(); }

const std::string& AdminServer::path() const { return impl_->config.path; }

Result<void> AdminServer::start() {
  std::lock_guard lock(impl_->mutex);
  if (impl_->running) return success();
  const std::string& path = impl_->config.path;
  if (path.empty() || path.size() >= sizeof(sockaddr_un{}.sun_path))
    return fail(ENAMETOOLONG, "admin socket path \"{}\" is empty or too long", path);

  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code fs_error;
  if (!parent.empty() && !std::filesystem::exists(parent, fs_error)) {
    fs_error = impl_->made_directories.create(parent);
    if (fs_error) return fail(fs_error.value(), "create {}: {}", parent.string(), fs_error.message());
    ::chmod(parent.c_str(), 0755);  // group members must reach the socket inside
  }
  IOASID_TRY(remove_stale_socket(path));

  // SO_PEERCRED is the real check; the mode keeps others from even connecting. The
  // socket is born with its mode (the umask at bind(2)) rather than chmod'ed by path
  // afterwards: whoever could swap the path for a symlink in between would otherwise
  // have the daemon chmod the link's target. No other thread creates files yet.
  const mode_t mode = impl_->config.group ? 0660 : 0600;
  boost::system::error_code error;
  stream_protocol::acceptor& acceptor = impl_->acceptor;
  acceptor.open(stream_protocol(), error);
  if (!error) {
    const mode_t previous_umask = ::umask(0777 & ~mode);
    acceptor.bind(stream_protocol::endpoint(path), error);
    ::umask(previous_umask);
  }
  if (error) {
    acceptor.close();
    return fail(error.value(), "bind {}: {}", path, error.message());
  }
  impl_->owns_path = true;
  // lchown: the group goes to the socket itself, never to what a symlink names.
  if (impl_->config.group && ::lchown(path.c_str(), static_cast<uid_t>(-1), *impl_->config.group) != 0) {
    int code = errno;
    acceptor.close();
    ::unlink(path.c_str());
    impl_->owns_path = false;
    return fail(code, "chown {} to group {}: {}", path, *impl_->config.group, std::strerror(code));
  }
  acceptor.listen(boost::asio::socket_base::max_listen_connections, error);
  if (error) {
    acceptor.close();
    ::unlink(path.c_str());
    impl_->owns_path = false;
    return fail(error.value(), "listen {}: {}", path, error.message());
  }

  impl_->running = true;
  impl_->accept_next();
  spdlog::info("admin: listening on {} (mode {:o}{})", path, mode,
               impl_->config.group ? ", group " + group_label(*impl_->config.group) : "");
  return success();
}

void AdminServer::stop() {
  std::lock_guard lock(impl_->mutex);
  if (!impl_->running && !impl_->owns_path) return;
  impl_->running = false;
  boost::system::error_code ignored;
  impl_->acceptor.close(ignored);
  impl_->accept_retry.cancel();
  impl_->close_all();
  if (impl_->owns_path) {
    ::unlink(impl_->config.path.c_str());
    impl_->owns_path = false;
  }
  spdlog::debug("admin: stopped");
}

}  // namespace ioasid::daemon

// SPDX-License-Identifier: MIT
// The security model of docs/SECURITY.md, tested through real nodes: who may open the
// node, who may use the admin socket, what a client of another user can reach, what a
// daemon without ptrace rights over a client answers, what clients see when the daemon
// dies, and that ioasidctl monitor believes only the daemon's netlink messages.
//
// Each test needs a daemon configured its own way (a node group, an admin group, no
// CAP_SYS_PTRACE, netlink, one it may kill), so it starts a private FUSE daemon in a
// directory other users can traverse, and skips where the suite tests an outside node
// (IOASID_DEV, the CUSE stage). Other users are played by forked children that drop to
// uid/gid 65534 (nobody/nogroup) with chosen supplementary groups; they only make
// syscalls and report what they saw as text, which the test then checks.
#include "harness.hpp"
#include "notify_listener.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace conf {
namespace {

using json = nlohmann::json;

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
constexpr uint64_t k4K = 4096;

// ---------------------------------------------------------------- small helpers

std::string file_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

bool contains(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

// "OK" when a call succeeded, else the name of its errno ("EACCES").
std::string outcome(bool succeeded) { return succeeded ? "OK" : errno_name(errno); }
std::string outcome(Errno err) { return errno_name(err.value); }

// A group that exists, is not root's and is not nobody's: the one tests put in
// --node-group / --admin-group, and give to (or withhold from) the nobody children.
struct TestGroup {
  std::string name;
  gid_t gid;
};
std::optional<TestGroup> unprivileged_group() {
  if (const group* users = ::getgrnam("users")) return TestGroup{users->gr_name, users->gr_gid};
  std::optional<TestGroup> found;
  ::setgrent();
  while (const group* entry = ::getgrent()) {
    if (entry->gr_gid != 0 && entry->gr_gid != kNogroup) {
      found = TestGroup{entry->gr_name, entry->gr_gid};
      break;
    }
  }
  ::endgrent();
  return found;
}

// In a forked child: become uid 65534 with primary group `primary` and exactly
// `groups` as supplementary groups. Dumpable again afterwards, as an ordinary user's
// process is (a uid change clears it), so that what the daemon may do to this process
// rests on uids and capabilities alone.
bool become_nobody(std::vector<gid_t> groups = {}, gid_t primary = kNogroup) {
  return ::setgroups(groups.size(), groups.data()) == 0 && ::setresgid(primary, primary, primary) == 0 &&
         ::setresuid(kNobody, kNobody, kNobody) == 0 && ::prctl(PR_SET_DUMPABLE, 1) == 0;
}

// Runs fn in a forked child (syscalls only, no gtest) and returns the text it
// reported; a child that crashed or did not finish reports that instead.
std::string report_from_child(const std::function<std::string()>& fn, std::chrono::milliseconds timeout = 20s) {
  int channel[2];
  if (::pipe2(channel, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
  std::string why;
  const int code = run_in_child(
      [&] {
        ::close(channel[0]);
        const std::string report = fn();
        const bool written = ::write(channel[1], report.data(), report.size()) == ssize_t(report.size());
        return written ? 0 : 1;
      },
      timeout, &why);
  ::close(channel[1]);
  std::string report;
  char chunk[4096];
  ::fcntl(channel[0], F_SETFL, O_NONBLOCK);  // the child is gone: whatever it wrote is there
  for (ssize_t got; (got = ::read(channel[0], chunk, sizeof chunk)) > 0;) report.append(chunk, size_t(got));
  ::close(channel[0]);
  if (code != 0) return "the child failed (" + (why.empty() ? "exit " + std::to_string(code) : why) + ")" + report;
  return report;
}

// CapEff of a process, from /proc/PID/status.
std::optional<uint64_t> effective_capabilities(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("CapEff:", 0) == 0) return std::stoull(line.substr(7), nullptr, 16);
  return std::nullopt;
}

// A daemon built with ASan or TSan reserves terabytes of shadow address space and keeps
// freed memory in quarantine: address-space caps and RSS figures do not apply to it.
bool sanitized_daemon(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmSize:", 0) == 0) return std::stoull(line.substr(7)) > (64ull << 20);
  return false;
}

// In a forked child before exec: CAP_SYS_PTRACE out of the bounding, inheritable and
// ambient sets, so that the program exec'd as root comes up without it.
bool drop_ptrace_capability() {
  if (::prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE, 0, 0, 0) != 0) return false;
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) return false;
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  for (auto& set : data) set.inheritable = 0;
  return ::syscall(SYS_capset, &header, data) == 0;
}

// ---------------------------------------------------------------- a private daemon

struct DaemonConfig {
  std::vector<std::string> args;  // options beyond the front end, socket and log
  bool without_ptrace = false;    // exec it with CAP_SYS_PTRACE dropped from every set
};

// ioasidd --frontend fuse in a fresh directory of /tmp that every user may traverse
// (the harness's own directory is 0700): DIR/mnt/ioasid is the node, DIR/admin.sock
// the admin socket, DIR/ioasidd.log the log. Stopped (or reaped), unmounted and
// removed when it goes out of scope.
class PrivateDaemon {
 public:
  explicit PrivateDaemon(const DaemonConfig& config) {
    char pattern[] = "/tmp/ioasid-security.XXXXXX";
    if (!::mkdtemp(pattern)) {
      why_ = std::string("mkdtemp: ") + std::strerror(errno);
      return;
    }
    dir_ = pattern;
    ::chmod(dir_.c_str(), 0755);
    mount_ = dir_ + "/mnt";
    node_ = mount_ + "/ioasid";
    admin_ = dir_ + "/admin.sock";
    log_ = dir_ + "/ioasidd.log";
    std::vector<std::string> args = {ioasidd_binary(), "--frontend", "fuse", "--fuse", mount_, "--admin-socket",
                                     admin_, "--log-file", log_, "--log-level", "debug"};
    if (std::find(config.args.begin(), config.args.end(), "--netlink-group") == config.args.end())
      args.push_back("--no-netlink");
    args.insert(args.end(), config.args.begin(), config.args.end());
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    const std::string out = dir_ + "/ioasidd.out";

    std::fflush(stdout);
    // READY=1 (sd_notify) says the daemon serves: no polling of the node.
    ioasid::test::NotifyListener ready;
    const std::string notify_socket = ready.socket_env();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the suite
      const int output = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (output >= 0) {
        ::dup2(output, 1);
        ::dup2(output, 2);
      }
      if (config.without_ptrace && !drop_ptrace_capability()) ::_exit(125);
      ::setenv("NOTIFY_SOCKET", notify_socket.c_str(), 1);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    if (pid_ < 0) {
      why_ = std::string("fork: ") + std::strerror(errno);
      return;
    }
    const auto outcome = ready.wait_ready(pid_, 10s);
    if (int status = 0; outcome != ioasid::test::NotifyListener::Outcome::Ready) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        why_ = "ioasidd exited: " + describe_status(status) + "\n" + file_text(out) + file_text(log_);
      } else {
        why_ = "ioasidd sent no READY=1 within 10 s (" + ready.error() + ready.status() + ")\n" + file_text(log_);
      }
      return;
    }
    up_ = node_is_live(node_);
    if (!up_) {
      why_ = node_ + " did not answer once ioasidd was ready\n" + file_text(log_);
      return;
    }
  }

  ~PrivateDaemon() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGTERM);
      if (!wait_pid_for(pid_, 10s, nullptr)) {
        ::kill(pid_, SIGKILL);
        wait_pid_for(pid_, 5s, nullptr);
      }
    }
    if (!mount_.empty()) ::umount2(mount_.c_str(), MNT_DETACH);  // left behind by a killed daemon
    std::error_code ignored;
    if (!dir_.empty() && !std::getenv("IOASID_KEEP_TMP")) std::filesystem::remove_all(dir_, ignored);
  }
  PrivateDaemon(const PrivateDaemon&) = delete;
  PrivateDaemon& operator=(const PrivateDaemon&) = delete;

  bool up() const { return up_; }
  const std::string& why() const { return why_; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  const std::string& node() const { return node_; }
  const std::string& admin_socket() const { return admin_; }
  std::string log() const { return file_text(log_); }

  // SIGKILL; true once reaped.
  bool kill_now() {
    ::kill(pid_, SIGKILL);
    reaped_ = wait_pid_for(pid_, 10s, nullptr);
    return reaped_;
  }

  // One admin request as this (root) process; the reply's "result", or null.
  json admin(const std::string& request) const;

 private:
  std::string dir_, mount_, node_, admin_, log_, why_;
  pid_t pid_ = -1;
  bool up_ = false;
  bool reaped_ = false;
};

#define SKIP_WITHOUT_PRIVATE_DAEMONS()                                                      \
  if (fuse_mount_dir().empty() || ioasidd_binary().empty())                                 \
  GTEST_SKIP() << "needs the ioasidd binary and FUSE (the harness's own daemon)"

// ---------------------------------------------------------------- the admin socket

// What a client of an admin socket saw: connect(2)'s errno (0 when it connected), the
// first line the daemon sent, and whether the daemon then closed the connection.
struct AdminExchange {
  int connect_errno = 0;
  std::string first_line;
  bool closed_after = false;
};

// Connects, sends `request`, reads the first line; with `expect_close`, waits (up to
// 5 s) for the daemon to end the connection. Usable in a forked child.
AdminExchange talk_to_admin(const std::string& path, const std::string& request, bool expect_close = false) {
  AdminExchange seen;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    seen.connect_errno = errno;
    if (fd >= 0) ::close(fd);
    return seen;
  }
  const timeval limit{.tv_sec = 5, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  const std::string line = request + "\n";
  (void)!::send(fd, line.data(), line.size(), MSG_NOSIGNAL);  // a refused peer may be closed already
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') seen.first_line.push_back(c);
  if (expect_close) {
    // A daemon that closes with our request unread resets the connection: ECONNRESET.
    const ssize_t got = ::read(fd, &c, 1);
    seen.closed_after = got == 0 || (got < 0 && errno == ECONNRESET);
  }
  ::close(fd);
  return seen;
}

std::string describe(const AdminExchange& seen) {
  if (seen.connect_errno) return "connect: " + errno_name(seen.connect_errno);
  return seen.first_line + (seen.closed_after ? " [closed]" : "");
}

json PrivateDaemon::admin(const std::string& request) const {
  const json reply = json::parse(talk_to_admin(admin_, request).first_line, nullptr, false);
  if (!reply.is_object() || !reply.value("ok", false)) return nullptr;
  return reply.value("result", json());
}

// ================================================================ opening the node

// The FUSE node is root:GROUP with --node-mode/--node-group, and the kernel checks
// them (default_permissions) as it would a device node's: a user outside the group
// gets EACCES, a member (by a supplementary or by its primary group) opens it, and its
// file works — including the ioctls that reach its memory.
TEST(Security, TheNodeOpensOnlyForItsGroup) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  const auto group = unprivileged_group();
  if (!group) GTEST_SKIP() << "no group other than root and nogroup on this system";
  PrivateDaemon daemon({.args = {"--node-mode", "0660", "--node-group", group->name}});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  struct stat node{};
  ASSERT_EQ(::stat(daemon.node().c_str(), &node), 0);
  EXPECT_EQ(node.st_mode & 07777, 0660u);
  EXPECT_EQ(node.st_uid, 0u);
  EXPECT_EQ(node.st_gid, group->gid);

  auto try_open = [&](std::vector<gid_t> groups, gid_t primary) {
    return report_from_child([&, groups, primary] {
      if (!become_nobody(groups, primary)) return "cannot become nobody: " + errno_name(errno);
      const int read_write = ::open(daemon.node().c_str(), O_RDWR | O_CLOEXEC);
      std::string seen = "O_RDWR " + outcome(read_write >= 0);
      const int read_only = ::open(daemon.node().c_str(), O_RDONLY | O_CLOEXEC);
      return seen + ", O_RDONLY " + outcome(read_only >= 0);
    });
  };
  EXPECT_EQ(try_open({}, kNogroup), "O_RDWR EACCES, O_RDONLY EACCES") << "a user outside the group";
  EXPECT_EQ(try_open({group->gid}, kNogroup), "O_RDWR OK, O_RDONLY OK") << "a supplementary member";
  EXPECT_EQ(try_open({}, group->gid), "O_RDWR OK, O_RDONLY OK") << "a member by its primary group";

  // A member's file works: a PASID, and a device writing into the member's own private
  // memory through an IOASID (so the daemon reached a uid-65534 process's memory).
  const std::string member = report_from_child([&] {
    if (!become_nobody({group->gid})) return "cannot become nobody: " + errno_name(errno);
    auto file = client::File::open(daemon.node());
    if (!file) return file.error().what;
    if (auto pasid = client::Pasid::allocate(*file); !pasid) return pasid.error().what;
    void* memory = ::mmap(nullptr, k4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) return std::string("mmap failed");
    auto ioas = client::Ioas::allocate(*file);
    if (!ioas) return ioas.error().what;
    auto device = client::Device::bind(*file, "dma1");
    if (!device) return device.error().what;
    auto route = client::Attachment::attach(*device, *ioas);
    if (!route) return route.error().what;
    auto mapping = client::Mapping::map_dma(*ioas, {static_cast<std::byte*>(memory), k4K});
    if (!mapping) return mapping.error().what;
    const std::string text = "written by dma1";
    auto written = device->dma_write(mapping->iova(), std::as_bytes(std::span(text)));
    if (!written || !written->ok()) return std::string("DEVICE_DMA did not complete");
    return std::memcmp(memory, text.data(), text.size()) == 0 ? std::string("works")
                                                                : std::string("the DMA did not land");
  });
  EXPECT_EQ(member, "works");
  EXPECT_TRUE(contains(daemon.log(), "uid 65534")) << "the daemon records who opened the file";
}

// ================================================================ the admin socket

// Without --admin-group the socket is 0600 root: another user cannot connect. If the
// mode is loosened anyway, the SO_PEERCRED check still refuses it with one error line
// and closes, and the daemon logs and counts the refusal.
TEST(Security, TheAdminSocketAdmitsOnlyRootWithoutAnAdminGroup) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  PrivateDaemon daemon({});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  struct stat socket_file{};
  ASSERT_EQ(::lstat(daemon.admin_socket().c_str(), &socket_file), 0);
  EXPECT_TRUE(S_ISSOCK(socket_file.st_mode));
  EXPECT_EQ(socket_file.st_mode & 07777, 0600u);
  EXPECT_EQ(socket_file.st_uid, 0u);
  ASSERT_FALSE(daemon.admin(R"({"cmd":"status"})").is_null()) << "root is admitted";

  auto as_nobody = [&] {
    return report_from_child([&] {
      if (!become_nobody()) return "cannot become nobody: " + errno_name(errno);
      return describe(talk_to_admin(daemon.admin_socket(), R"({"cmd":"status"})", true));
    });
  };
  EXPECT_EQ(as_nobody(), "connect: EACCES") << "the socket's mode keeps others out";

  ASSERT_EQ(::chmod(daemon.admin_socket().c_str(), 0666), 0);  // as if the first fence were down
  const std::string refused = as_nobody();
  EXPECT_TRUE(contains(refused, R"("ok":false)") && contains(refused, R"("errno":"EACCES")") &&
              contains(refused, "uid 65534 is not root"))
      << refused;
  EXPECT_TRUE(contains(refused, "[closed]")) << "the daemon must close a refused connection: " << refused;
  EXPECT_TRUE(contains(daemon.log(), "admin: refused connection from uid 65534")) << daemon.log();
  EXPECT_EQ(daemon.admin(R"({"cmd":"status"})").value("admin_refused", 0), 1);
}

// With --admin-group G the socket is 0660 root:G. A member (supplementary or primary
// group) is served; anyone else cannot connect, and past a loosened mode is refused by
// the peer check, which reads the groups the peer really has.
TEST(Security, TheAdminSocketAdmitsMembersOfTheAdminGroup) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  const auto group = unprivileged_group();
  if (!group) GTEST_SKIP() << "no group other than root and nogroup on this system";
  PrivateDaemon daemon({.args = {"--admin-group", group->name}});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  struct stat socket_file{};
  ASSERT_EQ(::lstat(daemon.admin_socket().c_str(), &socket_file), 0);
  EXPECT_EQ(socket_file.st_mode & 07777, 0660u);
  EXPECT_EQ(socket_file.st_gid, group->gid);

  auto as_nobody = [&](std::vector<gid_t> groups, gid_t primary) {
    return report_from_child([&, groups, primary] {
      if (!become_nobody(groups, primary)) return "cannot become nobody: " + errno_name(errno);
      return describe(talk_to_admin(daemon.admin_socket(), R"({"cmd":"status"})"));
    });
  };
  EXPECT_TRUE(contains(as_nobody({group->gid}, kNogroup), R"("ok":true)")) << "a supplementary member";
  EXPECT_TRUE(contains(as_nobody({}, group->gid), R"("ok":true)")) << "a member by its primary group";
  EXPECT_EQ(as_nobody({}, kNogroup), "connect: EACCES") << "the socket's mode keeps others out";

  ASSERT_EQ(::chmod(daemon.admin_socket().c_str(), 0666), 0);
  const std::string refused = as_nobody({}, kNogroup);
  EXPECT_TRUE(contains(refused, R"("errno":"EACCES")") && contains(refused, "is neither root nor in group"))
      << refused;
  EXPECT_TRUE(contains(daemon.log(), "admin: refused connection from uid 65534")) << daemon.log();
}

// ================================================================ a client's reach

// A client of another user (uid 65534) on the same node reaches nothing of root's
// file: its IOASID and dev_id numbers mean nothing in another file (ENOENT, and the
// same number there is another object), its PASID is not usable (EACCES, FREE counts
// 0), its device is taken (EBUSY). Fds and pointers are resolved in the caller: a fd
// number or address valid only in root's process is EBADF / EFAULT for the other.
// Afterwards root's objects are as they were. (The same-user rows are proven by
// AttachPasid.Rows, DeviceBind.ByNameOrPciAddressAndExclusive,
// DeviceBind.IdsArePerFileAndNeverReused and Isolation.*.)
TEST(Security, AnotherUsersFileReachesNothingOfThisOne) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  PrivateDaemon daemon({.args = {"--node-mode", "0666"}});
  ASSERT_TRUE(daemon.up()) << daemon.why();

  // Root's file: IOASID X with a memfd mapped and dma1 attached by RID, a PASID, and a
  // private page only this process has.
  const auto mine = must(client::File::open(daemon.node()));
  auto ioas = must(client::Ioas::allocate(mine));
  Memfd memfd(2 * k4K);
  const uint64_t iova = map_memfd(ioas, memfd);
  auto dma1 = must(client::Device::bind(mine, "dma1"));
  must(client::Attachment::attach(dma1, ioas)).release();
  const uint32_t pasid = must(client::Pasid::allocate(mine)).release();
  auto* secret = static_cast<char*>(::mmap(nullptr, k4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(secret, MAP_FAILED);
  std::strcpy(secret, "root's secret");
  const uint32_t x = ioas.id(), dev = dma1.id();

  const std::string report = report_from_child([&] {
    // What fork handed down is not the other user's to use: root's file and memfd,
    // and the secret page.
    ::close(mine.fd());
    ::close(memfd.fd);
    ::munmap(secret, k4K);
    if (!become_nobody()) return "cannot become nobody: " + errno_name(errno);
    const int fd = ::open(daemon.node().c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return "open: " + errno_name(errno);
    std::ostringstream seen;
    ioasid_free free_x{.ioasid = x};
    seen << "FREE(X) " << outcome(ioctl_errno(fd, IOASID_FREE, &free_x)) << "\n";
    ioasid_unmap_dma unmap_x{.ioasid = x, .iova = 0, .length = ~0ull};
    seen << "UNMAP(X) " << outcome(ioctl_errno(fd, IOASID_UNMAP_DMA, &unmap_x)) << "\n";
    char buffer[64] = {};
    ioasid_device_dma dma{.dev_id = dev, .iova = iova, .length = sizeof buffer,
                          .buf_uptr = reinterpret_cast<uint64_t>(buffer)};
    seen << "DEVICE_DMA(dev) " << outcome(ioctl_errno(fd, IOASID_DEVICE_DMA, &dma)) << "\n";
    ioasid_device_bind bind{};
    std::snprintf(bind.name, sizeof bind.name, "dma1");
    seen << "DEVICE_BIND(dma1) " << outcome(ioctl_errno(fd, IOASID_DEVICE_BIND, &bind)) << "\n";
    // Its own IOASID and device: the first of this file, so the same numbers as root's.
    ioasid_alloc alloc{};
    seen << "ALLOC " << outcome(ioctl_errno(fd, IOASID_ALLOC, &alloc)) << (alloc.out_ioasid == x ? " same id" : "")
         << "\n";
    ioasid_unmap_dma unmap_own{.ioasid = alloc.out_ioasid, .iova = 0, .length = ~0ull};
    seen << "UNMAP(own) " << outcome(ioctl_errno(fd, IOASID_UNMAP_DMA, &unmap_own)) << " length "
         << unmap_own.length << "\n";
    ioasid_attach attach_theirs{.dev_id = dev, .ioasid = alloc.out_ioasid};
    seen << "ATTACH(dev) " << outcome(ioctl_errno(fd, IOASID_ATTACH_IOASID, &attach_theirs)) << "\n";
    ioasid_device_bind dma0{};
    std::snprintf(dma0.name, sizeof dma0.name, "dma0");
    if (ioctl_errno(fd, IOASID_DEVICE_BIND, &dma0) == kOk) {
      ioasid_attach at_pasid{.dev_id = dma0.out_dev_id, .ioasid = alloc.out_ioasid, .pasid = pasid};
      seen << "ATTACH_PASID(pasid) " << outcome(ioctl_errno(fd, IOASID_ATTACH_IOASID_PASID, &at_pasid)) << "\n";
    }
    ioasid_pasid_request free_pasid = req_free(pasid, pasid);
    seen << "PASID FREE " << outcome(ioctl_errno(fd, IOASID_PASID_REQUEST, &free_pasid)) << " count "
         << free_pasid.pasid << "\n";
    // Root's fd number and root's address, passed by the other user.
    ioasid_map_file map_file{.flags = IOASID_MAP_READABLE, .ioasid = alloc.out_ioasid, .fd = memfd.fd,
                             .length = k4K};
    seen << "MAP_FILE(root's fd) " << outcome(ioctl_errno(fd, IOASID_MAP_FILE, &map_file)) << "\n";
    ioasid_map_dma map_dma{.flags = IOASID_MAP_READABLE, .ioasid = alloc.out_ioasid,
                           .user_va = reinterpret_cast<uint64_t>(secret), .length = k4K};
    seen << "MAP_DMA(root's address) " << outcome(ioctl_errno(fd, IOASID_MAP_DMA, &map_dma)) << "\n";
    ioasid_iova_ranges ranges{.ioasid = alloc.out_ioasid, .num_ranges = 4,
                              .ranges_uptr = reinterpret_cast<uint64_t>(secret)};
    seen << "IOVA_RANGES(into root's address) " << outcome(ioctl_errno(fd, IOASID_IOVA_RANGES, &ranges)) << "\n";
    return seen.str();
  });
  EXPECT_EQ(report,
            "FREE(X) ENOENT\n"
            "UNMAP(X) ENOENT\n"
            "DEVICE_DMA(dev) ENOENT\n"
            "DEVICE_BIND(dma1) EBUSY\n"
            "ALLOC OK same id\n"
            "UNMAP(own) OK length 0\n"
            "ATTACH(dev) ENOENT\n"
            "ATTACH_PASID(pasid) EACCES\n"
            "PASID FREE OK count 0\n"
            "MAP_FILE(root's fd) EBADF\n"
            "MAP_DMA(root's address) EFAULT\n"
            "IOVA_RANGES(into root's address) EFAULT\n");

  // Root's file is as it was.
  EXPECT_STREQ(secret, "root's secret");
  ::munmap(secret, k4K);
  EXPECT_EQ(must(dma1.info()).dev_id, dev);
  EXPECT_EQ(pasids_allocated(mine.fd()), 1u);
  ioasid_unmap_dma everything{.ioasid = x, .iova = 0, .length = ~0ull};
  ASSERT_EQ(ioctl_errno(mine.fd(), IOASID_UNMAP_DMA, &everything), kOk);
  EXPECT_EQ(everything.length, 2 * k4K) << "root's mapping at IOVA " << iova << " is still there";
}

// ================================================================ the daemon's own rights

// A daemon that may not ptrace a client (here: root without CAP_SYS_PTRACE, and a
// client of uid 65534) cannot reach its memory. Every ioctl that would is refused with
// EPERM — never EFAULT, which would blame the client's pointer — the log says why, and
// nothing was mapped or pinned. What needs no client memory still works.
TEST(Security, ADaemonWithoutPtraceRightsAnswersEperm) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  PrivateDaemon daemon({.args = {"--node-mode", "0666"}, .without_ptrace = true});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  const auto capabilities = effective_capabilities(daemon.pid());
  ASSERT_TRUE(capabilities.has_value());
  ASSERT_EQ(*capabilities & (1ull << CAP_SYS_PTRACE), 0u) << "the daemon still has CAP_SYS_PTRACE";
  EXPECT_TRUE(contains(daemon.log(), "no CAP_SYS_PTRACE")) << "the daemon warns at start:\n" << daemon.log();

  const std::string report = report_from_child([&] {
    if (!become_nobody()) return "cannot become nobody: " + errno_name(errno);
    const int fd = ::open(daemon.node().c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return "open: " + errno_name(errno);
    std::ostringstream seen;
    Errno version;
    seen << "GET_API_VERSION " << ioctl_value(fd, IOASID_GET_API_VERSION, 0, &version) << "\n";
    ioasid_pasid_request alloc_pasid = req_alloc(1, (1u << 20) - 1);
    seen << "PASID ALLOC " << outcome(ioctl_errno(fd, IOASID_PASID_REQUEST, &alloc_pasid)) << "\n";
    ioasid_alloc alloc{};
    seen << "ALLOC " << outcome(ioctl_errno(fd, IOASID_ALLOC, &alloc)) << "\n";
    void* private_page = ::mmap(nullptr, k4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ioasid_map_dma map_private{.flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE, .ioasid = alloc.out_ioasid,
                               .user_va = reinterpret_cast<uint64_t>(private_page), .length = k4K};
    seen << "MAP_DMA(private) " << outcome(ioctl_errno(fd, IOASID_MAP_DMA, &map_private)) << "\n";
    const int memfd = ::memfd_create("security", MFD_CLOEXEC);
    void* shared = memfd >= 0 && ::ftruncate(memfd, k4K) == 0
                       ? ::mmap(nullptr, k4K, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0)
                       : MAP_FAILED;
    if (shared == MAP_FAILED) return "memfd: " + errno_name(errno);
    ioasid_map_dma map_shared{.flags = IOASID_MAP_READABLE, .ioasid = alloc.out_ioasid,
                              .user_va = reinterpret_cast<uint64_t>(shared), .length = k4K};
    seen << "MAP_DMA(shared) " << outcome(ioctl_errno(fd, IOASID_MAP_DMA, &map_shared)) << "\n";
    ioasid_map_file map_file{.flags = IOASID_MAP_READABLE, .ioasid = alloc.out_ioasid, .fd = memfd, .length = k4K};
    seen << "MAP_FILE " << outcome(ioctl_errno(fd, IOASID_MAP_FILE, &map_file)) << "\n";
    ioasid_iova_range ranges[4]{};
    ioasid_iova_ranges query{.ioasid = alloc.out_ioasid, .num_ranges = 4,
                             .ranges_uptr = reinterpret_cast<uint64_t>(ranges)};
    seen << "IOVA_RANGES " << outcome(ioctl_errno(fd, IOASID_IOVA_RANGES, &query)) << "\n";
    ioasid_unmap_dma everything{.ioasid = alloc.out_ioasid, .iova = 0, .length = ~0ull};
    seen << "UNMAP(all) " << outcome(ioctl_errno(fd, IOASID_UNMAP_DMA, &everything)) << " length "
         << everything.length << "\n";
    return seen.str();
  });
  EXPECT_EQ(report,
            "GET_API_VERSION 1\n"
            "PASID ALLOC OK\n"
            "ALLOC OK\n"
            "MAP_DMA(private) EPERM\n"
            "MAP_DMA(shared) EPERM\n"
            "MAP_FILE EPERM\n"
            "IOVA_RANGES EPERM\n"
            "UNMAP(all) OK length 0\n");

  const std::string log = daemon.log();
  for (const char* ioctl : {"IOASID_MAP_DMA: EPERM: no ptrace access", "IOASID_MAP_FILE: EPERM: no ptrace access",
                            "IOASID_IOVA_RANGES: EPERM: no ptrace access"})
    EXPECT_TRUE(contains(log, ioctl)) << "no log line \"" << ioctl << "\" in\n" << log;
  const json stats = daemon.admin(R"({"cmd":"stats"})");
  ASSERT_FALSE(stats.is_null());
  EXPECT_EQ(stats["pinned_pages"]["by_uid"].value("65534", uint64_t{0}), 0u) << stats.dump();
}

// ================================================================ a dead daemon

// Reports what a client's calls returned once its daemon was killed under it.
struct DeadDaemonOutcome {
  int waiting_dma = -1;   // errno of a DEVICE_DMA waiting for a page response (-1: still blocked)
  int blocked_read = -1;  // errno of a read() parked on the fault queue
  int waiting_poll = -1;  // revents of a poll() for POLLIN (or -errno)
  int later_ioctl = -1;   // errno of an ioctl issued afterwards on the same file
  int reopen = -1;        // errno of open() of the node
};

// Waits until thread `tid` of this process sits in syscall `number` (from
// /proc/self/task/TID/syscall); false after 5 s.
bool thread_in_syscall(pid_t tid, long number) {
  return eventually(
      [&] {
        std::ifstream file("/proc/self/task/" + std::to_string(tid) + "/syscall");
        long current = -1;
        return bool(file >> current) && current == number;
      },
      5s);
}

// SIGKILL of the daemon while a client has a DEVICE_DMA waiting for a page response in
// it, a read() parked on its fault queue and a poll() waiting for POLLIN: each returns
// within seconds (the kernel aborts the FUSE connection when the daemon's /dev/fuse fd
// closes) with an error, and so do later ioctls on the file and opening the node
// again. Nothing hangs.
TEST(Security, AKilledDaemonFailsEveryCallerInsteadOfHanging) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  PrivateDaemon daemon({.args = {"--page-timeout", "60000"}});  // the DMA would wait a minute
  ASSERT_TRUE(daemon.up()) << daemon.why();
  int ready[2], results[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(results, O_CLOEXEC), 0);
  ChildGuard guard;
  std::fflush(stdout);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The client: set-up through libioasid, then the three blocked calls on threads.
    char step = 'F';
    DeadDaemonOutcome seen;
    try {
      const auto file = must(client::File::open(daemon.node()));
      auto dma0 = must(client::Device::bind(file, "dma0"));
      auto ioas = must(client::Ioas::allocate(file));
      const uint32_t pasid = must(client::Pasid::allocate(file)).release();
      must(client::Attachment::attach_pasid(dma0, ioas, pasid)).release();
      std::atomic<pid_t> dma_thread{0}, read_thread{0}, poll_thread{0};
      std::atomic<bool> dma_done{false}, read_done{false}, poll_done{false};
      std::thread dma([&] {
        dma_thread = static_cast<pid_t>(::gettid());
        char buffer[64];
        ioasid_device_dma request{.dev_id = dma0.id(), .flags = IOASID_DMA_PASID, .pasid = pasid,
                                  .iova = 0x100000, .length = sizeof buffer,
                                  .buf_uptr = reinterpret_cast<uint64_t>(buffer)};
        seen.waiting_dma = ioctl_errno(file.fd(), IOASID_DEVICE_DMA, &request).value;
        dma_done = true;
      });
      // The page request is queued once the DMA waits for its answer in the daemon.
      auto request = file.next_fault(5s);
      step = request && request->type == IOASID_FAULT_PAGE_REQ ? 'R' : 'P';
      std::thread reader([&] {
        read_thread = static_cast<pid_t>(::gettid());
        ioasid_fault record;
        seen.blocked_read = ::read(file.fd(), &record, sizeof record) < 0 ? errno : 0;
        read_done = true;
      });
      std::thread poller([&] {
        poll_thread = static_cast<pid_t>(::gettid());
        pollfd readable{file.fd(), POLLIN, 0};
        const int got = ::ppoll(&readable, 1, nullptr, nullptr);
        seen.waiting_poll = got < 0 ? -errno : readable.revents;
        poll_done = true;
      });
      if (step == 'R') {
        eventually([&] { return read_thread != 0 && poll_thread != 0; }, 5s);
        if (!thread_in_syscall(read_thread, SYS_read) || !thread_in_syscall(dma_thread, SYS_ioctl) ||
            !thread_in_syscall(poll_thread, SYS_ppoll))
          step = 'S';
      }
      (void)!::write(ready[1], &step, 1);
      // The parent kills the daemon now; every call must come back.
      eventually([&] { return dma_done && read_done && poll_done; }, 10s);
      seen.later_ioctl = ioctl_value(file.fd(), IOASID_GET_API_VERSION, 0) < 0 ? errno : 0;
      const int again = ::open(daemon.node().c_str(), O_RDWR | O_CLOEXEC);
      seen.reopen = again < 0 ? errno : 0;
      (void)!::write(results[1], &seen, sizeof seen);
      if (!dma_done || !read_done || !poll_done) ::_exit(2);  // a thread is stuck: no join
      dma.join();
      reader.join();
      poller.join();
      ::_exit(0);
    } catch (...) {
      (void)!::write(ready[1], &step, 1);
      ::_exit(1);
    }
  }
  guard.add(child);
  ::close(ready[1]);
  ::close(results[1]);
  pollfd ready_poll{ready[0], POLLIN, 0};
  char step = 0;
  ASSERT_EQ(::poll(&ready_poll, 1, 20000), 1) << "the client never got ready";
  ASSERT_EQ(::read(ready[0], &step, 1), 1);
  ASSERT_EQ(step, 'R') << "F: set-up failed, P: no page request came, S: a call was not blocked in its syscall";

  ASSERT_TRUE(daemon.kill_now()) << "the daemon did not die";
  const auto killed = std::chrono::steady_clock::now();
  pollfd results_poll{results[0], POLLIN, 0};
  ASSERT_EQ(::poll(&results_poll, 1, 15000), 1) << "the client's calls did not come back";
  DeadDaemonOutcome seen;
  ASSERT_EQ(::read(results[0], &seen, sizeof seen), ssize_t(sizeof seen));
  const auto elapsed = std::chrono::steady_clock::now() - killed;
  int status = 0;
  ASSERT_TRUE(wait_pid_for(child, 10s, &status)) << "the client did not exit";
  guard.reaped(child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << describe_status(status);

  // The kernel ends requests the daemon had taken (or had not yet read) with
  // ECONNABORTED when it aborts the connection; later ones find it gone: ENOTCONN.
  EXPECT_EQ(Err(seen.waiting_dma), Err(ECONNABORTED)) << "the waiting DMA";
  EXPECT_EQ(Err(seen.blocked_read), Err(ECONNABORTED)) << "the parked read";
  EXPECT_EQ(seen.waiting_poll, POLLERR) << "the waiting poll: POLLERR, the connection is gone";
  EXPECT_EQ(Err(seen.later_ioctl), Err(ENOTCONN)) << "an ioctl afterwards";
  EXPECT_EQ(Err(seen.reopen), Err(ENOTCONN)) << "opening the node again";
  EXPECT_LT(elapsed, 5s) << "the blocked calls took this long to return";
  ::close(ready[0]);
  ::close(results[0]);
}

// ================================================================ netlink

// ioasidctl, whose `monitor` command is the subscriber under test.
std::string monitor_binary() {
  if (const char* path = std::getenv("IOASIDCTL"); path && *path) return path;
#ifdef IOASIDCTL_PATH
  return IOASIDCTL_PATH;
#else
  return {};
#endif
}

constexpr uint16_t kNetlinkEventType = 0x20;  // docs/EVENTS.md: IOASID_NL_EVENT

// Sends `payload` (plus a NUL) as one message of `type` (an event's by default) to
// NETLINK_USERSOCK group `group`, writing `claimed_port` into nlmsg_pid as a forger
// would. Usable in a child.
std::string send_to_group(unsigned group, uint32_t claimed_port, const std::string& payload,
                          uint16_t type = kNetlinkEventType) {
  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_USERSOCK);
  if (fd < 0) return "socket: " + errno_name(errno);
  std::vector<char> message(NLMSG_SPACE(payload.size() + 1), 0);
  auto* header = reinterpret_cast<nlmsghdr*>(message.data());
  header->nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(payload.size() + 1));
  header->nlmsg_type = type;
  header->nlmsg_seq = 1;
  header->nlmsg_pid = claimed_port;
  std::memcpy(NLMSG_DATA(header), payload.data(), payload.size());
  sockaddr_nl to{};
  to.nl_family = AF_NETLINK;
  to.nl_groups = 1u << (group - 1);
  const ssize_t sent = ::sendto(fd, message.data(), header->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  // ECONNREFUSED: the multicast went out; only the unicast copy to the (absent) kernel
  // USERSOCK socket failed (docs/EVENTS.md).
  const std::string result = sent >= 0 || errno == ECONNREFUSED ? "sent" : "sendto: " + errno_name(errno);
  ::close(fd);
  return result;
}

// ioasidctl --json --socket SOCKET monitor ARGS, with its output in files, stopped when
// it goes out of scope.
class Monitor {
 public:
  Monitor(const std::string& dir, const std::string& socket, std::vector<std::string> args, bool as_json = true)
      : out_(dir + "/monitor.out"), err_(dir + "/monitor.err") {
    args.insert(args.begin(), {monitor_binary(), "--socket", socket, "monitor"});
    if (as_json) args.insert(args.begin() + 1, "--json");
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::fflush(stdout);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int out = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      const int err = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (out >= 0) ::dup2(out, 1);
      if (err >= 0) ::dup2(err, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~Monitor() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      wait_pid_for(pid_, 5s, nullptr);
    }
  }
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  std::string out() const { return file_text(out_); }
  std::string err() const { return file_text(err_); }
  // True while the process has not exited (reaping it if it has).
  bool running() {
    if (!exited_ && pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == pid_) exited_ = true;
    return pid_ > 0 && !exited_;
  }

 private:
  std::string out_, err_;
  pid_t pid_ = -1;
  bool exited_ = false;
};

#define SKIP_WITHOUT_MONITOR()                                                         \
  if (monitor_binary().empty() || ::access(monitor_binary().c_str(), X_OK) != 0)       \
  GTEST_SKIP() << "needs the ioasidctl binary (IOASIDCTL)"

// Groups no other daemon of this suite uses (the harness's runs --no-netlink); another
// publisher on them would only be more messages the monitor must ignore.
constexpr unsigned kForgeryGroup = 27;
constexpr unsigned kRootOnlyGroup = 28;

// The first line of `text` containing `needle`, or "".
std::string line_containing(const std::string& text, const std::string& needle) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    if (contains(line, needle)) return line;
  return {};
}

// Sends `payload` to `group` from a fresh child process (uid 65534 when
// `unprivileged`) until ioasidctl monitor's stderr names that process, up to 5 times —
// multicast is lossy, and other traffic on the group may fill the monitor's receive
// buffer — and returns that line, or what went wrong.
std::string forge_until_reported(Monitor& monitor, unsigned group, uint32_t claimed_port, const std::string& payload,
                                 bool unprivileged, uint16_t type = kNetlinkEventType) {
  std::string last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    last = report_from_child([&] {
      if (unprivileged && !become_nobody()) return "cannot become nobody: " + errno_name(errno);
      return std::to_string(::getpid()) + " " + send_to_group(group, claimed_port, payload, type);
    });
    const size_t space = last.find(' ');
    if (space == std::string::npos || last.substr(space + 1) != "sent") return last;
    const std::string sender = " pid " + last.substr(0, space) + " uid ";
    std::string line;
    if (eventually([&] { return !(line = line_containing(monitor.err(), sender)).empty(); }, 2s)) return line;
  }
  return "never reported (" + last + ")";
}

// An event that names the daemon's pid and carries `marker`, for forgers to send.
std::string forged_event(pid_t claimed_pid, const std::string& marker, size_t pad = 0) {
  return json{{"event", "context_open"}, {"context", 4242}, {"pid", claimed_pid}, {"seq", 1},
              {"time_ns", 1}, {"forged", marker}, {"pad", std::string(pad, 'x')}}
      .dump();
}

// Anyone may send to a NETLINK_USERSOCK group. ioasidctl monitor, which learned the
// daemon's port and pid from the admin socket, ignores (and reports) forged events —
// from an unprivileged user, from another root process, with the daemon's port written
// into the header, and one too large for its buffer — and still prints the daemon's.
// Opens the node until the monitor prints this process's context_open (lossy
// multicast may need more than one).
::testing::AssertionResult prints_the_daemons_events(Monitor& monitor, const PrivateDaemon& daemon) {
  const std::string ours = "\"pid\":" + std::to_string(::getpid());
  const bool printed = eventually(
      [&] {
        must(client::File::open(daemon.node()));
        return eventually([&] { return contains(monitor.out(), ours); }, 1s);
      },
      10s);
  if (printed) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "the daemon's events were not printed\nstdout:\n"
                                       << monitor.out() << "stderr:\n" << monitor.err();
}

TEST(Security, MonitorIgnoresForgedNetlinkEvents) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  SKIP_WITHOUT_MONITOR();
  PrivateDaemon daemon({.args = {"--netlink-group", std::to_string(kForgeryGroup)}});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  const json status = daemon.admin(R"({"cmd":"status"})");
  ASSERT_FALSE(status.is_null());
  const uint32_t port = status.value("netlink_port", 0u);
  ASSERT_NE(port, 0u) << "the daemon has no netlink socket: " << daemon.log();

  Monitor monitor(daemon.dir(), daemon.admin_socket(), {});
  ASSERT_TRUE(eventually([&] { return contains(monitor.err(), "believing only port"); }, 10s))
      << "ioasidctl monitor did not subscribe: " << monitor.err();

  // Each forgery names the daemon's pid and carries the daemon's port in its header.
  const std::string marker = "FORGED-" + std::to_string(::getpid());
  const std::string forgery = forged_event(daemon.pid(), marker);
  EXPECT_TRUE(contains(forge_until_reported(monitor, kForgeryGroup, port, forgery, true),
                       "uid 65534: port"))
      << "an unprivileged sender:\n" << monitor.err();
  EXPECT_TRUE(contains(forge_until_reported(monitor, kForgeryGroup, port, forgery, false), "uid 0: port"))
      << "another root process:\n" << monitor.err();
  // libnl peeks at a datagram's length and reads it whole: a large forgery is judged
  // like any other (the kernel bounds it by the monitor's receive buffer).
  const std::string oversized = forged_event(daemon.pid(), marker, 100 * 1024);
  EXPECT_TRUE(contains(forge_until_reported(monitor, kForgeryGroup, port, oversized, true), "uid 65534: port"))
      << "a datagram larger than 64 KiB:\n" << monitor.err();
  // One message 3 bytes short of the 64 KiB buffer, its length not a multiple of 4:
  // stepping over its padding once walked the parser past the datagram's end.
  const size_t unpadded = forged_event(daemon.pid(), marker).size();
  const std::string unaligned = forged_event(daemon.pid(), marker, (65536 - 3 - NLMSG_HDRLEN - 1) - unpadded);
  EXPECT_TRUE(contains(forge_until_reported(monitor, kForgeryGroup, port, unaligned, true), "uid 65534: port"))
      << "a datagram of 65533 bytes:\n" << monitor.err();
  // A forged netlink control message (NLMSG_ERROR, whose payload libnl would read as
  // an error code): judged by its sender like any other, and the monitor goes on.
  EXPECT_TRUE(contains(forge_until_reported(monitor, kForgeryGroup, port, forgery, true, NLMSG_ERROR),
                       "uid 65534: port"))
      << "a forged NLMSG_ERROR:\n" << monitor.err();
  EXPECT_TRUE(monitor.running()) << "a forged message ended the monitor: " << monitor.err();

  // The daemon's own events are still printed (a context_open per open; lossy
  // multicast may need another), and no forgery ever was.
  EXPECT_TRUE(prints_the_daemons_events(monitor, daemon));
  EXPECT_FALSE(contains(monitor.out(), marker)) << "a forged event was printed:\n" << monitor.out();
}

// Without the admin socket to ask, ioasidctl monitor believes only messages sent by uid
// 0: the daemon's events are printed, an unprivileged user's forgery is not.
TEST(Security, MonitorWithoutTheAdminSocketBelievesOnlyRoot) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  SKIP_WITHOUT_MONITOR();
  PrivateDaemon daemon({.args = {"--netlink-group", std::to_string(kRootOnlyGroup)}});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  Monitor monitor(daemon.dir(), daemon.dir() + "/no-such.sock", {"--group", std::to_string(kRootOnlyGroup)});
  ASSERT_TRUE(eventually([&] { return contains(monitor.err(), "believing only messages sent by uid 0"); }, 10s))
      << monitor.err();
  const std::string marker = "FORGED-" + std::to_string(::getpid());
  EXPECT_TRUE(contains(forge_until_reported(monitor, kRootOnlyGroup, 0, forged_event(daemon.pid(), marker), true),
                       "uid 65534 is not root"))
      << monitor.err();
  EXPECT_TRUE(prints_the_daemons_events(monitor, daemon));
  EXPECT_FALSE(contains(monitor.out(), marker)) << monitor.out();
}

// ================================================================ limits

// `ioasidctl monitor KIND --context C`, as ip monitor filters: only that kind of that
// context is printed; the readable form is in fixed columns under one header line.
TEST(EventMonitor, FiltersByKindAndContextInAlignedColumns) {
  SKIP_WITHOUT_MONITOR();
  if (admin_socket_path().empty()) GTEST_SKIP() << "needs the admin socket of a harness-owned daemon";
  char pattern[] = "/tmp/ioasid-monitor-test.XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr) << errno_name(errno);
  const std::string json_dir = std::string(pattern) + "/json", text_dir = std::string(pattern) + "/text";
  ASSERT_EQ(::mkdir(json_dir.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(text_dir.c_str(), 0700), 0);
  let_the_event_budget_refill();  // the ioasid_alloc below is bounded per user
  Node ours, other;
  const json contexts = json::parse(admin_request(R"({"cmd":"contexts"})"), nullptr, false);
  ASSERT_TRUE(contexts.is_object() && contexts.contains("result")) << "contexts";
  std::vector<uint32_t> ids;
  for (const json& row : contexts["result"])
    if (row.value("pid", 0) == ::getpid()) ids.push_back(row.value("id", 0u));
  ASSERT_EQ(ids.size(), 2u);
  std::sort(ids.begin(), ids.end());  // ids grow: `ours` was opened first
  const std::string mine = std::to_string(ids[0]), theirs = std::to_string(ids[1]);

  Monitor filtered(json_dir, admin_socket_path(), {"--admin", "pasid", "--context", mine});
  Monitor readable(text_dir, admin_socket_path(), {"--admin", "pasid", "ioas", "--count", "3"}, /*as_json=*/false);
  for (Monitor* monitor : {&filtered, &readable})
    ASSERT_TRUE(eventually([&] { return contains(monitor->err(), "reading the event stream"); }, 10s))
        << monitor->err();
  const Range r = slot(59);
  ASSERT_EQ(pasid_alloc(ours.fd(), r.lo, r.hi).err, kOk);
  ASSERT_EQ(pasid_alloc(other.fd(), r.lo, r.hi).err, kOk);
  alloc_ioas(ours);
  ASSERT_TRUE(eventually([&] { return contains(filtered.out(), "pasid_alloc"); }, 5s)) << filtered.err();
  std::this_thread::sleep_for(300ms);  // anything else would have arrived by now
  const std::string out = filtered.out();
  EXPECT_TRUE(contains(out, "\"context\":" + mine + ",")) << out;
  EXPECT_FALSE(contains(out, "\"context\":" + theirs + ",")) << "another context's event:\n" << out;
  EXPECT_FALSE(contains(out, "ioasid_alloc")) << "another kind's event:\n" << out;

  // --count 3: the header, then our two pasid_allocs and the ioasid_alloc, each column
  // starting where its title does.
  ASSERT_TRUE(eventually([&] { return !readable.running(); }, 5s)) << "--count 3 did not stop it:\n" << readable.out();
  std::istringstream lines(readable.out());
  std::string header;
  ASSERT_TRUE(std::getline(lines, header));
  const size_t event_at = header.find("EVENT"), ctx_at = header.find("CTX"), details_at = header.find("DETAILS");
  ASSERT_TRUE(header.starts_with("TIME") && event_at != std::string::npos && ctx_at != std::string::npos &&
              details_at != std::string::npos)
      << header;
  int rows = 0;
  for (std::string line; std::getline(lines, line); ++rows) {
    EXPECT_TRUE(line.compare(event_at, 6, "pasid_") == 0 || line.compare(event_at, 7, "ioasid_") == 0)
        << "EVENT column out of place:\n" << header << "\n" << line;
    EXPECT_TRUE(line.compare(ctx_at, mine.size(), mine) == 0 || line.compare(ctx_at, theirs.size(), theirs) == 0)
        << "CTX column out of place:\n" << header << "\n" << line;
  }
  EXPECT_EQ(rows, 3) << readable.out();
}

// A file's fault queue is bounded (--fault-queue): a device faulting without end
// costs the daemon a fixed amount per file, and the reader learns of the loss. The LOST
// record takes one of the N slots (N - 1 records, then LOST), and records are dropped
// until LOST itself is read (docs/UAPI.md, read(2)).
TEST(Security, AFilesFaultQueueIsBounded) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  PrivateDaemon daemon({.args = {"--fault-queue", "4"}});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  const auto file = must(client::File::open(daemon.node(), O_NONBLOCK));
  auto ioas = must(client::Ioas::allocate(file));
  auto dma1 = must(client::Device::bind(file, "dma1"));
  must(client::Attachment::attach(dma1, ioas)).release();
  std::byte buffer[8];
  for (int i = 0; i < 20; ++i) {
    const auto outcome = must(dma1.dma_read(0x100000 + uint64_t(i) * k4K, buffer));  // nothing mapped
    ASSERT_EQ(outcome.status, uint32_t(IOASID_DMA_FAULT));
  }
  ioasid_fault records[32];
  ASSERT_EQ(must(file.read_faults(std::span(records, 1))), 1u);
  EXPECT_EQ(records[0].addr, 0x100000u);
  // Reading a survivor makes no room while LOST is unread: this fault is dropped too.
  ASSERT_EQ(must(dma1.dma_read(0x200000, buffer)).status, uint32_t(IOASID_DMA_FAULT));
  ASSERT_EQ(must(file.read_faults(records)), 3u) << "two more faults and one LOST record: 3 faults + LOST in all";
  EXPECT_EQ(records[1].addr, 0x100000u + 2 * k4K);
  EXPECT_EQ(records[2].type, uint32_t(IOASID_FAULT_LOST));
  EXPECT_EQ(must(file.read_faults(records)), 0u);
  // LOST read: records are queued again.
  ASSERT_EQ(must(dma1.dma_read(0x200000, buffer)).status, uint32_t(IOASID_DMA_FAULT));
  ASSERT_EQ(must(file.read_faults(records)), 1u);
  EXPECT_EQ(records[0].addr, 0x200000u);
}

// A user other than root holds at most --max-files-per-user files of the node: each
// one carves a PASID quota out of the system's.
TEST(Security, OpensArePerUserLimited) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  PrivateDaemon daemon({.args = {"--max-files-per-user", "2", "--node-mode", "0666"}});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  const std::string node = daemon.node();
  const std::string report = report_from_child([&]() -> std::string {
    if (!become_nobody()) return std::string("cannot become nobody: ") + std::strerror(errno);
    std::string seen;
    const int first = ::open(node.c_str(), O_RDWR | O_CLOEXEC);
    const int second = ::open(node.c_str(), O_RDWR | O_CLOEXEC);
    const int third = ::open(node.c_str(), O_RDWR | O_CLOEXEC);
    seen += first >= 0 && second >= 0 ? "two opened;" : "the first two failed;";
    seen += third < 0 ? " third " + errno_name(errno) + ";" : " third opened;";
    ::close(second);
    // The kernel sends RELEASE after close returns: wait for the daemon to see it.
    int again = -1;
    for (int tries = 0; tries < 300 && again < 0; ++tries) {
      again = ::open(node.c_str(), O_RDWR | O_CLOEXEC);
      if (again < 0) ::usleep(10000);
    }
    seen += again >= 0 ? " reopened after a close" : " no open after a close";
    return seen;
  });
  EXPECT_EQ(report, "two opened; third EMFILE; reopened after a close");
  // Root is not limited.
  std::vector<client::File> files;
  for (int i = 0; i < 4; ++i) files.push_back(must(client::File::open(node)));
  EXPECT_NE(daemon.log().find("--max-files-per-user"), std::string::npos) << "the refusal says why";
}


// VmRSS of a process in KiB, from /proc/PID/status; 0 if it cannot be read.
uint64_t resident_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  return 0;
}

// Page-table pages go back to the system once freed: a client that allocated many
// IOASIDs with a mapping each (several table pages each) and exited leaves the daemon's
// resident memory within twice what it was before (a review saw 6.9 MB grow to 308 MB
// and stay).
TEST(Security, TablePagesReturnAfterRelease) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  PrivateDaemon daemon({});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  const json status = daemon.admin(R"({"cmd":"status"})");
  ASSERT_TRUE(status.is_object() && status.contains("pid")) << status.dump();
  const pid_t pid = status["pid"].get<pid_t>();
  ASSERT_EQ(pid, daemon.pid());
  if (sanitized_daemon(pid)) GTEST_SKIP() << "RSS of a sanitized daemon (quarantine, shadow) says nothing";
  // The baseline after one client came and went: what a used daemon needs (its session
  // threads, first slabs and arenas), not the figure of one that never served.
  {
    const auto file = must(client::File::open(daemon.node()));
    Memfd memory(k4K, true);
    map_memory(must(client::Ioas::allocate(file)), memory.mapped(), {.iova = 0x100000});
  }
  std::this_thread::sleep_for(500ms);
  const uint64_t before = resident_kib(pid);
  ASSERT_GT(before, 0u);

  // The child allocates IOASIDs, each with a 4 KiB mapping (a 4-level table: 4 pages),
  // for at most 8 s or until a limit answers, reports how many and the daemon's RSS,
  // and exits: its file is released.
  constexpr unsigned kWanted = 30000;
  const std::string node = daemon.node();
  const std::string report = report_from_child(
      [&]() -> std::string {
        const int fd = ::open(node.c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0) return "open: " + errno_name(errno);
        Memfd memory(k4K, true);
        const auto deadline = std::chrono::steady_clock::now() + 8s;
        unsigned made = 0;
        std::string stopped = "wanted";
        for (; made < kWanted && std::chrono::steady_clock::now() < deadline; ++made) {
          ioasid_alloc alloc{};
          if (::ioctl(fd, IOASID_ALLOC, &alloc) != 0) {
            stopped = "ALLOC " + errno_name(errno);
            break;
          }
          ioasid_map_dma map{.flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE, .ioasid = alloc.out_ioasid,
                             .user_va = memory.va, .length = k4K, .iova = 0x100000};
          if (::ioctl(fd, IOASID_MAP_DMA, &map) != 0) {
            stopped = "MAP_DMA " + errno_name(errno);
            break;
          }
        }
        return std::to_string(made) + " " + std::to_string(resident_kib(pid)) + " " + stopped;
      },
      30s);
  unsigned made = 0;
  uint64_t peak = 0;
  std::string stopped;
  std::istringstream(report) >> made >> peak >> stopped;
  ASSERT_GE(made, 5000u) << report;
  RecordProperty("ioasids", static_cast<int>(made));
  ASSERT_GT(peak, 2 * before) << "the IOASIDs cost too little to tell: " << report;

  uint64_t after = resident_kib(pid);
  eventually([&] { return (after = resident_kib(pid)) <= 2 * before; }, 10s);
  EXPECT_LE(after, 2 * before) << "VmRSS " << before << " KiB before, " << peak << " KiB with " << made
                               << " IOASIDs (" << report << "), " << after << " KiB after the release";
  RecordProperty("rss_kib", std::to_string(before) + " / " + std::to_string(peak) + " / " + std::to_string(after));
  EXPECT_TRUE(node_is_live(node)) << "the daemon still answers";
}

// ================================================================ device specs and admin arguments

// A field of /proc/PID/status in KiB (VmRSS, VmSize); nullopt if it cannot be read.
std::optional<uint64_t> status_kib(pid_t pid, const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1));
  return std::nullopt;
}

// A device-add or --device with wqs=4294967295 once made the daemon allocate without
// bound (24 GB). Every number and string of a spec is bounded, and so is the number of
// devices; the refusal is an EINVAL (ENOSPC for the count) reply naming the bound, the
// daemon logs it, stays up and does not grow. Out-of-range arguments of the other
// commands are refused the same way. The daemon's address space is capped first, so
// that a daemon without these bounds fails here instead of exhausting the host.
TEST(Security, AHugeDeviceSpecIsRefused) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  PrivateDaemon daemon({});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  const json status = daemon.admin(R"({"cmd":"status"})");
  ASSERT_TRUE(status.is_object());
  const pid_t pid = status.value("pid", pid_t(0));
  ASSERT_EQ(pid, daemon.pid()) << "the status reply names the daemon";
  const auto size_kib = status_kib(pid, "VmSize");
  ASSERT_TRUE(size_kib);
  const bool sanitized = sanitized_daemon(pid);
  const rlimit cap{.rlim_cur = (*size_kib << 10) + (1ull << 30), .rlim_max = (*size_kib << 10) + (1ull << 30)};
  ASSERT_EQ(::prlimit(pid, RLIMIT_AS, &cap, nullptr), 0) << std::strerror(errno);
  const auto rss_before = status_kib(pid, "VmRSS");
  ASSERT_TRUE(rss_before);

  // Replies to one request each: "ERRNO" and whether the error names `bound`.
  auto refusal = [&](const json& request, const std::string& bound) -> std::string {
    const AdminExchange seen = talk_to_admin(daemon.admin_socket(), request.dump());
    const json reply = json::parse(seen.first_line, nullptr, false);
    if (!reply.is_object()) return "no reply (" + describe(seen) + ")";
    if (reply.value("ok", true)) return "accepted: " + seen.first_line.substr(0, 300);
    const std::string why = reply.value("error", "");
    if (!contains(why, bound)) return "the error does not name " + bound + ": " + why.substr(0, 300);
    return reply.value("errno", "");
  };
  const std::string too_long(100, 'n');
  const struct {
    std::string spec, bound;
  } specs[] = {
      {"dsa,name=dsa9,pci=00:09.0,wqs=4294967295", "1..64"},
      {"dsa,name=dsa9,pci=00:09.0,wqs=18446744073709551617", "1..64"},
      {"dsa,name=dsa9,pci=00:09.0,wqs=65", "1..64"},
      {"dsa,name=dsa9,pci=00:09.0,wqs=0", "1..64"},
      {"dma,name=dma9,pci=00:09.0,pasid=4294967295", "0..20"},
      {"dma,name=" + too_long + ",pci=00:09.0", "1..31"},
      {"dma,name=dma\n9,pci=00:09.0", "A-Z a-z 0-9"},
      {"dma,name=dma9,pci=00:09.0," + std::string(60000, 'x'), "256"},
  };
  for (const auto& [spec, bound] : specs)
    EXPECT_EQ(refusal(json{{"cmd", "device-add"}, {"spec", spec}}, bound), "EINVAL") << spec.substr(0, 80);
  EXPECT_EQ(refusal(json{{"cmd", "set-quota"}, {"context", 1ull << 32}, {"quota", 1}}, "4294967295"), "EINVAL");
  EXPECT_EQ(refusal(json{{"cmd", "set-quota"}, {"context", 1}, {"quota", -1}}, "4294967295"), "EINVAL");
  EXPECT_EQ(refusal(json{{"cmd", "set-quota"}, {"context", 1}, {"quota", 1e300}}, "4294967295"), "EINVAL");
  EXPECT_EQ(refusal(json{{"cmd", "pgtable"}, {"context", 4294967295u}, {"ioasid", 4294967295u}}, ""), "ENOENT");
  EXPECT_EQ(refusal(json{{"cmd", "device-remove"}, {"device", std::string(60000, 'd')}}, ""), "ENOENT");
  // Deep nesting within the line limit: the parser must not recurse once per level.
  const std::string nested = std::string(30000, '[') + std::string(30000, ']');
  const json deep = json::parse(talk_to_admin(daemon.admin_socket(), nested).first_line, nullptr, false);
  EXPECT_TRUE(deep.is_object() && deep.value("errno", "") == "EINVAL") << deep.dump().substr(0, 200);

  ASSERT_TRUE(daemon.admin(R"({"cmd":"status"})").is_object()) << "the daemon answers\n" << daemon.log();
  const auto rss_after = status_kib(pid, "VmRSS");
  ASSERT_TRUE(rss_after) << "the daemon is gone";
  EXPECT_LT(*rss_after, *rss_before + 32 * 1024) << "VmRSS grew from " << *rss_before << " to " << *rss_after
                                                 << " KiB";
  const json listed = daemon.admin(R"({"cmd":"devices"})");
  ASSERT_TRUE(listed.is_array());
  EXPECT_EQ(listed.size(), 3u) << "nothing was added";
  EXPECT_TRUE(contains(daemon.log(), "\"device-add\" refused")) << "each refusal is logged";

  // The number of devices is bounded: 256, the defaults included.
  std::string last;
  size_t added = 0;
  for (unsigned i = 0; i < 300 && last.empty(); ++i) {
    char spec[64];
    std::snprintf(spec, sizeof spec, "dma,name=extra%u,pci=%02x:%02x.0", i, 0x40 + i / 32, i % 32);
    const std::string line = talk_to_admin(daemon.admin_socket(), json{{"cmd", "device-add"}, {"spec", spec}}.dump())
                                 .first_line;
    const json reply = json::parse(line, nullptr, false);
    if (reply.is_object() && reply.value("ok", false))
      ++added;
    else
      last = line;
  }
  EXPECT_EQ(added, 253u) << last;
  EXPECT_TRUE(contains(last, "ENOSPC") && contains(last, "256")) << last;

  // --device is parsed by the same code: the daemon refuses to start, naming the bound.
  const std::string mount = daemon.dir() + "/refused";
  const std::string output = daemon.dir() + "/refused.out";
  std::vector<std::string> args = {ioasidd_binary(), "--frontend",  "fuse",     "--fuse",
                                   mount,            "--admin-socket", "none",   "--no-netlink",
                                   "--device",       "dsa,name=dsa9,pci=00:09.0,wqs=4294967295"};
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::string why;
  const int code = run_in_child(
      [&] {
        const int out = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out < 0 || ::dup2(out, 1) < 0 || ::dup2(out, 2) < 0) return 120;
        const rlimit small{.rlim_cur = 4ull << 30, .rlim_max = 4ull << 30};  // as above
        if (!sanitized) ::setrlimit(RLIMIT_AS, &small);
        ::execv(argv[0], argv.data());
        return 127;
      },
      10s, &why);
  ::umount2(mount.c_str(), MNT_DETACH);  // in case it started after all
  EXPECT_EQ(code, 2) << why << "\n" << file_text(output);
  EXPECT_TRUE(contains(file_text(output), "1..64")) << file_text(output);
}

}  // namespace
}  // namespace conf

// ================================================================ client files and the daemon's own resources

namespace conf {
namespace {

size_t count_entries(const std::string& directory) {
  size_t count = 0;
  std::error_code error;
  for (auto it = std::filesystem::directory_iterator(directory, error); !error && it != std::filesystem::directory_iterator();
       it.increment(error))
    ++count;
  return count;
}
size_t daemon_fds(pid_t pid) { return count_entries("/proc/" + std::to_string(pid) + "/fd"); }
size_t daemon_maps(pid_t pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  size_t lines = 0;
  for (std::string line; std::getline(maps, line);) ++lines;
  return lines;
}

// Raw set-up in a forked child (no libioasid, no gtest): an IOAS with dma1 attached by
// RID; false with errno on failure.
struct ChildIoas {
  uint32_t ioasid = 0, dev = 0;
};
bool child_ioas_with_dma1(int node, ChildIoas& out) {
  ioasid_alloc alloc{};
  if (::ioctl(node, IOASID_ALLOC, &alloc) != 0) return false;
  ioasid_device_bind bind{};
  std::snprintf(bind.name, sizeof bind.name, "dma1");
  if (::ioctl(node, IOASID_DEVICE_BIND, &bind) != 0) return false;
  ioasid_attach attach{.dev_id = bind.out_dev_id, .ioasid = alloc.out_ioasid};
  if (::ioctl(node, IOASID_ATTACH_IOASID, &attach) != 0) return false;
  out = {alloc.out_ioasid, bind.out_dev_id};
  return true;
}

// A tmpfs mounted on a directory for the test's duration.
struct TmpfsMount {
  explicit TmpfsMount(std::string at) : path(std::move(at)) {
    ::mkdir(path.c_str(), 0755);
    mounted = ::mount("tmpfs", path.c_str(), "tmpfs", 0, "mode=0755") == 0;
  }
  ~TmpfsMount() {
    if (mounted) ::umount2(path.c_str(), MNT_DETACH);
  }
  std::string path;
  bool mounted = false;
};

// The review's attack on MAP_FILE: fd N flips between a root file the client may only
// read and a file of its own, open read-write, with the same inode number (the first
// file of two fresh tmpfs mounts). A daemon that reopened /proc/PID/fd/N and took the
// access mode from /proc/PID/fdinfo/N could see the root file at the reopen and the
// client's at the fdinfo read, and map the root file writeable. The daemon takes the
// client's own open file (pidfd_getfd): each try maps the client's file or is EACCES,
// both happen, and the root file is never written.
TEST(Security, MapFileTakesTheClientsOpenFileSoASwappedFdCannotWriteAReadOnlyFile) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  PrivateDaemon daemon({.args = {"--node-mode", "0666"}});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  TmpfsMount root_side(daemon.dir() + "/a"), user_side(daemon.dir() + "/b");
  ASSERT_TRUE(root_side.mounted && user_side.mounted) << std::strerror(errno);
  const std::string victim = root_side.path + "/victim", own = user_side.path + "/own";
  const std::string original(k4K, 'V');
  for (const auto& [path, owner] : {std::pair{victim, uid_t{0}}, std::pair{own, kNobody}}) {
    std::ofstream(path) << original;
    ASSERT_EQ(::chown(path.c_str(), owner, owner == 0 ? 0 : kNogroup), 0);
    ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  }
  struct stat victim_status {}, own_status {};
  ASSERT_EQ(::stat(victim.c_str(), &victim_status), 0);
  ASSERT_EQ(::stat(own.c_str(), &own_status), 0);
  if (victim_status.st_ino != own_status.st_ino) GTEST_SKIP() << "tmpfs did not number both files alike";

  const std::string report = report_from_child(
      [&]() -> std::string {
        if (!become_nobody()) return "cannot become nobody: " + errno_name(errno);
        const int node = ::open(daemon.node().c_str(), O_RDWR | O_CLOEXEC);
        ChildIoas ioas;
        if (node < 0 || !child_ioas_with_dma1(node, ioas)) return "set-up: " + errno_name(errno);
        const int read_only = ::open(victim.c_str(), O_RDONLY | O_CLOEXEC);
        const int read_write = ::open(own.c_str(), O_RDWR | O_CLOEXEC);
        if (read_only < 0 || read_write < 0) return "open: " + errno_name(errno);
        constexpr int kSwapped = 200;
        ::dup2(read_write, kSwapped);
        std::atomic<bool> stop{false};
        std::thread swapper([&] {
          while (!stop.load(std::memory_order_relaxed)) {
            ::dup2(read_only, kSwapped);
            ::dup2(read_write, kSwapped);
          }
        });
        std::vector<char> marker(k4K, 'X');
        int mapped = 0, refused = 0, other = 0;
        const auto deadline = std::chrono::steady_clock::now() + 8s;
        for (int i = 0; i < 3000 && std::chrono::steady_clock::now() < deadline; ++i) {
          ioasid_map_file map{.flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE | IOASID_MAP_FIXED_IOVA,
                              .ioasid = ioas.ioasid, .fd = kSwapped, .length = k4K, .iova = 0x100000};
          if (::ioctl(node, IOASID_MAP_FILE, &map) != 0) {
            (errno == EACCES ? refused : other)++;
            continue;
          }
          ++mapped;
          ioasid_device_dma dma{.dev_id = ioas.dev, .flags = IOASID_DMA_WRITE, .iova = 0x100000, .length = k4K,
                                .buf_uptr = reinterpret_cast<uint64_t>(marker.data())};
          (void)::ioctl(node, IOASID_DEVICE_DMA, &dma);
          ioasid_unmap_dma unmap{.ioasid = ioas.ioasid, .iova = 0, .length = ~0ull};
          (void)::ioctl(node, IOASID_UNMAP_DMA, &unmap);
        }
        stop = true;
        swapper.join();
        return std::to_string(mapped) + " " + std::to_string(refused) + " " + std::to_string(other);
      },
      30s);
  int mapped = -1, refused = -1, other = -1;
  ASSERT_EQ(std::sscanf(report.c_str(), "%d %d %d", &mapped, &refused, &other), 3) << report;
  EXPECT_TRUE(file_text(victim) == original) << "the root file was written through a mapping; " << report;
  EXPECT_GT(mapped, 0) << "the client's own file was never mapped: the race was not run";
  EXPECT_GT(refused, 0) << "the read-only file was never refused: the race was not run";
  EXPECT_EQ(other, 0);
}

// MAP_FILE of the node itself, from more threads than the daemon has session threads,
// and MAP_DMA of a private mapping of the node: each is EINVAL with a log line. A daemon
// that opened its own node for them waited on itself (every thread in an open nobody
// served: all clients hung) and opened a context as uid 0 each time.
TEST(Security, NoClientRequestMakesTheDaemonUseItsOwnNode) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  PrivateDaemon daemon({.args = {"--node-mode", "0666", "--threads", "2"}});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  const std::string report = report_from_child(
      [&]() -> std::string {
        if (!become_nobody()) return "cannot become nobody: " + errno_name(errno);
        const int node = ::open(daemon.node().c_str(), O_RDWR | O_CLOEXEC);
        ioasid_alloc alloc{};
        if (node < 0 || ::ioctl(node, IOASID_ALLOC, &alloc) != 0) return "set-up: " + errno_name(errno);
        std::atomic<int> refused{0}, other{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < 8; ++t)
          threads.emplace_back([&] {
            for (int i = 0; i < 10; ++i) {
              ioasid_map_file map{.flags = IOASID_MAP_READABLE, .ioasid = alloc.out_ioasid, .fd = node, .length = k4K};
              (::ioctl(node, IOASID_MAP_FILE, &map) != 0 && errno == EINVAL ? refused : other)++;
            }
          });
        for (auto& thread : threads) thread.join();
        std::string seen = "MAP_FILE(node) EINVAL " + std::to_string(refused.load()) + " other " + std::to_string(other.load()) + "\n";
        void* view = ::mmap(nullptr, k4K, PROT_READ, MAP_PRIVATE, node, 0);
        if (view != MAP_FAILED) {
          ioasid_map_dma map{.flags = IOASID_MAP_READABLE, .ioasid = alloc.out_ioasid,
                             .user_va = reinterpret_cast<uint64_t>(view), .length = k4K};
          seen += "MAP_DMA(private view of the node) " + outcome(ioctl_errno(node, IOASID_MAP_DMA, &map)) + "\n";
        }
        return seen;
      },
      20s);
  EXPECT_TRUE(contains(report, "MAP_FILE(node) EINVAL 80 other 0\n")) << report;
  EXPECT_FALSE(contains(report, "MAP_DMA(private view of the node) OK")) << report;
  // In a child: an open of a deadlocked daemon's node would never return.
  EXPECT_EQ(run_in_child([&] { return node_is_live(daemon.node()) ? 0 : 1; }, 5s), 0)
      << "the daemon no longer serves its node";
  const json contexts = daemon.admin(R"({"cmd":"contexts"})");
  ASSERT_TRUE(contexts.is_array()) << contexts;
  for (const auto& context : contexts) EXPECT_NE(context.value("pid", 0), daemon.pid()) << context;
  EXPECT_TRUE(contains(daemon.log(), "is a node this daemon serves")) << daemon.log();
}

// A call that sleeps in the daemon for another party (a page response, an ATS
// acknowledgement) holds one of the session threads every client shares, so a user
// may have only --max-waits-per-user of them sleeping at once. Past it a DEVICE_DMA
// raises its page request and returns PAGE_REQ, as with NOWAIT, and the daemon says
// why; the calls already waiting are served as before.
TEST(Security, AUsersCallsSleepingInTheDaemonAreCapped) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  PrivateDaemon daemon({.args = {"--node-mode", "0666", "--max-waits-per-user", "2", "--page-timeout", "10000"}});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  const std::string report = report_from_child([&]() -> std::string {
    if (!become_nobody()) return "cannot become nobody: " + errno_name(errno);
    auto file = client::File::open(daemon.node(), O_NONBLOCK);
    if (!file) return file.error().what;
    auto device = client::Device::bind(*file, "dma0");
    auto pasid = client::Pasid::allocate(*file);
    auto ioas = client::Ioas::allocate(*file);
    if (!device || !pasid || !ioas) return "set-up failed";
    auto route = client::Attachment::attach_pasid(*device, *ioas, pasid->value());
    if (!route) return route.error().what;
    // Nothing is mapped: each DMA raises a page request and, without NOWAIT, waits.
    constexpr int kCalls = 3;
    std::array<std::atomic<int>, kCalls> outcomes;
    for (auto& outcome : outcomes) outcome = -1;
    std::vector<std::thread> calls;
    for (int i = 0; i < kCalls; ++i)
      calls.emplace_back([&, i] {
        uint8_t byte = 0;
        ioasid_device_dma request{.dev_id = device->id(), .flags = IOASID_DMA_PASID, .pasid = pasid->value(),
                                  .iova = 0x100000 + uint64_t(i) * k4K, .length = 1,
                                  .buf_uptr = reinterpret_cast<uint64_t>(&byte)};
        outcomes[i] = ::ioctl(file->fd(), IOASID_DEVICE_DMA, &request) == 0 ? int(request.out_status) : 1000 + errno;
      });
    auto finished = [&] {  // the outcomes of the calls that returned, in name order
      std::vector<std::string> names;
      for (const auto& outcome : outcomes)
        if (outcome >= 0)
          names.push_back(outcome == IOASID_DMA_PAGE_REQ ? "PAGE_REQ"
                          : outcome == IOASID_DMA_FAULT  ? "FAULT"
                          : outcome >= 1000              ? errno_name(outcome - 1000)
                                                         : std::to_string(outcome));
      std::sort(names.begin(), names.end());
      std::string text;
      for (const auto& name : names) text += (text.empty() ? "" : ",") + name;
      return text;
    };
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (finished().empty() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
    std::this_thread::sleep_for(300ms);  // a call that should wait has had time to return, if it did not
    std::string seen = "at first " + finished();
    int requests = 0;
    for (const auto until = std::chrono::steady_clock::now() + 5s;
         requests < kCalls && std::chrono::steady_clock::now() < until;) {
      auto record = file->next_fault(100ms);
      if (!record || record->type != IOASID_FAULT_PAGE_REQ) continue;
      ++requests;
      if (!device->page_response(*record, IOASID_PAGE_RESP_INVALID)) return "PAGE_RESP failed";
    }
    for (auto& call : calls) call.join();
    return seen + "; " + std::to_string(requests) + " page requests; in the end " + finished();
  });
  EXPECT_EQ(report, "at first PAGE_REQ; 3 page requests; in the end FAULT,FAULT,PAGE_REQ")
      << "one call of three must not wait";
  EXPECT_TRUE(contains(daemon.log(), "the limit per user (--max-waits-per-user 2)")) << daemon.log();
}

// The same cap for ioctls waiting for ATS acknowledgements: a model that never
// acknowledges makes each UNMAP of what it holds sleep for --ats-timeout; the user's
// third such call at once does not sleep but fails the device, which ends the others'
// waits too (they wait for that device only).
TEST(Security, AUsersCallsWaitingForAtsAcknowledgementsAreCapped) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  PrivateDaemon daemon({.args = {"--node-mode", "0666", "--max-waits-per-user", "2", "--ats-timeout", "8000"}});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  const std::string report = report_from_child([&]() -> std::string {
    if (!become_nobody()) return "cannot become nobody: " + errno_name(errno);
    auto file = client::File::open(daemon.node(), O_NONBLOCK);
    if (!file) return file.error().what;
    auto device = client::Device::bind(*file, "dma0");
    auto ioas = client::Ioas::allocate(*file);
    if (!device || !ioas) return "set-up failed";
    auto route = client::Attachment::attach(*device, *ioas);
    if (!route) return route.error().what;
    constexpr int kCalls = 3;
    void* memory = ::mmap(nullptr, kCalls * k4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) return std::string("mmap failed");
    std::vector<client::Mapping> mappings;
    for (int i = 0; i < kCalls; ++i) {
      auto mapping = client::Mapping::map_dma(*ioas, {static_cast<std::byte*>(memory) + i * k4K, k4K});
      if (!mapping) return mapping.error().what;
      ioasid_ats_run run{};
      ioasid_ats_translate request{.dev_id = device->id(), .num_runs = 1, .iova = mapping->iova(), .length = k4K,
                                   .runs_uptr = reinterpret_cast<uint64_t>(&run)};
      if (::ioctl(file->fd(), IOASID_ATS_TRANSLATE, &request) != 0 || request.out_status != IOASID_ATS_OK)
        return "ATS_TRANSLATE: " + errno_name(errno);
      mappings.push_back(std::move(*mapping));
    }
    // Nobody acknowledges: each UNMAP would sleep for the timeout.
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> unmaps;
    for (auto& mapping : mappings) unmaps.emplace_back([&] { (void)mapping.unmap(); });
    for (auto& unmap : unmaps) unmap.join();
    const auto took = std::chrono::steady_clock::now() - start;
    ioasid_ats_run run{};
    ioasid_ats_translate after{.dev_id = device->id(), .num_runs = 1, .iova = 0, .length = k4K,
                               .runs_uptr = reinterpret_cast<uint64_t>(&run)};
    const std::string translate_after = outcome(::ioctl(file->fd(), IOASID_ATS_TRANSLATE, &after) == 0);
    return std::string(took < 4s ? "returned early" : "slept for the timeout") + "; then ATS_TRANSLATE " +
           translate_after;
  });
  EXPECT_EQ(report, "returned early; then ATS_TRANSLATE EIO");
  EXPECT_TRUE(contains(daemon.log(), "the limit per user (--max-waits-per-user 2)")) << daemon.log();
}

// Mappings cost the daemon neither an fd nor a memory map each: 512 MAP_FILEs of one
// memfd share one daemon mapping, 512 MAP_DMAs of private pages one /proc/PID/mem. A
// user's mappings and IOASIDs are capped (--max-maps-per-user, --max-ioasids-per-user):
// one more is ENOSPC with a log line, and everything comes back after the exit.
TEST(Security, MappingsShareTheDaemonsFdsAndMapsAndAreCappedPerUser) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  PrivateDaemon daemon(
      {.args = {"--node-mode", "0666", "--max-maps-per-user", "1100", "--max-ioasids-per-user", "8"}});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  ASSERT_TRUE(node_is_live(daemon.node()));
  const size_t fds_before = daemon_fds(daemon.pid()), maps_before = daemon_maps(daemon.pid());
  int ready[2], go[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
  ChildGuard guard;
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(ready[0]);
    ::close(go[1]);
    auto report = [&](const std::string& text) {
      (void)!::write(ready[1], text.data(), text.size());
      ::close(ready[1]);
      char byte;
      (void)!::read(go[0], &byte, 1);
      ::_exit(0);
    };
    if (!become_nobody()) report("cannot become nobody");
    const int node = ::open(daemon.node().c_str(), O_RDWR | O_CLOEXEC);
    ioasid_alloc alloc{};
    if (node < 0 || ::ioctl(node, IOASID_ALLOC, &alloc) != 0) report("set-up: " + errno_name(errno));
    const int memfd = ::memfd_create("shared", MFD_CLOEXEC);
    constexpr size_t kPages = 512;
    auto* private_pages = static_cast<char*>(
        ::mmap(nullptr, kPages * k4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0));
    if (memfd < 0 || ::ftruncate(memfd, 16 * k4K) != 0 || private_pages == MAP_FAILED) report("memory");
    std::string seen;
    int failures = 0;
    for (size_t i = 0; i < kPages; ++i) {
      ioasid_map_file file{.flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE, .ioasid = alloc.out_ioasid,
                           .fd = memfd, .offset = (i % 16) * k4K, .length = k4K};
      ioasid_map_dma dma{.flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE, .ioasid = alloc.out_ioasid,
                         .user_va = reinterpret_cast<uint64_t>(private_pages + i * k4K), .length = k4K};
      failures += ::ioctl(node, IOASID_MAP_FILE, &file) != 0;
      failures += ::ioctl(node, IOASID_MAP_DMA, &dma) != 0;
    }
    seen += "1024 maps, " + std::to_string(failures) + " failed\n";
    size_t more = 0;
    for (; more < 100; ++more) {
      ioasid_map_file file{.flags = IOASID_MAP_READABLE, .ioasid = alloc.out_ioasid, .fd = memfd, .length = k4K};
      if (::ioctl(node, IOASID_MAP_FILE, &file) != 0) {
        seen += "map " + std::to_string(1025 + more) + " " + errno_name(errno) + "\n";
        break;
      }
    }
    for (int i = 2; i <= 9; ++i) {
      ioasid_alloc another{};
      if (::ioctl(node, IOASID_ALLOC, &another) != 0) {
        seen += "IOASID " + std::to_string(i) + " " + errno_name(errno) + "\n";
        break;
      }
    }
    report(seen);
  }
  ASSERT_GT(child, 0);
  guard.add(child);
  ::close(ready[1]);
  ::close(go[0]);
  std::string seen;
  char chunk[512];
  for (ssize_t got; (got = ::read(ready[0], chunk, sizeof chunk)) > 0;) seen.append(chunk, size_t(got));
  const size_t fds_during = daemon_fds(daemon.pid()), maps_during = daemon_maps(daemon.pid());
  ::close(go[1]);
  int status = 0;
  ASSERT_TRUE(wait_pid_for(child, 10s, &status));
  guard.reaped(child);
  ::close(ready[0]);

  EXPECT_EQ(seen, "1024 maps, 0 failed\nmap 1101 ENOSPC\nIOASID 9 ENOSPC\n");
  EXPECT_LE(fds_during, fds_before + 4) << "the daemon holds an fd per mapping";
  // 1024 mappings; a sanitizer's allocator maps a few regions of its own meanwhile.
  EXPECT_LE(maps_during, maps_before + 64) << "the daemon holds a memory map per mapping";
  EXPECT_TRUE(contains(daemon.log(), "the limit per user (--max-maps-per-user 1100)")) << daemon.log();
  EXPECT_TRUE(contains(daemon.log(), "the limit per user (--max-ioasids-per-user 8)")) << daemon.log();
  EXPECT_TRUE(eventually([&] { return daemon_fds(daemon.pid()) <= fds_before; }, kReleaseTimeout))
      << daemon_fds(daemon.pid()) << " fds, " << fds_before << " before";
}

// A session thread that cannot be started (here: the daemon's address space is capped
// below one more thread stack) is logged and served around; it never ends the daemon.
// Two DMAs wait for page responses on both session threads: the engine asks for a third
// reader, which cannot start; the waits time out and the daemon serves on.
TEST(Security, AThreadThatCannotStartDoesNotEndTheDaemon) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  PrivateDaemon daemon({.args = {"--node-mode", "0666", "--threads", "2", "--page-timeout", "1500"}});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  ASSERT_TRUE(node_is_live(daemon.node()));
  auto status_field = [&](const std::string& name) {
    std::ifstream status("/proc/" + std::to_string(daemon.pid()) + "/status");
    for (std::string line; std::getline(status, line);)
      if (line.rfind(name, 0) == 0) return std::stoull(line.substr(name.size()));
    return 0ull;
  };
  // The node answers before the daemon's last start-up threads run: cap it once they do.
  uint64_t threads = 0;
  ASSERT_TRUE(eventually(
      [&] {
        const uint64_t now = status_field("Threads:");
        if (now == threads) return true;
        threads = now;
        std::this_thread::sleep_for(200ms);
        return false;
      },
      5s));
  const uint64_t vm_size_kib = status_field("VmSize:");
  if (sanitized_daemon(daemon.pid())) GTEST_SKIP() << "a sanitizer's daemon reserves too much to cap";
  const rlimit capped{.rlim_cur = (vm_size_kib << 10) + (4u << 20), .rlim_max = RLIM_INFINITY};
  ASSERT_EQ(::prlimit(daemon.pid(), RLIMIT_AS, &capped, nullptr), 0) << std::strerror(errno);

  const auto node = must(client::File::open(daemon.node()));
  auto ioas = must(client::Ioas::allocate(node));
  auto dma0 = must(client::Device::bind(node, "dma0"));
  const uint32_t pasid = must(client::Pasid::allocate(node)).release();
  must(client::Attachment::attach_pasid(dma0, ioas, pasid)).release();
  std::vector<std::thread> waiters;
  std::atomic<int> faulted{0};
  for (int i = 0; i < 2; ++i)
    waiters.emplace_back([&] {
      char buffer[64];
      ioasid_device_dma dma{.dev_id = dma0.id(), .flags = IOASID_DMA_PASID, .pasid = pasid, .iova = 0x400000,
                            .length = sizeof buffer, .buf_uptr = reinterpret_cast<uint64_t>(buffer)};
      if (::ioctl(node.fd(), IOASID_DEVICE_DMA, &dma) == 0 && dma.out_status == IOASID_DMA_FAULT) ++faulted;
    });
  for (auto& waiter : waiters) waiter.join();
  const rlimit unlimited{.rlim_cur = RLIM_INFINITY, .rlim_max = RLIM_INFINITY};
  ::prlimit(daemon.pid(), RLIMIT_AS, &unlimited, nullptr);
  EXPECT_EQ(faulted.load(), 2);
  EXPECT_TRUE(contains(daemon.log(), "cannot start session thread")) << daemon.log();
  EXPECT_TRUE(node_is_live(daemon.node()));
  EXPECT_EQ(::kill(daemon.pid(), 0), 0) << "the daemon is gone";
}

}  // namespace
}  // namespace conf

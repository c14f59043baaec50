// SPDX-License-Identifier: MIT
// The iommufd node (Linux's /dev/iommu uAPI; DIR/iommu beside DIR/ioasid on FUSE,
// /dev/iommu beside /dev/ioasid under CUSE) through real ioctl(2) calls: the framing
// every command shares (a size below the minimum, a non-zero tail, a NULL argument,
// unknown numbers), DESTROY's rows, MAP/UNMAP checked by the mock driver's own checks
// (MD_CHECK_MAP, MD_CHECK_REFS), the pins a closed file gives back, and the mock
// devices the admin lists. Rules and errnos: docs/research/iommufd-selftest-6.12.md,
// sections 3.2 and 5.
//
// Then as an attacker, on private daemons whose address space is capped (so that a
// daemon without a bound fails here instead of exhausting the host): every client
// value that reaches an allocation, a count or a wait is bounded, and the daemon
// serves another client afterwards.
#include "harness.hpp"
#include "notify_listener.h"
#include "iommu_helpers.hpp"

#include <linux/ioasid_iommu_fd.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include "iommufd_test/iommufd_test.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

namespace conf {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

using namespace conf::iommu;

// ================================================================ framing

// The struct's first u32 is its size: below the command's minimum (offsetofend of its
// last mandatory field) EINVAL, whatever the rest says.
TEST(IommuFraming, SizeBelowTheMinimumIsEinval) {
  SKIP_WITHOUT_IOMMU_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok()) << errno_name(file.open_errno());
  const struct {
    const char* name;
    unsigned long cmd;
    uint32_t min_size;
  } rows[] = {
      {"DESTROY", IOMMU_DESTROY, 8},
      {"IOAS_ALLOC", IOMMU_IOAS_ALLOC, 12},
      {"IOAS_ALLOW_IOVAS", IOMMU_IOAS_ALLOW_IOVAS, 24},
      {"IOAS_COPY", IOMMU_IOAS_COPY, 40},
      {"IOAS_IOVA_RANGES", IOMMU_IOAS_IOVA_RANGES, 32},
      {"IOAS_MAP", IOMMU_IOAS_MAP, 40},
      {"IOAS_UNMAP", IOMMU_IOAS_UNMAP, 24},
      {"OPTION", IOMMU_OPTION, 24},
      {"VFIO_IOAS", IOMMU_VFIO_IOAS, 12},
      {"HWPT_ALLOC", IOMMU_HWPT_ALLOC, 24},
      {"GET_HW_INFO", IOMMU_GET_HW_INFO, 32},
      {"HWPT_INVALIDATE", IOMMU_HWPT_INVALIDATE, 32},
      {"TEST_CMD", IOMMU_TEST_CMD, 68},
  };
  for (const auto& row : rows) {
    alignas(8) uint8_t buffer[128] = {};
    for (uint32_t size : {0u, 4u, row.min_size - 1}) {
      std::memcpy(buffer, &size, sizeof size);
      EXPECT_EQ(ioctl_errno(file.fd(), row.cmd, buffer), Err(EINVAL)) << row.name << " size " << size;
    }
    // At the minimum the command runs: whatever it answers, it is not the framing's EINVAL
    // for DESTROY (ENOENT: no object 0) and IOAS_ALLOC (a new IOAS).
  }
  alignas(8) uint8_t destroy_min[8] = {8, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(ioctl_errno(file.fd(), IOMMU_DESTROY, destroy_min), Err(ENOENT));
  iommu_ioas_alloc alloc_min{.size = 12};
  EXPECT_EQ(ioctl_errno(file.fd(), IOMMU_IOAS_ALLOC, &alloc_min), kOk);
  EXPECT_NE(alloc_min.out_ioas_id, 0u);
}

// A struct longer than the daemon knows: its tail must be zero (E2BIG otherwise); a
// zero tail is accepted, and the reply is only the bytes known.
TEST(IommuFraming, NonZeroTailIsE2bigZeroTailIsAccepted) {
  SKIP_WITHOUT_IOMMU_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok()) << errno_name(file.open_errno());

  struct {
    iommu_destroy cmd;
    uint8_t tail[8];
  } destroy_long{};
  destroy_long.cmd = {.size = sizeof destroy_long, .id = 0};
  EXPECT_EQ(ioctl_errno(file.fd(), IOMMU_DESTROY, &destroy_long), Err(ENOENT)) << "a zero tail";
  destroy_long.tail[7] = 1;
  EXPECT_EQ(ioctl_errno(file.fd(), IOMMU_DESTROY, &destroy_long), Err(E2BIG)) << "a non-zero last byte";
  destroy_long.tail[7] = 0;
  destroy_long.tail[0] = 0x80;
  EXPECT_EQ(ioctl_errno(file.fd(), IOMMU_DESTROY, &destroy_long), Err(E2BIG)) << "a non-zero first byte";

  struct {
    iommu_ioas_alloc cmd;
    uint32_t tail[5];
  } alloc_long{};
  alloc_long.cmd.size = sizeof alloc_long;
  alloc_long.tail[4] = 7;
  EXPECT_EQ(ioctl_errno(file.fd(), IOMMU_IOAS_ALLOC, &alloc_long), Err(E2BIG));
  EXPECT_EQ(alloc_long.cmd.out_ioas_id, 0u) << "nothing is written back on E2BIG";
  alloc_long.tail[4] = 0;
  ASSERT_EQ(ioctl_errno(file.fd(), IOMMU_IOAS_ALLOC, &alloc_long), kOk);
  EXPECT_NE(alloc_long.cmd.out_ioas_id, 0u);
  EXPECT_EQ(destroy(file.fd(), alloc_long.cmd.out_ioas_id), kOk) << "the IOAS exists";

  // The reply is min(size, sizeof) bytes: a 32-byte GET_HW_INFO (its minimum) gets
  // nothing beyond its 32 bytes, a full one gets out_capabilities.
  const uint32_t ioas = must_ioas(file.fd());
  const Mock mock = must_mock(file.fd(), ioas);
  uint8_t data[8] = {};
  struct {
    iommu_hw_info info;
    uint8_t canary[8];
  } hw{};
  hw.info = {.size = 32, .dev_id = mock.idev, .data_len = sizeof data, .data_uptr = reinterpret_cast<uint64_t>(data)};
  std::memset(reinterpret_cast<uint8_t*>(&hw) + 32, 0xaa, sizeof hw - 32);
  ASSERT_EQ(ioctl_errno(file.fd(), IOMMU_GET_HW_INFO, &hw), kOk);
  EXPECT_EQ(hw.info.out_data_type, IOMMU_HW_INFO_TYPE_SELFTEST);
  EXPECT_EQ(hw.info.data_len, 8u);
  for (size_t i = 32; i < sizeof hw; ++i)
    EXPECT_EQ(reinterpret_cast<uint8_t*>(&hw)[i], 0xaa) << "byte " << i << " is beyond the caller's size";
  auto full = command<iommu_hw_info>();
  full.dev_id = mock.idev;
  ASSERT_EQ(ioctl_errno(file.fd(), IOMMU_GET_HW_INFO, &full), kOk);
  EXPECT_EQ(full.out_capabilities, uint64_t{IOMMU_HW_CAP_DIRTY_TRACKING});
}

// The argument is a pointer the daemon reads the size through: NULL is EFAULT.
TEST(IommuFraming, NullArgumentIsEfault) {
  SKIP_WITHOUT_IOMMU_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok()) << errno_name(file.open_errno());
  for (unsigned long cmd : {IOMMU_DESTROY, IOMMU_IOAS_ALLOC, IOMMU_IOAS_MAP, IOMMU_TEST_CMD})
    EXPECT_EQ(ioctl_errno(file.fd(), cmd, nullptr), Err(EFAULT)) << std::hex << cmd;
}

// Numbers nobody serves are ENOTTY: the empty slots of the table, another encoding of a
// served number, another type, and below 0x80 (VFIO compat's range) anything VFIO lacks.
TEST(IommuFraming, UnknownNumbersAreEnotty) {
  SKIP_WITHOUT_IOMMU_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok()) << errno_name(file.open_errno());
  alignas(8) uint8_t buffer[128] = {};
  const uint32_t size = sizeof buffer;
  std::memcpy(buffer, &size, sizeof size);
  const struct {
    const char* what;
    unsigned long cmd;
  } rows[] = {
      {"an empty slot (0x8f)", _IO(IOMMUFD_TYPE, 0x8f)},
      {"an empty slot (0x9f)", _IO(IOMMUFD_TYPE, 0x9f)},
      {"past the table (0xa1)", _IO(IOMMUFD_TYPE, 0xa1)},
      {"past the table (0xff)", _IO(IOMMUFD_TYPE, 0xff)},
      {"below 0x80 (0x7f)", _IO(IOMMUFD_TYPE, 0x7f)},
      {"below 0x80 (0x00)", _IO(IOMMUFD_TYPE, 0x00)},
      {"VFIO's GET_API_VERSION of another type", _IO('x', 0x64)},
      {"DESTROY of another type", _IO('x', 0x80)},
      {"DESTROY as _IOWR", _IOWR(IOMMUFD_TYPE, 0x80, iommu_destroy)},
  };
  for (const auto& row : rows) EXPECT_EQ(ioctl_errno(file.fd(), row.cmd, buffer), Err(ENOTTY)) << row.what;
}

// VFIO compat below 0x80: GET_API_VERSION answers VFIO_API_VERSION as the ioctl's
// value, CHECK_EXTENSION takes an integer and answers 1 or 0.
TEST(IommuFraming, VfioApiVersionAndExtensions) {
  SKIP_WITHOUT_IOMMU_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok()) << errno_name(file.open_errno());
  Errno err;
  EXPECT_EQ(ioctl_value(file.fd(), VFIO_GET_API_VERSION, 0, &err), VFIO_API_VERSION);
  EXPECT_EQ(err, kOk);
  EXPECT_EQ(ioctl_value(file.fd(), VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU, &err), 1);
  EXPECT_EQ(err, kOk);
  EXPECT_EQ(ioctl_value(file.fd(), VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU, &err), 1);
  EXPECT_EQ(ioctl_value(file.fd(), VFIO_CHECK_EXTENSION, 12345, &err), 0);
  EXPECT_EQ(err, kOk);
  EXPECT_EQ(ioctl_value(file.fd(), VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU, &err), -1);
  EXPECT_EQ(err, Err(ENODEV)) << "no compat IOAS";
}

// ================================================================ objects

// DESTROY: ENOENT for an id that is not this file's, EBUSY while another object uses
// it (the IOAS and its automatic domain while a mock device is attached, the device
// while its selftest object holds it). The mock device's own DESTROY takes its domain.
TEST(IommuObjects, DestroyRows) {
  SKIP_WITHOUT_IOMMU_NODE();
  IommuFile file, other;
  ASSERT_TRUE(file.ok() && other.ok());
  EXPECT_EQ(destroy(file.fd(), 0), Err(ENOENT));
  EXPECT_EQ(destroy(file.fd(), 1000), Err(ENOENT));

  const uint32_t ioas = must_ioas(file.fd());
  EXPECT_EQ(destroy(other.fd(), ioas), Err(ENOENT)) << "ids are per file";
  const Mock mock = must_mock(file.fd(), ioas);
  EXPECT_NE(mock.hwpt, ioas);
  EXPECT_EQ(destroy(file.fd(), ioas), Err(EBUSY)) << "its domain uses it";
  EXPECT_EQ(destroy(file.fd(), mock.hwpt), Err(EBUSY)) << "the device is attached to it";
  EXPECT_EQ(destroy(file.fd(), mock.idev), Err(EBUSY)) << "the selftest object holds it";
  EXPECT_EQ(destroy(file.fd(), mock.stdev), kOk);
  EXPECT_EQ(destroy(file.fd(), mock.stdev), Err(ENOENT));
  EXPECT_EQ(destroy(file.fd(), mock.idev), Err(ENOENT)) << "gone with its selftest object";
  EXPECT_EQ(destroy(file.fd(), mock.hwpt), Err(ENOENT)) << "the automatic domain went with its last device";
  EXPECT_EQ(destroy(file.fd(), ioas), kOk);
  EXPECT_EQ(destroy(file.fd(), ioas), Err(ENOENT));

  uint32_t again = 0;
  ASSERT_EQ(ioas_alloc(file.fd(), &again), kOk);
  EXPECT_EQ(again, ioas) << "ids are the lowest free";
  EXPECT_EQ(mock_domain(file.fd(), 1000, nullptr), Err(ENOENT)) << "MOCK_DOMAIN on no object";
}

// A second mock device attached to an IOAS shares the automatic domain the first one
// made, whatever ids lie between them (iommufd reuses a compatible domain).
TEST(IommuObjects, AnAutomaticDomainIsReusedWhateverItsId) {
  SKIP_WITHOUT_IOMMU_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok());
  const uint32_t ioas = must_ioas(file.fd());
  std::vector<uint32_t> others;
  for (int i = 0; i < 8; ++i) others.push_back(must_ioas(file.fd()));
  const Mock first = must_mock(file.fd(), ioas);
  for (const uint32_t other : others) ASSERT_EQ(destroy(file.fd(), other), kOk);
  const Mock second = must_mock(file.fd(), ioas);
  EXPECT_EQ(second.hwpt, first.hwpt) << "one automatic domain per IOAS";
  EXPECT_GT(first.hwpt, second.stdev) << "the domain's id is above the ids freed meanwhile";
  EXPECT_EQ(destroy(file.fd(), first.stdev), kOk);
  EXPECT_EQ(destroy(file.fd(), first.hwpt), Err(EBUSY)) << "the second device still uses it";
  EXPECT_EQ(destroy(file.fd(), second.stdev), kOk);
  EXPECT_EQ(destroy(file.fd(), first.hwpt), Err(ENOENT)) << "gone with its last device";
}

// MAP/UNMAP seen by the mock driver: before MAP nothing is pinned; after it the mock
// domain maps the IOVAs to the very pages the buffer has (MD_CHECK_MAP) and each is
// pinned once (MD_CHECK_REFS 1); after UNMAP neither. The checks can fail: a wrong
// count is EIO, another address EINVAL.
TEST(IommuObjects, MapUnmapRoundTripWithAMockDomain) {
  SKIP_WITHOUT_IOMMU_NODE();
  IommuFile file;
  ASSERT_TRUE(file.ok());
  Buffer buffer;
  ASSERT_NE(buffer.data, nullptr);
  const uint32_t ioas = must_ioas(file.fd());
  const Mock mock = must_mock(file.fd(), ioas);
  EXPECT_EQ(check_refs(file.fd(), buffer.data, buffer.size, 0), kOk);

  uint64_t iova = 0;
  ASSERT_EQ(ioas_map(file.fd(), ioas, buffer.data, buffer.size, &iova), kOk);
  EXPECT_GE(iova, uint64_t{MOCK_APERTURE_START});
  EXPECT_LE(iova + buffer.size - 1, uint64_t{MOCK_APERTURE_LAST});
  EXPECT_EQ(check_map(file.fd(), mock.hwpt, iova, buffer.size, buffer.data), kOk);
  EXPECT_EQ(check_map(file.fd(), mock.hwpt, iova + 2048, 2048, buffer.data + 2048), kOk) << "a 2 KiB IO page";
  EXPECT_EQ(check_refs(file.fd(), buffer.data, buffer.size, 1), kOk);
  EXPECT_EQ(check_refs(file.fd(), buffer.data, buffer.size, 0), Err(EIO)) << "the check can fail";
  EXPECT_EQ(check_refs(file.fd(), buffer.data, buffer.size, 2), Err(EIO));
  EXPECT_EQ(check_map(file.fd(), mock.hwpt, iova, k4K, buffer.data + k4K), Err(EINVAL)) << "another page";
  EXPECT_EQ(check_map(file.fd(), mock.hwpt, iova + buffer.size, k4K, buffer.data), Err(EINVAL)) << "past the area";
  EXPECT_EQ(check_map(file.fd(), ioas, iova, k4K, buffer.data), Err(ENOENT)) << "an IOAS is no HWPT";

  uint64_t unmapped = 0;
  ASSERT_EQ(ioas_unmap(file.fd(), ioas, iova, buffer.size, &unmapped), kOk);
  EXPECT_EQ(unmapped, buffer.size);
  EXPECT_EQ(check_refs(file.fd(), buffer.data, buffer.size, 0), kOk);
  EXPECT_EQ(check_map(file.fd(), mock.hwpt, iova, k4K, buffer.data), Err(EINVAL)) << "no longer mapped";
  EXPECT_EQ(ioas_unmap(file.fd(), ioas, iova, buffer.size), Err(ENOENT)) << "nothing there";

  // Without a domain MAP only records; the domain that comes pins, and takes its pins
  // along when its device goes.
  const uint32_t bare = must_ioas(file.fd());
  uint64_t bare_iova = MOCK_APERTURE_START;  // inside the aperture the domain will reserve around
  ASSERT_EQ(ioas_map(file.fd(), bare, buffer.data, buffer.size, &bare_iova, kMapRW | IOMMU_IOAS_MAP_FIXED_IOVA), kOk);
  EXPECT_EQ(check_refs(file.fd(), buffer.data, buffer.size, 0), kOk) << "no domain: not pinned";
  const Mock late = must_mock(file.fd(), bare);
  EXPECT_EQ(check_refs(file.fd(), buffer.data, buffer.size, 1), kOk);
  EXPECT_EQ(check_map(file.fd(), late.hwpt, bare_iova, buffer.size, buffer.data), kOk);
  ASSERT_EQ(destroy(file.fd(), late.stdev), kOk);
  EXPECT_EQ(check_refs(file.fd(), buffer.data, buffer.size, 0), kOk);
  expect_daemon_alive();
}

// Closing the file destroys its objects and gives the pins back: a new file sees the
// pages unpinned (FUSE sends the release after close(2) returns: waited for).
TEST(IommuObjects, CloseGivesThePinsBack) {
  SKIP_WITHOUT_IOMMU_NODE();
  Buffer buffer;
  ASSERT_NE(buffer.data, nullptr);
  {
    IommuFile file;
    ASSERT_TRUE(file.ok());
    const uint32_t ioas = must_ioas(file.fd());
    must_mock(file.fd(), ioas);
    uint64_t iova = 0;
    ASSERT_EQ(ioas_map(file.fd(), ioas, buffer.data, buffer.size, &iova), kOk);
    ASSERT_EQ(check_refs(file.fd(), buffer.data, buffer.size, 1), kOk);
  }
  IommuFile next;
  ASSERT_TRUE(next.ok());
  Errno last;
  EXPECT_TRUE(eventually([&] { return (last = check_refs(next.fd(), buffer.data, buffer.size, 0)) == kOk; },
                         kReleaseTimeout))
      << "MD_CHECK_REFS 0 from a new file: " << last;
}

// Mock devices are engine devices: the admin lists each while it exists (routed by its
// RID to its domain), and not after its DESTROY or its file's close.
TEST(IommuObjects, MockDevicesAreListedWhileTheyExist) {
  SKIP_WITHOUT_IOMMU_NODE();
  if (admin_socket_path().empty()) GTEST_SKIP() << "needs the admin socket of the harness's daemon";
  auto mock_names = [] {
    std::set<std::string> names;
    const json reply = json::parse(admin_request(R"({"cmd":"devices"})"), nullptr, false);
    if (!reply.is_object() || !reply.value("ok", false) || !reply["result"].is_array()) {
      ADD_FAILURE() << "the devices request failed: " << reply.dump();
      return names;
    }
    for (const json& device : reply["result"])
      if (device.value("name", "").rfind("mock", 0) == 0) names.insert(device.value("name", ""));
    return names;
  };
  auto device_row = [](const std::string& name) {
    const json reply = json::parse(admin_request(R"({"cmd":"devices"})"), nullptr, false);
    if (reply.is_object() && reply["result"].is_array())
      for (const json& device : reply["result"])
        if (device.value("name", "") == name) return device;
    return json();
  };
  // Mock devices of files earlier tests closed may still be on their way out.
  std::set<std::string> before = mock_names();
  eventually([&] { return (before = mock_names()).empty(); }, kReleaseTimeout);

  IommuFile file;
  ASSERT_TRUE(file.ok());
  const uint32_t ioas = must_ioas(file.fd());
  const Mock mock = must_mock(file.fd(), ioas);
  std::set<std::string> added;
  for (const std::string& name : mock_names())
    if (!before.count(name)) added.insert(name);
  ASSERT_EQ(added.size(), 1u) << "one new mock device in the admin's list";
  const std::string name = *added.begin();
  const json row = device_row(name);
  EXPECT_EQ(row.value("type", ""), "dma") << row.dump();
  ASSERT_TRUE(row["routes"].is_array()) << row.dump();
  ASSERT_EQ(row["routes"].size(), 1u) << "routed by its RID: " << row.dump();
  EXPECT_EQ(row["routes"][0].value("ioasid", 0u), mock.hwpt) << "to its domain: " << row.dump();
  // Its owner is this file, which iommu-files lists with this process as its opener.
  EXPECT_EQ(row.value("owner_pid", 0), ::getpid()) << row.dump();
  const json files = json::parse(admin_request(R"({"cmd":"iommu-files"})"), nullptr, false);
  ASSERT_TRUE(files.is_object() && files.value("ok", false)) << files.dump();
  bool listed = false;
  for (const json& f : files["result"])
    listed |= f.value("context", 0u) == row.value("owner", 0u) && f.value("pid", 0) == ::getpid();
  EXPECT_TRUE(listed) << "iommu-files lists the owner " << row.value("owner", 0u) << ": " << files.dump();

  ASSERT_EQ(destroy(file.fd(), mock.stdev), kOk);
  EXPECT_FALSE(mock_names().count(name)) << name << " is still listed after its DESTROY";

  const Mock second = must_mock(file.fd(), ioas);
  std::string second_name;
  for (const std::string& listed : mock_names())
    if (!before.count(listed)) second_name = listed;
  ASSERT_FALSE(second_name.empty()) << "the second mock device is listed";
  (void)second;
  file.close();
  EXPECT_TRUE(eventually([&] { return !mock_names().count(second_name); }, kReleaseTimeout))
      << second_name << " is still listed after its file closed";
  expect_daemon_alive();
}

// ================================================================ an attacker

std::optional<uint64_t> status_kib(pid_t pid, const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1));
  return std::nullopt;
}

// In a forked child: uid/gid 65534, no supplementary groups, dumpable again (a uid
// change clears it) so that the daemon may read its memory as any user's.
bool become_nobody() {
  return ::setgroups(0, nullptr) == 0 && ::setresgid(kNogroup, kNogroup, kNogroup) == 0 &&
         ::setresuid(kNobody, kNobody, kNobody) == 0 && ::prctl(PR_SET_DUMPABLE, 1) == 0;
}

// Runs fn in a forked child (syscalls only, no gtest) and returns the text it
// reported; a child that crashed or did not finish reports that instead.
std::string report_from_child(const std::function<std::string()>& fn, std::chrono::milliseconds timeout = 60s) {
  int channel[2];
  if (::pipe2(channel, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
  std::string why;
  const int code = run_in_child(
      [&] {
        ::close(channel[0]);
        const std::string report = fn();
        return ::write(channel[1], report.data(), report.size()) == ssize_t(report.size()) ? 0 : 1;
      },
      timeout, &why);
  ::close(channel[1]);
  std::string report;
  char chunk[4096];
  ::fcntl(channel[0], F_SETFL, O_NONBLOCK);
  for (ssize_t got; (got = ::read(channel[0], chunk, sizeof chunk)) > 0;) report.append(chunk, size_t(got));
  ::close(channel[0]);
  if (code != 0) return "the child failed (" + (why.empty() ? "exit " + std::to_string(code) : why) + ")" + report;
  return report;
}

// ioasidd --frontend fuse in a fresh directory of /tmp every user may traverse:
// DIR/mnt/ioasid and DIR/mnt/iommu are its nodes. Its address space is capped 1 GiB
// above what it has once up. Stopped, unmounted and removed on scope exit.
class AttackedDaemon {
 public:
  explicit AttackedDaemon(std::vector<std::string> extra = {}) {
    char pattern[] = "/tmp/ioasid-iommu.XXXXXX";
    if (!::mkdtemp(pattern)) {
      why_ = std::string("mkdtemp: ") + std::strerror(errno);
      return;
    }
    dir_ = pattern;
    ::chmod(dir_.c_str(), 0755);
    mount_ = dir_ + "/mnt";
    log_ = dir_ + "/ioasidd.log";
    std::vector<std::string> args = {ioasidd_binary(), "--frontend", "fuse",        "--fuse",
                                     mount_,           "--no-netlink", "--admin-socket", dir_ + "/admin.sock",
                                     "--log-file",     log_,         "--log-level",  "debug"};
    args.insert(args.end(), extra.begin(), extra.end());
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
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int output = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (output >= 0) {
        ::dup2(output, 1);
        ::dup2(output, 2);
      }
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
    up_ = node_is_live(mount_ + "/ioasid") && ::access(iommu().c_str(), F_OK) == 0;
    if (!up_) {
      why_ = "the nodes did not answer once ioasidd was ready\n" + file_text(log_);
      return;
    }
    // Its last start-up threads run after the node answers: cap it once they stand.
    uint64_t threads = 0;
    eventually(
        [&] {
          const uint64_t now = status_kib(pid_, "Threads").value_or(0);
          if (now == threads) return true;
          threads = now;
          std::this_thread::sleep_for(100ms);
          return false;
        },
        3s);
    const uint64_t size_kib = status_kib(pid_, "VmSize").value_or(0);
    const rlimit cap{.rlim_cur = (size_kib << 10) + (1ull << 30), .rlim_max = (size_kib << 10) + (1ull << 30)};
    if (::prlimit(pid_, RLIMIT_AS, &cap, nullptr) != 0) why_ = std::string("prlimit: ") + std::strerror(errno);
    rss_kib_ = status_kib(pid_, "VmRSS").value_or(0);
  }
  ~AttackedDaemon() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGTERM);
      if (!wait_pid_for(pid_, 10s, nullptr)) {
        ::kill(pid_, SIGKILL);
        wait_pid_for(pid_, 5s, nullptr);
      }
    }
    if (!mount_.empty()) ::umount2(mount_.c_str(), MNT_DETACH);
    std::error_code ignored;
    if (!dir_.empty() && !std::getenv("IOASID_KEEP_TMP")) std::filesystem::remove_all(dir_, ignored);
  }
  AttackedDaemon(const AttackedDaemon&) = delete;
  AttackedDaemon& operator=(const AttackedDaemon&) = delete;

  bool up() const { return up_ && why_.empty(); }
  const std::string& why() const { return why_; }
  pid_t pid() const { return pid_; }
  std::string iommu() const { return mount_ + "/iommu"; }
  std::string log() const { return file_text(log_); }
  uint64_t rss_at_start_kib() const { return rss_kib_; }

  // Alive, no bigger than `growth_kib` above its size at start, and serving another
  // client: a new file allocates an IOAS, attaches a mock device and maps a page.
  ::testing::AssertionResult survived(uint64_t growth_kib = 64 << 10) {
    int status = 0;
    if (!reaped_ && ::waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      return ::testing::AssertionFailure() << "the daemon died: " << describe_status(status) << "\n"
                                           << file_text(dir_ + "/ioasidd.out") << log().substr(0, 4000);
    }
    if (reaped_) return ::testing::AssertionFailure() << "the daemon died";
    const uint64_t rss = status_kib(pid_, "VmRSS").value_or(0);
    if (rss > rss_kib_ + growth_kib)
      return ::testing::AssertionFailure() << "VmRSS grew from " << rss_kib_ << " to " << rss << " KiB";
    IommuFile other(iommu());
    if (!other.ok()) return ::testing::AssertionFailure() << "another client cannot open: " << errno_name(other.open_errno());
    uint32_t ioas = 0;
    if (const Errno err = ioas_alloc(other.fd(), &ioas); err != kOk)
      return ::testing::AssertionFailure() << "another client's IOAS_ALLOC: " << err;
    if (const Errno err = mock_domain(other.fd(), ioas, nullptr); err != kOk)
      return ::testing::AssertionFailure() << "another client's MOCK_DOMAIN: " << err;
    Buffer page(k4K);
    uint64_t iova = 0;
    if (const Errno err = ioas_map(other.fd(), ioas, page.data, k4K, &iova); err != kOk)
      return ::testing::AssertionFailure() << "another client's IOAS_MAP: " << err;
    return ::testing::AssertionSuccess();
  }

 private:
  std::string dir_, mount_, log_, why_;
  pid_t pid_ = -1;
  bool up_ = false, reaped_ = false;
  uint64_t rss_kib_ = 0;
};

#define SKIP_WITHOUT_PRIVATE_DAEMONS()                                      \
  if (fuse_mount_dir().empty() || ioasidd_binary().empty())                 \
  GTEST_SKIP() << "needs the ioasidd binary and FUSE (the harness's own daemon)"

// How long one refused ioctl may take.
constexpr auto kQuick = 2s;

struct Timed {
  Errno err;
  std::chrono::milliseconds took;
};
template <class Fn>
Timed timed(Fn&& fn) {
  const auto start = Clock::now();
  const Errno err = fn();
  return {err, std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start)};
}

// ALLOW_IOVAS with num_iovas 0xffffffff (64 GiB of ranges) behind a pointer to one
// range: refused at once, without the daemon allocating for the count it was given.
// So are counts it may take, read from memory that ends early (EFAULT).
TEST(IommuAttacker, AllowIovasWithAHugeCountIsRefused) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  AttackedDaemon daemon;
  ASSERT_TRUE(daemon.up()) << daemon.why();
  IommuFile file(daemon.iommu());
  ASSERT_TRUE(file.ok());
  const uint32_t ioas = must_ioas(file.fd());

  PageBeforeAHole memory;
  ASSERT_NE(memory.page, nullptr);
  auto* range = memory.at_end(iommu_iova_range{.start = 0x100000, .last = 0x1fffff});
  for (uint32_t count : {0xffffffffu, 0x80000000u, 0x10000000u, 65536u, 2u}) {
    auto cmd = command<iommu_ioas_allow_iovas>();
    cmd.ioas_id = ioas;
    cmd.num_iovas = count;
    cmd.allowed_iovas = reinterpret_cast<uint64_t>(range);
    const Timed result = timed([&] { return ioctl_errno(file.fd(), IOMMU_IOAS_ALLOW_IOVAS, &cmd); });
    EXPECT_NE(result.err, kOk) << count << " ranges behind one";
    EXPECT_LT(result.took, kQuick) << count << " ranges";
    if (count == 2u) {
      EXPECT_EQ(result.err, Err(EFAULT)) << "the second range is unmapped";
    }
  }
  EXPECT_TRUE(daemon.survived());
  // The one range alone is taken.
  auto one = command<iommu_ioas_allow_iovas>();
  one.ioas_id = ioas;
  one.num_iovas = 1;
  one.allowed_iovas = reinterpret_cast<uint64_t>(range);
  EXPECT_EQ(ioctl_errno(file.fd(), IOMMU_IOAS_ALLOW_IOVAS, &one), kOk);
}

// GET_HW_INFO with data_len 0xffffffff: iommufd copies the data and zero-fills the
// caller's buffer up to data_len (clear_user), so a bad pointer, or a buffer that ends,
// is EFAULT, and at once: the daemon stops at the first page it cannot write.
TEST(IommuAttacker, HwInfoWithAHugeDataLenIsEfault) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  AttackedDaemon daemon;
  ASSERT_TRUE(daemon.up()) << daemon.why();
  IommuFile file(daemon.iommu());
  ASSERT_TRUE(file.ok());
  const Mock mock = must_mock(file.fd(), must_ioas(file.fd()));
  PageBeforeAHole memory;
  ASSERT_NE(memory.page, nullptr);
  for (const uint32_t data_len : {0xffffffffu, 0x10000000u, 2 * uint32_t{k4K}}) {
    for (const uint64_t data : {uint64_t{0x10}, reinterpret_cast<uint64_t>(memory.page),
                                reinterpret_cast<uint64_t>(memory.page + k4K - 4)}) {
      auto cmd = command<iommu_hw_info>();
      cmd.dev_id = mock.idev;
      cmd.data_len = data_len;
      cmd.data_uptr = data;
      const Timed result = timed([&] { return ioctl_errno(file.fd(), IOMMU_GET_HW_INFO, &cmd); });
      EXPECT_EQ(result.err, Err(EFAULT)) << std::hex << "data_len " << data_len << ", data_uptr " << data;
      EXPECT_LT(result.took, kQuick) << std::hex << "data_len " << data_len << ", data_uptr " << data;
    }
  }
  EXPECT_TRUE(daemon.survived());
}

// A size field of 0xffffffff: iommufd checks the tail beyond what it knows is zero, in
// order (copy_struct_from_user, check_zeroed_user): memory that ends is EFAULT, and at
// once, not a 4 GiB read or a hang; a non-zero byte before the end is E2BIG.
TEST(IommuAttacker, AHugeSizeWithAnUnmappedTailIsEfault) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  AttackedDaemon daemon;
  ASSERT_TRUE(daemon.up()) << daemon.why();
  IommuFile file(daemon.iommu());
  ASSERT_TRUE(file.ok());
  PageBeforeAHole memory;
  ASSERT_NE(memory.page, nullptr);
  constexpr uint32_t kHuge = 0xffffffff;

  auto expect_quick = [&](const char* what, unsigned long cmd, void* arg, Errno expected) {
    const Timed result = timed([&] { return ioctl_errno(file.fd(), cmd, arg); });
    EXPECT_EQ(result.err, expected) << what;
    EXPECT_LT(result.took, kQuick) << what;
  };
  // The struct at the page's end: the tail is unmapped from its first byte.
  iommu_destroy destroy_cmd{.size = kHuge, .id = 0};
  expect_quick("DESTROY at the end", IOMMU_DESTROY, memory.at_end(destroy_cmd), Err(EFAULT));
  iommu_ioas_alloc alloc_cmd{.size = kHuge};
  expect_quick("IOAS_ALLOC at the end", IOMMU_IOAS_ALLOC, memory.at_end(alloc_cmd), Err(EFAULT));
  auto test_cmd = test_command(IOMMU_TEST_OP_MD_CHECK_REFS, 0);
  test_cmd.size = kHuge;
  expect_quick("TEST_CMD at the end", IOMMU_TEST_CMD, memory.at_end(test_cmd), Err(EFAULT));
  auto info_cmd = command<iommu_hw_info>();
  info_cmd.size = kHuge;
  expect_quick("GET_HW_INFO at the end", IOMMU_GET_HW_INFO, memory.at_end(info_cmd), Err(EFAULT));

  // At the page's start: a zero tail of almost a page, then nothing.
  std::memset(memory.page, 0, k4K);
  std::memcpy(memory.page, &alloc_cmd, sizeof alloc_cmd);
  expect_quick("IOAS_ALLOC at the start", IOMMU_IOAS_ALLOC, memory.page, Err(EFAULT));
  std::memcpy(memory.page, &test_cmd, sizeof test_cmd);
  expect_quick("TEST_CMD at the start", IOMMU_TEST_CMD, memory.page, Err(EFAULT));
  memory.page[1000] = 1;
  expect_quick("TEST_CMD with a non-zero byte in the tail", IOMMU_TEST_CMD, memory.page, Err(E2BIG));
  memory.page[1000] = 0;
  EXPECT_TRUE(daemon.survived());
}

// The same in order at sizes any daemon reads (8 KiB, the tail's second page unmapped):
// EFAULT for a zero tail, but E2BIG for a non-zero byte met before the hole, even in
// the last bytes before it (check_zeroed_user stops at the first non-zero word).
TEST(IommuAttacker, ATailIsCheckedInOrderUpToItsHole) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  AttackedDaemon daemon;
  ASSERT_TRUE(daemon.up()) << daemon.why();
  IommuFile file(daemon.iommu());
  ASSERT_TRUE(file.ok());
  PageBeforeAHole memory;
  ASSERT_NE(memory.page, nullptr);
  auto test_cmd = test_command(IOMMU_TEST_OP_MD_CHECK_REFS, 0);
  test_cmd.size = 2 * k4K;
  std::memcpy(memory.page, &test_cmd, sizeof test_cmd);
  EXPECT_EQ(ioctl_errno(file.fd(), IOMMU_TEST_CMD, memory.page), Err(EFAULT)) << "a zero tail";
  memory.page[1000] = 1;
  EXPECT_EQ(ioctl_errno(file.fd(), IOMMU_TEST_CMD, memory.page), Err(E2BIG)) << "a non-zero byte at 1000";
  memory.page[1000] = 0;
  memory.page[k4K - 1] = 1;
  EXPECT_EQ(ioctl_errno(file.fd(), IOMMU_TEST_CMD, memory.page), Err(E2BIG)) << "a non-zero last byte before the hole";
  EXPECT_TRUE(daemon.survived());
}

// MD_CHECK_REFS and MD_CHECK_MAP over 64 GiB of the caller's address space (mapped,
// never touched): the daemon must answer in bounded time and memory whatever the
// length (it once reserved an entry per page and died of std::bad_alloc).
TEST(IommuAttacker, MockChecksOverAHugeRangeAreBounded) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  AttackedDaemon daemon;
  ASSERT_TRUE(daemon.up()) << daemon.why();
  IommuFile file(daemon.iommu());
  ASSERT_TRUE(file.ok());
  const Mock mock = must_mock(file.fd(), must_ioas(file.fd()));
  constexpr uint64_t kHugeRange = 64ull << 30;
  void* huge = ::mmap(nullptr, kHugeRange, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(huge, MAP_FAILED) << std::strerror(errno);
  const Timed refs = timed([&] { return check_refs(file.fd(), huge, kHugeRange, 1); });
  const Timed map = timed([&] { return check_map(file.fd(), mock.hwpt, MOCK_APERTURE_START, kHugeRange, huge); });
  ::munmap(huge, kHugeRange);
  // One check covers at most 1 GiB (each page is an entry of daemon memory): EINVAL,
  // at once, for both; within the bound the answers are the kernel's.
  EXPECT_EQ(refs.err, Err(EINVAL)) << "above the bound of one check";
  EXPECT_LT(refs.took, 5s);
  EXPECT_EQ(map.err, Err(EINVAL));
  EXPECT_LT(map.took, 5s);
  void* big = ::mmap(nullptr, 1ull << 30, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(big, MAP_FAILED) << std::strerror(errno);
  const Timed bounded = timed([&] { return check_refs(file.fd(), big, 1ull << 30, 1); });
  ::munmap(big, 1ull << 30);
  EXPECT_EQ(bounded.err, Err(EIO)) << "no page of it is pinned";
  EXPECT_LT(bounded.took, 30s);
  EXPECT_TRUE(daemon.survived(256 << 10));
}

// Objects per user are bounded: an unprivileged user's IOAS_ALLOC fails with ENOSPC
// at --max-ioasids-per-user (every object counts), its opens of the node with EMFILE at --max-files-per-user, and a closed
// file gives its objects back.
// IOMMU_OPTION_RLIMIT_MODE changes how pins are counted and needs CAP_SYS_RESOURCE,
// as the kernel's capable() means it: in the daemon's user namespace. A user who makes
// a user namespace of its own holds every capability there, and still gets EPERM.
TEST(IommuAttacker, ACapabilityInAUserNamespaceOfItsOwnIsNotEnough) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  AttackedDaemon daemon({"--node-mode", "0666"});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  const std::string node = daemon.iommu();
  const std::string report = report_from_child([&] {
    if (!become_nobody()) return "cannot become nobody: " + errno_name(errno);
    if (::unshare(CLONE_NEWUSER) != 0) return std::string("SKIP: no user namespaces: ") + errno_name(errno);
    const int fd = ::open(node.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return "open: " + errno_name(errno);
    iommu_option option{.size = sizeof option, .option_id = IOMMU_OPTION_RLIMIT_MODE, .op = IOMMU_OPTION_OP_SET,
                        .val64 = 1};
    std::ostringstream seen;
    seen << "SET " << ioctl_errno(fd, IOMMU_OPTION, &option) << "\n";
    option.op = IOMMU_OPTION_OP_GET;
    seen << "GET " << ioctl_errno(fd, IOMMU_OPTION, &option) << " " << option.val64 << "\n";
    return seen.str();
  });
  if (report.rfind("SKIP", 0) == 0) GTEST_SKIP() << report;
  EXPECT_EQ(report, "SET EPERM\nGET OK 0\n");
  EXPECT_TRUE(daemon.survived());
}

TEST(IommuAttacker, ObjectsAndFilesPerUserAreBounded) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  AttackedDaemon daemon({"--node-mode", "0666", "--max-ioasids-per-user", "6", "--max-files-per-user", "3"});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  const std::string node = daemon.iommu();
  const std::string report = report_from_child([&] {
    if (!become_nobody()) return "cannot become nobody: " + errno_name(errno);
    std::ostringstream seen;
    const int fd = ::open(node.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return "open: " + errno_name(errno);
    uint32_t first = 0;
    int made = 0;
    Errno err;
    for (; made < 1000; ++made) {
      uint32_t id = 0;
      if ((err = ioas_alloc(fd, &id)) != kOk) break;
      if (!first) first = id;
    }
    seen << "IOAS " << made << " then " << err << "\n";
    // Three back; a mock device on an IOAS costs three: its selftest object, its device
    // and the IOAS's automatic domain. A second device on it reuses the domain.
    for (uint32_t id = first; id < first + 3; ++id)
      if (destroy(fd, id) != kOk) return seen.str() + "DESTROY failed\n";
    seen << "MOCK_DOMAIN " << mock_domain(fd, first + 3, nullptr) << "\n";
    seen << "MOCK_DOMAIN " << mock_domain(fd, first + 3, nullptr) << "\n";
    int opened = 1;
    for (; opened < 100; ++opened)
      if (::open(node.c_str(), O_RDWR | O_CLOEXEC) < 0) break;
    seen << "files " << opened << " then " << errno_name(errno) << "\n";
    // The companion node's files count apart, against the same limit.
    int companions = 0;
    for (; companions < 100; ++companions)
      if (::open((node + "-fd").c_str(), O_RDWR | O_CLOEXEC) < 0) break;
    seen << "companion files " << companions << " then " << errno_name(errno) << "\n";
    // A closed file's objects come back (its release may come after close returns).
    ::close(fd);
    int again = -1;
    for (int attempt = 0; attempt < 300 && again < 0; ++attempt) {
      again = ::open(node.c_str(), O_RDWR | O_CLOEXEC);
      if (again < 0) ::usleep(10000);
    }
    Errno after = Err(EBADF);
    for (int attempt = 0; attempt < 300 && again >= 0; ++attempt) {
      if ((after = ioas_alloc(again, nullptr)) != Err(ENOSPC)) break;
      ::usleep(10000);
    }
    seen << "after close " << after << "\n";
    return seen.str();
  });
  EXPECT_EQ(report,
            "IOAS 6 then ENOSPC\n"
            "MOCK_DOMAIN OK\n"
            "MOCK_DOMAIN ENOSPC\n"
            "files 3 then EMFILE\n"
            "companion files 3 then EMFILE\n"
            "after close OK\n");
  EXPECT_TRUE(contains(daemon.log(), "--max-ioasids-per-user 6")) << daemon.log().substr(0, 4000);
  EXPECT_TRUE(daemon.survived());
}

// A token names an object of the user that made it: another user holding the number
// gets nothing (and does not use it up).
TEST(IommuAttacker, AnotherUsersTokenIsNotTheirs) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  AttackedDaemon daemon({"--node-mode", "0666"});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  IommuFile root(daemon.iommu());
  ASSERT_TRUE(root.ok());
  auto create = test_command(IOMMU_TEST_OP_CREATE_ACCESS, must_ioas(root.fd()));
  auto outer = command<ioasid_iommu_fd_cmd>();
  outer.cmd = IOMMU_TEST_CMD;
  outer.cmd_uptr = reinterpret_cast<uint64_t>(&create);
  ASSERT_EQ(ioctl_errno(root.fd(), IOASID_IOMMU_FD_CMD, &outer), kOk);
  const std::string companion = daemon.iommu() + "-fd";
  auto attach = [&](uint64_t token) {
    const int fd = ::open(companion.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return Err(errno);
    ioasid_iommu_fd_attach cmd{.token = token, .fd_number = -1, .__reserved = 0};
    const Errno err = ioctl_errno(fd, IOASID_IOMMU_FD_ATTACH, &cmd);
    ::close(fd);
    return err;
  };
  const std::string report = report_from_child([&] {
    if (!become_nobody()) return "cannot become nobody: " + errno_name(errno);
    std::ostringstream seen;
    seen << "nobody " << attach(outer.out_token) << "\n";
    return seen.str();
  });
  EXPECT_EQ(report, "nobody ENOENT\n");
  EXPECT_EQ(attach(outer.out_token), kOk) << "the failed try used the token up";
  EXPECT_TRUE(daemon.survived());
}

// Mock devices are places in the engine's device list, which the admin's devices share:
// an unprivileged user's are bounded (ENOSPC) far below that list's size, and root's
// still come.
TEST(IommuAttacker, MockDevicesPerUserAreBounded) {
  SKIP_WITHOUT_PRIVATE_DAEMONS();
  AttackedDaemon daemon({"--node-mode", "0666", "--max-ioasids-per-user", "100000"});
  ASSERT_TRUE(daemon.up()) << daemon.why();
  const std::string node = daemon.iommu();
  const std::string report = report_from_child([&] {
    if (!become_nobody()) return "cannot become nobody: " + errno_name(errno);
    const int fd = ::open(node.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return "open: " + errno_name(errno);
    uint32_t ioas = 0;
    if (ioas_alloc(fd, &ioas) != kOk) return "IOAS_ALLOC: " + errno_name(errno);
    int made = 0;
    Errno err;
    for (; made < 300; ++made)
      if ((err = mock_domain(fd, ioas, nullptr)) != kOk) break;
    return std::to_string(made) + " then " + errno_name(err.value);
  });
  const size_t then = report.find(" then ");
  ASSERT_NE(then, std::string::npos) << report;
  const int made = std::atoi(report.c_str());
  EXPECT_GE(made, 1) << report;
  EXPECT_LE(made, 64) << report;
  EXPECT_EQ(report.substr(then), " then ENOSPC") << report;
  EXPECT_TRUE(daemon.survived());
}

}  // namespace
}  // namespace conf

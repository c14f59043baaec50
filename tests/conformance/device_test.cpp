// SPDX-License-Identifier: MIT
// DEVICE_BIND, DEVICE_UNBIND, DEVICE_GET_INFO against the daemon's default devices:
// dma0 at 0000:00:03.0 with PASID (20 bits), PRI and ATS, and a plain dma1 at 00:04.0.
#include "harness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

namespace conf {
namespace {

ioasid_device_bind bind_request(const char* name) {
  ioasid_device_bind bind{};
  std::snprintf(bind.name, sizeof bind.name, "%s", name);
  return bind;
}

TEST(DeviceBind, ByNameOrPciAddressAndExclusive) {
  Node a, b;
  ASSERT_TRUE(a.ok() && b.ok());
  const uint32_t dev_id = bind_device(a, "dma0");
  EXPECT_NE(dev_id, 0u);
  ioasid_device_bind again = bind_request("dma0");
  EXPECT_EQ(ioctl_errno(b.fd(), IOASID_DEVICE_BIND, &again), Err(EBUSY));
  EXPECT_EQ(ioctl_errno(a.fd(), IOASID_DEVICE_BIND, &again), Err(EBUSY));
  ioasid_device_bind by_address = bind_request("0000:00:03.0");
  EXPECT_EQ(ioctl_errno(b.fd(), IOASID_DEVICE_BIND, &by_address), Err(EBUSY));  // the same device
  const uint32_t dma1 = bind_device(b, "0000:00:04.0");
  EXPECT_NE(dma1, 0u);
}

TEST(DeviceBind, ErrorRows) {
  Node node;
  ASSERT_TRUE(node.ok());
  ioasid_device_bind unknown = bind_request("no-such-device");
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_DEVICE_BIND, &unknown), Err(ENOENT));
  ioasid_device_bind unterminated{};
  std::memset(unterminated.name, 'd', sizeof unterminated.name);
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_DEVICE_BIND, &unterminated), Err(EINVAL));
  ioasid_device_bind flagged = bind_request("dma1");
  flagged.flags = 1;
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_DEVICE_BIND, &flagged), Err(EOPNOTSUPP));
  ioasid_device_unbind unbind{.dev_id = 12345};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_DEVICE_UNBIND, &unbind), Err(ENOENT));
  unbind = {.dev_id = 0};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_DEVICE_UNBIND, &unbind), Err(ENOENT));
  ioasid_device_info info{.dev_id = 777};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_DEVICE_GET_INFO, &info), Err(ENOENT));
}

TEST(DeviceInfo, DescribesTheDefaultDevices) {
  Node node;
  ASSERT_TRUE(node.ok());
  ioasid_device_info dma0{.dev_id = bind_device(node, "dma0")};
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_DEVICE_GET_INFO, &dma0), kOk);
  EXPECT_EQ(dma0.flags, IOASID_DEVICE_PASID | IOASID_DEVICE_PRI | IOASID_DEVICE_ATS);
  EXPECT_EQ(dma0.rid, 0x18u);  // 00:03.0
  EXPECT_EQ(dma0.pasid_bits, 20u);
  EXPECT_EQ(dma0.type, static_cast<uint32_t>(IOASID_DEVICE_TYPE_DMA));
  EXPECT_EQ(dma0.num_wqs, 0u);
  EXPECT_STREQ(dma0.name, "dma0");
  ioasid_device_info dma1{.dev_id = bind_device(node, "dma1")};
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_DEVICE_GET_INFO, &dma1), kOk);
  EXPECT_EQ(dma1.flags, 0u);
  EXPECT_EQ(dma1.rid, 0x20u);
  EXPECT_EQ(dma1.pasid_bits, 0u);
}

TEST(DeviceBind, IdsArePerFileAndNeverReused) {
  Node a, b;
  ASSERT_TRUE(a.ok() && b.ok());
  const uint32_t first = bind_device(a, "dma0");
  ioasid_device_info foreign{.dev_id = first};
  EXPECT_EQ(ioctl_errno(b.fd(), IOASID_DEVICE_GET_INFO, &foreign), Err(ENOENT));
  ioasid_device_unbind foreign_unbind{.dev_id = first};
  EXPECT_EQ(ioctl_errno(b.fd(), IOASID_DEVICE_UNBIND, &foreign_unbind), Err(ENOENT));
  ioasid_device_unbind unbind{.dev_id = first};
  ASSERT_EQ(ioctl_errno(a.fd(), IOASID_DEVICE_UNBIND, &unbind), kOk);
  EXPECT_EQ(ioctl_errno(a.fd(), IOASID_DEVICE_UNBIND, &unbind), Err(ENOENT));
  ioasid_device_info gone{.dev_id = first};
  EXPECT_EQ(ioctl_errno(a.fd(), IOASID_DEVICE_GET_INFO, &gone), Err(ENOENT));
  const uint32_t in_b = bind_device(b, "dma0");  // free again at once
  EXPECT_NE(in_b, 0u);
  const uint32_t second = bind_device(a, "dma1");
  EXPECT_GT(second, first);
}

TEST(DeviceBind, ClosingOrKillingTheOwnerFreesTheDevice) {
  std::string why;
  ChildGuard guard;
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    const int fd = ::open(node_path().c_str(), O_RDWR | O_CLOEXEC);
    ioasid_device_bind bind = bind_request("dma1");
    char ok = 0;
    for (int i = 0; i < 300 && !ok; ++i) {
      ok = fd >= 0 && ::ioctl(fd, IOASID_DEVICE_BIND, &bind) == 0;
      if (!ok) ::usleep(10000);
    }
    (void)!::write(ready[1], &ok, 1);
    ::pause();
    ::_exit(0);
  }
  guard.add(child);
  char ok = 0;
  ASSERT_EQ(::read(ready[0], &ok, 1), 1);
  ASSERT_TRUE(ok) << "the child could not bind dma1";
  Node node;
  ioasid_device_bind bind = bind_request("dma1");
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_DEVICE_BIND, &bind), Err(EBUSY));
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_TRUE(wait_pid_for(child, 5s, &status));
  guard.reaped(child);
  EXPECT_TRUE(eventually([&] { return ioctl_errno(node.fd(), IOASID_DEVICE_BIND, &bind) == kOk; }, kReleaseTimeout))
      << "dma1 stayed bound after its owner was killed";
  ::close(ready[0]);
  ::close(ready[1]);
}

// A device the admin removes while a file holds it answers ENODEV to that file, which
// can still unbind it. Drives the harness-owned daemon's admin socket, and puts the
// device back afterwards.
TEST(DeviceRemoved, ItsOwnerGetsEnodevAndCanUnbind) {
  if (admin_socket_path().empty()) GTEST_SKIP() << "needs the admin socket of a harness-owned daemon";
  Node node;
  const uint32_t dev_id = bind_device(node, "dma1");
  ioasid_alloc alloc{};
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_ALLOC, &alloc), kOk);
  ioasid_attach attached{.dev_id = dev_id, .ioasid = alloc.out_ioasid};
  ASSERT_EQ(ioctl_errno(node.fd(), IOASID_ATTACH_IOASID, &attached), kOk);
  const std::string removed = admin_request(R"({"cmd":"device-remove","device":"dma1"})");
  ASSERT_NE(removed.find("\"ok\":true"), std::string::npos) << removed;
  ioasid_device_info info{.dev_id = dev_id};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_DEVICE_GET_INFO, &info), Err(ENODEV));
  ioasid_attach attach{.dev_id = dev_id, .ioasid = alloc.out_ioasid};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_ATTACH_IOASID, &attach), Err(ENODEV));
  ioasid_attach detach{.dev_id = dev_id};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_DETACH_IOASID, &detach), Err(ENODEV));
  char buffer[64] = {};
  ioasid_device_dma dma{.dev_id = dev_id, .iova = 0x1000, .length = sizeof buffer,
                        .buf_uptr = reinterpret_cast<uint64_t>(buffer)};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_DEVICE_DMA, &dma), Err(ENODEV)) << "a removed device does no DMA";
  ioasid_device_bind again = bind_request("dma1");
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_DEVICE_BIND, &again), Err(ENOENT)) << "gone from the registry";
  ioasid_device_unbind unbind{.dev_id = dev_id};
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_DEVICE_UNBIND, &unbind), kOk);
  const std::string added = admin_request(R"({"cmd":"device-add","spec":"dma,name=dma1,pci=00:04.0"})");
  ASSERT_NE(added.find("\"ok\":true"), std::string::npos) << added;
  EXPECT_EQ(ioctl_errno(node.fd(), IOASID_DEVICE_BIND, &again), kOk) << "back after device-add";
}

// A SIOV device is held by several files at once: removing it tells each of them.
TEST(DeviceRemoved, EveryHolderOfASharedDeviceHearsOfIt) {
  if (admin_socket_path().empty()) GTEST_SKIP() << "needs the admin socket of a harness-owned daemon";
  AdminEvents events;
  ASSERT_TRUE(events.ok());
  Node first, second;
  const uint32_t first_dev = bind_device(first, "dsa0");
  const uint32_t second_dev = bind_device(second, "dsa0");
  const std::string removed = admin_request(R"({"cmd":"device-remove","device":"dsa0"})");
  ASSERT_NE(removed.find("\"ok\":true"), std::string::npos) << removed;
  const std::string first_heard = events.wait_for({"\"device_removed\"", "\"dsa0\""}, 3s);
  const std::string second_heard = events.wait_for({"\"device_removed\"", "\"dsa0\""}, 3s);
  EXPECT_FALSE(first_heard.empty()) << "no device_removed event";
  EXPECT_FALSE(second_heard.empty()) << "only one of the two holders was told";
  EXPECT_NE(first_heard, second_heard) << "the same holder was told twice";
  for (auto [node, dev_id] : {std::pair{&first, first_dev}, std::pair{&second, second_dev}}) {
    ioasid_device_unbind unbind{.dev_id = dev_id};
    EXPECT_EQ(ioctl_errno(node->fd(), IOASID_DEVICE_UNBIND, &unbind), kOk);
  }
  const std::string added =
      admin_request(R"({"cmd":"device-add","spec":"dsa,name=dsa0,pci=00:05.0,pasid=20,pri,ats,wqs=8"})");
  ASSERT_NE(added.find("\"ok\":true"), std::string::npos) << added;
}

}  // namespace
}  // namespace conf

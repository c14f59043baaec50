// SPDX-License-Identifier: MIT
// The dispatcher and Service in-process: generic ioctl rules, the PASID commands,
// context lifecycle, events and the admin view, with no FUSE in between.
#include "dev_ioasid/service.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <vector>

namespace ioasid::dev_ioasid {
namespace {

class ServiceTest : public ::testing::Test {
 protected:
  ServiceTest() : service_(ServiceConfig{.default_pasid_quota = 8}) {}

  std::shared_ptr<Context> open(pid_t pid = 100) {
    auto context = service_.open({.pid = pid, .uid = 0, .gid = 0});
    EXPECT_TRUE(context.ok());
    return *context;
  }

  // Runs an ioctl with the struct's own size; returns 0 or the errno.
  template <typename T>
  int call(Context& context, uint32_t cmd, T& arg) {
    std::vector<std::byte> buf(_IOC_SIZE(cmd));
    std::memcpy(buf.data(), &arg, std::min(sizeof arg, buf.size()));
    auto result = service_.ioctl(context, cmd, 0, buf, memory_);
    std::memcpy(&arg, buf.data(), std::min(sizeof arg, buf.size()));
    return result ? 0 : result.code();
  }

  int call_raw(Context& context, uint32_t cmd, std::vector<std::byte>& buf, uint64_t arg = 0) {
    auto result = service_.ioctl(context, cmd, arg, buf, memory_);
    return result ? 0 : result.code();
  }

  Result<long> call_plain(Context& context, uint32_t cmd, uint64_t arg) {
    std::vector<std::byte> none;
    return service_.ioctl(context, cmd, arg, none, memory_);
  }

  int alloc(Context& context, uint32_t min, uint32_t max, uint32_t* pasid = nullptr,
            std::optional<uint32_t> gpasid = std::nullopt) {
    ioasid_pasid_request request{.flags = IOASID_PASID_ALLOC, .min = min, .max = max};
    if (gpasid) {
      request.flags |= IOASID_PASID_GPASID;
      request.gpasid = *gpasid;
    }
    const int error = call(context, IOASID_PASID_REQUEST, request);
    if (pasid) *pasid = request.pasid;
    return error;
  }

  uint32_t allocated(Context& context) {
    ioasid_info info{};
    EXPECT_EQ(call(context, IOASID_GET_INFO, info), 0);
    return info.pasids_allocated;
  }

  Service service_;
  NoClientMemory memory_;
};

constexpr uint32_t with_size(uint32_t cmd, uint32_t size) {
  return _IOC(_IOC_DIR(cmd), _IOC_TYPE(cmd), _IOC_NR(cmd), size);
}

TEST_F(ServiceTest, UnknownCommandsAndWrongDirectionsAreEnotty) {
  auto context = open();
  std::vector<std::byte> buf(24);
  EXPECT_EQ(call_raw(*context, _IOWR('i', 129, ioasid_pasid_request), buf), ENOTTY);
  EXPECT_EQ(call_raw(*context, _IOWR('j', 103, ioasid_pasid_request), buf), ENOTTY);
  EXPECT_EQ(call_raw(*context, _IOW('i', 103, ioasid_pasid_request), buf), ENOTTY);
  EXPECT_EQ(call_raw(*context, _IOR('i', 103, ioasid_pasid_request), buf), ENOTTY);
  std::vector<std::byte> none;
  EXPECT_EQ(call_raw(*context, _IO('i', 103), none), ENOTTY);
  EXPECT_EQ(call_raw(*context, _IOWR('i', 100, ioasid_pasid_request), buf), ENOTTY);  // _IO command with a struct
}

TEST_F(ServiceTest, SizeBelowV1IsEinvalAndNonZeroTailIsE2big) {
  auto context = open();
  for (uint32_t size = 0; size < sizeof(ioasid_pasid_request); ++size) {
    std::vector<std::byte> buf(size);
    EXPECT_EQ(call_raw(*context, with_size(IOASID_PASID_REQUEST, size), buf), EINVAL) << size;
  }
  std::vector<std::byte> bigger(64);
  ioasid_pasid_request request{.flags = IOASID_PASID_ALLOC, .min = 5, .max = 5};
  std::memcpy(bigger.data(), &request, sizeof request);
  bigger[40] = std::byte{1};
  EXPECT_EQ(call_raw(*context, with_size(IOASID_PASID_REQUEST, 64), bigger), E2BIG);
  EXPECT_EQ(allocated(*context), 0u);
  bigger[40] = std::byte{0};
  ASSERT_EQ(call_raw(*context, with_size(IOASID_PASID_REQUEST, 64), bigger), 0);
  std::memcpy(&request, bigger.data(), sizeof request);
  EXPECT_EQ(request.pasid, 5u);
  for (size_t i = sizeof request; i < bigger.size(); ++i) EXPECT_EQ(bigger[i], std::byte{0}) << i;
}

TEST_F(ServiceTest, VersionExtensionsAndInfoReportWhatIsServed) {
  auto context = open();
  EXPECT_EQ(*call_plain(*context, IOASID_GET_API_VERSION, 0), IOASID_API_VERSION);
  ioasid_info info{};
  ASSERT_EQ(call(*context, IOASID_GET_INFO, info), 0);
  EXPECT_EQ(info.features, (1u << IOASID_FEAT_PASID) | (1u << IOASID_FEAT_GPASID) | (1u << IOASID_FEAT_MAP_FILE) |
                               (1u << IOASID_FEAT_DIRTY_TRACKING) | (1u << IOASID_FEAT_NESTING) |
                               (1u << IOASID_FEAT_BIND_PGTBL) | (1u << IOASID_FEAT_CACHE_INVLD) |
                               (1u << IOASID_FEAT_PAGE_RESP) | (1u << IOASID_FEAT_SIOV) |
                               (1u << IOASID_FEAT_ATS));
  for (uint64_t bit = 0; bit < 40; ++bit)
    EXPECT_EQ(*call_plain(*context, IOASID_CHECK_EXTENSION, bit), bit < 32 && (info.features >> bit) & 1) << bit;
  EXPECT_EQ(info.pasid_bits, 20u);
  EXPECT_EQ(info.pasid_quota, 8u);
  EXPECT_EQ(info.pgtbl_formats, 1u << IOASID_PGTBL_VTD_FL);
  EXPECT_EQ((info.ecap_reg >> 35) & 0x1f, 19u);  // PSS = pasid bits - 1
  EXPECT_EQ((info.cap_reg >> 16) & 0x3f, 47u);   // MGAW = 48 - 1
  info.flags = 1;
  EXPECT_EQ(call(*context, IOASID_GET_INFO, info), EOPNOTSUPP);
}

TEST_F(ServiceTest, PasidRequestRows) {
  auto context = open();
  ioasid_pasid_request request{.flags = IOASID_PASID_ALLOC | IOASID_PASID_FREE, .min = 1, .max = 10};
  EXPECT_EQ(call(*context, IOASID_PASID_REQUEST, request), EINVAL);
  request.flags = 0;
  EXPECT_EQ(call(*context, IOASID_PASID_REQUEST, request), EINVAL);
  request.flags = 1u << 7;
  EXPECT_EQ(call(*context, IOASID_PASID_REQUEST, request), EOPNOTSUPP);
  request = {.flags = IOASID_PASID_ALLOC, .min = 1, .max = 10, .__reserved = 1};
  EXPECT_EQ(call(*context, IOASID_PASID_REQUEST, request), EOPNOTSUPP);
  EXPECT_EQ(alloc(*context, 0, 10), EINVAL);
  EXPECT_EQ(alloc(*context, 11, 10), EINVAL);
  EXPECT_EQ(alloc(*context, 1, 1u << 20), EINVAL);
  request = {.flags = IOASID_PASID_ALLOC, .min = 1, .max = 10, .gpasid = 3};
  EXPECT_EQ(call(*context, IOASID_PASID_REQUEST, request), EINVAL);  // gpasid without GPASID
  EXPECT_EQ(alloc(*context, 1, 10, nullptr, 0u), EINVAL);
  EXPECT_EQ(alloc(*context, 1, 10, nullptr, 1u << 20), EINVAL);
  request = {.flags = IOASID_PASID_FREE | IOASID_PASID_GPASID, .min = 1, .max = 10, .gpasid = 3};
  EXPECT_EQ(call(*context, IOASID_PASID_REQUEST, request), EINVAL);
  EXPECT_EQ(allocated(*context), 0u);

  uint32_t pasid = 0;
  ASSERT_EQ(alloc(*context, 1000, 2000, &pasid, 42u), 0);
  EXPECT_GE(pasid, 1000u);
  EXPECT_EQ(alloc(*context, 1000, 2000, nullptr, 42u), EEXIST);
  EXPECT_EQ(allocated(*context), 1u);
  ioasid_pasid_lookup lookup{.gpasid = 42};
  ASSERT_EQ(call(*context, IOASID_PASID_LOOKUP, lookup), 0);
  EXPECT_EQ(lookup.out_pasid, pasid);
  lookup = {.flags = 1, .gpasid = 42};
  EXPECT_EQ(call(*context, IOASID_PASID_LOOKUP, lookup), EOPNOTSUPP);
  lookup = {.gpasid = 42, .__reserved = 1};
  EXPECT_EQ(call(*context, IOASID_PASID_LOOKUP, lookup), EOPNOTSUPP);
  lookup = {.gpasid = 43};
  EXPECT_EQ(call(*context, IOASID_PASID_LOOKUP, lookup), ENOENT);
}

TEST_F(ServiceTest, QuotaRangeAndFreeCounts) {
  auto a = open(1);
  auto b = open(2);
  for (int i = 0; i < 8; ++i) ASSERT_EQ(alloc(*a, 1, 100), 0);
  EXPECT_EQ(alloc(*a, 1, 100), ENOSPC);  // quota of 8
  uint32_t pasid_b = 0;
  ASSERT_EQ(alloc(*b, 1, 100, &pasid_b), 0);
  EXPECT_EQ(pasid_b, 9u);  // 1..8 are a's
  EXPECT_EQ(alloc(*b, 1, 8), ENOSPC);  // range full of a's PASIDs

  ioasid_pasid_request request{.flags = IOASID_PASID_FREE, .min = 1, .max = 100};
  ASSERT_EQ(call(*b, IOASID_PASID_REQUEST, request), 0);
  EXPECT_EQ(request.pasid, 1u);  // only b's own
  EXPECT_EQ(allocated(*a), 8u);
  request = {.flags = IOASID_PASID_FREE, .min = 3, .max = 5};
  ASSERT_EQ(call(*a, IOASID_PASID_REQUEST, request), 0);
  EXPECT_EQ(request.pasid, 3u);
  EXPECT_EQ(allocated(*a), 5u);
}

TEST_F(ServiceTest, ReleaseFreesEverythingAndPublishesEvents) {
  std::vector<Event> events;
  std::mutex mutex;
  auto subscription = service_.subscribe([&](const Event& event) {
    std::lock_guard lock(mutex);
    events.push_back(event);
  });
  auto context = open(77);
  uint32_t pasid = 0;
  ASSERT_EQ(alloc(*context, 50, 60, &pasid, 9u), 0);
  EXPECT_EQ(service_.status().pasids_allocated, 1u);
  ASSERT_EQ(service_.pasids().size(), 1u);
  EXPECT_EQ(service_.pasids()[0].gpasid, 9u);
  service_.release(*context);
  service_.release(*context);  // idempotent
  EXPECT_EQ(service_.status().pasids_allocated, 0u);
  EXPECT_EQ(service_.status().contexts, 0u);

  std::lock_guard lock(mutex);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].type, EventType::ContextOpen);
  EXPECT_EQ(events[0].quota, 8u);
  EXPECT_EQ(events[1].type, EventType::PasidAlloc);
  EXPECT_EQ(events[1].pasid, pasid);
  EXPECT_EQ(events[1].gpasid, 9u);
  EXPECT_EQ(events[1].pid, 77);
  EXPECT_EQ(events[2].type, EventType::PasidFree);
  EXPECT_EQ(events[3].type, EventType::ContextClose);
  for (size_t i = 1; i < events.size(); ++i) EXPECT_GT(events[i].seq, events[i - 1].seq);
  EXPECT_NE(to_json(events[1]).find("\"event\":\"pasid_alloc\""), std::string::npos);
}

TEST_F(ServiceTest, SetQuotaAdjustsOneContext) {
  auto context = open();
  for (int i = 0; i < 3; ++i) ASSERT_EQ(alloc(*context, 1, 100), 0);
  EXPECT_EQ(service_.set_quota(context->id(), 2).code(), EINVAL);  // below what it holds
  ASSERT_TRUE(service_.set_quota(context->id(), 3).ok());
  EXPECT_EQ(alloc(*context, 1, 100), ENOSPC);
  EXPECT_EQ(service_.set_quota(9999, 3).code(), ENOENT);
}

TEST_F(ServiceTest, FaultReadsNeedWholeRecords) {
  auto context = open();
  std::vector<std::byte> out(63);
  EXPECT_EQ(service_.read_faults(*context, out).code(), EINVAL);
  out.resize(128);
  EXPECT_EQ(service_.read_faults(*context, out).code(), EAGAIN);
  context->faults().push(ioasid_fault{.type = IOASID_FAULT_DMA_UNRECOV, .pasid = 5});
  auto got = service_.read_faults(*context, out);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, 64u);
  ioasid_fault fault;
  std::memcpy(&fault, out.data(), sizeof fault);
  EXPECT_EQ(fault.pasid, 5u);
}

TEST_F(ServiceTest, DeviceBindIsExclusiveAndInfoDescribesTheDevice) {
  auto a = open(1);
  auto b = open(2);
  ioasid_device_bind bind{};
  std::strcpy(bind.name, "dma0");
  ASSERT_EQ(call(*a, IOASID_DEVICE_BIND, bind), 0);
  const uint32_t dev_id = bind.out_dev_id;
  EXPECT_NE(dev_id, 0u);
  EXPECT_EQ(call(*b, IOASID_DEVICE_BIND, bind), EBUSY);
  EXPECT_EQ(call(*a, IOASID_DEVICE_BIND, bind), EBUSY);
  ioasid_device_info foreign{.dev_id = dev_id};
  EXPECT_EQ(call(*b, IOASID_DEVICE_GET_INFO, foreign), ENOENT);  // a's id means nothing in b
  ioasid_device_unbind foreign_unbind{.dev_id = dev_id};
  EXPECT_EQ(call(*b, IOASID_DEVICE_UNBIND, foreign_unbind), ENOENT);
  std::strcpy(bind.name, "0000:00:04.0");  // dma1 by its PCI address
  ASSERT_EQ(call(*b, IOASID_DEVICE_BIND, bind), 0);
  EXPECT_EQ(bind.out_dev_id, 1u);  // ids are per file
  std::strcpy(bind.name, "nosuch");
  EXPECT_EQ(call(*b, IOASID_DEVICE_BIND, bind), ENOENT);
  std::memset(bind.name, 'x', sizeof bind.name);
  EXPECT_EQ(call(*b, IOASID_DEVICE_BIND, bind), EINVAL);

  ioasid_device_info info{.dev_id = dev_id};
  ASSERT_EQ(call(*a, IOASID_DEVICE_GET_INFO, info), 0);
  EXPECT_EQ(info.flags, IOASID_DEVICE_PASID | IOASID_DEVICE_PRI | IOASID_DEVICE_ATS);
  EXPECT_EQ(info.rid, 0x18u);
  EXPECT_EQ(info.pasid_bits, 20u);
  EXPECT_EQ(info.type, static_cast<uint32_t>(IOASID_DEVICE_TYPE_DMA));
  EXPECT_STREQ(info.name, "dma0");

  ioasid_device_unbind unbind{.dev_id = dev_id};
  ASSERT_EQ(call(*a, IOASID_DEVICE_UNBIND, unbind), 0);
  EXPECT_EQ(call(*a, IOASID_DEVICE_UNBIND, unbind), ENOENT);
  std::strcpy(bind.name, "dma0");
  ASSERT_EQ(call(*b, IOASID_DEVICE_BIND, bind), 0);
  EXPECT_EQ(bind.out_dev_id, 2u);  // never reused within a file
  service_.release(*b);
  ASSERT_EQ(call(*a, IOASID_DEVICE_BIND, bind), 0);  // free again after release
  EXPECT_EQ(bind.out_dev_id, 2u);
}

TEST_F(ServiceTest, RemovedDeviceAnswersEnodevAndItsOwnerIsTold) {
  std::vector<Event> events;
  auto subscription = service_.subscribe([&](const Event& event) { events.push_back(event); });
  auto context = open(5);
  ioasid_device_bind bind{};
  std::strcpy(bind.name, "dma1");
  ASSERT_EQ(call(*context, IOASID_DEVICE_BIND, bind), 0);
  ASSERT_TRUE(service_.remove_device("dma1").ok());
  EXPECT_EQ(service_.remove_device("dma1").code(), ENOENT);
  ioasid_device_info info{.dev_id = bind.out_dev_id};
  EXPECT_EQ(call(*context, IOASID_DEVICE_GET_INFO, info), ENODEV);
  ASSERT_EQ(events.back().type, EventType::DeviceRemoved);
  EXPECT_EQ(events.back().context, context->id());
  EXPECT_EQ(events.back().device, "dma1");
  ioasid_device_unbind unbind{.dev_id = bind.out_dev_id};
  EXPECT_EQ(call(*context, IOASID_DEVICE_UNBIND, unbind), 0);
  EXPECT_EQ(call(*context, IOASID_DEVICE_BIND, bind), ENOENT);
  ASSERT_TRUE(service_.add_device(*devices::parse_device_spec("dma,name=dma1,pci=00:04.0")).ok());
  EXPECT_EQ(call(*context, IOASID_DEVICE_BIND, bind), 0);
  EXPECT_EQ(service_.add_device(*devices::parse_device_spec("dma,name=other,pci=00:04.0")).code(), EEXIST);
}

// Random commands, sizes and bytes: every answer is a known errno or success, and
// another context's state is untouched.
TEST_F(ServiceTest, RandomInputNeverDisturbsAnotherContext) {
  auto victim = open(1);
  uint32_t victim_pasid = 0;
  ASSERT_EQ(alloc(*victim, 500, 500, &victim_pasid, 77u), 0);
  auto fuzzed = open(2);
  std::mt19937_64 random(20261121);
  spdlog::set_level(spdlog::level::warn);  // every rejection logs a line at info
  const std::set<int> allowed = {0,      EINVAL, E2BIG, EOPNOTSUPP, ENOSPC, EEXIST,   ENOENT,
                                 EACCES, ENOTTY, EBUSY, ENODEV,     EFAULT, EOVERFLOW, EMSGSIZE, EBADF};
  for (int i = 0; i < 20000; ++i) {
    const uint32_t nr = IOASID_BASE + random() % 30;
    const uint32_t size = random() % 2 ? random() % 129 : random() % 4097;
    const uint32_t dir = random() % 4;
    std::vector<std::byte> buf(size);
    for (auto& byte : buf) byte = std::byte(random() % 4 ? 0 : random());
    const int error = call_raw(*fuzzed, _IOC(dir, 'i', nr, size), buf, random());
    ASSERT_TRUE(allowed.count(error)) << "nr " << nr << " size " << size << " errno " << error;
  }
  spdlog::set_level(spdlog::level::info);
  ioasid_pasid_lookup lookup{.gpasid = 77};
  ASSERT_EQ(call(*victim, IOASID_PASID_LOOKUP, lookup), 0);
  EXPECT_EQ(lookup.out_pasid, victim_pasid);
  EXPECT_EQ(allocated(*victim), 1u);
}

}  // namespace
}  // namespace ioasid::dev_ioasid

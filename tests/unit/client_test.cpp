// SPDX-License-Identifier: MIT
// libioasid without a daemon: results, error messages, the node's path, and the DSA
// descriptors its builders produce, byte for byte.
#include <ioasid/client.hpp>
#include <linux/iommufd.h>
#include "iommufd_test/iommufd_test.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <unistd.h>
#include <thread>

namespace client = ioasid::client;
namespace dsa = ioasid::client::dsa;
using namespace std::chrono_literals;

namespace {

// ---------------------------------------------------------------- Result

client::Result<int> parse_digit(char c) {
  if (c < '0' || c > '9') return client::Error{EINVAL, std::string("not a digit: ") + c};
  return c - '0';
}

client::Result<int> sum_of_digits(char a, char b) {
  auto first = parse_digit(a);
  IOASID_CLIENT_TRY(first);
  auto second = parse_digit(b);
  IOASID_CLIENT_TRY(second);
  return *first + *second;
}

client::Result<void> check_digit(char c) {
  IOASID_CLIENT_TRY(parse_digit(c));
  return {};
}

TEST(ClientResult, CarriesTheValueOrTheErrnoAndWhy) {
  auto ok = parse_digit('7');
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 7);
  EXPECT_EQ(ok.code(), 0);

  auto bad = parse_digit('x');
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.code(), EINVAL);
  EXPECT_EQ(bad.error().what, "not a digit: x");
}

TEST(ClientResult, TryPropagatesTheFirstError) {
  EXPECT_EQ(*sum_of_digits('3', '4'), 7);
  auto failed = sum_of_digits('3', '?');
  EXPECT_EQ(failed.code(), EINVAL);
  EXPECT_EQ(failed.error().what, "not a digit: ?");
  EXPECT_TRUE(check_digit('1'));
  EXPECT_EQ(check_digit('a').code(), EINVAL);
}

TEST(ClientResult, HoldsMoveOnlyValues) {
  client::Result<std::unique_ptr<int>> owned = std::make_unique<int>(5);
  ASSERT_TRUE(owned);
  std::unique_ptr<int> taken = *std::move(owned);
  EXPECT_EQ(*taken, 5);
}

TEST(ClientResultDeathTest, ValueOfAFailureAbortsWithTheReason) {
  auto bad = parse_digit('x');
  EXPECT_DEATH((void)bad.value(), "not a digit: x");
}

// ---------------------------------------------------------------- File

TEST(ClientFile, OpeningAMissingNodeSaysENOENTAndWhatToCheck) {
  auto file = client::File::open("/nonexistent/ioasid");
  ASSERT_FALSE(file);
  EXPECT_EQ(file.code(), ENOENT);
  EXPECT_EQ(file.error().what.rfind("open /nonexistent/ioasid: No such file or directory", 0), 0u)
      << file.error().what;
  EXPECT_NE(file.error().what.find("ioasidd"), std::string::npos) << file.error().what;
}

TEST(ClientFile, DefaultPathIsIOASID_DEVElseDevIoasid) {
  const char* saved = std::getenv("IOASID_DEV");
  const std::string restore = saved ? saved : "";
  ::setenv("IOASID_DEV", "/tmp/elsewhere/ioasid", 1);
  EXPECT_EQ(client::default_path(), "/tmp/elsewhere/ioasid");
  ::setenv("IOASID_DEV", "", 1);
  EXPECT_EQ(client::default_path(), "/dev/ioasid");
  ::unsetenv("IOASID_DEV");
  EXPECT_EQ(client::default_path(), "/dev/ioasid");
  if (saved) ::setenv("IOASID_DEV", restore.c_str(), 1);
}

// /dev/null answers every ioctl ENOTTY: the error names the command.
TEST(ClientFile, IoctlErrorsNameTheCommand) {
  auto file = client::File::open("/dev/null");
  ASSERT_TRUE(file) << file.error().what;
  EXPECT_EQ(file->path(), "/dev/null");

  auto info = file->info();
  EXPECT_EQ(info.code(), ENOTTY);
  EXPECT_EQ(info.error().what, "IOASID_GET_INFO: Inappropriate ioctl for device");

  auto version = file->api_version();
  EXPECT_EQ(version.error().what, "IOASID_GET_API_VERSION: Inappropriate ioctl for device");

  ioasid_attach attach{};
  auto raw = file->call(IOASID_ATTACH_IOASID_PASID, attach);
  EXPECT_EQ(raw.error().what, "IOASID_ATTACH_IOASID_PASID: Inappropriate ioctl for device");

  // Without a range, ALLOC asks GET_INFO for the PASID width first.
  auto pasid = client::Pasid::allocate(*file);
  EXPECT_EQ(pasid.error().what, "IOASID_GET_INFO: Inappropriate ioctl for device");
  auto ranged = client::Pasid::allocate(*file, client::PasidRange{1, 10});
  EXPECT_EQ(ranged.error().what, "IOASID_PASID_REQUEST: Inappropriate ioctl for device");
}

TEST(ClientFile, MovingKeepsTheDescriptor) {
  auto opened = client::File::open("/dev/null");
  ASSERT_TRUE(opened);
  const int fd = opened->fd();
  client::File moved = *std::move(opened);
  EXPECT_EQ(moved.fd(), fd);
  client::File assigned = std::move(moved);
  EXPECT_EQ(assigned.fd(), fd);
  EXPECT_EQ(moved.fd(), -1);  // NOLINT: checking the moved-from state on purpose
}

TEST(ClientFile, ReadingFaultsOfAnEmptyFileReturnsNone) {
  auto file = client::File::open("/dev/null");
  ASSERT_TRUE(file);
  std::array<ioasid_fault, 4> records{};
  auto count = file->read_faults(records);
  ASSERT_TRUE(count) << count.error().what;
  EXPECT_EQ(*count, 0u);
}

TEST(ClientDevice, ANameTooLongIsRefusedBeforeAnyIoctl) {
  auto file = client::File::open("/dev/null");
  ASSERT_TRUE(file);
  auto device = client::Device::bind(*file, std::string(32, 'd'));
  EXPECT_EQ(device.code(), EINVAL);
  EXPECT_NE(device.error().what.find("longer than 31"), std::string::npos) << device.error().what;
}

TEST(ClientCommandName, MatchesTypeAndNumberWhateverTheSize) {
  EXPECT_EQ(client::command_name(IOASID_GET_API_VERSION), "IOASID_GET_API_VERSION");
  EXPECT_EQ(client::command_name(IOASID_DEVICE_SUBMIT), "IOASID_DEVICE_SUBMIT");
  EXPECT_EQ(client::command_name(_IOWR(IOASID_TYPE, IOASID_BASE + 7, uint64_t)), "IOASID_MAP_DMA");
  EXPECT_EQ(client::command_name(_IO(IOASID_TYPE, IOASID_BASE + 29)), "ioctl 0x6981");
  EXPECT_EQ(client::command_name(_IO('j', IOASID_BASE)), "ioctl 0x6a64");
}

// ---------------------------------------------------------------- DSA descriptors

using Bytes = std::array<uint8_t, 64>;

Bytes bytes_of(const ioasid_dsa_desc& desc) {
  Bytes bytes;
  std::memcpy(bytes.data(), &desc, sizeof desc);
  return bytes;
}

// What a descriptor should hold, written independently of the header's struct: the
// fields little-endian at the offsets of Intel DSA's descriptor, everything else zero.
struct Fields {
  uint32_t pasid = 0;
  uint8_t opcode = 0;
  uint32_t flags = 0;
  uint64_t completion = 0;
  uint64_t src = 0;
  uint64_t dst = 0;
  uint32_t xfer_size = 0;
  uint32_t seed = 0;  // CRCGEN's crc_seed; COMPARE's expected_res is its low byte
};

Bytes dsa_bytes(const Fields& fields) {
  Bytes bytes{};
  const auto put = [&bytes](size_t offset, uint64_t value, size_t size) {
    for (size_t i = 0; i < size; ++i) bytes[offset + i] = static_cast<uint8_t>(value >> (8 * i));
  };
  put(0, fields.pasid, 4);
  put(4, (uint32_t(fields.opcode) << 24) | fields.flags, 4);
  put(8, fields.completion, 8);
  put(16, fields.src, 8);
  put(24, fields.dst, 8);
  put(32, fields.xfer_size, 4);
  put(40, fields.seed, 4);
  return bytes;
}

constexpr uint32_t kCravRcr = IOASID_DSA_FLAG_CRAV | IOASID_DSA_FLAG_RCR;

TEST(ClientDsa, DescriptorAndRecordHaveDsaSizes) {
  EXPECT_EQ(sizeof(ioasid_dsa_desc), 64u);
  EXPECT_EQ(sizeof(ioasid_dsa_completion), 32u);
}

TEST(ClientDsa, MemmoveWithACompletionRecord) {
  EXPECT_EQ(bytes_of(dsa::memmove(0x2000, 0x1000, 4096, {.completion_addr = 0x3020, .pasid = 7})),
            dsa_bytes({.pasid = 7, .opcode = 0x03, .flags = kCravRcr, .completion = 0x3020, .src = 0x1000,
                       .dst = 0x2000, .xfer_size = 4096}));
}

TEST(ClientDsa, WithoutACompletionAddressNoRecordIsAskedFor) {
  EXPECT_EQ(bytes_of(dsa::memmove(0x2000, 0x1000, 64)),
            dsa_bytes({.opcode = 0x03, .src = 0x1000, .dst = 0x2000, .xfer_size = 64}));
}

TEST(ClientDsa, FillCarriesThePatternInSrc) {
  const auto desc = dsa::fill(0x5000, 0x0123456789abcdefull, 256,
                              {.completion_addr = 0x40, .record_on_success = false, .flags = IOASID_DSA_FLAG_FENCE});
  EXPECT_EQ(bytes_of(desc), dsa_bytes({.opcode = 0x04, .flags = IOASID_DSA_FLAG_CRAV | IOASID_DSA_FLAG_FENCE,
                                       .completion = 0x40, .src = 0x0123456789abcdefull, .dst = 0x5000,
                                       .xfer_size = 256}));
}

TEST(ClientDsa, CompareWithAnExpectedResult) {
  EXPECT_EQ(bytes_of(dsa::compare(0x1000, 0x9000, 512, {.completion_addr = 0x60, .expected_result = 1})),
            dsa_bytes({.opcode = 0x05, .flags = kCravRcr | IOASID_DSA_FLAG_CR, .completion = 0x60, .src = 0x1000,
                       .dst = 0x9000, .xfer_size = 512, .seed = 1}));
}

TEST(ClientDsa, CompvalCarriesThePatternInDst) {
  EXPECT_EQ(bytes_of(dsa::compval(0x1000, 0xa5a5a5a5a5a5a5a5ull, 128)),
            dsa_bytes({.opcode = 0x06, .src = 0x1000, .dst = 0xa5a5a5a5a5a5a5a5ull, .xfer_size = 128}));
}

TEST(ClientDsa, CrcgenContinuesFromItsSeed) {
  EXPECT_EQ(bytes_of(dsa::crcgen(0x7000, 9, 0xe3069283u, {.completion_addr = 0x80, .pasid = 3})),
            dsa_bytes({.pasid = 3, .opcode = 0x10, .flags = kCravRcr, .completion = 0x80, .src = 0x7000,
                       .xfer_size = 9, .seed = 0xe3069283u}));
}

TEST(ClientDsa, NoopDrainAndBatch) {
  EXPECT_EQ(bytes_of(dsa::noop({.completion_addr = 0xa0})),
            dsa_bytes({.opcode = 0x00, .flags = kCravRcr, .completion = 0xa0}));
  EXPECT_EQ(bytes_of(dsa::drain()), dsa_bytes({.opcode = 0x02}));
  EXPECT_EQ(bytes_of(dsa::batch(0x10000, 4, {.completion_addr = 0xc0, .pasid = 9})),
            dsa_bytes({.pasid = 9, .opcode = 0x01, .flags = kCravRcr, .completion = 0xc0, .src = 0x10000,
                       .xfer_size = 4}));
}

TEST(ClientDsa, StatusCodesAndNames) {
  ioasid_dsa_completion record{};
  record.status = IOASID_DSA_COMP_PAGE_FAULT_NOBOF | IOASID_DSA_COMP_STATUS_WRITE;
  EXPECT_EQ(dsa::status_code(record), IOASID_DSA_COMP_PAGE_FAULT_NOBOF);
  EXPECT_EQ(dsa::status_name(dsa::status_code(record)), "PAGE_FAULT_NOBOF");
  EXPECT_EQ(dsa::status_name(IOASID_DSA_COMP_SUCCESS), "SUCCESS");
  EXPECT_EQ(dsa::status_name(0x7e), "0x7e");
}

TEST(ClientDsa, WaitingForACompletionRecord) {
  alignas(32) ioasid_dsa_completion record{};
  std::thread device([&record] {
    std::this_thread::sleep_for(20ms);
    record.bytes_completed = 4096;
    std::atomic_ref<uint8_t>(record.status).store(IOASID_DSA_COMP_SUCCESS, std::memory_order_release);
  });
  auto done = dsa::wait_for_completion(record, 5s);
  device.join();
  ASSERT_TRUE(done) << done.error().what;
  EXPECT_EQ(done->status, IOASID_DSA_COMP_SUCCESS);
  EXPECT_EQ(done->bytes_completed, 4096u);

  alignas(32) ioasid_dsa_completion never{};
  auto timed_out = dsa::wait_for_completion(never, 10ms);
  EXPECT_EQ(timed_out.code(), ETIMEDOUT);
}

// ---------------------------------------------------------------- fd-returning iommufd commands

TEST(ClientIommuFd, KnowsWhereEachCommandReturnsItsFd) {
  namespace iommu_fd = client::iommu_fd;
  iommu_fault_alloc alloc{.size = sizeof alloc};
  EXPECT_EQ(iommu_fd::fd_field_offset(IOMMU_FAULT_QUEUE_ALLOC, &alloc), offsetof(iommu_fault_alloc, out_fault_fd));
  iommu_test_cmd cmd{.size = sizeof cmd, .op = IOMMU_TEST_OP_CREATE_ACCESS};
  EXPECT_EQ(iommu_fd::fd_field_offset(IOMMU_TEST_CMD, &cmd), offsetof(iommu_test_cmd, create_access.out_access_fd));
  cmd.op = IOMMU_TEST_OP_MD_CHECK_MAP;
  EXPECT_EQ(iommu_fd::fd_field_offset(IOMMU_TEST_CMD, &cmd), std::nullopt);
  EXPECT_EQ(iommu_fd::fd_field_offset(IOMMU_IOAS_ALLOC, &cmd), std::nullopt);
}

// How many descriptors this process has open: the lowest free number does not tell.
int open_descriptor_count() {
  int count = 0;
  for (int fd = 0; fd < 1024; ++fd) count += ::fcntl(fd, F_GETFD) >= 0;
  return count;
}

TEST(ClientIommuFd, RefusesACommandThatReturnsNoFdBeforeSendingIt) {
  // -1 would be EBADF if anything reached ioctl(2).
  iommu_test_cmd cmd{.size = sizeof cmd, .op = IOMMU_TEST_OP_MD_CHECK_MAP};
  auto result = client::iommufd_fd_command(-1, IOMMU_TEST_CMD, &cmd);
  EXPECT_EQ(result.code(), EINVAL);
  EXPECT_NE(result.error().what.find("IOMMU_TEST_CMD"), std::string::npos) << result.error().what;
  iommu_fault_alloc short_alloc{.size = offsetof(iommu_fault_alloc, out_fault_fd)};
  EXPECT_EQ(client::iommufd_fd_command(-1, IOMMU_FAULT_QUEUE_ALLOC, &short_alloc).code(), EINVAL)
      << "a size that does not reach the fd field";
}

TEST(ClientIommuFd, AFailedStepLeavesNoDescriptorOpen) {
  char path[] = "/tmp/client_test.XXXXXX";
  const int not_iommu = ::mkstemp(path);
  ASSERT_GE(not_iommu, 0);
  ::unlink(path);
  const int before = open_descriptor_count();
  iommu_fault_alloc alloc{.size = sizeof alloc, .out_fault_fd = 12345};
  auto result = client::iommufd_fd_command(not_iommu, IOMMU_FAULT_QUEUE_ALLOC, &alloc);
  EXPECT_EQ(result.code(), ENOTTY);
  EXPECT_NE(result.error().what.find("IOASID_IOMMU_FD_CMD (IOMMU_FAULT_QUEUE_ALLOC)"), std::string::npos)
      << result.error().what;
  EXPECT_EQ(alloc.out_fault_fd, 12345u);

  // Step 2 alone: the companion node opens (a regular file here), the attach fails, and
  // the descriptor is closed again.
  auto attached = client::iommu_fd::open_object_file("/dev/null", 1, client::iommu_fd::FdNumber::this_process);
  EXPECT_EQ(attached.code(), ENOTTY);
  EXPECT_EQ(client::iommu_fd::open_object_file("/nonexistent/iommu-fd", 1,
                                               client::iommu_fd::FdNumber::set_later).code(), ENOENT);
  EXPECT_EQ(open_descriptor_count(), before);
  ::close(not_iommu);
}

}  // namespace

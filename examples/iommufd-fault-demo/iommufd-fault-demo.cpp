// SPDX-License-Identifier: MIT
// iommufd-fault-demo: page requests through an iommufd fault queue, with nothing but
// <linux/iommufd.h> and the mock driver's IOMMU_TEST_CMD (iommufd_test/iommufd_test.h),
// exactly as a program for a real kernel would do it: an I/O address space, a mock
// device, a NEST_PARENT paging HWPT, a fault queue (IOMMU_FAULT_QUEUE_ALLOC, which hands
// this process a file), a nested HWPT whose page requests go to that queue, the device
// moved onto it, page requests raised (TRIGGER_IOPF), then poll(2) the queue's file,
// read(2) the requests and write(2) an answer to each, and take it all down again.
//
// The daemon cannot hand a file to a process by itself: run this program under
// ioasid-run (`ioasid-run --iommu-node PATH iommufd-fault-demo --dev PATH`), which
// serves IOMMU_FAULT_QUEUE_ALLOC for it. Every step prints what it did; a failure names
// the call that failed and exits 1.
#include "common/iommu_node.h"
#include <linux/iommufd.h>
#include "iommufd_test/iommufd_test.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

// How long to wait for the requests to become readable.
constexpr int kPollTimeoutMs = 5000;

int step_number = 0;
const char* failed_call = nullptr;  // named in the last line of a failed run

void step(const char* what) { std::printf("[%d] %s\n", ++step_number, what); }

bool failed(const char* call, int error) {
  failed_call = call;
  std::printf("    -> %s failed: %s (errno %d)\n", call, std::strerror(error), error);
  return false;
}

// A call that succeeded but did not do what it should: says what, names the call.
__attribute__((format(printf, 2, 3))) bool wrong(const char* call, const char* format, ...) {
  failed_call = call;
  std::printf("    -> ");
  va_list arguments;
  va_start(arguments, format);
  std::vprintf(format, arguments);
  va_end(arguments);
  std::printf("\n");
  return false;
}

// Issues one iommufd command: sets the struct's leading size, reports a failure.
template <typename Struct>
bool issue(int fd, unsigned long cmd, const char* name, Struct& arg) {
  arg.size = sizeof arg;
  if (ioctl(fd, cmd, &arg) == 0) return true;
  return failed(name, errno);
}
#define ISSUE(fd, cmd, arg) issue(fd, cmd, #cmd, arg)

iommu_test_cmd test_op(uint32_t op, uint32_t id) { return ioasid::examples::iommu_test_op(op, id); }

bool destroy(int fd, uint32_t id) {
  iommu_destroy cmd = {.size = 0, .id = id};
  return ISSUE(fd, IOMMU_DESTROY, cmd);
}

std::string perm_names(uint32_t perm) {
  std::string names;
  if (perm & IOMMU_PGFAULT_PERM_READ) names += 'r';
  if (perm & IOMMU_PGFAULT_PERM_WRITE) names += 'w';
  if (perm & IOMMU_PGFAULT_PERM_EXEC) names += 'x';
  if (perm & IOMMU_PGFAULT_PERM_PRIV) names += 'p';
  return names.empty() ? "-" : names;
}

std::string flag_names(uint32_t flags) {
  std::string names;
  if (flags & IOMMU_PGFAULT_FLAGS_PASID_VALID) names += "PASID_VALID";
  if (flags & IOMMU_PGFAULT_FLAGS_LAST_PAGE) names += names.empty() ? "LAST_PAGE" : "|LAST_PAGE";
  return names.empty() ? "0" : names;
}

// The page requests the device raises: one group of one page each.
struct Request {
  uint32_t pasid;  // 0: a request without PASID
  uint32_t grpid;
  uint32_t perm;
  uint64_t addr;
};
constexpr Request kRequests[] = {
    {0, 1, IOMMU_PGFAULT_PERM_READ, MOCK_APERTURE_START},
    {1, 2, IOMMU_PGFAULT_PERM_READ | IOMMU_PGFAULT_PERM_WRITE, MOCK_APERTURE_START + 0x3000},
    {5, 3, IOMMU_PGFAULT_PERM_WRITE | IOMMU_PGFAULT_PERM_EXEC, 0x40000000},
};
constexpr size_t kRequestCount = sizeof kRequests / sizeof kRequests[0];

// poll(2) on the fault queue's file; returns the revents (0 on a timeout), -1 on failure.
int poll_queue(int fault_fd, int timeout_ms) {
  pollfd watched = {.fd = fault_fd, .events = POLLIN, .revents = 0};
  int ready;
  do {
    ready = poll(&watched, 1, timeout_ms);
  } while (ready < 0 && errno == EINTR);
  if (ready < 0) {
    failed("poll", errno);
    return -1;
  }
  return ready == 0 ? 0 : watched.revents;
}

// Reads the requests until all kRequestCount are in, polling before each read.
bool read_requests(int fault_fd, iommu_hwpt_pgfault (&faults)[kRequestCount]) {
  size_t count = 0;
  while (count < kRequestCount) {
    const int revents = poll_queue(fault_fd, kPollTimeoutMs);
    if (revents < 0) return false;
    if (!(revents & POLLIN))
      return wrong("poll", "poll: %s after %d ms with %zu of %zu requests read",
                   revents == 0 ? "still not readable" : "no POLLIN", kPollTimeoutMs, count, kRequestCount);
    std::printf("    -> poll: POLLIN\n");
    // A read returns whole groups, as many as fit in the buffer.
    const ssize_t bytes = read(fault_fd, &faults[count], (kRequestCount - count) * sizeof faults[0]);
    if (bytes < 0) return failed("read", errno);
    if (bytes == 0 || bytes % sizeof faults[0] != 0)
      return wrong("read", "read returned %zd bytes, not whole %zu-byte records", bytes, sizeof faults[0]);
    const size_t got = static_cast<size_t>(bytes) / sizeof faults[0];
    std::printf("    -> read: %zd bytes, %zu record(s)\n", bytes, got);
    for (size_t i = count; i < count + got; ++i) {
      const iommu_hwpt_pgfault& fault = faults[i];
      std::printf("       fault: device %u pasid %u grpid %u addr %#" PRIx64 " perm %s length %u flags %s cookie %u\n",
                  fault.dev_id, fault.pasid, fault.grpid, static_cast<uint64_t>(fault.addr),
                  perm_names(fault.perm).c_str(), fault.length, flag_names(fault.flags).c_str(), fault.cookie);
    }
    count += got;
  }
  return true;
}

// Checks that the records say what the device asked (in order: the queue is FIFO).
bool check_requests(const iommu_hwpt_pgfault (&faults)[kRequestCount], uint32_t dev_id) {
  for (size_t i = 0; i < kRequestCount; ++i) {
    const Request& asked = kRequests[i];
    const iommu_hwpt_pgfault& fault = faults[i];
    uint32_t flags = IOMMU_PGFAULT_FLAGS_LAST_PAGE;
    if (asked.pasid != 0) flags |= IOMMU_PGFAULT_FLAGS_PASID_VALID;
    if (fault.dev_id != dev_id || fault.grpid != asked.grpid || fault.perm != asked.perm || fault.addr != asked.addr ||
        ((fault.flags & IOMMU_PGFAULT_FLAGS_PASID_VALID) && fault.pasid != asked.pasid) || fault.flags != flags)
      return wrong("read", "record %zu is not the request raised (device %u, grpid %u, pasid %u, addr %#" PRIx64 ")",
                   i, dev_id, asked.grpid, asked.pasid, asked.addr);
  }
  std::printf("    -> every record is the request raised, in order\n");
  return true;
}

// MOCK_DOMAIN_REPLACE: the mock device stdev_id onto HWPT pt_id.
bool replace_domain(int fd, uint32_t stdev_id, uint32_t dev_id, uint32_t pt_id) {
  iommu_test_cmd replace = test_op(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev_id);
  replace.mock_domain_replace.pt_id = pt_id;
  if (!ISSUE(fd, IOMMU_TEST_CMD, replace)) return false;
  std::printf("    -> device %u is attached to HWPT %u\n", dev_id, replace.mock_domain_replace.pt_id);
  return true;
}

// poll(2) without waiting: nothing may be readable.
bool not_readable(int fault_fd) {
  const int revents = poll_queue(fault_fd, 0);
  if (revents < 0) return false;
  if (revents & POLLIN) return wrong("poll", "POLLIN with no request waiting to be read");
  std::printf("    -> not readable\n");
  return true;
}

bool run(int fd) {
  step("IOMMU_IOAS_ALLOC: an empty I/O address space");
  iommu_ioas_alloc alloc = {.size = 0, .flags = 0, .out_ioas_id = 0};
  if (!ISSUE(fd, IOMMU_IOAS_ALLOC, alloc)) return false;
  const uint32_t ioas_id = alloc.out_ioas_id;
  std::printf("    -> IOAS %u\n", ioas_id);

  step("IOMMU_TEST_CMD MOCK_DOMAIN: a mock device, bound to this file and attached to the IOAS");
  iommu_test_cmd mock = test_op(IOMMU_TEST_OP_MOCK_DOMAIN, ioas_id);
  if (!ISSUE(fd, IOMMU_TEST_CMD, mock)) return false;
  const uint32_t stdev_id = mock.mock_domain.out_stdev_id;
  const uint32_t dev_id = mock.mock_domain.out_idev_id;
  std::printf("    -> mock object %u, device %u, attached to the automatic paging HWPT %u\n", stdev_id, dev_id,
              mock.mock_domain.out_hwpt_id);

  step("IOMMU_HWPT_ALLOC NEST_PARENT: a paging HWPT over the IOAS, to carry a nested one");
  iommu_hwpt_alloc parent;
  std::memset(&parent, 0, sizeof parent);
  parent.flags = IOMMU_HWPT_ALLOC_NEST_PARENT;
  parent.dev_id = dev_id;
  parent.pt_id = ioas_id;
  if (!ISSUE(fd, IOMMU_HWPT_ALLOC, parent)) return false;
  const uint32_t parent_id = parent.out_hwpt_id;
  std::printf("    -> paging HWPT %u\n", parent_id);

  step("IOMMU_FAULT_QUEUE_ALLOC: a fault queue, and a file to read its page requests from");
  iommu_fault_alloc queue = {.size = 0, .flags = 0, .out_fault_id = 0, .out_fault_fd = 0};
  if (!ISSUE(fd, IOMMU_FAULT_QUEUE_ALLOC, queue)) {
    if (errno == EOPNOTSUPP)
      std::printf("    -> (a daemon cannot hand this process a file: run it under ioasid-run)\n");
    return false;
  }
  const uint32_t fault_id = queue.out_fault_id;
  const int fault_fd = static_cast<int>(queue.out_fault_fd);
  std::printf("    -> fault queue %u, its file is fd %d\n", fault_id, fault_fd);

  step("IOMMU_HWPT_ALLOC nested (IOMMU_HWPT_DATA_SELFTEST), FAULT_ID_VALID: its page requests go to the queue");
  iommu_hwpt_selftest data = {.iotlb = IOMMU_TEST_IOTLB_DEFAULT};
  iommu_hwpt_alloc nested;
  std::memset(&nested, 0, sizeof nested);
  nested.flags = IOMMU_HWPT_FAULT_ID_VALID;
  nested.dev_id = dev_id;
  nested.pt_id = parent_id;
  nested.data_type = IOMMU_HWPT_DATA_SELFTEST;
  nested.data_len = sizeof data;
  nested.data_uptr = reinterpret_cast<uintptr_t>(&data);
  nested.fault_id = fault_id;
  if (!ISSUE(fd, IOMMU_HWPT_ALLOC, nested)) return false;
  const uint32_t nested_id = nested.out_hwpt_id;
  std::printf("    -> nested HWPT %u on HWPT %u, faults to queue %u\n", nested_id, parent_id, fault_id);

  step("IOMMU_TEST_CMD MOCK_DOMAIN_REPLACE: the device moves onto the nested HWPT");
  if (!replace_domain(fd, stdev_id, dev_id, nested_id)) return false;

  step("poll: nothing asked yet, the queue's file is not readable");
  if (!not_readable(fault_fd)) return false;

  step("IOMMU_TEST_CMD TRIGGER_IOPF: the device sends page requests");
  for (const Request& request : kRequests) {
    iommu_test_cmd trigger = test_op(IOMMU_TEST_OP_TRIGGER_IOPF, 0);
    trigger.trigger_iopf.dev_id = dev_id;
    trigger.trigger_iopf.pasid = request.pasid;
    trigger.trigger_iopf.grpid = request.grpid;
    trigger.trigger_iopf.perm = request.perm;
    trigger.trigger_iopf.addr = request.addr;
    if (!ISSUE(fd, IOMMU_TEST_CMD, trigger)) return false;
    std::printf("    -> grpid %u pasid %u addr %#" PRIx64 " perm %s\n", request.grpid, request.pasid, request.addr,
                perm_names(request.perm).c_str());
  }

  step("poll and read: the page requests, struct iommu_hwpt_pgfault records");
  iommu_hwpt_pgfault faults[kRequestCount];
  std::memset(faults, 0, sizeof faults);
  if (!read_requests(fault_fd, faults) || !check_requests(faults, dev_id)) return false;

  step("write: a struct iommu_hwpt_page_response for each, SUCCESS, naming its cookie");
  for (const iommu_hwpt_pgfault& fault : faults) {
    const iommu_hwpt_page_response response = {.cookie = fault.cookie, .code = IOMMUFD_PAGE_RESP_SUCCESS};
    const ssize_t bytes = write(fault_fd, &response, sizeof response);
    if (bytes < 0) return failed("write", errno);
    if (bytes != sizeof response) return wrong("write", "write took %zd of %zu bytes", bytes, sizeof response);
    std::printf("    -> cookie %u (grpid %u) answered\n", fault.cookie, fault.grpid);
  }

  step("write again: a cookie already answered is refused");
  const iommu_hwpt_page_response again = {.cookie = faults[0].cookie, .code = IOMMUFD_PAGE_RESP_SUCCESS};
  if (write(fault_fd, &again, sizeof again) >= 0) return wrong("write", "cookie %u was taken twice", again.cookie);
  std::printf("    -> refused as it should be: %s\n", std::strerror(errno));

  step("poll: every request read and answered, the file is not readable");
  if (!not_readable(fault_fd)) return false;

  step("IOMMU_TEST_CMD MOCK_DOMAIN_REPLACE: the device back onto the paging HWPT");
  if (!replace_domain(fd, stdev_id, dev_id, parent_id)) return false;

  step("IOMMU_DESTROY the nested HWPT; close the queue's file; IOMMU_DESTROY the queue");
  if (!destroy(fd, nested_id)) return false;
  if (close(fault_fd) != 0) return failed("close", errno);
  if (!destroy(fd, fault_id)) return false;
  std::printf("    -> HWPT %u, fd %d and fault queue %u gone\n", nested_id, fault_fd, fault_id);

  step("IOMMU_DESTROY the mock device, the paging HWPT, then the IOAS");
  if (!destroy(fd, stdev_id) || !destroy(fd, parent_id) || !destroy(fd, ioas_id)) return false;
  std::printf("    -> mock object %u, HWPT %u and IOAS %u destroyed\n", stdev_id, parent_id, ioas_id);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--dev" && i + 1 < argc) {
      path = argv[++i];
    } else if (arg == "-h" || arg == "--help") {
      std::printf(
          "Usage: iommufd-fault-demo [--dev PATH]\n"
          "Page requests through an iommufd fault queue, with Linux's iommufd uAPI alone:\n"
          "IOAS_ALLOC, a mock device (IOMMU_TEST_CMD MOCK_DOMAIN), HWPT_ALLOC of a NEST_PARENT\n"
          "paging HWPT, FAULT_QUEUE_ALLOC, HWPT_ALLOC of a nested HWPT with FAULT_ID_VALID,\n"
          "MOCK_DOMAIN_REPLACE onto it, TRIGGER_IOPF, then poll, read and answer the requests\n"
          "on the queue's fd, and DESTROY. Exits 1, naming the call, if any step fails.\n"
          "Against ioasidd run it under ioasid-run, which serves FAULT_QUEUE_ALLOC's fd:\n"
          "  ioasid-run --iommu-node PATH iommufd-fault-demo --dev PATH\n\n"
          "Options:\n"
          "  -h, --help    print this help and exit\n"
          "  --version     print the version and exit\n"
          "  --dev PATH    the node to open (default: $IOMMU_DEV, else /dev/iommu)\n");
      return 0;
    } else if (arg == "--version") {
      std::printf("iommufd-fault-demo %s\n", IOASID_VERSION);
      return 0;
    } else {
      std::fprintf(stderr, "iommufd-fault-demo: %s: unknown option\nTry 'iommufd-fault-demo --help'.\n", arg.c_str());
      return 2;
    }
  }
  path = ioasid::examples::iommu_node_path(path);
  const int fd = ioasid::examples::open_iommu_node("iommufd-fault-demo", path);
  if (fd < 0) return 1;
  // On a failure the objects made so far are left to close(): it destroys them all.
  const int status = run(fd) ? 0 : 1;
  close(fd);
  if (status == 0)
    std::printf("\niommufd-fault-demo: every step succeeded\n");
  else
    std::printf("\niommufd-fault-demo: FAILED at %s\n", failed_call ? failed_call : "an unnamed step");
  return status;
}

// SPDX-License-Identifier: MIT
// Work queues of SIOV devices: WQ_CONFIG and DEVICE_SUBMIT.
#include "internal.h"

#include <cstring>

namespace ioasid::client {

namespace {

Result<SubmitStatus> submit_to(int fd, uint32_t dev_id, uint32_t wq, const ioasid_dsa_desc& descriptor,
                               SubmitOptions options) {
  ioasid_device_submit request{
      .dev_id = dev_id,
      .wq = wq,
      .flags = options.guest_pasid ? IOASID_SUBMIT_GPASID : 0u,
  };
  static_assert(sizeof request.desc == sizeof descriptor);
  std::memcpy(request.desc, &descriptor, sizeof descriptor);
  IOASID_CLIENT_TRY(detail::issue(fd, IOASID_DEVICE_SUBMIT, request));
  switch (request.out_status) {
    case IOASID_SUBMIT_ACCEPTED: return SubmitStatus::accepted;
    case IOASID_SUBMIT_RETRY: return SubmitStatus::retry;
  }
  return Error{EPROTO, "IOASID_DEVICE_SUBMIT: unknown out_status " + std::to_string(request.out_status)};
}

}  // namespace

Result<SubmitStatus> submit(const Device& device, uint32_t wq, const ioasid_dsa_desc& descriptor,
                            SubmitOptions options) {
  return submit_to(device.fd_.get(), device.id_, wq, descriptor, options);
}

Result<WorkQueue> WorkQueue::enable(const Device& device, uint32_t wq, uint32_t flags, uint32_t pasid,
                                    const WqOptions& options) {
  ioasid_wq_config request{
      .dev_id = device.id_,
      .wq = wq,
      .flags = IOASID_WQ_ENABLE | flags | (options.block_on_fault ? IOASID_WQ_BOF : 0u),
      .pasid = pasid,
      .size = options.size,
      .priority = options.priority,
  };
  IOASID_CLIENT_TRY(detail::issue(device.fd_.get(), IOASID_WQ_CONFIG, request));
  return WorkQueue(device.fd_.get(), device.id_, wq, flags & IOASID_WQ_SHARED);
}

Result<WorkQueue> WorkQueue::enable_dedicated(const Device& device, uint32_t wq, uint32_t pasid, WqOptions options) {
  return enable(device, wq, 0, pasid, options);
}

Result<WorkQueue> WorkQueue::enable_shared(const Device& device, uint32_t wq, WqOptions options) {
  return enable(device, wq, IOASID_WQ_SHARED, 0, options);
}

WorkQueue::~WorkQueue() { (void)disable(); }

Result<SubmitStatus> WorkQueue::submit(const ioasid_dsa_desc& descriptor, SubmitOptions options) const {
  return submit_to(fd_.get(), dev_id_, wq_, descriptor, options);
}

Result<void> WorkQueue::disable() {
  ioasid_wq_config request{.dev_id = dev_id_, .wq = wq_};
  return detail::undo(fd_, IOASID_WQ_CONFIG, request);
}

}  // namespace ioasid::client

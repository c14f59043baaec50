// SPDX-License-Identifier: MIT
// IOMMU_FAULT_QUEUE_ALLOC and the fault queue's records; TRIGGER_IOPF, the mock
// driver's page request.
#include "dev_iommu/fault.h"

#include "dev_iommu/fd_objects.h"
#include "dev_iommu/handlers.h"
#include "dev_iommu/service.h"

#include <cstring>

namespace ioasid::dev_iommu {

bool FaultQueue::deliver(uint32_t dev_id, std::vector<iommu_hwpt_pgfault> group) {
  if (delivered_.size() + awaiting_.size() >= kMaxGroups) return false;
  delivered_.push_back({dev_id, std::move(group)});
  if (on_deliver) on_deliver();
  return true;
}

Result<size_t> FaultQueue::read(std::span<std::byte> out) {
  constexpr size_t kRecord = sizeof(iommu_hwpt_pgfault);
  if (out.size() % kRecord) return fail(ESPIPE, "{} bytes is not a whole number of {}-byte records", out.size(), kRecord);
  size_t done = 0;
  while (!delivered_.empty()) {
    Group& group = delivered_.front();
    if (group.records.size() * kRecord > out.size() - done) {
      if (done == 0)
        return fail(EINVAL, "a group of {} records does not fit {} bytes", group.records.size(), out.size());
      break;
    }
    // Cookies are the lowest free, as iommufd's xarray gives them.
    uint32_t cookie = next_cookie_;
    while (awaiting_.contains(cookie)) ++cookie;
    next_cookie_ = cookie + 1;
    for (iommu_hwpt_pgfault record : group.records) {
      record.cookie = cookie;
      std::memcpy(out.data() + done, &record, kRecord);
      done += kRecord;
    }
    awaiting_.emplace(cookie, std::move(group));
    delivered_.pop_front();
  }
  return done;
}

Result<size_t> FaultQueue::write(std::span<const std::byte> in) {
  constexpr size_t kResponse = sizeof(iommu_hwpt_page_response);
  if (in.size() % kResponse)
    return fail(ESPIPE, "{} bytes is not a whole number of {}-byte responses", in.size(), kResponse);
  size_t done = 0;
  for (; done < in.size(); done += kResponse) {
    iommu_hwpt_page_response response;
    std::memcpy(&response, in.data() + done, kResponse);
    if (response.code != IOMMUFD_PAGE_RESP_SUCCESS && response.code != IOMMUFD_PAGE_RESP_INVALID) {
      if (done == 0) return fail(EINVAL, "response code {}", response.code);
      break;
    }
    if (awaiting_.erase(response.cookie) == 0) {
      if (done == 0) return fail(EINVAL, "no group awaits a response with cookie {}", response.cookie);
      break;
    }
  }
  return done;
}

void FaultQueue::forget_device(uint32_t dev_id) {
  std::erase_if(delivered_, [&](const Group& group) { return group.dev_id == dev_id; });
  std::erase_if(awaiting_, [&](const auto& entry) { return entry.second.dev_id == dev_id; });
}

Result<long> fault_queue_alloc(Call& call, iommu_fault_alloc& cmd) {
  if (cmd.flags != 0) return fail(EOPNOTSUPP, "unknown flag bits {:#x}", cmd.flags);
  if (!call.fd_token)
    return fail(EOPNOTSUPP,
                "FAULT_QUEUE_ALLOC hands the caller a file, which a daemon cannot: run the program under ioasid-run, "
                "or use libioasid's iommufd_fd_command");
  auto charge = call.service.engine().ioasids_quota().charge(call.context.client().uid);
  IOASID_TRY(charge);
  auto queue = std::make_shared<FaultQueue>();
  const uint32_t id = call.context.objects().insert(queue, std::move(*charge));
  auto token = call.service.fd_objects().issue(call.context.shared_from_this(), queue);
  if (!token) {
    call.context.objects().erase(id);
    return std::move(token).error();
  }
  *call.fd_token = *token;
  cmd.out_fault_id = id;
  cmd.out_fault_fd = ~0u;  // the caller's file comes with the token
  return 0;
}

Result<long> trigger_iopf(Call& call, iommu_test_cmd& cmd) {
  auto device = find_object<BoundDevice>(call, cmd.trigger_iopf.dev_id, ObjectType::Device);
  IOASID_TRY(device);
  // The request reaches the fault queue of the nested HWPT the device is attached to;
  // without one nobody handles it and the IOMMU answers it (nothing to see here).
  HwptNested* nested = (*device)->attached_nested();
  if (!nested || !nested->fault) return 0;
  iommu_hwpt_pgfault record{};
  record.flags = IOMMU_PGFAULT_FLAGS_LAST_PAGE;
  if (cmd.trigger_iopf.pasid != 0) record.flags |= IOMMU_PGFAULT_FLAGS_PASID_VALID;
  record.dev_id = (*device)->id();
  record.pasid = cmd.trigger_iopf.pasid;
  record.grpid = cmd.trigger_iopf.grpid;
  record.perm = cmd.trigger_iopf.perm;
  record.addr = cmd.trigger_iopf.addr;
  (void)nested->fault->deliver((*device)->id(), {record});
  return 0;
}

}  // namespace ioasid::dev_iommu

// SPDX-License-Identifier: MIT
#include "dev_ioasid/fault_reports.h"

#include "dev_ioasid/service.h"

#include <spdlog/spdlog.h>

namespace ioasid::dev_ioasid {
namespace {

ioasid_fault unrecoverable_record(const FaultSource& source, const devices::DmaFault& fault) {
  ioasid_fault record{};
  record.type = IOASID_FAULT_DMA_UNRECOV;
  record.flags = IOASID_FAULT_ADDR_VALID | (source.pasid ? IOASID_FAULT_PASID_VALID : 0) |
                 (fault.fetch_address ? IOASID_FAULT_FETCH_ADDR_VALID : 0) |
                 (fault.second_stage_gpa ? IOASID_FAULT_SECOND_STAGE : 0);
  record.dev_id = source.dev_id;
  record.pasid = source.pasid.value_or(0);
  record.ioasid = fault.ioasid;
  record.reason = fault.reason;
  record.perm = source.perm;
  record.addr = fault.address;
  record.fetch_addr = fault.fetch_address.value_or(0);
  record.gpa = fault.second_stage_gpa.value_or(0);
  return record;
}

void publish(Service& service, Context& context, const FaultSource& source, const devices::DmaFault& fault,
             EventType type, std::optional<uint32_t> grpid) {
  service.publish({.type = type,
                   .context = context.id(),
                   .pid = context.client().pid,
                   .pasid = source.pasid.value_or(0),
                   .device = source.device,
                   .dev_id = source.dev_id,
                   .ioasid = fault.ioasid,
                   .address = fault.address,
                   .reason = fault.reason,
                   .grpid = grpid});
}

}  // namespace

void report_unrecoverable(Service& service, Context& context, const FaultSource& source,
                          const devices::DmaFault& fault) {
  context.faults().push(unrecoverable_record(source, fault));
  publish(service, context, source, fault, EventType::Fault, std::nullopt);
}

namespace {

ioasid_fault page_request_record(const FaultSource& source, const devices::DmaFault& fault, uint32_t grpid) {
  ioasid_fault record = unrecoverable_record(source, fault);
  record.type = IOASID_FAULT_PAGE_REQ;
  // A page request names the page, not the byte; it carries no fetch address.
  record.flags = IOASID_FAULT_PASID_VALID | IOASID_FAULT_ADDR_VALID | IOASID_FAULT_LAST_PAGE;
  record.addr = fault.address & ~(kPageSize - 1);
  record.fetch_addr = 0;
  record.grpid = grpid;
  return record;
}

template <typename Open>
RaisedPageRequest raise(Service& service, Context& context, const FaultSource& source,
                        const devices::DmaFault& fault, Open open) {
  bool tried_to_queue = false;
  auto announce = [&](uint32_t grpid) {
    tried_to_queue = true;
    return context.faults().enqueue(page_request_record(source, fault, grpid));
  };
  const std::optional<iommu::PageRequests::Group> group = open(announce);
  if (tried_to_queue) context.faults().notify();  // a LOST record is news too
  if (group) {
    publish(service, context, source, fault, EventType::PageRequest, group->grpid);
    return {PageRequestOutcome::kQueued, *group};
  }
  if (!tried_to_queue) return {PageRequestOutcome::kNoGroup, {}};
  spdlog::info("ctx {}: fault queue full: {}'s page request for {:#x} at PASID {} was not queued; the IOMMU "
               "answered it Success (retry later)",
               context.id(), source.device, fault.address & ~(kPageSize - 1), source.pasid.value_or(0));
  return {PageRequestOutcome::kQueueFull, {}};
}

}  // namespace

RaisedPageRequest raise_page_request(Service& service, Context& context, const FaultSource& source,
                                     const devices::DmaFault& fault, bool will_wait) {
  return raise(service, context, source, fault, [&](const iommu::PageRequests::Announce& announce) {
    return context.page_requests().open(source.dev_id, source.pasid, will_wait, announce);
  });
}

RaisedPageRequest raise_page_request_async(Service& service, Context& context, const FaultSource& source,
                                           const devices::DmaFault& fault, iommu::PageRequests::OnAnswer on_answer) {
  return raise(service, context, source, fault, [&](const iommu::PageRequests::Announce& announce) {
    return context.page_requests().open_async(source.dev_id, source.pasid, std::move(on_answer), announce);
  });
}

}  // namespace ioasid::dev_ioasid

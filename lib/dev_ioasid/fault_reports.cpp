#include "dev_ioasid/fault_reports.h"

#include "dev_ioasid/service.h"

namespace ioasid::dev_ioasid {
namespace {

ioasid_fault unrecoverable_record(const FaultSource& source, const devices::DmaFault& fault) {
  ioasid_fault record{};
  record.type = IOASID_FAULT_DMA_UNRECOV;
  record.flags = IOASID_FAULT_ADDR_VALID | (source.pasid ? IOASID_FAULT_PASID_VALID : 0) |
                 (fault.fetch_address ? IOASID_FAULT_FETCH_ADDR_VALID : 0);
  record.dev_id = source.dev_id;
  record.pasid = source.pasid.value_or(0);
  record.ioasid = fault.ioasid;
  record.reason = fault.reason;
  record.perm = source.perm;
  record.addr = fault.address;
  record.fetch_addr = fault.fetch_address.value_or(0);
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

void report_page_request(Service& service, Context& context, const FaultSource& source,
                         const devices::DmaFault& fault, uint32_t grpid) {
  ioasid_fault record = unrecoverable_record(source, fault);
  record.type = IOASID_FAULT_PAGE_REQ;
  // A page request names the page, not the byte; it carries no fetch address.
  record.flags = IOASID_FAULT_PASID_VALID | IOASID_FAULT_ADDR_VALID | IOASID_FAULT_LAST_PAGE;
  record.addr = fault.address & ~(kPageSize - 1);
  record.fetch_addr = 0;
  record.grpid = grpid;
  context.faults().push(record);
  publish(service, context, source, fault, EventType::PageRequest, grpid);
}

}  // namespace ioasid::dev_ioasid

// Fault records and fault events as every device reports them: what the IOMMU could
// not translate (DMA_UNRECOV), or a page request the owner answers with PAGE_RESP.
#pragma once

#include "devices/dma_function.h"
#include "dev_ioasid/context.h"

#include <linux/ioasid.h>

#include <cstdint>
#include <optional>
#include <string>

namespace ioasid::dev_ioasid {

class Service;

// Where a fault happened: the file's id for the device, and the PASID if the request
// had one.
struct FaultSource {
  uint32_t dev_id = 0;
  std::string device;
  std::optional<uint32_t> pasid;
  uint32_t perm = 0;  // IOASID_FAULT_PERM_*
};

// Queues an unrecoverable fault record to the file and publishes a `fault` event.
void report_unrecoverable(Service& service, Context& context, const FaultSource& source,
                          const devices::DmaFault& fault);
// Queues a page request record (group `grpid`) and publishes a `page_request` event.
void report_page_request(Service& service, Context& context, const FaultSource& source,
                         const devices::DmaFault& fault, uint32_t grpid);

}  // namespace ioasid::dev_ioasid

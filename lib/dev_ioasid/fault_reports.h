// SPDX-License-Identifier: MIT
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
// What became of a page request (PCIe PRI) a device raised.
enum class PageRequestOutcome {
  kQueued,     // a group is open and its PAGE_REQ record queued; a `page_request` event published
  kQueueFull,  // the fault queue was full (the LOST record stands for it): no group was opened
               // and the IOMMU answered the request itself with Success, as VT-d does on a
               // page-request-queue overflow, so the device retries later
  kNoGroup,    // all 512 group indexes of the device are outstanding (or the file is closing):
               // the fault is unrecoverable
};

struct RaisedPageRequest {
  PageRequestOutcome outcome = PageRequestOutcome::kNoGroup;
  iommu::PageRequests::Group group{};  // kQueued
};

// Opens a group and queues the record that announces it, in one step (a group no
// record announced is never left open). `will_wait`: the DMA waits for the answer.
RaisedPageRequest raise_page_request(Service& service, Context& context, const FaultSource& source,
                                     const devices::DmaFault& fault, bool will_wait);
// The same for a device that parks instead of waiting: on_answer gets the answer
// (dropped unused unless kQueued).
RaisedPageRequest raise_page_request_async(Service& service, Context& context, const FaultSource& source,
                                           const devices::DmaFault& fault, iommu::PageRequests::OnAnswer on_answer);

}  // namespace ioasid::dev_ioasid

// SPDX-License-Identifier: MIT
// DEVICE_DMA: a bound `dma` device reads or writes the caller's buffer at an IOVA,
// with or without a PASID, through the IOMMU. The ioctl succeeds whenever the device
// ran; a fault stops the transfer, is reported in the struct and queued to the file.
#include "devices/dma_function.h"
#include "dev_ioasid/fault_reports.h"
#include "dev_ioasid/handlers.h"
#include "dev_ioasid/service.h"

#include <spdlog/spdlog.h>


namespace ioasid::dev_ioasid {
namespace {

// The longest transfer one request may ask for (a device's maximum transfer size).
constexpr uint64_t kMaxDmaLength = 64ull << 20;

}  // namespace

FaultSource DeviceRequest::source(const devices::DeviceSpec& spec) const {
  return {.dev_id = dev_id,
          .device = spec.name,
          .pasid = with_pasid ? std::optional(pasid) : std::nullopt,
          .perm = (write ? IOASID_FAULT_PERM_WRITE : IOASID_FAULT_PERM_READ) | (privileged ? IOASID_FAULT_PERM_PRIV : 0)};
}

Result<void> check_request_pasid(const devices::DeviceSpec& spec, const DeviceRequest& request) {
  if (request.with_pasid) {
    if (spec.pasid_bits == 0) return fail(EOPNOTSUPP, "{} has no PASID capability", spec.name);
    if (request.pasid == 0) return fail(EINVAL, "PASID 0 is the RID's own (RID_PASID): send without the PASID flag");
    if (request.pasid >= (1u << spec.pasid_bits))
      return fail(EINVAL, "pasid {} does not fit {}'s {} PASID bits", request.pasid, spec.name, spec.pasid_bits);
  } else if (request.pasid != 0) {
    return fail(EINVAL, "pasid {} given without the PASID flag", request.pasid);
  } else if (request.privileged) {
    return fail(EINVAL,
                "PRIV without PASID: on PCIe the privileged bit travels in the PASID prefix, so a request without "
                "PASID cannot carry it");
  }
  return success();
}

Result<AfterFault> after_fault(Call& call, Device& device, const FaultSource& source, const devices::DmaFault& fault,
                               bool wait, bool queue_unrecoverable) {
  const devices::DeviceSpec& spec = device.spec();
  const auto unrecoverable = [&] {
    if (queue_unrecoverable) report_unrecoverable(call.service, call.context, source, fault);
    return AfterFault::kFault;
  };
  // Faults the owner can resolve by mapping the page: a missing or too weak
  // translation, on a PRI-capable device, for a request with PASID.
  if (!spec.pri || !source.pasid || !devices::resolvable_by_page_request(fault)) return unrecoverable();
  const RaisedPageRequest raised = raise_page_request(call.service, call.context, source, fault, wait);
  if (raised.outcome == PageRequestOutcome::kNoGroup) {
    spdlog::info("ctx {}: {} has 512 page requests outstanding; this fault is unrecoverable", call.context.id(),
                 spec.name);
    return unrecoverable();
  }
  // The IOMMU answered the group itself (Success): the device stops here and retries
  // later, once the owner has read its queue. Waiting would be for nothing.
  if (raised.outcome == PageRequestOutcome::kQueueFull) return AfterFault::kRetryLater;
  if (!wait) return AfterFault::kPageRequest;
  // Sleeping holds a session thread every client shares: a user gets only so many.
  const auto waiting = call.service.engine().waits_quota().charge(call.context.client().uid);
  if (!waiting) {
    spdlog::info("ctx {}: {}: page request group {} raised, not waited for", call.context.id(), waiting.error().why,
                 raised.group.grpid);
    return AfterFault::kPageRequest;
  }
  call.service.before_blocking_wait();
  const auto answer =
      call.context.page_requests().wait(raised.group, call.service.config().page_response_timeout, call.interrupted);
  if (answer == iommu::PageResponse::kInterrupted)
    return fail(EINTR, "interrupted while {} waited for the response to page request group {}", spec.name,
                raised.group.grpid);
  if (answer == iommu::PageResponse::kSuccess) return AfterFault::kRetry;
  if (answer == iommu::PageResponse::kTimedOut)
    spdlog::info("ctx {}: no PAGE_RESP for {} group {} within {} ms: the request fails", call.context.id(), spec.name,
                 raised.group.grpid, call.service.config().page_response_timeout.count());
  return AfterFault::kFault;
}

Result<long> device_dma(Call& call, ioasid_device_dma& dma) {
  IOASID_TRY(check_flags(dma.flags, IOASID_DMA_WRITE | IOASID_DMA_PASID | IOASID_DMA_PRIV | IOASID_DMA_NOWAIT));
  IOASID_TRY(check_reserved(dma.__reserved, "__reserved"));
  auto device = call.context.objects().find<Device>(dma.dev_id);
  if (!device) return fail(ENOENT, "no device with dev_id {} in this file", dma.dev_id);
  const devices::DeviceSpec& spec = device->spec();
  if (device->removed()) return fail(ENODEV, "{} was removed by the admin", spec.name);
  if (spec.type != devices::DeviceType::Dma)
    return fail(EOPNOTSUPP, "{} is not a dma function (a dsa engine takes work through DEVICE_SUBMIT)", spec.name);
  const DeviceRequest request{.dev_id = dma.dev_id,
                              .with_pasid = (dma.flags & IOASID_DMA_PASID) != 0,
                              .pasid = dma.pasid,
                              .write = (dma.flags & IOASID_DMA_WRITE) != 0,
                              .privileged = (dma.flags & IOASID_DMA_PRIV) != 0};
  IOASID_TRY(check_request_pasid(spec, request));
  if (dma.length == 0) return fail(EINVAL, "length 0");
  if (dma.length > kMaxDmaLength)
    return fail(EINVAL, "length {:#x} is above the device's maximum transfer of {:#x}", dma.length, kMaxDmaLength);
  if (dma.iova + (dma.length - 1) < dma.iova)
    return fail(EOVERFLOW, "iova {:#x} + length {:#x} wraps", dma.iova, dma.length);

  uint64_t done = 0;
  for (;;) {
    auto outcome = devices::run_dma(call.service.iommu(), device->pasid_table(), device->device_tlb(),
                                    {.pasid = request.with_pasid ? dma.pasid : iommu::kRidPasid,
                                     .iova = dma.iova + done,
                                     .length = dma.length - done,
                                     .to_memory = request.write,
                                     .privileged = request.privileged,
                                     .buffer_memory = &call.memory,
                                     .buffer_address = dma.buf_uptr + done});
    IOASID_TRY(outcome);
    done += outcome->bytes_done;
    if (!outcome->fault) {
      dma.out_status = IOASID_DMA_OK;
      dma.out_fault_addr = 0;
      dma.out_fault_reason = 0;
      return 0;
    }
    const auto& fault = *outcome->fault;
    dma.out_fault_addr = fault.address;
    dma.out_fault_reason = fault.reason;
    auto next = after_fault(call, *device, request.source(spec), fault, !(dma.flags & IOASID_DMA_NOWAIT), true);
    IOASID_TRY(next);
    switch (*next) {
      case AfterFault::kRetry: continue;  // the device retries the access where it stopped
      case AfterFault::kFault: dma.out_status = IOASID_DMA_FAULT; return 0;
      case AfterFault::kPageRequest: dma.out_status = IOASID_DMA_PAGE_REQ; return 0;
      case AfterFault::kRetryLater: dma.out_status = IOASID_DMA_RETRY; return 0;
    }
  }
}

Result<long> page_response(Call& call, ioasid_page_response& response) {
  IOASID_TRY(check_flags(response.flags, IOASID_PAGE_RESP_PASID_VALID));
  IOASID_TRY(check_reserved(response.__reserved, "__reserved"));
  if (response.code > IOASID_PAGE_RESP_FAILURE)
    return fail(EINVAL, "code {} (SUCCESS 0, INVALID 1, FAILURE 2)", response.code);
  auto device = call.context.objects().find<Device>(response.dev_id);
  if (!device) return fail(ENOENT, "no device with dev_id {} in this file", response.dev_id);
  const std::optional<uint32_t> pasid =
      (response.flags & IOASID_PAGE_RESP_PASID_VALID) ? std::optional(response.pasid) : std::nullopt;
  if (!call.context.page_requests().respond(response.dev_id, response.grpid, pasid,
                                            static_cast<iommu::PageResponse>(response.code)))
    return fail(EINVAL, "{} has no outstanding page request group {}{} (never raised, or answered already)",
                device->spec().name, response.grpid, pasid ? fmt::format(" at PASID {}", *pasid) : "");
  call.service.publish({.type = EventType::PageResponse,
                        .context = call.context.id(),
                        .pid = call.context.client().pid,
                        .pasid = pasid.value_or(0),
                        .device = device->spec().name,
                        .dev_id = response.dev_id,
                        .grpid = response.grpid,
                        .code = response.code});
  return 0;
}

}  // namespace ioasid::dev_ioasid

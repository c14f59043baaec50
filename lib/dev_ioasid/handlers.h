// SPDX-License-Identifier: MIT
// The ioctl handlers, one file per object kind; dispatcher.cpp holds the table.
// A handler gets the decoded struct after the generic checks (direction, size,
// zero tail) and answers the command-specific rules of UAPI.md.
#pragma once

#include "base/result.h"
#include "memory/client_memory.h"
#include "dev_ioasid/context.h"
#include "dev_ioasid/fault_reports.h"

#include <linux/ioasid.h>

#include <atomic>
#include <cstdint>

namespace ioasid::dev_ioasid {

class Service;

struct Call {
  Service& service;
  Context& context;
  ClientMemory& memory;
  uint64_t arg;  // the integer argument of _IO commands
  // Set when the caller was interrupted (a signal): a wait gives up.
  const std::atomic<bool>* interrupted = nullptr;
};

// IOASID_FEAT_* mask of what the table serves.
uint32_t served_features();

// dispatcher.cpp: the core commands.
Result<long> get_api_version(Call& call);
Result<long> check_extension(Call& call);
Result<long> get_info(Call& call, ioasid_info& info);

// pasid.cpp
// The host PASID a request names: with `guest`, a guest PASID mapped by this file
// (ENOENT if not); else one of this file's PASIDs (ENOENT unallocated or being freed,
// EACCES another file's). With `take_reference` the caller owns a reference on it
// (Allocator::put, or a PasidReference).
Result<uint32_t> own_pasid(Call& call, uint32_t pasid, bool guest, bool take_reference = false);
Result<long> pasid_request(Call& call, ioasid_pasid_request& request);
Result<long> pasid_lookup(Call& call, ioasid_pasid_lookup& lookup);

// ioas.cpp
// ENOENT for an id that is not an IOASID of this file; find_kernel_managed also
// EINVAL for a nested one.
Result<std::shared_ptr<Ioas>> find_ioas(Call& call, uint32_t ioasid);
Result<std::shared_ptr<Ioas>> find_kernel_managed(Call& call, uint32_t ioasid);
Result<long> ioas_alloc(Call& call, ioasid_alloc& alloc);
Result<long> ioas_free(Call& call, ioasid_free& free);
Result<long> map_dma(Call& call, ioasid_map_dma& map);
Result<long> map_file(Call& call, ioasid_map_file& map);
Result<long> unmap_dma(Call& call, ioasid_unmap_dma& unmap);
Result<long> iova_ranges(Call& call, ioasid_iova_ranges& ranges);

// attach.cpp
// How the IOMMU translates through an IOASID (nested: with its current binding).
iommu::PasidEntry route_entry(const Ioas& ioas, uint32_t ioasid);
Result<long> attach_rid(Call& call, ioasid_attach& attach);
Result<long> attach_pasid(Call& call, ioasid_attach& attach);
Result<long> detach_rid(Call& call, ioasid_attach& attach);
Result<long> detach_pasid(Call& call, ioasid_attach& attach);

// nested.cpp
Result<long> bind_pgtbl(Call& call, ioasid_bind_pgtbl& bind);
Result<long> unbind_pgtbl(Call& call, ioasid_unbind_pgtbl& unbind);
Result<long> cache_invalidate(Call& call, ioasid_cache_invalidate& invalidate);

// dma.cpp
// A request a device makes on the caller's behalf (DEVICE_DMA, ATS_TRANSLATE).
struct DeviceRequest {
  uint32_t dev_id = 0;
  bool with_pasid = false;
  uint32_t pasid = 0;
  bool write = false;
  bool privileged = false;

  // Who a fault record says faulted, and with which access.
  FaultSource source(const devices::DeviceSpec& spec) const;
};
// The PASID rules every such request follows (UAPI.md, DEVICE_DMA): a PASID needs the
// capability and must fit it, and is never 0; without one, `pasid` must be 0 and the
// request cannot be privileged.
Result<void> check_request_pasid(const devices::DeviceSpec& spec, const DeviceRequest& request);
// What a device does after a fault at `fault.address`: on a PRI device at a PASID, a
// missing or too weak translation raises a page request (and, with `wait`, waits for
// its answer); anything else is unrecoverable, queued as a fault record when
// `queue_unrecoverable`.
enum class AfterFault {
  kRetry,        // PAGE_RESP SUCCESS: try the access again
  kFault,        // unrecoverable, or answered INVALID/FAILURE, or timed out
  kPageRequest,  // raised; not waited for
  kRetryLater,   // the fault queue was full: the IOMMU answered the request itself
};
Result<AfterFault> after_fault(Call& call, Device& device, const FaultSource& source, const devices::DmaFault& fault,
                               bool wait, bool queue_unrecoverable);
Result<long> device_dma(Call& call, ioasid_device_dma& dma);
Result<long> page_response(Call& call, ioasid_page_response& response);

// ats.cpp
Result<long> ats_translate(Call& call, ioasid_ats_translate& request);
Result<long> ats_inv_ack(Call& call, ioasid_ats_ack& ack);

// dsa.cpp
Result<long> wq_config(Call& call, ioasid_wq_config& config);
Result<long> device_submit(Call& call, ioasid_device_submit& submit);

// dirty.cpp
Result<long> set_dirty_tracking(Call& call, ioasid_dirty_tracking& tracking);
Result<long> get_dirty_bitmap(Call& call, ioasid_dirty_bitmap& request);

// device.cpp
Result<long> device_bind(Call& call, ioasid_device_bind& bind);
Result<long> device_unbind(Call& call, ioasid_device_unbind& unbind);
Result<long> device_get_info(Call& call, ioasid_device_info& info);

// Rejects non-zero reserved fields and unknown flag bits (both EOPNOTSUPP).
Result<void> check_reserved(uint64_t reserved, const char* field);
Result<void> check_flags(uint64_t flags, uint64_t known);

}  // namespace ioasid::dev_ioasid

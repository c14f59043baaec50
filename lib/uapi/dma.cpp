// DEVICE_DMA: a bound `dma` device reads or writes the caller's buffer at an IOVA,
// with or without a PASID, through the IOMMU. The ioctl succeeds whenever the device
// ran; a fault stops the transfer, is reported in the struct and queued to the file.
#include "devices/dma_function.h"
#include "uapi/handlers.h"
#include "uapi/service.h"


namespace ioasid::uapi {
namespace {

// The longest transfer one request may ask for (a device's maximum transfer size).
constexpr uint64_t kMaxDmaLength = 64ull << 20;

ioasid_fault fault_record(const ioasid_device_dma& dma, const devices::DmaFault& fault) {
  const bool with_pasid = dma.flags & IOASID_DMA_PASID;
  ioasid_fault record{};
  record.type = IOASID_FAULT_DMA_UNRECOV;
  record.flags = IOASID_FAULT_ADDR_VALID | (with_pasid ? IOASID_FAULT_PASID_VALID : 0) |
                 (fault.fetch_address ? IOASID_FAULT_FETCH_ADDR_VALID : 0);
  record.dev_id = dma.dev_id;
  record.pasid = with_pasid ? dma.pasid : 0;
  record.ioasid = fault.ioasid;
  record.reason = fault.reason;
  record.perm = ((dma.flags & IOASID_DMA_WRITE) ? IOASID_FAULT_PERM_WRITE : IOASID_FAULT_PERM_READ) |
                ((dma.flags & IOASID_DMA_PRIV) ? IOASID_FAULT_PERM_PRIV : 0);
  record.addr = fault.address;
  record.fetch_addr = fault.fetch_address.value_or(0);
  return record;
}

}  // namespace

Result<long> device_dma(Call& call, ioasid_device_dma& dma) {
  IOASID_TRY(check_flags(dma.flags, IOASID_DMA_WRITE | IOASID_DMA_PASID | IOASID_DMA_PRIV | IOASID_DMA_NOWAIT));
  IOASID_TRY(check_reserved(dma.__reserved, "__reserved"));
  auto device = call.context.objects().find<Device>(dma.dev_id);
  if (!device) return fail(ENOENT, "no device with dev_id {} in this file", dma.dev_id);
  const devices::DeviceSpec& spec = device->spec();
  if (device->removed()) return fail(ENODEV, "{} was removed by the admin", spec.name);
  if (spec.type != devices::DeviceType::Dma)
    return fail(EOPNOTSUPP, "{} is not a dma function (a dsa engine takes work through DEVICE_SUBMIT)", spec.name);
  const bool with_pasid = dma.flags & IOASID_DMA_PASID;
  if (with_pasid) {
    if (spec.pasid_bits == 0) return fail(EOPNOTSUPP, "{} has no PASID capability", spec.name);
    if (dma.pasid == 0) return fail(EINVAL, "PASID 0 is the RID's own (RID_PASID): send without the PASID flag");
    if (dma.pasid >= (1u << spec.pasid_bits))
      return fail(EINVAL, "pasid {} does not fit {}'s {} PASID bits", dma.pasid, spec.name, spec.pasid_bits);
  } else if (dma.pasid != 0) {
    return fail(EINVAL, "pasid {} given without IOASID_DMA_PASID", dma.pasid);
  }
  if (dma.length == 0) return fail(EINVAL, "length 0");
  if (dma.length > kMaxDmaLength)
    return fail(EINVAL, "length {:#x} is above the device's maximum transfer of {:#x}", dma.length, kMaxDmaLength);
  if (dma.iova + (dma.length - 1) < dma.iova)
    return fail(EOVERFLOW, "iova {:#x} + length {:#x} wraps", dma.iova, dma.length);

  auto outcome = devices::run_dma(call.service.iommu(), device->pasid_table(), device->device_tlb(),
                                  {.pasid = with_pasid ? dma.pasid : iommu::kRidPasid,
                                   .iova = dma.iova,
                                   .length = dma.length,
                                   .to_memory = bool(dma.flags & IOASID_DMA_WRITE),
                                   .buffer_memory = &call.memory,
                                   .buffer_address = dma.buf_uptr});
  IOASID_TRY(outcome);
  if (!outcome->fault) {
    dma.out_status = IOASID_DMA_OK;
    dma.out_fault_addr = 0;
    dma.out_fault_reason = 0;
    return 0;
  }
  const auto& fault = *outcome->fault;
  dma.out_status = IOASID_DMA_FAULT;
  dma.out_fault_addr = fault.address;
  dma.out_fault_reason = fault.reason;
  call.context.faults().push(fault_record(dma, fault));
  call.service.publish({.type = EventType::Fault,
                        .context = call.context.id(),
                        .pid = call.context.client().pid,
                        .pasid = with_pasid ? dma.pasid : 0,
                        .device = spec.name,
                        .dev_id = dma.dev_id,
                        .ioasid = fault.ioasid,
                        .address = fault.address,
                        .reason = fault.reason});
  return 0;
}

}  // namespace ioasid::uapi

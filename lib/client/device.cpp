// SPDX-License-Identifier: MIT
// Devices: DEVICE_BIND/UNBIND/GET_INFO, DEVICE_DMA, PAGE_RESP, and the routes of
// ATTACH/DETACH.
#include "internal.h"

#include <cstring>

namespace ioasid::client {

// ---------------------------------------------------------------- Device

Result<Device> Device::bind(const File& file, std::string_view name) {
  ioasid_device_bind request{};
  if (name.size() >= sizeof request.name)
    return Error{EINVAL, "IOASID_DEVICE_BIND: device name \"" + std::string(name) + "\" is longer than " +
                             std::to_string(sizeof request.name - 1) + " characters"};
  std::memcpy(request.name, name.data(), name.size());
  IOASID_CLIENT_TRY(detail::issue(file.fd(), IOASID_DEVICE_BIND, request));
  return Device(file.fd(), request.out_dev_id);
}

Device::~Device() { (void)unbind(); }

Result<void> Device::unbind() {
  ioasid_device_unbind request{.dev_id = id_};
  return detail::undo(fd_, IOASID_DEVICE_UNBIND, request);
}

Result<ioasid_device_info> Device::info() const {
  ioasid_device_info info{.dev_id = id_};
  IOASID_CLIENT_TRY(detail::issue(fd_.get(), IOASID_DEVICE_GET_INFO, info));
  return info;
}

Result<DmaOutcome> Device::dma(uint32_t flags, uint64_t iova, const void* buffer, uint64_t length,
                               const DmaOptions& options) const {
  ioasid_device_dma request{
      .dev_id = id_,
      .flags = flags | (options.pasid ? IOASID_DMA_PASID : 0u) | (options.privileged ? IOASID_DMA_PRIV : 0u) |
               (options.nowait ? IOASID_DMA_NOWAIT : 0u),
      .pasid = options.pasid.value_or(0),
      .iova = iova,
      .length = length,
      .buf_uptr = reinterpret_cast<uintptr_t>(buffer),
  };
  // The ioctl succeeds whenever the device ran; out_status says how the transfer ended.
  IOASID_CLIENT_TRY(detail::issue(fd_.get(), IOASID_DEVICE_DMA, request));
  return DmaOutcome{request.out_status, request.out_fault_addr, request.out_fault_reason};
}

Result<DmaOutcome> Device::dma_write(uint64_t iova, std::span<const std::byte> from, DmaOptions options) const {
  return dma(IOASID_DMA_WRITE, iova, from.data(), from.size(), options);
}

Result<DmaOutcome> Device::dma_read(uint64_t iova, std::span<std::byte> into, DmaOptions options) const {
  return dma(0, iova, into.data(), into.size(), options);
}

Result<void> Device::page_response(const ioasid_fault& request, uint32_t code) const {
  std::optional<uint32_t> pasid;
  if (request.flags & IOASID_FAULT_PASID_VALID) pasid = request.pasid;
  return page_response(request.grpid, pasid, code);
}

Result<void> Device::page_response(uint32_t grpid, std::optional<uint32_t> pasid, uint32_t code) const {
  ioasid_page_response response{
      .dev_id = id_,
      .flags = pasid ? IOASID_PAGE_RESP_PASID_VALID : 0u,
      .pasid = pasid.value_or(0),
      .grpid = grpid,
      .code = code,
  };
  return detail::issue(fd_.get(), IOASID_PAGE_RESP, response);
}

// ---------------------------------------------------------------- Attachment

Result<Attachment> Attachment::attach_route(const Device& device, const Ioas& ioas, std::optional<uint32_t> pasid) {
  ioasid_attach request{.dev_id = device.id_, .ioasid = ioas.id_, .pasid = pasid.value_or(0)};
  IOASID_CLIENT_TRY(
      detail::issue(device.fd_.get(), pasid ? IOASID_ATTACH_IOASID_PASID : IOASID_ATTACH_IOASID, request));
  return Attachment(device.fd_.get(), device.id_, ioas.id_, pasid);
}

Result<Attachment> Attachment::attach(const Device& device, const Ioas& ioas) {
  return attach_route(device, ioas, std::nullopt);
}

Result<Attachment> Attachment::attach_pasid(const Device& device, const Ioas& ioas, uint32_t pasid) {
  return attach_route(device, ioas, pasid);
}

Attachment::~Attachment() { (void)detach(); }

Result<void> Attachment::replace(const Ioas& ioas) {
  ioasid_attach request{
      .dev_id = dev_id_, .ioasid = ioas.id_, .pasid = pasid_.value_or(0), .flags = IOASID_ATTACH_REPLACE};
  if (!fd_) return Error{ENOENT, "ATTACH with REPLACE: this attachment holds no route any more"};
  IOASID_CLIENT_TRY(detail::issue(fd_.get(), pasid_ ? IOASID_ATTACH_IOASID_PASID : IOASID_ATTACH_IOASID, request));
  ioasid_ = ioas.id_;
  return {};
}

Result<void> Attachment::detach() {
  ioasid_attach request{.dev_id = dev_id_, .pasid = pasid_.value_or(0)};
  return detail::undo(fd_, pasid_ ? IOASID_DETACH_IOASID_PASID : IOASID_DETACH_IOASID, request);
}

}  // namespace ioasid::client

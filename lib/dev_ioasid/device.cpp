// SPDX-License-Identifier: MIT
// DEVICE_BIND, DEVICE_UNBIND, DEVICE_GET_INFO: a file takes exclusive ownership of
// an emulated device and names it by a dev_id of its own object table.
#include "dev_ioasid/handlers.h"
#include "dev_ioasid/service.h"

#include <cstring>
#include <string_view>

namespace ioasid::dev_ioasid {

Result<long> device_bind(Call& call, ioasid_device_bind& bind) {
  IOASID_TRY(check_flags(bind.flags, 0));
  const void* end = std::memchr(bind.name, '\0', sizeof bind.name);
  if (!end) return fail(EINVAL, "name is not NUL-terminated within its {} bytes", sizeof bind.name);
  const std::string_view name(bind.name, static_cast<const char*>(end) - bind.name);
  auto device = call.service.devices().bind(name, call.context.id());
  IOASID_TRY(device);
  auto dev_id = call.context.objects().insert(*device);
  if (!dev_id) {
    call.service.devices().unbind(**device, call.context.id());
    return std::move(dev_id).error();
  }
  bind.out_dev_id = *dev_id;
  call.service.publish({.type = EventType::DeviceBind,
                        .context = call.context.id(),
                        .pid = call.context.client().pid,
                        .device = (*device)->spec().name,
                        .dev_id = bind.out_dev_id});
  return 0;
}

Result<long> device_unbind(Call& call, ioasid_device_unbind& unbind) {
  IOASID_TRY(check_flags(unbind.flags, 0));
  auto device = call.context.objects().remove<Device>(unbind.dev_id);
  if (!device) return fail(ENOENT, "no device with dev_id {} in this file", unbind.dev_id);
  call.service.unbind_device(call.context, unbind.dev_id, *device);
  return 0;
}

Result<long> device_get_info(Call& call, ioasid_device_info& info) {
  auto device = call.context.objects().find<Device>(info.dev_id);
  if (!device) return fail(ENOENT, "no device with dev_id {} in this file", info.dev_id);
  if (device->removed()) return fail(ENODEV, "{} (dev_id {}) was removed by the admin", device->spec().name, info.dev_id);
  const devices::DeviceSpec& spec = device->spec();
  info.flags = spec.capability_flags();
  info.rid = spec.rid;
  info.pasid_bits = spec.pasid_bits;
  info.type = static_cast<uint32_t>(spec.type);
  info.num_wqs = spec.num_wqs;
  std::memset(info.name, 0, sizeof info.name);
  std::memcpy(info.name, spec.name.data(), std::min(spec.name.size(), sizeof info.name - 1));
  return 0;
}

}  // namespace ioasid::dev_ioasid

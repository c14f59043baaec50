// SPDX-License-Identifier: MIT
// Devices of /dev/iommu: the selftest's mock devices are engine devices (listed by
// the admin with the rest) bound to the file that made them, attached by their RID to
// a paging domain; GET_HW_INFO reports what the mock driver reports.
#include "dev_iommu/handlers.h"
#include "dev_iommu/service.h"

#include <fmt/format.h>

#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace ioasid::dev_iommu {
namespace {

constexpr uint32_t kMockDeviceFlags = MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_HUGE_IOVA | MOCK_FLAGS_DEVICE_PASID;
// Mock devices sit on PCI buses 0xe0-0xff, away from configured devices.
constexpr uint16_t kMockRidBase = 0xe000;
constexpr int kNameAttempts = 16;
// GET_HW_INFO zero-fills the caller's buffer past the data: up to this much.
constexpr uint32_t kMaxHwInfoLength = 64 * 1024;

iommu::PasidEntry route_entry(const HwptPaging& hwpt) {
  return {.ioasid = hwpt.id(),
          .domain = hwpt.table->domain(),
          .type = iommu::TranslationType::kSecondLevel,
          .levels = static_cast<uint8_t>(hwpt.table->levels()),
          .root = hwpt.table->root(),
          .second_level_domain = hwpt.table->domain()};
}

// An automatic domain goes with its last device.
void drop_if_unused_auto(Call& call, Use<HwptPaging> old) {
  if (!old || !old->auto_domain || old->users() != 1) return;
  const uint32_t id = old->id();
  old.reset();
  call.context.objects().erase(id);
}

}  // namespace

BoundDevice::~BoundDevice() {
  (void)unroute();
  registry_.unbind(*device, context_);
  registry_.remove(*device);
}

bool BoundDevice::can_track_dirty() const { return !(flags & MOCK_FLAGS_DEVICE_NO_DIRTY); }
uint32_t BoundDevice::pasid_width() const { return device->spec().pasid_bits; }

void BoundDevice::route(const HwptPaging& paging, uint32_t hwpt_id) {
  iommu::PasidEntry entry = route_entry(paging);
  entry.ioasid = hwpt_id;
  const auto old = device->pasid_table().set(iommu::kRidPasid, entry);
  (void)device->set_route_hold(iommu::kRidPasid, {.context = context_, .keeps = nullptr});
  if (old) iommu_.flush_pasid(old->domain, iommu::kRidPasid);
}

void BoundDevice::leave_nested() {
  if (attached_nested_ && attached_nested_->fault) attached_nested_->fault->forget_device(id());
  attached_nested_.reset();
}

Use<HwptPaging> BoundDevice::route_to(Use<HwptPaging> hwpt) {
  {
    std::lock_guard lock(device->attach_mutex());
    route(*hwpt, hwpt->id());
  }
  leave_nested();
  std::swap(attached_, hwpt);
  return hwpt;
}

Use<HwptPaging> BoundDevice::route_to(Use<HwptNested> hwpt) {
  {
    std::lock_guard lock(device->attach_mutex());
    route(*hwpt->parent, hwpt->id());
  }
  leave_nested();
  attached_nested_ = std::move(hwpt);
  return std::move(attached_);
}

Use<HwptPaging> BoundDevice::unroute() {
  {
    std::lock_guard lock(device->attach_mutex());
    if (const auto old = device->pasid_table().clear(iommu::kRidPasid))
      iommu_.flush_pasid(old->domain, iommu::kRidPasid);
    (void)device->take_route_hold(iommu::kRidPasid);
  }
  leave_nested();
  return std::move(attached_);
}

Result<std::shared_ptr<BoundDevice>> bind_mock_device(Call& call, uint32_t flags) {
  if (flags & ~kMockDeviceFlags) return fail(EINVAL, "unknown mock device flags {:#x}", flags & ~kMockDeviceFlags);
  auto& engine = call.service.engine();
  // Mock devices take places in the engine's device list (the admin's too): bounded per user.
  auto charge = call.service.mock_devices_quota().charge(call.context.client().uid);
  IOASID_TRY(charge);
  Result<std::shared_ptr<engine::Device>> added = fail(EEXIST, "no free mock device name");
  for (int attempt = 0; attempt < kNameAttempts && !added && added.code() == EEXIST; ++attempt) {
    const uint32_t number = call.service.next_mock_number();
    devices::DeviceSpec spec{.name = fmt::format("mock{}", number),
                             .type = devices::DeviceType::Dma,
                             .rid = static_cast<uint16_t>(kMockRidBase | (number & 0x1fff)),
                             .pasid_bits = (flags & MOCK_FLAGS_DEVICE_PASID) ? uint32_t{MOCK_PASID_WIDTH} : 0};
    added = engine.devices().add(std::move(spec));
  }
  IOASID_TRY(added);
  auto bound = engine.devices().bind((*added)->spec().name, call.context.id());
  if (!bound) {
    (void)engine.devices().remove((*added)->spec().name);
    return std::move(bound).error();
  }
  auto device =
      std::make_shared<BoundDevice>(std::move(*bound), engine.devices(), engine.iommu(), call.context.id(), flags);
  device->mock_charge = std::move(*charge);
  return device;
}

Result<uint32_t> attach_device(Call& call, BoundDevice& device, uint32_t pt_id) {
  auto target = call.context.objects().find_any(pt_id);
  if (!target) return fail(ENOENT, "no IOAS or HWPT {} in this file", pt_id);
  std::shared_ptr<HwptPaging> hwpt;
  if (target->type() == ObjectType::HwptPaging) {
    hwpt = std::static_pointer_cast<HwptPaging>(target);
    if (hwpt->enforce_dirty_tracking && !device.can_track_dirty())
      return fail(EINVAL, "HWPT {} tracks dirty pages, device {} cannot", pt_id, device.id());
  } else if (target->type() == ObjectType::Ioas) {
    auto ioas = std::static_pointer_cast<Ioas>(target);
    // An automatic domain of the IOAS is reused: mock domains are interchangeable.
    if (HwptPaging* current = device.attached(); current && current->auto_domain && current->ioas.get() == ioas.get())
      return current->id();
    for (const auto& object : call.context.objects().all(ObjectType::HwptPaging))
      if (auto candidate = std::static_pointer_cast<HwptPaging>(object);
          candidate->auto_domain && candidate->ioas.get() == ioas.get()) {
        hwpt = std::move(candidate);
        break;
      }
    if (!hwpt) {
      auto charge = call.service.engine().ioasids_quota().charge(call.context.client().uid);
      IOASID_TRY(charge);
      auto made = make_hwpt_paging(call, ioas, device, /*automatic=*/true, false, false);
      IOASID_TRY(made);
      hwpt = std::move(*made);
      call.context.objects().insert(hwpt, std::move(*charge));
    }
  } else if (target->type() == ObjectType::HwptNested) {
    Use<HwptPaging> old = device.route_to(Use<HwptNested>(std::static_pointer_cast<HwptNested>(target)));
    drop_if_unused_auto(call, std::move(old));
    return pt_id;
  } else {
    return fail(EINVAL, "{} {} is neither an IOAS nor an HWPT", object_type_name(target->type()), pt_id);
  }
  const uint32_t id = hwpt->id();
  Use<HwptPaging> old = device.route_to(Use<HwptPaging>(std::move(hwpt)));
  drop_if_unused_auto(call, std::move(old));
  return id;
}

void destroy_mock_device(Call& call, MockDevice& mock) {
  auto bound = mock.idev.shared();
  call.context.objects().erase(mock.id());
  mock.idev.reset();
  Use<HwptPaging> old = bound->unroute();
  drop_if_unused_auto(call, std::move(old));
  call.context.objects().erase(bound->id());
}

Result<long> get_hw_info(Call& call, iommu_hw_info& cmd) {
  if (cmd.flags & ~IOMMU_HW_INFO_FLAG_INPUT_TYPE)
    return fail(EOPNOTSUPP, "unknown flag bits {:#x}", cmd.flags & ~IOMMU_HW_INFO_FLAG_INPUT_TYPE);
  if (std::ranges::any_of(cmd.__reserved, [](auto byte) { return byte != 0; }))
    return fail(EOPNOTSUPP, "__reserved is not zero");
  auto device = find_object<BoundDevice>(call, cmd.dev_id, ObjectType::Device);
  IOASID_TRY(device);
  if ((cmd.flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE) && cmd.in_data_type != IOMMU_HW_INFO_TYPE_DEFAULT &&
      cmd.in_data_type != IOMMU_HW_INFO_TYPE_SELFTEST)
    return fail(EOPNOTSUPP, "in_data_type {:#x}: the mock IOMMU reports only type {:#x}", cmd.in_data_type,
                IOMMU_HW_INFO_TYPE_SELFTEST);
  const iommu_test_hw_info info{.flags = 0, .test_reg = IOMMU_HW_INFO_SELFTEST_REGVAL};
  const auto bytes = std::as_bytes(std::span(&info, 1));
  const size_t copied = std::min<size_t>(cmd.data_len, bytes.size());
  IOASID_TRY(call.memory.write(cmd.data_uptr, bytes.first(copied)));
  // The rest of the caller's buffer is zeroed, as iommufd does, up to a bound.
  static constexpr std::array<std::byte, 4096> kZeros{};
  const uint64_t filled = std::min<uint64_t>(cmd.data_len, kMaxHwInfoLength);
  for (uint64_t at = copied; at < filled;) {
    const size_t n = std::min<uint64_t>(kZeros.size(), filled - at);
    IOASID_TRY(call.memory.write(cmd.data_uptr + at, std::span(kZeros).first(n)));
    at += n;
  }
  if (cmd.data_len > kMaxHwInfoLength)
    return fail(EINVAL, "data_len {} is above the {} bytes this daemon fills", cmd.data_len, kMaxHwInfoLength);
  cmd.data_len = sizeof info;
  cmd.out_data_type = IOMMU_HW_INFO_TYPE_SELFTEST;
  cmd.out_capabilities = (*device)->can_track_dirty() ? IOMMU_HW_CAP_DIRTY_TRACKING : 0;
  cmd.out_max_pasid_log2 = static_cast<uint8_t>((*device)->pasid_width());
  return 0;
}

// As the kernel's capable(): the capability in the caller's effective set, held in the
// daemon's own user namespace. A process in a user namespace of its own has every
// capability there and none here.
bool caller_capable(const Call& call, int capability) {
  std::error_code error;
  const auto ns = std::filesystem::read_symlink(fmt::format("/proc/{}/ns/user", call.memory.pid()), error);
  if (error || ns != std::filesystem::read_symlink("/proc/self/ns/user", error) || error) return false;
  std::ifstream status(fmt::format("/proc/{}/status", call.memory.pid()));
  for (std::string line; std::getline(status, line);)
    if (line.starts_with("CapEff:")) return (std::strtoull(line.c_str() + 7, nullptr, 16) >> capability) & 1;
  return false;
}

}  // namespace ioasid::dev_iommu

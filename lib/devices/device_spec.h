// SPDX-License-Identifier: MIT
// An emulated PCI function as configured: what DEVICE_GET_INFO reports and what
// `--device` and the admin's device-add describe.
#pragma once

#include "base/result.h"

#include <linux/ioasid.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ioasid::devices {

enum class DeviceType : uint32_t { Dma = IOASID_DEVICE_TYPE_DMA, Dsa = IOASID_DEVICE_TYPE_DSA };

// The bounds of a spec, each naming what it caps. A spec comes from --device or from
// the admin's device-add, and what it asks for the daemon allocates: a wqs= with no
// bound once grew the daemon to 24 GB.
inline constexpr size_t kMaxSpecLength = 256;  // bytes; the longest valid spec has about 80
inline constexpr size_t kMaxNameLength = sizeof(ioasid_device_bind{}.name) - 1;  // its NUL
inline constexpr uint32_t kMaxPasidBits = 20;  // the PCIe PASID capability's width
inline constexpr uint32_t kMaxWorkQueues = 64;  // per dsa device (Intel DSA has 8)
inline constexpr size_t kMaxDevices = 256;  // listed at once, the defaults included

struct DeviceSpec {
  std::string name;  // 1..31 of A-Z a-z 0-9 _ . -, so never a PCI address, a log line or JSON syntax
  DeviceType type = DeviceType::Dma;
  uint16_t rid = 0;         // bus << 8 | device << 3 | function
  uint32_t pasid_bits = 0;  // 0: no PASID capability
  bool pri = false;         // page requests (needs PASID)
  bool ats = false;         // device-TLB
  uint32_t num_wqs = 0;     // work queues (dsa)

  // IOASID_DEVICE_* bits.
  uint32_t capability_flags() const;
};

// "0000:00:03.0" (domain 0 only) or "00:03.0".
Result<uint16_t> parse_pci_address(std::string_view text);
std::string pci_address(uint16_t rid);

// TYPE[,key=value|flag...]: e.g. "dma,name=dma0,pci=00:03.0,pasid=20,pri,ats" or
// "dsa,name=dsa0,pci=00:05.0,pasid=20,wqs=8". name= and pci= are required; unset:
// pasid 0, no PRI/ATS; dsa gets 8 work queues and PASID 20. EINVAL, naming the bound,
// for anything outside the bounds above.
Result<DeviceSpec> parse_device_spec(std::string_view text);
// The checks of parse_device_spec that a DeviceSpec made in code must pass too (the
// registry applies them to every device it adds). EINVAL naming the bound.
Result<void> check_device_spec(const DeviceSpec& spec);
std::string describe(const DeviceSpec& spec);  // the same syntax, complete

// When no --device is given: dma0 with PASID, PRI and ATS, and a plain dma1.
std::vector<DeviceSpec> default_devices();

}  // namespace ioasid::devices

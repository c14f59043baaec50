// An emulated PCI function as configured: what DEVICE_GET_INFO reports and what
// `--device` and the admin's device-add describe.
#pragma once

#include "base/result.h"

#include <linux/ioasid.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ioasid::devices {

enum class DeviceType : uint32_t { Dma = IOASID_DEVICE_TYPE_DMA, Dsa = IOASID_DEVICE_TYPE_DSA };

struct DeviceSpec {
  std::string name;  // at most 31 bytes, as DEVICE_BIND's name field
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
// pasid 0, no PRI/ATS; dsa gets 8 work queues and PASID 20.
Result<DeviceSpec> parse_device_spec(std::string_view text);
std::string describe(const DeviceSpec& spec);  // the same syntax, complete

// When no --device is given: dma0 with PASID, PRI and ATS, and a plain dma1.
std::vector<DeviceSpec> default_devices();

}  // namespace ioasid::devices

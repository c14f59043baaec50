#include "devices/device_spec.h"

#include <fmt/format.h>

#include <charconv>

namespace ioasid::devices {
namespace {

constexpr uint32_t kDsaDefaultWorkQueues = 8;
constexpr uint32_t kMaxPasidBits = 20;
constexpr size_t kMaxNameLength = sizeof(ioasid_device_bind{}.name) - 1;

template <typename T>
bool parse_number(std::string_view text, T& out, int base = 10) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out, base);
  return error == std::errc{} && end == text.data() + text.size();
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

}  // namespace

uint32_t DeviceSpec::capability_flags() const {
  uint32_t flags = 0;
  if (pasid_bits) flags |= IOASID_DEVICE_PASID;
  if (pri) flags |= IOASID_DEVICE_PRI;
  if (ats) flags |= IOASID_DEVICE_ATS;
  if (type == DeviceType::Dsa) flags |= IOASID_DEVICE_SIOV;
  return flags;
}

Result<uint16_t> parse_pci_address(std::string_view text) {
  auto parts = split(text, ':');
  if (parts.size() == 3) {
    unsigned domain = 0;
    if (!parse_number(parts[0], domain, 16) || domain != 0)
      return fail(EINVAL, "PCI address '{}': only domain 0000 exists", text);
    parts.erase(parts.begin());
  }
  if (parts.size() != 2) return fail(EINVAL, "PCI address '{}' is not [DDDD:]BB:DD.F", text);
  const auto device_function = split(parts[1], '.');
  unsigned bus = 0, device = 0, function = 0;
  if (device_function.size() != 2 || !parse_number(parts[0], bus, 16) ||
      !parse_number(device_function[0], device, 16) || !parse_number(device_function[1], function, 16) ||
      bus > 0xff || device > 0x1f || function > 7)
    return fail(EINVAL, "PCI address '{}' is not [DDDD:]BB:DD.F", text);
  return static_cast<uint16_t>(bus << 8 | device << 3 | function);
}

std::string pci_address(uint16_t rid) {
  return fmt::format("0000:{:02x}:{:02x}.{:x}", rid >> 8, (rid >> 3) & 0x1f, rid & 7);
}

Result<DeviceSpec> parse_device_spec(std::string_view text) {
  const auto fields = split(text, ',');
  DeviceSpec spec;
  if (fields[0] == "dma") {
    spec.type = DeviceType::Dma;
  } else if (fields[0] == "dsa") {
    spec.type = DeviceType::Dsa;
    spec.pasid_bits = kMaxPasidBits;
    spec.num_wqs = kDsaDefaultWorkQueues;
  } else {
    return fail(EINVAL, "device '{}': the type must be dma or dsa", text);
  }
  bool has_pci = false;
  for (size_t i = 1; i < fields.size(); ++i) {
    const std::string_view field = fields[i];
    const size_t equals = field.find('=');
    const std::string_view key = field.substr(0, equals);
    const std::string_view value = equals == std::string_view::npos ? std::string_view{} : field.substr(equals + 1);
    if (key == "name" && !value.empty()) {
      spec.name = value;
    } else if (key == "pci" && !value.empty()) {
      auto rid = parse_pci_address(value);
      IOASID_TRY(rid);
      spec.rid = *rid;
      has_pci = true;
    } else if (key == "pasid" && parse_number(value, spec.pasid_bits)) {
      if (spec.pasid_bits > kMaxPasidBits) return fail(EINVAL, "device '{}': pasid bits must be 0..20", text);
    } else if (key == "wqs" && parse_number(value, spec.num_wqs)) {
    } else if (key == "pri" && value.empty()) {
      spec.pri = true;
    } else if (key == "ats" && value.empty()) {
      spec.ats = true;
    } else {
      return fail(EINVAL, "device '{}': unknown or malformed field '{}'", text, field);
    }
  }
  if (spec.name.empty() || spec.name.size() > kMaxNameLength)
    return fail(EINVAL, "device '{}': name= must be 1..{} characters", text, kMaxNameLength);
  if (!has_pci) return fail(EINVAL, "device '{}': pci= is required", text);
  if (spec.pri && spec.pasid_bits == 0) return fail(EINVAL, "device '{}': PRI needs PASID (pasid=N)", text);
  if (spec.type == DeviceType::Dma && spec.num_wqs != 0)
    return fail(EINVAL, "device '{}': only dsa devices have work queues", text);
  return spec;
}

std::string describe(const DeviceSpec& spec) {
  std::string out = fmt::format("{},name={},pci={},pasid={}", spec.type == DeviceType::Dsa ? "dsa" : "dma",
                                spec.name, pci_address(spec.rid), spec.pasid_bits);
  if (spec.pri) out += ",pri";
  if (spec.ats) out += ",ats";
  if (spec.type == DeviceType::Dsa) out += fmt::format(",wqs={}", spec.num_wqs);
  return out;
}

std::vector<DeviceSpec> default_devices() {
  return {
      DeviceSpec{.name = "dma0", .type = DeviceType::Dma, .rid = 0x18, .pasid_bits = 20, .pri = true, .ats = true},
      DeviceSpec{.name = "dma1", .type = DeviceType::Dma, .rid = 0x20},
      DeviceSpec{.name = "dsa0",
                 .type = DeviceType::Dsa,
                 .rid = 0x28,
                 .pasid_bits = 20,
                 .pri = true,
                 .ats = true,
                 .num_wqs = kDsaDefaultWorkQueues},
  };
}

}  // namespace ioasid::devices

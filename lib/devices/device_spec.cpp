// SPDX-License-Identifier: MIT
#include "devices/device_spec.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

namespace ioasid::devices {
namespace {

constexpr uint32_t kDsaDefaultWorkQueues = 8;
static_assert(kDsaDefaultWorkQueues <= kMaxWorkQueues);

template <typename T>
bool parse_number(std::string_view text, T& out, int base = 10) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), out, base);
  return error == std::errc{} && end == text.data() + text.size();
}

// A count field's value within min..max. A number too large for any integer type is
// out of range like any other, not "malformed": the error names the bound either way.
Result<uint32_t> bounded_field(std::string_view text, std::string_view key, std::string_view value, uint32_t min,
                               uint32_t max) {
  uint64_t number = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), number);
  if (end != value.data() + value.size() || (error != std::errc{} && error != std::errc::result_out_of_range) ||
      value.empty())
    return fail(EINVAL, "device {:?}: {}={:?} is not a number ({} must be {}..{})", text, key, value, key, min, max);
  if (error == std::errc::result_out_of_range || number < min || number > max)
    return fail(EINVAL, "device {:?}: {}={} is out of range ({} must be {}..{})", text, key, value, key, min, max);
  return static_cast<uint32_t>(number);
}

// Names end up in DEVICE_BIND, log lines, JSON and device-remove, which also takes a
// PCI address: letters, digits and "_.-" are safe in all of them and never read as
// an address (which needs ':').
bool is_name_character(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == '-';
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
  if (text.size() > kMaxSpecLength)  // shown in part: a refusal must not echo 64 KiB into the log
    return fail(EINVAL, "device spec {:?}... is {} bytes long (at most {})", text.substr(0, 40), text.size(),
                kMaxSpecLength);
  const auto fields = split(text, ',');
  DeviceSpec spec;
  if (fields[0] == "dma") {
    spec.type = DeviceType::Dma;
  } else if (fields[0] == "dsa") {
    spec.type = DeviceType::Dsa;
    spec.pasid_bits = kMaxPasidBits;
    spec.num_wqs = kDsaDefaultWorkQueues;
  } else {
    return fail(EINVAL, "device {:?}: the type must be dma or dsa", text);
  }
  bool has_pci = false;
  bool has_wqs = false;
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
    } else if (key == "pasid" && equals != std::string_view::npos) {
      auto bits = bounded_field(text, key, value, 0, kMaxPasidBits);
      IOASID_TRY(bits);
      spec.pasid_bits = *bits;
    } else if (key == "wqs" && equals != std::string_view::npos) {
      auto wqs = bounded_field(text, key, value, 1, kMaxWorkQueues);
      IOASID_TRY(wqs);
      spec.num_wqs = *wqs;
      has_wqs = true;
    } else if (key == "pri" && value.empty()) {
      spec.pri = true;
    } else if (key == "ats" && value.empty()) {
      spec.ats = true;
    } else {
      return fail(EINVAL, "device {:?}: unknown or malformed field {:?}", text, field);
    }
  }
  if (!has_pci) return fail(EINVAL, "device {:?}: pci= is required", text);
  if (spec.type == DeviceType::Dma && has_wqs)
    return fail(EINVAL, "device {:?}: only dsa devices have work queues", text);
  if (auto checked = check_device_spec(spec); !checked)
    return fail(checked.code(), "device {:?}: {}", text, checked.error().why);
  return spec;
}

Result<void> check_device_spec(const DeviceSpec& spec) {
  if (spec.name.empty() || spec.name.size() > kMaxNameLength ||
      !std::all_of(spec.name.begin(), spec.name.end(), is_name_character))
    return fail(EINVAL, "name={:?}: a name is 1..{} characters of A-Z a-z 0-9 _ . -", spec.name, kMaxNameLength);
  if (spec.pasid_bits > kMaxPasidBits)
    return fail(EINVAL, "pasid={}: pasid must be 0..{}", spec.pasid_bits, kMaxPasidBits);
  if (spec.pri && spec.pasid_bits == 0) return fail(EINVAL, "PRI needs PASID (pasid=N)");
  if (spec.type == DeviceType::Dma && spec.num_wqs != 0) return fail(EINVAL, "only dsa devices have work queues");
  if (spec.type == DeviceType::Dsa && (spec.num_wqs < 1 || spec.num_wqs > kMaxWorkQueues))
    return fail(EINVAL, "wqs={}: wqs must be 1..{}", spec.num_wqs, kMaxWorkQueues);
  return success();
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

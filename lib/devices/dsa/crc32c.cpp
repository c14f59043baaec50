// SPDX-License-Identifier: MIT
#include "devices/dsa/crc32c.h"

#include <array>
#include <cstring>

namespace ioasid::devices::dsa {
namespace {

constexpr uint32_t kReflectedPolynomial = 0x82f63b78;

constexpr std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) ? kReflectedPolynomial : 0);
    table[i] = crc;
  }
  return table;
}
constexpr auto kTable = make_table();

uint32_t update_bytewise(uint32_t crc, std::span<const std::byte> data) {
  for (std::byte byte : data) crc = (crc >> 8) ^ kTable[(crc ^ static_cast<uint8_t>(byte)) & 0xff];
  return crc;
}

#if defined(__x86_64__)
// The CPU's crc32 instruction computes exactly this polynomial, 8 bytes at a time.
__attribute__((target("sse4.2"))) uint32_t update_sse42(uint32_t crc, std::span<const std::byte> data) {
  const std::byte* p = data.data();
  size_t left = data.size();
  uint64_t crc64 = crc;
  for (; left >= 8; p += 8, left -= 8) {
    uint64_t word;
    std::memcpy(&word, p, sizeof word);
    crc64 = __builtin_ia32_crc32di(crc64, word);
  }
  crc = static_cast<uint32_t>(crc64);
  for (; left > 0; ++p, --left) crc = __builtin_ia32_crc32qi(crc, static_cast<uint8_t>(*p));
  return crc;
}

const bool kHasSse42 = __builtin_cpu_supports("sse4.2");

uint32_t update(uint32_t crc, std::span<const std::byte> data) {
  return kHasSse42 ? update_sse42(crc, data) : update_bytewise(crc, data);
}
#else
// Other architectures take the table: correct everywhere, and the engine's CRC is a
// model's, not a product's hot path.
uint32_t update(uint32_t crc, std::span<const std::byte> data) { return update_bytewise(crc, data); }
#endif

}  // namespace

uint32_t crc32c(uint32_t seed, std::span<const std::byte> data) { return ~update(~seed, data); }

}  // namespace ioasid::devices::dsa

// SPDX-License-Identifier: MIT
// CRC-32C (Castagnoli, reflected: iSCSI's, and DSA's CRCGEN). crc32c(seed, data)
// continues a CRC: crc32c(crc32c(0, a), b) == crc32c(0, a + b); "123456789" gives
// 0xe3069283 from seed 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace ioasid::devices::dsa {

uint32_t crc32c(uint32_t seed, std::span<const std::byte> data);

}  // namespace ioasid::devices::dsa

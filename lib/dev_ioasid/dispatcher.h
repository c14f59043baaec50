// SPDX-License-Identifier: MIT
// Decodes one ioctl against the command table and runs its handler.
#pragma once

#include "base/result.h"
#include "dev_ioasid/handlers.h"

#include <cstdint>
#include <span>

namespace ioasid::dev_ioasid {

Result<long> dispatch(Call& call, uint32_t cmd, std::span<std::byte> buf);

}  // namespace ioasid::dev_ioasid

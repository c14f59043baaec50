// Decodes one ioctl against the command table and runs its handler.
#pragma once

#include "base/result.h"
#include "uapi/handlers.h"

#include <cstdint>
#include <span>

namespace ioasid::uapi {

Result<long> dispatch(Call& call, uint32_t cmd, std::span<std::byte> buf);

}  // namespace ioasid::uapi

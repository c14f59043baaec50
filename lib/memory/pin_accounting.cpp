// SPDX-License-Identifier: MIT
#include "memory/pin_accounting.h"

namespace ioasid {

PinAccounting::PinAccounting(uint64_t limit_pages)
    : quota_(limit_pages, /*root_exempt=*/false, [](uid_t uid, uint64_t pages, uint64_t already, uint64_t limit) {
        return fail(ENOMEM,
                    "uid {} cannot pin {} more pages ({} KiB): {} already pinned, the limit is {} "
                    "pages ({} MiB) per user",
                    uid, pages, pages << (kPageShift - 10), already, limit, (limit << kPageShift) >> 20);
      }) {}

}  // namespace ioasid

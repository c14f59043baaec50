// SPDX-License-Identifier: MIT
// PASIDs: PASID_REQUEST ALLOC/FREE and PASID_LOOKUP.
#include "internal.h"

namespace ioasid::client {

Result<Pasid> Pasid::allocate(const File& file, std::optional<PasidRange> range, std::optional<uint32_t> gpasid) {
  if (!range) {
    auto info = file.info();
    IOASID_CLIENT_TRY(info);
    range = PasidRange{1, info->pasid_bits >= 32 ? UINT32_MAX : (1u << info->pasid_bits) - 1};
  }
  ioasid_pasid_request request{
      .flags = IOASID_PASID_ALLOC | (gpasid ? IOASID_PASID_GPASID : 0u),
      .min = range->min,
      .max = range->max,
      .gpasid = gpasid.value_or(0),
  };
  IOASID_CLIENT_TRY(detail::issue(file.fd(), IOASID_PASID_REQUEST, request));
  return Pasid(file.fd(), request.pasid, gpasid);
}

Result<uint32_t> Pasid::lookup(const File& file, uint32_t gpasid) {
  ioasid_pasid_lookup lookup{.gpasid = gpasid};
  IOASID_CLIENT_TRY(detail::issue(file.fd(), IOASID_PASID_LOOKUP, lookup));
  return lookup.out_pasid;
}

Pasid::~Pasid() { (void)free(); }

Result<void> Pasid::free() {
  ioasid_pasid_request request{.flags = IOASID_PASID_FREE, .min = value_, .max = value_};
  return detail::undo(fd_, IOASID_PASID_REQUEST, request);
}

Result<uint32_t> free_pasids(const File& file, PasidRange range) {
  ioasid_pasid_request request{.flags = IOASID_PASID_FREE, .min = range.min, .max = range.max};
  IOASID_CLIENT_TRY(detail::issue(file.fd(), IOASID_PASID_REQUEST, request));
  return request.pasid;  // FREE writes the count here
}

}  // namespace ioasid::client

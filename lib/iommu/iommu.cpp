#include "iommu/iommu.h"

namespace ioasid::iommu {

namespace {
constexpr size_t kDomainIds = 1u << 16;
}

Iommu::Iommu(IommuConfig config)
    : config_(config),
      memory_(config.max_table_pages),
      iotlb_(config.iotlb_entries),
      pins_(config.pin_limit_pages),
      domains_in_use_(kDomainIds, false) {
  domains_in_use_[0] = true;
}

Result<uint16_t> Iommu::allocate_domain() {
  std::lock_guard lock(domains_mutex_);
  // Next fit: a freed id is reused as late as possible, so stale IOTLB tags of a
  // dead domain can never match a new one before they are long flushed.
  for (size_t tried = 0; tried < kDomainIds; ++tried) {
    const uint16_t candidate = next_domain_;
    next_domain_ = static_cast<uint16_t>(next_domain_ == kDomainIds - 1 ? 1 : next_domain_ + 1);
    if (!domains_in_use_[candidate]) {
      domains_in_use_[candidate] = true;
      return candidate;
    }
  }
  return fail(ENOSPC, "all {} domain ids are in use", kDomainIds - 1);
}

void Iommu::free_domain(uint16_t domain) {
  iotlb_.invalidate_domain(domain);
  std::lock_guard lock(domains_mutex_);
  if (domain != 0) domains_in_use_[domain] = false;
}

}  // namespace ioasid::iommu

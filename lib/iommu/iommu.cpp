// SPDX-License-Identifier: MIT
#include "iommu/iommu.h"

#include "base/fail_nth.h"

#include <algorithm>

namespace ioasid::iommu {

namespace {
constexpr size_t kDomainIds = 1u << 16;
}

Iommu::Iommu(IommuConfig config)
    : config_(config),
      memory_(config.max_table_pages),
      iotlb_(config.iotlb_entries),
      pasid_cache_(config.pasid_cache_entries),
      pins_(config.pin_limit_pages),
      domains_in_use_(kDomainIds, false),
      dirty_tracking_(std::make_unique<std::atomic<bool>[]>(kDomainIds)) {
  domains_in_use_[0] = true;
}

size_t Iommu::domains_in_use() const {
  std::lock_guard lock(domains_mutex_);
  return static_cast<size_t>(std::count(domains_in_use_.begin(), domains_in_use_.end(), true));
}

Result<uint16_t> Iommu::allocate_domain() {
  IOASID_TRY(fail_nth::point(fail_nth::Site::kAllocation, "a domain id"));
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
  flush_domain(domain);
  pasid_cache_.invalidate_domain(domain);
  dirty_tracking_[domain].store(false, std::memory_order_relaxed);
  std::lock_guard lock(domains_mutex_);
  if (domain != 0) domains_in_use_[domain] = false;
}

Result<Domain> Iommu::make_domain() {
  auto id = allocate_domain();
  IOASID_TRY(id);
  return Domain(*this, *id);
}

Domain::~Domain() {
  if (iommu_) iommu_->free_domain(id_);
}

void Iommu::set_dirty_tracking(uint16_t domain, bool enabled) {
  dirty_tracking_[domain].store(enabled, std::memory_order_release);
  // Cached entries were filled under the old rule (with write rights that skip D).
  flush_domain(domain);
}

bool Iommu::dirty_tracking(uint16_t domain) const { return dirty_tracking_[domain].load(std::memory_order_acquire); }

Iommu::DeviceTlbRegistration Iommu::register_device_tlb(Iotlb& device_tlb) {
  std::lock_guard lock(device_tlbs_mutex_);
  const uint64_t id = next_device_tlb_++;
  device_tlbs_.emplace(id, &device_tlb);
  return DeviceTlbRegistration(this, id);
}

Iommu::DeviceTlbRegistration Iommu::register_ats_holder(AtsHolder& holder) {
  std::lock_guard lock(device_tlbs_mutex_);
  const uint64_t id = next_device_tlb_++;
  ats_holders_.emplace(id, &holder);
  return DeviceTlbRegistration(this, id);
}

void Iommu::unsubscribe(uint64_t id) {
  std::lock_guard lock(device_tlbs_mutex_);
  device_tlbs_.erase(id);
  ats_holders_.erase(id);
}

template <typename Flush>
void Iommu::flush_device_tlbs(Flush flush, std::optional<uint32_t> pasid, uint64_t iova, uint64_t length,
                              uint16_t domain) {
  std::lock_guard lock(device_tlbs_mutex_);
  for (const auto& [id, device_tlb] : device_tlbs_) flush(*device_tlb);
  for (const auto& [id, holder] : ats_holders_) holder->invalidate(domain, pasid, iova, length);
}

void Iommu::flush_domain(uint16_t domain) {
  iotlb_.invalidate_domain(domain);
  flush_device_tlbs([&](Iotlb& tlb) { tlb.invalidate_domain(domain); }, std::nullopt, 0, kWholeSpace, domain);
}

void Iommu::flush_pasid(uint16_t domain, uint32_t pasid) {
  iotlb_.invalidate_pasid(domain, pasid);
  flush_device_tlbs([&](Iotlb& tlb) { tlb.invalidate_pasid(domain, pasid); }, pasid, 0, kWholeSpace, domain);
}

void Iommu::flush_range(uint16_t domain, uint64_t iova, uint64_t length) {
  iotlb_.invalidate_domain_range(domain, iova, length);
  flush_device_tlbs([&](Iotlb& tlb) { tlb.invalidate_domain_range(domain, iova, length); }, std::nullopt, iova,
                    length, domain);
}

}  // namespace ioasid::iommu

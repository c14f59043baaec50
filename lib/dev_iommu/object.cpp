// SPDX-License-Identifier: MIT
#include "dev_iommu/object.h"

#include <vector>

namespace ioasid::dev_iommu {

const char* object_type_name(ObjectType type) {
  switch (type) {
    case ObjectType::Ioas: return "IOAS";
    case ObjectType::HwptPaging: return "HWPT_PAGING";
    case ObjectType::Device: return "DEVICE";
    case ObjectType::MockDevice: return "SELFTEST";
    case ObjectType::Access: return "ACCESS";
    case ObjectType::HwptNested: return "HWPT_NESTED";
    case ObjectType::Fault: return "FAULT";
  }
  return "object";
}

uint32_t ObjectTable::insert(std::shared_ptr<Object> object, UserQuota::Charge charge) {
  uint32_t id = 1;
  for (const auto& [taken, unused] : objects_) {
    if (taken != id) break;
    ++id;
  }
  object->id_ = id;
  object->charge_ = std::move(charge);
  objects_.emplace(id, std::move(object));
  return id;
}

std::shared_ptr<Object> ObjectTable::find_any(uint32_t id) const {
  auto it = objects_.find(id);
  return it == objects_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Object>> ObjectTable::all(ObjectType type) const {
  std::vector<std::shared_ptr<Object>> out;
  for (const auto& [id, object] : objects_)
    if (object->type() == type) out.push_back(object);
  return out;
}

Result<std::shared_ptr<Object>> ObjectTable::remove(uint32_t id) {
  auto it = objects_.find(id);
  if (it == objects_.end()) return fail(ENOENT, "no object {} in this file", id);
  if (const uint32_t users = it->second->users(); users != 0)
    return fail(EBUSY, "{} {} is used by {} other object(s)", object_type_name(it->second->type()), id, users);
  auto object = std::move(it->second);
  objects_.erase(it);
  return object;
}

void ObjectTable::erase(uint32_t id) { objects_.erase(id); }

void ObjectTable::clear() {
  bool progress = true;
  while (progress && !objects_.empty()) {
    progress = false;
    for (auto it = objects_.begin(); it != objects_.end();) {
      if (it->second->users() == 0) {
        // Destroying it may free users of others: erase first, destroy after.
        auto doomed = std::move(it->second);
        it = objects_.erase(it);
        doomed.reset();
        progress = true;
      } else {
        ++it;
      }
    }
  }
  objects_.clear();
}

}  // namespace ioasid::dev_iommu

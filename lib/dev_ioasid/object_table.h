// SPDX-License-Identifier: MIT
// A file's objects by id, as iommufd's xarray: u32 ids from 1, never reused while
// the file is open. Lookups name the kind they expect; another kind is ENOENT.
#pragma once

#include "base/fail_nth.h"
#include "base/result.h"

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <variant>
#include <vector>

namespace ioasid::dev_ioasid {

template <typename... Kinds>
class ObjectTable {
 public:
  using Object = std::variant<std::shared_ptr<Kinds>...>;

  Result<uint32_t> insert(Object object) {
    IOASID_TRY(fail_nth::point(fail_nth::Site::kAllocation, "an object id"));
    std::lock_guard lock(mutex_);
    const uint32_t id = next_id_++;
    objects_.emplace(id, std::move(object));
    return id;
  }

  template <typename Kind>
  std::shared_ptr<Kind> find(uint32_t id) const {
    std::lock_guard lock(mutex_);
    auto it = objects_.find(id);
    if (it == objects_.end()) return nullptr;
    auto* held = std::get_if<std::shared_ptr<Kind>>(&it->second);
    return held ? *held : nullptr;
  }

  template <typename Kind>
  std::shared_ptr<Kind> remove(uint32_t id) {
    std::lock_guard lock(mutex_);
    auto it = objects_.find(id);
    if (it == objects_.end()) return nullptr;
    auto* held = std::get_if<std::shared_ptr<Kind>>(&it->second);
    if (!held) return nullptr;
    auto object = std::move(*held);
    objects_.erase(it);
    return object;
  }

  // Every object of a kind with its id, newest first (teardown order: leaves first).
  template <typename Kind>
  std::vector<std::pair<uint32_t, std::shared_ptr<Kind>>> all() const {
    std::lock_guard lock(mutex_);
    std::vector<std::pair<uint32_t, std::shared_ptr<Kind>>> out;
    for (auto it = objects_.rbegin(); it != objects_.rend(); ++it)
      if (auto* held = std::get_if<std::shared_ptr<Kind>>(&it->second)) out.emplace_back(it->first, *held);
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::map<uint32_t, Object> objects_;
  uint32_t next_id_ = 1;
};

}  // namespace ioasid::dev_ioasid

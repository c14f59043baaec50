// SPDX-License-Identifier: MIT
// The objects of one /dev/iommu file and their ids (iommufd's object table): an
// id names one object of one file, ids are the lowest free from 1, and an object is
// busy (DESTROY: EBUSY) while another object uses it. A use is a Use<T>, never a
// count kept by hand.
#pragma once

#include "base/result.h"
#include "base/user_quota.h"

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

namespace ioasid::dev_iommu {

enum class ObjectType { Ioas, HwptPaging, HwptNested, Device, MockDevice, Access, Fault };

const char* object_type_name(ObjectType type);

class Object {
 public:
  explicit Object(ObjectType type) : type_(type) {}
  virtual ~Object() = default;
  Object(const Object&) = delete;
  Object& operator=(const Object&) = delete;

  ObjectType type() const { return type_; }
  uint32_t id() const { return id_; }
  // Other objects holding a Use of this one.
  uint32_t users() const { return users_; }

 private:
  template <typename T>
  friend class Use;
  friend class ObjectTable;
  const ObjectType type_;
  uint32_t id_ = 0;
  uint32_t users_ = 0;  // changed under the file's lock, as everything here
  UserQuota::Charge charge_;  // one of the owner's --max-ioasids-per-user
};

// An object the caller holds as a file of the companion node (fd_objects.h): the
// number that file has in the process using it (the selftest names an access by it),
// and whether the file is open (iommufd's file holds its object).
struct FileBacked {
  int fd_number = -1;      // -1: not known
  uint64_t fd_sequence = 0;  // when the number was said: the newest wins a reused one
  bool file_attached = false;
};

// One object's use of another: the used one stays alive and busy while it lasts.
template <typename T>
class Use {
 public:
  Use() = default;
  explicit Use(std::shared_ptr<T> object) : object_(std::move(object)) {
    if (object_) ++object_->users_;
  }
  Use(Use&& other) noexcept : object_(std::move(other.object_)) {}
  Use& operator=(Use&& other) noexcept {
    if (this != &other) {
      reset();
      object_ = std::move(other.object_);
    }
    return *this;
  }
  ~Use() { reset(); }
  void reset() {
    if (object_) --object_->users_;
    object_.reset();
  }
  T* get() const { return object_.get(); }
  T* operator->() const { return object_.get(); }
  T& operator*() const { return *object_; }
  explicit operator bool() const { return object_ != nullptr; }
  const std::shared_ptr<T>& shared() const { return object_; }

 private:
  std::shared_ptr<T> object_;
};

class ObjectTable {
 public:
  // Gives the object the lowest free id; charged to the file's user.
  uint32_t insert(std::shared_ptr<Object> object, UserQuota::Charge charge);

  template <typename T>
  std::shared_ptr<T> find(uint32_t id, ObjectType type) const {
    auto it = objects_.find(id);
    if (it == objects_.end() || it->second->type() != type) return nullptr;
    return std::static_pointer_cast<T>(it->second);
  }
  std::shared_ptr<Object> find_any(uint32_t id) const;
  // Every object of a type, by id.
  std::vector<std::shared_ptr<Object>> all(ObjectType type) const;

  // ENOENT for no such id, EBUSY while it has users. The object goes when the last
  // reference to it does (an ioctl running on it may still hold one).
  Result<std::shared_ptr<Object>> remove(uint32_t id);
  // Removes without the checks: the object's owner ends it (an auto domain whose
  // last device left).
  void erase(uint32_t id);
  bool empty() const { return objects_.empty(); }
  size_t size() const { return objects_.size(); }

  // Close: leaf first. Objects nobody uses go, repeatedly, so every object outlives
  // its users; what is left after that (a cycle cannot form) is dropped as is.
  void clear();

 private:
  std::map<uint32_t, std::shared_ptr<Object>> objects_;
};

}  // namespace ioasid::dev_iommu

// SPDX-License-Identifier: MIT
// One open file of /dev/iommu: its objects and options. Every ioctl of the file runs
// under its mutex (iommufd's ioctls on one file are short; MAP pins first).
#pragma once

#include "dev_iommu/object.h"
#include "dev_ioasid/context.h"  // ClientIdentity

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

namespace ioasid::dev_iommu {

using dev_ioasid::ClientIdentity;

// VFIO type1 on the file's compat IOAS.
enum class VfioType { kNone, kType1, kType1v2 };

class Context : public std::enable_shared_from_this<Context> {
 public:
  Context(uint32_t id, ClientIdentity client, UserQuota::Charge file_charge)
      : id_(id), client_(client), file_charge_(std::move(file_charge)) {}

  uint32_t id() const { return id_; }
  const ClientIdentity& client() const { return client_; }
  std::mutex& mutex() { return mutex_; }
  ObjectTable& objects() { return objects_; }

  // IOMMU_OPTION_RLIMIT_MODE: pins counted per process (1) instead of per user (0).
  bool account_per_process = false;
  uint32_t vfio_ioas = 0;  // IOMMU_VFIO_IOAS: the IOAS VFIO's ioctls use, 0: none
  VfioType vfio_type = VfioType::kNone;
  bool released = false;

 private:
  const uint32_t id_;
  const ClientIdentity client_;
  std::mutex mutex_;
  ObjectTable objects_;
  UserQuota::Charge file_charge_;
};

}  // namespace ioasid::dev_iommu

// SPDX-License-Identifier: MIT
// A fault queue (iommufd's IOMMU_FAULT_QUEUE_ALLOC): page requests of devices attached
// to a nested HWPT that names it, read as iommu_hwpt_pgfault records from its file and
// answered by writing iommu_hwpt_page_response records. A group read is awaited by its
// cookie; every method runs under the owning iommufd file's lock. Bounded: at most
// kMaxGroups groups wait to be read or answered; a request beyond that is answered
// INVALID at once, as a full page request queue would be.
#pragma once

#include "dev_iommu/object.h"

#include <linux/iommufd.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <span>
#include <vector>

namespace ioasid::dev_iommu {

class FaultQueue final : public Object, public FileBacked {
 public:
  static constexpr size_t kMaxGroups = 1024;

  FaultQueue() : Object(ObjectType::Fault) {}

  // A page request group of the device `dev_id` (its records without cookies).
  // false: the queue is full and the group was answered INVALID.
  bool deliver(uint32_t dev_id, std::vector<iommu_hwpt_pgfault> group);
  // Whole groups into `out` (a multiple of the record size, ESPIPE otherwise, as
  // iommufd); EINVAL when the first waiting group does not fit. Returns the bytes.
  Result<size_t> read(std::span<std::byte> out);
  // Responses, in order: EINVAL at an unknown cookie or code, after those before it
  // were taken. Returns the bytes taken.
  Result<size_t> write(std::span<const std::byte> in);
  bool readable() const { return !delivered_.empty(); }
  // Groups of a device that leaves the HWPT are answered for it (INVALID).
  void forget_device(uint32_t dev_id);
  // Told when a group arrives (a poll waiting on the file).
  std::function<void()> on_deliver;

 private:
  struct Group {
    uint32_t dev_id;
    std::vector<iommu_hwpt_pgfault> records;
  };
  std::deque<Group> delivered_;
  std::map<uint32_t, Group> awaiting_;  // by cookie
  uint32_t next_cookie_ = 0;
};

}  // namespace ioasid::dev_iommu

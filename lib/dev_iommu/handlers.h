// SPDX-License-Identifier: MIT
// The /dev/iommu ioctl handlers, one file per object kind; main.cpp holds the table
// and the framing. A handler gets the struct as the caller sized it (a short one
// zero-filled, a longer one's tail checked zero) and answers the command's own rules.
#pragma once

#include "base/result.h"
#include "dev_iommu/context.h"
#include "dev_iommu/objects.h"
#include "memory/client_memory.h"

#include <linux/iommufd.h>
#include <linux/vfio.h>
#include "iommufd_test/iommufd_test.h"

#include <cstdint>

namespace ioasid::dev_iommu {

class Service;

struct Call {
  Service& service;
  Context& context;
  ClientMemory& memory;
  uint64_t arg;  // the ioctl's argument: the struct's address
  // The struct goes back to the caller on success; some commands report on errors too.
  bool reply_on_error = false;
  bool reply = true;
  // IOASID_IOMMU_FD_CMD: a command that makes an object with a file puts the token
  // naming it here (null: the plain ioctl, which cannot hand out a file).
  uint64_t* fd_token = nullptr;
};

template <typename T>
Result<std::shared_ptr<T>> find_object(Call& call, uint32_t id, ObjectType type) {
  auto object = call.context.objects().find<T>(id, type);
  if (!object) return fail(ENOENT, "no {} {} in this file", object_type_name(type), id);
  return object;
}

// main.cpp
Result<long> destroy(Call& call, iommu_destroy& cmd);
Result<long> option(Call& call, iommu_option& cmd);

// ioas.cpp
Result<long> ioas_alloc(Call& call, iommu_ioas_alloc& cmd);
Result<long> ioas_allow_iovas(Call& call, iommu_ioas_allow_iovas& cmd);
Result<long> ioas_copy(Call& call, iommu_ioas_copy& cmd);
Result<long> ioas_iova_ranges(Call& call, iommu_ioas_iova_ranges& cmd);
Result<long> ioas_map(Call& call, iommu_ioas_map& cmd);
Result<long> ioas_unmap(Call& call, iommu_ioas_unmap& cmd);
Result<long> ioas_option_huge_pages(Call& call, iommu_option& cmd);
// The pages of user memory a MAP (or VFIO's MAP_DMA) records for the caller.
Result<std::shared_ptr<Pages>> record_user_pages(Call& call, uint64_t uptr, uint64_t length, bool writable);

// hw_pagetable.cpp
Result<long> hwpt_alloc(Call& call, iommu_hwpt_alloc& cmd);
Result<long> hwpt_invalidate(Call& call, iommu_hwpt_invalidate& cmd);
Result<long> hwpt_set_dirty_tracking(Call& call, iommu_hwpt_set_dirty_tracking& cmd);
Result<long> hwpt_get_dirty_bitmap(Call& call, iommu_hwpt_get_dirty_bitmap& cmd);
// A new paging HWPT of the IOAS, filled with its areas, for a device like `device`.
Result<std::shared_ptr<HwptPaging>> make_hwpt_paging(Call& call, const std::shared_ptr<Ioas>& ioas,
                                                     const BoundDevice& device, bool automatic, bool nest_parent,
                                                     bool enforce_dirty);

// device.cpp
Result<long> get_hw_info(Call& call, iommu_hw_info& cmd);
// Attaches (or moves) the device to `pt_id`: an IOAS (its automatic HWPT, reused or
// made) or a paging HWPT. Returns the HWPT's id.
Result<uint32_t> attach_device(Call& call, BoundDevice& device, uint32_t pt_id);
// A new mock device bound to the file (flags MOCK_FLAGS_DEVICE_*).
Result<std::shared_ptr<BoundDevice>> bind_mock_device(Call& call, uint32_t flags);
// DESTROY of a mock device: detach, unbind and drop its bound device too.
void destroy_mock_device(Call& call, MockDevice& mock);

// selftest.cpp
Result<long> test_cmd(Call& call, iommu_test_cmd& cmd);

// fd_objects.cpp: has the caller closed the object's file (its number no longer a file
// of this daemon's nodes, or another object's now)? Its release may be on the way.
bool caller_closed_file(Call& call, const FileBacked& backed);

// access.cpp: the selftest's access objects
Result<long> create_access(Call& call, iommu_test_cmd& cmd);
Result<long> access_pages(Call& call, iommu_test_cmd& cmd);
Result<long> destroy_access_pages(Call& call, iommu_test_cmd& cmd);
Result<long> access_rw(Call& call, iommu_test_cmd& cmd);
Result<long> access_replace_ioas(Call& call, iommu_test_cmd& cmd);
// Ends the accesses whose files the caller has closed: a FUSE release reaches the
// daemon after the close(2) that caused it returned, and what the caller does next
// (DESTROY of the IOAS, a pin count) must see the access gone, as iommufd's would be.
void end_closed_accesses(Call& call);

// fault.cpp
Result<long> fault_queue_alloc(Call& call, iommu_fault_alloc& cmd);
Result<long> trigger_iopf(Call& call, iommu_test_cmd& cmd);

// vfio_compat.cpp: commands below iommufd's numbers (and IOMMU_VFIO_IOAS).
Result<long> vfio_ioas(Call& call, iommu_vfio_ioas& cmd);
Result<long> vfio_ioctl(Call& call, uint32_t cmd);

// The caller holds the capability (CAP_SYS_RESOURCE for RLIMIT_MODE).
bool caller_capable(const Call& call, int capability);

}  // namespace ioasid::dev_iommu

// SPDX-License-Identifier: MIT
// The /dev/iommu ioctl table: each iommufd command is one row naming its struct, the
// size below which it is refused and its handler. The framing rules live here once,
// as iommufd's: numbers below the table go to the VFIO compat handler; the struct's
// first u32 is its size (EFAULT unreadable), EINVAL below the row's minimum, E2BIG
// for a non-zero tail beyond what is known; a short struct reads as zero-filled; the
// reply is min(size, known) bytes.
#include "dev_iommu/handlers.h"
#include "dev_iommu/service.h"

#include <linux/capability.h>
#include <linux/ioasid_iommu_fd.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <vector>

namespace ioasid::dev_iommu {
namespace {

using Runner = Result<long> (*)(Call&, uint32_t size);

constexpr uint32_t kMaxStructSize = 64 * 1024;

struct Op {
  const char* name;
  uint32_t cmd;
  uint32_t min_size;  // offsetofend of the last field a caller must give
  Runner run;
};

// Reads the caller's struct as iommufd's copy_struct_from_user does: the bytes past
// what is known must be zero, checked in order (E2BIG at the first non-zero byte,
// EFAULT where the memory ends). Past kMaxStructSize the daemon stops looking and
// refuses (E2BIG) rather than scan gigabytes of a client's memory.
template <typename T>
Result<T> read_struct(Call& call, uint32_t size) {
  T value{};
  const size_t known = std::min<size_t>(size, sizeof(T));
  IOASID_TRY(call.memory.read(call.arg, std::as_writable_bytes(std::span(&value, 1)).first(known)));
  std::array<std::byte, 4096> chunk;
  const uint64_t scanned = std::min<uint64_t>(size, kMaxStructSize);
  for (uint64_t at = sizeof(T); at < scanned;) {
    // A chunk never crosses a page: a fault means the page is missing, and every byte
    // before it was looked at.
    const uint64_t address = call.arg + at;
    const size_t n = std::min<uint64_t>({chunk.size() - address % chunk.size(), scanned - at});
    IOASID_TRY(call.memory.read(address, std::span(chunk).first(n)));
    for (size_t i = 0; i < n; ++i)
      if (chunk[i] != std::byte{0})
        return fail(E2BIG, "size {} has a non-zero byte at offset {} beyond the {} bytes known", size, at + i,
                    sizeof(T));
    at += n;
  }
  if (size > kMaxStructSize)
    return fail(E2BIG, "size {} is above the {} bytes this daemon reads", size, kMaxStructSize);
  return value;
}

template <typename T, Result<long> (*Handler)(Call&, T&)>
Result<long> run_struct(Call& call, uint32_t size) {
  auto cmd = read_struct<T>(call, size);
  IOASID_TRY(cmd);
  auto result = Handler(call, *cmd);
  if (call.reply && (result || call.reply_on_error)) {
    const size_t known = std::min<size_t>(size, sizeof(T));
    IOASID_TRY(call.memory.write(call.arg, std::as_bytes(std::span(&*cmd, 1)).first(known)));
  }
  return result;
}

#define IOCTL_OP(cmd, type, last, handler) \
  Op{#cmd, cmd, static_cast<uint32_t>(offsetof(type, last) + sizeof(type{}.last)), &run_struct<type, handler>}

constexpr uint32_t kBase = IOMMUFD_CMD_BASE;
constexpr size_t kTableSize = _IOC_NR(IOMMU_TEST_CMD) - kBase + 1;  // the test command is the last row

const std::array kOps = [] {
  std::array<Op, kTableSize> ops{};
  for (Op& op : ops) op = Op{nullptr, 0, 0, nullptr};
  auto row = [&](Op op) { ops[_IOC_NR(op.cmd) - kBase] = op; };
  row(IOCTL_OP(IOMMU_DESTROY, iommu_destroy, id, destroy));
  row(IOCTL_OP(IOMMU_IOAS_ALLOC, iommu_ioas_alloc, out_ioas_id, ioas_alloc));
  row(IOCTL_OP(IOMMU_IOAS_ALLOW_IOVAS, iommu_ioas_allow_iovas, allowed_iovas, ioas_allow_iovas));
  row(IOCTL_OP(IOMMU_IOAS_COPY, iommu_ioas_copy, src_iova, ioas_copy));
  row(IOCTL_OP(IOMMU_IOAS_IOVA_RANGES, iommu_ioas_iova_ranges, out_iova_alignment, ioas_iova_ranges));
  row(IOCTL_OP(IOMMU_IOAS_MAP, iommu_ioas_map, iova, ioas_map));
  row(IOCTL_OP(IOMMU_IOAS_UNMAP, iommu_ioas_unmap, length, ioas_unmap));
  row(IOCTL_OP(IOMMU_OPTION, iommu_option, val64, option));
  row(IOCTL_OP(IOMMU_VFIO_IOAS, iommu_vfio_ioas, __reserved, vfio_ioas));
  row(IOCTL_OP(IOMMU_HWPT_ALLOC, iommu_hwpt_alloc, __reserved, hwpt_alloc));
  row(IOCTL_OP(IOMMU_GET_HW_INFO, iommu_hw_info, __reserved, get_hw_info));
  row(IOCTL_OP(IOMMU_HWPT_SET_DIRTY_TRACKING, iommu_hwpt_set_dirty_tracking, __reserved, hwpt_set_dirty_tracking));
  row(IOCTL_OP(IOMMU_HWPT_GET_DIRTY_BITMAP, iommu_hwpt_get_dirty_bitmap, data, hwpt_get_dirty_bitmap));
  row(IOCTL_OP(IOMMU_HWPT_INVALIDATE, iommu_hwpt_invalidate, __reserved, hwpt_invalidate));
  row(IOCTL_OP(IOMMU_FAULT_QUEUE_ALLOC, iommu_fault_alloc, out_fault_fd, fault_queue_alloc));
  row(IOCTL_OP(IOMMU_TEST_CMD, iommu_test_cmd, last, test_cmd));
  return ops;
}();

Result<long> fd_cmd(Call& call, ioasid_iommu_fd_cmd& cmd);

// ioasidd's own command beside iommufd's (uapi/linux/ioasid_iommu_fd.h), framed alike.
constexpr Op kFdCmdOp = IOCTL_OP(IOASID_IOMMU_FD_CMD, ioasid_iommu_fd_cmd, cmd_uptr, fd_cmd);

const Op* find_op(uint32_t cmd) {
  if (cmd == kFdCmdOp.cmd) return &kFdCmdOp;
  const uint32_t nr = _IOC_NR(cmd);
  if (nr < kBase || nr - kBase >= kOps.size()) return nullptr;
  return &kOps[nr - kBase];
}

}  // namespace

const char* ioctl_name(uint32_t cmd) {
  const Op* op = find_op(cmd);
  if (op && op->cmd == cmd) return op->name;
  return _IOC_NR(cmd) < kBase ? "VFIO compat ioctl" : "unknown ioctl";
}

Result<long> dispatch(Call& call, uint32_t cmd) {
  const uint32_t nr = _IOC_NR(cmd);
  if (nr < kBase) return vfio_ioctl(call, cmd);
  const Op* found = find_op(cmd);
  if (!found || !found->run || found->cmd != cmd) return fail(ENOTTY, "no iommufd ioctl {:#x} (nr {:#x})", cmd, nr);
  const Op& op = *found;
  uint32_t size = 0;
  IOASID_TRY(call.memory.read(call.arg, std::as_writable_bytes(std::span(&size, 1))));
  if (size < op.min_size) return fail(EINVAL, "{}: size {} is below the minimum {}", op.name, size, op.min_size);
  return op.run(call, size);
}

namespace {

Result<long> fd_cmd(Call& call, ioasid_iommu_fd_cmd& cmd) {
  if (cmd.flags != 0) return fail(EOPNOTSUPP, "unknown flag bits {:#x}", cmd.flags);
  if (cmd.__reserved != 0) return fail(EOPNOTSUPP, "__reserved is {:#x}, must be 0", cmd.__reserved);
  if (call.fd_token) return fail(EINVAL, "IOASID_IOMMU_FD_CMD inside IOASID_IOMMU_FD_CMD");
  if (cmd.cmd != IOMMU_TEST_CMD && cmd.cmd != IOMMU_FAULT_QUEUE_ALLOC)
    return fail(EINVAL, "{} ({:#x}) hands out no file", ioctl_name(cmd.cmd), cmd.cmd);
  Call inner{call.service, call.context, call.memory, cmd.cmd_uptr};
  uint64_t token = 0;
  inner.fd_token = &token;
  auto result = dispatch(inner, cmd.cmd);
  cmd.out_token = token;
  return result;
}

}  // namespace

Result<long> destroy(Call& call, iommu_destroy& cmd) {
  auto object = call.context.objects().find_any(cmd.id);
  // As iommufd: its driver holds an access until the access's file closes.
  if (object && object->type() == ObjectType::Access)
    return fail(EBUSY, "access {} goes when its file is closed", cmd.id);
  // A fault queue's open file holds it. A FUSE release reaches the daemon after the
  // close(2) that caused it returned, so a file the caller no longer has at its number
  // is taken as closed already.
  if (object && object->type() == ObjectType::Fault)
    if (const auto& fault = static_cast<const FaultQueue&>(*object);
        fault.file_attached && !caller_closed_file(call, fault))
      return fail(EBUSY, "fault queue {} is held by its open file", cmd.id);
  if (object && object->type() == ObjectType::MockDevice && object->users() == 0) {
    destroy_mock_device(call, static_cast<MockDevice&>(*object));
    return 0;
  }
  if (object && object->users() != 0) end_closed_accesses(call);
  auto removed = call.context.objects().remove(cmd.id);
  IOASID_TRY(removed);
  if ((*removed)->type() == ObjectType::Ioas && call.context.vfio_ioas == cmd.id) call.context.vfio_ioas = 0;
  return 0;
}

namespace {

Result<long> option_rlimit_mode(Call& call, iommu_option& cmd) {
  if (cmd.object_id != 0) return fail(EOPNOTSUPP, "RLIMIT_MODE takes object_id 0, not {}", cmd.object_id);
  if (cmd.op == IOMMU_OPTION_OP_GET) {
    cmd.val64 = call.context.account_per_process ? 1 : 0;
    return 0;
  }
  if (cmd.op != IOMMU_OPTION_OP_SET) return fail(EOPNOTSUPP, "unknown op {}", cmd.op);
  if (!caller_capable(call, CAP_SYS_RESOURCE)) return fail(EPERM, "RLIMIT_MODE SET needs CAP_SYS_RESOURCE");
  if (!call.context.objects().empty())
    return fail(EBUSY, "RLIMIT_MODE changes only while the file has no objects ({} now)",
                call.context.objects().size());
  if (cmd.val64 > 1) return fail(EINVAL, "RLIMIT_MODE {} (0: per user, 1: per process)", cmd.val64);
  call.context.account_per_process = cmd.val64 == 1;
  return 0;
}

}  // namespace

Result<long> option(Call& call, iommu_option& cmd) {
  if (cmd.__reserved != 0) return fail(EOPNOTSUPP, "__reserved is {:#x}, must be 0", cmd.__reserved);
  Result<long> result = fail(EOPNOTSUPP, "unknown option {}", cmd.option_id);
  switch (cmd.option_id) {
    case IOMMU_OPTION_RLIMIT_MODE: result = option_rlimit_mode(call, cmd); break;
    case IOMMU_OPTION_HUGE_PAGES: result = ioas_option_huge_pages(call, cmd); break;
    default: break;
  }
  // Only val64 goes back, as iommufd does.
  call.reply = false;
  if (result) IOASID_TRY(call.memory.write(call.arg + offsetof(iommu_option, val64), std::as_bytes(std::span(&cmd.val64, 1))));
  return result;
}

}  // namespace ioasid::dev_iommu

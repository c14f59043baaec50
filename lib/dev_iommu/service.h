// SPDX-License-Identifier: MIT
// /dev/iommu: Linux's iommufd uAPI over the engine /dev/ioasid uses (its IOMMU, its
// devices, its per-user limits). Called with the ioctl's number and argument and a
// ClientMemory: every iommufd command is _IO, so the struct is read from and written
// to the caller's memory at the argument, as the kernel does.
#pragma once

#include "base/result.h"
#include "dev_iommu/context.h"
#include "dev_iommu/fd_objects.h"
#include "engine/engine.h"
#include "memory/client_memory.h"

#include <atomic>
#include <functional>
#include <span>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace ioasid::dev_iommu {

class Service {
 public:
  // max_files_per_user: opens per uid other than root (0: no limit), apart from /dev/ioasid's.
  Service(engine::Engine& engine, uint32_t max_files_per_user);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // EMFILE over max_files_per_user.
  Result<std::shared_ptr<Context>> open(const ClientIdentity& client);
  // Destroys every object of the file, leaf first. Idempotent.
  void release(Context& context);
  void release_all();
  Result<long> ioctl(Context& context, uint32_t cmd, uint64_t arg, ClientMemory& memory);

  engine::Engine& engine() { return engine_; }
  FdObjects& fd_objects() { return fd_objects_; }

  // The companion node's side of uapi/linux/ioasid_iommu_fd.h: a file given a token
  // becomes the object the token names (ENOENT: no such token for this user; EBADF:
  // its iommufd file is gone); its number in the using process is recorded (-1:
  // unknown yet); closing it destroys the object.
  Result<FdObjectFile> attach_fd_object(uint64_t token, uid_t uid, int fd_number);
  Result<void> set_fd_number(const FdObjectFile& file, int fd_number, bool locked = false);
  void release_fd_object(FdObjectFile& file);
  // A fault queue's file: records read, responses written (fault.h's rules); other
  // objects' files take neither (EINVAL), a destroyed object's ENODEV.
  Result<size_t> read_fd_object(const FdObjectFile& file, std::span<std::byte> out);
  Result<size_t> write_fd_object(const FdObjectFile& file, std::span<const std::byte> in);
  // A fault queue's file: calls `on_readable` whenever a record arrives (a poll's
  // wake-up; it replaces the previous watch) and says whether one waits now. nullopt
  // for other files, which have no poll of their own.
  std::optional<bool> watch_fd_object(const FdObjectFile& file, std::function<void()> on_readable);
  // An open of the companion node: one of the uid's --max-files-per-user there (EMFILE).
  Result<UserQuota::Charge> charge_fd_file(uid_t uid) { return fd_files_quota_.charge(uid); }

  // The admin's view: each open file (its number, as the log says "iommu ctx N") and
  // who opened it.
  struct FileInfo {
    uint32_t number;
    ClientIdentity client;
  };
  std::vector<FileInfo> files() const;
  // The opener of the file whose context id (a device's binding) is `context`.
  std::optional<ClientIdentity> opener(uint32_t context) const;
  // Releases begun and not finished: the selftest's pin checks wait for them, as a
  // FUSE release reaches the daemon after close(2) returned.
  uint64_t releases_in_flight() const { return releases_in_flight_.load(); }
  uint32_t next_mock_number() { return mock_numbers_.fetch_add(1); }
  UserQuota& mock_devices_quota() { return mock_devices_quota_; }
  // Pins of files in IOMMU_OPTION_RLIMIT_MODE 1, per process (tgid), under the same
  // --pin-limit as the per-user accounting.
  PinAccounting& process_pins() { return process_pins_; }
  // Mock devices a uid other than root may hold: each is a place in the engine's
  // device list, which the admin's devices share.
  static constexpr uint32_t kMaxMockDevicesPerUser = 16;

 private:
  engine::Engine& engine_;
  UserQuota files_quota_;
  UserQuota fd_files_quota_;
  UserQuota mock_devices_quota_;
  PinAccounting process_pins_;
  FdObjects fd_objects_;
  uint64_t fd_sequence_ = 0;  // under mutex_
  mutable std::mutex mutex_;
  std::map<uint32_t, std::shared_ptr<Context>> contexts_;
  uint32_t next_id_ = 1;
  std::atomic<uint64_t> releases_in_flight_{0};
  std::atomic<uint32_t> mock_numbers_{0};
};

// Context ids of /dev/iommu files, apart from /dev/ioasid's in device bindings.
inline constexpr uint32_t kContextIdBase = 0x40000000;

const char* ioctl_name(uint32_t cmd);

}  // namespace ioasid::dev_iommu

// SPDX-License-Identifier: MIT
// Objects iommufd hands to the caller as files (the selftest's access; a fault queue),
// served here in two steps (uapi/linux/ioasid_iommu_fd.h): the command makes the
// object and a token, and a companion-node file given the token becomes the object's
// file. A token is random, good once, for kTokenLifetime, and only for the user that
// made it; a file holds at most kMaxPendingPerFile objects waiting for their files,
// and one whose token expired is destroyed at that file's next command of this kind.
#pragma once

#include "base/result.h"
#include "dev_iommu/context.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

namespace ioasid::dev_iommu {

class FdObjects {
 public:
  static constexpr auto kTokenLifetime = std::chrono::seconds(10);
  static constexpr size_t kMaxPendingPerFile = 16;

  struct Pending {
    std::weak_ptr<Context> context;
    std::weak_ptr<Object> object;  // the file's table owns it
    uid_t uid;
    std::chrono::steady_clock::time_point deadline;
  };

  // Called under the context's lock, after the object joined its table: destroys the
  // file's expired objects (ENOSPC when kMaxPendingPerFile still wait) and returns the
  // token naming this one.
  Result<uint64_t> issue(const std::shared_ptr<Context>& context, std::shared_ptr<Object> object);
  // The object the token names, once. ENOENT for an unknown or expired token or one
  // of another user.
  Result<Pending> take(uint64_t token, uid_t uid);

 private:
  std::mutex mutex_;
  std::map<uint64_t, Pending> pending_;
};

// A companion-node file: what it became (nothing until attached).
struct FdObjectFile {
  std::shared_ptr<Context> context;
  std::weak_ptr<Object> object;  // the file's table owns it: closing that file ends it
};

}  // namespace ioasid::dev_iommu

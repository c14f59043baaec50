// SPDX-License-Identifier: MIT
#include "dev_iommu/fd_objects.h"

#include "dev_iommu/access.h"
#include "dev_iommu/handlers.h"
#include "memory/client_file.h"

#include <algorithm>
#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace ioasid::dev_iommu {

Result<uint64_t> FdObjects::issue(const std::shared_ptr<Context>& context, std::shared_ptr<Object> object) {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<Object>> expired;
  std::lock_guard lock(mutex_);
  size_t waiting = 0;
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto owner = it->second.context.lock();
    auto object = it->second.object.lock();
    if (!owner || !object) {  // its file or the object is gone already
      it = pending_.erase(it);
      continue;
    }
    if (owner != context) {
      ++it;
      continue;
    }
    if (it->second.deadline <= now) {
      // Nobody made its file in time: it goes, as iommufd's would with its fd unused.
      context->objects().erase(object->id());
      expired.push_back(std::move(object));
      it = pending_.erase(it);
      continue;
    }
    ++waiting;
    ++it;
  }
  if (waiting >= kMaxPendingPerFile)
    return fail(ENOSPC, "{} objects of this file wait for their files already", waiting);
  uint64_t token = 0;
  do {
    if (::getrandom(&token, sizeof token, 0) != sizeof token)
      return fail(EAGAIN, "getrandom: {}", std::strerror(errno));
  } while (token == 0 || pending_.contains(token));
  pending_.emplace(token, Pending{context, object, context->client().uid, now + kTokenLifetime});
  return token;
}

Result<FdObjects::Pending> FdObjects::take(uint64_t token, uid_t uid) {
  std::lock_guard lock(mutex_);
  auto it = pending_.find(token);
  if (it == pending_.end() || it->second.uid != uid || it->second.deadline <= std::chrono::steady_clock::now())
    return fail(ENOENT, "token {:#x} names no object waiting for its file", token);
  Pending pending = std::move(it->second);
  pending_.erase(it);
  return pending;
}

namespace {

const FileBacked* file_backed(const Object& object) {
  if (object.type() == ObjectType::Access) return &static_cast<const Access&>(object);
  if (object.type() == ObjectType::Fault) return &static_cast<const FaultQueue&>(object);
  return nullptr;
}

}  // namespace

bool caller_closed_file(Call& call, const FileBacked& backed) {
  if (!backed.file_attached || backed.fd_number < 0) return false;
  // A newer object's file has the number now: this one's was closed.
  for (ObjectType type : {ObjectType::Access, ObjectType::Fault})
    for (const auto& object : call.context.objects().all(type))
      if (const FileBacked* other = file_backed(*object);
          other->fd_number == backed.fd_number && other->fd_sequence > backed.fd_sequence)
        return true;
  auto held = holds_served_node(call.memory.pid(), backed.fd_number);
  return held && !*held;
}

}  // namespace ioasid::dev_iommu

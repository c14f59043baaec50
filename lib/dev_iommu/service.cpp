// SPDX-License-Identifier: MIT
#include "dev_iommu/service.h"

#include "base/names.h"
#include "dev_iommu/access.h"
#include "dev_iommu/fault.h"
#include "dev_iommu/handlers.h"

#include <spdlog/spdlog.h>

namespace ioasid::dev_iommu {

Result<long> dispatch(Call& call, uint32_t cmd);  // main.cpp

Service::Service(engine::Engine& engine, uint32_t max_files_per_user)
    : engine_(engine),
      files_quota_("open files of /dev/iommu", "--max-files-per-user", EMFILE, max_files_per_user,
                   /*root_exempt=*/true),
      fd_files_quota_("open files of the iommu-fd node", "--max-files-per-user", EMFILE, max_files_per_user,
                      /*root_exempt=*/true),
      mock_devices_quota_("mock devices", "(fixed)", ENOSPC, kMaxMockDevicesPerUser, /*root_exempt=*/true),
      process_pins_(engine.iommu().pins().limit_pages()) {}

Service::~Service() { release_all(); }

Result<std::shared_ptr<Context>> Service::open(const ClientIdentity& client) {
  auto charge = files_quota_.charge(client.uid);
  IOASID_TRY(charge);
  std::lock_guard lock(mutex_);
  const uint32_t id = kContextIdBase + next_id_++;
  auto context = std::make_shared<Context>(id, client, std::move(*charge));
  contexts_.emplace(id, context);
  return context;
}

void Service::release(Context& context) {
  releases_in_flight_.fetch_add(1);
  {
    std::lock_guard lock(context.mutex());
    if (!context.released) {
      context.released = true;
      context.objects().clear();
    }
  }
  {
    std::lock_guard lock(mutex_);
    contexts_.erase(context.id());
  }
  releases_in_flight_.fetch_sub(1);
}

std::vector<Service::FileInfo> Service::files() const {
  std::lock_guard lock(mutex_);
  std::vector<FileInfo> out;
  for (const auto& [id, context] : contexts_) out.push_back({id - kContextIdBase, context->client()});
  return out;
}

std::optional<ClientIdentity> Service::opener(uint32_t context) const {
  std::lock_guard lock(mutex_);
  auto it = contexts_.find(context);
  if (it == contexts_.end()) return std::nullopt;
  return it->second->client();
}

void Service::release_all() {
  std::map<uint32_t, std::shared_ptr<Context>> contexts;
  {
    std::lock_guard lock(mutex_);
    contexts = contexts_;
  }
  for (auto& [id, context] : contexts) release(*context);
}

namespace {

// What the file became, under its iommufd file's lock (the object's last reference
// may be the one returned).
std::pair<std::shared_ptr<Object>, FileBacked*> backed_of(const FdObjectFile& file) {
  auto object = file.object.lock();
  FileBacked* backed = nullptr;
  if (object && object->type() == ObjectType::Access) backed = static_cast<Access*>(object.get());
  if (object && object->type() == ObjectType::Fault) backed = static_cast<FaultQueue*>(object.get());
  return {std::move(object), backed};
}

}  // namespace

Result<FdObjectFile> Service::attach_fd_object(uint64_t token, uid_t uid, int fd_number) {
  auto pending = fd_objects_.take(token, uid);
  IOASID_TRY(pending);
  FdObjectFile file{pending->context.lock(), pending->object};
  if (!file.context) return fail(EBADF, "the iommufd file of token {:#x} is closed", token);
  std::lock_guard lock(file.context->mutex());
  auto [object, backed] = backed_of(file);
  if (!object || !backed || file.context->released || file.context->objects().find_any(object->id()) != object)
    return fail(EBADF, "the object of token {:#x} is gone with its iommufd file", token);
  backed->file_attached = true;
  if (fd_number >= 0) IOASID_TRY(set_fd_number(file, fd_number, /*locked=*/true));
  return file;
}

Result<void> Service::set_fd_number(const FdObjectFile& file, int fd_number, bool locked) {
  if (fd_number < 0) return fail(EINVAL, "fd number {}", fd_number);
  if (!file.context) return fail(EINVAL, "the file is not attached to an object");
  std::unique_lock lock(file.context->mutex(), std::defer_lock);
  if (!locked) lock.lock();
  auto [object, backed] = backed_of(file);
  if (!backed) return fail(EINVAL, "the file's object is gone");
  std::lock_guard sequence_lock(mutex_);
  backed->fd_number = fd_number;
  backed->fd_sequence = ++fd_sequence_;
  return success();
}

void Service::release_fd_object(FdObjectFile& file) {
  if (!file.context) return;
  releases_in_flight_.fetch_add(1);
  {
    std::lock_guard lock(file.context->mutex());
    auto [object, backed] = backed_of(file);
    if (backed) backed->file_attached = false;
    // An access goes with its file; a fault queue stays until DESTROY, as iommufd's.
    if (object && object->type() == ObjectType::Access && !file.context->released &&
        file.context->objects().find_any(object->id()) == object) {
      static_cast<Access&>(*object).detach();
      file.context->objects().erase(object->id());
    }
    object.reset();  // the last reference: destroyed under the file's lock
    file.object.reset();
  }
  file.context.reset();
  releases_in_flight_.fetch_sub(1);
}

Result<size_t> Service::read_fd_object(const FdObjectFile& file, std::span<std::byte> out) {
  if (!file.context) return fail(EINVAL, "the file is no object yet");
  std::lock_guard lock(file.context->mutex());
  auto object = file.object.lock();
  if (!object) return fail(ENODEV, "the file's object is gone");
  if (object->type() != ObjectType::Fault) return fail(EINVAL, "an {} cannot be read", object_type_name(object->type()));
  return static_cast<FaultQueue&>(*object).read(out);
}

Result<size_t> Service::write_fd_object(const FdObjectFile& file, std::span<const std::byte> in) {
  if (!file.context) return fail(EINVAL, "the file is no object yet");
  std::lock_guard lock(file.context->mutex());
  auto object = file.object.lock();
  if (!object) return fail(ENODEV, "the file's object is gone");
  if (object->type() != ObjectType::Fault)
    return fail(EINVAL, "an {} cannot be written", object_type_name(object->type()));
  return static_cast<FaultQueue&>(*object).write(in);
}

std::optional<bool> Service::watch_fd_object(const FdObjectFile& file, std::function<void()> on_readable) {
  if (!file.context) return std::nullopt;
  std::lock_guard lock(file.context->mutex());
  auto object = file.object.lock();
  if (!object || object->type() != ObjectType::Fault) return std::nullopt;
  auto& queue = static_cast<FaultQueue&>(*object);
  queue.on_deliver = std::move(on_readable);
  return queue.readable();
}

Result<long> Service::ioctl(Context& context, uint32_t cmd, uint64_t arg, ClientMemory& memory) {
  std::lock_guard lock(context.mutex());
  if (context.released) return fail(EBADF, "file {} was released (daemon shutting down)", context.id());
  Call call{*this, context, memory, arg};
  auto result = dispatch(call, cmd);
  if (!result)
    spdlog::info("iommu ctx {} pid {} {}: {}: {}", context.id() - kContextIdBase, context.client().pid,
                 ioctl_name(cmd), errno_name(result.code()), result.error().why);
  return result;
}

}  // namespace ioasid::dev_iommu

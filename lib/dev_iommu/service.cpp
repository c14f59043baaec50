#include "dev_iommu/service.h"

#include "base/names.h"
#include "dev_iommu/access.h"
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

std::shared_ptr<Access> access_of(const FdObjectFile& file) {
  auto object = file.object.lock();
  if (!object || object->type() != ObjectType::Access) return nullptr;
  return std::static_pointer_cast<Access>(object);
}

}  // namespace

Result<FdObjectFile> Service::attach_fd_object(uint64_t token, uid_t uid, int fd_number) {
  auto pending = fd_objects_.take(token, uid);
  IOASID_TRY(pending);
  FdObjectFile file{pending->context.lock(), pending->object};
  auto object = pending->object.lock();
  if (!file.context || !object) return fail(EBADF, "the iommufd file of token {:#x} is closed", token);
  std::lock_guard lock(file.context->mutex());
  if (file.context->released || file.context->objects().find_any(object->id()) != object)
    return fail(EBADF, "the object of token {:#x} is gone with its iommufd file", token);
  if (fd_number >= 0) IOASID_TRY(set_fd_number(file, fd_number, /*locked=*/true));
  return file;
}

Result<void> Service::set_fd_number(const FdObjectFile& file, int fd_number, bool locked) {
  if (fd_number < 0) return fail(EINVAL, "fd number {}", fd_number);
  if (!file.context) return fail(EINVAL, "the file is not attached to an object");
  std::unique_lock lock(file.context->mutex(), std::defer_lock);
  if (!locked) lock.lock();
  // Under the file's lock: the object's last reference may be this one.
  auto access = access_of(file);
  if (!access) return fail(EINVAL, "the file is no (live) access object");
  std::lock_guard sequence_lock(mutex_);
  access->fd_number = fd_number;
  access->fd_sequence = ++fd_sequence_;
  return success();
}

void Service::release_fd_object(FdObjectFile& file) {
  if (!file.context) return;
  releases_in_flight_.fetch_add(1);
  {
    std::lock_guard lock(file.context->mutex());
    auto object = file.object.lock();
    if (object && !file.context->released && file.context->objects().find_any(object->id()) == object) {
      if (object->type() == ObjectType::Access) static_cast<Access&>(*object).detach();
      file.context->objects().erase(object->id());
    }
    object.reset();  // the last reference: destroyed under the file's lock
    file.object.reset();
  }
  file.context.reset();
  releases_in_flight_.fetch_sub(1);
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

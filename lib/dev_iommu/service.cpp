#include "dev_iommu/service.h"

#include "base/names.h"
#include "dev_iommu/handlers.h"

#include <spdlog/spdlog.h>

namespace ioasid::dev_iommu {

Result<long> dispatch(Call& call, uint32_t cmd);  // main.cpp

Service::Service(engine::Engine& engine, uint32_t max_files_per_user)
    : engine_(engine),
      files_quota_("open files of /dev/iommu", "--max-files-per-user", EMFILE, max_files_per_user,
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

// SPDX-License-Identifier: MIT
#include "engine/engine.h"

#include <spdlog/spdlog.h>

namespace ioasid::engine {

Engine::Engine(const EngineConfig& config)
    : allocator_(config.pasid_bits),
      iommu_({.addr_width = config.addr_width, .pin_limit_pages = config.pin_limit_pages}),
      maps_quota_("mappings", "--max-maps-per-user", ENOSPC, config.max_maps_per_user, /*root_exempt=*/true),
      ioasids_quota_("IOASIDs", "--max-ioasids-per-user", ENOSPC, config.max_ioasids_per_user, /*root_exempt=*/true),
      waits_quota_("waiting calls", "--max-waits-per-user", EAGAIN, config.max_waits_per_user, /*root_exempt=*/true),
      own_executor_(config.executor ? nullptr : std::make_unique<ThreadPoolExecutor>(2)),
      executor_(config.executor ? config.executor : own_executor_.get()),
      devices_(iommu_, *executor_, config.dsa_idle_poll) {
  for (const auto& spec : config.devices)
    if (auto added = devices_.add(spec); !added) spdlog::error("device {}: {}", spec.name, added.error().why);
}

Engine::~Engine() = default;

}  // namespace ioasid::engine

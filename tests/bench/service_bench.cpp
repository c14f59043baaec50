// SPDX-License-Identifier: MIT
// The engine's cost per ioctl in-process (no FUSE): what the daemon adds to a
// round trip. Run: build/tests/bench/service_bench
#include "dev_ioasid/service.h"

#include <benchmark/benchmark.h>

#include <cstring>
#include <mutex>
#include <vector>

namespace {

using namespace ioasid;
using namespace ioasid::dev_ioasid;

template <typename T>
long run(Service& service, Context& context, uint32_t cmd, T& arg) {
  NoClientMemory memory;
  std::byte buf[sizeof(T)];
  std::memcpy(buf, &arg, sizeof arg);
  auto result = service.ioctl(context, cmd, 0, buf, memory);
  std::memcpy(&arg, buf, sizeof arg);
  return result ? *result : -result.code();
}

void BM_Service_GetApiVersion(benchmark::State& state) {
  Service service;
  auto context = *service.open({.pid = 1});
  NoClientMemory memory;
  for (auto _ : state) benchmark::DoNotOptimize(service.ioctl(*context, IOASID_GET_API_VERSION, 0, {}, memory));
}
BENCHMARK(BM_Service_GetApiVersion);

// With an event sink like the daemon's relay (a mutex-guarded append) when range(0) is 1.
void BM_Service_PasidAllocFree(benchmark::State& state) {
  Service service;
  std::mutex mutex;
  std::vector<Event> queued;
  EventSubscription subscription;
  if (state.range(0))
    subscription = service.subscribe([&](const Event& event) {
      std::lock_guard lock(mutex);
      queued.push_back(event);
      if (queued.size() > 4096) queued.clear();
    });
  auto context = *service.open({.pid = 1});
  for (auto _ : state) {
    ioasid_pasid_request request{.flags = IOASID_PASID_ALLOC, .min = 1, .max = (1u << 20) - 1};
    if (run(service, *context, IOASID_PASID_REQUEST, request) != 0) state.SkipWithError("alloc");
    request.flags = IOASID_PASID_FREE;
    request.min = request.max = request.pasid;
    if (run(service, *context, IOASID_PASID_REQUEST, request) != 0) state.SkipWithError("free");
  }
}
BENCHMARK(BM_Service_PasidAllocFree)->Arg(0)->Arg(1);

}  // namespace

BENCHMARK_MAIN();

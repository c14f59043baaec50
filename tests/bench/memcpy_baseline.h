// SPDX-License-Identifier: MIT
// What the device copies are measured against: memcpy of 1 MiB with both buffers hot
// in the caches, run in the same program so the ratio is of one run.
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstring>
#include <vector>

inline constexpr size_t kMemcpyBytes = 1u << 20;

inline void BM_Memcpy1MiB(benchmark::State& state) {
  std::vector<char> from(kMemcpyBytes, 1), to(kMemcpyBytes, 2);
  for (auto _ : state) {
    std::memcpy(to.data(), from.data(), kMemcpyBytes);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * kMemcpyBytes);
}

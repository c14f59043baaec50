// SPDX-License-Identifier: MIT
#include "memory/pinned_pages.h"

#include "memory/address_space.h"
#include "memory/physical_memory.h"

#include <iterator>
#include <utility>

namespace ioasid {
namespace {

uint32_t count_at(const std::map<uint64_t, uint32_t>& pieces, uint64_t position) {
  auto after = pieces.upper_bound(position);
  return after == pieces.begin() ? 0 : std::prev(after)->second;
}

// Erases the boundary at `position` if it no longer starts a different count.
void drop_if_redundant(std::map<uint64_t, uint32_t>& pieces, uint64_t position) {
  auto at = pieces.find(position);
  if (at == pieces.end()) return;
  const uint32_t before = at == pieces.begin() ? 0 : std::prev(at)->second;
  if (at->second == before) pieces.erase(at);
}

}  // namespace

PinnedPages::Pin::Pin(Pin&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), key_(other.key_), start_(other.start_), end_(other.end_) {}

PinnedPages::Pin& PinnedPages::Pin::operator=(Pin&& other) noexcept {
  if (this != &other) {
    reset();
    owner_ = std::exchange(other.owner_, nullptr);
    key_ = other.key_;
    start_ = other.start_;
    end_ = other.end_;
  }
  return *this;
}

void PinnedPages::Pin::reset() {
  if (owner_ != nullptr) owner_->adjust(key_, start_, end_, -1);
  owner_ = nullptr;
}

PinnedPages& PinnedPages::global() {
  // Never destroyed: backings held by other static objects may go after it.
  static PinnedPages* const registry = new PinnedPages;
  return *registry;
}

PinnedPages::Key PinnedPages::key_of(const PageLocation& location) {
  if (location.kind == PageLocation::Kind::kFile)
    return Key{.kind = location.kind, .object = static_cast<uint64_t>(location.device), .inode = location.inode};
  return Key{.kind = location.kind, .object = location.space ? location.space->mm_id() : 0, .inode = 0};
}

uint64_t PinnedPages::position_of(const PageLocation& location) {
  return location.kind == PageLocation::Kind::kFile ? location.offset : location.va;
}

PinnedPages::Shard& PinnedPages::shard_of(const Key& key) const {
  const uint64_t mixed = (key.object * 0x9e3779b97f4a7c15ull) ^ (key.inode * 0xc2b2ae3d27d4eb4full) ^
                         static_cast<uint64_t>(key.kind);
  return shards_[(mixed >> 32) % kShards];
}

PinnedPages::Pin PinnedPages::pin(const PageLocation& first, uint64_t length) {
  if (length == 0) return Pin();
  const Key key = key_of(first);
  const uint64_t start = position_of(first) & ~(kPageSize - 1);
  const uint64_t end = (position_of(first) + length + kPageSize - 1) & ~(kPageSize - 1);
  adjust(key, start, end, +1);
  return Pin(this, key, start, end);
}

uint32_t PinnedPages::pins_at(const PageLocation& page) const {
  const Key key = key_of(page);
  const Shard& shard = shard_of(key);
  std::lock_guard lock(shard.mutex);
  auto found = shard.objects.find(key);
  return found == shard.objects.end() ? 0 : count_at(found->second, position_of(page) & ~(kPageSize - 1));
}

size_t PinnedPages::pieces() const {
  size_t total = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    for (const auto& [key, pieces] : shard.objects) total += pieces.size();
  }
  return total;
}

// Adds `delta` to the count of [start, end). Only the boundaries at start and end can
// become redundant: every boundary inside the range moves with its predecessor.
void PinnedPages::adjust(const Key& key, uint64_t start, uint64_t end, int delta) {
  Shard& shard = shard_of(key);
  std::lock_guard lock(shard.mutex);
  Pieces& pieces = shard.objects[key];
  pieces.try_emplace(end, count_at(pieces, end));
  pieces.try_emplace(start, count_at(pieces, start));
  for (auto at = pieces.find(start); at->first < end; ++at) at->second += static_cast<uint32_t>(delta);
  drop_if_redundant(pieces, end);
  drop_if_redundant(pieces, start);
  if (pieces.empty()) shard.objects.erase(key);
}

}  // namespace ioasid

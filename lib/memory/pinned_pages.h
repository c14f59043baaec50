// SPDX-License-Identifier: MIT
// How many live backings hold each page of client memory: the daemon's stand-in for
// a page's pin count (the kernel's page refcount, which iommufd's mock driver checks).
// That count is machine-wide, so one registry serves the whole process (global()).
//
// Every backing that reaches client memory (MappedFileBacking, RemoteBacking)
// registers the pages it covers for as long as it lives, through a Pin member; a
// slice of a backing (slice_backing.h) does not: its whole already counts.
//
// Per file or address space the registry keeps the counts as pieces: ordered
// boundaries, each starting a stretch of equal count. A pin adds at most two, so the
// registry grows only with live pins, and a lookup is one search in an ordered map
// under the mutex of one of several shards (pins of different files rarely contend).
#pragma once

#include "memory/page_location.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

namespace ioasid {

class PinnedPages {
  struct Key {
    PageLocation::Kind kind = PageLocation::Kind::kFile;
    uint64_t object = 0;  // kFile: the device; kPrivate: the address space's mm_id
    uint64_t inode = 0;   // kFile
    auto operator<=>(const Key&) const = default;
  };

 public:
  // Counts its pages once more until destroyed (or moved from and the target destroyed).
  class Pin {
   public:
    Pin() = default;
    Pin(Pin&& other) noexcept;
    Pin& operator=(Pin&& other) noexcept;
    Pin(const Pin&) = delete;
    Pin& operator=(const Pin&) = delete;
    ~Pin() { reset(); }
    void reset();

   private:
    friend class PinnedPages;
    Pin(PinnedPages* owner, Key key, uint64_t start, uint64_t end)
        : owner_(owner), key_(key), start_(start), end_(end) {}
    PinnedPages* owner_ = nullptr;
    Key key_;
    uint64_t start_ = 0;
    uint64_t end_ = 0;
  };

  // The process-wide registry every backing registers with.
  static PinnedPages& global();

  // Counts the `length` bytes of pages from `first` on (a multiple of 4 KiB; a partial
  // last page counts whole) until the Pin goes. length 0 pins nothing.
  [[nodiscard]] Pin pin(const PageLocation& first, uint64_t length);
  // How many live pins cover `page`.
  uint32_t pins_at(const PageLocation& page) const;
  // The boundaries held now, over all files and address spaces: 0 with no live pin.
  size_t pieces() const;

 private:
  // The count from each boundary on, up to the next one; the last one is 0.
  using Pieces = std::map<uint64_t, uint32_t>;
  struct alignas(64) Shard {
    mutable std::mutex mutex;
    std::map<Key, Pieces> objects;  // guarded by mutex
  };
  static constexpr size_t kShards = 16;

  static Key key_of(const PageLocation& location);
  static uint64_t position_of(const PageLocation& location);
  Shard& shard_of(const Key& key) const;
  void adjust(const Key& key, uint64_t start, uint64_t end, int delta);

  mutable std::array<Shard, kShards> shards_;
};

}  // namespace ioasid

// SPDX-License-Identifier: MIT
#include "memory/slice_backing.h"

#include "memory/physical_memory.h"

namespace ioasid {
namespace {

// The whole checks every access again (it is public API): cheap, and it keeps the
// slice free of assumptions about the whole's checks.
class SliceBacking final : public Backing {
 public:
  SliceBacking(std::shared_ptr<Backing> whole, uint64_t offset, uint64_t length)
      : Backing(length, whole->writable(), whole->description()), whole_(std::move(whole)), offset_(offset) {
    if (whole_->origin()) set_origin(whole_->origin()->shifted(offset));
  }

  bool zero_copy() const override { return whole_->zero_copy(); }
  std::unique_ptr<SigbusGuard> guard_cpu_access() override { return whole_->guard_cpu_access(); }
  bool failed() const override { return whole_->failed(); }

  const std::shared_ptr<Backing>& whole() const { return whole_; }
  uint64_t offset() const { return offset_; }

 private:
  Result<void> do_read(uint64_t offset, std::span<std::byte> out, size_t& bytes_done) override {
    return whole_->read(offset_ + offset, out, &bytes_done);
  }
  Result<void> do_write(uint64_t offset, std::span<const std::byte> in, size_t& bytes_done) override {
    return whole_->write(offset_ + offset, in, &bytes_done);
  }
  Result<uint64_t> do_read64(uint64_t offset) override { return whole_->read64(offset_ + offset); }
  Result<void> do_write64(uint64_t offset, uint64_t value) override { return whole_->write64(offset_ + offset, value); }
  Result<bool> do_compare_exchange64(uint64_t offset, uint64_t& expected, uint64_t desired) override {
    return whole_->compare_exchange64(offset_ + offset, expected, desired);
  }
  // Backing::mapped checked writability already, and the whole's is the same.
  std::span<std::byte> do_mapped(uint64_t offset, size_t length) override {
    return whole_->mapped(offset_ + offset, length, false);
  }
  std::optional<PageLocation> do_location(uint64_t offset) const override { return whole_->location(offset_ + offset); }

  const std::shared_ptr<Backing> whole_;
  const uint64_t offset_;
};

}  // namespace

Result<std::shared_ptr<Backing>> slice_of(std::shared_ptr<Backing> whole, uint64_t offset, uint64_t length) {
  if (!whole) return fail(EINVAL, "a slice of no backing");
  if (length == 0 || offset % kPageSize != 0 || length % kPageSize != 0)
    return fail(EINVAL, "slice {:#x}+{:#x} of {}: both must be non-zero multiples of 4 KiB", offset, length,
                whole->description());
  if (offset > whole->size() || length > whole->size() - offset)
    return fail(EINVAL, "slice {:#x}+{:#x} is outside the {:#x} bytes of {}", offset, length, whole->size(),
                whole->description());
  if (const auto* slice = dynamic_cast<const SliceBacking*>(whole.get())) {
    // Flatten: one hop on every access, however often a range is split.
    std::shared_ptr<Backing> innermost = slice->whole();
    const uint64_t shifted = slice->offset() + offset;
    return std::shared_ptr<Backing>(std::make_shared<SliceBacking>(std::move(innermost), shifted, length));
  }
  return std::shared_ptr<Backing>(std::make_shared<SliceBacking>(std::move(whole), offset, length));
}

}  // namespace ioasid

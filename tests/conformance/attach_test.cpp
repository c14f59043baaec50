// SPDX-License-Identifier: MIT
// ATTACH_IOASID, ATTACH_IOASID_PASID, DETACH_IOASID, DETACH_IOASID_PASID with REPLACE,
// on the default devices: dma0 (PASID 20 bits) and dma1 (no PASID capability).
#include "harness.hpp"

namespace conf {
namespace {

Errno call(int fd, unsigned long cmd, uint32_t dev_id, uint32_t ioasid, uint32_t pasid, uint32_t flags = 0) {
  ioasid_attach attach{.dev_id = dev_id, .ioasid = ioasid, .pasid = pasid, .flags = flags};
  return ioctl_errno(fd, cmd, &attach);
}

Errno free_ioas(int fd, uint32_t ioasid) {
  ioasid_free request{.ioasid = ioasid};
  return ioctl_errno(fd, IOASID_FREE, &request);
}

TEST(AttachRid, RowsAndReplace) {
  Node node;
  const uint32_t dev = bind_device(node, "dma1");
  const uint32_t first = alloc_ioas(node), second = alloc_ioas(node);
  EXPECT_EQ(call(node.fd(), IOASID_ATTACH_IOASID, dev, first, 5), Err(EINVAL)) << "pasid must be 0";
  EXPECT_EQ(call(node.fd(), IOASID_ATTACH_IOASID, dev, first, 0, IOASID_ATTACH_REPLACE), Err(ENOENT))
      << "REPLACE with nothing attached";
  EXPECT_EQ(call(node.fd(), IOASID_ATTACH_IOASID, dev + 40, first, 0), Err(ENOENT)) << "no such device";
  EXPECT_EQ(call(node.fd(), IOASID_ATTACH_IOASID, dev, second + 40, 0), Err(ENOENT)) << "no such IOASID";
  EXPECT_EQ(call(node.fd(), IOASID_ATTACH_IOASID, dev, first, 0, 1u << 4), Err(EOPNOTSUPP)) << "unknown flag";
  ASSERT_EQ(call(node.fd(), IOASID_ATTACH_IOASID, dev, first, 0), kOk);
  EXPECT_EQ(call(node.fd(), IOASID_ATTACH_IOASID, dev, second, 0), Err(EBUSY)) << "attached, no REPLACE";
  EXPECT_EQ(free_ioas(node.fd(), first), Err(EBUSY)) << "an attached IOASID cannot be freed";
  EXPECT_EQ(call(node.fd(), IOASID_ATTACH_IOASID, dev, second + 40, 0, IOASID_ATTACH_REPLACE), Err(ENOENT));
  EXPECT_EQ(free_ioas(node.fd(), first), Err(EBUSY)) << "a failed replace keeps the old route";
  ASSERT_EQ(call(node.fd(), IOASID_ATTACH_IOASID, dev, second, 0, IOASID_ATTACH_REPLACE), kOk);
  EXPECT_EQ(free_ioas(node.fd(), first), kOk) << "replaced away: free again";
  EXPECT_EQ(free_ioas(node.fd(), second), Err(EBUSY));
  EXPECT_EQ(call(node.fd(), IOASID_DETACH_IOASID, dev, 0, 0), kOk);
  EXPECT_EQ(call(node.fd(), IOASID_DETACH_IOASID, dev, 0, 0), kOk) << "detaching nothing is 0";
  EXPECT_EQ(free_ioas(node.fd(), second), kOk);
}

TEST(AttachPasid, Rows) {
  Node node, other;
  const uint32_t dma0 = bind_device(node, "dma0"), dma1 = bind_device(node, "dma1");
  const uint32_t ioasid = alloc_ioas(node);
  const Range range = slot(40);
  const uint32_t mine = alloc_pasid(node, range), theirs = alloc_pasid(other, range);
  EXPECT_EQ(call(node.fd(), IOASID_ATTACH_IOASID_PASID, dma1, ioasid, mine), Err(EOPNOTSUPP))
      << "dma1 has no PASID capability";
  EXPECT_EQ(call(node.fd(), IOASID_ATTACH_IOASID_PASID, dma0, ioasid, 1u << 20), Err(EINVAL)) << "beyond 20 bits";
  EXPECT_EQ(call(node.fd(), IOASID_ATTACH_IOASID_PASID, dma0, ioasid, range.hi), Err(ENOENT)) << "unallocated";
  EXPECT_EQ(call(node.fd(), IOASID_ATTACH_IOASID_PASID, dma0, ioasid, theirs), Err(EACCES))
      << "another file's PASID";
  ASSERT_EQ(call(node.fd(), IOASID_ATTACH_IOASID_PASID, dma0, ioasid, mine), kOk);
  EXPECT_EQ(call(node.fd(), IOASID_ATTACH_IOASID_PASID, dma0, ioasid, mine), Err(EBUSY));
  const uint32_t second = alloc_ioas(node);
  ASSERT_EQ(call(node.fd(), IOASID_ATTACH_IOASID_PASID, dma0, second, mine, IOASID_ATTACH_REPLACE), kOk);
  EXPECT_EQ(free_ioas(node.fd(), ioasid), kOk);
  EXPECT_EQ(free_ioas(node.fd(), second), Err(EBUSY));
  EXPECT_EQ(call(node.fd(), IOASID_DETACH_IOASID_PASID, dma0, 0, mine), kOk);
  EXPECT_EQ(call(node.fd(), IOASID_DETACH_IOASID_PASID, dma0, 0, mine), kOk);
  EXPECT_EQ(free_ioas(node.fd(), second), kOk);
}

// DETACH_* check flags, dev_id and pasid as ATTACH does; `ioasid` is ignored.
TEST(Detach, Rows) {
  Node node;
  const uint32_t dma0 = bind_device(node, "dma0"), dma1 = bind_device(node, "dma1");
  EXPECT_EQ(call(node.fd(), IOASID_DETACH_IOASID, dma1, 0, 0, IOASID_ATTACH_REPLACE), Err(EOPNOTSUPP))
      << "DETACH takes flags 0";
  EXPECT_EQ(call(node.fd(), IOASID_DETACH_IOASID, dma1 + 40, 0, 0), Err(ENOENT)) << "no such device";
  EXPECT_EQ(call(node.fd(), IOASID_DETACH_IOASID, dma1, 0, 5), Err(EINVAL)) << "pasid must be 0";
  EXPECT_EQ(call(node.fd(), IOASID_DETACH_IOASID, dma1, 77, 0), kOk) << "ioasid is ignored";
  EXPECT_EQ(call(node.fd(), IOASID_DETACH_IOASID_PASID, dma0, 0, 1, IOASID_ATTACH_REPLACE), Err(EOPNOTSUPP));
  EXPECT_EQ(call(node.fd(), IOASID_DETACH_IOASID_PASID, dma0 + 40, 0, 1), Err(ENOENT)) << "no such device";
  EXPECT_EQ(call(node.fd(), IOASID_DETACH_IOASID_PASID, dma1, 0, 1), Err(EOPNOTSUPP))
      << "dma1 has no PASID capability";
  EXPECT_EQ(call(node.fd(), IOASID_DETACH_IOASID_PASID, dma0, 0, 1u << 20), Err(EINVAL)) << "beyond 20 bits";
  EXPECT_EQ(call(node.fd(), IOASID_DETACH_IOASID_PASID, dma0, 77, 1), kOk) << "nothing attached; ioasid ignored";
}

// FREE of an attached PASID detaches it; the number is reclaimed (allocatable again)
// and the IOASID is no longer busy.
TEST(AttachPasid, FreeingAnAttachedPasidDetachesIt) {
  Node node;
  const uint32_t dma0 = bind_device(node, "dma0");
  const uint32_t ioasid = alloc_ioas(node);
  const Range range = slot(41);
  const uint32_t pasid = alloc_pasid(node, {range.lo, range.lo});
  ASSERT_EQ(call(node.fd(), IOASID_ATTACH_IOASID_PASID, dma0, ioasid, pasid), kOk);
  EXPECT_EQ(free_ioas(node.fd(), ioasid), Err(EBUSY));
  const auto freed = pasid_free(node.fd(), range.lo, range.lo);
  ASSERT_EQ(freed.err, kOk);
  EXPECT_EQ(freed.pasid, 1u);
  EXPECT_EQ(free_ioas(node.fd(), ioasid), kOk) << "the FREE detached it";
  const auto again = pasid_alloc(node.fd(), range.lo, range.lo);
  EXPECT_EQ(again.err, kOk) << "the PASID was reclaimed after its attachment went";
}

// Unbinding a device detaches everything it had; closing the file does too.
TEST(AttachPasid, UnbindAndCloseDetachEverything) {
  const Range range = slot(42);
  {
    Node node;
    const uint32_t dma0 = bind_device(node, "dma0");
    const uint32_t ioasid = alloc_ioas(node);
    const uint32_t pasid = alloc_pasid(node, {range.lo, range.lo});
    ASSERT_EQ(call(node.fd(), IOASID_ATTACH_IOASID, dma0, ioasid, 0), kOk);
    ASSERT_EQ(call(node.fd(), IOASID_ATTACH_IOASID_PASID, dma0, ioasid, pasid), kOk);
    ioasid_device_unbind unbind{.dev_id = dma0};
    ASSERT_EQ(ioctl_errno(node.fd(), IOASID_DEVICE_UNBIND, &unbind), kOk);
    EXPECT_EQ(free_ioas(node.fd(), ioasid), kOk) << "unbind detached the RID and the PASID";
    const uint32_t again = bind_device(node, "dma0");
    const uint32_t other_ioas = alloc_ioas(node);
    ASSERT_EQ(call(node.fd(), IOASID_ATTACH_IOASID_PASID, again, other_ioas, pasid), kOk);
  }  // closed while attached
  Node later;
  EXPECT_EQ(pasid_alloc_retry(later.fd(), range.lo, range.lo).err, kOk)
      << "the PASID of a closed file is reclaimed even though it was attached";
  const uint32_t dma0 = bind_device(later, "dma0");
  EXPECT_NE(dma0, 0u);
}

}  // namespace
}  // namespace conf

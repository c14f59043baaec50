// SPDX-License-Identifier: MIT
// The /dev/ioasid conformance suite: real ioctl(2), read(2) and poll(2) calls on a real
// node (FUSE or CUSE), checked against docs/UAPI.md. See harness.hpp for the helpers.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_set>

#include "harness.hpp"

namespace {

using namespace conf;


constexpr int kCore = -1;
struct IoctlRow {
  unsigned nr;
  const char* name;
  unsigned long cmd;
  size_t size;  // v1 struct size; 0 for the integer-argument commands
  int feature;  // IOASID_FEAT_* that gates it, or kCore
};
#define ROW(n, name, type, feat) {n, #name, name, sizeof(type), feat}
const IoctlRow kIoctls[] = {
    {0, "IOASID_GET_API_VERSION", IOASID_GET_API_VERSION, 0, kCore},
    {1, "IOASID_CHECK_EXTENSION", IOASID_CHECK_EXTENSION, 0, kCore},
    ROW(2, IOASID_GET_INFO, ioasid_info, kCore),
    ROW(3, IOASID_PASID_REQUEST, ioasid_pasid_request, IOASID_FEAT_PASID),
    ROW(4, IOASID_PASID_LOOKUP, ioasid_pasid_lookup, IOASID_FEAT_GPASID),
    ROW(5, IOASID_ALLOC, ioasid_alloc, kCore),
    ROW(6, IOASID_FREE, ioasid_free, kCore),
    ROW(7, IOASID_MAP_DMA, ioasid_map_dma, kCore),
    ROW(8, IOASID_MAP_FILE, ioasid_map_file, IOASID_FEAT_MAP_FILE),
    ROW(9, IOASID_UNMAP_DMA, ioasid_unmap_dma, kCore),
    ROW(10, IOASID_IOVA_RANGES, ioasid_iova_ranges, kCore),
    ROW(11, IOASID_BIND_PGTBL, ioasid_bind_pgtbl, IOASID_FEAT_BIND_PGTBL),
    ROW(12, IOASID_UNBIND_PGTBL, ioasid_unbind_pgtbl, IOASID_FEAT_BIND_PGTBL),
    ROW(13, IOASID_CACHE_INVLD, ioasid_cache_invalidate, IOASID_FEAT_CACHE_INVLD),
    ROW(14, IOASID_DEVICE_BIND, ioasid_device_bind, kCore),
    ROW(15, IOASID_DEVICE_UNBIND, ioasid_device_unbind, kCore),
    ROW(16, IOASID_DEVICE_GET_INFO, ioasid_device_info, kCore),
    ROW(17, IOASID_ATTACH_IOASID, ioasid_attach, kCore),
    ROW(18, IOASID_ATTACH_IOASID_PASID, ioasid_attach, kCore),
    ROW(19, IOASID_DETACH_IOASID, ioasid_attach, kCore),
    ROW(20, IOASID_DETACH_IOASID_PASID, ioasid_attach, kCore),
    ROW(21, IOASID_PAGE_RESP, ioasid_page_response, IOASID_FEAT_PAGE_RESP),
    ROW(22, IOASID_SET_DIRTY_TRACKING, ioasid_dirty_tracking, IOASID_FEAT_DIRTY_TRACKING),
    ROW(23, IOASID_GET_DIRTY_BITMAP, ioasid_dirty_bitmap, IOASID_FEAT_DIRTY_TRACKING),
    ROW(24, IOASID_DEVICE_DMA, ioasid_device_dma, kCore),
    ROW(25, IOASID_WQ_CONFIG, ioasid_wq_config, IOASID_FEAT_SIOV),
    ROW(26, IOASID_DEVICE_SUBMIT, ioasid_device_submit, IOASID_FEAT_SIOV),
    ROW(27, IOASID_ATS_TRANSLATE, ioasid_ats_translate, IOASID_FEAT_ATS),
    ROW(28, IOASID_ATS_INV_ACK, ioasid_ats_ack, IOASID_FEAT_ATS),
};
#undef ROW
constexpr unsigned kNumIoctls = 29;
static_assert(std::size(kIoctls) == kNumIoctls);

// The struct commands this slice serves, with their v1 sizes.
struct Served {
  unsigned nr;
  const char* name;
  size_t v1;
};
constexpr Served kServedStructs[] = {
    {2, "IOASID_GET_INFO", sizeof(ioasid_info)},
    {3, "IOASID_PASID_REQUEST", sizeof(ioasid_pasid_request)},
    {4, "IOASID_PASID_LOOKUP", sizeof(ioasid_pasid_lookup)},
};

constexpr uint32_t kPasidBits = 20;
constexpr uint32_t kPasidLimit = 1u << kPasidBits;  // the first invalid PASID
constexpr uint32_t kPasidMax = kPasidLimit - 1;
constexpr uint32_t kQuota = 1000;

// Base fixture: after each test, the harness-owned daemon must still be running.
class Conformance : public ::testing::Test {
 protected:
  void TearDown() override { expect_daemon_alive(); }
};
class Generic : public Conformance {};
class CheckExtension : public Conformance {};
class GetInfo : public Conformance {};
class PasidRequest : public Conformance {};
class LeadDecisions : public Conformance {};
class PasidLookup : public Conformance {};
class FaultQueue : public Conformance {};
class Isolation : public Conformance {};
class Lifecycle : public Conformance {};
class DaemonLog : public Conformance {};
class BadInput : public Conformance {};

// A valid v1 argument of a served struct command, as bytes (zero-extended to size).
// PASID_REQUEST allocates in r; PASID_LOOKUP looks up gpasid.
std::vector<uint8_t> good_arg(unsigned nr, size_t size, Range r, uint32_t gpasid) {
  switch (nr) {
    case 2:
      return bytes_of(ioasid_info{}, size);
    case 3:
      return bytes_of(req_alloc(r.lo, r.hi), size);
    case 4:
      return bytes_of(req_lookup(gpasid), size);
  }
  return std::vector<uint8_t>(size, 0);
}

// ====================================================================================
// Generic rules: dispatch, size, flags, reserved fields
// ====================================================================================

TEST_F(Generic, GetApiVersionReturnsOne) {
  Node n;
  ASSERT_TRUE(n.ok());
  Errno e;
  EXPECT_EQ(ioctl_value(n.fd(), IOASID_GET_API_VERSION, 0, &e), 1);
  EXPECT_EQ(e, kOk);
  // A second file answers the same.
  Node m;
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(ioctl_value(m.fd(), IOASID_GET_API_VERSION, 0, &e), 1);
}

TEST_F(Generic, UnknownNumberInTypeIIsENOTTY) {
  const Range r = slot(1);
  Node n;
  ASSERT_TRUE(n.ok());
  const unsigned nrs[] = {IOASID_BASE + kNumIoctls, IOASID_BASE + 30, IOASID_BASE + 99, IOASID_BASE + 155,
                          IOASID_BASE - 1, 0, 1, 2, 3, 64};
  for (unsigned nr : nrs) {
    for (size_t size : {size_t{0}, sizeof(ioasid_pasid_request), size_t{8}, size_t{56}, size_t{4096}}) {
      for (unsigned dir : {unsigned{_IOC_NONE}, unsigned{_IOC_READ}, unsigned{_IOC_WRITE}, kRW}) {
        if (dir == _IOC_NONE && size != 0) continue;
        SCOPED_TRACE(testing::Message() << "nr " << nr << " dir " << dir << " size " << size);
        auto buf = bytes_of(req_alloc(r.lo, r.hi), size);  // would allocate if misrouted
        EXPECT_EQ(raw_ioctl(n.fd(), dir, nr, buf), Err(ENOTTY));
      }
    }
  }
  EXPECT_EQ(pasids_allocated(n.fd()), 0u);
}

TEST_F(Generic, ForeignTypeIsENOTTY) {
  const Range r = slot(1);
  Node n;
  ASSERT_TRUE(n.ok());
  for (unsigned type : {unsigned{'j'}, unsigned{'I'}, unsigned{'h'}, unsigned{0xAF}, unsigned{'T'}}) {
    for (unsigned nr = IOASID_BASE; nr < IOASID_BASE + kNumIoctls; ++nr) {
      SCOPED_TRACE(testing::Message() << "type " << type << " nr " << nr);
      auto buf = bytes_of(req_alloc(r.lo, r.hi), 64);
      EXPECT_EQ(raw_ioctl(n.fd(), kRW, nr, buf, type), Err(ENOTTY));
    }
  }
  // A tty ioctl (what isatty() sends) is a foreign command too.
  Errno e;
  ioctl_value(n.fd(), 0x5401 /* TCGETS */, 0, &e);
  EXPECT_EQ(e, Err(ENOTTY));
  EXPECT_EQ(pasids_allocated(n.fd()), 0u);
}

TEST_F(Generic, StructCommandWithoutBothDirectionBitsIsENOTTY) {
  const Range r = slot(1);
  Node n;
  ASSERT_TRUE(n.ok());
  for (const auto& row : kIoctls) {
    if (row.size == 0) continue;
    for (unsigned dir : {unsigned{_IOC_NONE}, unsigned{_IOC_READ}, unsigned{_IOC_WRITE}}) {
      SCOPED_TRACE(testing::Message() << row.name << " dir " << dir);
      // Valid contents (an ALLOC for PASID_REQUEST): must not be acted upon.
      auto buf = good_arg(row.nr, row.size, r, 1);
      if (dir == _IOC_NONE) {
        EXPECT_EQ(ioctl_errno(n.fd(), make_cmd(_IOC_NONE, IOASID_BASE + row.nr, 0), buf.data()), Err(ENOTTY));
      } else {
        EXPECT_EQ(raw_ioctl(n.fd(), dir, IOASID_BASE + row.nr, buf), Err(ENOTTY));
      }
    }
  }
  EXPECT_EQ(pasids_allocated(n.fd()), 0u);
  // Nothing in r was taken: the whole slot still allocates from another file.
  Node m;
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(pasid_alloc_retry(m.fd(), r.lo, r.lo).err, kOk);
}

TEST_F(Generic, SizeBelowV1IsEINVAL) {
  const Range r = slot(2);
  Node n;
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(pasid_alloc_gpasid(n.fd(), r.lo, r.lo, 42).err, kOk);
  for (const auto& s : kServedStructs) {
    for (size_t size = 0; size < s.v1; ++size) {
      SCOPED_TRACE(testing::Message() << s.name << " size " << size);
      auto buf = good_arg(s.nr, size, {r.lo + 1, r.hi}, 42);  // a truncated valid argument
      EXPECT_EQ(raw_ioctl(n.fd(), kRW, IOASID_BASE + s.nr, buf), Err(EINVAL));
    }
  }
  EXPECT_EQ(pasids_allocated(n.fd()), 1u);
}

TEST_F(Generic, LargerSizeWithZeroTailIsAcceptedAndTailStaysZero) {
  const Range r = slot(3);
  Node n;
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(pasid_alloc_gpasid(n.fd(), r.lo, r.lo, 42).err, kOk);
  const ioasid_info ref = get_info(n.fd());
  for (const auto& s : kServedStructs) {
    for (size_t size : {s.v1 + 1, s.v1 + 3, s.v1 + 4, s.v1 + 8, s.v1 + 40, size_t{256}, size_t{1000}, size_t{4096}}) {
      SCOPED_TRACE(testing::Message() << s.name << " size " << size);
      auto buf = good_arg(s.nr, size, {r.lo + 1, r.hi}, 42);
      ASSERT_EQ(raw_ioctl(n.fd(), kRW, IOASID_BASE + s.nr, buf), kOk);
      EXPECT_TRUE(std::all_of(buf.begin() + s.v1, buf.end(), [](uint8_t b) { return b == 0; }))
          << "the tail beyond the v1 struct was written with non-zero bytes";
      if (s.nr == 2) {
        auto info = struct_from<ioasid_info>(buf);
        EXPECT_EQ(info.api_version, 1u);
        EXPECT_EQ(info.pasid_quota, ref.pasid_quota);
        EXPECT_EQ(info.pasids_allocated, 1u);
      } else if (s.nr == 3) {
        auto req = struct_from<ioasid_pasid_request>(buf);
        EXPECT_GE(req.pasid, r.lo + 1);
        EXPECT_LE(req.pasid, r.hi);
        auto fr = pasid_free(n.fd(), req.pasid, req.pasid);
        EXPECT_EQ(fr.err, kOk);
        EXPECT_EQ(fr.pasid, 1u);
      } else {
        auto lk = struct_from<ioasid_pasid_lookup>(buf);
        EXPECT_EQ(lk.out_pasid, r.lo);
      }
    }
  }
  EXPECT_EQ(pasids_allocated(n.fd()), 1u);
}

TEST_F(Generic, LargerSizeWithNonZeroTailIsE2BIG) {
  const Range r = slot(4);
  Node n;
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(pasid_alloc_gpasid(n.fd(), r.lo, r.lo, 42).err, kOk);
  const State before = snapshot(n.fd(), {42, 43});
  for (const auto& s : kServedStructs) {
    for (size_t size : {s.v1 + 1, s.v1 + 4, s.v1 + 8, size_t{128}, size_t{4096}}) {
      for (size_t pos : {s.v1, (s.v1 + size) / 2, size - 1}) {
        for (uint8_t val : {uint8_t{1}, uint8_t{0x80}, uint8_t{0xff}}) {
          SCOPED_TRACE(testing::Message() << s.name << " size " << size << " tail byte " << pos << " = " << int(val));
          auto buf = good_arg(s.nr, size, {r.lo + 1, r.lo + 1}, 42);
          buf[pos] = val;
          EXPECT_EQ(raw_ioctl(n.fd(), kRW, IOASID_BASE + s.nr, buf), Err(E2BIG));
        }
      }
    }
  }
  EXPECT_EQ(snapshot(n.fd(), {42, 43}), before);
  // r.lo + 1 was never taken: the same ALLOC with a zero tail gets it.
  auto buf = good_arg(3, 64, {r.lo + 1, r.lo + 1}, 0);
  EXPECT_EQ(raw_ioctl(n.fd(), kRW, IOASID_BASE + 3, buf), kOk);
  EXPECT_EQ(struct_from<ioasid_pasid_request>(buf).pasid, r.lo + 1);
}

TEST_F(Generic, UnknownFlagBitsAreEOPNOTSUPP) {
  const Range r = slot(5);
  Node n;
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(pasid_alloc_gpasid(n.fd(), r.lo, r.lo, 42).err, kOk);
  const State before = snapshot(n.fd(), {42});
  for (unsigned bit = 0; bit < 32; ++bit) {
    SCOPED_TRACE(testing::Message() << "bit " << bit);
    ioasid_info info{};
    info.flags = 1u << bit;
    EXPECT_EQ(ioctl_errno(n.fd(), IOASID_GET_INFO, &info), Err(EOPNOTSUPP)) << "GET_INFO";

    ioasid_pasid_lookup lk = req_lookup(42);
    lk.flags = 1u << bit;
    EXPECT_EQ(ioctl_errno(n.fd(), IOASID_PASID_LOOKUP, &lk), Err(EOPNOTSUPP)) << "PASID_LOOKUP";

    if (bit >= 3) {
      ioasid_pasid_request a = req_alloc(r.lo + 1, r.hi);
      a.flags |= 1u << bit;
      EXPECT_EQ(ioctl_errno(n.fd(), IOASID_PASID_REQUEST, &a), Err(EOPNOTSUPP)) << "ALLOC";
      ioasid_pasid_request f = req_free(r.lo, r.hi);
      f.flags |= 1u << bit;
      EXPECT_EQ(ioctl_errno(n.fd(), IOASID_PASID_REQUEST, &f), Err(EOPNOTSUPP)) << "FREE";
    }
  }
  EXPECT_EQ(snapshot(n.fd(), {42}), before);
}

TEST_F(Generic, NonZeroReservedIsEOPNOTSUPP) {
  const Range r = slot(6);
  Node n;
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(pasid_alloc_gpasid(n.fd(), r.lo, r.lo, 42).err, kOk);
  const State before = snapshot(n.fd(), {42});
  for (uint32_t v : {1u, 0x100u, 0x80000000u, 0xffffffffu}) {
    SCOPED_TRACE(testing::Message() << "__reserved " << v);
    ioasid_pasid_request a = req_alloc(r.lo + 1, r.hi);
    a.__reserved = v;
    EXPECT_EQ(ioctl_errno(n.fd(), IOASID_PASID_REQUEST, &a), Err(EOPNOTSUPP)) << "ALLOC";
    ioasid_pasid_request ag = req_alloc_gpasid(r.lo + 1, r.hi, 43);
    ag.__reserved = v;
    EXPECT_EQ(ioctl_errno(n.fd(), IOASID_PASID_REQUEST, &ag), Err(EOPNOTSUPP)) << "ALLOC|GPASID";
    ioasid_pasid_request f = req_free(r.lo, r.hi);
    f.__reserved = v;
    EXPECT_EQ(ioctl_errno(n.fd(), IOASID_PASID_REQUEST, &f), Err(EOPNOTSUPP)) << "FREE";
    ioasid_pasid_lookup lk = req_lookup(42);
    lk.__reserved = v;
    EXPECT_EQ(ioctl_errno(n.fd(), IOASID_PASID_LOOKUP, &lk), Err(EOPNOTSUPP)) << "LOOKUP";
  }
  EXPECT_EQ(snapshot(n.fd(), {42, 43}), (State{1, {{42, {kOk, r.lo}}, {43, {Err(ENOENT), 0}}}}));
  EXPECT_EQ(snapshot(n.fd(), {42}), before);
}

// The whole uAPI is served: every feature bit of UAPI.md is advertised, and each
// answers CHECK_EXTENSION.
TEST_F(Generic, EveryFeatureIsAdvertised) {
  Node n;
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(get_info(n.fd()).features, (1u << IOASID_FEAT_COUNT) - 1);
  for (unsigned bit = 0; bit < IOASID_FEAT_COUNT; ++bit)
    EXPECT_EQ(ioctl_value(n.fd(), IOASID_CHECK_EXTENSION, bit), 1) << bit;
}

// A battery of rejected calls on a file with state: after each one, this file's and
// another file's observable state is exactly as before.
TEST_F(Generic, EveryErrorLeavesStateUnchanged) {
  const Range r = slot(7);
  Node a, b;
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(pasid_alloc_gpasid(a.fd(), r.lo + 1, r.lo + 1, 11).err, kOk);
  ASSERT_EQ(pasid_alloc_gpasid(a.fd(), r.lo + 2, r.lo + 2, 12).err, kOk);
  ASSERT_EQ(pasid_alloc(a.fd(), r.lo + 3, r.lo + 3).err, kOk);
  ASSERT_EQ(pasid_alloc_gpasid(b.fd(), r.lo + 4, r.lo + 4, 11).err, kOk);
  const State a0 = snapshot(a.fd(), {11, 12, 13});
  const State b0 = snapshot(b.fd(), {11, 12});
  ASSERT_EQ(a0.allocated, 3u);

  auto req = [&](ioasid_pasid_request q) { return ioctl_errno(a.fd(), IOASID_PASID_REQUEST, &q); };
  auto req_sized = [&](ioasid_pasid_request q, size_t size, int tail_byte) {
    auto buf = bytes_of(q, size);
    if (tail_byte >= 0) buf[size - 1] = uint8_t(tail_byte);
    return raw_ioctl(a.fd(), kRW, _IOC_NR(IOASID_PASID_REQUEST), buf);
  };
  auto with = [](ioasid_pasid_request q, auto&& f) {
    f(q);
    return q;
  };
  const ioasid_pasid_request free_all = req_free(r.lo, r.hi);
  const ioasid_pasid_request alloc_any = req_alloc(r.lo + 10, r.hi);

  struct Case {
    const char* what;
    std::function<Errno()> call;
    Errno expected;
  };
  const Case cases[] = {
      {"ALLOC|FREE", [&] { return req(with(alloc_any, [](auto& q) { q.flags |= IOASID_PASID_FREE; })); }, Err(EINVAL)},
      {"flags 0", [&] { return req(with(alloc_any, [](auto& q) { q.flags = 0; })); }, Err(EINVAL)},
      {"ALLOC min 0", [&] { return req(req_alloc(0, r.hi)); }, Err(EINVAL)},
      {"ALLOC max 2^20", [&] { return req(req_alloc(r.lo, kPasidLimit)); }, Err(EINVAL)},
      {"ALLOC min > max", [&] { return req(req_alloc(r.lo + 20, r.lo + 19)); }, Err(EINVAL)},
      {"ALLOC another file's PASID", [&] { return req(req_alloc(r.lo + 4, r.lo + 4)); }, Err(ENOSPC)},
      {"ALLOC own PASID again", [&] { return req(req_alloc(r.lo + 1, r.lo + 3)); }, Err(ENOSPC)},
      {"ALLOC|GPASID duplicate", [&] { return req(req_alloc_gpasid(r.lo + 10, r.hi, 12)); }, Err(EEXIST)},
      {"ALLOC unknown flag", [&] { return req(with(alloc_any, [](auto& q) { q.flags |= 1u << 9; })); },
       Err(EOPNOTSUPP)},
      {"ALLOC reserved", [&] { return req(with(alloc_any, [](auto& q) { q.__reserved = 1; })); }, Err(EOPNOTSUPP)},
      {"ALLOC size 23", [&] { return req_sized(alloc_any, 23, -1); }, Err(EINVAL)},
      {"ALLOC size 32 tail", [&] { return req_sized(alloc_any, 32, 1); }, Err(E2BIG)},
      {"FREE unknown flag", [&] { return req(with(free_all, [](auto& q) { q.flags |= 1u << 31; })); },
       Err(EOPNOTSUPP)},
      {"FREE reserved", [&] { return req(with(free_all, [](auto& q) { q.__reserved = 7; })); }, Err(EOPNOTSUPP)},
      {"FREE size 12", [&] { return req_sized(free_all, 12, -1); }, Err(EINVAL)},
      {"FREE size 4096 tail", [&] { return req_sized(free_all, 4096, 0x5a); }, Err(E2BIG)},
      {"FREE as _IOW",
       [&] {
         auto buf = bytes_of(free_all);
         return raw_ioctl(a.fd(), _IOC_WRITE, _IOC_NR(IOASID_PASID_REQUEST), buf);
       },
       Err(ENOTTY)},
      {"FREE as _IOR",
       [&] {
         auto buf = bytes_of(free_all);
         return raw_ioctl(a.fd(), _IOC_READ, _IOC_NR(IOASID_PASID_REQUEST), buf);
       },
       Err(ENOTTY)},
      {"ALLOC as _IO",
       [&] {
         auto q = alloc_any;
         return ioctl_errno(a.fd(), _IO(IOASID_TYPE, _IOC_NR(IOASID_PASID_REQUEST)), &q);
       },
       Err(ENOTTY)},
      {"LOOKUP flags",
       [&] {
         auto l = req_lookup(11);
         l.flags = 1;
         return ioctl_errno(a.fd(), IOASID_PASID_LOOKUP, &l);
       },
       Err(EOPNOTSUPP)},
      {"LOOKUP reserved",
       [&] {
         auto l = req_lookup(11);
         l.__reserved = 1;
         return ioctl_errno(a.fd(), IOASID_PASID_LOOKUP, &l);
       },
       Err(EOPNOTSUPP)},
      {"LOOKUP unknown", [&] { return pasid_lookup(a.fd(), 13).err; }, Err(ENOENT)},
      {"GET_INFO flags",
       [&] {
         ioasid_info i{};
         i.flags = 2;
         return ioctl_errno(a.fd(), IOASID_GET_INFO, &i);
       },
       Err(EOPNOTSUPP)},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    EXPECT_EQ(c.call(), c.expected);
    EXPECT_EQ(snapshot(a.fd(), {11, 12, 13}), a0);
    EXPECT_EQ(snapshot(b.fd(), {11, 12}), b0);
  }
  // Control: a successful FREE is visible in the snapshot, so the comparisons above can fail.
  auto fr = pasid_free(a.fd(), r.lo, r.hi);
  EXPECT_EQ(fr.err, kOk);
  EXPECT_EQ(fr.pasid, 3u);
  EXPECT_NE(snapshot(a.fd(), {11, 12, 13}), a0);
  EXPECT_EQ(snapshot(b.fd(), {11, 12}), b0);
}

// ====================================================================================
// CHECK_EXTENSION, GET_INFO
// ====================================================================================

TEST_F(CheckExtension, MatchesGetInfoFeatures) {
  Node n;
  ASSERT_TRUE(n.ok());
  const uint32_t features = get_info(n.fd()).features;
  for (unsigned i = 0; i < IOASID_FEAT_COUNT; ++i) {
    Errno e;
    EXPECT_EQ(ioctl_value(n.fd(), IOASID_CHECK_EXTENSION, i, &e), long((features >> i) & 1)) << "feature " << i;
    EXPECT_EQ(e, kOk);
  }
  EXPECT_EQ(ioctl_value(n.fd(), IOASID_CHECK_EXTENSION, IOASID_FEAT_PASID), 1);
  EXPECT_EQ(ioctl_value(n.fd(), IOASID_CHECK_EXTENSION, IOASID_FEAT_GPASID), 1);
}

TEST_F(CheckExtension, OutOfRangeIndexesReturnZero) {
  Node n;
  ASSERT_TRUE(n.ok());
  // 32, 33, 38, 64 catch a "1u << index" without a range check (x86 masks the shift).
  for (unsigned long i : {10ul, 11ul, 31ul, 32ul, 33ul, 38ul, 64ul, 1000ul, 0x7fffffffUL, 0xffffffffUL, ~0UL}) {
    Errno e;
    EXPECT_EQ(ioctl_value(n.fd(), IOASID_CHECK_EXTENSION, i, &e), 0) << "index " << i;
    EXPECT_EQ(e, kOk) << "index " << i;
  }
}

TEST_F(GetInfo, ReportsTheDaemonsParameters) {
  Node n;
  ASSERT_TRUE(n.ok());
  ioasid_info info{};
  ASSERT_EQ(ioctl_errno(n.fd(), IOASID_GET_INFO, &info), kOk);
  EXPECT_EQ(info.api_version, uint32_t{IOASID_API_VERSION});
  EXPECT_EQ(info.pasid_bits, kPasidBits);
  EXPECT_TRUE(info.features & (1u << IOASID_FEAT_PASID)) << std::hex << info.features;
  EXPECT_TRUE(info.features & (1u << IOASID_FEAT_GPASID)) << std::hex << info.features;
  EXPECT_EQ(info.features >> IOASID_FEAT_COUNT, 0u) << "undefined feature bits: " << std::hex << info.features;
  EXPECT_EQ(info.pasid_quota, kQuota);
  EXPECT_EQ(info.pasids_allocated, 0u);
  EXPECT_TRUE(info.addr_width == 48 || info.addr_width == 57) << info.addr_width;
}

// The emulated VT-d registers, read at the VT-d spec's (rev 4.x) bit positions, as
// Linux's cap_*()/ecap_*() macros read them: every bit set is something the daemon
// models, every other bit is 0 (UAPI.md, GET_INFO).
TEST_F(GetInfo, VtdRegistersAdvertiseWhatIsModelledAtTheSpecPositions) {
  Node n;
  ASSERT_TRUE(n.ok());
  ioasid_info info{};
  ASSERT_EQ(ioctl_errno(n.fd(), IOASID_GET_INFO, &info), kOk);
  const auto field = [](uint64_t reg, int low, int width) { return (reg >> low) & ((1ull << width) - 1); };
  const uint64_t cap = info.cap_reg, ecap = info.ecap_reg;
  const uint32_t width = info.addr_width;
  ASSERT_TRUE(width == 48 || width == 57) << width;

  EXPECT_EQ(field(cap, 0, 3), 6u) << "ND: 64K domain ids";
  EXPECT_EQ(field(cap, 8, 5), width == 57 ? 0b01100u : 0b00100u) << "SAGAW: 4-level (and 5-level at 57 bits)";
  EXPECT_EQ(field(cap, 16, 6) + 1, width) << "MGAW";
  EXPECT_EQ(field(cap, 34, 4), 0b0011u) << "SLLPS: second-level 2M and 1G";
  EXPECT_EQ(field(cap, 39, 1), 1u) << "PSI";
  EXPECT_EQ(field(cap, 48, 6), width - 12) << "MAMV: a PSI may cover the address space";
  EXPECT_EQ(field(cap, 56, 1), 1u) << "FL1GP";
  EXPECT_EQ(field(cap, 60, 1), 1u) << "FL5LP";
  const uint64_t cap_known = (7ull << 0) | (0x1full << 8) | (0x3full << 16) | (0xfull << 34) | (1ull << 39) |
                             (0x3full << 48) | (1ull << 56) | (1ull << 60);
  EXPECT_EQ(cap & ~cap_known, 0u) << "cap_reg bits beyond what is modelled: " << std::hex << (cap & ~cap_known);

  EXPECT_EQ(field(ecap, 1, 1), 1u) << "QI";
  EXPECT_EQ(field(ecap, 2, 1), 1u) << "DT";
  EXPECT_EQ(field(ecap, 26, 1), 1u) << "NEST";
  EXPECT_EQ(field(ecap, 29, 1), 1u) << "PRS";
  EXPECT_EQ(field(ecap, 31, 1), 1u) << "SRS";
  EXPECT_EQ(field(ecap, 34, 1), 1u) << "EAFS";
  EXPECT_EQ(field(ecap, 35, 5), info.pasid_bits - 1) << "PSS = pasid_bits - 1";
  EXPECT_EQ(field(ecap, 35, 5), kPasidBits - 1) << "PSS";
  EXPECT_EQ(field(ecap, 40, 1), 1u) << "PASID";
  EXPECT_EQ(field(ecap, 43, 1), 1u) << "SMTS";
  EXPECT_EQ(field(ecap, 45, 1), 1u) << "SLADS";
  EXPECT_EQ(field(ecap, 46, 1), 1u) << "SLTS";
  EXPECT_EQ(field(ecap, 47, 1), 1u) << "FLTS";
  const uint64_t ecap_known = (1ull << 1) | (1ull << 2) | (1ull << 26) | (1ull << 29) | (1ull << 31) | (1ull << 34) |
                              (0x1full << 35) | (1ull << 40) | (1ull << 43) | (1ull << 45) | (1ull << 46) |
                              (1ull << 47);
  EXPECT_EQ(ecap & ~ecap_known, 0u) << "ecap_reg bits beyond what is modelled (C, PT, ERS...): " << std::hex
                                    << (ecap & ~ecap_known);
  // What the features say agrees: nesting, first-level binding, page responses.
  EXPECT_TRUE(info.features & (1u << IOASID_FEAT_NESTING));
  EXPECT_TRUE(info.features & (1u << IOASID_FEAT_BIND_PGTBL));
  EXPECT_TRUE(info.features & (1u << IOASID_FEAT_PAGE_RESP));
  EXPECT_TRUE(info.features & (1u << IOASID_FEAT_DIRTY_TRACKING));
}

TEST_F(GetInfo, NonZeroFlagsAreEOPNOTSUPP) {
  Node n;
  ASSERT_TRUE(n.ok());
  for (uint32_t f : {1u, 2u, 0x80000000u, 0xffffffffu}) {
    ioasid_info info{};
    info.flags = f;
    EXPECT_EQ(ioctl_errno(n.fd(), IOASID_GET_INFO, &info), Err(EOPNOTSUPP)) << "flags " << f;
  }
}

TEST_F(GetInfo, PasidsAllocatedTracksThisFilesAllocations) {
  const Range r = slot(8);
  Node a, b;
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(pasids_allocated(a.fd()), 0u);
  uint32_t p[3];
  for (uint32_t i = 0; i < 3; ++i) {
    auto res = pasid_alloc(a.fd(), r.lo, r.hi);
    ASSERT_EQ(res.err, kOk);
    p[i] = res.pasid;
    EXPECT_EQ(pasids_allocated(a.fd()), i + 1);
  }
  ASSERT_EQ(pasid_alloc_gpasid(a.fd(), r.lo, r.hi, 5).err, kOk);
  EXPECT_EQ(pasids_allocated(a.fd()), 4u);
  EXPECT_EQ(pasids_allocated(b.fd()), 0u) << "another file's count";
  auto fr = pasid_free(a.fd(), p[1], p[1]);
  EXPECT_EQ(fr.err, kOk);
  EXPECT_EQ(fr.pasid, 1u);
  EXPECT_EQ(pasids_allocated(a.fd()), 3u);
  ASSERT_EQ(pasid_alloc(b.fd(), r.lo, r.hi).err, kOk);
  EXPECT_EQ(pasids_allocated(b.fd()), 1u);
  EXPECT_EQ(pasids_allocated(a.fd()), 3u);
}

// ====================================================================================
// PASID_REQUEST
// ====================================================================================

TEST_F(PasidRequest, ExactlyOneOfAllocAndFreeElseEINVAL) {
  const Range r = slot(9);
  Node n;
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(pasid_alloc_gpasid(n.fd(), r.lo, r.lo, 3).err, kOk);
  const State before = snapshot(n.fd(), {3});
  for (uint32_t flags : {0u, IOASID_PASID_ALLOC | IOASID_PASID_FREE, IOASID_PASID_GPASID,
                         IOASID_PASID_ALLOC | IOASID_PASID_FREE | IOASID_PASID_GPASID}) {
    ioasid_pasid_request q{};
    q.flags = flags;
    q.min = r.lo;
    q.max = r.hi;
    q.gpasid = (flags & IOASID_PASID_GPASID) ? 4 : 0;
    EXPECT_EQ(ioctl_errno(n.fd(), IOASID_PASID_REQUEST, &q), Err(EINVAL)) << "flags " << flags;
  }
  EXPECT_EQ(snapshot(n.fd(), {3}), before);
}

TEST_F(PasidRequest, AllocReturnsANonZeroPasidInsideTheRange) {
  const Range r = slot(10);
  Node n;
  ASSERT_TRUE(n.ok());
  std::set<uint32_t> seen;
  const Range ranges[] = {{r.lo + 100, r.lo + 100}, {r.lo + 200, r.lo + 203}, {r.lo + 5, r.lo + 9}, {r.lo + 1000, r.hi}};
  for (Range q : ranges) {
    auto res = pasid_alloc(n.fd(), q.lo, q.hi);
    ASSERT_EQ(res.err, kOk) << q.lo << ".." << q.hi;
    EXPECT_NE(res.pasid, 0u);
    EXPECT_GE(res.pasid, q.lo);
    EXPECT_LE(res.pasid, q.hi);
    EXPECT_TRUE(seen.insert(res.pasid).second) << "PASID " << res.pasid << " handed out twice";
  }
  // A range of four gives four different PASIDs, then ENOSPC.
  for (int i = 0; i < 3; ++i) {
    auto res = pasid_alloc(n.fd(), r.lo + 200, r.lo + 203);
    ASSERT_EQ(res.err, kOk);
    EXPECT_TRUE(res.pasid >= r.lo + 200 && res.pasid <= r.lo + 203) << res.pasid;
    EXPECT_TRUE(seen.insert(res.pasid).second) << "PASID " << res.pasid << " handed out twice";
  }
  EXPECT_EQ(pasid_alloc(n.fd(), r.lo + 200, r.lo + 203).err, Err(ENOSPC));
  EXPECT_EQ(pasids_allocated(n.fd()), seen.size());
}

TEST_F(PasidRequest, LowestAndHighestPasidsAreAllocatable) {
  Node n;
  ASSERT_TRUE(n.ok());
  auto lo = pasid_alloc_retry(n.fd(), 1, 1);
  ASSERT_EQ(lo.err, kOk);
  EXPECT_EQ(lo.pasid, 1u);
  auto hi = pasid_alloc_retry(n.fd(), kPasidMax, kPasidMax);
  ASSERT_EQ(hi.err, kOk);
  EXPECT_EQ(hi.pasid, kPasidMax);
  // A range whose lower end is 1 never yields 0.
  auto any = pasid_alloc_retry(n.fd(), 1, 3);
  ASSERT_EQ(any.err, kOk);
  EXPECT_TRUE(any.pasid == 2 || any.pasid == 3) << any.pasid;
}

TEST_F(PasidRequest, InvalidRangesAreEINVAL) {
  const Range r = slot(11);
  Node n;
  ASSERT_TRUE(n.ok());
  const State before = snapshot(n.fd(), {});
  struct {
    uint32_t min, max;
  } const bad[] = {
      {0, 0},
      {0, 10},
      {0, r.hi},
      {r.lo, kPasidLimit},
      {r.lo, kPasidLimit + 1},
      {r.lo, 0xffffffffu},
      {kPasidLimit, kPasidLimit},
      {0xffffffffu, 0xffffffffu},
      {r.lo + 1, r.lo},
      {kPasidMax, 1},
  };
  for (auto b : bad) {
    SCOPED_TRACE(testing::Message() << "[" << b.min << ", " << b.max << "]");
    EXPECT_EQ(pasid_alloc(n.fd(), b.min, b.max).err, Err(EINVAL));
    EXPECT_EQ(pasid_alloc_gpasid(n.fd(), b.min, b.max, 9).err, Err(EINVAL));
  }
  EXPECT_EQ(snapshot(n.fd(), {9}), (State{0, {{9, {Err(ENOENT), 0}}}}));
  EXPECT_EQ(snapshot(n.fd(), {}), before);
}

TEST_F(PasidRequest, FullRangeIsENOSPC) {
  const Range r = slot(12);
  const uint32_t x = r.lo + 7;
  Node a, b;
  ASSERT_TRUE(a.ok() && b.ok());
  auto res = pasid_alloc(a.fd(), x, x);
  ASSERT_EQ(res.err, kOk);
  EXPECT_EQ(res.pasid, x);
  EXPECT_EQ(pasid_alloc(b.fd(), x, x).err, Err(ENOSPC)) << "taken by another file";
  EXPECT_EQ(pasid_alloc(a.fd(), x, x).err, Err(ENOSPC)) << "taken by this file";
  EXPECT_EQ(pasid_alloc_gpasid(b.fd(), x, x, 1).err, Err(ENOSPC));
  EXPECT_EQ(pasids_allocated(a.fd()), 1u);
  EXPECT_EQ(pasids_allocated(b.fd()), 0u);
  EXPECT_EQ(pasid_lookup(b.fd(), 1).err, Err(ENOENT)) << "a failed ALLOC|GPASID must not map the gpasid";
  // Two PASIDs around x fill [x-1, x+1] together with it.
  EXPECT_EQ(pasid_alloc(b.fd(), x - 1, x + 1).err, kOk);
  EXPECT_EQ(pasid_alloc(b.fd(), x - 1, x + 1).err, kOk);
  EXPECT_EQ(pasid_alloc(b.fd(), x - 1, x + 1).err, Err(ENOSPC));
  EXPECT_EQ(pasids_allocated(b.fd()), 2u);
}

TEST_F(PasidRequest, QuotaIsOneThousandPerFile) {
  const Range r = slot(13);  // 16384 PASIDs: the quota ends first
  Node a, b;
  ASSERT_TRUE(a.ok() && b.ok());
  std::set<uint32_t> got;
  for (uint32_t i = 0; i < kQuota; ++i) {
    auto res = pasid_alloc(a.fd(), r.lo, r.hi);
    ASSERT_EQ(res.err, kOk) << "allocation #" << i;
    ASSERT_TRUE(res.pasid >= r.lo && res.pasid <= r.hi) << res.pasid;
    ASSERT_TRUE(got.insert(res.pasid).second) << "PASID " << res.pasid << " handed out twice";
  }
  EXPECT_EQ(pasids_allocated(a.fd()), kQuota);
  EXPECT_EQ(pasid_alloc(a.fd(), r.lo, r.hi).err, Err(ENOSPC));
  EXPECT_EQ(pasid_alloc_gpasid(a.fd(), r.lo, r.hi, 77).err, Err(ENOSPC));
  EXPECT_EQ(pasid_lookup(a.fd(), 77).err, Err(ENOENT));
  EXPECT_EQ(pasids_allocated(a.fd()), kQuota);
  // The quota is per file: another file still allocates.
  auto other = pasid_alloc(b.fd(), r.lo, r.hi);
  ASSERT_EQ(other.err, kOk);
  EXPECT_EQ(got.count(other.pasid), 0u);
  // Freeing one makes room for exactly one.
  const uint32_t one = *got.begin();
  auto fr = pasid_free(a.fd(), one, one);
  EXPECT_EQ(fr.err, kOk);
  EXPECT_EQ(fr.pasid, 1u);
  EXPECT_EQ(pasid_alloc(a.fd(), r.lo, r.hi).err, kOk);
  EXPECT_EQ(pasid_alloc(a.fd(), r.lo, r.hi).err, Err(ENOSPC));
  // FREE of the whole range reports the count.
  fr = pasid_free(a.fd(), r.lo, r.hi);
  EXPECT_EQ(fr.err, kOk);
  EXPECT_EQ(fr.pasid, kQuota);
  EXPECT_EQ(pasids_allocated(a.fd()), 0u);
  EXPECT_EQ(pasids_allocated(b.fd()), 1u);
}

TEST_F(PasidRequest, GpasidMapsToTheNewPasidAndLookupReturnsIt) {
  const Range r = slot(14);
  Node n;
  ASSERT_TRUE(n.ok());
  struct {
    uint32_t gpasid, pasid;
  } maps[] = {{1, 0}, {2, 0}, {1000, 0}, {kPasidMax, 0}};
  for (auto& m : maps) {
    auto res = pasid_alloc_gpasid(n.fd(), r.lo, r.hi, m.gpasid);
    ASSERT_EQ(res.err, kOk) << "gpasid " << m.gpasid;
    EXPECT_TRUE(res.pasid >= r.lo && res.pasid <= r.hi) << res.pasid;
    m.pasid = res.pasid;
  }
  for (auto& m : maps) {
    auto lk = pasid_lookup(n.fd(), m.gpasid);
    EXPECT_EQ(lk.err, kOk) << "gpasid " << m.gpasid;
    EXPECT_EQ(lk.pasid, m.pasid) << "gpasid " << m.gpasid;
  }
  EXPECT_EQ(pasid_lookup(n.fd(), 3).err, Err(ENOENT));
  EXPECT_EQ(pasids_allocated(n.fd()), 4u);
}

TEST_F(PasidRequest, SameGpasidTwiceInOneFileIsEEXISTWithoutLeak) {
  const Range r = slot(15);
  const uint32_t p = r.lo + 1, q = r.lo + 2;
  Node a;
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(pasid_alloc_gpasid(a.fd(), p, p, 500).err, kOk);
  EXPECT_EQ(pasid_alloc_gpasid(a.fd(), q, q, 500).err, Err(EEXIST));
  EXPECT_EQ(pasid_alloc_gpasid(a.fd(), r.lo, r.hi, 500).err, Err(EEXIST));
  EXPECT_EQ(pasids_allocated(a.fd()), 1u);
  auto lk = pasid_lookup(a.fd(), 500);
  EXPECT_EQ(lk.err, kOk);
  EXPECT_EQ(lk.pasid, p) << "the first mapping must stay";
  // q was not leaked: another file can take exactly q.
  Node b;
  ASSERT_TRUE(b.ok());
  auto res = pasid_alloc(b.fd(), q, q);
  EXPECT_EQ(res.err, kOk);
  EXPECT_EQ(res.pasid, q);
}

TEST_F(PasidRequest, SameGpasidInTwoFilesMapsToTwoHostPasids) {
  const Range r = slot(16);
  Node a, b;
  ASSERT_TRUE(a.ok() && b.ok());
  auto pa = pasid_alloc_gpasid(a.fd(), r.lo, r.hi, 9);
  auto pb = pasid_alloc_gpasid(b.fd(), r.lo, r.hi, 9);
  ASSERT_EQ(pa.err, kOk);
  ASSERT_EQ(pb.err, kOk);
  EXPECT_NE(pa.pasid, pb.pasid);
  auto la = pasid_lookup(a.fd(), 9), lb = pasid_lookup(b.fd(), 9);
  EXPECT_EQ(la.err, kOk);
  EXPECT_EQ(lb.err, kOk);
  EXPECT_EQ(la.pasid, pa.pasid);
  EXPECT_EQ(lb.pasid, pb.pasid);
}

TEST_F(PasidRequest, FreeReleasesOnlyThisFilesPasidsInTheRange) {
  const Range r = slot(17);
  const Range f{r.lo + 100, r.lo + 199};  // the FREE range
  Node a, b;
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<uint32_t> a_in;
  for (uint32_t g = 1; g <= 5; ++g) {
    auto res = pasid_alloc_gpasid(a.fd(), f.lo, f.hi, g);
    ASSERT_EQ(res.err, kOk);
    a_in.push_back(res.pasid);
  }
  auto a_plain = pasid_alloc(a.fd(), f.lo, f.hi);  // no gpasid
  ASSERT_EQ(a_plain.err, kOk);
  a_in.push_back(a_plain.pasid);
  auto a_out = pasid_alloc_gpasid(a.fd(), r.lo + 300, r.lo + 300, 6);  // outside f
  ASSERT_EQ(a_out.err, kOk);
  auto a_edge_lo = pasid_alloc(a.fd(), f.lo - 1, f.lo - 1);  // just outside
  auto a_edge_hi = pasid_alloc(a.fd(), f.hi + 1, f.hi + 1);
  ASSERT_EQ(a_edge_lo.err, kOk);
  ASSERT_EQ(a_edge_hi.err, kOk);
  auto b1 = pasid_alloc_gpasid(b.fd(), f.lo, f.hi, 1);  // same gpasid as one of a's
  auto b2 = pasid_alloc(b.fd(), f.lo, f.hi);
  ASSERT_EQ(b1.err, kOk);
  ASSERT_EQ(b2.err, kOk);
  const State b0 = snapshot(b.fd(), {1});
  ASSERT_EQ(pasids_allocated(a.fd()), 9u);

  auto fr = pasid_free(a.fd(), f.lo, f.hi);
  ASSERT_EQ(fr.err, kOk);
  EXPECT_EQ(fr.pasid, 6u) << "count of PASIDs freed";
  EXPECT_EQ(pasids_allocated(a.fd()), 3u);
  for (uint32_t g = 1; g <= 5; ++g) EXPECT_EQ(pasid_lookup(a.fd(), g).err, Err(ENOENT)) << "gpasid " << g;
  auto lk6 = pasid_lookup(a.fd(), 6);
  EXPECT_EQ(lk6.err, kOk);
  EXPECT_EQ(lk6.pasid, a_out.pasid);
  // b's PASIDs in the range are untouched.
  EXPECT_EQ(snapshot(b.fd(), {1}), b0);
  EXPECT_EQ(pasid_alloc(a.fd(), b1.pasid, b1.pasid).err, Err(ENOSPC));
  EXPECT_EQ(pasid_alloc(a.fd(), b2.pasid, b2.pasid).err, Err(ENOSPC));
  // a's freed PASIDs are free again, right away (none was attached).
  for (uint32_t p : a_in) {
    auto res = pasid_alloc(b.fd(), p, p);
    EXPECT_EQ(res.err, kOk) << "PASID " << p;
  }
  // A second FREE of the same range frees nothing more.
  fr = pasid_free(a.fd(), f.lo, f.hi);
  EXPECT_EQ(fr.err, kOk);
  EXPECT_EQ(fr.pasid, 0u);
  EXPECT_EQ(pasids_allocated(a.fd()), 3u);
  // The gpasids are reusable after the FREE.
  EXPECT_EQ(pasid_alloc_gpasid(a.fd(), r.lo + 400, r.lo + 499, 1).err, kOk);
}

TEST_F(PasidRequest, FreeOfANonEmptyRangeWithNothingOwnedCountsZero) {
  const Range r = slot(18);
  Node a;
  ASSERT_TRUE(a.ok());
  ioasid_pasid_request q = req_free(r.lo, r.hi);
  q.pasid = 12345;  // the count must be written
  ASSERT_EQ(ioctl_errno(a.fd(), IOASID_PASID_REQUEST, &q), kOk);
  EXPECT_EQ(q.pasid, 0u);
  EXPECT_EQ(pasid_free(a.fd(), 1, kPasidMax).pasid, 0u);
}

// The gpasid field rules that UAPI.md leaves open, as decided by the lead. Adjust here.
TEST_F(LeadDecisions, GpasidFieldRules) {
  const Range r = slot(19);
  Node n;
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(pasid_alloc_gpasid(n.fd(), r.lo, r.lo, 8).err, kOk);
  const State before = snapshot(n.fd(), {8, 1, 5});

  // A non-zero gpasid without the GPASID flag: EINVAL.
  ioasid_pasid_request q = req_alloc(r.lo + 1, r.hi);
  q.gpasid = 5;
  EXPECT_EQ(ioctl_errno(n.fd(), IOASID_PASID_REQUEST, &q), Err(EINVAL)) << "ALLOC with gpasid, no GPASID flag";
  q = req_free(r.lo, r.hi);
  q.gpasid = 5;
  EXPECT_EQ(ioctl_errno(n.fd(), IOASID_PASID_REQUEST, &q), Err(EINVAL)) << "FREE with gpasid, no GPASID flag";
  // GPASID together with FREE: EINVAL.
  q = req_free(r.lo, r.hi);
  q.flags |= IOASID_PASID_GPASID;
  q.gpasid = 8;
  EXPECT_EQ(ioctl_errno(n.fd(), IOASID_PASID_REQUEST, &q), Err(EINVAL)) << "FREE|GPASID";
  // gpasid 0 or beyond pasid_bits with GPASID: EINVAL.
  for (uint32_t g : {0u, kPasidLimit, kPasidLimit + 1, 0xffffffffu}) {
    EXPECT_EQ(pasid_alloc_gpasid(n.fd(), r.lo + 1, r.hi, g).err, Err(EINVAL)) << "gpasid " << g;
  }
  EXPECT_EQ(snapshot(n.fd(), {8, 1, 5}), before);
  // The largest valid gpasid is accepted.
  EXPECT_EQ(pasid_alloc_gpasid(n.fd(), r.lo + 1, r.hi, kPasidMax).err, kOk);
}

// ====================================================================================
// PASID_LOOKUP
// ====================================================================================

TEST_F(PasidLookup, UnknownGpasidIsENOENT) {
  const Range r = slot(22);
  Node n;
  ASSERT_TRUE(n.ok());
  for (uint32_t g : {1u, 2u, 100u, kPasidMax}) EXPECT_EQ(pasid_lookup(n.fd(), g).err, Err(ENOENT)) << g;
  auto res = pasid_alloc_gpasid(n.fd(), r.lo, r.lo + 99, 100);
  ASSERT_EQ(res.err, kOk);
  EXPECT_EQ(pasid_lookup(n.fd(), 100).err, kOk);
  EXPECT_EQ(pasid_lookup(n.fd(), 101).err, Err(ENOENT));
  // A PASID allocated without GPASID is not a gpasid mapping of itself.
  auto plain = pasid_alloc(n.fd(), r.lo + 1000, r.lo + 1000);
  ASSERT_EQ(plain.err, kOk);
  EXPECT_EQ(pasid_lookup(n.fd(), plain.pasid).err, Err(ENOENT));
  // Freed: gone.
  ASSERT_EQ(pasid_free(n.fd(), res.pasid, res.pasid).pasid, 1u);
  EXPECT_EQ(pasid_lookup(n.fd(), 100).err, Err(ENOENT));
}

TEST_F(PasidLookup, FlagsOrReservedNonZeroAreEOPNOTSUPP) {
  const Range r = slot(22);
  Node n;
  ASSERT_TRUE(n.ok());
  auto res = pasid_alloc_gpasid(n.fd(), r.hi, r.hi, 7);
  ASSERT_EQ(res.err, kOk);
  ioasid_pasid_lookup l = req_lookup(7);
  l.flags = 1;
  l.out_pasid = 0xdead;
  EXPECT_EQ(ioctl_errno(n.fd(), IOASID_PASID_LOOKUP, &l), Err(EOPNOTSUPP));
  l = req_lookup(7);
  l.__reserved = 0x100;
  EXPECT_EQ(ioctl_errno(n.fd(), IOASID_PASID_LOOKUP, &l), Err(EOPNOTSUPP));
  // Control: the same lookup with zero flags and reserved succeeds.
  l = req_lookup(7);
  EXPECT_EQ(ioctl_errno(n.fd(), IOASID_PASID_LOOKUP, &l), kOk);
  EXPECT_EQ(l.out_pasid, res.pasid);
}

// ====================================================================================
// read()/poll(): the fault queue (always empty in this slice)
// ====================================================================================

TEST_F(FaultQueue, ReadSizeNotAMultipleOf64IsEINVAL) {
  Node n(O_NONBLOCK);
  ASSERT_TRUE(n.ok());
  alignas(8) uint8_t buf[512];
  for (size_t size : {1, 8, 32, 63, 65, 100, 127, 129, 200, 511}) {
    errno = 0;
    ssize_t r = ::read(n.fd(), buf, size);
    EXPECT_EQ(r, -1) << "size " << size;
    EXPECT_EQ(Err(errno), Err(EINVAL)) << "size " << size;
  }
  // The same on a blocking fd: the size is checked before waiting.
  std::string why;
  int rc = run_in_child(
      [] {
        int fd = ::open(node_path().c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0) return 10;
        uint8_t b[64];
        ssize_t r = ::read(fd, b, 63);
        if (r != -1) return 11;
        return errno == EINVAL ? 0 : 64 + std::min(errno, 190);
      },
      5s, &why);
  EXPECT_EQ(rc, 0) << "blocking read(63): " << (rc >= 64 ? errno_name(rc - 64) : why);
}

TEST_F(FaultQueue, NonBlockingReadWithNothingQueuedIsEAGAIN) {
  Node n(O_NONBLOCK);
  ASSERT_TRUE(n.ok());
  alignas(8) uint8_t buf[64 * 4];
  for (size_t size : {64, 128, 256}) {
    errno = 0;
    ssize_t r = ::read(n.fd(), buf, size);
    EXPECT_EQ(r, -1) << "size " << size;
    EXPECT_EQ(Err(errno), Err(EAGAIN)) << "size " << size;
  }
  // O_NONBLOCK set later with fcntl counts too (FUSE passes the file's current flags).
  std::string why;
  int rc = run_in_child(
      [] {
        int fd = ::open(node_path().c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0) return 10;
        if (::fcntl(fd, F_SETFL, O_NONBLOCK) != 0) return 11;
        uint8_t b[64];
        ssize_t r = ::read(fd, b, 64);
        if (r != -1) return 12;
        return errno == EAGAIN ? 0 : 64 + std::min(errno, 190);
      },
      5s, &why);
  EXPECT_EQ(rc, 0) << "fcntl(O_NONBLOCK) then read(64): " << (rc >= 64 ? errno_name(rc - 64) : why);
}

TEST_F(FaultQueue, PollShowsNoPollin) {
  Node n;
  ASSERT_TRUE(n.ok());
  pollfd p{n.fd(), POLLIN, 0};
  int r = ::poll(&p, 1, 0);
  ASSERT_GE(r, 0) << errno_name(errno);
  EXPECT_FALSE(p.revents & POLLIN) << "revents " << p.revents;
  EXPECT_FALSE(p.revents & (POLLERR | POLLNVAL)) << "revents " << p.revents;
  // With a short timeout: still nothing.
  p = {n.fd(), POLLIN | POLLPRI, 0};
  r = ::poll(&p, 1, 50);
  ASSERT_GE(r, 0) << errno_name(errno);
  EXPECT_EQ(r, 0) << "revents " << p.revents;
}

void noop_handler(int) {}

TEST_F(FaultQueue, BlockingReadIsInterruptedBySignal) {
  std::string why;
  // In a child, so that a read that is never interrupted cannot hang the suite.
  int rc = run_in_child(
      [] {
        struct sigaction sa {};
        sa.sa_handler = noop_handler;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;  // no SA_RESTART
        if (::sigaction(SIGUSR1, &sa, nullptr) != 0) return 10;
        int fd = ::open(node_path().c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0) return 11;
        std::atomic<bool> done{false};
        std::atomic<ssize_t> result{-2};
        std::atomic<int> err{0};
        std::thread reader([&] {
          alignas(8) uint8_t b[64];
          ssize_t r = ::read(fd, b, sizeof b);
          err = errno;
          result = r;
          done = true;
        });
        std::this_thread::sleep_for(100ms);
        // Re-send until it returns, in case the first signal came before read() began.
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        while (!done && std::chrono::steady_clock::now() < deadline) {
          ::pthread_kill(reader.native_handle(), SIGUSR1);
          std::this_thread::sleep_for(100ms);
        }
        if (!done) ::_exit(2);  // still blocked: _exit kills the stuck thread
        reader.join();
        if (result != -1) return 3;
        if (err != EINTR) return 64 + std::min(int(err), 190);
        // The file still works afterwards.
        if (::ioctl(fd, IOASID_GET_API_VERSION) != 1) return 4;
        if (::fcntl(fd, F_SETFL, O_NONBLOCK) != 0) return 5;
        uint8_t b[64];
        if (::read(fd, b, 64) != -1 || errno != EAGAIN) return 6;
        return 0;
      },
      15s, &why);
  const char* meaning[] = {"ok", "?", "read() still blocked 5 s after SIGUSR1", "read() returned data",
                           "GET_API_VERSION failed after the interrupted read",
                           "fcntl failed", "nonblocking read after the interrupt was not EAGAIN"};
  std::string msg = rc >= 64 ? "read() failed with " + errno_name(rc - 64) + " instead of EINTR"
                    : rc >= 0 && rc <= 6 ? meaning[rc]
                                         : why + " (rc " + std::to_string(rc) + ")";
  EXPECT_EQ(rc, 0) << msg;
}

// ====================================================================================
// Isolation between two opens
// ====================================================================================

TEST_F(Isolation, FreeThroughAnotherFileCountsZeroAndTheOwnerKeepsIt) {
  const Range r = slot(23);
  Node a, b;
  ASSERT_TRUE(a.ok() && b.ok());
  auto pa = pasid_alloc_gpasid(a.fd(), r.lo + 3, r.lo + 3, 33);
  ASSERT_EQ(pa.err, kOk);
  const State a0 = snapshot(a.fd(), {33});
  auto fr = pasid_free(b.fd(), pa.pasid, pa.pasid);
  EXPECT_EQ(fr.err, kOk);
  EXPECT_EQ(fr.pasid, 0u);
  fr = pasid_free(b.fd(), 1, kPasidMax);
  EXPECT_EQ(fr.err, kOk);
  EXPECT_EQ(fr.pasid, 0u);
  EXPECT_EQ(snapshot(a.fd(), {33}), a0);
  EXPECT_EQ(pasid_alloc(b.fd(), pa.pasid, pa.pasid).err, Err(ENOSPC)) << "a still owns it";
  EXPECT_EQ(pasids_allocated(b.fd()), 0u);
}

TEST_F(Isolation, AnotherFileCannotLookUpGpasids) {
  const Range r = slot(23);
  Node a, b;
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(pasid_alloc_gpasid(a.fd(), r.lo + 10, r.hi, 44).err, kOk);
  EXPECT_EQ(pasid_lookup(b.fd(), 44).err, Err(ENOENT));
  EXPECT_EQ(pasid_lookup(a.fd(), 44).err, kOk);
  // b can map the same gpasid itself, which does not change a's mapping.
  auto la = pasid_lookup(a.fd(), 44);
  ASSERT_EQ(pasid_alloc_gpasid(b.fd(), r.lo + 10, r.hi, 44).err, kOk);
  EXPECT_EQ(pasid_lookup(a.fd(), 44).pasid, la.pasid);
}

// ====================================================================================
// Lifecycle: fork, close, SIGKILL, parallel processes
// ====================================================================================

TEST_F(Lifecycle, ForkedChildKeepsTheContextAlive) {
  const Range r = slot(24);
  const uint32_t p = r.lo + 5;
  Node a;
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(pasid_alloc_gpasid(a.fd(), p, p, 55).err, kOk);
  int go[2], res[2];
  ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(res, O_CLOEXEC), 0);
  ChildGuard guard;
  std::fflush(stdout);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(go[1]);
    ::close(res[0]);
    char c;
    pollfd pf{go[0], POLLIN, 0};
    if (::poll(&pf, 1, 20000) != 1 || ::read(go[0], &c, 1) != 1) ::_exit(20);
    ioasid_pasid_lookup l = req_lookup(55);
    int e = ::ioctl(a.fd(), IOASID_PASID_LOOKUP, &l) < 0 ? errno : 0;
    uint32_t out[2] = {uint32_t(e), l.out_pasid};
    if (::write(res[1], out, sizeof out) != sizeof out) ::_exit(21);
    ::_exit(0);
  }
  guard.add(pid);
  ::close(go[0]);
  ::close(res[1]);
  a.close();  // the parent's copy; the child's keeps the file open

  Node b;
  ASSERT_TRUE(b.ok());
  std::this_thread::sleep_for(50ms);  // a wrongful release would have time to run
  EXPECT_EQ(pasid_alloc(b.fd(), p, p).err, Err(ENOSPC)) << "the child still holds the file, so p is owned";

  ASSERT_EQ(::write(go[1], "g", 1), 1);
  uint32_t out[2] = {0, 0};
  pollfd pf{res[0], POLLIN, 0};
  ASSERT_EQ(::poll(&pf, 1, 10000), 1) << "no answer from the child";
  ASSERT_EQ(::read(res[0], out, sizeof out), ssize_t(sizeof out));
  EXPECT_EQ(Err(int(out[0])), kOk) << "the child's LOOKUP after the parent's close";
  EXPECT_EQ(out[1], p);
  int st = 0;
  ASSERT_TRUE(wait_pid_for(pid, 10s, &st));
  guard.reaped(pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << describe_status(st);
  ::close(go[1]);
  ::close(res[0]);

  // The last holder exited: p is released.
  auto again = pasid_alloc_retry(b.fd(), p, p);
  EXPECT_EQ(again.err, kOk) << "p was not released after the last holder exited";
  EXPECT_EQ(again.pasid, p);
  EXPECT_EQ(pasid_lookup(b.fd(), 55).err, Err(ENOENT));
}

TEST_F(Lifecycle, CloseReleasesEveryPasid) {
  const Range r = slot(25);
  const Range f{r.lo, r.lo + 49};
  {
    Node a;
    ASSERT_TRUE(a.ok());
    ASSERT_EQ(pasid_alloc_gpasid(a.fd(), f.lo, f.lo, 1).err, kOk);
    for (uint32_t i = 1; i <= 49; ++i) ASSERT_EQ(pasid_alloc(a.fd(), f.lo, f.hi).err, kOk);
    ASSERT_EQ(pasid_alloc(a.fd(), f.lo, f.hi).err, Err(ENOSPC));
    Node b;
    ASSERT_TRUE(b.ok());
    ASSERT_EQ(pasid_alloc(b.fd(), f.lo, f.hi).err, Err(ENOSPC));
  }  // both closed
  Node c;
  ASSERT_TRUE(c.ok());
  std::set<uint32_t> got;
  for (uint32_t i = 0; i < 50; ++i) {
    auto res = pasid_alloc_retry(c.fd(), f.lo, f.hi);
    ASSERT_EQ(res.err, kOk) << "only " << i << " of 50 PASIDs came back after close";
    got.insert(res.pasid);
  }
  EXPECT_EQ(got.size(), 50u);
  EXPECT_EQ(pasid_lookup(c.fd(), 1).err, Err(ENOENT));
}

TEST_F(Lifecycle, SigkilledClientsPasidsAreReleased) {
  const Range r = slot(26);
  const Range f{r.lo, r.lo + 199};
  int ready[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  ChildGuard guard;
  std::fflush(stdout);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(ready[0]);
    int fd = ::open(node_path().c_str(), O_RDWR | O_CLOEXEC);
    uint32_t count = 0;
    if (fd >= 0) {
      ioasid_pasid_request q = req_alloc_gpasid(f.lo, f.lo, 2);
      if (::ioctl(fd, IOASID_PASID_REQUEST, &q) == 0) ++count;
      for (;;) {
        q = req_alloc(f.lo, f.hi);
        if (::ioctl(fd, IOASID_PASID_REQUEST, &q) != 0) break;
        ++count;
      }
    }
    if (::write(ready[1], &count, sizeof count) != sizeof count) ::_exit(1);
    for (;;) ::pause();
  }
  guard.add(pid);
  ::close(ready[1]);
  uint32_t count = 0;
  pollfd pf{ready[0], POLLIN, 0};
  ASSERT_EQ(::poll(&pf, 1, 20000), 1) << "child did not report";
  ASSERT_EQ(::read(ready[0], &count, sizeof count), ssize_t(sizeof count));
  ::close(ready[0]);
  ASSERT_EQ(count, 200u) << "the child could not fill the range";
  Node b;
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(pasid_alloc(b.fd(), f.lo, f.hi).err, Err(ENOSPC));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int st = 0;
  ASSERT_TRUE(wait_pid_for(pid, 10s, &st));
  guard.reaped(pid);
  std::set<uint32_t> got;
  for (uint32_t i = 0; i < 200; ++i) {
    auto res = pasid_alloc_retry(b.fd(), f.lo, f.hi);
    ASSERT_EQ(res.err, kOk) << "only " << i << " of 200 PASIDs came back after SIGKILL";
    got.insert(res.pasid);
  }
  EXPECT_EQ(got.size(), 200u);
  EXPECT_EQ(*got.begin(), f.lo);
  EXPECT_EQ(pasid_lookup(b.fd(), 2).err, Err(ENOENT));
}

TEST_F(Lifecycle, ParallelProcessesNeverGetTheSamePasid) {
  constexpr int kChildren = 6;
  constexpr uint32_t kCap = kQuota + 50;
  const Range r{slot(27).lo, slot(27).lo + 11999};  // bigger than 6 quotas: the quota ends first
  struct Report {
    uint32_t count;
    int32_t stop_errno;
    uint32_t allocated;
    int32_t setup_errno;
    uint32_t pasids[kCap];
  };
  const size_t bytes = sizeof(Report) * kChildren;
  void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  auto* reports = static_cast<Report*>(mem);
  std::memset(mem, 0, bytes);
  int start[2], done[2], finish[2];
  ASSERT_EQ(::pipe2(start, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(done, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(finish, O_CLOEXEC), 0);
  ChildGuard guard;
  std::vector<pid_t> pids;
  std::fflush(stdout);
  for (int i = 0; i < kChildren; ++i) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(start[1]);
      ::close(done[0]);
      ::close(finish[1]);
      Report& rep = reports[i];
      int fd = ::open(node_path().c_str(), O_RDWR | O_CLOEXEC);
      if (fd < 0) rep.setup_errno = errno;
      char c;
      pollfd pf{start[0], POLLIN, 0};
      ::poll(&pf, 1, 20000);
      (void)!::read(start[0], &c, 1);  // EOF: go
      while (fd >= 0 && rep.count < kCap) {
        ioasid_pasid_request q = req_alloc(r.lo, r.hi);
        if (::ioctl(fd, IOASID_PASID_REQUEST, &q) != 0) {
          rep.stop_errno = errno;
          break;
        }
        rep.pasids[rep.count++] = q.pasid;
      }
      ioasid_info info{};
      if (fd >= 0 && ::ioctl(fd, IOASID_GET_INFO, &info) == 0) rep.allocated = info.pasids_allocated;
      (void)!::write(done[1], "d", 1);
      pf = {finish[0], POLLIN, 0};
      ::poll(&pf, 1, 60000);  // hold the file until the parent has checked
      ::_exit(0);
    }
    guard.add(pid);
    pids.push_back(pid);
  }
  ::close(start[0]);
  ::close(done[1]);
  ::close(finish[0]);
  const auto t0 = std::chrono::steady_clock::now();
  ::close(start[1]);  // all children go
  int reported = 0;
  while (reported < kChildren) {
    pollfd pf{done[0], POLLIN, 0};
    ASSERT_EQ(::poll(&pf, 1, 60000), 1) << "only " << reported << " children finished";
    char c[8];
    ssize_t n = ::read(done[0], c, sizeof c);
    ASSERT_GT(n, 0);
    reported += int(n);
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  std::cout << "  " << kChildren << " x " << kQuota << " allocations in " << ms.count() << " ms\n";
  std::map<uint32_t, int> owner;
  for (int i = 0; i < kChildren; ++i) {
    const Report& rep = reports[i];
    SCOPED_TRACE(testing::Message() << "child " << i);
    EXPECT_EQ(rep.setup_errno, 0) << errno_name(rep.setup_errno);
    EXPECT_EQ(rep.count, kQuota);
    EXPECT_EQ(Err(rep.stop_errno), Err(ENOSPC));
    EXPECT_EQ(rep.allocated, kQuota);
    for (uint32_t k = 0; k < rep.count; ++k) {
      const uint32_t p = rep.pasids[k];
      EXPECT_TRUE(p >= r.lo && p <= r.hi) << "PASID " << p << " outside the range";
      auto [it, fresh] = owner.emplace(p, i);
      EXPECT_TRUE(fresh) << "PASID " << p << " handed to child " << it->second << " and child " << i;
      if (!fresh) break;
    }
  }
  EXPECT_EQ(owner.size(), size_t(kChildren) * kQuota);
  ::close(finish[1]);  // children exit
  for (pid_t pid : pids) {
    int st = 0;
    EXPECT_TRUE(wait_pid_for(pid, 10s, &st)) << "child " << pid << " did not exit";
    guard.reaped(pid);
  }
  ::close(done[0]);
  ::munmap(mem, bytes);
}

// ====================================================================================
// The daemon's log says why a call was rejected (only when the harness runs it)
// ====================================================================================

// Waits until the log has a line, written after offset, that contains every needle.
bool log_has_line(const std::string& path, std::streamoff offset, const std::vector<std::string>& needles,
                  std::string* tail) {
  return eventually(
      [&] {
        std::ifstream in(path);
        if (!in) return false;
        in.seekg(offset);
        tail->clear();
        for (std::string line; std::getline(in, line);) {
          *tail += line + "\n";
          if (std::all_of(needles.begin(), needles.end(),
                          [&](const std::string& n) { return line.find(n) != std::string::npos; }))
            return true;
        }
        return false;
      },
      2s);
}

std::streamoff file_size(const std::string& path) {
  std::ifstream in(path, std::ios::ate);
  return in ? std::streamoff(in.tellg()) : 0;
}

TEST_F(DaemonLog, RejectedIoctlsAreLoggedWithTheirErrno) {
  auto log = daemon_log_path();
  if (!log) GTEST_SKIP() << "the daemon is not the harness's (IOASID_DEV is set)";
  Node n;
  ASSERT_TRUE(n.ok());
  struct Case {
    const char* ioctl;
    Errno err;
    std::function<Errno()> call;
  };
  const Case cases[] = {
      {"IOASID_PASID_REQUEST", Err(EINVAL), [&] { return pasid_alloc(n.fd(), 0, 5).err; }},
      {"IOASID_GET_INFO", Err(EOPNOTSUPP),
       [&] {
         ioasid_info i{};
         i.flags = 4;
         return ioctl_errno(n.fd(), IOASID_GET_INFO, &i);
       }},
      {"IOASID_PASID_LOOKUP", Err(ENOENT), [&] { return pasid_lookup(n.fd(), 4242).err; }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.ioctl);
    const auto offset = file_size(*log);
    ASSERT_EQ(c.call(), c.err);
    const std::string err = errno_name(c.err.value);
    std::string tail;
    EXPECT_TRUE(log_has_line(*log, offset, {c.ioctl, err}, &tail))
        << "no log line with both " << c.ioctl << " and " << err << " after the call; new log lines:\n"
        << tail;
  }
}

// ====================================================================================
// Bad input: random bytes at every size
// ====================================================================================

uint64_t fuzz_seed() {
  if (const char* s = std::getenv("IOASID_FUZZ_SEED"); s && *s) return std::strtoull(s, nullptr, 0);
  return std::random_device{}() ^ (uint64_t(std::random_device{}()) << 32);
}

std::vector<size_t> fuzz_sizes(std::mt19937_64& rng) {
  std::vector<size_t> sizes;
  for (size_t s = 0; s <= 128; ++s) sizes.push_back(s);
  for (size_t s = 256; s <= 4096; s *= 2) {
    sizes.push_back(s - 1);
    sizes.push_back(s);
    sizes.push_back(s + 1);
  }
  std::uniform_int_distribution<size_t> d(129, 4096);
  for (int i = 0; i < 12; ++i) sizes.push_back(d(rng));
  return sizes;
}

std::string hex(std::span<const uint8_t> b, size_t max = 32) {
  std::ostringstream os;
  for (size_t i = 0; i < std::min(b.size(), max); ++i) os << std::hex << (b[i] < 16 ? "0" : "") << int(b[i]);
  if (b.size() > max) os << "...";
  return os.str();
}

TEST_F(BadInput, RandomBytesAtEverySizeGetAClearAnswer) {
  const uint64_t seed = fuzz_seed();
  std::cout << "  seed " << seed << " (rerun with IOASID_FUZZ_SEED=" << seed << ")\n";
  RecordProperty("seed", std::to_string(seed));
  std::mt19937_64 rng(seed);
  const Range r = slot(28);
  const Range victim_r = slot(29);
  const std::set<int> allowed = {0, EINVAL, E2BIG, EOPNOTSUPP, ENOSPC, EEXIST, ENOENT, EACCES, ENOTTY};

  // Another context whose state must survive.
  Node victim;
  ASSERT_TRUE(victim.ok());
  auto vp = pasid_alloc_gpasid(victim.fd(), victim_r.lo + 9, victim_r.lo + 9, 99);
  ASSERT_EQ(vp.err, kOk);
  const State v0 = snapshot(victim.fd(), {99});

  Node n;
  ASSERT_TRUE(n.ok());
  const uint32_t features = get_info(n.fd()).features;
  int calls = 0, successes = 0, bad = 0;
  std::map<int, int> by_errno;
  auto check = [&](const char* name, size_t size, std::span<const uint8_t> in, Errno e) {
    ++calls;
    ++by_errno[e.value];
    if (e == kOk) ++successes;
    if (!allowed.count(e.value) && ++bad <= 20) {
      ADD_FAILURE() << name << " size " << size << " input " << hex(in) << ": " << e << " is not an allowed answer";
    }
  };
  auto random_fill = [&](std::vector<uint8_t>& b) {
    for (auto& x : b) x = uint8_t(rng());
  };
  // A plausible argument: a good v1 struct with random fields, bits and tail.
  auto structured = [&](unsigned nr, size_t size, size_t v1) {
    std::vector<uint8_t> b;
    if (nr == 3) {
      ioasid_pasid_request q{};
      const uint32_t flag_choices[] = {IOASID_PASID_ALLOC, IOASID_PASID_FREE, IOASID_PASID_ALLOC | IOASID_PASID_GPASID,
                                       IOASID_PASID_FREE | IOASID_PASID_GPASID, uint32_t(rng())};
      q.flags = flag_choices[rng() % 5];
      q.min = r.lo + uint32_t(rng() % 2000);
      q.max = q.min + uint32_t(rng() % 64);
      q.gpasid = (q.flags & IOASID_PASID_GPASID) ? 1 + uint32_t(rng() % 64) : 0;
      if (rng() % 8 == 0) q.min = uint32_t(rng());
      if (rng() % 8 == 0) q.max = uint32_t(rng());
      b = bytes_of(q, size);
    } else if (nr == 4) {
      b = bytes_of(req_lookup(1 + uint32_t(rng() % 64)), size);
    } else {
      b = bytes_of(ioasid_info{}, size);
    }
    if (!b.empty() && rng() % 2) {  // flip a bit
      size_t bit = rng() % (b.size() * 8);
      b[bit / 8] ^= uint8_t(1u << (bit % 8));
    }
    if (b.size() > v1 && rng() % 4 == 0) b[v1 + rng() % (b.size() - v1)] = uint8_t(rng() | 1);  // tail junk
    return b;
  };

  // Below the v1 size only the size matters (EINVAL); from v1 on, one random and two
  // plausible arguments per size and round. IOASID_FUZZ_ROUNDS scales the work.
  const char* rounds_env = std::getenv("IOASID_FUZZ_ROUNDS");
  const int rounds = std::max(1, rounds_env ? std::atoi(rounds_env) : 1);
  for (size_t size : fuzz_sizes(rng)) {
    for (const auto& s : kServedStructs) {
      const int per_size = size < s.v1 ? rounds : 3 * rounds;
      for (int k = 0; k < per_size; ++k) {
        std::vector<uint8_t> in(size);
        if (k % 3 == 0) {
          random_fill(in);  // half of them with a zero tail, so the fields are parsed
          if (size > s.v1 && rng() % 2) std::fill(in.begin() + s.v1, in.end(), 0);
        } else
          in = structured(s.nr, size, s.v1);
        std::vector<uint8_t> buf = in;
        Errno e = raw_ioctl(n.fd(), kRW, IOASID_BASE + s.nr, buf);
        check(s.name, size, in, e);
        if (size < s.v1 && e != Err(EINVAL) && ++bad <= 20)
          ADD_FAILURE() << s.name << " size " << size << " (below v1): " << e << ", expected EINVAL";
        if (e == kOk && s.nr == 3 && size >= sizeof(ioasid_pasid_request)) {
          auto q = struct_from<ioasid_pasid_request>(in);
          auto out = struct_from<ioasid_pasid_request>(buf);
          if (q.flags & IOASID_PASID_ALLOC) {
            EXPECT_TRUE(out.pasid != 0 && out.pasid >= q.min && out.pasid <= q.max)
                << "ALLOC [" << q.min << ", " << q.max << "] returned " << out.pasid;
            EXPECT_NE(out.pasid, vp.pasid) << "ALLOC handed out the victim's PASID";
          }
        }
        if (e == kOk && s.nr == 2 && size >= sizeof(ioasid_info)) {
          EXPECT_EQ(struct_from<ioasid_info>(buf).api_version, 1u);
        }
      }
    }
  }
  // CHECK_EXTENSION with random arguments answers 0 or 1 and agrees with features.
  for (int i = 0; i < 100; ++i) {
    unsigned long arg = i < 50 ? rng() : rng() % 64;
    Errno e;
    long v = ioctl_value(n.fd(), IOASID_CHECK_EXTENSION, arg, &e);
    ++calls;
    EXPECT_EQ(e, kOk) << "CHECK_EXTENSION " << arg;
    EXPECT_EQ(v, long(arg < IOASID_FEAT_COUNT && ((features >> arg) & 1))) << "CHECK_EXTENSION " << arg;
  }
  std::cout << "  " << calls << " calls, " << successes << " succeeded;";
  for (auto [err, count] : by_errno) std::cout << " " << errno_name(err) << " " << count;
  std::cout << "\n";
  EXPECT_EQ(bad, 0) << "calls with an errno outside the allowed set (first 20 shown)";

  // The daemon still answers, on this file and a new one.
  EXPECT_EQ(ioctl_value(n.fd(), IOASID_GET_API_VERSION, 0), 1);
  Node fresh;
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(ioctl_value(fresh.fd(), IOASID_GET_API_VERSION, 0), 1);
  EXPECT_EQ(get_info(fresh.fd()).pasids_allocated, 0u);
  // The other context is unchanged, and its PASID is still owned.
  EXPECT_EQ(snapshot(victim.fd(), {99}), v0);
  EXPECT_EQ(pasid_alloc(fresh.fd(), vp.pasid, vp.pasid).err, Err(ENOSPC));
  EXPECT_LE(pasids_allocated(n.fd()), kQuota);
}

TEST_F(BadInput, RandomCommandNumbersOfTypeIAreENOTTY) {
  const uint64_t seed = fuzz_seed();
  std::cout << "  seed " << seed << " (rerun with IOASID_FUZZ_SEED=" << seed << ")\n";
  std::mt19937_64 rng(seed);
  Node n;
  ASSERT_TRUE(n.ok());
  std::vector<uint8_t> buf(_IOC_SIZEMASK + 1);
  int bad = 0;
  for (int i = 0; i < 600; ++i) {
    const unsigned dir = unsigned(rng() % 4);
    const size_t size = (dir == _IOC_NONE) ? 0 : (rng() % 2 ? rng() % 129 : rng() % (_IOC_SIZEMASK + 1));
    unsigned nr = unsigned(rng() % 256);
    bool expect_enotty = nr < IOASID_BASE || nr >= IOASID_BASE + kNumIoctls;
    if (!expect_enotty) {
      const auto& row = kIoctls[nr - IOASID_BASE];
      // A known number with the wrong direction bits is ENOTTY too.
      expect_enotty = row.size != 0 && dir != kRW;
      if (!expect_enotty) continue;
    }
    for (size_t k = 0; k < size; ++k) buf[k] = uint8_t(rng());
    Errno e = raw_ioctl(n.fd(), dir, nr, std::span(buf.data(), size));
    if (e != Err(ENOTTY) && ++bad <= 20)
      ADD_FAILURE() << "nr " << nr << " dir " << dir << " size " << size << ": " << e << ", expected ENOTTY";
  }
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(pasids_allocated(n.fd()), 0u);
}

}  // namespace

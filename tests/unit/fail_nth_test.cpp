// SPDX-License-Identifier: MIT
// Every error path of every step, one at a time: each scenario (one slice of the uAPI)
// is replayed with the calling thread armed to fail its Nth injectable point of one
// kind (allocation, client-memory copy, page-table page), N = 1, 2, ... until a replay
// runs clean. After each injected failure the engine's footprint (PASIDs and their
// references, pinned pages, HPA segments, table pages, domains, bindings) must be
// what it was before the failing ioctl, and the same ioctl retried must succeed (at
// the same fixed IOVAs, so an IOVA area left claimed shows as EEXIST); after the
// file is released everything must be back where it started.
#include "base/fail_nth.h"
#include "translation_support.h"
#include "dev_ioasid/service.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

namespace ioasid::dev_ioasid {
namespace {

using namespace std::chrono_literals;
using fail_nth::Site;
using iommu::test_support::MemfdMemory;

constexpr uint64_t k4K = 4096, k2M = 2ull << 20;

// What an injected failure must not leave behind.
struct Footprint {
  uint32_t contexts = 0;
  uint32_t pasids = 0;
  uint64_t pasid_references = 0;
  uint64_t pinned_pages = 0;
  size_t segments = 0;  // one per mapped area
  uint64_t table_pages = 0;
  size_t domains = 0;
  size_t bindings = 0;
  bool operator==(const Footprint&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Footprint& f) {
  return os << "{contexts " << f.contexts << ", PASIDs " << f.pasids << " (references " << f.pasid_references
            << "), pinned pages " << f.pinned_pages << ", segments " << f.segments << ", table pages "
            << f.table_pages << ", domains " << f.domains << ", bindings " << f.bindings << "}";
}

Footprint footprint(Service& service) {
  Footprint f;
  const ServiceStatus status = service.status();
  f.contexts = status.contexts;
  f.pasids = status.pasids_allocated;
  for (const PasidOwnerInfo& owner : service.pasids()) f.pasid_references += owner.refcount;
  f.pinned_pages = service.iommu().pins().total_pinned_pages();
  f.segments = service.iommu().memory().segments().size();
  f.table_pages = service.iommu().memory().tables().live_pages();
  f.domains = service.iommu().domains_in_use();
  for (const auto& device : service.devices().list()) f.bindings += device->bound_by().size();
  return f;
}

std::string site_name(Site site) {
  switch (site) {
    case Site::kAllocation: return "allocation";
    case Site::kClientCopy: return "client_copy";
    case Site::kTablePage: return "table_page";
  }
  return "?";
}

// One open file driven in-process; user pointers are this process's memory, as the
// daemon reaches a client's.
class Script {
 public:
  Script(Service& service, MemfdMemory& memfd, std::byte* mapped)
      : service_(service), memfd_(memfd), mapped_(mapped) {
    auto opened = service.open({.pid = getpid(), .uid = getuid(), .gid = getgid()});
    if (opened) context_ = *opened;
  }
  ~Script() {
    if (context_) service_.release(*context_);
  }
  bool ok() const { return context_ != nullptr; }
  bool stopped() const { return stopped_; }
  uint64_t va(uint64_t offset = 0) const { return reinterpret_cast<uint64_t>(mapped_) + offset; }
  int memfd() const { return memfd_.fd(); }

  // Runs one ioctl. When the injected failure hits it, checks that it changed nothing
  // and that the same ioctl then succeeds; any other failure fails the test.
  template <typename T>
  T& step(const char* name, uint32_t cmd, T& arg) {
    if (stopped_) return arg;
    const Footprint before = footprint(service_);
    const T original = arg;
    const bool already_injected = fail_nth::armed().injected;
    int error = run(cmd, arg);
    if (error != 0 && fail_nth::armed().injected && !already_injected) {
      EXPECT_EQ(footprint(service_), before) << name << " failed (" << std::strerror(error)
                                             << ") by injection but left something behind";
      arg = original;
      error = run(cmd, arg);
      EXPECT_EQ(error, 0) << name << " retried after the injected failure: " << std::strerror(error);
    } else {
      EXPECT_EQ(error, 0) << name << ": " << std::strerror(error);
    }
    if (error != 0) stopped_ = true;
    return arg;
  }

 private:
  template <typename T>
  int run(uint32_t cmd, T& arg) {
    std::vector<std::byte> buf(_IOC_SIZE(cmd));
    std::memcpy(buf.data(), &arg, std::min(sizeof arg, buf.size()));
    auto result = service_.ioctl(*context_, cmd, 0, buf, memory_);
    std::memcpy(&arg, buf.data(), std::min(sizeof arg, buf.size()));
    return result ? 0 : result.code();
  }

  Service& service_;
  MemfdMemory& memfd_;
  std::byte* mapped_;
  ProcessMemory memory_{getpid()};
  std::shared_ptr<Context> context_;
  bool stopped_ = false;
};

uint32_t alloc_pasid(Script& s, uint32_t min, std::optional<uint32_t> gpasid = std::nullopt) {
  ioasid_pasid_request request{.flags = IOASID_PASID_ALLOC, .min = min, .max = min + 100};
  if (gpasid) request.flags |= IOASID_PASID_GPASID, request.gpasid = *gpasid;
  return s.step("PASID_REQUEST ALLOC", IOASID_PASID_REQUEST, request).pasid;
}

uint32_t alloc_ioas(Script& s, uint32_t parent = 0) {
  ioasid_alloc alloc{.flags = parent ? IOASID_ALLOC_NESTED : 0u, .parent = parent};
  return s.step("ALLOC", IOASID_ALLOC, alloc).out_ioasid;
}

uint64_t map_dma(Script& s, uint32_t ioas, uint64_t offset, uint64_t length, uint64_t iova) {
  ioasid_map_dma map{.flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE | IOASID_MAP_FIXED_IOVA,
                     .ioasid = ioas,
                     .user_va = s.va(offset),
                     .length = length,
                     .iova = iova};
  return s.step("MAP_DMA", IOASID_MAP_DMA, map).iova;
}

uint32_t bind(Script& s, const char* name) {
  ioasid_device_bind bind{};
  std::strncpy(bind.name, name, sizeof bind.name - 1);
  return s.step("DEVICE_BIND", IOASID_DEVICE_BIND, bind).out_dev_id;
}

void attach_pasid(Script& s, uint32_t dev, uint32_t ioas, uint32_t pasid) {
  ioasid_attach attach{.dev_id = dev, .ioasid = ioas, .pasid = pasid};
  s.step("ATTACH_IOASID_PASID", IOASID_ATTACH_IOASID_PASID, attach);
}

void track_dirty(Script& s, uint32_t ioas) {
  ioasid_dirty_tracking tracking{.ioasid = ioas, .flags = IOASID_DIRTY_ENABLE};
  s.step("SET_DIRTY_TRACKING", IOASID_SET_DIRTY_TRACKING, tracking);
}

// GET_DIRTY_BITMAP of the 2 MiB at iova (clearing); the bitmap.
std::vector<uint64_t> read_dirty(Script& s, uint32_t ioas, uint64_t iova, uint64_t page_size) {
  std::vector<uint64_t> bitmap(8);
  ioasid_dirty_bitmap dirty{.ioasid = ioas,
                            .iova = iova,
                            .length = k2M,
                            .page_size = page_size,
                            .bitmap_uptr = reinterpret_cast<uint64_t>(bitmap.data())};
  s.step("GET_DIRTY_BITMAP", IOASID_GET_DIRTY_BITMAP, dirty);
  return bitmap;
}

void pasid_slice(Script& s) {
  alloc_pasid(s, 100);
  const uint32_t guest_backed = alloc_pasid(s, 200, 7);
  ioasid_pasid_lookup lookup{.gpasid = 7};
  s.step("PASID_LOOKUP", IOASID_PASID_LOOKUP, lookup);
  ioasid_pasid_request free{.flags = IOASID_PASID_FREE, .min = guest_backed, .max = guest_backed};
  s.step("PASID_REQUEST FREE", IOASID_PASID_REQUEST, free);
}

void ioas_slice(Script& s) {
  const uint32_t ioas = alloc_ioas(s);
  map_dma(s, ioas, 0, k2M, 0x40000000);
  // At a fixed IOVA: an IOVA area left claimed by a failed MAP makes the retry EEXIST.
  ioasid_map_file file{.flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE | IOASID_MAP_FIXED_IOVA,
                       .ioasid = ioas,
                       .fd = s.memfd(),
                       .offset = k2M,
                       .length = 64 * k4K,
                       .iova = 0x80000000};
  s.step("MAP_FILE", IOASID_MAP_FILE, file);
  std::vector<ioasid_iova_range> ranges(8);
  ioasid_iova_ranges query{.ioasid = ioas, .num_ranges = 8, .ranges_uptr = reinterpret_cast<uint64_t>(ranges.data())};
  s.step("IOVA_RANGES", IOASID_IOVA_RANGES, query);
  track_dirty(s, ioas);
  read_dirty(s, ioas, 0x40000000, k4K);
  ioasid_unmap_dma unmap{.ioasid = ioas, .iova = 0x40000000, .length = k2M};
  s.step("UNMAP_DMA", IOASID_UNMAP_DMA, unmap);
  const uint32_t second = alloc_ioas(s);
  map_dma(s, second, 0, 16 * k4K, 0x10000);
  ioasid_free free{.ioasid = second};
  s.step("FREE", IOASID_FREE, free);
}

void attach_slice(Script& s) {
  const uint32_t dev = bind(s, "dma0");
  const uint32_t ioas = alloc_ioas(s);
  map_dma(s, ioas, 0, k2M, 0x200000);
  ioasid_attach rid{.dev_id = dev, .ioasid = ioas};
  s.step("ATTACH_IOASID", IOASID_ATTACH_IOASID, rid);
  const uint32_t pasid = alloc_pasid(s, 300);
  attach_pasid(s, dev, ioas, pasid);
  std::vector<std::byte> buffer(k4K);
  ioasid_device_dma dma{.dev_id = dev,
                        .flags = IOASID_DMA_PASID,
                        .pasid = pasid,
                        .iova = 0x200000,
                        .length = k4K,
                        .buf_uptr = reinterpret_cast<uint64_t>(buffer.data())};
  s.step("DEVICE_DMA read", IOASID_DEVICE_DMA, dma);
  track_dirty(s, ioas);
  dma.flags |= IOASID_DMA_WRITE;
  s.step("DEVICE_DMA write", IOASID_DEVICE_DMA, dma);
  // A GET that fails after reading (and clearing) the D bits must not lose them.
  const std::vector<uint64_t> bitmap = read_dirty(s, ioas, 0x200000, k2M);
  if (!s.stopped()) {
    EXPECT_EQ(bitmap[0], 1u) << "the page the device wrote is not reported dirty";
  }
  ioasid_attach detach{.dev_id = dev, .ioasid = ioas, .pasid = pasid};
  s.step("DETACH_IOASID_PASID", IOASID_DETACH_IOASID_PASID, detach);
}

void nested_slice(Script& s) {
  const uint32_t parent = alloc_ioas(s);
  map_dma(s, parent, 0, k2M, 0);  // guest RAM at GPA 0; its first page is an empty guest table
  const uint32_t nested = alloc_ioas(s, parent);
  const uint32_t dev = bind(s, "dma0");
  const uint32_t pasid = alloc_pasid(s, 400);
  attach_pasid(s, dev, nested, pasid);
  ioasid_bind_pgtbl bind{.ioasid = nested, .format = IOASID_PGTBL_VTD_FL, .pgtbl_addr = 0, .addr_width = 48};
  s.step("BIND_PGTBL", IOASID_BIND_PGTBL, bind);
  std::vector<ioasid_cache_invalidate_info> entries{
      {.cache = IOASID_CACHE_IOTLB, .granularity = IOASID_INV_GRANU_DOMAIN},
      {.cache = IOASID_CACHE_PASID, .granularity = IOASID_INV_GRANU_PASID, .flags = IOASID_INV_FLAGS_PASID, .pasid = pasid}};
  ioasid_cache_invalidate invalidate{.ioasid = nested,
                                     .entry_len = sizeof(ioasid_cache_invalidate_info),
                                     .entry_num = static_cast<uint32_t>(entries.size()),
                                     .entries_uptr = reinterpret_cast<uint64_t>(entries.data())};
  s.step("CACHE_INVLD", IOASID_CACHE_INVLD, invalidate);
  ioasid_unbind_pgtbl unbind{.ioasid = nested};
  s.step("UNBIND_PGTBL", IOASID_UNBIND_PGTBL, unbind);
}

void dsa_slice(Script& s) {
  const uint32_t dev = bind(s, "dsa0");
  const uint32_t ioas = alloc_ioas(s);
  map_dma(s, ioas, 0, k2M, 0x400000);
  const uint32_t pasid = alloc_pasid(s, 500);
  attach_pasid(s, dev, ioas, pasid);
  ioasid_wq_config enable{.dev_id = dev, .wq = 1, .flags = IOASID_WQ_ENABLE, .pasid = pasid, .size = 4, .priority = 1};
  s.step("WQ_CONFIG enable", IOASID_WQ_CONFIG, enable);
  const ioasid_dsa_desc desc{.pasid = pasid,
                             .opflags = IOASID_DSA_OPFLAGS(IOASID_DSA_OPCODE_MEMMOVE,
                                                           IOASID_DSA_FLAG_CRAV | IOASID_DSA_FLAG_RCR),
                             .completion_addr = 0x400000,
                             .src = 0x400000 + k4K,
                             .dst = 0x400000 + 2 * k4K,
                             .xfer_size = 1024};
  ioasid_device_submit submit{.dev_id = dev, .wq = 1};
  std::memcpy(submit.desc, &desc, sizeof desc);
  s.step("DEVICE_SUBMIT", IOASID_DEVICE_SUBMIT, submit);
  ioasid_wq_config disable{.dev_id = dev, .wq = 1};  // drains the descriptor
  s.step("WQ_CONFIG disable", IOASID_WQ_CONFIG, disable);
}

struct Scenario {
  const char* name;
  std::function<void(Script&)> run;
  Site site;
};

std::ostream& operator<<(std::ostream& os, const Scenario& scenario) {
  return os << scenario.name << "/" << site_name(scenario.site);
}

class FailNth : public ::testing::TestWithParam<Scenario> {
 protected:
  static void SetUpTestSuite() { spdlog::set_level(spdlog::level::off); }
  static void TearDownTestSuite() { spdlog::set_level(spdlog::level::info); }
};

// Released work (descriptors still queued, PASID references they hold) ends on the
// device executor, so the footprint settles shortly after release.
Footprint settled(Service& service, const Footprint& expected) {
  Footprint now = footprint(service);
  for (auto deadline = std::chrono::steady_clock::now() + 5s;
       now != expected && std::chrono::steady_clock::now() < deadline; now = footprint(service))
    std::this_thread::sleep_for(1ms);
  return now;
}

TEST_P(FailNth, EveryFailureUndoesItself) {
  const Scenario& scenario = GetParam();
  Service service(ServiceConfig{.default_pasid_quota = 16});
  MemfdMemory memfd(4 * k2M);
  std::byte* mapped = memfd.map_here();
  ASSERT_NE(mapped, nullptr);
  const Footprint baseline = footprint(service);

  unsigned injected = 0;
  for (unsigned n = 1; n < 1000; ++n) {
    bool fired = false;
    {
      Script script(service, memfd, mapped);
      ASSERT_TRUE(script.ok());
      fail_nth::arm(n, static_cast<unsigned>(scenario.site));
      scenario.run(script);
      fired = fail_nth::disarm();
      ASSERT_FALSE(script.stopped()) << "with point " << n << " failing";
    }
    EXPECT_EQ(settled(service, baseline), baseline) << "leaked after the file's release, point " << n;
    if (!fired) break;
    ++injected;
    if (HasFailure()) break;
  }
  std::cout << "[ fail-nth ] " << scenario << ": " << injected << " failure(s) injected"
            << (HasFailure() ? ", NOT all undone\n" : ", each undone\n");
  if (scenario.site == Site::kAllocation) {
    EXPECT_GT(injected, 0u) << "the scenario reaches no point of this kind";
  }
}

std::vector<Scenario> scenarios() {
  const std::pair<const char*, void (*)(Script&)> slices[] = {
      {"pasid", pasid_slice}, {"ioas", ioas_slice}, {"attach", attach_slice},
      {"nested", nested_slice}, {"dsa", dsa_slice}};
  std::vector<Scenario> all;
  for (const auto& [name, run] : slices)
    for (const Site site : {Site::kAllocation, Site::kClientCopy, Site::kTablePage})
      all.push_back({name, run, site});
  return all;
}

INSTANTIATE_TEST_SUITE_P(Slices, FailNth, ::testing::ValuesIn(scenarios()),
                         [](const auto& info) { return std::string(info.param.name) + "_" + site_name(info.param.site); });

}  // namespace
}  // namespace ioasid::dev_ioasid

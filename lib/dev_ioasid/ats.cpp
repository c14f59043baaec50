// SPDX-License-Identifier: MIT
// ATS_TRANSLATE and ATS_INV_ACK: a device model translates through the IOMMU as a
// PCIe device with ATS does (a Translation Request), moves the bytes itself, and
// acknowledges the invalidation requests for what it was handed (iommu/ats.h).
#include "devices/dma_function.h"
#include "memory/caller_view.h"
#include "dev_ioasid/handlers.h"
#include "dev_ioasid/service.h"

#include <spdlog/spdlog.h>

#include <vector>

namespace ioasid::dev_ioasid {
namespace {

// One request covers at most what one DMA may (a device's maximum transfer), and
// writes at most kMaxRuns runs back: a bounded walk and a bounded reply.
constexpr uint64_t kMaxAtsLength = 64ull << 20;
constexpr uint32_t kMaxRuns = 512;
// Walks redone when the route changed between reading the domain and walking.
constexpr int kRouteAttempts = 4;

constexpr uint32_t kKnownFlags = IOASID_ATS_PASID | IOASID_ATS_WRITE | IOASID_ATS_PRIV | IOASID_ATS_NOWAIT;

uint16_t domain_of(Device& device, uint32_t pasid) {
  const auto entry = device.pasid_table().translate_lookup(pasid);
  return entry ? entry->domain : 0;
}

// The translated runs as the caller reaches them, merged where both the IOVAs and the
// caller's addresses run on, until a byte the caller cannot reach or the last slot.
struct Answer {
  std::vector<ioasid_ats_run> runs;
  uint64_t length = 0;
  std::optional<std::pair<uint32_t, uint32_t>> stop;  // (out_status, out_fault_reason)
};

Answer place_runs(HpaSpace& memory, CallerView& caller, const devices::TranslatedRange& translated, uint64_t iova,
                  uint32_t slots, bool write) {
  Answer answer;
  const uint32_t perm = write ? IOASID_ATS_RUN_WRITE : IOASID_ATS_RUN_READ;
  for (const devices::TranslatedRun& run : translated.runs) {
    for (uint64_t done = 0; done < run.range.size;) {
      const Hpa hpa = run.range.hpa + done;
      const auto segment = memory.find_segment(hpa);
      if (!segment || !segment->backing->origin()) {
        answer.stop = {IOASID_ATS_FOREIGN, IOASID_ATS_FOREIGN_PROCESS};  // no client mapped it
        return answer;
      }
      const uint64_t into = hpa - segment->base;
      const ClientOrigin origin = segment->backing->origin()->shifted(into);
      const auto place = caller.place(origin, std::min(run.range.size - done, segment->size - into), write);
      if (const auto* why = std::get_if<Unreachable>(&place)) {
        answer.stop = {IOASID_ATS_FOREIGN, *why == Unreachable::kOtherProcess ? IOASID_ATS_FOREIGN_PROCESS
                                                                                : IOASID_ATS_FOREIGN_FILE};
        return answer;
      }
      const CallerPlace& at = std::get<CallerPlace>(place);
      const uint32_t run_perm = perm | (origin.kind == ClientOrigin::Kind::kFile ? IOASID_ATS_RUN_FILE : 0u);
      const uint64_t run_iova = iova + run.offset + done;
      ioasid_ats_run* last = answer.runs.empty() ? nullptr : &answer.runs.back();
      if (last && last->iova + last->length == run_iova && last->uaddr + last->length == at.address &&
          last->perm == run_perm) {
        last->length += at.length;
      } else if (answer.runs.size() == slots) {
        answer.stop = {IOASID_ATS_MORE, 0};
        return answer;
      } else {
        answer.runs.push_back({.iova = run_iova, .length = at.length, .uaddr = at.address, .perm = run_perm});
      }
      answer.length += at.length;
      done += at.length;
    }
  }
  return answer;
}

}  // namespace

Result<long> ats_translate(Call& call, ioasid_ats_translate& request) {
  IOASID_TRY(check_flags(request.flags, kKnownFlags));
  auto device = call.context.objects().find<Device>(request.dev_id);
  if (!device) return fail(ENOENT, "no device with dev_id {} in this file", request.dev_id);
  const devices::DeviceSpec& spec = device->spec();
  if (device->removed()) return fail(ENODEV, "{} was removed by the admin", spec.name);
  if (!spec.ats) return fail(EOPNOTSUPP, "{} has no ATS capability", spec.name);
  const DeviceRequest asked{.dev_id = request.dev_id,
                            .with_pasid = (request.flags & IOASID_ATS_PASID) != 0,
                            .pasid = request.pasid,
                            .write = (request.flags & IOASID_ATS_WRITE) != 0,
                            .privileged = (request.flags & IOASID_ATS_PRIV) != 0};
  IOASID_TRY(check_request_pasid(spec, asked));
  if (request.length == 0) return fail(EINVAL, "length 0");
  if (request.length > kMaxAtsLength)
    return fail(EINVAL, "length {:#x} is above the {:#x} one request may translate", request.length, kMaxAtsLength);
  if (request.iova + (request.length - 1) < request.iova)
    return fail(EOVERFLOW, "iova {:#x} + length {:#x} wraps", request.iova, request.length);
  if (request.num_runs == 0 || request.num_runs > kMaxRuns)
    return fail(EINVAL, "num_runs {} (1..{})", request.num_runs, kMaxRuns);
  if (request.runs_uptr == 0) return fail(EINVAL, "runs_uptr 0");
  const auto holder = call.service.ats_holder(call.context);
  if (holder->failed(request.dev_id))
    return fail(EIO, "{} (dev_id {}) failed to acknowledge an ATS invalidation: unbind and bind it again", spec.name,
                request.dev_id);

  const uint32_t slots = request.num_runs;
  request.num_runs = 0;
  request.out_length = 0;
  request.out_fault_addr = 0;
  request.out_status = IOASID_ATS_OK;
  request.out_fault_reason = 0;
  const uint32_t pasid = asked.with_pasid ? request.pasid : iommu::kRidPasid;
  const pgtable::Access access{.read = !asked.write, .write = asked.write};
  iommu::Iommu& iommu = call.service.iommu();
  Answer answer;
  for (int attempt = 0;;) {
    const uint16_t domain = domain_of(*device, pasid);
    auto reservation = holder->reserve(request.dev_id, domain, pasid, request.iova, request.length);
    IOASID_TRY(reservation);
    const auto translated = devices::translate_range(iommu, device->pasid_table(), nullptr, pasid, request.iova,
                                                     request.length, access, asked.privileged);
    if (domain_of(*device, pasid) != domain && ++attempt < kRouteAttempts) {
      // Recorded under the domain it no longer routes to: a later flush of the new one
      // would miss it. Walk again.
      holder->keep(*reservation, 0);
      continue;
    }
    CallerView caller(call.memory.pid());
    answer = place_runs(iommu.memory(), caller, translated, request.iova, slots, asked.write);
    holder->keep(*reservation, answer.length);
    if (answer.stop) {
      std::tie(request.out_status, request.out_fault_reason) = *answer.stop;
      request.out_fault_addr = request.iova + answer.length;
      break;
    }
    if (!translated.fault) break;
    const devices::DmaFault& fault = *translated.fault;
    request.out_status = IOASID_ATS_FAULT;
    request.out_fault_addr = fault.address;
    request.out_fault_reason = fault.reason;
    // Past a translated prefix the device uses what it got and asks again from the
    // fault: only a miss on the first byte raises a page request.
    if (answer.length != 0) break;
    // A translation completion without access is not a fault the IOMMU records.
    auto next = after_fault(call, *device, asked.source(spec), fault, !(request.flags & IOASID_ATS_NOWAIT),
                            false);
    IOASID_TRY(next);
    if (*next == AfterFault::kRetry) {
      request.out_status = IOASID_ATS_OK;
      request.out_fault_addr = 0;
      request.out_fault_reason = 0;
      continue;
    }
    if (*next == AfterFault::kPageRequest) request.out_status = IOASID_ATS_PAGE_REQ;
    if (*next == AfterFault::kRetryLater) request.out_status = IOASID_ATS_RETRY;
    break;
  }
  const auto bytes = std::as_bytes(std::span(answer.runs));
  if (!bytes.empty() && !call.memory.write(request.runs_uptr, bytes))
    return fail(EFAULT, "runs_uptr {:#x} does not hold {} runs", request.runs_uptr, answer.runs.size());
  request.num_runs = static_cast<uint32_t>(answer.runs.size());
  request.out_length = answer.length;
  return 0;
}

Result<long> ats_inv_ack(Call& call, ioasid_ats_ack& ack) {
  IOASID_TRY(check_flags(ack.flags, 0));
  IOASID_TRY(check_reserved(ack.__reserved, "__reserved"));
  const auto holder = call.context.ats();
  if (!holder) return fail(EINVAL, "no ATS invalidation was ever sent to this file");
  IOASID_TRY(holder->acknowledge(ack.dev_id, ack.itag));
  return 0;
}

}  // namespace ioasid::dev_ioasid

// SPDX-License-Identifier: MIT
// WQ_CONFIG and DEVICE_SUBMIT: the work queues of a dsa engine. A file enables a WQ —
// dedicated to one of its PASIDs, or shared — and owns it; descriptors run on the
// daemon's executor at a PASID of the file that submitted them, never another's.
#include "devices/dsa/engine.h"
#include "dev_ioasid/fault_reports.h"
#include "dev_ioasid/handlers.h"
#include "dev_ioasid/pasid_reference.h"
#include "dev_ioasid/service.h"

#include <spdlog/spdlog.h>

#include <cstring>

namespace ioasid::dev_ioasid {
namespace {

using devices::dsa::Engine;

struct WorkQueue {
  std::shared_ptr<Device> device;
  Engine& engine;
};

Result<WorkQueue> find_work_queue(Call& call, uint32_t dev_id, uint32_t wq) {
  auto device = call.context.objects().find<Device>(dev_id);
  if (!device) return fail(ENOENT, "no device with dev_id {} in this file", dev_id);
  const std::string& name = device->spec().name;
  if (device->removed()) return fail(ENODEV, "{} was removed by the admin", name);
  Engine* engine = device->engine();
  if (!engine) return fail(EOPNOTSUPP, "{} has no work queues (a dma function takes DEVICE_DMA)", name);
  if (wq >= engine->num_wqs()) return fail(EINVAL, "wq {}: {} has {} work queues", wq, name, engine->num_wqs());
  return WorkQueue{std::move(device), *engine};
}

// The submitting file as the engine sees it: where its faults and page requests go.
// It holds a reference on the PASID its descriptor runs at until the descriptor completes.
class FileSubmitter final : public devices::dsa::Submitter {
 public:
  FileSubmitter(Service& service, Context& context, uint32_t dev_id, std::string device, PasidReference pasid)
      : service_(service), context_(context.weak_from_this()), dev_id_(dev_id), device_(std::move(device)),
        pasid_(std::move(pasid)) {}

  void completion_unreachable(uint32_t pasid, const devices::DmaFault& fault) override {
    if (auto context = live()) report_unrecoverable(service_, *context, source(pasid, true), fault);
  }

  void descriptor_faulted(uint32_t pasid, uint32_t wq, uint8_t status, uint64_t fault_addr) override {
    auto context = live();
    if (!context) return;
    // Bounded per user like MAP/UNMAP: a client can submit faulting descriptors at will.
    service_.publish_bounded(context->client().uid, {.type = EventType::DsaFault,
                      .context = context->id(),
                      .pid = context->client().pid,
                      .pasid = pasid,
                      .device = device_,
                      .dev_id = dev_id_,
                      .address = fault_addr,
                                                     .status = status,
                                                     .wq = wq});
  }

  bool request_page(uint32_t pasid, const devices::DmaFault& fault, bool write,
                    std::function<void(iommu::PageResponse)> resume) override {
    auto context = live();
    if (!context) return false;
    const RaisedPageRequest raised =
        raise_page_request_async(service_, *context, source(pasid, write), fault, std::move(resume));
    if (raised.outcome == PageRequestOutcome::kNoGroup)
      spdlog::info("ctx {}: {} has 512 page requests outstanding; this fault is unrecoverable", context->id(),
                   device_);
    // kQueueFull: the IOMMU answered the request itself; the descriptor ends without
    // block on fault (PAGE_FAULT_NOBOF), for software to resubmit later.
    if (raised.outcome != PageRequestOutcome::kQueued) return false;
    const auto* group = &raised.group;
    const auto limit = service_.config().page_response_timeout;
    service_.executor().post_after(limit, [weak = context_, group = *group, device = device_, limit] {
      if (auto context = weak.lock(); context && context->page_requests().expire(group))
        spdlog::info("ctx {}: no PAGE_RESP for {} group {} within {} ms: the descriptor fails", context->id(),
                     device, group.grpid, limit.count());
    });
    return true;
  }

 private:
  std::shared_ptr<Context> live() const {
    auto context = context_.lock();
    return context && !context->released() ? context : nullptr;
  }
  FaultSource source(uint32_t pasid, bool write) const {
    return {.dev_id = dev_id_,
            .device = device_,
            .pasid = pasid,
            .perm = write ? IOASID_FAULT_PERM_WRITE : IOASID_FAULT_PERM_READ};
  }

  Service& service_;
  const std::weak_ptr<Context> context_;
  const uint32_t dev_id_;
  const std::string device_;
  const PasidReference pasid_;
};

// This file's PASID (with `guest`, the host PASID of its guest PASID), held.
Result<PasidReference> reference_own_pasid(Call& call, uint32_t pasid, bool guest) {
  auto host = own_pasid(call, pasid, guest, /*take_reference=*/true);
  IOASID_TRY(host);
  return PasidReference(call.service.allocator(), *host);
}

Result<long> disable(Call& call, const ioasid_wq_config& config, Engine& engine, const std::string& name) {
  if (config.flags || config.pasid || config.size || config.priority)
    return fail(EINVAL, "disabling {} wq {} takes flags, pasid, size and priority 0", name, config.wq);
  const auto state = engine.state(config.wq);
  if (!state.config) return 0;
  if (state.config->owner != call.context.id())
    return fail(EBUSY, "{} wq {} was enabled by ctx {}", name, config.wq, state.config->owner);
  engine.disable(config.wq, call.context.id());
  return 0;
}

}  // namespace

Result<long> wq_config(Call& call, ioasid_wq_config& config) {
  IOASID_TRY(check_flags(config.flags, IOASID_WQ_ENABLE | IOASID_WQ_SHARED | IOASID_WQ_BOF));
  IOASID_TRY(check_reserved(config.__reserved, "__reserved"));
  auto target = find_work_queue(call, config.dev_id, config.wq);
  IOASID_TRY(target);
  const devices::DeviceSpec& spec = target->device->spec();
  if (!(config.flags & IOASID_WQ_ENABLE)) return disable(call, config, target->engine, spec.name);
  if (config.size == 0 || config.size > devices::dsa::kMaxWqSize)
    return fail(EINVAL, "size {} (1..{})", config.size, devices::dsa::kMaxWqSize);
  if (config.priority == 0 || config.priority > devices::dsa::kMaxWqPriority)
    return fail(EINVAL, "priority {} (1..{})", config.priority, devices::dsa::kMaxWqPriority);
  const bool shared = config.flags & IOASID_WQ_SHARED;
  if (shared && config.pasid != 0)
    return fail(EINVAL, "a shared WQ runs each descriptor at its own PASID: pasid must be 0, not {}", config.pasid);
  // A dedicated WQ holds its PASID while enabled: a FREE leaves the number pending.
  std::shared_ptr<const void> pasid_held;
  if (!shared) {
    auto reference = reference_own_pasid(call, config.pasid, /*guest=*/false);
    IOASID_TRY(reference);
    pasid_held = std::make_shared<const PasidReference>(std::move(*reference));
  }
  const bool block_on_fault = config.flags & IOASID_WQ_BOF;
  if (block_on_fault && !spec.pri)
    return fail(EINVAL, "{} has no PRI: blocking on a fault needs page requests", spec.name);
  IOASID_TRY(target->engine.enable(config.wq, {.shared = shared,
                                               .block_on_fault = block_on_fault,
                                               .pasid = shared ? 0 : config.pasid,
                                               .size = config.size,
                                               .priority = config.priority,
                                               .owner = call.context.id(),
                                               .keep_alive = std::move(pasid_held)}));
  // An unbind that ran meanwhile has already disabled this file's WQs: undo.
  if (call.context.objects().find<Device>(config.dev_id) != target->device) {
    target->engine.disable(config.wq, call.context.id());
    return fail(ENOENT, "no device with dev_id {} in this file (unbound meanwhile)", config.dev_id);
  }
  return 0;
}

Result<long> device_submit(Call& call, ioasid_device_submit& submit) {
  IOASID_TRY(check_flags(submit.flags, IOASID_SUBMIT_GPASID));
  auto target = find_work_queue(call, submit.dev_id, submit.wq);
  IOASID_TRY(target);
  const std::string& name = target->device->spec().name;
  const auto state = target->engine.state(submit.wq);
  if (!state.config) return fail(EINVAL, "{} wq {} is not enabled", name, submit.wq);
  ioasid_dsa_desc desc;
  std::memcpy(&desc, submit.desc, sizeof desc);
  const bool guest = submit.flags & IOASID_SUBMIT_GPASID;
  const devices::dsa::WqConfig& seen = *state.config;
  if (!seen.shared) {
    if (seen.owner != call.context.id())
      return fail(EACCES, "{} wq {} is dedicated to a PASID of ctx {}", name, submit.wq, seen.owner);
    if (guest) return fail(EINVAL, "GPASID on dedicated {} wq {}: it runs everything at PASID {}", name, submit.wq,
                           seen.pasid);
  }
  // What ENQCMD's PASID (and a VM's PASID translation) guarantee: a client names only
  // its own address spaces. The reference keeps it so until the descriptor completes.
  auto pasid = reference_own_pasid(call, seen.shared ? desc.pasid & IOASID_DSA_PASID_MASK : seen.pasid, guest);
  IOASID_TRY(pasid);
  if (devices::dsa::wants(desc, IOASID_DSA_FLAG_CRAV) && desc.completion_addr % devices::dsa::kCompletionAlign)
    return fail(EINVAL, "completion_addr {:#x} is not 32-byte aligned", desc.completion_addr);
  const uint32_t host_pasid = pasid->pasid();
  auto submitter = std::make_shared<FileSubmitter>(call.service, call.context, submit.dev_id, name, std::move(*pasid));
  switch (target->engine.submit(submit.wq, desc, host_pasid, call.context.id(), std::move(submitter), seen)) {
    case devices::dsa::Enqueued::kAccepted: submit.out_status = IOASID_SUBMIT_ACCEPTED; return 0;
    case devices::dsa::Enqueued::kRetry: submit.out_status = IOASID_SUBMIT_RETRY; return 0;
    case devices::dsa::Enqueued::kDisabled: break;
  }
  return fail(EINVAL, "{} wq {} was disabled or reconfigured meanwhile", name, submit.wq);
}

}  // namespace ioasid::dev_ioasid

#include "devices/dsa/engine.h"

#include <spdlog/spdlog.h>

#include <span>

namespace ioasid::devices::dsa {
namespace {

// Descriptors a WQ runs before it lets the other WQs have the thread.
constexpr int kDescriptorsPerTurn = 16;

bool page_requestable(const DmaFault& fault) {
  return fault.reason == IOASID_FAULT_REASON_ACCESS || fault.reason == IOASID_FAULT_REASON_PERMISSION;
}

uint8_t fault_status(uint8_t status, const Stopped& stopped) {
  return static_cast<uint8_t>(status | (stopped.write ? IOASID_DSA_COMP_STATUS_WRITE : 0));
}

}  // namespace

Engine::Engine(std::string name, iommu::Iommu& iommu, const iommu::PasidTable& routes, iommu::Iotlb* device_tlb,
               uint32_t num_wqs, Executor& executor)
    : name_(std::move(name)), iommu_(iommu), routes_(routes), device_tlb_(device_tlb), executor_(executor) {
  for (uint32_t i = 0; i < num_wqs; ++i) wqs_.push_back(std::make_unique<Wq>());
}

Engine::~Engine() {
  for (uint32_t i = 0; i < num_wqs(); ++i) disable(i);
}

Result<void> Engine::enable(uint32_t index, const WqConfig& config) {
  Wq& wq = *wqs_.at(index);
  std::lock_guard lock(wq.mutex);
  if (wq.state.config)
    return fail(EBUSY, "{} wq {} is enabled (by ctx {}): disable it first", name_, index, wq.state.config->owner);
  wq.state = WqState{.config = config};  // counters count from here
  return success();
}

void Engine::disable(uint32_t index) {
  Wq& wq = *wqs_.at(index);
  std::unique_lock lock(wq.mutex);
  if (!wq.state.config) return;
  // Still enabled while it drains, so nobody else can enable it and queue work that
  // this disable would then wait for.
  wq.state.draining = true;
  wq.idle.wait(lock, [&] { return wq.jobs.empty() && !wq.scheduled; });
  wq.state.config.reset();
  wq.state.draining = false;
}

WqState Engine::state(uint32_t index) const {
  const Wq& wq = *wqs_.at(index);
  std::lock_guard lock(wq.mutex);
  return wq.state;
}

Enqueued Engine::submit(uint32_t index, const ioasid_dsa_desc& desc, uint32_t pasid,
                        std::shared_ptr<Submitter> submitter) {
  Wq& wq = *wqs_.at(index);
  {
    std::lock_guard lock(wq.mutex);
    if (!wq.state.config || wq.state.draining) return Enqueued::kDisabled;
    if (wq.jobs.size() >= wq.state.config->size) {
      ++wq.state.retried;
      return Enqueued::kRetry;
    }
    wq.jobs.push_back(Job{.desc = desc,
                          .pasid = pasid,
                          .submitter = std::move(submitter),
                          .block_on_fault = wq.state.config->block_on_fault});
    ++wq.state.accepted;
    wq.state.queued = static_cast<uint32_t>(wq.jobs.size());
    if (wq.scheduled) return Enqueued::kAccepted;
    wq.scheduled = true;
  }
  executor_.post([this, index] { run(index); });
  return Enqueued::kAccepted;
}

void Engine::run(uint32_t index) {
  Wq& wq = *wqs_[index];
  for (int turn = 0; turn < kDescriptorsPerTurn; ++turn) {
    Job* job;
    {
      std::lock_guard lock(wq.mutex);
      if (wq.jobs.empty()) {
        wq.scheduled = false;
        wq.idle.notify_all();
        return;
      }
      job = &wq.jobs.front();  // stays put: the WQ only pushes at the back meanwhile
    }
    if (!execute(index, *job)) {
      std::lock_guard lock(wq.mutex);
      if (job->answer) continue;  // answered before we could park: go on
      wq.parked = true;
      wq.state.waiting_for_page = true;
      return;
    }
    std::lock_guard lock(wq.mutex);
    wq.jobs.pop_front();
    ++wq.state.completed;
    wq.state.queued = static_cast<uint32_t>(wq.jobs.size());
  }
  executor_.post([this, index] { run(index); });
}

void Engine::resume(uint32_t index, iommu::PageResponse answer) {
  Wq& wq = *wqs_[index];
  {
    std::lock_guard lock(wq.mutex);
    if (wq.jobs.empty()) return;
    wq.jobs.front().answer = answer;
    if (!wq.parked) return;  // its runner has not parked yet and will see the answer
    wq.parked = false;
    wq.state.waiting_for_page = false;
  }
  executor_.post([this, index] { run(index); });
}

bool Engine::execute(uint32_t index, Job& job) {
  std::optional<Completion> completion = check(job.desc, false);
  if (!completion)
    completion = opcode(job.desc) == IOASID_DSA_OPCODE_BATCH ? execute_batch(index, job)
                                                             : execute_descriptor(index, job, job.desc);
  if (!completion) return false;
  complete(job, job.desc, *completion);
  return true;
}

std::optional<Completion> Engine::execute_descriptor(uint32_t index, Job& job, const ioasid_dsa_desc& desc) {
  if (job.answer) {  // back from a page request
    const iommu::PageResponse answer = *std::exchange(job.answer, std::nullopt);
    const Stopped stopped = *std::exchange(job.waiting, std::nullopt);
    if (answer != iommu::PageResponse::kSuccess)
      return Completion{.status = fault_status(IOASID_DSA_COMP_PAGE_FAULT_IR, stopped),
                        .bytes_completed = static_cast<uint32_t>(job.progress.done),
                        .fault_addr = stopped.fault.address};
  }
  const uint32_t op = opcode(desc);
  if (op == IOASID_DSA_OPCODE_NOOP || op == IOASID_DSA_OPCODE_DRAIN) return Completion{};  // in order: drained
  OperationResult result = run_operation(port(job.pasid), desc, job.progress);
  if (const auto* completion = std::get_if<Completion>(&result)) return *completion;
  return on_fault(index, job, desc, std::get<Stopped>(result));
}

std::optional<Completion> Engine::on_fault(uint32_t index, Job& job, const ioasid_dsa_desc& desc,
                                           const Stopped& stopped) {
  if (job.block_on_fault && wants(desc, IOASID_DSA_FLAG_BOF) && page_requestable(stopped.fault)) {
    if (job.submitter) {
      job.waiting = stopped;
      if (job.submitter->request_page(job.pasid, stopped.fault, stopped.write,
                                  [this, index](iommu::PageResponse answer) { resume(index, answer); }))
        return std::nullopt;
      job.waiting.reset();
    }
  }
  return Completion{.status = fault_status(IOASID_DSA_COMP_PAGE_FAULT_NOBOF, stopped),
                    .bytes_completed = static_cast<uint32_t>(job.progress.done),
                    .fault_addr = stopped.fault.address};
}

std::optional<Completion> Engine::execute_batch(uint32_t index, Job& job) {
  if (job.batch.empty()) {
    job.batch.resize(job.desc.xfer_size);
    if (auto fault = dma_read(port(job.pasid), job.desc.src, std::as_writable_bytes(std::span(job.batch))))
      return Completion{.status = IOASID_DSA_COMP_BATCH_PAGE_FAULT, .fault_addr = fault->address};
  }
  while (job.batch_next < job.batch.size()) {
    const ioasid_dsa_desc& desc = job.batch[job.batch_next];
    if (job.batch_failed && wants(desc, IOASID_DSA_FLAG_FENCE)) break;  // abandoned, with the rest
    std::optional<Completion> completion = check(desc, true);
    if (!completion) completion = execute_descriptor(index, job, desc);
    if (!completion) return std::nullopt;
    complete(job, desc, *completion);
    job.batch_failed |= !completion->succeeded();
    job.progress = {};
    ++job.batch_next;
  }
  const bool all_succeeded = !job.batch_failed && job.batch_next == job.batch.size();
  return Completion{.status = static_cast<uint8_t>(all_succeeded ? IOASID_DSA_COMP_SUCCESS : IOASID_DSA_COMP_BATCH_FAIL),
                    .bytes_completed = static_cast<uint32_t>(job.batch_next)};
}

void Engine::complete(const Job& job, const ioasid_dsa_desc& desc, const Completion& completion) {
  if (!writes_record(desc, completion)) {
    if (!completion.succeeded())
      spdlog::debug("{}: {} at PASID {} ended with status {:#x}, no completion record asked for", name_,
                    opcode_name(opcode(desc)), job.pasid, completion.status);
    return;
  }
  if (desc.completion_addr % kCompletionAlign) {  // a batch's descriptor: the submit could not check it
    spdlog::info("{}: completion address {:#x} of a batched {} at PASID {} is not 32-byte aligned; not written",
                 name_, desc.completion_addr, opcode_name(opcode(desc)), job.pasid);
    return;
  }
  const ioasid_dsa_completion record = to_record(completion);
  if (auto fault = dma_write_record(port(job.pasid), desc.completion_addr, std::as_bytes(std::span(&record, 1)))) {
    spdlog::info("{}: the completion record of a {} at PASID {}, address {:#x}, could not be written (reason {})",
                 name_, opcode_name(opcode(desc)), job.pasid, desc.completion_addr, fault->reason);
    if (job.submitter) job.submitter->completion_unreachable(job.pasid, *fault);
  }
}

}  // namespace ioasid::devices::dsa

// SPDX-License-Identifier: MIT
#include "devices/dsa/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <span>

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

namespace ioasid::devices::dsa {
namespace {

// Descriptors a WQ runs before it lets the other WQs have the thread.
constexpr int kDescriptorsPerTurn = 16;

// Tells the core it spins (frees the sibling hyperthread, saves power).
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

uint8_t fault_status(uint8_t status, const Stopped& stopped) {
  return static_cast<uint8_t>(status | (stopped.write ? IOASID_DSA_COMP_STATUS_WRITE : 0));
}

}  // namespace

// When the runnable threads are more than the CPUs, a spinning runner takes the CPU the
// submitter waits for (KVM's halt polling stops likewise once another task is runnable).
bool machine_has_cpu_to_spare() {
  using Clock = std::chrono::steady_clock;
  static const long cpus = [] {
    cpu_set_t set;
    return ::sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  }();
  static std::atomic<int64_t> checked_at{0};
  static std::atomic<bool> spare{false};
  const int64_t now = Clock::now().time_since_epoch().count();
  int64_t last = checked_at.load(std::memory_order_relaxed);
  // One reader a millisecond; the others take its answer.
  if (now - last < std::chrono::duration_cast<Clock::duration>(std::chrono::milliseconds(1)).count() ||
      !checked_at.compare_exchange_strong(last, now, std::memory_order_relaxed))
    return spare.load(std::memory_order_relaxed);
  char text[128] = {};
  long runnable = cpus + 1;  // unreadable: assume none to spare
  if (const int fd = ::open("/proc/loadavg", O_RDONLY | O_CLOEXEC); fd >= 0) {
    if (::read(fd, text, sizeof text - 1) > 0) std::sscanf(text, "%*s %*s %*s %ld/", &runnable);
    ::close(fd);
  }
  spare.store(runnable <= cpus, std::memory_order_relaxed);
  return runnable <= cpus;
}

Engine::Engine(std::string name, iommu::Iommu& iommu, const iommu::PasidTable& routes, iommu::Iotlb* device_tlb,
               uint32_t num_wqs, Executor& executor, std::chrono::microseconds idle_poll,
               bool (*cpu_to_spare)())
    : name_(std::move(name)),
      iommu_(iommu),
      routes_(routes),
      device_tlb_(device_tlb),
      executor_(executor),
      idle_poll_(std::clamp(idle_poll, std::chrono::microseconds{0}, kMaxIdlePoll)),
      cpu_to_spare_(cpu_to_spare) {
  for (uint32_t i = 0; i < num_wqs; ++i) wqs_.push_back(std::make_unique<Wq>());
}

Engine::~Engine() {
  for (uint32_t i = 0; i < num_wqs(); ++i) {
    const auto config = state(i).config;
    if (config) disable(i, config->owner);
  }
}

Result<void> Engine::enable(uint32_t index, const WqConfig& config) {
  Wq& wq = *wqs_.at(index);
  std::lock_guard lock(wq.mutex);
  if (wq.state.config)
    return fail(EBUSY, "{} wq {} is enabled (by ctx {}): disable it first", name_, index, wq.state.config->owner);
  wq.state = WqState{.config = config};  // counters count from here
  return success();
}

void Engine::disable(uint32_t index, uint32_t owner) {
  Wq& wq = *wqs_.at(index);
  std::optional<WqConfig> disabled;  // dropped after the lock: it may hold a PASID reference
  {
    std::unique_lock lock(wq.mutex);
    if (!wq.state.config || wq.state.config->owner != owner) return;
    if (wq.state.draining) {  // another disable is at work: wait for it
      wq.idle.wait(lock, [&] { return !wq.state.draining; });
      return;
    }
    // Still enabled while it drains, so nobody else can enable it and queue work that
    // this disable would then wait for. A parked descriptor is answered INVALID now
    // (its owner may never answer), and no new page request is raised.
    wq.state.draining = true;
    if (wq.parked && !wq.jobs.empty() && wq.jobs.front().waiting) {
      wq.jobs.front().answer = iommu::PageResponse::kInvalid;
      wq.parked = false;
      executor_.post([this, index] { run(index); });
    }
    wq.idle.wait(lock, [&] { return wq.jobs.empty() && !wq.scheduled; });
    disabled = std::move(wq.state.config);
    wq.state.config.reset();
    wq.state.draining = false;
  }
  wq.idle.notify_all();
}

bool Engine::wait_for_page(uint32_t index, Job& job, const Stopped& stopped) {
  Wq& wq = *wqs_[index];
  std::lock_guard lock(wq.mutex);
  if (wq.state.draining) return false;  // a WQ being disabled raises no page requests
  if (job.gives_way) {
    spdlog::debug("{} wq {}: a {} of ctx {} at PASID {} raises no page request for {:#x}: another file's work "
                  "waits behind it",
                  name_, index, opcode_name(opcode(job.desc)), job.file, job.pasid, stopped.fault.address);
    return false;
  }
  job.waiting = stopped;
  return true;
}

bool Engine::make_way(uint32_t index, uint32_t file) {
  Wq& wq = *wqs_[index];
  if (!wq.state.config || !wq.state.config->block_on_fault) return false;  // nobody waits for pages
  const uint32_t owner = wq.state.config->owner;
  for (Job& job : wq.jobs)
    if (job.file != owner && job.file != file) job.gives_way = true;
  if (!wq.parked) return false;
  Job& front = wq.jobs.front();
  if (!front.gives_way || !front.waiting || front.answer) return false;
  spdlog::info("{} wq {} (ctx {}'s): a {} of ctx {} waiting for a page response at {:#x} gives way to ctx {}'s work; "
               "it ends as without block on fault",
               name_, index, owner, opcode_name(opcode(front.desc)), front.file, front.waiting->fault.address, file);
  front.answer = iommu::PageResponse::kInvalid;
  front.stopped_waiting = true;
  wq.parked = false;
  return true;
}

WqState Engine::state(uint32_t index) const {
  const Wq& wq = *wqs_.at(index);
  std::lock_guard lock(wq.mutex);
  WqState state = wq.state;
  state.queued = static_cast<uint32_t>(wq.jobs.size());
  state.waiting_for_page = wq.parked;
  return state;
}

Enqueued Engine::submit(uint32_t index, const ioasid_dsa_desc& desc, uint32_t pasid, uint32_t file,
                        std::shared_ptr<Submitter> submitter, const WqConfig& seen) {
  Wq& wq = *wqs_.at(index);
  Enqueued outcome = Enqueued::kAccepted;
  bool post_runner = false;
  {
    std::lock_guard lock(wq.mutex);
    if (!wq.state.config || wq.state.draining || !wq.state.config->same_queue(seen)) return Enqueued::kDisabled;
    // Accepted or refused, this file's work now waits for the queued jobs: those of
    // other files (but the owner) must not make it wait for their page responses.
    post_runner = make_way(index, file);
    if (wq.jobs.size() >= wq.state.config->size) {
      ++wq.state.retried;
      outcome = Enqueued::kRetry;
    } else {
      wq.jobs.push_back(Job{.serial = next_serial_.fetch_add(1, std::memory_order_relaxed),
                            .desc = desc,
                            .pasid = pasid,
                            .file = file,
                            .submitter = std::move(submitter),
                            .block_on_fault = wq.state.config->block_on_fault});
      ++wq.state.accepted;
      if (!wq.scheduled) post_runner = wq.scheduled = true;
    }
  }
  // After the unlock: a polling runner that sees it takes the lock without waiting.
  if (outcome == Enqueued::kAccepted) wq.submitted.fetch_add(1, std::memory_order_release);
  if (post_runner) executor_.post([this, index] { run(index); });
  return outcome;
}

bool Engine::poll_for_work(Wq& wq, std::unique_lock<std::mutex>& lock) {
  using Clock = std::chrono::steady_clock;
  if (idle_poll_.count() == 0 || wq.state.draining) return false;  // a disable waits for this runner
  if (!cpu_to_spare_()) return false;
  const uint64_t seen = wq.submitted.load(std::memory_order_relaxed);
  lock.unlock();
  const auto deadline = Clock::now() + idle_poll_;
  for (unsigned spin = 1; wq.submitted.load(std::memory_order_acquire) == seen; ++spin) {
    if (spin % 64) {
      cpu_relax();
      continue;
    }
    if (Clock::now() >= deadline) break;
  }
  lock.lock();
  return !wq.jobs.empty();
}

void Engine::run(uint32_t index) {
  Wq& wq = *wqs_[index];
  for (int turn = 0; turn < kDescriptorsPerTurn; ++turn) {
    Job* job;
    {
      std::unique_lock lock(wq.mutex);
      if (wq.jobs.empty() && !poll_for_work(wq, lock)) {
        wq.scheduled = false;
        wq.idle.notify_all();
        return;
      }
      job = &wq.jobs.front();  // stays put: the WQ only pushes at the back meanwhile
    }
    const std::optional<Completion> completion = execute(index, *job);
    if (!completion) {
      std::lock_guard lock(wq.mutex);
      if (job->answer) continue;  // answered before we could park: go on
      if (wq.state.draining) {    // a disable began meanwhile: it will not wait for the answer
        job->answer = iommu::PageResponse::kInvalid;
        continue;
      }
      if (job->gives_way) {  // another file's work arrived meanwhile: it will not wait either
        job->answer = iommu::PageResponse::kInvalid;
        job->stopped_waiting = true;
        continue;
      }
      wq.parked = true;
      return;
    }
    // Out of the queue before its record is written: a submitter that polls the record
    // and submits at once finds the lock free.
    std::optional<Job> finished;  // dropped after the lock: its submitter holds a PASID reference
    {
      std::lock_guard lock(wq.mutex);
      finished.emplace(std::move(wq.jobs.front()));
      wq.jobs.pop_front();
      ++wq.state.completed;
    }
    complete(index, *finished, finished->desc, *completion);
  }
  executor_.post([this, index] { run(index); });
}

void Engine::resume(uint32_t index, uint64_t serial, iommu::PageResponse answer) {
  Wq& wq = *wqs_[index];
  {
    std::lock_guard lock(wq.mutex);
    // A late answer (the disable answered first) finds another job, or none, in front.
    if (wq.jobs.empty() || wq.jobs.front().serial != serial || !wq.jobs.front().waiting ||
        wq.jobs.front().answer)
      return;
    wq.jobs.front().answer = answer;
    if (!wq.parked) return;  // its runner has not parked yet and will see the answer
    wq.parked = false;
  }
  executor_.post([this, index] { run(index); });
}

std::optional<Completion> Engine::execute(uint32_t index, Job& job) {
  if (std::optional<Completion> refused = check(job.desc, false)) return refused;
  return opcode(job.desc) == IOASID_DSA_OPCODE_BATCH ? execute_batch(index, job)
                                                     : execute_descriptor(index, job, job.desc);
}

std::optional<Completion> Engine::execute_descriptor(uint32_t index, Job& job, const ioasid_dsa_desc& desc) {
  std::optional<iommu::PageResponse> answer;
  std::optional<Stopped> stopped;
  bool gave_way = false;
  {
    std::lock_guard lock(wqs_[index]->mutex);  // a late answer looks at them
    answer = std::exchange(job.answer, std::nullopt);
    if (answer) stopped = std::exchange(job.waiting, std::nullopt);
    gave_way = std::exchange(job.stopped_waiting, false);
  }
  // Back from a page request: refused, or no longer waited for (as without block on fault).
  if (answer && *answer != iommu::PageResponse::kSuccess)
    return Completion{.status = fault_status(gave_way ? IOASID_DSA_COMP_PAGE_FAULT_NOBOF : IOASID_DSA_COMP_PAGE_FAULT_IR,
                                             *stopped),
                      .bytes_completed = static_cast<uint32_t>(job.progress.done),
                      .fault_addr = stopped->fault.address};
  const uint32_t op = opcode(desc);
  if (op == IOASID_DSA_OPCODE_NOOP || op == IOASID_DSA_OPCODE_DRAIN) return Completion{};  // in order: drained
  OperationResult result = run_operation(port(job.pasid), desc, job.progress);
  if (const auto* completion = std::get_if<Completion>(&result)) return *completion;
  return on_fault(index, job, desc, std::get<Stopped>(result));
}

std::optional<Completion> Engine::on_fault(uint32_t index, Job& job, const ioasid_dsa_desc& desc,
                                           const Stopped& stopped) {
  if (job.block_on_fault && wants(desc, IOASID_DSA_FLAG_BOF) && resolvable_by_page_request(stopped.fault) && job.submitter &&
      wait_for_page(index, job, stopped)) {
    if (job.submitter->request_page(
            job.pasid, stopped.fault, stopped.write,
            [this, index, serial = job.serial](iommu::PageResponse answer) { resume(index, serial, answer); }))
      return std::nullopt;
    std::lock_guard lock(wqs_[index]->mutex);
    job.waiting.reset();
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
    complete(index, job, desc, *completion);
    job.batch_failed |= !completion->succeeded();
    job.progress = {};
    ++job.batch_next;
  }
  const bool all_succeeded = !job.batch_failed && job.batch_next == job.batch.size();
  return Completion{.status = static_cast<uint8_t>(all_succeeded ? IOASID_DSA_COMP_SUCCESS : IOASID_DSA_COMP_BATCH_FAIL),
                    .bytes_completed = static_cast<uint32_t>(job.batch_next)};
}

void Engine::complete(uint32_t index, const Job& job, const ioasid_dsa_desc& desc, const Completion& completion) {
  const uint8_t status = completion.status & IOASID_DSA_COMP_STATUS_MASK;
  if (job.submitter && (status == IOASID_DSA_COMP_PAGE_FAULT_NOBOF || status == IOASID_DSA_COMP_PAGE_FAULT_IR ||
                        status == IOASID_DSA_COMP_BATCH_PAGE_FAULT))
    job.submitter->descriptor_faulted(job.pasid, index, completion.status, completion.fault_addr);
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

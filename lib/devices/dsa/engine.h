// SPDX-License-Identifier: MIT
// The DSA-like Scalable IOV engine of one device: work queues, dedicated to one PASID
// or shared by clients at their own PASIDs (ENQCMD: accepted, or RETRY when full),
// whose descriptors run on the daemon's executor — each WQ in submission order, WQs
// side by side — with their data and completion records moved by DMA through the
// IOMMU at the descriptor's PASID.
//
// A descriptor that faults with block-on-fault raises a page request through its
// submitter and parks its WQ without holding a thread; the answer resumes it where it
// stopped. Since a parked WQ runs nothing else, only the WQ's owner may keep it parked
// while another file's work waits: another file's descriptor gives way (ends as without
// block-on-fault) as soon as a descriptor of any file but its own is queued behind it
// or refused for lack of room.
#pragma once

#include "base/executor.h"
#include "base/result.h"
#include "devices/dma_function.h"
#include "devices/dsa/descriptor.h"
#include "devices/dsa/operations.h"
#include "iommu/iommu.h"
#include "iommu/page_requests.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace ioasid::devices::dsa {

inline constexpr uint32_t kMaxWqSize = 128;
inline constexpr uint32_t kMaxWqPriority = 15;
// How long a WQ's runner keeps its thread after the queue ran dry, watching for the
// next submission (as an io_uring SQPOLL thread does, or the hardware engine, which
// never sleeps): back-to-back descriptors then skip the executor's wake-up, several
// microseconds on a VM. Only while the machine has a CPU to spare: on a busy one,
// spinning would delay the submitter. 0: no polling.
inline constexpr std::chrono::microseconds kDefaultIdlePoll{50};
inline constexpr std::chrono::microseconds kMaxIdlePoll{1000};

// Whether a spinning runner would have a CPU to itself: the threads runnable machine-wide
// (/proc/loadavg, the caller included) are at most the CPUs this process may run on.
// Read at most once a millisecond.
bool machine_has_cpu_to_spare();

// The open file a descriptor came from, as the engine needs it. A file that is gone
// still has its descriptors run; its submitter then reports nothing.
class Submitter {
 public:
  virtual ~Submitter() = default;
  // The completion record of a descriptor could not be written (the record itself
  // cannot say so): a fault record for the file.
  virtual void completion_unreachable(uint32_t pasid, const DmaFault& fault) = 0;
  // Raises a page request for `fault`; `resume` gets the answer exactly once, on any
  // thread. False when none can be raised (the fault is then unrecoverable).
  virtual bool request_page(uint32_t pasid, const DmaFault& fault, bool write,
                            std::function<void(iommu::PageResponse)> resume) = 0;
  // A descriptor on work queue `wq` completed with a page-fault status (its record, if
  // any, says so to the submitter; this tells the daemon's event stream).
  virtual void descriptor_faulted(uint32_t pasid, uint32_t wq, uint8_t status, uint64_t fault_addr) = 0;
};

struct WqConfig {
  bool shared = false;
  bool block_on_fault = false;
  uint32_t pasid = 0;  // a dedicated WQ's
  uint32_t size = 0;
  uint32_t priority = 0;
  uint32_t owner = 0;  // the context that enabled it
  // Dropped when the WQ is disabled, outside its lock: what the enabler holds for the
  // WQ's lifetime (a dedicated WQ's PASID reference).
  std::shared_ptr<const void> keep_alive;

  // Submitters decide a descriptor's PASID from the config they saw; it must still be
  // the one in force when the descriptor is queued.
  bool same_queue(const WqConfig& other) const {
    return shared == other.shared && pasid == other.pasid && owner == other.owner;
  }
};

struct WqState {
  std::optional<WqConfig> config;  // nullopt: disabled
  bool draining = false;           // being disabled: takes nothing, cannot be re-enabled yet
  // Filled in by state(), from the queue itself:
  uint32_t queued = 0;  // accepted and not completed, the running one included
  bool waiting_for_page = false;
  // Since the WQ was last enabled:
  uint64_t accepted = 0;
  uint64_t retried = 0;
  uint64_t completed = 0;
};

enum class Enqueued { kAccepted, kRetry, kDisabled };

class Engine {
 public:
  Engine(std::string name, iommu::Iommu& iommu, const iommu::PasidTable& routes, iommu::Iotlb* device_tlb,
         uint32_t num_wqs, Executor& executor, std::chrono::microseconds idle_poll = kDefaultIdlePoll,
         bool (*cpu_to_spare)() = machine_has_cpu_to_spare);
  // Every WQ must be disabled by then (their owners' unbind does it).
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  uint32_t num_wqs() const { return static_cast<uint32_t>(wqs_.size()); }
  // EBUSY when the WQ is enabled (by anyone).
  Result<void> enable(uint32_t wq, const WqConfig& config);
  // If `owner` enabled the WQ: stops accepting, ends a wait for a page response with
  // INVALID and raises no more, waits for what was accepted to complete, then frees the
  // WQ. A second disable meanwhile waits for the first; another owner's WQ is left.
  void disable(uint32_t wq, uint32_t owner);
  WqState state(uint32_t wq) const;

  // ENQCMD (shared) or MOVDIR64B (dedicated: `pasid` is the WQ's): queues the
  // descriptor of the open file `file` (a context id, as WqConfig::owner) to run at
  // `pasid`, if the WQ is still configured as `seen` (else kDisabled). The submitter
  // lives until the descriptor completes.
  //
  // Who may make others wait for a page response: only the WQ's owner. A descriptor of
  // another file waits only while nothing but its own file's work is queued behind it.
  // When a descriptor of any other file (the owner's included) is accepted behind it,
  // or another file's submission is refused RETRY while it is queued, it gives way: if it
  // waits, it stops waiting, and if it faults later, it raises no page request. Either
  // way it ends as without block-on-fault (PAGE_FAULT_NOBOF, a partial record), and a
  // late page response is ignored. So no file holds a WQ it does not own for longer
  // than its descriptors take to run, page responses aside.
  Enqueued submit(uint32_t wq, const ioasid_dsa_desc& desc, uint32_t pasid, uint32_t file,
                  std::shared_ptr<Submitter> submitter, const WqConfig& seen);

 private:
  struct Job {
    uint64_t serial;  // tells a late page response from one for the job now in front
    ioasid_dsa_desc desc;
    uint32_t pasid;
    uint32_t file;  // the context that submitted it
    std::shared_ptr<Submitter> submitter;
    bool block_on_fault;  // the WQ's setting when it was accepted
    // Another file's work waits behind this one, which is not the owner's: it must not
    // wait for a page response (see submit()).
    bool gives_way = false;
    Progress progress;  // of the descriptor, or of the batch's current one
    std::optional<Stopped> waiting;  // the fault a page request was raised for
    std::optional<iommu::PageResponse> answer;
    bool stopped_waiting = false;  // `answer` is not the page response: the job gave way
    // A batch: its descriptors once fetched, the next to run, how many ran, a failure.
    std::vector<ioasid_dsa_desc> batch;
    size_t batch_next = 0;
    bool batch_failed = false;
  };
  struct Wq {
    mutable std::mutex mutex;
    std::condition_variable idle;
    WqState state;
    std::deque<Job> jobs;  // the front one runs
    // Bumped with every job queued, so a polling runner sees work without the lock.
    std::atomic<uint64_t> submitted{0};
    bool scheduled = false;  // a runner is posted, running or parked
    bool parked = false;     // the front job waits for a page response
  };

  void run(uint32_t wq);
  // Under the WQ's lock (`lock`), its queue empty: waits up to idle_poll_ for a
  // submission, with the lock released meanwhile. True when a job is queued.
  bool poll_for_work(Wq& wq, std::unique_lock<std::mutex>& lock);
  // Runs the front job to its completion (its record is not written yet); nullopt when
  // it parked.
  std::optional<Completion> execute(uint32_t index, Job& job);
  // One descriptor (the job's own or a batch's) to its completion; nullopt when parked.
  std::optional<Completion> execute_descriptor(uint32_t index, Job& job, const ioasid_dsa_desc& desc);
  std::optional<Completion> execute_batch(uint32_t index, Job& job);
  std::optional<Completion> on_fault(uint32_t index, Job& job, const ioasid_dsa_desc& desc, const Stopped& stopped);
  void resume(uint32_t wq, uint64_t serial, iommu::PageResponse answer);
  // Records that the job waits for a page response; false when the WQ is being disabled
  // or the job gives way.
  bool wait_for_page(uint32_t wq, Job& job, const Stopped& stopped);
  // Under the WQ's lock: `file` has work waiting for room or in the queue's tail, so
  // every queued job of another file but the owner gives way. True when the front job
  // stopped waiting for a page response: its runner must be posted again.
  bool make_way(uint32_t wq, uint32_t file);
  void complete(uint32_t index, const Job& job, const ioasid_dsa_desc& desc, const Completion& completion);
  Port port(uint32_t pasid) const { return Port{iommu_, routes_, device_tlb_, pasid}; }

  const std::string name_;
  iommu::Iommu& iommu_;
  const iommu::PasidTable& routes_;
  iommu::Iotlb* const device_tlb_;
  Executor& executor_;
  const std::chrono::microseconds idle_poll_;
  bool (*const cpu_to_spare_)();
  std::vector<std::unique_ptr<Wq>> wqs_;
  std::atomic<uint64_t> next_serial_{1};
};

}  // namespace ioasid::devices::dsa

// SPDX-License-Identifier: MIT
// libioasid: thin C++20 wrappers over the /dev/ioasid uAPI (<linux/ioasid.h>).
//
// Every call returns a Result: the value, or an Error carrying the errno the daemon
// answered and a sentence naming the ioctl ("IOASID_ATTACH_IOASID_PASID: Permission
// denied"). Nothing throws.
//
// Ownership. A File owns the open node. Every other object (Pasid, Ioas, Mapping,
// Device, Attachment, PgtblBinding, WorkQueue) borrows the File's descriptor and undoes
// what it made when it is destroyed (FREE, UNMAP, UNBIND, DETACH, disable), ignoring
// errors; call free()/unmap()/... instead to see them, or release() to leave the
// object to the daemon, which undoes everything when the File closes.
//   * Objects must not outlive their File: their destructor would issue an ioctl on
//     a closed, possibly reused, descriptor. Moving the File keeps its descriptor.
//   * Destroy objects in the reverse order of creation (what C++ does for locals): an
//     IOASID cannot be freed while an Attachment still routes a device to it.
// Objects are move-only; a moved-from object holds nothing.
//
// Applications: `pkg-config --cflags --libs ioasid`, then #include <ioasid/client.hpp>.
#pragma once

// Said here, before the first use of a C++20 library feature fails deep inside <span>
// or <compare>.
#if __cplusplus < 202002L
#error "<ioasid/client.hpp> needs C++20: compile with -std=c++20 (or -std=gnu++20)"
#endif

#include <linux/ioasid.h>

#include <signal.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace ioasid::client {

// ---------------------------------------------------------------- results

struct Error {
  int code = 0;      // a positive errno value
  std::string what;  // "IOASID_MAP_DMA: Invalid argument"
};

namespace detail {
// Reading the value of a failed Result is a bug in the caller: print and abort.
[[noreturn]] void value_of_failed_result(const Error& error);
}  // namespace detail

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}     // NOLINT: implicit on purpose
  Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    if (!ok()) detail::value_of_failed_result(error());
    return *std::get_if<0>(&state_);
  }
  const T& value() const& {
    if (!ok()) detail::value_of_failed_result(error());
    return *std::get_if<0>(&state_);
  }
  T&& value() && { return std::move(value()); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // Only on failure.
  const Error& error() const& { return std::get<1>(state_); }
  Error&& error() && { return std::get<1>(std::move(state_)); }
  // The errno, 0 on success.
  int code() const { return ok() ? 0 : error().code; }

 private:
  std::variant<T, Error> state_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)) {}  // NOLINT: implicit on purpose

  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const& { return *error_; }
  Error&& error() && { return std::move(*error_); }
  int code() const { return ok() ? 0 : error_->code; }

 private:
  std::optional<Error> error_;
};

// Returns the error of a failed Result from the enclosing function (which returns any
// Result): IOASID_CLIENT_TRY(file.info());
#define IOASID_CLIENT_TRY(expr)                                       \
  do {                                                                \
    if (auto&& ioasid_client_result_ = (expr); !ioasid_client_result_) \
      return std::move(ioasid_client_result_).error();                \
  } while (0)

// "IOASID_GET_INFO" for a command of the uAPI (matched by type and number, whatever
// size it encodes); "ioctl 0x..." for anything else.
std::string command_name(unsigned long cmd);

// ---------------------------------------------------------------- borrowing

namespace detail {
// The File descriptor an object borrows; -1 once the object was moved from, undone or
// released, so that its work is undone at most once.
class BorrowedFd {
 public:
  BorrowedFd() = default;
  explicit BorrowedFd(int fd) : fd_(fd) {}
  BorrowedFd(BorrowedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  BorrowedFd& operator=(BorrowedFd&& other) noexcept {
    fd_ = std::exchange(other.fd_, -1);
    return *this;
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Move assignment of an owning object: undo what `self` holds, then take `other`'s.
template <typename T>
T& replace_with(T& self, T&& other) noexcept {
  if (&self != &other) {
    std::destroy_at(&self);
    std::construct_at(&self, std::move(other));
  }
  return self;
}
}  // namespace detail

// ---------------------------------------------------------------- the node

// $IOASID_DEV when set and not empty, else /dev/ioasid.
std::string default_path();

class File {
 public:
  // Opens the node read-write (the ioctls need it) with O_CLOEXEC and `extra_flags`
  // (O_NONBLOCK: read_faults() returns 0 instead of blocking). The error says what to
  // check: "open /dev/ioasid: No such file or directory (is ioasidd running? ...)".
  static Result<File> open(const std::string& path = default_path(), int extra_flags = 0);

  File(File&& other) noexcept : fd_(std::exchange(other.fd_, -1)), path_(std::move(other.path_)) {}
  File& operator=(File&& other) noexcept { return detail::replace_with(*this, std::move(other)); }
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();  // close(2): the daemon frees whatever this file still holds

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

  // GET_API_VERSION (IOASID_API_VERSION, 1, for this header).
  Result<uint32_t> api_version() const;
  // CHECK_EXTENSION: is feature IOASID_FEAT_<index> offered?
  Result<bool> check_extension(uint32_t feature_index) const;
  // GET_INFO.
  Result<ioasid_info> info() const;

  // read(2) of fault records and page requests: blocks until at least one is queued
  // (O_NONBLOCK: 0 when none is), then returns how many were stored in `records`.
  Result<size_t> read_faults(std::span<ioasid_fault> records) const;
  // poll(2) for POLLIN: true when a record can be read, false after `timeout`.
  Result<bool> wait_readable(std::chrono::milliseconds timeout) const;
  // wait_readable, then one record; ETIMEDOUT when none came within `timeout`.
  Result<ioasid_fault> next_fault(std::chrono::milliseconds timeout) const;

  // The escape hatch: ioctl(fd, cmd, arg) for any command, the error named after it.
  Result<long> call(unsigned long cmd, void* arg) const;
  template <typename Arg>
    requires(!std::is_pointer_v<Arg>)
  Result<long> call(unsigned long cmd, Arg& arg) const {
    return call(cmd, static_cast<void*>(&arg));
  }
  // The same for commands whose argument is an integer (CHECK_EXTENSION).
  Result<long> call_with_value(unsigned long cmd, unsigned long value) const;

 private:
  File(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_ = -1;
  std::string path_;
};

// ---------------------------------------------------------------- PASIDs

struct PasidRange {
  uint32_t min = 0;
  uint32_t max = 0;  // inclusive
};

// A PASID this file owns (PASID_REQUEST ALLOC); FREE when destroyed.
class Pasid {
 public:
  // The lowest free PASID in `range` (default: [1, 2^pasid_bits - 1], asked with
  // GET_INFO). With `gpasid`, that guest PASID maps to it in this file (ALLOC|GPASID).
  static Result<Pasid> allocate(const File& file, std::optional<PasidRange> range = {},
                                std::optional<uint32_t> gpasid = {});
  // PASID_LOOKUP: the host PASID behind a guest PASID of this file.
  static Result<uint32_t> lookup(const File& file, uint32_t gpasid);

  Pasid(Pasid&&) noexcept = default;
  Pasid& operator=(Pasid&& other) noexcept { return detail::replace_with(*this, std::move(other)); }
  ~Pasid();

  uint32_t value() const { return value_; }
  std::optional<uint32_t> gpasid() const { return gpasid_; }

  // FREE now (the destructor does it otherwise); the object holds nothing after.
  Result<void> free();
  // Keeps the PASID allocated until the File closes; returns it.
  uint32_t release() {
    fd_.release();
    return value_;
  }

 private:
  Pasid(int fd, uint32_t value, std::optional<uint32_t> gpasid) : fd_(fd), value_(value), gpasid_(gpasid) {}
  detail::BorrowedFd fd_;
  uint32_t value_ = 0;
  std::optional<uint32_t> gpasid_;
};

// PASID_REQUEST FREE of every PASID this file owns in `range`; returns how many.
Result<uint32_t> free_pasids(const File& file, PasidRange range);

// ---------------------------------------------------------------- I/O address spaces

struct IovaRanges {
  std::vector<ioasid_iova_range> ranges;  // {start, last}, inclusive
  uint64_t alignment = 0;
};

enum class DirtyRead { clear, keep };  // GET_DIRTY_BITMAP without or with NO_CLEAR

// An IOASID (ALLOC); FREE when destroyed.
class Ioas {
 public:
  // A kernel-managed IOASID: the daemon keeps its page table, MAP/UNMAP fill it.
  static Result<Ioas> allocate(const File& file);
  // A nested IOASID on a kernel-managed parent: its first stage comes from BIND_PGTBL,
  // its addresses then translate through the parent.
  static Result<Ioas> allocate_nested(const Ioas& parent);

  Ioas(Ioas&&) noexcept = default;
  Ioas& operator=(Ioas&& other) noexcept { return detail::replace_with(*this, std::move(other)); }
  ~Ioas();

  uint32_t id() const { return id_; }
  bool nested() const { return nested_; }

  // IOVA_RANGES: where mappings may go.
  Result<IovaRanges> iova_ranges() const;
  // SET_DIRTY_TRACKING; enabling clears every dirty bit.
  Result<void> set_dirty_tracking(bool enabled) const;
  // GET_DIRTY_BITMAP of [iova, iova + length): bit i of the words is the page at
  // iova + i * page_size.
  Result<std::vector<uint64_t>> dirty_bitmap(uint64_t iova, uint64_t length, uint64_t page_size,
                                             DirtyRead read = DirtyRead::clear) const;
  // CACHE_INVLD on a nested IOASID, entries applied in order. On an error the message
  // names the entry that stopped the batch.
  Result<void> invalidate_caches(std::span<const ioasid_cache_invalidate_info> entries) const;

  // FREE now (the destructor does it otherwise); the object holds nothing after.
  Result<void> free();
  // Keeps the IOASID until the File closes; returns its id.
  uint32_t release() {
    fd_.release();
    return id_;
  }

 private:
  Ioas(int fd, uint32_t id, bool nested) : fd_(fd), id_(id), nested_(nested) {}
  friend class Mapping;
  friend class PgtblBinding;
  friend class Attachment;
  detail::BorrowedFd fd_;
  uint32_t id_ = 0;
  bool nested_ = false;
};

struct MapOptions {
  uint32_t flags = IOASID_MAP_READABLE | IOASID_MAP_WRITEABLE;  // FIXED_IOVA follows `iova`
  std::optional<uint64_t> iova;  // FIXED_IOVA at this address; else the daemon picks one
};

// A range of a kernel-managed IOASID mapped to memory (MAP_DMA, MAP_FILE); UNMAP when
// destroyed.
class Mapping {
 public:
  // MAP_DMA: this process's memory (4 KiB aligned).
  static Result<Mapping> map_dma(const Ioas& ioas, std::span<std::byte> memory, MapOptions options = {});
  // MAP_FILE: `length` bytes of a memfd, shm or hugetlbfs file from `offset`, zero copy.
  static Result<Mapping> map_file(const Ioas& ioas, int file_fd, uint64_t offset, uint64_t length,
                                  MapOptions options = {});

  Mapping(Mapping&&) noexcept = default;
  Mapping& operator=(Mapping&& other) noexcept { return detail::replace_with(*this, std::move(other)); }
  ~Mapping();

  uint32_t ioasid() const { return ioasid_; }
  uint64_t iova() const { return iova_; }
  uint64_t length() const { return length_; }

  // UNMAP_DMA now; returns the bytes unmapped. The object holds nothing after.
  Result<uint64_t> unmap();
  // Keeps the mapping until its IOASID is freed or the File closes.
  void release() { fd_.release(); }

 private:
  Mapping(int fd, uint32_t ioasid, uint64_t iova, uint64_t length)
      : fd_(fd), ioasid_(ioasid), iova_(iova), length_(length) {}
  detail::BorrowedFd fd_;
  uint32_t ioasid_ = 0;
  uint64_t iova_ = 0;
  uint64_t length_ = 0;
};

// The guest's first-level page table for BIND_PGTBL.
struct PgtblConfig {
  uint64_t root_gpa = 0;  // 4 KiB aligned, mapped in the parent IOASID
  uint32_t addr_width = 48;  // 48 (4-level) or 57 (5-level)
  uint64_t flags = 0;  // IOASID_VTD_FL_*: SRE, WPE, EAFE, ...
  uint32_t format = IOASID_PGTBL_VTD_FL;
  uint32_t pat = 0;
  uint32_t emt = 0;
};

// A guest page table bound on a nested IOASID (BIND_PGTBL); UNBIND_PGTBL when destroyed.
class PgtblBinding {
 public:
  static Result<PgtblBinding> bind(const Ioas& nested, const PgtblConfig& table);

  PgtblBinding(PgtblBinding&&) noexcept = default;
  PgtblBinding& operator=(PgtblBinding&& other) noexcept { return detail::replace_with(*this, std::move(other)); }
  ~PgtblBinding();

  uint32_t ioasid() const { return ioasid_; }

  // UNBIND_PGTBL now; the object holds nothing after.
  Result<void> unbind();
  // Keeps the table bound until the IOASID is freed or the File closes.
  void release() { fd_.release(); }

 private:
  PgtblBinding(int fd, uint32_t ioasid) : fd_(fd), ioasid_(ioasid) {}
  detail::BorrowedFd fd_;
  uint32_t ioasid_ = 0;
};

// ---------------------------------------------------------------- devices

enum class SubmitStatus { accepted, retry };  // IOASID_SUBMIT_ACCEPTED, IOASID_SUBMIT_RETRY

struct SubmitOptions {
  bool guest_pasid = false;  // IOASID_SUBMIT_GPASID: the descriptor names a guest PASID
};

struct DmaOptions {
  std::optional<uint32_t> pasid;  // requests tagged with this PASID (IOASID_DMA_PASID)
  bool privileged = false;        // IOASID_DMA_PRIV: supervisor requests
  bool nowait = false;            // IOASID_DMA_NOWAIT: return PAGE_REQ instead of waiting
};

// How a DEVICE_DMA that ran ended.
struct DmaOutcome {
  uint32_t status = IOASID_DMA_OK;  // IOASID_DMA_OK, FAULT, PAGE_REQ
  uint64_t fault_addr = 0;          // FAULT, PAGE_REQ: the address that stopped it
  uint32_t fault_reason = 0;        // IOASID_FAULT_REASON_*
  bool ok() const { return status == IOASID_DMA_OK; }
};

// A device this file bound (DEVICE_BIND); DEVICE_UNBIND when destroyed.
class Device {
 public:
  // By name ("dma0") or PCI address ("0000:00:03.0").
  static Result<Device> bind(const File& file, std::string_view name);

  Device(Device&&) noexcept = default;
  Device& operator=(Device&& other) noexcept { return detail::replace_with(*this, std::move(other)); }
  ~Device();

  uint32_t id() const { return id_; }
  // DEVICE_GET_INFO.
  Result<ioasid_device_info> info() const;

  // DEVICE_DMA: the device writes `from` into memory at `iova`.
  Result<DmaOutcome> dma_write(uint64_t iova, std::span<const std::byte> from, DmaOptions options = {}) const;
  // DEVICE_DMA: the device reads memory at `iova` into `into`.
  Result<DmaOutcome> dma_read(uint64_t iova, std::span<std::byte> into, DmaOptions options = {}) const;

  // PAGE_RESP to a page request read from the File (its grpid, and its PASID when valid).
  Result<void> page_response(const ioasid_fault& request, uint32_t code) const;
  Result<void> page_response(uint32_t grpid, std::optional<uint32_t> pasid, uint32_t code) const;

  // DEVICE_UNBIND now; the object holds nothing after.
  Result<void> unbind();
  // Keeps the device bound until the File closes; returns its dev_id.
  uint32_t release() {
    fd_.release();
    return id_;
  }

 private:
  Device(int fd, uint32_t id) : fd_(fd), id_(id) {}
  Result<DmaOutcome> dma(uint32_t flags, uint64_t iova, const void* buffer, uint64_t length,
                         const DmaOptions& options) const;
  friend class Attachment;
  friend class WorkQueue;
  friend class AtsCache;
  friend Result<SubmitStatus> submit(const Device&, uint32_t, const ioasid_dsa_desc&, SubmitOptions);
  detail::BorrowedFd fd_;
  uint32_t id_ = 0;
};

// A route from a device to an IOASID: its RID (ATTACH_IOASID) or one of its PASIDs
// (ATTACH_IOASID_PASID); the matching DETACH when destroyed.
class Attachment {
 public:
  static Result<Attachment> attach(const Device& device, const Ioas& ioas);
  static Result<Attachment> attach_pasid(const Device& device, const Ioas& ioas, uint32_t pasid);

  Attachment(Attachment&&) noexcept = default;
  Attachment& operator=(Attachment&& other) noexcept { return detail::replace_with(*this, std::move(other)); }
  ~Attachment();

  uint32_t dev_id() const { return dev_id_; }
  uint32_t ioasid() const { return ioasid_; }
  std::optional<uint32_t> pasid() const { return pasid_; }

  // ATTACH with REPLACE: the route moves to `ioas` at once; if it fails the old route stays.
  Result<void> replace(const Ioas& ioas);
  // DETACH now; the object holds nothing after.
  Result<void> detach();
  // Keeps the route until the device is unbound or the File closes.
  void release() { fd_.release(); }

 private:
  Attachment(int fd, uint32_t dev_id, uint32_t ioasid, std::optional<uint32_t> pasid)
      : fd_(fd), dev_id_(dev_id), ioasid_(ioasid), pasid_(pasid) {}
  static Result<Attachment> attach_route(const Device& device, const Ioas& ioas, std::optional<uint32_t> pasid);
  detail::BorrowedFd fd_;
  uint32_t dev_id_ = 0;
  uint32_t ioasid_ = 0;
  std::optional<uint32_t> pasid_;
};

// ---------------------------------------------------------------- ATS for device models

struct AtsOptions {
  std::optional<uint32_t> pasid;  // requests tagged with this PASID (IOASID_ATS_PASID)
  bool privileged = false;        // IOASID_ATS_PRIV: supervisor requests
  bool nowait = false;            // IOASID_ATS_NOWAIT: a miss returns PAGE_REQ instead of waiting
};

// How an access through the cache ended.
struct AtsOutcome {
  uint32_t status = IOASID_ATS_OK;  // IOASID_ATS_OK, FAULT, PAGE_REQ, RETRY, FOREIGN
  uint64_t done = 0;                // leading bytes moved
  uint64_t fault_addr = 0;          // where it stopped
  uint32_t fault_reason = 0;        // IOASID_FAULT_REASON_* or IOASID_ATS_FOREIGN_*
  bool ok() const { return status == IOASID_ATS_OK; }
};

// A device model's ATC: what it asked the IOMMU for (ATS_TRANSLATE) is kept and used
// with plain memory accesses until the IOMMU invalidates it. Feed it every record read
// from the File (handle(), or an AtsInvalidationServer): it drops what an invalidation
// names, waits for accesses still using it, then acknowledges (ATS_INV_ACK). A
// translation whose request overlapped an invalidation received before its answer is
// discarded and asked again, as PCIe requires of a device. Thread-safe.
class AtsCache {
 public:
  AtsCache(const Device& device, AtsOptions options = {});
  AtsCache(AtsCache&&) noexcept;
  AtsCache& operator=(AtsCache&&) noexcept;
  ~AtsCache();

  // The device reads [iova, iova + into.size()) / writes `from` at iova / copies
  // `length` bytes from src to dst (ranges that do not overlap), translating what the
  // cache lacks.
  Result<AtsOutcome> read(uint64_t iova, std::span<std::byte> into);
  Result<AtsOutcome> write(uint64_t iova, std::span<const std::byte> from);
  Result<AtsOutcome> copy(uint64_t dst, uint64_t src, uint64_t length);

  // One record read from the File: an ATS invalidation for this cache's device and
  // PASID is applied and acknowledged (true); any other record is not its (false).
  Result<bool> handle(const ioasid_fault& record);
  // Drops everything without being asked (a model resetting its ATC).
  void clear();

  struct Stats {
    uint64_t translations = 0;   // ATS_TRANSLATE calls
    uint64_t invalidations = 0;  // requests acknowledged
    uint64_t discarded = 0;      // answers dropped because an invalidation overtook them
    size_t entries = 0;
  };
  Stats stats() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// A thread that reads the File's records while it lives: ATS invalidations go to the
// caches that own them, every other record to `others` (may be empty). The caches must
// outlive it. On a blocking File it sits in read(2) (the fastest way to be told) and
// is stopped with ats_server_wake_signal(), for which it installs a handler that does
// nothing unless the application has one; an O_NONBLOCK File is polled instead.
inline int ats_server_wake_signal() { return SIGRTMIN + 4; }  // not a constant: glibc decides SIGRTMIN
class AtsInvalidationServer {
 public:
  using Others = std::function<void(const ioasid_fault&)>;
  static Result<AtsInvalidationServer> start(const File& file, std::vector<AtsCache*> caches, Others others = {});
  AtsInvalidationServer(AtsInvalidationServer&&) noexcept;
  AtsInvalidationServer& operator=(AtsInvalidationServer&&) noexcept;
  ~AtsInvalidationServer();  // stops and joins the thread

 private:
  struct State;
  explicit AtsInvalidationServer(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// ---------------------------------------------------------------- work queues

struct WqOptions {
  uint32_t size = 16;            // descriptors queued at most, 1..128
  uint32_t priority = 1;         // 1..15
  bool block_on_fault = false;   // IOASID_WQ_BOF: BOF descriptors raise page requests
};

// DEVICE_SUBMIT of one descriptor to work queue `wq` of a device with work queues.
// RETRY: the queue is full and nothing was queued. The descriptor runs later; its
// completion record tells how it ended.
Result<SubmitStatus> submit(const Device& device, uint32_t wq, const ioasid_dsa_desc& descriptor,
                            SubmitOptions options = {});

// A work queue this file enabled (WQ_CONFIG ENABLE); disabled when destroyed, which
// waits for the descriptors queued before.
class WorkQueue {
 public:
  // A dedicated WQ runs every descriptor at `pasid` (this file's) and takes them from
  // this file only.
  static Result<WorkQueue> enable_dedicated(const Device& device, uint32_t wq, uint32_t pasid,
                                            WqOptions options = {});
  // A shared WQ runs each descriptor at the PASID it names, for any file bound to the device.
  static Result<WorkQueue> enable_shared(const Device& device, uint32_t wq, WqOptions options = {});

  WorkQueue(WorkQueue&&) noexcept = default;
  WorkQueue& operator=(WorkQueue&& other) noexcept { return detail::replace_with(*this, std::move(other)); }
  ~WorkQueue();

  uint32_t dev_id() const { return dev_id_; }
  uint32_t index() const { return wq_; }
  bool shared() const { return shared_; }

  Result<SubmitStatus> submit(const ioasid_dsa_desc& descriptor, SubmitOptions options = {}) const;

  // WQ_CONFIG without ENABLE now; the object holds nothing after.
  Result<void> disable();
  // Keeps the WQ enabled until the device is unbound or the File closes.
  void release() { fd_.release(); }

 private:
  WorkQueue(int fd, uint32_t dev_id, uint32_t wq, bool shared) : fd_(fd), dev_id_(dev_id), wq_(wq), shared_(shared) {}
  static Result<WorkQueue> enable(const Device& device, uint32_t wq, uint32_t flags, uint32_t pasid,
                                  const WqOptions& options);
  detail::BorrowedFd fd_;
  uint32_t dev_id_ = 0;
  uint32_t wq_ = 0;
  bool shared_ = false;
};

// ---------------------------------------------------------------- iommufd commands returning an fd

// ioasidd's /dev/iommu cannot create a file descriptor in its caller (it answers through
// CUSE/FUSE), so the iommufd commands that return one run in two steps
// (<linux/ioasid_iommu_fd.h>): the command makes the object and names it by a token, then
// an open file of the companion node becomes the object. These calls do both.

// The companion node under CUSE; under FUSE it is DIR/iommu-fd, beside DIR/iommu.
inline constexpr const char* kIommuFdCompanionPath = "/dev/iommu-fd";

// Runs on `iommu_fd`, an open /dev/iommu of ioasidd, a command that hands its caller a new
// file descriptor: IOMMU_FAULT_QUEUE_ALLOC (struct iommu_fault_alloc) or IOMMU_TEST_CMD
// with op IOMMU_TEST_OP_CREATE_ACCESS (struct iommu_test_cmd); any other is EINVAL, sent
// nowhere. `arg` is the command's struct, as ioctl(2) takes it. On success the struct holds
// every output, its fd field (out_fault_fd, create_access.out_access_fd) the returned
// descriptor: an O_CLOEXEC file of `companion_path` which is the object, closed by the
// caller. On failure no descriptor is left open.
Result<int> iommufd_fd_command(int iommu_fd, uint32_t cmd, void* arg,
                               const char* companion_path = kIommuFdCompanionPath);

// The steps of iommufd_fd_command, for a caller that places the object's file in another
// process (ioasid-run, serving an unchanged program).
namespace iommu_fd {

// Where a command returns its descriptor: the offset of the __u32 fd field in its struct,
// nullopt for a command that returns none. `cmd_struct` points at the struct's first 8
// bytes at least (its size, and IOMMU_TEST_CMD's op).
std::optional<size_t> fd_field_offset(uint32_t cmd, const void* cmd_struct);

// An object made by step 1, waiting for its file.
struct PendingObject {
  uint64_t token = 0;     // for IOASID_IOMMU_FD_ATTACH, good once and for a few seconds
  size_t fd_offset = 0;   // fd_field_offset of the command
};

// Step 1, IOASID_IOMMU_FD_CMD: runs the command on the struct at `cmd_struct` (sized by its
// first u32, which must reach the fd field: EINVAL otherwise); the struct gets every output
// but the fd.
Result<PendingObject> make_object(int iommu_fd, uint32_t cmd, void* cmd_struct);

// Which number the object's file has in the process that uses it, as the selftest names
// an access by it: the descriptor's own (this process), or one set_fd_number gives later.
enum class FdNumber { this_process, set_later };

// Step 2: opens the companion node (O_RDWR | O_CLOEXEC) and makes the open file the object
// (IOASID_IOMMU_FD_ATTACH). Returns the descriptor, owned by the caller; on failure it is
// closed, and the unclaimed token expires.
Result<int> open_object_file(const char* companion_path, uint64_t token, FdNumber number);

// IOASID_IOMMU_FD_SET_NUMBER: the file's number in the process using it, after
// FdNumber::set_later.
Result<void> set_fd_number(int object_fd, int32_t number);

// Writes `fd` into the struct's fd field.
void store_fd(void* cmd_struct, const PendingObject& object, int32_t fd);

}  // namespace iommu_fd

// ---------------------------------------------------------------- DSA descriptors

namespace dsa {

// What every descriptor may carry besides its operation.
struct DescOptions {
  std::optional<uint64_t> completion_addr;  // CRAV: the 32-byte aligned address of its record
  bool record_on_success = true;            // RCR: a record on success too, not only on failure
  uint32_t pasid = 0;                       // a shared WQ runs it at this PASID (a dedicated WQ at its own)
  uint32_t flags = 0;                       // more IOASID_DSA_FLAG_*: FENCE, BOF, CC
  std::optional<uint8_t> expected_result;   // COMPARE, COMPVAL: CR, SUCCESS_PRED when the result differs
};

// Each builder fills a struct ioasid_dsa_desc; addresses are in the PASID's address space.
ioasid_dsa_desc noop(const DescOptions& options = {});
// Completes once everything submitted to the WQ before it has completed.
ioasid_dsa_desc drain(const DescOptions& options = {});
// Copies `size` bytes from `src` to `dst` (overlap allowed), like std::memmove.
ioasid_dsa_desc memmove(uint64_t dst, uint64_t src, uint32_t size, const DescOptions& options = {});
// Repeats the 8-byte `pattern` over `size` bytes at `dst`.
ioasid_dsa_desc fill(uint64_t dst, uint64_t pattern, uint32_t size, const DescOptions& options = {});
// Compares `size` bytes at `src1` and `src2`: result 0 equal, else 1.
ioasid_dsa_desc compare(uint64_t src1, uint64_t src2, uint32_t size, const DescOptions& options = {});
// Compares `size` bytes at `src` with the 8-byte `pattern` repeated.
ioasid_dsa_desc compval(uint64_t src, uint64_t pattern, uint32_t size, const DescOptions& options = {});
// CRC-32C of `size` bytes at `src`, continuing from `seed` (0, or a previous crc_val).
ioasid_dsa_desc crcgen(uint64_t src, uint32_t size, uint32_t seed = 0, const DescOptions& options = {});
// Runs `count` (2..32) descriptors stored at `list` (64-byte aligned), in order.
ioasid_dsa_desc batch(uint64_t list, uint32_t count, const DescOptions& options = {});

// The status code of a record (its write bit masked off); IOASID_DSA_COMP_NONE until written.
inline uint8_t status_code(const ioasid_dsa_completion& record) {
  return record.status & IOASID_DSA_COMP_STATUS_MASK;
}
// "SUCCESS", "PAGE_FAULT_NOBOF", ... for a status code; "0x.." for unknown ones.
std::string status_name(uint8_t status_code);
// Polls a record in this process's memory until the device writes its status, then
// returns a copy of it; ETIMEDOUT after `timeout`.
Result<ioasid_dsa_completion> wait_for_completion(ioasid_dsa_completion& record, std::chrono::milliseconds timeout);

}  // namespace dsa

}  // namespace ioasid::client

/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR MIT) */
/*
 * /dev/iommu - the iommufd user API as the ioasid-cuse daemon serves it.
 *
 * This is the project's own rendering of the Linux iommufd uAPI (kernel 6.12,
 * plus the GET_HW_INFO input-type extension that the 6.12.118 selftest relies
 * on). Only the names, numbers and layouts are shared with Linux; they have to
 * match for binaries built against the kernel header to work unchanged.
 *
 * Conventions of every command:
 *  - the ioctl number carries no size or direction, it is _IO(';', nr);
 *  - the argument begins with a __u32 "size" that the caller sets to the size
 *    of the struct it knows; a longer struct must have a zero tail, a shorter
 *    one is read as if zero-extended;
 *  - fields named __reserved must be zero;
 *  - user pointers travel as 64-bit integers.
 */
#ifndef _UAPI_IOMMUFD_H
#define _UAPI_IOMMUFD_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define IOMMUFD_TYPE (';')

/* Command indexes: the ioctl nr of each command. */
enum {
	IOMMUFD_CMD_BASE = 0x80,
	IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE,
	IOMMUFD_CMD_IOAS_ALLOC = IOMMUFD_CMD_BASE + 1,
	IOMMUFD_CMD_IOAS_ALLOW_IOVAS = IOMMUFD_CMD_BASE + 2,
	IOMMUFD_CMD_IOAS_COPY = IOMMUFD_CMD_BASE + 3,
	IOMMUFD_CMD_IOAS_IOVA_RANGES = IOMMUFD_CMD_BASE + 4,
	IOMMUFD_CMD_IOAS_MAP = IOMMUFD_CMD_BASE + 5,
	IOMMUFD_CMD_IOAS_UNMAP = IOMMUFD_CMD_BASE + 6,
	IOMMUFD_CMD_OPTION = IOMMUFD_CMD_BASE + 7,
	IOMMUFD_CMD_VFIO_IOAS = IOMMUFD_CMD_BASE + 8,
	IOMMUFD_CMD_HWPT_ALLOC = IOMMUFD_CMD_BASE + 9,
	IOMMUFD_CMD_GET_HW_INFO = IOMMUFD_CMD_BASE + 10,
	IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING = IOMMUFD_CMD_BASE + 11,
	IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP = IOMMUFD_CMD_BASE + 12,
	IOMMUFD_CMD_HWPT_INVALIDATE = IOMMUFD_CMD_BASE + 13,
	IOMMUFD_CMD_FAULT_QUEUE_ALLOC = IOMMUFD_CMD_BASE + 14,
};

/* IOMMU_DESTROY: drop the object with the given id from this file's table. */
struct iommu_destroy {
	__u32 size;
	__u32 id;
};
#define IOMMU_DESTROY _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY)

/* IOMMU_IOAS_ALLOC: create an empty I/O address space and return its id. */
struct iommu_ioas_alloc {
	__u32 size;
	__u32 flags;
	__u32 out_ioas_id;
};
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC)

/* One inclusive IOVA interval [start, last]. */
struct iommu_iova_range {
	__aligned_u64 start;
	__aligned_u64 last;
};

/*
 * IOMMU_IOAS_IOVA_RANGES: report the IOVA intervals that can be mapped in an
 * IOAS into the caller's array (allowed_iovas points at num_iovas entries),
 * with the total count and the IOVA alignment the IOAS requires.
 */
struct iommu_ioas_iova_ranges {
	__u32 size;
	__u32 ioas_id;
	__u32 num_iovas;
	__u32 __reserved;
	__aligned_u64 allowed_iovas;
	__aligned_u64 out_iova_alignment;
};
#define IOMMU_IOAS_IOVA_RANGES _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_IOVA_RANGES)

/*
 * IOMMU_IOAS_ALLOW_IOVAS: replace the set of intervals automatic IOVA
 * allocation may use (allowed_iovas points at num_iovas iommu_iova_range).
 */
struct iommu_ioas_allow_iovas {
	__u32 size;
	__u32 ioas_id;
	__u32 num_iovas;
	__u32 __reserved;
	__aligned_u64 allowed_iovas;
};
#define IOMMU_IOAS_ALLOW_IOVAS _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOW_IOVAS)

/* Flags of IOMMU_IOAS_MAP and IOMMU_IOAS_COPY. */
enum iommufd_ioas_map_flags {
	IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0,	/* use the given iova, do not allocate */
	IOMMU_IOAS_MAP_WRITEABLE = 1 << 1,	/* devices may write */
	IOMMU_IOAS_MAP_READABLE = 1 << 2,	/* devices may read */
};

/*
 * IOMMU_IOAS_MAP: map length bytes of the caller's memory at user_va into an
 * IOAS, at iova (FIXED_IOVA) or at an address chosen and returned in iova.
 */
struct iommu_ioas_map {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__u32 __reserved;
	__aligned_u64 user_va;
	__aligned_u64 length;
	__aligned_u64 iova;
};
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP)

/*
 * IOMMU_IOAS_COPY: map into dst the same pages that back [src_iova,
 * src_iova + length) in src; flags as for MAP, dst_iova returned if chosen.
 */
struct iommu_ioas_copy {
	__u32 size;
	__u32 flags;
	__u32 dst_ioas_id;
	__u32 src_ioas_id;
	__aligned_u64 length;
	__aligned_u64 dst_iova;
	__aligned_u64 src_iova;
};
#define IOMMU_IOAS_COPY _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_COPY)

/*
 * IOMMU_IOAS_UNMAP: remove the whole mappings inside [iova, iova + length);
 * length comes back as the number of bytes unmapped. iova 0 with length
 * U64_MAX removes everything.
 */
struct iommu_ioas_unmap {
	__u32 size;
	__u32 ioas_id;
	__aligned_u64 iova;
	__aligned_u64 length;
};
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP)

/* Option ids of IOMMU_OPTION. */
enum iommufd_option {
	IOMMU_OPTION_RLIMIT_MODE = 0,	/* per file, object_id 0: account pins per user (0) or per mm (1) */
	IOMMU_OPTION_HUGE_PAGES = 1,	/* per IOAS: 1 allows large IO pages, 0 forces PAGE_SIZE */
};

/* Whether IOMMU_OPTION writes or reads the option. */
enum iommufd_option_ops {
	IOMMU_OPTION_OP_SET = 0,
	IOMMU_OPTION_OP_GET = 1,
};

/* IOMMU_OPTION: set or read one option of the file or of an object. */
struct iommu_option {
	__u32 size;
	__u32 option_id;
	__u16 op;
	__u16 __reserved;
	__u32 object_id;
	__aligned_u64 val64;
};
#define IOMMU_OPTION _IO(IOMMUFD_TYPE, IOMMUFD_CMD_OPTION)

/* Operations of IOMMU_VFIO_IOAS. */
enum iommufd_vfio_ioas_op {
	IOMMU_VFIO_IOAS_GET = 0,	/* return the IOAS the VFIO compat ioctls use */
	IOMMU_VFIO_IOAS_SET = 1,	/* make ioas_id that IOAS */
	IOMMU_VFIO_IOAS_CLEAR = 2,	/* forget it */
};

/* IOMMU_VFIO_IOAS: choose the IOAS behind the VFIO type1 compatibility ioctls. */
struct iommu_vfio_ioas {
	__u32 size;
	__u32 ioas_id;
	__u16 op;
	__u16 __reserved;
};
#define IOMMU_VFIO_IOAS _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VFIO_IOAS)

/* Flags of IOMMU_HWPT_ALLOC. */
enum iommufd_hwpt_alloc_flags {
	IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0,	/* may later be the parent of nested tables */
	IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1,	/* must support dirty tracking */
	IOMMU_HWPT_FAULT_ID_VALID = 1 << 2,	/* fault_id names a fault queue */
};

/* Kinds of driver data that IOMMU_HWPT_ALLOC may carry. */
enum iommu_hwpt_data_type {
	IOMMU_HWPT_DATA_NONE = 0,
	IOMMU_HWPT_DATA_VTD_S1 = 1,
};

/*
 * IOMMU_HWPT_ALLOC: create a hardware page table for device dev_id. With an
 * IOAS as pt_id it is a paging table mirroring the IOAS; with a paging HWPT
 * as pt_id it is a nested table described by data_type/data_len/data_uptr.
 */
struct iommu_hwpt_alloc {
	__u32 size;
	__u32 flags;
	__u32 dev_id;
	__u32 pt_id;
	__u32 out_hwpt_id;
	__u32 __reserved;
	__u32 data_type;
	__u32 data_len;
	__aligned_u64 data_uptr;
	__u32 fault_id;
	__u32 __reserved2;
};
#define IOMMU_HWPT_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_ALLOC)

/* Kinds of hardware information IOMMU_GET_HW_INFO returns. */
enum iommu_hw_info_type {
	IOMMU_HW_INFO_TYPE_NONE = 0,
	IOMMU_HW_INFO_TYPE_DEFAULT = 0,	/* as input: whatever the driver reports */
	IOMMU_HW_INFO_TYPE_INTEL_VTD = 1,
};

/* Flags of IOMMU_GET_HW_INFO. */
enum iommufd_hw_info_flags {
	IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0,	/* in_data_type selects the type wanted */
};

/* Capability bits returned in iommu_hw_info.out_capabilities. */
enum iommufd_hw_capabilities {
	IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0,
	IOMMU_HW_CAP_PCI_PASID_EXEC = 1 << 1,
	IOMMU_HW_CAP_PCI_PASID_PRIV = 1 << 2,
};

/*
 * IOMMU_GET_HW_INFO: describe the IOMMU behind device dev_id. Up to data_len
 * bytes of driver data go to data_uptr; data_len comes back as the driver's
 * size. The word at offset 24 is the requested type on input (with
 * IOMMU_HW_INFO_FLAG_INPUT_TYPE) and the returned type on output.
 */
struct iommu_hw_info {
	__u32 size;
	__u32 flags;
	__u32 dev_id;
	__u32 data_len;
	__aligned_u64 data_uptr;
	union {
		__u32 in_data_type;
		__u32 out_data_type;
	};
	__u8 out_max_pasid_log2;
	__u8 __reserved[3];
	__aligned_u64 out_capabilities;
};
#define IOMMU_GET_HW_INFO _IO(IOMMUFD_TYPE, IOMMUFD_CMD_GET_HW_INFO)

/* Flags of IOMMU_HWPT_SET_DIRTY_TRACKING. */
enum iommufd_hwpt_set_dirty_tracking_flags {
	IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1,	/* set: start tracking; clear: stop */
};

/* IOMMU_HWPT_SET_DIRTY_TRACKING: start or stop dirty tracking on a paging HWPT. */
struct iommu_hwpt_set_dirty_tracking {
	__u32 size;
	__u32 flags;
	__u32 hwpt_id;
	__u32 __reserved;
};
#define IOMMU_HWPT_SET_DIRTY_TRACKING \
	_IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING)

/* Flags of IOMMU_HWPT_GET_DIRTY_BITMAP. */
enum iommufd_hwpt_get_dirty_bitmap_flags {
	IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1,	/* report without clearing */
};

/*
 * IOMMU_HWPT_GET_DIRTY_BITMAP: set bit n of the bitmap at data for each
 * page_size unit n of [iova, iova + length) written by a device.
 */
struct iommu_hwpt_get_dirty_bitmap {
	__u32 size;
	__u32 hwpt_id;
	__u32 flags;
	__u32 __reserved;
	__aligned_u64 iova;
	__aligned_u64 length;
	__aligned_u64 page_size;
	__aligned_u64 data;
};
#define IOMMU_HWPT_GET_DIRTY_BITMAP \
	_IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP)

/* Kinds of invalidation entries IOMMU_HWPT_INVALIDATE may carry. */
enum iommu_hwpt_invalidate_data_type {
	IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 = 0,
};

/*
 * IOMMU_HWPT_INVALIDATE: apply entry_num driver-defined invalidation entries
 * of entry_len bytes each (at data_uptr) to a nested HWPT; entry_num comes
 * back as the number handled.
 */
struct iommu_hwpt_invalidate {
	__u32 size;
	__u32 hwpt_id;
	__aligned_u64 data_uptr;
	__u32 data_type;
	__u32 entry_len;
	__u32 entry_num;
	__u32 __reserved;
};
#define IOMMU_HWPT_INVALIDATE _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_INVALIDATE)

/* Flags of a page fault record. */
enum iommu_hwpt_pgfault_flags {
	IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0,	/* pasid is meaningful */
	IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1,	/* last request of its group */
};

/* Access the faulting request wanted. */
enum iommu_hwpt_pgfault_perm {
	IOMMU_PGFAULT_PERM_READ = 1 << 0,
	IOMMU_PGFAULT_PERM_WRITE = 1 << 1,
	IOMMU_PGFAULT_PERM_EXEC = 1 << 2,
	IOMMU_PGFAULT_PERM_PRIV = 1 << 3,
};

/* One page fault, as read() from a fault queue fd. */
struct iommu_hwpt_pgfault {
	__u32 flags;
	__u32 dev_id;
	__u32 pasid;
	__u32 grpid;
	__u32 perm;
	__u32 __reserved;
	__aligned_u64 addr;
	__u32 length;
	__u32 cookie;
};

/* Outcome of a page fault, given in iommu_hwpt_page_response.code. */
enum iommufd_page_response_code {
	IOMMUFD_PAGE_RESP_SUCCESS = 0,
	IOMMUFD_PAGE_RESP_INVALID = 1,
};

/* The answer to one fault, as write() to a fault queue fd; cookie echoes the fault's. */
struct iommu_hwpt_page_response {
	__u32 cookie;
	__u32 code;
};

/* IOMMU_FAULT_QUEUE_ALLOC: create a fault queue; returns its object id and an fd. */
struct iommu_fault_alloc {
	__u32 size;
	__u32 flags;
	__u32 out_fault_id;
	__u32 out_fault_fd;
};
#define IOMMU_FAULT_QUEUE_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_FAULT_QUEUE_ALLOC)

#endif /* _UAPI_IOMMUFD_H */

/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR MIT) */
/*
 * /dev/ioasid - the user API of the ioasid-cuse emulated IOMMU.
 *
 * Every struct is naturally aligned with no implicit padding; pointers travel as
 * __u64. Every command with a struct is _IOWR, so CUSE and FUSE (restricted ioctl
 * mode) copy the struct in both directions. See docs/UAPI.md for the rules.
 */
#ifndef _UAPI_LINUX_IOASID_H
#define _UAPI_LINUX_IOASID_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define IOASID_TYPE 'i'
#define IOASID_BASE 100
#define IOASID_API_VERSION 1

/* Feature bit indexes: GET_INFO.features has (1u << index); CHECK_EXTENSION takes index. */
#define IOASID_FEAT_PASID 0
#define IOASID_FEAT_NESTING 1
#define IOASID_FEAT_BIND_PGTBL 2
#define IOASID_FEAT_CACHE_INVLD 3
#define IOASID_FEAT_PAGE_RESP 4
#define IOASID_FEAT_DIRTY_TRACKING 5
#define IOASID_FEAT_GPASID 6
#define IOASID_FEAT_MAP_FILE 7
#define IOASID_FEAT_SIOV 8
#define IOASID_FEAT_ATS 9 /* ATS_TRANSLATE and ATS_INV_ACK: ATS for device models */
#define IOASID_FEAT_COUNT 10

/* Page-table formats: GET_INFO.pgtbl_formats has (1u << format). */
#define IOASID_PGTBL_VTD_FL 1

struct ioasid_info {
	__u32 flags;
	__u32 api_version;
	__u32 features;
	__u32 pasid_bits;
	__u32 addr_width;
	__u32 pgtbl_formats;
	__u64 pgsize_bitmap;
	__u32 pasid_quota;
	__u32 pasids_allocated;
	__u64 cap_reg;
	__u64 ecap_reg;
};

#define IOASID_PASID_ALLOC (1u << 0)
#define IOASID_PASID_FREE (1u << 1)
#define IOASID_PASID_GPASID (1u << 2)

struct ioasid_pasid_request {
	__u32 flags;
	__u32 min;
	__u32 max;
	__u32 pasid;
	__u32 gpasid;
	__u32 __reserved;
};

struct ioasid_pasid_lookup {
	__u32 flags;
	__u32 gpasid;
	__u32 out_pasid;
	__u32 __reserved;
};

#define IOASID_ALLOC_NESTED (1u << 0)

struct ioasid_alloc {
	__u32 flags;
	__u32 parent;
	__u32 out_ioasid;
	__u32 __reserved;
};

struct ioasid_free {
	__u32 ioasid;
	__u32 __reserved;
};

#define IOASID_MAP_READABLE (1u << 0)
#define IOASID_MAP_WRITEABLE (1u << 1)
#define IOASID_MAP_FIXED_IOVA (1u << 2)

struct ioasid_map_dma {
	__u32 flags;
	__u32 ioasid;
	__u64 user_va;
	__u64 length;
	__u64 iova;
};

struct ioasid_map_file {
	__u32 flags;
	__u32 ioasid;
	__s32 fd;
	__u32 __reserved;
	__u64 offset;
	__u64 length;
	__u64 iova;
};

struct ioasid_unmap_dma {
	__u32 ioasid;
	__u32 flags;
	__u64 iova;
	__u64 length;
};

struct ioasid_iova_range {
	__u64 start;
	__u64 last;
};

struct ioasid_iova_ranges {
	__u32 ioasid;
	__u32 num_ranges;
	__u64 ranges_uptr;
	__u64 out_alignment;
};

#define IOASID_VTD_FL_SRE (1ull << 0)
#define IOASID_VTD_FL_EAFE (1ull << 1)
#define IOASID_VTD_FL_WPE (1ull << 2)
#define IOASID_VTD_FL_PCD (1ull << 3)
#define IOASID_VTD_FL_PWT (1ull << 4)
#define IOASID_VTD_FL_EMTE (1ull << 5)
#define IOASID_VTD_FL_CD (1ull << 6)

struct ioasid_bind_pgtbl {
	__u32 ioasid;
	__u32 format;
	__u64 flags;
	__u64 pgtbl_addr;
	__u32 addr_width;
	__u32 pat;
	__u32 emt;
	__u32 __reserved;
};

struct ioasid_unbind_pgtbl {
	__u32 ioasid;
	__u32 flags;
};

#define IOASID_CACHE_IOTLB (1u << 0)
#define IOASID_CACHE_DEV_IOTLB (1u << 1)
#define IOASID_CACHE_PASID (1u << 2)

#define IOASID_INV_GRANU_DOMAIN 0
#define IOASID_INV_GRANU_PASID 1
#define IOASID_INV_GRANU_ADDR 2

#define IOASID_INV_FLAGS_PASID (1u << 0)
#define IOASID_INV_FLAGS_LEAF (1u << 1)
#define IOASID_INV_FLAGS_GPASID (1u << 2)
#define IOASID_INV_FLAGS_RID_PASID (1u << 3) /* requests without PASID (RID_PASID); pasid 0 */

struct ioasid_cache_invalidate_info {
	__u8 cache;
	__u8 granularity;
	__u16 flags;
	__u32 pasid;
	__u64 addr;
	__u64 granule_size;
	__u64 nb_granules;
};

struct ioasid_cache_invalidate {
	__u32 ioasid;
	__u32 flags;
	__u32 entry_len;
	__u32 entry_num;
	__u64 entries_uptr;
};

struct ioasid_device_bind {
	__u32 flags;
	__u32 out_dev_id;
	char name[32];
};

struct ioasid_device_unbind {
	__u32 dev_id;
	__u32 flags;
};

#define IOASID_DEVICE_PASID (1u << 0)
#define IOASID_DEVICE_PRI (1u << 1)
#define IOASID_DEVICE_ATS (1u << 2)
#define IOASID_DEVICE_SIOV (1u << 3)

#define IOASID_DEVICE_TYPE_DMA 1
#define IOASID_DEVICE_TYPE_DSA 2

struct ioasid_device_info {
	__u32 dev_id;
	__u32 flags;
	__u32 rid;
	__u32 pasid_bits;
	__u32 type;
	__u32 num_wqs;
	char name[32];
};

#define IOASID_ATTACH_REPLACE (1u << 0)

struct ioasid_attach {
	__u32 dev_id;
	__u32 ioasid;
	__u32 pasid;
	__u32 flags;
};

#define IOASID_PAGE_RESP_PASID_VALID (1u << 0)

#define IOASID_PAGE_RESP_SUCCESS 0
#define IOASID_PAGE_RESP_INVALID 1
#define IOASID_PAGE_RESP_FAILURE 2

struct ioasid_page_response {
	__u32 dev_id;
	__u32 flags;
	__u32 pasid;
	__u32 grpid;
	__u32 code;
	__u32 __reserved;
};

#define IOASID_DIRTY_ENABLE (1u << 0)

struct ioasid_dirty_tracking {
	__u32 ioasid;
	__u32 flags;
};

#define IOASID_DIRTY_NO_CLEAR (1u << 0)

struct ioasid_dirty_bitmap {
	__u32 ioasid;
	__u32 flags;
	__u64 iova;
	__u64 length;
	__u64 page_size;
	__u64 bitmap_uptr;
};

#define IOASID_DMA_WRITE (1u << 0)
#define IOASID_DMA_PASID (1u << 1)
#define IOASID_DMA_PRIV (1u << 2)
#define IOASID_DMA_NOWAIT (1u << 3)

#define IOASID_DMA_OK 0
#define IOASID_DMA_FAULT 1
#define IOASID_DMA_PAGE_REQ 2
#define IOASID_DMA_RETRY 3 /* page request not queued (queue full): answered by the IOMMU, retry later */

struct ioasid_device_dma {
	__u32 dev_id;
	__u32 flags;
	__u32 pasid;
	__u32 out_status;
	__u64 iova;
	__u64 length;
	__u64 buf_uptr;
	__u64 out_fault_addr;
	__u32 out_fault_reason;
	__u32 __reserved;
};

#define IOASID_WQ_ENABLE (1u << 0)
#define IOASID_WQ_SHARED (1u << 1)
#define IOASID_WQ_BOF (1u << 2)

struct ioasid_wq_config {
	__u32 dev_id;
	__u32 wq;
	__u32 flags;
	__u32 pasid;
	__u32 size;
	__u32 priority;
	__u64 __reserved;
};

#define IOASID_SUBMIT_GPASID (1u << 0)

#define IOASID_SUBMIT_ACCEPTED 0
#define IOASID_SUBMIT_RETRY 1

struct ioasid_device_submit {
	__u32 dev_id;
	__u32 wq;
	__u32 flags;
	__u32 out_status;
	__u8 desc[64];
};

/*
 * The DSA descriptor carried in ioasid_device_submit.desc and the completion record
 * the device writes, in the layout of Intel DSA (the kernel's dsa_hw_desc and
 * dsa_completion_record), without bit-fields.
 */
#define IOASID_DSA_OPCODE_NOOP 0x00
#define IOASID_DSA_OPCODE_BATCH 0x01
#define IOASID_DSA_OPCODE_DRAIN 0x02
#define IOASID_DSA_OPCODE_MEMMOVE 0x03
#define IOASID_DSA_OPCODE_MEMFILL 0x04
#define IOASID_DSA_OPCODE_COMPARE 0x05
#define IOASID_DSA_OPCODE_COMPVAL 0x06
#define IOASID_DSA_OPCODE_CRCGEN 0x10

/* ioasid_dsa_desc.pasid */
#define IOASID_DSA_PASID_MASK 0xfffffu
#define IOASID_DSA_PRIV (1u << 31)

/* ioasid_dsa_desc.opflags: flags in bits 0-23, the opcode in bits 24-31 */
#define IOASID_DSA_FLAG_FENCE (1u << 0)
#define IOASID_DSA_FLAG_BOF (1u << 1)  /* block on fault (when the WQ allows it) */
#define IOASID_DSA_FLAG_CRAV (1u << 2) /* completion_addr is valid */
#define IOASID_DSA_FLAG_RCR (1u << 3)  /* write a completion record on success too */
#define IOASID_DSA_FLAG_CR (1u << 7)   /* check result against expected_res */
#define IOASID_DSA_FLAG_CC (1u << 8)   /* destination cache hint (accepted, no effect) */
#define IOASID_DSA_OPCODE_SHIFT 24
#define IOASID_DSA_OPFLAGS(opcode, flags) (((__u32)(opcode) << IOASID_DSA_OPCODE_SHIFT) | (flags))

struct ioasid_dsa_desc {
	__u32 pasid;           /* PASID in bits 0-19, PRIV bit 31, the rest zero */
	__u32 opflags;         /* IOASID_DSA_OPFLAGS(opcode, flags) */
	__u64 completion_addr; /* 32-byte aligned, in the PASID's address space */
	__u64 src;             /* source; MEMFILL: the 8-byte pattern; BATCH: descriptor list */
	__u64 dst;             /* destination; COMPARE: second source; COMPVAL: the pattern */
	__u32 xfer_size;       /* bytes; BATCH: descriptor count */
	__u16 int_handle;      /* zero: completion interrupts are not modelled */
	__u16 __reserved1;
	union {
		__u8 expected_res; /* COMPARE, COMPVAL with IOASID_DSA_FLAG_CR */
		__u32 crc_seed;    /* CRCGEN */
	};
	__u32 __reserved2;
	__u64 __reserved3[2];
};

/* ioasid_dsa_completion.status: the code in bits 0-6; bit 7 says a fault was a write */
#define IOASID_DSA_COMP_NONE 0x00
#define IOASID_DSA_COMP_SUCCESS 0x01
#define IOASID_DSA_COMP_SUCCESS_PRED 0x02
#define IOASID_DSA_COMP_PAGE_FAULT_NOBOF 0x03
#define IOASID_DSA_COMP_PAGE_FAULT_IR 0x04
#define IOASID_DSA_COMP_BATCH_FAIL 0x05
#define IOASID_DSA_COMP_BATCH_PAGE_FAULT 0x06
#define IOASID_DSA_COMP_BAD_OPCODE 0x10
#define IOASID_DSA_COMP_INVALID_FLAGS 0x11
#define IOASID_DSA_COMP_NOZERO_RESERVE 0x12
#define IOASID_DSA_COMP_XFER_ERANGE 0x13
#define IOASID_DSA_COMP_DESC_CNT_ERANGE 0x14
#define IOASID_DSA_COMP_DESCLIST_ALIGN 0x18
#define IOASID_DSA_COMP_INT_HANDLE_INVAL 0x19
#define IOASID_DSA_COMP_PRIV_BAD 0x1d
#define IOASID_DSA_COMP_TRANSLATION_FAIL 0x22
#define IOASID_DSA_COMP_STATUS_MASK 0x7f
#define IOASID_DSA_COMP_STATUS_WRITE 0x80

struct ioasid_dsa_completion {
	__u8 status;
	__u8 result;           /* COMPARE, COMPVAL: 0 equal, 1 different */
	__u16 __reserved1;
	__u32 bytes_completed; /* bytes before a fault or the first difference; BATCH: descriptors */
	__u64 fault_addr;      /* the address that faulted */
	union {
		__u32 invalid_flags; /* INVALID_FLAGS: the flag bits at fault */
		__u32 crc_val;       /* CRCGEN */
	};
	__u32 __reserved2;
	__u64 __reserved3;
};

#define IOASID_FAULT_DMA_UNRECOV 1
#define IOASID_FAULT_PAGE_REQ 2
#define IOASID_FAULT_LOST 3
#define IOASID_FAULT_ATS_INVALIDATE 4 /* a struct ioasid_ats_invalidation: acknowledge with ATS_INV_ACK */

#define IOASID_FAULT_PASID_VALID (1u << 0)
#define IOASID_FAULT_ADDR_VALID (1u << 1)
#define IOASID_FAULT_FETCH_ADDR_VALID (1u << 2)
#define IOASID_FAULT_LAST_PAGE (1u << 3)
#define IOASID_FAULT_SECOND_STAGE (1u << 4) /* nested: the parent's table refused `gpa` */

#define IOASID_FAULT_REASON_UNKNOWN 0
#define IOASID_FAULT_REASON_PASID_FETCH 1
#define IOASID_FAULT_REASON_BAD_PASID_ENTRY 2
#define IOASID_FAULT_REASON_PASID_INVALID 3
#define IOASID_FAULT_REASON_WALK_EABT 4
#define IOASID_FAULT_REASON_PTE_FETCH 5
#define IOASID_FAULT_REASON_PERMISSION 6
#define IOASID_FAULT_REASON_ACCESS 7
#define IOASID_FAULT_REASON_OOR_ADDRESS 8

#define IOASID_FAULT_PERM_READ (1u << 0)
#define IOASID_FAULT_PERM_WRITE (1u << 1)
#define IOASID_FAULT_PERM_EXEC (1u << 2)
#define IOASID_FAULT_PERM_PRIV (1u << 3)

struct ioasid_fault {
	__u32 type;
	__u32 flags;
	__u32 dev_id;
	__u32 pasid;
	__u32 ioasid;
	__u32 reason;
	__u32 perm;
	__u32 grpid;
	__u64 addr;
	__u64 fetch_addr;
	__u64 gpa; /* with IOASID_FAULT_SECOND_STAGE: the guest-physical address refused */
	__u64 __reserved;
};

/*
 * ATS for device models (IOASID_FEAT_ATS). A file that has bound a device with the
 * ATS capability asks the IOMMU for translations on the device's behalf, as a PCIe
 * device does with a Translation Request, and moves the bytes itself. Each run says
 * where its bytes are in the caller's own address space. What was handed out is the
 * device's ATC: anything that invalidates it queues a struct ioasid_ats_invalidation
 * to the file (read(2) like a fault record), and the ioctl that caused it returns
 * once the file has answered with ATS_INV_ACK, or after the daemon's --ats-timeout,
 * when the device is failed (its translations refused until it is bound again).
 */
#define IOASID_ATS_PASID (1u << 0)  /* the request carries `pasid` */
#define IOASID_ATS_WRITE (1u << 1)  /* write access (sets A and D, as a write does); else read */
#define IOASID_ATS_PRIV (1u << 2)   /* supervisor request; needs IOASID_ATS_PASID */
#define IOASID_ATS_NOWAIT (1u << 3) /* a page request raised by a miss does not wait for PAGE_RESP */

#define IOASID_ATS_OK 0       /* the runs cover [iova, iova + length) */
#define IOASID_ATS_MORE 1     /* num_runs runs were filled: translate again from iova + out_length */
#define IOASID_ATS_FAULT 2    /* no translation at out_fault_addr (out_fault_reason: IOASID_FAULT_REASON_*) */
#define IOASID_ATS_PAGE_REQ 3 /* NOWAIT: a page request for out_fault_addr is outstanding */
#define IOASID_ATS_RETRY 4    /* the fault queue was full: the IOMMU answered the page request; retry later */
#define IOASID_ATS_FOREIGN 5  /* translated, but not reachable by the caller (out_fault_reason below) */

#define IOASID_ATS_FOREIGN_PROCESS 1 /* MAP_DMA memory of another process */
#define IOASID_ATS_FOREIGN_FILE 2    /* MAP_FILE memory the caller has no shared mapping of, with the rights */

#define IOASID_ATS_RUN_READ (1u << 0)
#define IOASID_ATS_RUN_WRITE (1u << 1)
#define IOASID_ATS_RUN_FILE (1u << 2) /* MAP_FILE memory: uaddr is in the caller's own mapping of the file */

struct ioasid_ats_run {
	__u64 iova;
	__u64 length;
	__u64 uaddr; /* the bytes of [iova, iova + length) in the caller's address space */
	__u32 perm;  /* IOASID_ATS_RUN_* */
	__u32 __reserved;
};

struct ioasid_ats_translate {
	__u32 flags;
	__u32 dev_id;
	__u32 pasid;
	__u32 num_runs; /* in: struct ioasid_ats_run slots at runs_uptr (1..512); out: runs written */
	__u64 iova;
	__u64 length; /* 1 .. 64 MiB */
	__u64 runs_uptr;
	__u64 out_length; /* bytes from iova the runs cover */
	__u64 out_fault_addr;
	__u32 out_status;       /* IOASID_ATS_OK .. IOASID_ATS_FOREIGN */
	__u32 out_fault_reason; /* FAULT, PAGE_REQ, RETRY: IOASID_FAULT_REASON_*; FOREIGN: IOASID_ATS_FOREIGN_* */
};

/* Read from the fd in a 64-byte record slot; type IOASID_FAULT_ATS_INVALIDATE. */
struct ioasid_ats_invalidation {
	__u32 type;
	__u32 flags; /* IOASID_FAULT_PASID_VALID: the entries at `pasid`; else requests without PASID */
	__u32 dev_id;
	__u32 pasid;
	__u32 itag; /* the tag ATS_INV_ACK names */
	__u32 __reserved0;
	__u64 iova;
	__u64 length; /* every translation overlapping [iova, iova + length) is invalid */
	__u64 __reserved[3];
};

struct ioasid_ats_ack {
	__u32 flags;
	__u32 dev_id;
	__u32 itag;
	__u32 __reserved;
};

#define IOASID_GET_API_VERSION _IO(IOASID_TYPE, IOASID_BASE + 0)
#define IOASID_CHECK_EXTENSION _IO(IOASID_TYPE, IOASID_BASE + 1)
#define IOASID_GET_INFO _IOWR(IOASID_TYPE, IOASID_BASE + 2, struct ioasid_info)
#define IOASID_PASID_REQUEST _IOWR(IOASID_TYPE, IOASID_BASE + 3, struct ioasid_pasid_request)
#define IOASID_PASID_LOOKUP _IOWR(IOASID_TYPE, IOASID_BASE + 4, struct ioasid_pasid_lookup)
#define IOASID_ALLOC _IOWR(IOASID_TYPE, IOASID_BASE + 5, struct ioasid_alloc)
#define IOASID_FREE _IOWR(IOASID_TYPE, IOASID_BASE + 6, struct ioasid_free)
#define IOASID_MAP_DMA _IOWR(IOASID_TYPE, IOASID_BASE + 7, struct ioasid_map_dma)
#define IOASID_MAP_FILE _IOWR(IOASID_TYPE, IOASID_BASE + 8, struct ioasid_map_file)
#define IOASID_UNMAP_DMA _IOWR(IOASID_TYPE, IOASID_BASE + 9, struct ioasid_unmap_dma)
#define IOASID_IOVA_RANGES _IOWR(IOASID_TYPE, IOASID_BASE + 10, struct ioasid_iova_ranges)
#define IOASID_BIND_PGTBL _IOWR(IOASID_TYPE, IOASID_BASE + 11, struct ioasid_bind_pgtbl)
#define IOASID_UNBIND_PGTBL _IOWR(IOASID_TYPE, IOASID_BASE + 12, struct ioasid_unbind_pgtbl)
#define IOASID_CACHE_INVLD _IOWR(IOASID_TYPE, IOASID_BASE + 13, struct ioasid_cache_invalidate)
#define IOASID_DEVICE_BIND _IOWR(IOASID_TYPE, IOASID_BASE + 14, struct ioasid_device_bind)
#define IOASID_DEVICE_UNBIND _IOWR(IOASID_TYPE, IOASID_BASE + 15, struct ioasid_device_unbind)
#define IOASID_DEVICE_GET_INFO _IOWR(IOASID_TYPE, IOASID_BASE + 16, struct ioasid_device_info)
#define IOASID_ATTACH_IOASID _IOWR(IOASID_TYPE, IOASID_BASE + 17, struct ioasid_attach)
#define IOASID_ATTACH_IOASID_PASID _IOWR(IOASID_TYPE, IOASID_BASE + 18, struct ioasid_attach)
#define IOASID_DETACH_IOASID _IOWR(IOASID_TYPE, IOASID_BASE + 19, struct ioasid_attach)
#define IOASID_DETACH_IOASID_PASID _IOWR(IOASID_TYPE, IOASID_BASE + 20, struct ioasid_attach)
#define IOASID_PAGE_RESP _IOWR(IOASID_TYPE, IOASID_BASE + 21, struct ioasid_page_response)
#define IOASID_SET_DIRTY_TRACKING _IOWR(IOASID_TYPE, IOASID_BASE + 22, struct ioasid_dirty_tracking)
#define IOASID_GET_DIRTY_BITMAP _IOWR(IOASID_TYPE, IOASID_BASE + 23, struct ioasid_dirty_bitmap)
#define IOASID_DEVICE_DMA _IOWR(IOASID_TYPE, IOASID_BASE + 24, struct ioasid_device_dma)
#define IOASID_WQ_CONFIG _IOWR(IOASID_TYPE, IOASID_BASE + 25, struct ioasid_wq_config)
#define IOASID_DEVICE_SUBMIT _IOWR(IOASID_TYPE, IOASID_BASE + 26, struct ioasid_device_submit)
#define IOASID_ATS_TRANSLATE _IOWR(IOASID_TYPE, IOASID_BASE + 27, struct ioasid_ats_translate)
#define IOASID_ATS_INV_ACK _IOWR(IOASID_TYPE, IOASID_BASE + 28, struct ioasid_ats_ack)

#endif /* _UAPI_LINUX_IOASID_H */

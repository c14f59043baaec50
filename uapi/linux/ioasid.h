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
#define IOASID_FEAT_COUNT 9

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

#define IOASID_FAULT_DMA_UNRECOV 1
#define IOASID_FAULT_PAGE_REQ 2
#define IOASID_FAULT_LOST 3

#define IOASID_FAULT_PASID_VALID (1u << 0)
#define IOASID_FAULT_ADDR_VALID (1u << 1)
#define IOASID_FAULT_FETCH_ADDR_VALID (1u << 2)
#define IOASID_FAULT_LAST_PAGE (1u << 3)

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
	__u64 __reserved[2];
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

#endif /* _UAPI_LINUX_IOASID_H */

/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR MIT) */
/*
 * IOMMU_TEST_CMD - the commands of the iommufd mock driver, as the
 * ioasid-cuse daemon serves them on /dev/iommu.
 *
 * The Linux iommufd selftest drives a mock IOMMU and mock devices through one
 * extra iommufd ioctl. This is the project's own description of that
 * interface: names, numbers and layouts match what the 6.12.118 selftest
 * (iommufd.c, iommufd_utils.h, iommufd_fail_nth.c) is compiled against,
 * including the PASID additions it expects.
 */
#ifndef _UAPI_IOMMUFD_TEST_H
#define _UAPI_IOMMUFD_TEST_H

#include <linux/iommufd.h>
#include <linux/types.h>

/* What struct iommu_test_cmd.op asks for. */
enum {
	IOMMU_TEST_OP_ADD_RESERVED = 1,		/* reserve an IOVA range in IOAS id */
	IOMMU_TEST_OP_MOCK_DOMAIN = 2,		/* new mock device attached to id */
	IOMMU_TEST_OP_MD_CHECK_MAP = 3,		/* check a mock domain maps a user range */
	IOMMU_TEST_OP_MD_CHECK_REFS = 4,	/* check the pin count of user pages */
	IOMMU_TEST_OP_CREATE_ACCESS = 5,	/* new in-kernel access user, returned as an fd */
	IOMMU_TEST_OP_DESTROY_ACCESS_PAGES = 6,	/* release pages an access pinned */
	IOMMU_TEST_OP_ACCESS_PAGES = 7,		/* pin IOVA pages through an access */
	IOMMU_TEST_OP_ACCESS_RW = 8,		/* read or write IOVA memory through an access */
	IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT = 9,	/* tune internal batch memory */
	IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE = 10,	/* move a mock device to another IOAS/HWPT */
	IOMMU_TEST_OP_ACCESS_REPLACE_IOAS = 11,	/* move an access to another IOAS */
	IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS = 12,	/* MOCK_DOMAIN with MOCK_FLAGS_DEVICE_* */
	IOMMU_TEST_OP_DIRTY = 13,		/* mark mock IOPTEs dirty from a bitmap */
	IOMMU_TEST_OP_MD_CHECK_IOTLB = 14,	/* check one IOTLB entry of a nested mock HWPT */
	IOMMU_TEST_OP_TRIGGER_IOPF = 15,	/* raise a page fault for a device */
};

/* The IOVA window a mock domain translates (inclusive). */
enum {
	MOCK_APERTURE_START = 1UL << 24,
	MOCK_APERTURE_LAST = (1UL << 31) - 1,
};

/* access_pages.flags */
enum {
	MOCK_FLAGS_ACCESS_WRITE = 1 << 0,
	MOCK_FLAGS_ACCESS_SYZ = 1 << 16,
};

/* access_rw.flags */
enum {
	MOCK_ACCESS_RW_WRITE = 1 << 0,
	MOCK_ACCESS_RW_SLOW_PATH = 1 << 2,
};

/* create_access.flags */
enum {
	MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1 << 0,
};

/* mock_domain_flags.dev_flags: properties of the mock device. */
enum {
	MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0,	/* no dirty tracking capability */
	MOCK_FLAGS_DEVICE_HUGE_IOVA = 1 << 1,	/* domains use 1 MB IOPTEs */
	MOCK_FLAGS_DEVICE_PASID = 1 << 2,	/* PASID capable */
};

/* The IOTLB model of a nested mock domain. */
enum {
	MOCK_NESTED_DOMAIN_IOTLB_ID_MAX = 3,
	MOCK_NESTED_DOMAIN_IOTLB_NUM = 4,
};

/* PASID width (log2) a MOCK_FLAGS_DEVICE_PASID device reports. */
#define MOCK_PASID_WIDTH 20

/*
 * The argument of IOMMU_TEST_CMD. "id" names the object the op works on (an
 * IOAS, HWPT, mock device, or the fd of an access); the union carries the
 * op's own inputs and outputs.
 */
struct iommu_test_cmd {
	__u32 size;
	__u32 op;
	__u32 id;
	__u32 __reserved;
	union {
		struct {
			__aligned_u64 start;
			__aligned_u64 length;
		} add_reserved;
		struct {
			__u32 out_stdev_id;
			__u32 out_hwpt_id;
			__u32 out_idev_id;	/* the bound iommufd device */
		} mock_domain;
		struct {
			__u32 out_stdev_id;
			__u32 out_hwpt_id;
			__u32 out_idev_id;
			__u32 dev_flags;	/* MOCK_FLAGS_DEVICE_* */
		} mock_domain_flags;
		struct {
			__u32 pt_id;		/* in: target; out: attached HWPT */
		} mock_domain_replace;
		struct {
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 uptr;
		} check_map;
		struct {
			__aligned_u64 length;
			__aligned_u64 uptr;
			__u32 refs;
		} check_refs;
		struct {
			__u32 out_access_fd;
			__u32 flags;
		} create_access;
		struct {
			__u32 access_pages_id;
		} destroy_access_pages;
		struct {
			__u32 flags;
			__u32 out_access_pages_id;
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 uptr;
		} access_pages;
		struct {
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 uptr;
			__u32 flags;
		} access_rw;
		struct {
			__u32 limit;
		} memory_limit;
		struct {
			__u32 ioas_id;
		} access_replace_ioas;
		struct {
			__u32 flags;
			__aligned_u64 iova;
			__aligned_u64 length;
			__aligned_u64 page_size;
			__aligned_u64 uptr;
			__aligned_u64 out_nr_dirty;
		} dirty;
		struct {
			__u32 id;
			__u32 iotlb;
		} check_iotlb;
		struct {
			__u32 dev_id;
			__u32 pasid;
			__u32 grpid;
			__u32 perm;
			__aligned_u64 addr;
		} trigger_iopf;
	};
	__u32 last;	/* marks the minimum size the daemon accepts (offsetofend) */
};
#define IOMMU_TEST_CMD _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 32)

/* GET_HW_INFO of a mock device: out_data_type and the register value returned. */
#define IOMMU_HW_INFO_TYPE_SELFTEST 0xfeedbeef
#define IOMMU_HW_INFO_SELFTEST_REGVAL 0xdeadbeef

/* The driver data GET_HW_INFO returns for a mock device. */
struct iommu_test_hw_info {
	__u32 flags;
	__u32 test_reg;
};

/* HWPT_ALLOC data_type of a nested mock table, and its IOTLB's initial value. */
#define IOMMU_HWPT_DATA_SELFTEST 0xdead
#define IOMMU_TEST_IOTLB_DEFAULT 0xbadbeef

/* HWPT_ALLOC data of a nested mock table: the value every IOTLB entry starts at. */
struct iommu_hwpt_selftest {
	__u32 iotlb;
};

/* HWPT_INVALIDATE data_type of a nested mock table; _INVALID is a type it refuses. */
#define IOMMU_HWPT_INVALIDATE_DATA_SELFTEST 0xdeadbeef
#define IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID 0xdadbeef

/* flags of struct iommu_hwpt_invalidate_selftest */
#define IOMMU_TEST_INVALIDATE_FLAG_ALL (1 << 0)

/* One invalidation entry for a nested mock table: clear entry iotlb_id, or all. */
struct iommu_hwpt_invalidate_selftest {
	__u32 flags;
	__u32 iotlb_id;
};

#endif /* _UAPI_IOMMUFD_TEST_H */

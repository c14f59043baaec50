/* SPDX-License-Identifier: MIT */
/*
 * The iommufd uAPI header and the mock driver's command header compile on their
 * own as strict C11, and every struct, field and ioctl number matches the 6.12
 * layout tables of docs/research/iommufd-layouts-6.12.md (x86-64).
 */
#include <linux/iommufd.h>
#include <iommufd_test/iommufd_test.h>

#include <stddef.h>

#define SIZE_IS(type, n) _Static_assert(sizeof(struct type) == (n), #type " must be " #n " bytes")
#define AT(type, field, off) \
	_Static_assert(offsetof(struct type, field) == (off), #type "." #field " must be at " #off)
#define FIELD_SIZE(type, field, n) \
	_Static_assert(sizeof(((struct type *)0)->field) == (n), #type "." #field " must be " #n " bytes")
#define IOCTL_IS(name, value) _Static_assert((name) == (value), #name " must be " #value)

/* Ioctl numbers: _IO(';', nr), no size or direction bits. */
IOCTL_IS(IOMMU_DESTROY, 0x00003b80);
IOCTL_IS(IOMMU_IOAS_ALLOC, 0x00003b81);
IOCTL_IS(IOMMU_IOAS_ALLOW_IOVAS, 0x00003b82);
IOCTL_IS(IOMMU_IOAS_COPY, 0x00003b83);
IOCTL_IS(IOMMU_IOAS_IOVA_RANGES, 0x00003b84);
IOCTL_IS(IOMMU_IOAS_MAP, 0x00003b85);
IOCTL_IS(IOMMU_IOAS_UNMAP, 0x00003b86);
IOCTL_IS(IOMMU_OPTION, 0x00003b87);
IOCTL_IS(IOMMU_VFIO_IOAS, 0x00003b88);
IOCTL_IS(IOMMU_HWPT_ALLOC, 0x00003b89);
IOCTL_IS(IOMMU_GET_HW_INFO, 0x00003b8a);
IOCTL_IS(IOMMU_HWPT_SET_DIRTY_TRACKING, 0x00003b8b);
IOCTL_IS(IOMMU_HWPT_GET_DIRTY_BITMAP, 0x00003b8c);
IOCTL_IS(IOMMU_HWPT_INVALIDATE, 0x00003b8d);
IOCTL_IS(IOMMU_FAULT_QUEUE_ALLOC, 0x00003b8e);
IOCTL_IS(IOMMU_TEST_CMD, 0x00003ba0);
_Static_assert(IOMMUFD_TYPE == 0x3b && IOMMUFD_CMD_BASE == 0x80, "type ';', base 0x80");
_Static_assert(_IOC_DIR(IOMMU_HWPT_ALLOC) == _IOC_NONE && _IOC_SIZE(IOMMU_HWPT_ALLOC) == 0, "_IO");

/* struct iommu_destroy */
SIZE_IS(iommu_destroy, 8);
AT(iommu_destroy, size, 0);
FIELD_SIZE(iommu_destroy, size, 4);
AT(iommu_destroy, id, 4);
FIELD_SIZE(iommu_destroy, id, 4);

/* struct iommu_ioas_alloc */
SIZE_IS(iommu_ioas_alloc, 12);
AT(iommu_ioas_alloc, size, 0);
FIELD_SIZE(iommu_ioas_alloc, size, 4);
AT(iommu_ioas_alloc, flags, 4);
FIELD_SIZE(iommu_ioas_alloc, flags, 4);
AT(iommu_ioas_alloc, out_ioas_id, 8);
FIELD_SIZE(iommu_ioas_alloc, out_ioas_id, 4);

/* struct iommu_iova_range */
SIZE_IS(iommu_iova_range, 16);
AT(iommu_iova_range, start, 0);
FIELD_SIZE(iommu_iova_range, start, 8);
AT(iommu_iova_range, last, 8);
FIELD_SIZE(iommu_iova_range, last, 8);

/* struct iommu_ioas_iova_ranges */
SIZE_IS(iommu_ioas_iova_ranges, 32);
AT(iommu_ioas_iova_ranges, size, 0);
FIELD_SIZE(iommu_ioas_iova_ranges, size, 4);
AT(iommu_ioas_iova_ranges, ioas_id, 4);
FIELD_SIZE(iommu_ioas_iova_ranges, ioas_id, 4);
AT(iommu_ioas_iova_ranges, num_iovas, 8);
FIELD_SIZE(iommu_ioas_iova_ranges, num_iovas, 4);
AT(iommu_ioas_iova_ranges, __reserved, 12);
FIELD_SIZE(iommu_ioas_iova_ranges, __reserved, 4);
AT(iommu_ioas_iova_ranges, allowed_iovas, 16);
FIELD_SIZE(iommu_ioas_iova_ranges, allowed_iovas, 8);
AT(iommu_ioas_iova_ranges, out_iova_alignment, 24);
FIELD_SIZE(iommu_ioas_iova_ranges, out_iova_alignment, 8);

/* struct iommu_ioas_allow_iovas */
SIZE_IS(iommu_ioas_allow_iovas, 24);
AT(iommu_ioas_allow_iovas, size, 0);
FIELD_SIZE(iommu_ioas_allow_iovas, size, 4);
AT(iommu_ioas_allow_iovas, ioas_id, 4);
FIELD_SIZE(iommu_ioas_allow_iovas, ioas_id, 4);
AT(iommu_ioas_allow_iovas, num_iovas, 8);
FIELD_SIZE(iommu_ioas_allow_iovas, num_iovas, 4);
AT(iommu_ioas_allow_iovas, __reserved, 12);
FIELD_SIZE(iommu_ioas_allow_iovas, __reserved, 4);
AT(iommu_ioas_allow_iovas, allowed_iovas, 16);
FIELD_SIZE(iommu_ioas_allow_iovas, allowed_iovas, 8);

/* struct iommu_ioas_map */
SIZE_IS(iommu_ioas_map, 40);
AT(iommu_ioas_map, size, 0);
FIELD_SIZE(iommu_ioas_map, size, 4);
AT(iommu_ioas_map, flags, 4);
FIELD_SIZE(iommu_ioas_map, flags, 4);
AT(iommu_ioas_map, ioas_id, 8);
FIELD_SIZE(iommu_ioas_map, ioas_id, 4);
AT(iommu_ioas_map, __reserved, 12);
FIELD_SIZE(iommu_ioas_map, __reserved, 4);
AT(iommu_ioas_map, user_va, 16);
FIELD_SIZE(iommu_ioas_map, user_va, 8);
AT(iommu_ioas_map, length, 24);
FIELD_SIZE(iommu_ioas_map, length, 8);
AT(iommu_ioas_map, iova, 32);
FIELD_SIZE(iommu_ioas_map, iova, 8);

/* struct iommu_ioas_copy */
SIZE_IS(iommu_ioas_copy, 40);
AT(iommu_ioas_copy, size, 0);
FIELD_SIZE(iommu_ioas_copy, size, 4);
AT(iommu_ioas_copy, flags, 4);
FIELD_SIZE(iommu_ioas_copy, flags, 4);
AT(iommu_ioas_copy, dst_ioas_id, 8);
FIELD_SIZE(iommu_ioas_copy, dst_ioas_id, 4);
AT(iommu_ioas_copy, src_ioas_id, 12);
FIELD_SIZE(iommu_ioas_copy, src_ioas_id, 4);
AT(iommu_ioas_copy, length, 16);
FIELD_SIZE(iommu_ioas_copy, length, 8);
AT(iommu_ioas_copy, dst_iova, 24);
FIELD_SIZE(iommu_ioas_copy, dst_iova, 8);
AT(iommu_ioas_copy, src_iova, 32);
FIELD_SIZE(iommu_ioas_copy, src_iova, 8);

/* struct iommu_ioas_unmap */
SIZE_IS(iommu_ioas_unmap, 24);
AT(iommu_ioas_unmap, size, 0);
FIELD_SIZE(iommu_ioas_unmap, size, 4);
AT(iommu_ioas_unmap, ioas_id, 4);
FIELD_SIZE(iommu_ioas_unmap, ioas_id, 4);
AT(iommu_ioas_unmap, iova, 8);
FIELD_SIZE(iommu_ioas_unmap, iova, 8);
AT(iommu_ioas_unmap, length, 16);
FIELD_SIZE(iommu_ioas_unmap, length, 8);

/* struct iommu_option */
SIZE_IS(iommu_option, 24);
AT(iommu_option, size, 0);
FIELD_SIZE(iommu_option, size, 4);
AT(iommu_option, option_id, 4);
FIELD_SIZE(iommu_option, option_id, 4);
AT(iommu_option, op, 8);
FIELD_SIZE(iommu_option, op, 2);
AT(iommu_option, __reserved, 10);
FIELD_SIZE(iommu_option, __reserved, 2);
AT(iommu_option, object_id, 12);
FIELD_SIZE(iommu_option, object_id, 4);
AT(iommu_option, val64, 16);
FIELD_SIZE(iommu_option, val64, 8);

/* struct iommu_vfio_ioas */
SIZE_IS(iommu_vfio_ioas, 12);
AT(iommu_vfio_ioas, size, 0);
FIELD_SIZE(iommu_vfio_ioas, size, 4);
AT(iommu_vfio_ioas, ioas_id, 4);
FIELD_SIZE(iommu_vfio_ioas, ioas_id, 4);
AT(iommu_vfio_ioas, op, 8);
FIELD_SIZE(iommu_vfio_ioas, op, 2);
AT(iommu_vfio_ioas, __reserved, 10);
FIELD_SIZE(iommu_vfio_ioas, __reserved, 2);

/* struct iommu_hwpt_alloc */
SIZE_IS(iommu_hwpt_alloc, 48);
AT(iommu_hwpt_alloc, size, 0);
FIELD_SIZE(iommu_hwpt_alloc, size, 4);
AT(iommu_hwpt_alloc, flags, 4);
FIELD_SIZE(iommu_hwpt_alloc, flags, 4);
AT(iommu_hwpt_alloc, dev_id, 8);
FIELD_SIZE(iommu_hwpt_alloc, dev_id, 4);
AT(iommu_hwpt_alloc, pt_id, 12);
FIELD_SIZE(iommu_hwpt_alloc, pt_id, 4);
AT(iommu_hwpt_alloc, out_hwpt_id, 16);
FIELD_SIZE(iommu_hwpt_alloc, out_hwpt_id, 4);
AT(iommu_hwpt_alloc, __reserved, 20);
FIELD_SIZE(iommu_hwpt_alloc, __reserved, 4);
AT(iommu_hwpt_alloc, data_type, 24);
FIELD_SIZE(iommu_hwpt_alloc, data_type, 4);
AT(iommu_hwpt_alloc, data_len, 28);
FIELD_SIZE(iommu_hwpt_alloc, data_len, 4);
AT(iommu_hwpt_alloc, data_uptr, 32);
FIELD_SIZE(iommu_hwpt_alloc, data_uptr, 8);
AT(iommu_hwpt_alloc, fault_id, 40);
FIELD_SIZE(iommu_hwpt_alloc, fault_id, 4);
AT(iommu_hwpt_alloc, __reserved2, 44);
FIELD_SIZE(iommu_hwpt_alloc, __reserved2, 4);

/* struct iommu_hw_info */
SIZE_IS(iommu_hw_info, 40);
AT(iommu_hw_info, size, 0);
FIELD_SIZE(iommu_hw_info, size, 4);
AT(iommu_hw_info, flags, 4);
FIELD_SIZE(iommu_hw_info, flags, 4);
AT(iommu_hw_info, dev_id, 8);
FIELD_SIZE(iommu_hw_info, dev_id, 4);
AT(iommu_hw_info, data_len, 12);
FIELD_SIZE(iommu_hw_info, data_len, 4);
AT(iommu_hw_info, data_uptr, 16);
FIELD_SIZE(iommu_hw_info, data_uptr, 8);
AT(iommu_hw_info, in_data_type, 24);
FIELD_SIZE(iommu_hw_info, in_data_type, 4);
AT(iommu_hw_info, out_data_type, 24);
FIELD_SIZE(iommu_hw_info, out_data_type, 4);
AT(iommu_hw_info, out_max_pasid_log2, 28);
FIELD_SIZE(iommu_hw_info, out_max_pasid_log2, 1);
AT(iommu_hw_info, __reserved, 29);
FIELD_SIZE(iommu_hw_info, __reserved, 3);
AT(iommu_hw_info, out_capabilities, 32);
FIELD_SIZE(iommu_hw_info, out_capabilities, 8);

/* struct iommu_hwpt_set_dirty_tracking */
SIZE_IS(iommu_hwpt_set_dirty_tracking, 16);
AT(iommu_hwpt_set_dirty_tracking, size, 0);
FIELD_SIZE(iommu_hwpt_set_dirty_tracking, size, 4);
AT(iommu_hwpt_set_dirty_tracking, flags, 4);
FIELD_SIZE(iommu_hwpt_set_dirty_tracking, flags, 4);
AT(iommu_hwpt_set_dirty_tracking, hwpt_id, 8);
FIELD_SIZE(iommu_hwpt_set_dirty_tracking, hwpt_id, 4);
AT(iommu_hwpt_set_dirty_tracking, __reserved, 12);
FIELD_SIZE(iommu_hwpt_set_dirty_tracking, __reserved, 4);

/* struct iommu_hwpt_get_dirty_bitmap */
SIZE_IS(iommu_hwpt_get_dirty_bitmap, 48);
AT(iommu_hwpt_get_dirty_bitmap, size, 0);
FIELD_SIZE(iommu_hwpt_get_dirty_bitmap, size, 4);
AT(iommu_hwpt_get_dirty_bitmap, hwpt_id, 4);
FIELD_SIZE(iommu_hwpt_get_dirty_bitmap, hwpt_id, 4);
AT(iommu_hwpt_get_dirty_bitmap, flags, 8);
FIELD_SIZE(iommu_hwpt_get_dirty_bitmap, flags, 4);
AT(iommu_hwpt_get_dirty_bitmap, __reserved, 12);
FIELD_SIZE(iommu_hwpt_get_dirty_bitmap, __reserved, 4);
AT(iommu_hwpt_get_dirty_bitmap, iova, 16);
FIELD_SIZE(iommu_hwpt_get_dirty_bitmap, iova, 8);
AT(iommu_hwpt_get_dirty_bitmap, length, 24);
FIELD_SIZE(iommu_hwpt_get_dirty_bitmap, length, 8);
AT(iommu_hwpt_get_dirty_bitmap, page_size, 32);
FIELD_SIZE(iommu_hwpt_get_dirty_bitmap, page_size, 8);
AT(iommu_hwpt_get_dirty_bitmap, data, 40);
FIELD_SIZE(iommu_hwpt_get_dirty_bitmap, data, 8);

/* struct iommu_hwpt_invalidate */
SIZE_IS(iommu_hwpt_invalidate, 32);
AT(iommu_hwpt_invalidate, size, 0);
FIELD_SIZE(iommu_hwpt_invalidate, size, 4);
AT(iommu_hwpt_invalidate, hwpt_id, 4);
FIELD_SIZE(iommu_hwpt_invalidate, hwpt_id, 4);
AT(iommu_hwpt_invalidate, data_uptr, 8);
FIELD_SIZE(iommu_hwpt_invalidate, data_uptr, 8);
AT(iommu_hwpt_invalidate, data_type, 16);
FIELD_SIZE(iommu_hwpt_invalidate, data_type, 4);
AT(iommu_hwpt_invalidate, entry_len, 20);
FIELD_SIZE(iommu_hwpt_invalidate, entry_len, 4);
AT(iommu_hwpt_invalidate, entry_num, 24);
FIELD_SIZE(iommu_hwpt_invalidate, entry_num, 4);
AT(iommu_hwpt_invalidate, __reserved, 28);
FIELD_SIZE(iommu_hwpt_invalidate, __reserved, 4);

/* struct iommu_hwpt_pgfault */
SIZE_IS(iommu_hwpt_pgfault, 40);
AT(iommu_hwpt_pgfault, flags, 0);
FIELD_SIZE(iommu_hwpt_pgfault, flags, 4);
AT(iommu_hwpt_pgfault, dev_id, 4);
FIELD_SIZE(iommu_hwpt_pgfault, dev_id, 4);
AT(iommu_hwpt_pgfault, pasid, 8);
FIELD_SIZE(iommu_hwpt_pgfault, pasid, 4);
AT(iommu_hwpt_pgfault, grpid, 12);
FIELD_SIZE(iommu_hwpt_pgfault, grpid, 4);
AT(iommu_hwpt_pgfault, perm, 16);
FIELD_SIZE(iommu_hwpt_pgfault, perm, 4);
AT(iommu_hwpt_pgfault, __reserved, 20);
FIELD_SIZE(iommu_hwpt_pgfault, __reserved, 4);
AT(iommu_hwpt_pgfault, addr, 24);
FIELD_SIZE(iommu_hwpt_pgfault, addr, 8);
AT(iommu_hwpt_pgfault, length, 32);
FIELD_SIZE(iommu_hwpt_pgfault, length, 4);
AT(iommu_hwpt_pgfault, cookie, 36);
FIELD_SIZE(iommu_hwpt_pgfault, cookie, 4);

/* struct iommu_hwpt_page_response */
SIZE_IS(iommu_hwpt_page_response, 8);
AT(iommu_hwpt_page_response, cookie, 0);
FIELD_SIZE(iommu_hwpt_page_response, cookie, 4);
AT(iommu_hwpt_page_response, code, 4);
FIELD_SIZE(iommu_hwpt_page_response, code, 4);

/* struct iommu_fault_alloc */
SIZE_IS(iommu_fault_alloc, 16);
AT(iommu_fault_alloc, size, 0);
FIELD_SIZE(iommu_fault_alloc, size, 4);
AT(iommu_fault_alloc, flags, 4);
FIELD_SIZE(iommu_fault_alloc, flags, 4);
AT(iommu_fault_alloc, out_fault_id, 8);
FIELD_SIZE(iommu_fault_alloc, out_fault_id, 4);
AT(iommu_fault_alloc, out_fault_fd, 12);
FIELD_SIZE(iommu_fault_alloc, out_fault_fd, 4);

/* struct iommu_test_hw_info */
SIZE_IS(iommu_test_hw_info, 8);
AT(iommu_test_hw_info, flags, 0);
FIELD_SIZE(iommu_test_hw_info, flags, 4);
AT(iommu_test_hw_info, test_reg, 4);
FIELD_SIZE(iommu_test_hw_info, test_reg, 4);

/* struct iommu_hwpt_selftest */
SIZE_IS(iommu_hwpt_selftest, 4);
AT(iommu_hwpt_selftest, iotlb, 0);
FIELD_SIZE(iommu_hwpt_selftest, iotlb, 4);

/* struct iommu_hwpt_invalidate_selftest */
SIZE_IS(iommu_hwpt_invalidate_selftest, 8);
AT(iommu_hwpt_invalidate_selftest, flags, 0);
FIELD_SIZE(iommu_hwpt_invalidate_selftest, flags, 4);
AT(iommu_hwpt_invalidate_selftest, iotlb_id, 4);
FIELD_SIZE(iommu_hwpt_invalidate_selftest, iotlb_id, 4);

/* struct iommu_test_cmd */
SIZE_IS(iommu_test_cmd, 72);
AT(iommu_test_cmd, size, 0);
FIELD_SIZE(iommu_test_cmd, size, 4);
AT(iommu_test_cmd, op, 4);
FIELD_SIZE(iommu_test_cmd, op, 4);
AT(iommu_test_cmd, id, 8);
FIELD_SIZE(iommu_test_cmd, id, 4);
AT(iommu_test_cmd, __reserved, 12);
FIELD_SIZE(iommu_test_cmd, __reserved, 4);
AT(iommu_test_cmd, last, 64);
FIELD_SIZE(iommu_test_cmd, last, 4);
AT(iommu_test_cmd, add_reserved.start, 16);
FIELD_SIZE(iommu_test_cmd, add_reserved.start, 8);
AT(iommu_test_cmd, add_reserved.length, 24);
FIELD_SIZE(iommu_test_cmd, add_reserved.length, 8);
AT(iommu_test_cmd, mock_domain.out_stdev_id, 16);
FIELD_SIZE(iommu_test_cmd, mock_domain.out_stdev_id, 4);
AT(iommu_test_cmd, mock_domain.out_hwpt_id, 20);
FIELD_SIZE(iommu_test_cmd, mock_domain.out_hwpt_id, 4);
AT(iommu_test_cmd, mock_domain.out_idev_id, 24);
FIELD_SIZE(iommu_test_cmd, mock_domain.out_idev_id, 4);
AT(iommu_test_cmd, mock_domain_flags.out_stdev_id, 16);
FIELD_SIZE(iommu_test_cmd, mock_domain_flags.out_stdev_id, 4);
AT(iommu_test_cmd, mock_domain_flags.out_hwpt_id, 20);
FIELD_SIZE(iommu_test_cmd, mock_domain_flags.out_hwpt_id, 4);
AT(iommu_test_cmd, mock_domain_flags.out_idev_id, 24);
FIELD_SIZE(iommu_test_cmd, mock_domain_flags.out_idev_id, 4);
AT(iommu_test_cmd, mock_domain_flags.dev_flags, 28);
FIELD_SIZE(iommu_test_cmd, mock_domain_flags.dev_flags, 4);
AT(iommu_test_cmd, mock_domain_replace.pt_id, 16);
FIELD_SIZE(iommu_test_cmd, mock_domain_replace.pt_id, 4);
AT(iommu_test_cmd, check_map.iova, 16);
FIELD_SIZE(iommu_test_cmd, check_map.iova, 8);
AT(iommu_test_cmd, check_map.length, 24);
FIELD_SIZE(iommu_test_cmd, check_map.length, 8);
AT(iommu_test_cmd, check_map.uptr, 32);
FIELD_SIZE(iommu_test_cmd, check_map.uptr, 8);
AT(iommu_test_cmd, check_refs.length, 16);
FIELD_SIZE(iommu_test_cmd, check_refs.length, 8);
AT(iommu_test_cmd, check_refs.uptr, 24);
FIELD_SIZE(iommu_test_cmd, check_refs.uptr, 8);
AT(iommu_test_cmd, check_refs.refs, 32);
FIELD_SIZE(iommu_test_cmd, check_refs.refs, 4);
AT(iommu_test_cmd, create_access.out_access_fd, 16);
FIELD_SIZE(iommu_test_cmd, create_access.out_access_fd, 4);
AT(iommu_test_cmd, create_access.flags, 20);
FIELD_SIZE(iommu_test_cmd, create_access.flags, 4);
AT(iommu_test_cmd, destroy_access_pages.access_pages_id, 16);
FIELD_SIZE(iommu_test_cmd, destroy_access_pages.access_pages_id, 4);
AT(iommu_test_cmd, access_pages.flags, 16);
FIELD_SIZE(iommu_test_cmd, access_pages.flags, 4);
AT(iommu_test_cmd, access_pages.out_access_pages_id, 20);
FIELD_SIZE(iommu_test_cmd, access_pages.out_access_pages_id, 4);
AT(iommu_test_cmd, access_pages.iova, 24);
FIELD_SIZE(iommu_test_cmd, access_pages.iova, 8);
AT(iommu_test_cmd, access_pages.length, 32);
FIELD_SIZE(iommu_test_cmd, access_pages.length, 8);
AT(iommu_test_cmd, access_pages.uptr, 40);
FIELD_SIZE(iommu_test_cmd, access_pages.uptr, 8);
AT(iommu_test_cmd, access_rw.iova, 16);
FIELD_SIZE(iommu_test_cmd, access_rw.iova, 8);
AT(iommu_test_cmd, access_rw.length, 24);
FIELD_SIZE(iommu_test_cmd, access_rw.length, 8);
AT(iommu_test_cmd, access_rw.uptr, 32);
FIELD_SIZE(iommu_test_cmd, access_rw.uptr, 8);
AT(iommu_test_cmd, access_rw.flags, 40);
FIELD_SIZE(iommu_test_cmd, access_rw.flags, 4);
AT(iommu_test_cmd, memory_limit.limit, 16);
FIELD_SIZE(iommu_test_cmd, memory_limit.limit, 4);
AT(iommu_test_cmd, access_replace_ioas.ioas_id, 16);
FIELD_SIZE(iommu_test_cmd, access_replace_ioas.ioas_id, 4);
AT(iommu_test_cmd, dirty.flags, 16);
FIELD_SIZE(iommu_test_cmd, dirty.flags, 4);
AT(iommu_test_cmd, dirty.iova, 24);
FIELD_SIZE(iommu_test_cmd, dirty.iova, 8);
AT(iommu_test_cmd, dirty.length, 32);
FIELD_SIZE(iommu_test_cmd, dirty.length, 8);
AT(iommu_test_cmd, dirty.page_size, 40);
FIELD_SIZE(iommu_test_cmd, dirty.page_size, 8);
AT(iommu_test_cmd, dirty.uptr, 48);
FIELD_SIZE(iommu_test_cmd, dirty.uptr, 8);
AT(iommu_test_cmd, dirty.out_nr_dirty, 56);
FIELD_SIZE(iommu_test_cmd, dirty.out_nr_dirty, 8);
AT(iommu_test_cmd, check_iotlb.id, 16);
FIELD_SIZE(iommu_test_cmd, check_iotlb.id, 4);
AT(iommu_test_cmd, check_iotlb.iotlb, 20);
FIELD_SIZE(iommu_test_cmd, check_iotlb.iotlb, 4);
AT(iommu_test_cmd, trigger_iopf.dev_id, 16);
FIELD_SIZE(iommu_test_cmd, trigger_iopf.dev_id, 4);
AT(iommu_test_cmd, trigger_iopf.pasid, 20);
FIELD_SIZE(iommu_test_cmd, trigger_iopf.pasid, 4);
AT(iommu_test_cmd, trigger_iopf.grpid, 24);
FIELD_SIZE(iommu_test_cmd, trigger_iopf.grpid, 4);
AT(iommu_test_cmd, trigger_iopf.perm, 28);
FIELD_SIZE(iommu_test_cmd, trigger_iopf.perm, 4);
AT(iommu_test_cmd, trigger_iopf.addr, 32);
FIELD_SIZE(iommu_test_cmd, trigger_iopf.addr, 8);

/* Constants the selftest relies on (values from the research notes, §6). */
#define VALUE_IS(name, value) _Static_assert((name) == (value), #name " must be " #value)
VALUE_IS(IOMMUFD_CMD_DESTROY, 0x80);
VALUE_IS(IOMMUFD_CMD_FAULT_QUEUE_ALLOC, 0x8e);
VALUE_IS(IOMMU_IOAS_MAP_FIXED_IOVA, 1);
VALUE_IS(IOMMU_IOAS_MAP_WRITEABLE, 2);
VALUE_IS(IOMMU_IOAS_MAP_READABLE, 4);
VALUE_IS(IOMMU_OPTION_RLIMIT_MODE, 0);
VALUE_IS(IOMMU_OPTION_HUGE_PAGES, 1);
VALUE_IS(IOMMU_OPTION_OP_SET, 0);
VALUE_IS(IOMMU_OPTION_OP_GET, 1);
VALUE_IS(IOMMU_VFIO_IOAS_GET, 0);
VALUE_IS(IOMMU_VFIO_IOAS_SET, 1);
VALUE_IS(IOMMU_VFIO_IOAS_CLEAR, 2);
VALUE_IS(IOMMU_HWPT_ALLOC_NEST_PARENT, 1);
VALUE_IS(IOMMU_HWPT_ALLOC_DIRTY_TRACKING, 2);
VALUE_IS(IOMMU_HWPT_FAULT_ID_VALID, 4);
VALUE_IS(IOMMU_HWPT_DATA_NONE, 0);
VALUE_IS(IOMMU_HWPT_DATA_VTD_S1, 1);
VALUE_IS(IOMMU_HW_INFO_TYPE_NONE, 0);
VALUE_IS(IOMMU_HW_INFO_TYPE_DEFAULT, 0);
VALUE_IS(IOMMU_HW_INFO_TYPE_INTEL_VTD, 1);
VALUE_IS(IOMMU_HW_INFO_FLAG_INPUT_TYPE, 1);
VALUE_IS(IOMMU_HW_CAP_DIRTY_TRACKING, 1);
VALUE_IS(IOMMU_HW_CAP_PCI_PASID_EXEC, 2);
VALUE_IS(IOMMU_HW_CAP_PCI_PASID_PRIV, 4);
VALUE_IS(IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 1);
VALUE_IS(IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, 1);
VALUE_IS(IOMMU_HWPT_INVALIDATE_DATA_VTD_S1, 0);
VALUE_IS(IOMMU_PGFAULT_FLAGS_PASID_VALID, 1);
VALUE_IS(IOMMU_PGFAULT_FLAGS_LAST_PAGE, 2);
VALUE_IS(IOMMU_PGFAULT_PERM_READ, 1);
VALUE_IS(IOMMU_PGFAULT_PERM_WRITE, 2);
VALUE_IS(IOMMU_PGFAULT_PERM_EXEC, 4);
VALUE_IS(IOMMU_PGFAULT_PERM_PRIV, 8);
VALUE_IS(IOMMUFD_PAGE_RESP_SUCCESS, 0);
VALUE_IS(IOMMUFD_PAGE_RESP_INVALID, 1);

/* The mock driver's constants. */
VALUE_IS(IOMMU_TEST_OP_ADD_RESERVED, 1);
VALUE_IS(IOMMU_TEST_OP_MOCK_DOMAIN, 2);
VALUE_IS(IOMMU_TEST_OP_MD_CHECK_MAP, 3);
VALUE_IS(IOMMU_TEST_OP_MD_CHECK_REFS, 4);
VALUE_IS(IOMMU_TEST_OP_CREATE_ACCESS, 5);
VALUE_IS(IOMMU_TEST_OP_DESTROY_ACCESS_PAGES, 6);
VALUE_IS(IOMMU_TEST_OP_ACCESS_PAGES, 7);
VALUE_IS(IOMMU_TEST_OP_ACCESS_RW, 8);
VALUE_IS(IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT, 9);
VALUE_IS(IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, 10);
VALUE_IS(IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, 11);
VALUE_IS(IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, 12);
VALUE_IS(IOMMU_TEST_OP_DIRTY, 13);
VALUE_IS(IOMMU_TEST_OP_MD_CHECK_IOTLB, 14);
VALUE_IS(IOMMU_TEST_OP_TRIGGER_IOPF, 15);
VALUE_IS(MOCK_APERTURE_START, 0x1000000);
VALUE_IS(MOCK_APERTURE_LAST, 0x7fffffff);
VALUE_IS(MOCK_FLAGS_ACCESS_WRITE, 1);
VALUE_IS(MOCK_FLAGS_ACCESS_SYZ, 1 << 16);
VALUE_IS(MOCK_ACCESS_RW_WRITE, 1);
VALUE_IS(MOCK_ACCESS_RW_SLOW_PATH, 4);
VALUE_IS(MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES, 1);
VALUE_IS(MOCK_FLAGS_DEVICE_NO_DIRTY, 1);
VALUE_IS(MOCK_FLAGS_DEVICE_HUGE_IOVA, 2);
VALUE_IS(MOCK_FLAGS_DEVICE_PASID, 4);
VALUE_IS(MOCK_NESTED_DOMAIN_IOTLB_ID_MAX, 3);
VALUE_IS(MOCK_NESTED_DOMAIN_IOTLB_NUM, 4);
VALUE_IS(MOCK_PASID_WIDTH, 20);
VALUE_IS(IOMMU_HW_INFO_TYPE_SELFTEST, 0xfeedbeef);
VALUE_IS(IOMMU_HW_INFO_SELFTEST_REGVAL, 0xdeadbeef);
VALUE_IS(IOMMU_HWPT_DATA_SELFTEST, 0xdead);
VALUE_IS(IOMMU_TEST_IOTLB_DEFAULT, 0xbadbeef);
VALUE_IS(IOMMU_HWPT_INVALIDATE_DATA_SELFTEST, 0xdeadbeef);
VALUE_IS(IOMMU_HWPT_INVALIDATE_DATA_SELFTEST_INVALID, 0xdadbeef);
VALUE_IS(IOMMU_TEST_INVALIDATE_FLAG_ALL, 1);

/* The union of iommu_test_cmd spans [16, 64). */
_Static_assert(offsetof(struct iommu_test_cmd, last) - 16 == 48, "test cmd union is 48 bytes");

int main(void) { return 0; }

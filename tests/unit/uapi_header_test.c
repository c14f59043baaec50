/* SPDX-License-Identifier: MIT */
/* The uAPI header compiles as strict C11 and every struct has the exact size of UAPI.md. */
#include <linux/ioasid.h>

#include <stddef.h>

#define SIZE_IS(type, n) _Static_assert(sizeof(struct type) == (n), #type " must be " #n " bytes")
SIZE_IS(ioasid_info, 56);
SIZE_IS(ioasid_pasid_request, 24);
SIZE_IS(ioasid_pasid_lookup, 16);
SIZE_IS(ioasid_alloc, 16);
SIZE_IS(ioasid_free, 8);
SIZE_IS(ioasid_map_dma, 32);
SIZE_IS(ioasid_map_file, 40);
SIZE_IS(ioasid_unmap_dma, 24);
SIZE_IS(ioasid_iova_range, 16);
SIZE_IS(ioasid_iova_ranges, 24);
SIZE_IS(ioasid_bind_pgtbl, 40);
SIZE_IS(ioasid_unbind_pgtbl, 8);
SIZE_IS(ioasid_cache_invalidate, 24);
SIZE_IS(ioasid_cache_invalidate_info, 32);
SIZE_IS(ioasid_device_bind, 40);
SIZE_IS(ioasid_device_unbind, 8);
SIZE_IS(ioasid_device_info, 56);
SIZE_IS(ioasid_attach, 16);
SIZE_IS(ioasid_page_response, 24);
SIZE_IS(ioasid_dirty_tracking, 8);
SIZE_IS(ioasid_dirty_bitmap, 40);
SIZE_IS(ioasid_device_dma, 56);
SIZE_IS(ioasid_wq_config, 32);
SIZE_IS(ioasid_device_submit, 80);
SIZE_IS(ioasid_fault, 64);
SIZE_IS(ioasid_ats_run, 32);
SIZE_IS(ioasid_ats_translate, 64);
SIZE_IS(ioasid_ats_invalidation, 64);
SIZE_IS(ioasid_ats_ack, 16);
SIZE_IS(ioasid_dsa_desc, 64);
SIZE_IS(ioasid_dsa_completion, 32);

/* Ioctl numbers: type 'i', base 100, both directions for every struct command. */
_Static_assert(_IOC_TYPE(IOASID_GET_API_VERSION) == 'i', "type");
_Static_assert(_IOC_NR(IOASID_GET_API_VERSION) == 100, "base");
_Static_assert(_IOC_DIR(IOASID_CHECK_EXTENSION) == _IOC_NONE, "_IO");
_Static_assert(_IOC_NR(IOASID_ATS_INV_ACK) == 128, "last");
_Static_assert(_IOC_DIR(IOASID_GET_INFO) == (_IOC_READ | _IOC_WRITE), "_IOWR");
_Static_assert(_IOC_SIZE(IOASID_DEVICE_SUBMIT) == 80, "size");
_Static_assert(offsetof(struct ioasid_info, pgsize_bitmap) == 24, "natural alignment");
_Static_assert(offsetof(struct ioasid_fault, addr) == 32, "natural alignment");
_Static_assert(offsetof(struct ioasid_fault, gpa) == 48, "gpa took __reserved[0]");
/* An ATS invalidation is read in a fault record slot: the type where a fault has its own. */
_Static_assert(offsetof(struct ioasid_ats_invalidation, type) == offsetof(struct ioasid_fault, type), "type");
_Static_assert(offsetof(struct ioasid_ats_invalidation, iova) == 24, "natural alignment");
/* The DSA layout: where the device finds each field. */
_Static_assert(offsetof(struct ioasid_dsa_desc, completion_addr) == 8, "dsa layout");
_Static_assert(offsetof(struct ioasid_dsa_desc, xfer_size) == 32, "dsa layout");
_Static_assert(offsetof(struct ioasid_dsa_desc, crc_seed) == 40, "dsa layout");
_Static_assert(offsetof(struct ioasid_dsa_completion, fault_addr) == 8, "dsa layout");
_Static_assert(offsetof(struct ioasid_dsa_completion, crc_val) == 16, "dsa layout");

int main(void) { return 0; }

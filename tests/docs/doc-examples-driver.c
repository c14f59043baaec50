/* SPDX-License-Identifier: MIT */
/*
 * Calls the example functions of docs/UAPI-REFERENCE.md against a live daemon and
 * checks what the reference says they do. Linked with the reference's non-main C
 * blocks by tests/docs/run-doc-examples.sh; the node is $IOASID_DEV.
 *
 * Parts that need what this daemon may not serve yet (work queues: IOASID_FEAT_SIOV,
 * and the dsa0 device) are checked for the answer the reference gives in that case.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/ioasid.h>

/* The reference's functions. */
struct ioasid_info_v2 {
	struct ioasid_info v1;
	__u64 newer_field;
};
int get_info_v2(int fd, struct ioasid_info_v2 *info);
int ioasid_has(int fd, unsigned index);
int print_info(int fd);
__u32 pasid_alloc(int fd, __u32 pasid_bits, __u32 gpasid);
int pasid_free_all(int fd, __u32 pasid_bits);
__u32 pasid_of_gpasid(int fd, __u32 gpasid);
__u32 ioas_alloc(int fd, __u32 parent);
int ioas_free(int fd, __u32 ioasid);
__u64 map_buffer(int fd, __u32 ioasid, void *buf, __u64 length, __u64 iova);
int map_guest_ram(int fd, __u32 ioasid, __u64 size, __u64 gpa_base);
long long unmap_range(int fd, __u32 ioasid, __u64 iova, __u64 length);
int print_iova_ranges(int fd, __u32 ioasid);
int bind_guest_table(int fd, __u32 nested, __u64 root);
int unbind_guest_table(int fd, __u32 nested);
int invalidate_guest_range(int fd, __u32 nested, __u32 gpasid, __u64 gva, __u64 pages);
__u32 device_bind(int fd, const char *name);
int device_unbind(int fd, __u32 dev_id);
int print_device(int fd, __u32 dev_id);
int attach_rid(int fd, __u32 dev_id, __u32 ioasid, int replace);
int attach_pasid(int fd, __u32 dev_id, __u32 ioasid, __u32 pasid, int replace);
int detach_rid(int fd, __u32 dev_id);
int detach_pasid(int fd, __u32 dev_id, __u32 pasid);
int page_respond(int fd, const struct ioasid_fault *rec, __u32 code);
int set_dirty_tracking(int fd, __u32 ioasid, int enable);
long count_dirty_pages(int fd, __u32 ioasid, __u64 iova, __u64 length);
int dma_write(int fd, __u32 dev_id, __u32 pasid, __u64 iova, const void *buf, __u64 len);
int wq_enable(int fd, __u32 dev_id, __u32 wq, __u32 pasid, __u32 size);
int wq_disable(int fd, __u32 dev_id, __u32 wq);
int dsa_submit(int fd, __u32 dev_id, __u32 wq, const struct ioasid_dsa_desc *desc, int tries);
int drain_faults(int fd, int timeout_ms);
struct ioasid_dsa_desc dsa_crc_desc(__u32 pasid, __u64 src, __u32 len, __u64 comp);
int dsa_crc_result(const volatile struct ioasid_dsa_completion *rec, __u32 *crc);

static int failures;

static __u64 size_2m(void) { return 2u << 20; }

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "driver:%d: CHECK failed: %s (errno %d %s)\n", \
				__LINE__, #cond, errno, strerror(errno));             \
			failures++;                                                   \
		}                                                                     \
	} while (0)

/* The ioctl fails with `expected`. */
#define EXPECT_ERRNO(call, expected)                                                     \
	do {                                                                             \
		errno = 0;                                                               \
		long rc_ = (long)(call);                                                 \
		int err_ = errno;                                                        \
		if (err_ != (expected)) {                                                \
			fprintf(stderr, "driver:%d: %s: rc %ld errno %d (%s), expected %s\n", \
				__LINE__, #call, rc_, err_, strerror(err_), #expected);      \
			failures++;                                                      \
		}                                                                        \
	} while (0)

static int open_node(void)
{
	const char *path = getenv("IOASID_DEV") ? getenv("IOASID_DEV") : "/dev/ioasid";
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		perror(path);
		exit(2);
	}
	return fd;
}

/* Reads one record, waiting up to a second. */
static int read_record(int fd, struct ioasid_fault *rec)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	if (poll(&pfd, 1, 1000) != 1 || !(pfd.revents & POLLIN))
		return -1;
	return read(fd, rec, sizeof(*rec)) == (ssize_t)sizeof(*rec) ? 0 : -1;
}

static void generic_rules(int fd)
{
	struct ioasid_info_v2 v2;
	CHECK(get_info_v2(fd, &v2) == 0 && v2.v1.api_version == IOASID_API_VERSION);

	/* A non-zero tail: E2BIG. */
	memset(&v2, 0, sizeof(v2));
	v2.newer_field = 1;
	EXPECT_ERRNO(ioctl(fd, _IOWR(IOASID_TYPE, IOASID_BASE + 2, struct ioasid_info_v2), &v2), E2BIG);
	/* Below the v1 size: EINVAL. */
	__u64 small = 0;
	EXPECT_ERRNO(ioctl(fd, _IOC(_IOC_READ | _IOC_WRITE, IOASID_TYPE, IOASID_BASE + 2, sizeof(small)), &small),
		     EINVAL);
	/* Wrong direction, unknown number: ENOTTY. */
	struct ioasid_info info = {0};
	EXPECT_ERRNO(ioctl(fd, _IOR(IOASID_TYPE, IOASID_BASE + 2, struct ioasid_info), &info), ENOTTY);
	EXPECT_ERRNO(ioctl(fd, _IOWR(IOASID_TYPE, IOASID_BASE + 27, struct ioasid_info), &info), ENOTTY);
	/* GET_INFO flags: EOPNOTSUPP. */
	info.flags = 1;
	EXPECT_ERRNO(ioctl(fd, IOASID_GET_INFO, &info), EOPNOTSUPP);

	CHECK(ioctl(fd, IOASID_GET_API_VERSION) == IOASID_API_VERSION);
	CHECK(ioasid_has(fd, IOASID_FEAT_PASID) == 1);
	CHECK(ioasid_has(fd, IOASID_FEAT_MAP_FILE) == 1);
	CHECK(ioasid_has(fd, 9) == 0);
	CHECK(ioasid_has(fd, 1000) == 0);
	CHECK(print_info(fd) == 0);
}

/* Waits for a completion record's status; 0 when none came within 2 s. */
static unsigned wait_record(const volatile struct ioasid_dsa_completion *rec)
{
	for (int i = 0; rec->status == 0 && i < 2000; i++)
		usleep(1000);
	return rec->status;
}

/* A descriptor submitted to `wq`; returns 0 or the errno of the ioctl. */
static int submit(int fd, __u32 dev_id, __u32 wq, __u32 flags, const struct ioasid_dsa_desc *desc,
		  __u32 *status)
{
	struct ioasid_device_submit sub = { .dev_id = dev_id, .wq = wq, .flags = flags };
	memcpy(sub.desc, desc, sizeof(*desc));
	if (ioctl(fd, IOASID_DEVICE_SUBMIT, &sub) < 0)
		return errno;
	*status = sub.out_status;
	return 0;
}

/*
 * WQ_CONFIG and DEVICE_SUBMIT as the reference describes them. `buf` is mapped at
 * `iova` (2 MiB) and `pasid` (guest PASID 5) is attached to dsa0 in `ioas`.
 */
static void dsa_checks(int fd, __u32 dsa0, __u32 ioas, __u32 pasid, char *buf, __u64 iova)
{
	struct ioasid_device_info dev = { .dev_id = dsa0 };
	CHECK(ioctl(fd, IOASID_DEVICE_GET_INFO, &dev) == 0 && dev.type == IOASID_DEVICE_TYPE_DSA &&
	      (dev.flags & IOASID_DEVICE_SIOV) && dev.num_wqs == 8);
	__u32 status = 0;
	struct ioasid_dsa_desc noop = { .pasid = pasid, .opflags = IOASID_DSA_OPFLAGS(IOASID_DSA_OPCODE_NOOP, 0) };

	/* WQ_CONFIG argument rules. */
	struct ioasid_wq_config cfg = { .dev_id = dsa0, .wq = 8, .flags = IOASID_WQ_ENABLE | IOASID_WQ_SHARED,
					.size = 4, .priority = 1 };
	EXPECT_ERRNO(ioctl(fd, IOASID_WQ_CONFIG, &cfg), EINVAL);
	cfg.wq = 1;
	cfg.size = 129;
	EXPECT_ERRNO(ioctl(fd, IOASID_WQ_CONFIG, &cfg), EINVAL);
	cfg.size = 4;
	cfg.priority = 16;
	EXPECT_ERRNO(ioctl(fd, IOASID_WQ_CONFIG, &cfg), EINVAL);
	cfg.priority = 1;
	cfg.pasid = pasid;
	EXPECT_ERRNO(ioctl(fd, IOASID_WQ_CONFIG, &cfg), EINVAL); /* SHARED with a pasid */
	cfg.flags = IOASID_WQ_ENABLE;
	cfg.pasid = pasid + 100;
	EXPECT_ERRNO(ioctl(fd, IOASID_WQ_CONFIG, &cfg), ENOENT); /* dedicated, unallocated */
	cfg.flags = 1u << 5;
	EXPECT_ERRNO(ioctl(fd, IOASID_WQ_CONFIG, &cfg), EOPNOTSUPP);
	struct ioasid_wq_config off = { .dev_id = dsa0, .wq = 1, .size = 4 };
	EXPECT_ERRNO(ioctl(fd, IOASID_WQ_CONFIG, &off), EINVAL);
	off.size = 0;
	CHECK(ioctl(fd, IOASID_WQ_CONFIG, &off) == 0); /* disabling a disabled WQ */
	CHECK(submit(fd, dsa0, 1, 0, &noop, &status) == EINVAL); /* not enabled */
	CHECK(submit(fd, dsa0, 8, 0, &noop, &status) == EINVAL); /* out of range */

	/* A shared WQ 0: PASID rules, GPASID, CRAV alignment, records. */
	CHECK(wq_enable(fd, dsa0, 0, 0, 16) == 0);
	CHECK(wq_enable(fd, dsa0, 0, 0, 16) == -1 && errno == EBUSY);
	struct ioasid_dsa_desc d = noop;
	d.pasid = pasid + 100;
	CHECK(submit(fd, dsa0, 0, 0, &d, &status) == ENOENT);
	d.pasid = 6; /* no such guest PASID */
	CHECK(submit(fd, dsa0, 0, IOASID_SUBMIT_GPASID, &d, &status) == ENOENT);
	d = noop;
	d.opflags = IOASID_DSA_OPFLAGS(IOASID_DSA_OPCODE_NOOP, IOASID_DSA_FLAG_CRAV);
	d.completion_addr = iova + 16;
	CHECK(submit(fd, dsa0, 0, 0, &d, &status) == EINVAL);

	/* CRC-32C through the guest PASID 5 (GPASID), record at +32 KiB. */
	volatile struct ioasid_dsa_completion *rec = (void *)(buf + (32u << 10));
	memset(buf + (32u << 10), 0, 4096);
	memcpy(buf + (16u << 10), "123456789", 9);
	d = dsa_crc_desc(5, iova + (16u << 10), 9, iova + (32u << 10));
	CHECK(submit(fd, dsa0, 0, IOASID_SUBMIT_GPASID, &d, &status) == 0 && status == IOASID_SUBMIT_ACCEPTED);
	__u32 crc = 0;
	CHECK(wait_record(rec) != 0 && dsa_crc_result(rec, &crc) == 0 && crc == 0xe3069283u);

	/* No RCR: a successful descriptor writes no record, a failed one does. */
	memset(buf + (32u << 10), 0, 4096);
	d = (struct ioasid_dsa_desc){ .pasid = pasid,
				      .opflags = IOASID_DSA_OPFLAGS(IOASID_DSA_OPCODE_MEMMOVE, IOASID_DSA_FLAG_CRAV),
				      .completion_addr = iova + (32u << 10), .src = iova, .dst = iova + 4096,
				      .xfer_size = 64 };
	CHECK(submit(fd, dsa0, 0, 0, &d, &status) == 0);
	d.xfer_size = 0;
	d.completion_addr = iova + (32u << 10) + 32;
	CHECK(submit(fd, dsa0, 0, 0, &d, &status) == 0);
	const volatile struct ioasid_dsa_completion *second = rec + 1;
	CHECK(wait_record(second) == IOASID_DSA_COMP_XFER_ERANGE);
	CHECK(rec->status == 0);

	/* A destination fault without block-on-fault: PAGE_FAULT_NOBOF with the write bit. */
	d.xfer_size = 8192;
	d.dst = iova + size_2m() - 4096; /* the second page is past the mapping */
	d.completion_addr = iova + (32u << 10) + 64;
	CHECK(submit(fd, dsa0, 0, 0, &d, &status) == 0);
	const volatile struct ioasid_dsa_completion *third = rec + 2;
	unsigned st = wait_record(third);
	CHECK(st == (IOASID_DSA_COMP_PAGE_FAULT_NOBOF | IOASID_DSA_COMP_STATUS_WRITE));
	CHECK(third->bytes_completed == 4096 && third->fault_addr == iova + size_2m());
	CHECK(drain_faults(fd, 100) == 0); /* no fault record */

	/* Block on fault: a page request on the fd; INVALID ends it with PAGE_FAULT_IR. */
	struct ioasid_wq_config bof = { .dev_id = dsa0, .wq = 3,
					.flags = IOASID_WQ_ENABLE | IOASID_WQ_SHARED | IOASID_WQ_BOF,
					.size = 4, .priority = 1 };
	CHECK(ioctl(fd, IOASID_WQ_CONFIG, &bof) == 0);
	d.opflags = IOASID_DSA_OPFLAGS(IOASID_DSA_OPCODE_MEMMOVE, IOASID_DSA_FLAG_CRAV | IOASID_DSA_FLAG_BOF);
	d.completion_addr = iova + (32u << 10) + 96;
	CHECK(submit(fd, dsa0, 3, 0, &d, &status) == 0);
	struct ioasid_fault req;
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	CHECK(poll(&pfd, 1, 2000) == 1 && read(fd, &req, sizeof(req)) == (ssize_t)sizeof(req));
	CHECK(req.type == IOASID_FAULT_PAGE_REQ && req.dev_id == dsa0 && req.pasid == pasid &&
	      req.addr == iova + size_2m() && req.ioasid == ioas);
	CHECK(rec[3].status == 0); /* the WQ waits */
	CHECK(page_respond(fd, &req, IOASID_PAGE_RESP_INVALID) == 0);
	CHECK((wait_record(rec + 3) & IOASID_DSA_COMP_STATUS_MASK) == IOASID_DSA_COMP_PAGE_FAULT_IR);
	bof = (struct ioasid_wq_config){ .dev_id = dsa0, .wq = 3 };
	CHECK(ioctl(fd, IOASID_WQ_CONFIG, &bof) == 0);

	/* Another file shares dsa0 (SIOV): its own dev_id; the RID route stays ours. */
	int other = open_node();
	__u32 other_dev = device_bind(other, "dsa0");
	CHECK(other_dev != 0);
	__u32 other_ioas = ioas_alloc(other, 0);
	CHECK(attach_rid(fd, dsa0, ioas, 0) == 0);
	CHECK(attach_rid(other, other_dev, other_ioas, 0) == -1 && errno == EBUSY);
	CHECK(wq_enable(other, other_dev, 0, 0, 4) == -1 && errno == EBUSY); /* enabled by us */
	CHECK(wq_disable(other, other_dev, 0) == -1 && errno == EBUSY);
	d = noop; /* our PASID through its fd: another file's */
	CHECK(submit(other, other_dev, 0, 0, &d, &status) == EACCES);
	/* A dedicated WQ 2 of ours at `pasid`: only we submit, never with GPASID. */
	CHECK(wq_enable(fd, dsa0, 2, pasid, 4) == 0);
	CHECK(submit(other, other_dev, 2, 0, &noop, &status) == EACCES);
	CHECK(submit(fd, dsa0, 2, IOASID_SUBMIT_GPASID, &noop, &status) == EINVAL);
	CHECK(submit(fd, dsa0, 2, 0, &noop, &status) == 0 && status == IOASID_SUBMIT_ACCEPTED);
	close(other);
	CHECK(detach_rid(fd, dsa0) == 0);
	CHECK(wq_disable(fd, dsa0, 2) == 0);
	CHECK(wq_disable(fd, dsa0, 0) == 0);
	CHECK(wq_disable(fd, dsa0, 0) == 0);
}

int main(void)
{
	/* perror's first use of stderr may change errno; the checks read errno after it. */
	fprintf(stderr, "driver: the example functions print their errors below\n");
	int fd = open_node();
	struct ioasid_info info = {0};
	if (ioctl(fd, IOASID_GET_INFO, &info) < 0) {
		perror("IOASID_GET_INFO");
		return 2;
	}
	const int siov = ioasid_has(fd, IOASID_FEAT_SIOV);
	CHECK(siov == !!(info.features & (1u << IOASID_FEAT_SIOV)));
	printf("driver: features %#x, SIOV %s\n", info.features, siov ? "served" : "not served");

	generic_rules(fd);

	/* PASIDs: ALLOC with a guest PASID, LOOKUP, EEXIST, ENOENT, the range rules. */
	__u32 pasid = pasid_alloc(fd, info.pasid_bits, 5);
	CHECK(pasid != 0);
	CHECK(pasid_of_gpasid(fd, 5) == pasid);
	CHECK(pasid_alloc(fd, info.pasid_bits, 5) == 0 && errno == EEXIST);
	CHECK(pasid_of_gpasid(fd, 6) == 0 && errno == ENOENT);
	struct ioasid_pasid_request bad = { .flags = IOASID_PASID_ALLOC, .min = 0, .max = 10 };
	EXPECT_ERRNO(ioctl(fd, IOASID_PASID_REQUEST, &bad), EINVAL);
	bad = (struct ioasid_pasid_request){ .flags = IOASID_PASID_ALLOC, .min = 1, .max = 10, .gpasid = 3 };
	EXPECT_ERRNO(ioctl(fd, IOASID_PASID_REQUEST, &bad), EINVAL);
	bad = (struct ioasid_pasid_request){ .flags = IOASID_PASID_FREE | IOASID_PASID_GPASID, .min = 1, .max = 10,
					     .gpasid = 3 };
	EXPECT_ERRNO(ioctl(fd, IOASID_PASID_REQUEST, &bad), EINVAL);
	bad = (struct ioasid_pasid_request){ .flags = IOASID_PASID_ALLOC | IOASID_PASID_FREE, .min = 1, .max = 10 };
	EXPECT_ERRNO(ioctl(fd, IOASID_PASID_REQUEST, &bad), EINVAL);
	bad = (struct ioasid_pasid_request){ .flags = 1u << 7, .min = 1, .max = 10 };
	EXPECT_ERRNO(ioctl(fd, IOASID_PASID_REQUEST, &bad), EOPNOTSUPP);

	/* IOASIDs. */
	__u32 ioas = ioas_alloc(fd, 0);
	CHECK(ioas != 0);
	__u32 nested = ioas_alloc(fd, ioas);
	CHECK(nested != 0 && nested != ioas);
	CHECK(ioas_alloc(fd, nested) == 0 && errno == EINVAL);
	CHECK(ioas_alloc(fd, 999) == 0 && errno == ENOENT);
	struct ioasid_alloc with_parent = { .parent = ioas };
	EXPECT_ERRNO(ioctl(fd, IOASID_ALLOC, &with_parent), EINVAL);
	CHECK(ioas_free(fd, ioas) == -1 && errno == EBUSY);
	CHECK(print_iova_ranges(fd, ioas) == 0);
	CHECK(print_iova_ranges(fd, nested) == -1 && errno == EINVAL);

	/* MAP_DMA of private memory, MAP_FILE of guest RAM at a fixed IOVA. */
	const __u64 size = 2u << 20;
	void *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(buf != MAP_FAILED);
	memset(buf, 0, size);
	__u64 iova = map_buffer(fd, ioas, buf, size, 0);
	CHECK(iova != 0);
	CHECK(map_buffer(fd, nested, buf, size, 0) == 0 && errno == EINVAL);
	CHECK(map_buffer(fd, ioas, buf, size, iova) == 0 && errno == EEXIST);
	CHECK(map_buffer(fd, ioas, (char *)buf + 1, size, 0) == 0 && errno == EINVAL);
	const __u64 ram_gpa = 1ull << 32;
	int ram = map_guest_ram(fd, ioas, 4u << 20, ram_gpa);
	CHECK(ram >= 0);
	struct ioasid_map_file badfd = { .flags = IOASID_MAP_READABLE, .ioasid = ioas, .fd = 1000,
					 .length = 4096 };
	EXPECT_ERRNO(ioctl(fd, IOASID_MAP_FILE, &badfd), EBADF);

	/* Devices. */
	__u32 dma0 = device_bind(fd, "dma0");
	CHECK(dma0 != 0);
	CHECK(device_bind(fd, "00:03.0") == 0 && errno == EBUSY);
	CHECK(device_bind(fd, "nosuch") == 0 && errno == ENOENT);
	CHECK(print_device(fd, dma0) == 0);
	__u32 dma1 = device_bind(fd, "0000:00:04.0");
	CHECK(dma1 != 0);

	/* Routes. */
	CHECK(attach_rid(fd, dma0, ioas, 0) == 0);
	CHECK(attach_rid(fd, dma0, ioas, 0) == -1 && errno == EBUSY);
	CHECK(attach_rid(fd, dma0, ioas, 1) == 0);
	CHECK(attach_pasid(fd, dma0, ioas, pasid, 1) == -1 && errno == ENOENT);
	CHECK(attach_pasid(fd, dma0, ioas, pasid, 0) == 0);
	CHECK(attach_pasid(fd, dma0, ioas, pasid, 0) == -1 && errno == EBUSY);
	CHECK(attach_pasid(fd, dma0, ioas, pasid, 1) == 0);
	CHECK(attach_pasid(fd, dma1, ioas, pasid, 0) == -1 && errno == EOPNOTSUPP);
	CHECK(attach_pasid(fd, dma0, ioas, pasid + 1, 0) == -1 && errno == ENOENT);

	/* DMA, with dirty tracking on. */
	char data[4096];
	memset(data, 0x5a, sizeof(data));
	CHECK(count_dirty_pages(fd, ioas, iova, size) == -1 && errno == EINVAL); /* tracking off */
	CHECK(set_dirty_tracking(fd, ioas, 1) == 0);
	CHECK(count_dirty_pages(fd, ioas, iova, size) == 0);
	CHECK(dma_write(fd, dma0, pasid, iova + 8192, data, sizeof(data)) == 0);
	CHECK(((unsigned char *)buf)[8192] == 0x5a);
	CHECK(dma_write(fd, dma0, 0, iova, data, sizeof(data)) == 0);
	long dirty = count_dirty_pages(fd, ioas, iova, size);
	printf("driver: %ld dirty 4 KiB pages after two 4 KiB writes\n", dirty);
	CHECK(dirty >= 2);
	CHECK(count_dirty_pages(fd, ioas, iova, size) == 0); /* cleared by the read */
	CHECK(set_dirty_tracking(fd, ioas, 0) == 0);

	/* An unrecoverable fault at the RID: FAULT, and a DMA_UNRECOV record. */
	CHECK(dma_write(fd, dma0, 0, 0x7000000000ull, data, sizeof(data)) == -1);
	struct ioasid_fault rec;
	CHECK(read_record(fd, &rec) == 0 && rec.type == IOASID_FAULT_DMA_UNRECOV &&
	      rec.dev_id == dma0 && rec.addr == 0x7000000000ull && (rec.flags & IOASID_FAULT_ADDR_VALID) &&
	      !(rec.flags & IOASID_FAULT_PASID_VALID) && rec.perm == IOASID_FAULT_PERM_WRITE &&
	      rec.reason == IOASID_FAULT_REASON_ACCESS);

	/* A page request at the PASID with NOWAIT, answered INVALID; a second answer: EINVAL. */
	struct ioasid_device_dma dma = {
		.dev_id = dma0, .flags = IOASID_DMA_PASID | IOASID_DMA_NOWAIT, .pasid = pasid,
		.iova = 0x7000001234ull, .length = 16, .buf_uptr = (__u64)(uintptr_t)data,
	};
	CHECK(ioctl(fd, IOASID_DEVICE_DMA, &dma) == 0 && dma.out_status == IOASID_DMA_PAGE_REQ &&
	      dma.out_fault_addr == 0x7000001234ull);
	CHECK(read_record(fd, &rec) == 0 && rec.type == IOASID_FAULT_PAGE_REQ && rec.pasid == pasid &&
	      rec.addr == 0x7000001000ull &&
	      rec.flags == (IOASID_FAULT_PASID_VALID | IOASID_FAULT_ADDR_VALID | IOASID_FAULT_LAST_PAGE));
	CHECK(page_respond(fd, &rec, IOASID_PAGE_RESP_INVALID) == 0);
	CHECK(page_respond(fd, &rec, IOASID_PAGE_RESP_INVALID) == -1 && errno == EINVAL);
	CHECK(page_respond(fd, &rec, 3) == -1 && errno == EINVAL);

	/* DEVICE_DMA argument rules. */
	dma = (struct ioasid_device_dma){ .dev_id = dma0, .flags = IOASID_DMA_PASID, .pasid = 0,
					  .iova = iova, .length = 16, .buf_uptr = (__u64)(uintptr_t)data };
	EXPECT_ERRNO(ioctl(fd, IOASID_DEVICE_DMA, &dma), EINVAL);
	dma = (struct ioasid_device_dma){ .dev_id = dma1, .flags = IOASID_DMA_PASID, .pasid = 1,
					  .iova = iova, .length = 16, .buf_uptr = (__u64)(uintptr_t)data };
	EXPECT_ERRNO(ioctl(fd, IOASID_DEVICE_DMA, &dma), EOPNOTSUPP);
	dma = (struct ioasid_device_dma){ .dev_id = dma0, .iova = ~0ull - 4, .length = 16,
					  .buf_uptr = (__u64)(uintptr_t)data };
	EXPECT_ERRNO(ioctl(fd, IOASID_DEVICE_DMA, &dma), EOVERFLOW);

	/* Fault reads: size rules, O_NONBLOCK, poll with nothing queued. */
	char odd[10];
	EXPECT_ERRNO(read(fd, odd, sizeof(odd)), EINVAL);
	CHECK(read(fd, odd, 0) == 0);
	CHECK(drain_faults(fd, 0) == 0);
	int flags = fcntl(fd, F_GETFL);
	CHECK(fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0);
	EXPECT_ERRNO(read(fd, &rec, sizeof(rec)), EAGAIN);
	CHECK(fcntl(fd, F_SETFL, flags) == 0);
	CHECK(dma_write(fd, dma1, 0, iova, data, sizeof(data)) == -1); /* dma1 has no route */
	CHECK(drain_faults(fd, 1000) == 1);

	/* Nested: bind an (empty) guest table in guest RAM, invalidate, unbind. */
	CHECK(attach_pasid(fd, dma0, nested, pasid, 1) == 0);
	CHECK(bind_guest_table(fd, nested, ram_gpa + 4096) == 0);
	CHECK(bind_guest_table(fd, nested, ram_gpa + 4096) == -1 && errno == EBUSY);
	CHECK(bind_guest_table(fd, ioas, ram_gpa) == -1 && errno == EINVAL);
	CHECK(invalidate_guest_range(fd, nested, 5, 0x400000, 4) == 0);
	CHECK(invalidate_guest_range(fd, nested, 6, 0x400000, 4) == -1 && errno == ENOENT);
	CHECK(invalidate_guest_range(fd, ioas, 5, 0x400000, 4) == -1 && errno == EINVAL);
	CHECK(unbind_guest_table(fd, nested) == 0);
	CHECK(unbind_guest_table(fd, nested) == 0);
	CHECK(bind_guest_table(fd, nested, 1ull << 40) == -1 && errno == EINVAL); /* not in the parent */

	/* Work queues: dma devices have none; without SIOV the commands are not served. */
	CHECK(wq_enable(fd, dma0, 0, 0, 16) == -1 && errno == EOPNOTSUPP);
	struct ioasid_dsa_desc desc = dsa_crc_desc(pasid, iova, 4096, iova + 4096);
	CHECK(dsa_submit(fd, dma0, 0, &desc, 1) == -1 && errno == EOPNOTSUPP);
	struct ioasid_dsa_completion comp = { .status = IOASID_DSA_COMP_SUCCESS, .crc_val = 0xe3069283u };
	__u32 crc = 0;
	CHECK(dsa_crc_result(&comp, &crc) == 0 && crc == 0xe3069283u);
	__u32 dsa0 = device_bind(fd, "dsa0");
	if (dsa0 != 0) {
		CHECK(print_device(fd, dsa0) == 0);
		CHECK(attach_pasid(fd, dsa0, ioas, pasid, 0) == 0);
		if (siov) {
			/* "123456789" at iova + 16 KiB; the record at iova + 32 KiB. */
			CHECK(wq_enable(fd, dsa0, 0, 0, 16) == 0);
			memcpy((char *)buf + (16u << 10), "123456789", 9);
			desc = dsa_crc_desc(pasid, iova + (16u << 10), 9, iova + (32u << 10));
			CHECK(dsa_submit(fd, dsa0, 0, &desc, 100) == 0);
			CHECK(wait_record((void *)((char *)buf + (32u << 10))) != 0);
			CHECK(dsa_crc_result((void *)((char *)buf + (32u << 10)), &crc) == 0 &&
			      crc == 0xe3069283u);
			CHECK(wq_disable(fd, dsa0, 0) == 0);
			dsa_checks(fd, dsa0, ioas, pasid, buf, iova);
		} else {
			CHECK(wq_enable(fd, dsa0, 0, 0, 16) == -1 && errno == EOPNOTSUPP);
		}
		CHECK(device_unbind(fd, dsa0) == 0);
	} else {
		printf("driver: no dsa0 on this daemon\n");
	}

	/* Teardown, step by step. */
	CHECK(detach_pasid(fd, dma0, pasid) == 0);
	CHECK(detach_pasid(fd, dma0, pasid) == 0);
	CHECK(detach_rid(fd, dma0) == 0);
	CHECK(detach_rid(fd, dma0) == 0);
	CHECK(unmap_range(fd, ioas, iova, 4096) == -1 && errno == ENOENT); /* partly inside */
	CHECK(unmap_range(fd, ioas, iova, 0) == -1 && errno == ENOENT);
	CHECK(unmap_range(fd, ioas, ~0ull - 4095, 8192) == -1 && errno == EOVERFLOW);
	CHECK(unmap_range(fd, ioas, iova, size) == (long long)size);
	CHECK(unmap_range(fd, ioas, 0, ~0ull) == (long long)(4u << 20));
	CHECK(unmap_range(fd, ioas, 0, ~0ull) == 0);
	CHECK(device_unbind(fd, dma0) == 0);
	CHECK(device_unbind(fd, dma0) == -1 && errno == ENOENT);
	CHECK(device_unbind(fd, dma1) == 0);
	CHECK(ioas_free(fd, nested) == 0);
	CHECK(ioas_free(fd, ioas) == 0);
	CHECK(pasid_free_all(fd, info.pasid_bits) == 1);
	CHECK(pasid_free_all(fd, info.pasid_bits) == 0);

	/* Ids are per file: another open sees none of this file's. */
	int other = open_node();
	CHECK(pasid_alloc(fd, info.pasid_bits, 0) != 0);
	__u32 mine = ioas_alloc(fd, 0);
	CHECK(ioas_free(other, mine) == -1 && errno == ENOENT);
	__u32 foreign = pasid_alloc(other, info.pasid_bits, 0);
	__u32 dev = device_bind(fd, "dma0");
	CHECK(attach_pasid(fd, dev, mine, foreign, 0) == -1 && errno == EACCES);
	close(other);
	close(ram);
	close(fd);

	if (failures) {
		fprintf(stderr, "driver: %d check(s) failed\n", failures);
		return 1;
	}
	printf("driver: all checks passed\n");
	return 0;
}

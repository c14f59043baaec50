/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR MIT) */
/*
 * ioasidd's extension to the iommufd uAPI: the iommufd commands that hand the caller a
 * new file descriptor (IOMMU_FAULT_QUEUE_ALLOC's out_fault_fd, the selftest's
 * IOMMU_TEST_OP_CREATE_ACCESS out_access_fd). A daemon behind CUSE/FUSE cannot create
 * a file descriptor in its caller, so such a command runs in two steps:
 *
 *  1. IOASID_IOMMU_FD_CMD on the /dev/iommu file runs the command (its struct at
 *     cmd_uptr, sized as iommufd structs are) and makes the object, without an fd:
 *     the struct comes back with every output but the fd (left -1), and out_token
 *     names the object for the next step. A token is good once, for a few seconds,
 *     and only in the same /dev/iommu file's user.
 *  2. The caller opens the companion node (/dev/iommu-fd under CUSE, DIR/iommu-fd
 *     under FUSE) and gives it the token with IOASID_IOMMU_FD_ATTACH: that open file
 *     now is the object (a fault queue reads and writes as iommufd's does; closing it
 *     destroys it). fd_number is the number the object's file has in the process that
 *     will use it, since the selftest names an access by its fd number
 *     (IOMMU_TEST_CMD's id); -1 when it is not known yet, then
 *     IOASID_IOMMU_FD_SET_NUMBER tells it once it is.
 *
 * libioasid does both steps (ioasid::client::iommufd_fd_command); `ioasid-run PROGRAM`
 * does them for an unchanged program, trapping the two commands with seccomp and
 * placing the companion file in the program with SECCOMP_IOCTL_NOTIF_ADDFD.
 */
#ifndef _UAPI_LINUX_IOASID_IOMMU_FD_H
#define _UAPI_LINUX_IOASID_IOMMU_FD_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* The command's number in iommufd's space, far above iommufd's own (0x80...). */
#define IOASID_IOMMU_FD_CMD_NR 0xf0

/**
 * struct ioasid_iommu_fd_cmd - IOASID_IOMMU_FD_CMD, on a /dev/iommu file
 * @size: sizeof(struct ioasid_iommu_fd_cmd)
 * @flags: must be 0
 * @cmd: IOMMU_FAULT_QUEUE_ALLOC or IOMMU_TEST_CMD (op IOMMU_TEST_OP_CREATE_ACCESS)
 * @__reserved: must be 0
 * @cmd_uptr: the command's struct in the caller's memory (its first u32 its size)
 * @out_token: names the new object for IOASID_IOMMU_FD_ATTACH
 */
struct ioasid_iommu_fd_cmd {
	__u32 size;
	__u32 flags;
	__u32 cmd;
	__u32 __reserved;
	__aligned_u64 cmd_uptr;
	__aligned_u64 out_token;
};
#define IOASID_IOMMU_FD_CMD _IO(';', IOASID_IOMMU_FD_CMD_NR)

/**
 * struct ioasid_iommu_fd_attach - IOASID_IOMMU_FD_ATTACH, on a companion-node file
 * @token: from IOASID_IOMMU_FD_CMD
 * @fd_number: the file's number in the process using the object, or -1
 * @__reserved: must be 0
 */
struct ioasid_iommu_fd_attach {
	__aligned_u64 token;
	__s32 fd_number;
	__u32 __reserved;
};

/* The companion node's commands: /dev/ioasid's type, numbers of their own. */
#define IOASID_IOMMU_FD_TYPE 'i'
#define IOASID_IOMMU_FD_ATTACH _IOW(IOASID_IOMMU_FD_TYPE, 0xc0, struct ioasid_iommu_fd_attach)
/* The file's number in the process using it (an int), once known. */
#define IOASID_IOMMU_FD_SET_NUMBER _IOW(IOASID_IOMMU_FD_TYPE, 0xc1, __s32)

#endif /* _UAPI_LINUX_IOASID_IOMMU_FD_H */

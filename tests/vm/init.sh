#!/bin/sh
# SPDX-License-Identifier: MIT
# /init of the VM stage's initramfs (run by busybox ash as PID 1).
#
# Loads fuse/cuse, starts ioasidd in CUSE mode, runs the conformance suite against
# /dev/ioasid, then (when the host put it in the initramfs) the kernel's iommufd
# selftest against the daemon's /dev/iommu under the launcher ioasid-run (which serves
# the fd-returning commands through the companion node /dev/iommu-fd), and reports everything on the serial
# console between marker lines that run-vm-tests.sh parses. Every step is bounded and
# failures print "VM-STAGE-ERROR: <what>" instead of hanging. PID 1 must never exit
# (the kernel would panic), so the script always ends in power_off.

PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
# The console is a tty, but the output ends up in a log file.
GTEST_COLOR=no
export PATH GTEST_COLOR

M='@@IOASID-VM@@'          # marker prefix; keep in sync with run-vm-tests.sh
DAEMON_PIDFILE=/run/ioasidd.pid
DAEMON_RCFILE=/run/ioasidd.rc
DAEMON_LOG=/tmp/ioasidd.log
RESULTS_JSON=/tmp/conformance.json
SELFTEST=/usr/local/bin/iommufd-selftest
IOASID_RUN=/usr/local/bin/ioasid-run
IOMMU_DEV=/dev/iommu
IOMMU_FD_DEV=/dev/iommu-fd # the daemon's CUSE devname for it: <iommu devname>-fd
HUGEPAGES=64

# Written by run-vm-tests.sh: DEV_TIMEOUT, TEST_TIMEOUT, STOP_TIMEOUT, SELFTEST_TIMEOUT,
# SELFTEST_DEADLINE (the uptime by which the selftest must be over).
. /etc/vm-stage.conf

error() { echo "VM-STAGE-ERROR: $*"; }
begin() { echo "$M BEGIN $1"; }
end() { echo "$M END $1"; }

power_off() {
    echo "$M DONE"
    # Full applet paths: the links may not exist if mounting failed early.
    /bin/busybox sync
    /bin/busybox poweroff -f
    # poweroff -f only returns on failure; exiting PID 1 panics the kernel, and with
    # panic=-1 plus qemu's -no-reboot that still ends the VM.
    /bin/busybox sleep 2
    exit 1
}

mount_filesystems() {
    /bin/busybox mount -t devtmpfs devtmpfs /dev || { error "mount devtmpfs on /dev"; return 1; }
    # The kernel may not have found a console before /dev was populated.
    exec </dev/console >/dev/console 2>&1
    # busybox --install needs /proc/self/exe; the host only linked /bin/sh.
    /bin/busybox mount -t proc proc /proc || { error "mount proc"; return 1; }
    /bin/busybox --install -s || { error "busybox --install"; return 1; }
    mount -t sysfs sysfs /sys || { error "mount sysfs"; return 1; }
    mount -t tmpfs -o mode=1777 tmpfs /tmp || { error "mount tmpfs on /tmp"; return 1; }
    mount -t tmpfs -o mode=0755 tmpfs /run || { error "mount tmpfs on /run"; return 1; }
}

# Modules are listed dependencies-first by the host script.
load_modules() {
    while IFS= read -r mod; do
        [ -n "$mod" ] || continue
        insmod "/lib/modules/$mod" || { error "insmod $mod"; return 1; }
    done </etc/modules.order
    [ -c /dev/cuse ] || { error "/dev/cuse missing after loading modules"; return 1; }
}

# ioasid-wait-ready returns once ioasidd has sent READY=1 (sd_notify, as to systemd's
# Type=notify): /dev/ioasid and the iommu nodes exist and answer. It also notices an
# early exit and gives up after DEV_TIMEOUT s. The sh between them records the daemon's
# PID (SIGTERM goes to ioasidd itself) and its exit status, in files: reliable where
# polling a (possibly zombie) PID is not. NOTIFY_SOCKET passes through sh to ioasidd.
start_daemon() {
    ioasid-wait-ready --timeout "$DEV_TIMEOUT" -- sh -c '
        ioasidd --frontend cuse --no-netlink --admin-socket /run/ioasidd.sock \
            --log-level info --page-timeout 1500 >"$1" 2>&1 </dev/null &
        echo $! >"$2"
        wait $!
        echo $? >"$3"' sh "$DAEMON_LOG" "$DAEMON_PIDFILE" "$DAEMON_RCFILE" && return 0
    if [ -f "$DAEMON_RCFILE" ]; then
        error "ioasidd exited with status $(cat "$DAEMON_RCFILE") before it was ready"
    else
        error "ioasidd was not ready (READY=1) within $DEV_TIMEOUT s"
    fi
    return 1
}

# Extra gtest arguments, one per line (keeps spaces and quotes intact).
run_conformance() {
    set --
    while IFS= read -r arg; do set -- "$@" "$arg"; done </etc/gtest-args
    begin gtest-output
    # The programs the suite runs, where run-vm-tests.sh put them (the build tree may
    # be under /tmp, hidden here).
    helpers=/usr/local/libexec/ioasid-conformance
    IOASID_RUN=$helpers/ioasid-run IOASID_RUN_PROBE=$helpers/ioasid_run_probe \
    IOMMUFD_FAULT_DEMO=$helpers/iommufd-fault-demo ATS_COPY=$helpers/ats-copy \
    IOASID_DEV=/dev/ioasid IOASID_DAEMON_LOG="$DAEMON_LOG" timeout -s KILL "$TEST_TIMEOUT" \
        ioasid-conformance --gtest_output=json:"$RESULTS_JSON" "$@" 2>&1 </dev/null
    rc=$?
    end gtest-output
    [ "$rc" -eq 137 ] && error "conformance killed (timeout of $TEST_TIMEOUT s or SIGKILL)"
    begin conformance-exit
    echo "$rc"
    end conformance-exit
}

# 64 hugepages (128 MiB) for the selftest's hugepage variants, if the guest has the
# memory. Reserved at boot: after the conformance suite, memory is too fragmented to
# find 64 free 2 MiB pages (one run got 6).
reserve_hugepages() {
    [ -x "$SELFTEST" ] || return 0
    mem_kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
    if [ "${mem_kb:-0}" -ge 1048576 ]; then
        echo "$HUGEPAGES" >/proc/sys/vm/nr_hugepages 2>/dev/null
    fi
}

# "present (mode owner:group)" or "absent" for a device node.
node_state() {
    if [ -c "$1" ]; then
        echo "present ($(stat -c '%a %U:%G' "$1" 2>/dev/null))"
    else
        echo absent
    fi
}

# The kernel's iommufd selftest (all 190 tests, once) against the daemon's CUSE
# /dev/iommu, run by ioasid-run: the commands that hand the caller a file descriptor
# (FAULT_QUEUE_ALLOC, the selftest's CREATE_ACCESS) are trapped with seccomp user
# notification and answered with a file of the companion node /dev/iommu-fd. Its TAP
# output is judged on the host (tests/iommufd-selftest/report.sh). Everything runs as
# root, so the nodes' devtmpfs defaults (0600 root:root, no udev) are enough.
run_iommufd_selftest() {
    [ -x "$SELFTEST" ] || return 0
    if [ ! -x "$IOASID_RUN" ]; then
        error "iommufd selftest not run: no $IOASID_RUN in the initramfs"
        return 0
    fi
    hugepages=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null)
    # No wait: the daemon said READY=1 once every node it serves existed.
    iommu_dev=$(node_state "$IOMMU_DEV")
    iommu_fd_dev=$(node_state "$IOMMU_FD_DEV")
    # Without /dev/iommu every test fails in setup (reported by the host's judge); a
    # /dev/iommu without its companion is the daemon's fault.
    if [ -c "$IOMMU_DEV" ] && [ ! -c "$IOMMU_FD_DEV" ]; then
        error "$IOMMU_DEV exists but not its companion $IOMMU_FD_DEV once ioasidd was ready"
    fi
    # What is left of the guest's time budget, at most SELFTEST_TIMEOUT.
    now=$(cut -d. -f1 /proc/uptime)
    limit=$((SELFTEST_DEADLINE - now))
    [ "$limit" -le "$SELFTEST_TIMEOUT" ] || limit=$SELFTEST_TIMEOUT
    if [ "$limit" -lt 30 ]; then
        error "iommufd selftest not run: only ${limit} s left of the VM's time limit"
        return 0
    fi
    # Kernel messages must not split the TAP lines the host parses (dmesg is reported).
    echo 1 >/proc/sys/kernel/printk 2>/dev/null
    begin iommufd-selftest-output
    set --
    while IFS= read -r arg; do [ -z "$arg" ] || set -- "$@" "$arg"; done </etc/selftest-args
    # Under TCG a wake-up on another vCPU costs far more than a switch on the same one,
    # and every ioctl of the suite is a ping-pong of the test, the launcher and the
    # daemon: all three share vCPU 0 while it runs (the harness's 30 s per test is
    # guest time).
    [ "$(command -v taskset)" ] && [ -s "$DAEMON_PIDFILE" ] &&
        taskset -a -p -c 0 "$(cat "$DAEMON_PIDFILE")" >/dev/null 2>&1
    pin=""
    [ "$(command -v taskset)" ] && pin="taskset -c 0"
    timeout -s KILL "$limit" $pin "$IOASID_RUN" --iommu-node "$IOMMU_DEV" \
        --companion "$IOMMU_FD_DEV" "$SELFTEST" "$@" 2>&1 </dev/null
    rc=$?
    end iommufd-selftest-output
    if [ "$rc" -eq 137 ]; then
        error "iommufd selftest killed (limit of $limit s or SIGKILL)"
        # Killing ioasid-run leaves the selftest (its child) and the harness's forks
        # running; nothing else in the guest has this name.
        pids=$(pidof iommufd-selftest)
        [ -z "$pids" ] || kill -KILL $pids 2>/dev/null
    fi
    begin iommufd-selftest-exit
    echo "$rc"
    end iommufd-selftest-exit
    begin iommufd-selftest-info
    echo "$IOMMU_DEV $iommu_dev, $IOMMU_FD_DEV $iommu_fd_dev," \
        "vm.nr_hugepages=$hugepages (MemTotal ${mem_kb} kB)," \
        "limit ${limit} s, took $(( $(cut -d. -f1 /proc/uptime) - now )) s"
    end iommufd-selftest-info
}

# SIGTERM, then a bounded wait for the recorded exit status.
stop_daemon() {
    status=none
    if [ -f "$DAEMON_RCFILE" ]; then
        error "ioasidd had already exited before SIGTERM"
        status=$(cat "$DAEMON_RCFILE")
    elif [ -s "$DAEMON_PIDFILE" ]; then
        kill -TERM "$(cat "$DAEMON_PIDFILE")"
        i=0
        while [ ! -f "$DAEMON_RCFILE" ] && [ "$i" -lt $((STOP_TIMEOUT * 10)) ]; do
            sleep 0.1
            i=$((i + 1))
        done
        if [ -f "$DAEMON_RCFILE" ]; then
            status=$(cat "$DAEMON_RCFILE")
        else
            error "ioasidd still running $STOP_TIMEOUT s after SIGTERM; sending SIGKILL"
            kill -KILL "$(cat "$DAEMON_PIDFILE")"
            status=timeout
        fi
    else
        error "no ioasidd pid recorded"
    fi
    [ "$status" = 0 ] || error "ioasidd exit status: $status (expected 0)"
    begin daemon-exit
    echo "$status"
    end daemon-exit
}

report() {
    # Keep kernel messages from interleaving with the sections the host parses; the
    # kernel log is dumped as a section of its own instead.
    echo 1 >/proc/sys/kernel/printk 2>/dev/null
    if [ -f "$RESULTS_JSON" ]; then
        begin conformance-json
        cat "$RESULTS_JSON"
        echo
        end conformance-json
    else
        error "no $RESULTS_JSON was written"
    fi
    begin daemon-log
    cat "$DAEMON_LOG" 2>/dev/null
    end daemon-log
    begin dmesg
    dmesg
    end dmesg
}

main() {
    mount_filesystems || power_off
    # Leading newline: firmware output before us does not end its last line.
    echo
    echo "$M START uptime=$(cut -d' ' -f1 /proc/uptime)"
    reserve_hugepages
    if load_modules; then
        if start_daemon; then
            run_conformance
            run_iommufd_selftest
        fi
        stop_daemon
    fi
    report
    power_off
}

main

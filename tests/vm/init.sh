#!/bin/sh
# SPDX-License-Identifier: MIT
# /init of the VM stage's initramfs (run by busybox ash as PID 1), or, in the VM stage
# of the Debian packages (run-vm-tests.sh --debs), the test unit ioasid-vm-test.service
# of a Debian rootfs booted with systemd as PID 1, which started ioasidd.service from the
# installed package before it (MODE=systemd: no mounts, no insmod, no daemon of our own).
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
[ "$$" -eq 1 ] || IOASID_RUN=/usr/bin/ioasid-run   # systemd mode: the installed one
IOMMU_DEV=/dev/iommu
IOMMU_FD_DEV=/dev/iommu-fd # the daemon's CUSE devname for it: <iommu devname>-fd
IOMMU_DEV_TIMEOUT=5        # /dev/iommu(-fd) come with /dev/ioasid; a short grace only
HUGEPAGES=64

# Written by run-vm-tests.sh: DEV_TIMEOUT, TEST_TIMEOUT, STOP_TIMEOUT, SELFTEST_TIMEOUT,
# SELFTEST_DEADLINE (the uptime by which the selftest must be over).
. /etc/vm-stage.conf

if [ "$$" -eq 1 ]; then MODE=busybox; else MODE=systemd; fi
UNIT=ioasidd.service

error() { echo "VM-STAGE-ERROR: $*"; }
begin() { echo "$M BEGIN $1"; }
end() { echo "$M END $1"; }

power_off() {
    echo "$M DONE"
    if [ "$MODE" = systemd ]; then
        sync
        # -ff: straight to the kernel, as busybox's poweroff -f.
        systemctl poweroff -ff
        sleep 2
        exit 1
    fi
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

# The subshell records the daemon's exit status in a file, which is reliable where
# polling a (possibly zombie) PID is not; the inner sh execs so the recorded PID is
# ioasidd itself and SIGTERM reaches it directly.
start_daemon() {
    (
        sh -c 'echo $$ >'"$DAEMON_PIDFILE"'; exec "$@"' ioasidd \
            ioasidd --frontend cuse --no-netlink --admin-socket /run/ioasidd.sock \
            --log-level info --page-timeout 1500 >"$DAEMON_LOG" 2>&1 </dev/null
        echo $? >"$DAEMON_RCFILE"
    ) &
}

# Bounded wait (DEV_TIMEOUT seconds) for the CUSE node; also notices an early exit.
# Under systemd this unit starts once ioasidd.service is active, which for its
# Type=notify is the daemon's READY=1: the node is there at once.
wait_for_device() {
    i=0
    while [ "$i" -lt $((DEV_TIMEOUT * 10)) ]; do
        [ -c /dev/ioasid ] && return 0
        if [ -f "$DAEMON_RCFILE" ]; then
            error "ioasidd exited with status $(cat "$DAEMON_RCFILE") before /dev/ioasid appeared"
            return 1
        fi
        if [ "$MODE" = systemd ] && ! systemctl --quiet is-active "$UNIT"; then
            error "$UNIT is $(systemctl is-active "$UNIT") before /dev/ioasid appeared"
            return 1
        fi
        sleep 0.1
        i=$((i + 1))
    done
    error "/dev/ioasid did not appear within $DEV_TIMEOUT s"
    return 1
}

# Extra gtest arguments, one per line (keeps spaces and quotes intact).
run_conformance() {
    set --
    while IFS= read -r arg; do set -- "$@" "$arg"; done </etc/gtest-args
    follow=''
    if [ "$MODE" = systemd ]; then
        # The daemon logs to the journal: its lines, as they come, are the log file the
        # suite's DaemonLog checks read (IOASID_DAEMON_LOG).
        journalctl -f -n 0 -o cat -u "$UNIT" >"$DAEMON_LOG" 2>&1 </dev/null &
        follow=$!
        sleep 1
    fi
    begin gtest-output
    # The programs the suite runs, where run-vm-tests.sh put them (the build tree may
    # be under /tmp, hidden here).
    helpers=/usr/local/libexec/ioasid-conformance
    run=$helpers/ioasid-run fault_demo=$helpers/iommufd-fault-demo ats_copy=$helpers/ats-copy
    if [ "$MODE" = systemd ]; then
        # The installed packages' programs (ioasid-tools, ioasid-examples).
        run=/usr/bin/ioasid-run
        fault_demo=/usr/libexec/ioasid/iommufd-fault-demo
        ats_copy=/usr/libexec/ioasid/ats-copy
    fi
    IOASID_RUN=$run IOASID_RUN_PROBE=$helpers/ioasid_run_probe \
    IOMMUFD_FAULT_DEMO=$fault_demo ATS_COPY=$ats_copy \
    IOASID_DEV=/dev/ioasid IOASID_DAEMON_LOG="$DAEMON_LOG" timeout -s KILL "$TEST_TIMEOUT" \
        ioasid-conformance --gtest_output=json:"$RESULTS_JSON" "$@" 2>&1 </dev/null
    rc=$?
    end gtest-output
    [ -z "$follow" ] || kill "$follow" 2>/dev/null
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
    i=0
    while { [ ! -c "$IOMMU_DEV" ] || [ ! -c "$IOMMU_FD_DEV" ]; } &&
          [ "$i" -lt $((IOMMU_DEV_TIMEOUT * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    iommu_dev=$(node_state "$IOMMU_DEV")
    iommu_fd_dev=$(node_state "$IOMMU_FD_DEV")
    # Without /dev/iommu every test fails in setup (reported by the host's judge); a
    # /dev/iommu without its companion is the daemon's fault.
    if [ -c "$IOMMU_DEV" ] && [ ! -c "$IOMMU_FD_DEV" ]; then
        error "$IOMMU_DEV appeared but not its companion $IOMMU_FD_DEV within $IOMMU_DEV_TIMEOUT s"
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

# SIGTERM to the unit's main process, a bounded wait for the unit to go inactive, and
# the exit status as systemd recorded it. Not "systemctl stop": the test unit Requires=
# ioasidd.service, and a stop job on it would stop the test unit too.
stop_unit() {
    status=none
    if ! systemctl --quiet is-active "$UNIT"; then
        error "$UNIT was $(systemctl is-active "$UNIT") before SIGTERM"
    fi
    systemctl kill --kill-whom=main -s TERM "$UNIT"
    i=0
    while systemctl --quiet is-active "$UNIT" && [ "$i" -lt $((STOP_TIMEOUT * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if systemctl --quiet is-active "$UNIT"; then
        error "ioasidd still running $STOP_TIMEOUT s after SIGTERM; sending SIGKILL"
        systemctl kill -s KILL "$UNIT"
        status=timeout
    else
        code=$(systemctl show -p ExecMainCode --value "$UNIT")
        status=$(systemctl show -p ExecMainStatus --value "$UNIT")
        # ExecMainCode 1 is CLD_EXITED; otherwise the status is a signal number.
        [ "$code" = 1 ] || status="signal $status"
    fi
    [ "$status" = 0 ] || error "ioasidd exit status: $status (expected 0)"
    begin daemon-exit
    echo "$status"
    end daemon-exit
}

# SIGTERM, then a bounded wait for the recorded exit status.
stop_daemon() {
    if [ "$MODE" = systemd ]; then stop_unit; return; fi
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
    if [ "$MODE" = systemd ]; then
        journalctl -b -u "$UNIT" --no-pager -o short-monotonic 2>&1
    else
        cat "$DAEMON_LOG" 2>/dev/null
    fi
    end daemon-log
    begin dmesg
    dmesg
    end dmesg
}

main_systemd() {
    echo
    echo "$M START uptime=$(cut -d' ' -f1 /proc/uptime)"
    reserve_hugepages
    DAEMON_PIDFILE=/run/ioasidd.mainpid
    systemctl show -p MainPID --value "$UNIT" >"$DAEMON_PIDFILE"
    if wait_for_device; then
        # What the host checks of the installed service (run-vm-tests.sh, --install-results).
        begin service-state
        systemctl show -p ActiveState -p FragmentPath -p UnitFileState "$UNIT"
        echo "node=$(stat -c '%a %G' /dev/ioasid 2>&1)"
        end service-state
        run_conformance
        run_iommufd_selftest
    fi
    stop_daemon
    report
    power_off
}

# ioasid-vm-fallback.service: the test unit did not run (its Requires= failed).
main_fallback() {
    echo
    echo "$M START uptime=$(cut -d' ' -f1 /proc/uptime)"
    error "ioasid-vm-test.service did not run: $UNIT is $(systemctl is-active "$UNIT")" \
        "($(systemctl show -p Result --value "$UNIT"))"
    report
    power_off
}

main() {
    [ "${1:-}" != --fallback ] || main_fallback
    [ "$MODE" = busybox ] || main_systemd
    mount_filesystems || power_off
    # Leading newline: firmware output before us does not end its last line.
    echo
    echo "$M START uptime=$(cut -d' ' -f1 /proc/uptime)"
    reserve_hugepages
    if load_modules; then
        start_daemon
        if wait_for_device; then
            run_conformance
            run_iommufd_selftest
        fi
        stop_daemon
    fi
    report
    power_off
}

main "$@"

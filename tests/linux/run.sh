#!/bin/sh
# `make check-linux`: boots Debian 12's kernel with a busybox initramfs from its own
# disk's MBR (tests/linux/build-disk.sh), under the hypervisor, and checks what Linux saw.
#
# Runs (each its own work directory under build/check-linux/):
#   native        QEMU TCG, no hypervisor: the reference boot and wall time
#   native-bochs  Bochs 3.0 with the same configuration as test2.py's, no hypervisor
#   svm-smp2      the AMD build (build/svm) under QEMU TCG with SVM + NPT, 2 CPUs
#   vmx-smp2      the Intel build under Bochs 3.0 (monitor trap flag), 2 CPUs
#   vmx-zeroexit-smp2  the same with apic=zeroexit (no APIC access intercepted): Linux's
#                 INIT/STARTUP reach its AP as INIT and SIPI VM exits
#   vmx-zeroexit-nomtf-smp2  apic=zeroexit on Bochs 2.7 (no MTF; its INIT stays pending:
#                 each CPU online restarts the AP through INIT); not in the default list
#                 (make check names it; 546 s here on a loaded host)
#   svm-ryzen-smp2  the AMD build under Bochs 3.0's ryzen model; only on request (slow)
#   q35-vtd-smp2, q35-amdvi-smp2   the AMD build on QEMU's q35 (AHCI disk) with its VT-d
#                 or AMD-Vi model: DMA protection on, and no DMA of the boot faulted
# A run passes when .jenkins/test2.py passes with the guest's "linux-guest: done" and the
# guest also said "2 CPUs online" (it started its AP through the hypervisor's INIT/SIPI
# handling), no System RAM range of /proc/iomem overlaps the hypervisor's region, its
# CPUs went offline and online again (3 rounds, each a new INIT/SIPI start) and were all
# back, every CPU answered the NMI backtrace (sysrq 'l'), and the kernel logged no
# "APIC: Stale IRR" (a local APIC not reset at INIT).
#
# Environment: LINUX_RUNS (default "native native-bochs svm-smp2 vmx-smp2
# vmx-zeroexit-smp2 q35-vtd-smp2 q35-amdvi-smp2"; also svm-ryzen-smp2,
# vmx-zeroexit-nomtf-smp2), LINUX_MEMORY (MB,
# default 256), LINUX_TIMEOUT_QEMU / LINUX_TIMEOUT_BOCHS (seconds), LINUX_OUT (the runs'
# directory, default build/check-linux).
# Expects `make all svm` done; prints one line per run and "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."

RUNS=${LINUX_RUNS:-"native native-bochs svm-smp2 vmx-smp2 vmx-zeroexit-smp2 q35-vtd-smp2 q35-amdvi-smp2"}
MEM=${LINUX_MEMORY:-256}
TQ=${LINUX_TIMEOUT_QEMU:-300}
TB=${LINUX_TIMEOUT_BOCHS:-2400}
OUT=${LINUX_OUT:-$(pwd)/build/check-linux}
mkdir -p "$OUT"

disk=$(tests/linux/build-disk.sh | tail -n 1)
if [ ! -f "$disk" ]; then
    echo "check-linux: building the disk failed"
    exit 1
fi
echo "check-linux: disk $disk"

pass=0; fail=0
note() { echo "check-linux: $*"; }

# The guest's own lines: CPU count and System RAM against the hypervisor's region.
check_guest() {   # $1 = serial log, $2 = expected CPUs, $3 = 1 when a hypervisor ran
    log=$1
    line=$(tr -d '\r' < "$log" | grep -a -m1 'linux-guest: up, ')
    n=$(echo "$line" | sed -n 's/.*up, \([0-9]*\) CPUs online.*/\1/p')
    if [ "$n" != "$2" ]; then
        echo "Linux saw ${n:-no} CPUs online, expected $2 (${line:-no 'linux-guest: up' line})"
        return 1
    fi
    hp=$(tr -d '\r' < "$log" | grep -a -m1 'linux-guest: hotplug')
    case $hp in
        *"hotplug: "*" rounds, CPUs"*", $2 CPUs online"*) ;;
        *) echo "CPU hotplug: ${hp:-no 'linux-guest: hotplug' line}"; return 1 ;;
    esac
    nb=$(tr -d '\r' < "$log" | grep -a -m1 'linux-guest: NMI backtrace')
    case $nb in
        *"NMI backtrace: $2 of $2 CPUs answered"*) ;;
        *) echo "NMI backtrace: ${nb:-no 'linux-guest: NMI backtrace' line}"; return 1 ;;
    esac
    if ! tr -d '\r' < "$log" | grep -a -q '^linux-guest: stale IRR: 0$'; then
        echo "the kernel logged 'APIC: Stale IRR' ($(tr -d '\r' < "$log" | grep -a -m1 'linux-guest: stale IRR'))"
        return 1
    fi
    [ "$3" = 1 ] || return 0
    region=$(tr -d '\r' < "$log" | sed -n 's/^xmhf-init: hypervisor region \([0-9a-f]*\)-\([0-9a-f]*\).*/\1 \2/p' | head -n 1)
    if [ -z "$region" ]; then
        echo "no 'hypervisor region' line in the log"
        return 1
    fi
    tr -d '\r' < "$log" | sed -n 's/^linux-guest: System RAM \([0-9a-f]*\)-\([0-9a-f]*\)$/\1 \2/p' |
    python3 -c '
import sys
rb, re_ = (int(x, 16) for x in sys.argv[1].split())
bad = [l for l in sys.stdin.read().split("\n") if l.strip()
       and int(l.split()[0], 16) < re_ and int(l.split()[1], 16) >= rb]
if bad:
    print("System RAM overlaps the hypervisor region %x-%x: %s" % (rb, re_, bad))
    sys.exit(1)
' "$region"
}

summary() {   # what a failed run ended with: the hypervisor's or Linux's last words
    tr -d '\r' < "$1" | grep -a -E 'xmhf(-init)?: (FATAL|ERROR|PANIC)|Kernel panic|BUG:|Oops|general protection|RIP:|exit reason|triple' | head -n 8 | sed 's/^/    /'
}

for run in $RUNS; do
    dir=$OUT/$run
    rm -rf "$dir"; mkdir -p "$dir"
    t0=$(date +%s)
    case $run in
    native)
        # QEMU TCG, plain: the disk alone, as on a PC without the hypervisor.
        timeout "$TQ" qemu-system-x86_64 -accel tcg -cpu qemu64 -smp 2 -m "$MEM" \
            -drive "file=$disk,format=raw,if=ide,index=0,snapshot=on" \
            -display none -monitor none -serial "file:$dir/serial.log" -no-reboot \
            > "$dir/qemu.out" 2>&1
        rc=$?; hyp=0 ;;
    native-bochs)
        # Bochs 3.0 booting the disk itself (test2.py's settings, no ISO, no hypervisor).
        # 'volatile': the shared cached disk is opened read-only, so no <disk>.lock.
        bochs=$(tools/build-bochs3.sh | tail -n 1)
        cat > "$dir/bochsrc" <<EOF
display_library: nogui
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
megs: $MEM
cpu: count=2, model=corei7_skylake_x, reset_on_triple_fault=0
clock: sync=none, time0=local
pci: enabled=1, chipset=i440fx
ata0-master: type=disk, mode=volatile, path="$(realpath "$disk")", journal="$dir/disk-redolog"
boot: disk
com1: enabled=1, mode=file, dev="$dir/serial.log"
log: "$dir/bochs.log"
panic: action=fatal
error: action=report
info: action=ignore
debug: action=ignore
EOF
        # Bochs ends on the guest's "Shutdown" (port 0x8900) with status 1.
        (cd "$dir" && timeout "$TB" "$bochs" -q -f bochsrc < /dev/null > emulator.out 2>&1)
        rc=$?
        grep -q 'Shutdown port: shutdown requested' "$dir/emulator.out" && rc=0
        hyp=0 ;;
    svm-smp*)
        .jenkins/test2.py --emulator qemu-svm --smp "${run#svm-smp}" --xmhf-bin build/svm \
            --qemu-image "$disk" --guest-done 'linux-guest: done' --memory "$MEM" \
            --timeout "$TQ" --work-dir "$dir" > "$dir/test2.out" 2>&1
        rc=$?; hyp=1 ;;
    svm-ryzen-smp*)
        # The AMD build on Bochs 3.0's `ryzen` model (SVM with NPT and NRIP save, the
        # INIT intercept taken as the APM describes); only on request (LINUX_RUNS).
        .jenkins/test2.py --emulator bochs --cpu-model ryzen --smp "${run#svm-ryzen-smp}" \
            --xmhf-bin build/svm --qemu-image "$disk" --guest-done 'linux-guest: done' \
            --memory "$MEM" --timeout "$TB" --work-dir "$dir" > "$dir/test2.out" 2>&1
        rc=$?; hyp=1 ;;
    vmx-zeroexit-nomtf-smp*)
        # apic=zeroexit on Bochs 2.7, which keeps an INIT pending after its exit: each
        # CPU online restarts the AP through INIT (README "APIC modes").
        .jenkins/test2.py --emulator bochs-nomtf --smp "${run#vmx-zeroexit-nomtf-smp}" \
            --cmdline apic=zeroexit --expect 'restarted through INIT' \
            --qemu-image "$disk" --guest-done 'linux-guest: done' --memory "$MEM" \
            --timeout "$TB" --work-dir "$dir" > "$dir/test2.out" 2>&1
        rc=$?; hyp=1 ;;
    vmx-zeroexit-smp*)
        # The same with apic=zeroexit: no APIC access intercepted, Linux's INIT/STARTUP
        # reach its AP as INIT and SIPI VM exits.
        .jenkins/test2.py --emulator bochs --smp "${run#vmx-zeroexit-smp}" --cmdline apic=zeroexit \
            --expect 'apic=zeroexit: no APIC access intercepted' \
            --qemu-image "$disk" --guest-done 'linux-guest: done' --memory "$MEM" \
            --timeout "$TB" --work-dir "$dir" > "$dir/test2.out" 2>&1
        rc=$?; hyp=1 ;;
    q35-vtd-smp*|q35-amdvi-smp*)
        # The AMD build on a q35 machine (AHCI disk) with QEMU's VT-d or AMD-Vi model: DMA
        # protection on (the drivers are vendor-neutral; TCG has no VMX for the Intel one).
        iommu=intel-iommu; case $run in q35-amdvi*) iommu=amd-iommu ;; esac
        .jenkins/test2.py --emulator qemu-svm --smp "${run##*smp}" --xmhf-bin build/svm \
            --qemu-image "$disk" --guest-done 'linux-guest: done' --memory "$MEM" \
            --qemu-machine q35 --qemu-device "$iommu" \
            --expect '^xmhf: DMA protection on: 1 IOMMU' \
            --timeout "$TQ" --work-dir "$dir" > "$dir/test2.out" 2>&1
        rc=$?; hyp=1
        # The disk's DMA (SeaBIOS's AHCI reads of syslinux, kernel, initramfs) must not
        # have faulted.
        if [ $rc = 0 ] && grep -a -q '^xmhf: DMAP: .* blocked' "$dir/serial.log"; then
            rc=1; echo "test2: result FAIL: a DMA of the boot faulted" >> "$dir/test2.out"
        fi ;;
    vmx-smp*)
        .jenkins/test2.py --emulator bochs --smp "${run#vmx-smp}" \
            --qemu-image "$disk" --guest-done 'linux-guest: done' --memory "$MEM" \
            --timeout "$TB" --work-dir "$dir" > "$dir/test2.out" 2>&1
        rc=$?; hyp=1 ;;
    *)
        note "unknown run '$run'"; fail=$((fail + 1)); continue ;;
    esac
    t=$(( $(date +%s) - t0 ))
    case $run in native*) cpus=2 ;; *) cpus=${run##*smp} ;; esac
    why=""
    if [ "$rc" != 0 ]; then
        why="exit status $rc"
        [ -f "$dir/test2.out" ] && why=$(sed -n 's/^test2: result //p' "$dir/test2.out")
    elif ! grep -a -q 'linux-guest: done' "$dir/serial.log"; then
        why="no 'linux-guest: done' line"
    else
        why=$(check_guest "$dir/serial.log" "$cpus" "$hyp") && why=""
    fi
    seen=$(tr -d '\r' < "$dir/serial.log" 2>/dev/null | grep -a -m1 'linux-guest: up, ' | sed 's/^linux-guest: //')
    if [ -z "$why" ]; then
        pass=$((pass + 1))
        note "PASS $run: ${t}s wall, Linux: ${seen}"
    else
        fail=$((fail + 1))
        note "FAIL $run: ${t}s wall: $why (serial log $dir/serial.log)"
        summary "$dir/serial.log"
    fi
done
echo "check-linux: $pass passed, $fail failed"
[ "$fail" = 0 ]

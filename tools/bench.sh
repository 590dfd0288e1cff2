#!/bin/sh
# The xAPIC interception benchmark (`make bench`): runs the test guest's bench build
# (tests/guest/build/bench/guest.bin, see tests/guest/bench.c) on every path and prints
# one table. On Bochs with `clock: sync=none` one TSC tick is one guest instruction, so
# every figure is a deterministic path length, not a time.
#   1. under the hypervisor on Bochs 3.0 corei7_icelake_u (MTF, EPT sub-page write
#      permissions), on Bochs 3.0's default model (MTF), on Debian's Bochs 2.7 (no MTF:
#      the TF/#DB fallback), with apic=zeroexit (no APIC access intercepted) on
#      Bochs 3.0, and the AMD build on Bochs 3.0 ryzen (SVM, TF/#DB),
#   2. natively on Bochs 3.0, without the hypervisor (the guest's self-test loader),
#   3. the AMD build under QEMU TCG and QEMU natively (exits exact, ticks indicative).
# Figures only: nothing here passes or fails on a number. The exit status is non-zero
# only when a run produced no figures at all.
#
# Assumes the hypervisor is built (make); builds the bench guest itself (cheap).
# Environment: BENCH_WORK (default: a new directory under /tmp) keeps each run's logs.
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
guest=$root/tests/guest/build/bench/guest.bin
work=${BENCH_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/xmhf-bench.XXXXXX")}
mkdir -p "$work"

make -s -C "$root/tests/guest" bench build/loader.bin >"$work/build.log" 2>&1 || {
    cat "$work/build.log" >&2; echo "bench: building the bench guest failed" >&2; exit 2; }

# run NAME: leaves the guest's "bench: ..." lines in $work/NAME.txt
run_hv() {
    name=$1 emu=$2; shift 2
    echo "bench: $name: test2.py --emulator $emu $* (log in $work/$name)" >&2
    "$root/.jenkins/test2.py" --emulator "$emu" --smp 1 --guest "$guest" "$@" \
        --guest-done 'bench: done' --work-dir "$work/$name" >"$work/$name.out" 2>&1 \
        || echo "bench: $name: test2.py failed, see $work/$name.out" >&2
    grep -a '^bench: ' "$work/$name/serial.log" 2>/dev/null >"$work/$name.txt" || true
}

run_native() {
    echo "bench: native: Bochs 3.0 without the hypervisor" >&2
    bochs3=$(sh "$root/tools/build-bochs3.sh" | tail -n 1)
    (cd "$root/tests/guest" && BOCHS="$bochs3" sh selftest/run-bochs.sh \
        build/loader.bin build/bench/guest.bin bench) >"$work/native.out" 2>&1 \
        || echo "bench: native: the run failed, see $work/native.out" >&2
    grep -a '^bench: ' "$work/native.out" >"$work/native.txt" || true
}

run_hv spp bochs --cpu-model corei7_icelake_u
run_hv mtf bochs
run_hv tf bochs-nomtf
run_hv zeroexit bochs --cmdline apic=zeroexit
run_hv zeroexit-nomtf bochs-nomtf --cmdline apic=zeroexit
if [ ! -f "$root/build/svm/hypervisor-x86-amd64.bin.gz" ]; then
    make -s -C "$root" svm >"$work/svm-build.log" 2>&1 || echo "bench: make svm failed" >&2
fi
run_hv ryzen bochs --cpu-model ryzen --xmhf-bin "$root/build/svm"
run_native

# field FILE ACCESS KEY: the value of KEY= on ACCESS's line, or "-"
field() {
    v=$(awk -v a="$2" -v k="$3" '$2 == a { for (i = 3; i <= NF; i++) {
            split($i, kv, "="); if (kv[1] == k) print kv[2] } }' "$1" 2>/dev/null | head -n 1)
    echo "${v:--}"
}

echo
echo "xAPIC access cost, BSP only, 1000 accesses each (ticks = guest TSC ticks = instructions"
echo "on Bochs with clock: sync=none, hypervisor included; exits = VM exits per access)"
printf '%-11s | %7s | %15s | %15s | %15s | %15s\n' access native "MTF+SPP" MTF \
    "TF (no MTF)" "SVM (ryzen)"
printf '%-11s | %7s | %15s | %15s | %15s | %15s\n' "" ticks "ticks / exits" \
    "ticks / exits" "ticks / exits" "ticks / exits"
printf '%s\n' "------------+---------+-----------------+-----------------+-----------------+----------------"
any=0
for a in empty_loop xapic_read eoi_write icr_write; do
    n=$(field "$work/native.txt" $a ticks/access)
    [ "$n" != - ] && any=1
    row=$(printf '%-11s | %7s' $a "$n")
    for r in spp mtf tf ryzen; do
        t=$(field "$work/$r.txt" $a ticks/access)
        e=$(field "$work/$r.txt" $a exits/access)
        [ "$t" != - ] && any=1
        row="$row | $(printf '%15s' "$t / $e")"
    done
    echo "$row"
done
echo
echo "MTF+SPP: Bochs 3.0 corei7_icelake_u (EPT sub-page write permissions: only 0x280-0x37f"
echo "writes exit); MTF: Bochs 3.0 corei7_skylake_x; TF: Debian's Bochs 2.7 (no MTF);"
echo "SVM: the AMD build on Bochs 3.0 ryzen (RFLAGS.TF + #DB). Reads never exit (read-only"
echo "mapping). empty_loop is the timed loop without an access (in every figure)."
echo
echo "apic=zeroexit: no APIC access intercepted (Bochs 3.0, and Bochs 2.7 without MTF)"
printf '%-11s | %12s | %14s | %14s | %20s | %19s\n' access "native ticks" "zeroexit ticks" \
    "zeroexit exits" "ratio zeroexit/native" "2.7: ticks / exits"
printf '%s\n' "------------+--------------+----------------+----------------+----------------------+--------------------"
for a in empty_loop xapic_read eoi_write icr_write; do
    n=$(field "$work/native.txt" $a ticks/access)
    z=$(field "$work/zeroexit.txt" $a ticks/access)
    ze=$(field "$work/zeroexit.txt" $a exits/access)
    z7=$(field "$work/zeroexit-nomtf.txt" $a ticks/access)
    ze7=$(field "$work/zeroexit-nomtf.txt" $a exits/access)
    ratio=-
    if [ "$n" != - ] && [ "$z" != - ] && [ "$n" -gt 0 ]; then
        ratio=$(awk -v m="$z" -v n="$n" 'BEGIN { printf "%.2f", m / n }')
    fi
    [ "$z" != - ] && any=1
    printf '%-11s | %12s | %14s | %14s | %20s | %19s\n' $a "$n" "$z" "$ze" "$ratio" "$z7 / $ze7"
done
echo
echo "icr_write: a fixed self-IPI (shorthand self, vector 0xf1) with interrupts disabled."
echo "Logs: $work"

# ---- AMD SVM under QEMU 7.2 TCG (-cpu qemu64,+svm,+npt) ----
# The same bench guest under build/svm (make svm; built here if missing), and natively
# in QEMU from a disk image (the guest's loader in sector 0). QEMU's TSC follows the
# host's clock, not the instructions executed: ticks vary from run to run and with
# the host's load. Exits per access are exact; they are the deterministic figure.
echo "bench: svm: test2.py --emulator qemu-svm --xmhf-bin build/svm (log in $work/svm)" >&2
"$root/.jenkins/test2.py" --emulator qemu-svm --xmhf-bin "$root/build/svm" --smp 1 \
    --guest "$guest" --guest-done 'bench: done' --work-dir "$work/svm" >"$work/svm.out" 2>&1 \
    || echo "bench: svm: test2.py failed, see $work/svm.out" >&2
grep -a '^bench: ' "$work/svm/serial.log" 2>/dev/null >"$work/svm.txt" || true
echo "bench: qemu-native: QEMU TCG without the hypervisor" >&2
dd if=/dev/zero of="$work/qemu-disk.img" bs=512 count=20160 status=none
dd if="$root/tests/guest/build/loader.bin" of="$work/qemu-disk.img" conv=notrunc status=none
dd if="$guest" of="$work/qemu-disk.img" bs=512 seek=1 conv=notrunc status=none
timeout 120 qemu-system-x86_64 -accel tcg -cpu qemu64,+svm,+npt -smp 1 -m 128 \
    -drive file="$work/qemu-disk.img",format=raw,if=ide,index=0 -boot c -display none \
    -monitor none -serial file:"$work/qemu-native.log" -no-reboot \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 >"$work/qemu-native.out" 2>&1 || true
grep -a '^bench: ' "$work/qemu-native.log" 2>/dev/null >"$work/qnative.txt" || true

echo
echo "AMD SVM, QEMU 7.2 TCG, BSP only, 1000 accesses each (ticks = QEMU's TSC: host time)"
printf '%-11s | %12s | %9s | %9s | %17s\n' access "native ticks" "SVM ticks" "SVM exits" \
    "ratio SVM/native"
printf '%s\n' "------------+--------------+-----------+-----------+------------------"
for a in empty_loop xapic_read eoi_write icr_write; do
    n=$(field "$work/qnative.txt" $a ticks/access)
    m=$(field "$work/svm.txt" $a ticks/access)
    me=$(field "$work/svm.txt" $a exits/access)
    ratio=-
    if [ "$n" != - ] && [ "$m" != - ] && [ "$n" -gt 0 ]; then
        ratio=$(awk -v m="$m" -v n="$n" 'BEGIN { printf "%.0f", m / n }')
    fi
    for v in "$n" "$m"; do [ "$v" != - ] && any=1; done
    printf '%-11s | %12s | %9s | %9s | %17s\n' $a "$n" "$m" "$me" "$ratio"
done
echo
echo "SVM steps by RFLAGS.TF + #DB: one #NPF and one #DB exit per access. QEMU's TSC is"
echo "not instruction-exact (it is the host's time, and every world switch flushes QEMU's"
echo "TLB): the ticks are indicative only; exits per access is the deterministic figure."
# ---- VM exits by class during a Linux boot; boot and CPU hotplug cost ----
# The Linux guest of tests/linux (Debian 12's kernel, busybox, 2 CPUs, 256 MB) booted to
# its "linux-guest: done" under a build that prints every CPU's exit counters every 64
# exits (make EXITLOG=64: build/bench-vmx, build/bench-svm); the figures are each
# CPU's last line before "done", so they are exact to within 64. apic=zeroexit takes so
# few exits that its build prints at every exit (EXITLOG=1, build/bench-vmx1): exact.
# The guest's /init takes every CPU but 0 offline and online 3 times (tests/linux/init);
# a hotplug cycle is measured from one "CPU 1 is now offline" kernel line to the next
# (first to third, halved), in exits (all CPUs) and in TSC ticks from the kernel's
# timestamps at its calibrated TSC rate (virtual time: on Bochs the instructions run,
# the hypervisor's included, plus the idle stretches Bochs skips, so not a path
# length). The native Bochs 3.0 boot is the reference for ticks. BENCH_LINUX=0
# leaves this part out (five Linux boots, minutes each under Bochs; BENCH_LINUX_SPP=1
# adds the MTF+SPP one on corei7_icelake_u, where Linux does not boot even natively).
linux_run() {
    name=$1 emu=$2 bin=$3
    shift 3
    echo "bench: linux-$name: test2.py --emulator $emu $* (log in $work/linux-$name)" >&2
    "$root/.jenkins/test2.py" --emulator "$emu" "$@" --smp 2 --xmhf-bin "$root/$bin" \
        --qemu-image "$disk" --guest-done 'linux-guest: done' --memory 256 --timeout 2400 \
        --work-dir "$work/linux-$name" >"$work/linux-$name.out" 2>&1 \
        || echo "bench: linux-$name: test2.py failed, see $work/linux-$name.out" >&2
}

# linux_classes NAME ARCH: "cpu N: T exits: class n, ..." from the last counter lines.
linux_classes() {
    tr -d '\r' <"$work/linux-$1/serial.log" 2>/dev/null |
    awk -v arch="$2" '
        /linux-guest: done/ { exit }
        /^xmhf: exits cpu / { cpu = $4; sub(":", "", cpu); last[cpu] = $0 }
        END {
            if (arch == "vmx") {
                nm[0] = "exception/NMI (TF step #DB)"; nm[1] = "interrupt"; nm[10] = "CPUID";
                nm[18] = "VMCALL"; nm[28] = "CR"; nm[31] = "RDMSR"; nm[32] = "WRMSR";
                nm[37] = "MTF"; nm[48] = "EPT violation (APIC write)"; nm[30] = "I/O";
                nm[3] = "INIT"; nm[4] = "SIPI"; nm[8] = "NMI window"; nm[55] = "XSETBV"; nm[12] = "HLT";
            } else {
                nm[0] = "interrupt"; nm[1] = "NMI"; nm[18] = "CPUID"; nm[20] = "IRET";
                nm[28] = "MSR"; nm[64] = "exceptions (TF step #DB)";
                nm[65] = "#NPF (APIC write)"; nm[66] = "CR/DR"; nm[11] = "VMMCALL";
                nm[71] = "other";
            }
            for (cpu in last) {
                n = split(last[cpu], f, " "); out = "";
                for (i = 1; i <= n; i++) {
                    if (split(f[i], kv, ":") == 2 && kv[1] ~ /^[0-9]+$/) {
                        k = kv[1] + 0; name = (k in nm) ? nm[k] : "slot " k;
                        out = out (out == "" ? "" : ", ") name " " kv[2];
                    }
                }
                printf "  cpu %s: %s exits: %s\n", cpu, f[5], out;
            }
        }'
}

# linux_hotplug LOG LABEL: one row of boot and per-cycle figures from a serial log.
linux_hotplug() {
    tr -d '\r' 2>/dev/null <"$1" |
    awk -v label="$2" '
        function total(   c, s) { s = 0; for (c in last) s += last[c]; return s }
        function stamp(line,   t) {
            if (match(line, /^\[ *[0-9]+\.[0-9]+\]/) == 0) return -1
            t = substr(line, 2, RLENGTH - 2); gsub(/ /, "", t); return t + 0
        }
        /^xmhf: exits cpu / { c = $4; sub(":", "", c); last[c] = $5 }
        /tsc: Detected [0-9.]+ MHz/ && !mhz {
            for (i = 1; i <= NF; i++) if ($i == "MHz") mhz = $(i - 1) + 0
        }
        /linux-guest: \/init started/ && boot_t == "" {
            for (i = 1; i <= NF; i++) if ($i == "uptime") boot_t = $(i + 1) + 0
            boot_x = total()
        }
        /CPU 1 is now offline/ { n++; t[n] = stamp($0); x[n] = total() }
        /linux-guest: done/ { exit }
        END {
            bt = bx = ct = cx = "-"
            if (boot_t != "" && mhz) bt = sprintf("%.0f", boot_t * mhz * 1e6)
            if (boot_t != "" && length(last)) bx = boot_x
            if (n >= 2) {
                if (t[1] >= 0 && t[n] >= 0 && mhz)
                    ct = sprintf("%.0f", (t[n] - t[1]) * mhz * 1e6 / (n - 1))
                if (length(last)) cx = sprintf("%.0f", (x[n] - x[1]) / (n - 1))
            }
            printf "%-34s | %11s | %14s | %16s | %15s\n", label, bx, bt, cx, ct
        }'
}

if [ "${BENCH_LINUX:-1}" != 0 ]; then
    disk=$(cd "$root" && tests/linux/build-disk.sh 2>"$work/disk.log" | tail -n 1)
    rm -rf "$root/build/bench-vmx" "$root/build/bench-svm" "$root/build/bench-vmx1"   # the flag is not a dependency
    make -s -C "$root" OUT=build/bench-vmx TARGET_ARCH=x86-vmx EXITLOG=64 all \
        >"$work/exitlog-build.log" 2>&1 &&
    make -s -C "$root" OUT=build/bench-svm TARGET_ARCH=x86-svm EXITLOG=64 all \
        >>"$work/exitlog-build.log" 2>&1 &&
    make -s -C "$root" OUT=build/bench-vmx1 TARGET_ARCH=x86-vmx EXITLOG=1 all \
        >>"$work/exitlog-build.log" 2>&1 || echo "bench: the EXITLOG builds failed" >&2
    if [ -f "$disk" ]; then
        # Linux 6.1 stops after "LSM: Security Framework initializing" on Bochs 3.0's
        # corei7_icelake_u even without the hypervisor (it then runs 40 minutes to the
        # timeout): that row only on request.
        if [ "${BENCH_LINUX_SPP:-0}" = 1 ]; then
            linux_run spp bochs build/bench-vmx --cpu-model corei7_icelake_u
        else
            echo "bench: linux-spp: left out (BENCH_LINUX_SPP=1: Linux does not boot on Bochs's corei7_icelake_u, natively either)" >&2
        fi
        linux_run mtf bochs build/bench-vmx
        linux_run tf bochs-nomtf build/bench-vmx
        linux_run svm qemu-svm build/bench-svm
        linux_run zeroexit bochs build/bench-vmx1 --cmdline apic=zeroexit
        linux_run zeroexit-nomtf bochs-nomtf build/bench-vmx1 --cmdline apic=zeroexit
        echo "bench: linux-native: Bochs 3.0 without the hypervisor (tests/linux/run.sh)" >&2
        (cd "$root" && LINUX_RUNS=native-bochs LINUX_OUT="$work" tests/linux/run.sh) \
            >"$work/linux-native.out" 2>&1 ||
            echo "bench: linux-native: the run failed, see $work/linux-native.out" >&2
        echo
        echo "VM exits by class, Linux boot to 'linux-guest: done' (2 CPUs; exact to 64, zeroexit exact)"
        for r in "spp vmx MTF+SPP (Bochs 3.0 icelake_u)" "mtf vmx MTF (Bochs 3.0 skylake_x)" \
                 "tf vmx TF (Bochs 2.7)" "zeroexit vmx apic=zeroexit (Bochs 3.0 skylake_x)" \
                 "zeroexit-nomtf vmx apic=zeroexit (Bochs 2.7, restarts through INIT)" \
                 "svm svm SVM (QEMU TCG)"; do
            set -- $r
            n=$1 a=$2
            shift 2
            echo "$*:"
            linux_classes "$n" "$a"
        done
        echo
        echo "Linux boot and CPU hotplug (2 CPUs): exits summed over the CPUs; ticks from the"
        echo "kernel's clock (virtual time); a cycle = cpu1 offline + online"
        printf '%-34s | %11s | %14s | %16s | %15s\n' run "boot exits" "boot ticks" \
            "exits per cycle" "ticks per cycle"
        printf '%s\n' "-----------------------------------+-------------+----------------+------------------+----------------"
        for r in "native-bochs native Bochs 3.0, no hypervisor" \
                 "linux-zeroexit apic=zeroexit (Bochs 3.0)" \
                 "linux-zeroexit-nomtf apic=zeroexit (Bochs 2.7)" \
                 "linux-mtf apic=step, MTF (Bochs 3.0)" \
                 "linux-spp apic=step, MTF+SPP (Bochs 3.0)" \
                 "linux-tf apic=step, TF (Bochs 2.7)" \
                 "linux-svm AMD build (QEMU TCG)"; do
            set -- $r
            d=$1
            shift
            linux_hotplug "$work/$d/serial.log" "$*"
        done
        echo
        echo "boot = kernel start to /init (its uptime line; exits: power-on to /init). Ticks"
        echo "are virtual time (idle included), not path length. Exits exact to 64 per CPU for"
        echo "the EXITLOG=64 builds, exact for apic=zeroexit; QEMU's ticks follow the host's"
        echo "clock (indicative only)."
    else
        echo "bench: no Linux disk (tests/linux/build-disk.sh), see $work/disk.log" >&2
    fi
fi

[ "$any" = 1 ]

#!/bin/sh
# Runs the test guest on Bochs WITHOUT the hypervisor, as a check of the guest's own
# machinery (mode switches, serial output, the IDT, fault recovery) and of the cases
# that must behave the same natively (the SMP and xAPIC cases).
#
#   sh run-bochs.sh LOADER_BIN GUEST_BIN MODE      (normally via make, see Makefile)
#
# MODE plain:  the real guest.bin. The hypercall cases are expected to FAIL (VMCALL
#              raises #UD outside VMX non-root operation, caught by the guest's IDT);
#              every other case must PASS (the STATS checks report "native: no exit
#              counts"); the run must end with the "N passed, N failed" line.
# MODE fakehv: the VARIANT=fakehv build, whose fakehv.c answers VMCALL from the #UD,
#              plays a protected region and edits the E820 map as the hypervisor
#              would: every case must PASS.
# MODE bench:  the VARIANT=bench build: must print its figures and "bench: done".
#
# Environment: BOCHS (default bochs: Debian's 2.7; a Bochs 3.0 binary is recognised by
# its banner and run with the nogui display), SMP CPUs (default 1), BOCHS_TIMEOUT
# seconds (default 120), KEEP=1 keeps the work directory.
set -eu

loader=$1
guest=$2
mode=${3:-plain}
bochs=${BOCHS:-bochs}
limit=${BOCHS_TIMEOUT:-120}
smp=${SMP:-1}

command -v "$bochs" >/dev/null 2>&1 || { echo "bochs-selftest: $bochs not found" >&2; exit 2; }
# Bochs 3.0 (as tools/build-bochs3.sh builds it) has no debugger and a nogui display;
# Debian's 2.7 has the debugger built in and runs headless with 'term' and -rc.
if "$bochs" --help 2>&1 | grep -q 'Bochs x86 Emulator 3'; then
    display=nogui; rcargs=
else
    display=term; rcargs="-rc cmds"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/guest-bochs.XXXXXX")
if [ "${KEEP:-0}" != 1 ]; then
    trap 'rm -rf "$work"' EXIT
fi

# A 10 MiB flat disk (20 cylinders, 16 heads, 63 sectors): the loader in sector 0,
# guest.bin from sector 1.
dd if=/dev/zero of="$work/disk.img" bs=512 count=20160 status=none
dd if="$loader" of="$work/disk.img" conv=notrunc status=none
dd if="$guest" of="$work/disk.img" bs=512 seek=1 conv=notrunc status=none

cat > "$work/bochsrc" <<RC
display_library: $display
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
megs: 128
cpu: count=$smp, model=corei7_skylake_x, ignore_bad_msrs=0
clock: sync=none
ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14
ata0-master: type=disk, path=disk.img, mode=flat, cylinders=20, heads=16, spt=63
boot: disk
com1: enabled=1, mode=file, dev=serial.log
log: bochs.log
panic: action=fatal
error: action=report
RC
echo c > "$work/cmds"

echo "bochs-selftest: running $bochs ($smp CPUs) in $work (limit ${limit}s)"
status=0
# shellcheck disable=SC2086
(cd "$work" && TERM=${TERM:-vt100} timeout -k 5 "$limit" "$bochs" -q -f bochsrc $rcargs \
    </dev/null >bochs.out 2>&1) || status=$?
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    echo "bochs-selftest: Bochs did not stop by itself within ${limit}s; killed it"
fi

echo "---- serial output ----"
cat "$work/serial.log" 2>/dev/null || true
echo "-----------------------"

log=$work/serial.log
fail=0
expect() {      # expect PATTERN WHY: a serial line matching the grep -E PATTERN
    grep -Eq "$1" "$log" 2>/dev/null || { echo "bochs-selftest: $2" >&2; fail=1; }
}
# The closing line's counts, with skips (a case the machine cannot run) counted as
# "not failed": expect_counts PASSED_OR_SKIPPED FAILED.
expect_counts() {
    line=$(grep -aE '^guest: [0-9]+ passed, [0-9]+ failed' "$log" 2>/dev/null | tail -n 1)
    p=$(echo "$line" | sed -n 's/^guest: \([0-9]*\) passed.*/\1/p')
    f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    s=$(echo "$line" | sed -n 's/.*, \([0-9]*\) skipped.*/\1/p')
    if [ -z "$line" ] || [ $((p + ${s:-0})) != "$1" ] || [ "$f" != "$2" ]; then
        echo "bochs-selftest: expected $1 passed or skipped, $2 failed; got '${line#guest: }'" >&2
        fail=1
    fi
}
if [ "$mode" != bench ]; then
    expect '^guest: [0-9]+ passed, [0-9]+ failed' "no closing 'N passed, N failed' line"
fi
if grep -q 'FATAL' "$log" 2>/dev/null; then
    echo "bochs-selftest: the guest reported a fatal exception" >&2; fail=1
fi
smp_cases="ap_startup ap_starts_ap ipi_all_pairs apic_access_loop nmi_storm \
           apic_fault_movs apic_guest_tf apic_relocate apic_movs_registers apic_rep_iteration
           apic_event_push apic_write_straddle apic_base_anywhere ap_restart x2apic_mode \
           e820_hook_odd debug_dr7_exit debug_apic_breakpoint debug_apic_tf debug_rf_emulated \
           apic_step_interrupts \
           nmi_while_blocked init_self init_state init_starting init_cross \
           init_physical init_bsp init_restart_refused wprot_apic_off"
case $mode in
plain)
    for t in boot_state e820_call memsize_calls fault_recovery virt_hidden mtrr_writes cr0_writes \
             task_switches $smp_cases; do
        expect "^guest: (PASS|SKIP) $t" "$t did not pass"
    done
    # Without the hypervisor, VMCALL must have been caught as #UD, not crashed the guest.
    expect '^guest: FAIL hello_hypercall: HELLO VMCALL raised #UD' \
        "hello_hypercall did not report a caught #UD"
    # The hypapp cases say they are skipped (no hypervisor).
    expect '^guest: SKIP wprot_pages: no hypervisor' "wprot_pages did not skip"
    expect '^guest: SKIP iomon_ports: no hypervisor' "iomon_ports did not skip"
    expect '^guest: SKIP user_hypercall: no hypervisor' "user_hypercall did not skip"
    expect '^guest: SKIP dma_protection: no hypervisor' "dma_protection did not skip"
    expect_counts 42 5
    ;;
fakehv)
    for t in boot_state e820_call e820_hides_hypervisor memsize_calls hello_hypercall \
             unknown_hypercall hypervisor_write_blocked runtime_info fault_recovery \
             virt_hidden mtrr_writes cr0_writes task_switches $smp_cases; do
        expect "^guest: (PASS|SKIP) $t" "$t did not pass"
    done
    expect '^guest: SKIP wprot_pages: hypapp wprot is not built in' \
        "wprot_pages did not skip"
    expect '^guest: SKIP dma_protection: (no hypervisor|the hypervisor does not answer)' \
        "dma_protection did not skip"
    expect_counts 47 0
    ;;
bench)
    expect '^bench: xapic_read ticks/access=' "no xapic_read figure"
    expect '^bench: done' "no 'bench: done' line"
    ;;
*)
    echo "bochs-selftest: unknown mode $mode" >&2; exit 2 ;;
esac
if [ "$fail" != 0 ]; then
    echo "bochs-selftest: FAILED (Bochs log: $work/bochs.log; set KEEP=1 to keep it)" >&2
    exit 1
fi
echo "bochs-selftest: OK ($mode)"

#!/bin/sh
# Checks ./configure against XMHF64's options and this project's, and the hypapp layouts
# --with-approot accepts. Each configure runs in its own scratch directory (configure.gen
# writes config.mk into the current directory), so the tree's own config.mk is untouched.
# XMHF64's hypapp layout is also built (make with the settings configure wrote, into
# build/approot-x64). Prints one line per case and "N passed, N failed".
#
#   tests/configure/run.sh        (make check runs it)
set -u
cd "$(dirname "$0")/../.."
top=$(pwd)
./autogen.sh >/dev/null 2>&1 || { echo "autogen.sh failed"; echo "0 passed, 1 failed"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/xmhf-configure.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
n=0

# case WANT_STATUS REGEX ARGS...: configure must exit WANT_STATUS and print REGEX.
case_() {
    want=$1; rx=$2; shift 2
    n=$((n + 1))
    d=$tmp/c$n; mkdir -p "$d"
    (cd "$d" && "$top/configure.gen" "$@") >"$d/out" 2>&1
    rc=$?
    if [ "$rc" = "$want" ] && grep -Eq -- "$rx" "$d/out"; then
        pass=$((pass + 1)); echo "PASS configure $*"
    else
        fail=$((fail + 1)); echo "FAIL configure $*: exit $rc (want $want), /$rx/ $(grep -Eq -- "$rx" "$d/out" && echo found || echo 'not found')"
        sed 's/^/    | /' "$d/out" | tail -n 5
    fi
}
# config VAR VALUE: the last case's config.mk has VAR = VALUE.
config() {
    if grep -Eq "^$1 *= $2\$" "$tmp/c$n/config.mk" 2>/dev/null; then
        pass=$((pass + 1)); echo "PASS   config.mk $1 = $2"
    else
        fail=$((fail + 1)); echo "FAIL   config.mk $1: $(grep "^$1 " "$tmp/c$n/config.mk" 2>/dev/null || echo missing), want $2"
    fi
}

# What works.
case_ 0 'XMHF [0-9.]+: target x86-vmx/amd64' --with-target-subarch=amd64 --with-target-platform=x86-pc
case_ 0 'target x86-svm/amd64' --with-target-arch=x86-svm
config TARGET_ARCH x86-svm
case_ 0 'gcc -O3 -Wno-array-bounds' "--with-opt=-O3 -Wno-array-bounds" --enable-debug-symbols
config OPT_FLAGS '-O3 -Wno-array-bounds'
config DEBUG_SYMBOLS yes
case_ 0 'debug symbols no' --disable-debug-symbols --enable-ld-gc-sections
config LD_GC_SECTIONS yes
case_ 0 'debug serial 0x2f8' --enable-debug-serial=0x2f8
case_ 0 'XMHF' --with-singlestep=tf
config SINGLESTEP 2
# XMHF64's tools/ci/build.sh defaults: accepted, each with a note.
case_ 0 'note: --with-amd64-max-phys-addr=0x140000000: not needed' --with-target-subarch=amd64 \
    --with-amd64-max-phys-addr=0x140000000 --disable-drt --enable-debug-qemu \
    --with-extra-ap-init-count=0 --with-sl-base=0x10000000 --disable-nested-virtualization \
    --enable-skip-runtime-bss --enable-skip-bootloader-hash --enable-skip-init-smp \
    --disable-update-intel-ucode --disable-hide-x2apic --enable-mp --disable-target-uefi
case_ 0 'note: --with-vmx-nested-max-active-ept: ignored' --with-vmx-nested-max-active-ept=8
case_ 0 'note: --with-libbaremetalsrc=./x: not used' --with-libbaremetalsrc=./x
# What is refused, with the reason.
case_ 1 "i386: not supported yet" --with-target-subarch=i386
case_ 1 '--enable-drt: no dynamic root of trust .*TXT or SKINIT' --enable-drt
case_ 1 '--enable-target-uefi: UEFI boot is not supported' --enable-target-uefi
case_ 1 '--enable-nested-virtualization: not supported' --enable-nested-virtualization
case_ 1 '--enable-update-intel-ucode: microcode' --enable-update-intel-ucode
case_ 1 '--enable-debug-vga: the runtime never writes to the screen' --enable-debug-vga
case_ 1 '--disable-debug-serial: the serial port is the hypervisor.s only console' --disable-debug-serial
case_ 1 '--enable-debug-event-logger: not implemented' --enable-debug-event-logger
case_ 1 '--enable-hide-x2apic: not implemented' --enable-hide-x2apic
case_ 1 '--disable-mp: every processor' --disable-mp
case_ 1 '--enable-optimize-nested-virt: not implemented' --enable-optimize-nested-virt
case_ 1 '--enable-quiesce-in-guest-mem-pio-traps: not implemented' --enable-quiesce-in-guest-mem-pio-traps
case_ 1 'allow-hypapp-disable-igfx-iommu: not supported' --enable-allow-hypapp-disable-igfx-iommu
case_ 1 'unknown option\(s\): --enable-no-such-thing' --enable-no-such-thing
case_ 1 'cannot compile with these flags' --with-opt=-Onope
case_ 1 'give a hex I/O port' --enable-debug-serial=ttyS0
case_ 1 'give an address' --with-amd64-max-phys-addr=lots

# Hypapp layouts: flat (this project), XMHF64's src/ with subdirectories and include/,
# XMHF64's app/, an absolute path; then each is built.
app=$top/hypapps/helloworld
mkdir -p "$tmp/apps/flat" "$tmp/apps/x64/src/sub" "$tmp/apps/x64/src/include" "$tmp/apps/old/app"
cp "$app"/*.c "$tmp/apps/flat/"
sed 's/"xmhf-hypapp.h"/"xmhf-hypapp.h"\n#include "myapp.h"/' "$app/helloworld.c" > "$tmp/apps/x64/src/sub/main.c"
echo '#define MYAPP_H 1' > "$tmp/apps/x64/src/include/myapp.h"
cp "$app"/*.c "$tmp/apps/old/app/"
case_ 0 "hypapp $tmp/apps/flat," --with-approot="$tmp/apps/flat"
config APP_DEEP no
case_ 0 "hypapp $tmp/apps/x64," "--with-approot=$tmp/apps/x64/"
config APP_SRCDIR "$tmp/apps/x64/src"
config APP_DEEP yes
x64=$n
case_ 0 "hypapp $tmp/apps/old," --with-approot="$tmp/apps/old"
config APP_SRCDIR "$tmp/apps/old/app"
case_ 0 'hypapp hypapps/helloworld,' --with-approot=hypapps/helloworld
case_ 1 'no such directory' --with-approot=hypapps/does-not-exist
mkdir -p "$tmp/apps/empty"
case_ 1 'holds no .c files' --with-approot="$tmp/apps/empty"

# Built: XMHF64's layout from an absolute path (the flat one is the default build's; the
# app/ one differs from it only in APP_SRCDIR, checked above).
for c in x64:$x64; do
    name=${c%%:*}; i=${c#*:}
    settings=$(sed -n 's/^\(APPROOT\|APP_SRCDIR\|APP_DEEP\|APP_INCLUDES\) *= \(.*\)$/\1=\2/p' "$tmp/c$i/config.mk")
    log=$tmp/build-$name.log
    # shellcheck disable=SC2086
    if (IFS='
'; make -s -j"$(nproc)" OUT="build/approot-$name" $settings all) >"$log" 2>&1 \
       && [ -f "build/approot-$name/hypervisor-x86-amd64.bin.gz" ]; then
        pass=$((pass + 1)); echo "PASS build with the $name hypapp layout"
    else
        fail=$((fail + 1)); echo "FAIL build with the $name hypapp layout"; tail -n 15 "$log" | sed 's/^/    | /'
    fi
done

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]

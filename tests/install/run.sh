#!/bin/sh
# Checks `make install DESTDIR=...`: the two binaries land in DESTDIR/boot, the GRUB
# script in DESTDIR/etc/grub.d (executable); run as update-grub would run it, the script
# prints the README's entry, which grub-script-check accepts; with the binaries absent it
# prints nothing; `make uninstall` removes all three. Prints "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d "${TMPDIR:-/tmp}/xmhf-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "PASS $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

d=$tmp/root
make -s install DESTDIR="$d" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; bad "make install DESTDIR=..."; }
check "init-x86-amd64.bin in /boot" '[ -f "$d/boot/init-x86-amd64.bin" ] && cmp -s "$d/boot/init-x86-amd64.bin" init-x86-amd64.bin'
check "hypervisor-x86-amd64.bin.gz in /boot" 'cmp -s "$d/boot/hypervisor-x86-amd64.bin.gz" hypervisor-x86-amd64.bin.gz'
check "/etc/grub.d/42_xmhf executable" '[ -x "$d/etc/grub.d/42_xmhf" ]'
# As update-grub runs it, with the binaries where the script looks (BOOTDIR inside DESTDIR).
b=$tmp/boot2
make -s install DESTDIR= BOOTDIR="$b" GRUBDDIR="$tmp/grub.d" >"$tmp/install2.log" 2>&1 || cat "$tmp/install2.log"
sh "$tmp/grub.d/42_xmhf" >"$tmp/entry.cfg" 2>"$tmp/entry.err"
check "the script prints the entry" 'grep -q "^menuentry \"XMHF $(cat VERSION) (x86-" "$tmp/entry.cfg" &&
    grep -q "multiboot $b/init-x86-amd64.bin serial=115200,8n1,0x" "$tmp/entry.cfg" &&
    grep -q "module    $b/hypervisor-x86-amd64.bin.gz" "$tmp/entry.cfg" &&
    grep -q "module    --nounzip (hd0)+1" "$tmp/entry.cfg"'
if command -v grub-script-check >/dev/null 2>&1; then
    check "grub-script-check accepts the entry" 'grub-script-check "$tmp/entry.cfg"'
fi
rm -f "$b/init-x86-amd64.bin"
check "no binaries: no entry" '[ -z "$(sh "$tmp/grub.d/42_xmhf" 2>/dev/null)" ]'
make -s uninstall DESTDIR="$d" >/dev/null 2>&1
check "make uninstall removes the three files" '[ ! -e "$d/boot/init-x86-amd64.bin" ] && [ ! -e "$d/boot/hypervisor-x86-amd64.bin.gz" ] && [ ! -e "$d/etc/grub.d/42_xmhf" ]'
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]

#!/bin/sh
# Builds the Linux guest's disk: a raw image a BIOS (or the hypervisor, which starts the
# disk's first sector at 0000:7c00 with DL=0x80) boots from its MBR.
#
#   sector 0         syslinux's MBR code (/usr/lib/syslinux/mbr/mbr.bin) and one active
#                    FAT16 partition in the partition table
#   sector 2048 ...  the FAT partition: syslinux (ldlinux.sys, ldlinux.c32), syslinux.cfg,
#                    vmlinuz from Debian 12's kernel package, initrd.gz (busybox-static)
#
# No loop devices, no mounting: mkfs.fat writes the file system into the image at an
# offset, syslinux and mcopy reach it through mtools, the partition table is written by
# a few lines of Python.
#
# Packages come from Debian's archive with `apt-get download`, as this machine's apt is
# configured. The image is cached in ${XMHF_CACHE:-~/.cache/xmhf}/linux/<key>/disk.img,
# where the key names the kernel, busybox and syslinux versions and a hash of this script
# (a change to /init or the command line builds a new image). A cached image is reused
# without asking the network.
#
# Usage: tests/linux/build-disk.sh          (progress on stderr; last stdout line: the path)
# Environment: XMHF_CACHE, LINUX_APPEND (replaces the kernel command line below).
set -eu

say() { echo "build-disk: $*" >&2; }
die() { echo "build-disk: ERROR: $*" >&2; exit 1; }

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${XMHF_CACHE:-$HOME/.cache/xmhf}/linux

# Kernel command line: serial console and early printk (we want to see the whole boot),
# reboot at once on a panic, no KASLR (addresses in a failure report stay comparable
# between runs), trust the TSC and skip the timer checks (the emulators' clocks are
# not real time), no speculative-execution mitigations (shorter boot, nothing to protect).
APPEND=${LINUX_APPEND:-"console=ttyS0,115200 earlyprintk=serial,ttyS0,115200 panic=-1 nokaslr tsc=reliable no_timer_check mitigations=off rdinit=/init"}

# ---------------------------------------------------------------- host tools
need=""
command -v mkfs.fat >/dev/null 2>&1 || need="$need dosfstools"
command -v mcopy >/dev/null 2>&1 || need="$need mtools"
command -v syslinux >/dev/null 2>&1 || need="$need syslinux"
[ -f /usr/lib/syslinux/mbr/mbr.bin ] || need="$need syslinux-common"
command -v cpio >/dev/null 2>&1 || need="$need cpio"
command -v python3 >/dev/null 2>&1 || need="$need python3"
if [ -n "$need" ]; then
    [ "$(id -u)" = 0 ] || die "missing Debian packages:$need (install them as root)"
    say "installing missing Debian packages:$need"
    apt-get install -y --no-install-recommends $need >&2 ||
        { apt-get update >&2 && apt-get install -y --no-install-recommends $need >&2; } ||
        die "apt-get install$need failed"
fi

# ---------------------------------------------------------------- package versions
candidate() {   # the version apt would download for package $1, empty if none
    apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)' || true
}
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
       sed -n 's/^ *Depends: *\(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1)
if [ -z "$kpkg" ]; then
    say "apt knows no linux-image-amd64: running apt-get update"
    apt-get update >&2 || die "apt-get update failed"
    kpkg=$(apt-cache depends linux-image-amd64 |
           sed -n 's/^ *Depends: *\(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1)
fi
[ -n "$kpkg" ] || die "cannot find the kernel package linux-image-amd64 depends on"
kver=$(candidate "$kpkg")
bver=$(candidate busybox-static)
[ -n "$kver" ] && [ -n "$bver" ] || die "no candidate for $kpkg or busybox-static (apt-get update?)"
sver=$(dpkg-query -W -f '${Version}' syslinux 2>/dev/null || echo unknown)
shash=$( { cat "$0" "$HERE/init"; echo "$APPEND"; } | sha256sum | cut -c1-12)
key=$(printf '%s_%s+busybox_%s+syslinux_%s+%s' "$kpkg" "$kver" "$bver" "$sver" "$shash" |
      tr -c 'A-Za-z0-9._+\n-' '_')
out=$CACHE/$key
if [ -f "$out/disk.img" ]; then
    say "cached: $out/disk.img"
    echo "$out/disk.img"
    exit 0
fi
say "building $out ($kpkg $kver, busybox-static $bver)"

# ---------------------------------------------------------------- fetch
tmp=$(mktemp -d "${TMPDIR:-/tmp}/xmhf-linux-disk.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
chmod 755 "$tmp"
mkdir -p "$tmp/debs"
# apt's _apt user must be able to write where it downloads.
chmod 777 "$tmp/debs"
(cd "$tmp/debs" && apt-get download "$kpkg=$kver" "busybox-static=$bver" >&2) ||
    die "apt-get download $kpkg=$kver busybox-static=$bver failed"

# Only the kernel image out of the (large) package: its data tarball, one member.
dpkg-deb --fsys-tarfile "$tmp"/debs/linux-image-*.deb |
    tar -x -C "$tmp" --wildcards './boot/vmlinuz-*'
vmlinuz=$(ls "$tmp"/boot/vmlinuz-* | head -n 1)
[ -s "$vmlinuz" ] || die "no vmlinuz in $kpkg"
mkdir -p "$tmp/bb"
dpkg-deb -x "$tmp"/debs/busybox-static_*.deb "$tmp/bb"
[ -x "$tmp/bb/bin/busybox" ] || die "no /bin/busybox in busybox-static"

# ---------------------------------------------------------------- initramfs
root=$tmp/root
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/sbin" "$root/usr/bin" \
         "$root/usr/sbin" "$root/tmp"
cp "$tmp/bb/bin/busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
mknod -m 600 "$root/dev/console" c 5 1
mknod -m 666 "$root/dev/null" c 1 3
cp "$HERE/init" "$root/init"
chmod 755 "$root/init"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9n > "$tmp/initrd.gz"

# ---------------------------------------------------------------- disk
# 64 cylinders of 16 heads x 63 sectors (Bochs derives a flat image's geometry from
# its size, which must be a whole number of such cylinders); the partition starts at
# sector 2048 and runs to the end.
heads=16; spt=63; cyls=64
total=$((cyls * heads * spt))
start=2048
size=$((total - start))
img=$tmp/disk.img
rm -f "$img"
dd if=/dev/zero of="$img" bs=512 count=0 seek=$total 2>/dev/null
mkfs.fat -F 16 -n XMHFLINUX -h $start --offset=$start "$img" $((size / 2)) >&2
off=$((start * 512))
syslinux --install --offset $off "$img"
cat > "$tmp/syslinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND $APPEND
EOF
mcopy -i "$img@@$off" "$vmlinuz" ::vmlinuz
mcopy -i "$img@@$off" "$tmp/initrd.gz" ::initrd.gz
mcopy -i "$img@@$off" "$tmp/syslinux.cfg" ::syslinux.cfg
mdir -i "$img@@$off" :: >&2

python3 - "$img" /usr/lib/syslinux/mbr/mbr.bin $start $size $heads $spt <<'EOF'
import struct, sys
img, mbr_code, start, size, heads, spt = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])

def chs(lba):
    c, rest = divmod(lba, heads * spt)
    h, s = divmod(rest, spt)
    c = min(c, 1023)
    return bytes([h, ((c >> 2) & 0xc0) | (s + 1), c & 0xff])

code = open(mbr_code, "rb").read()
assert len(code) <= 440, "MBR code longer than 440 bytes"
# active, FAT16 with LBA (0x0e), from start to the end of the disk
entry = bytes([0x80]) + chs(start) + bytes([0x0e]) + chs(start + size - 1) + \
        struct.pack("<II", start, size)
with open(img, "r+b") as f:
    f.write(code.ljust(446, b"\0"))
    f.write(entry + bytes(48) + b"\x55\xaa")
EOF

mkdir -p "$out"
cp "$vmlinuz" "$out/vmlinuz"
cp "$tmp/initrd.gz" "$out/initrd.gz"
cp "$tmp/syslinux.cfg" "$out/syslinux.cfg"
mv "$img" "$out/disk.img"
say "done: $out/disk.img ($(du -k "$out/disk.img" | cut -f1) KiB used)"
echo "$out/disk.img"

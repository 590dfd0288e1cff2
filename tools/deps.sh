#!/bin/sh
# Installs the Debian packages a build or test needs, only when something is missing.
# Usage: tools/deps.sh build|check|demo
set -e
pkgs="gcc make autoconf binutils python3 grub-pc-bin grub-common xorriso mtools"
case "$1" in
  check) pkgs="$pkgs libcmocka-dev clang libclang-rt-14-dev bochs bochs-term bochsbios vgabios qemu-system-x86 qemu-utils xz-utils dpkg-dev build-essential syslinux syslinux-common dosfstools cpio" ;;
  demo)  pkgs="$pkgs bochs bochs-term bochsbios vgabios xz-utils dpkg-dev build-essential" ;;
esac
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends $missing

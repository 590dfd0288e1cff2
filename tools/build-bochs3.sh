#!/bin/sh
# Builds Bochs 3.0 (the monitor-trap-flag-capable VMX model, DESIGN.md section 6) from
# Debian's own source package of the next release and caches it outside the tree.
# Prints the path of the bochs binary on its last line. A second run costs nothing.
set -e
CACHE="${XMHF_CACHE:-$HOME/.cache/xmhf}"
PREFIX="$CACHE/bochs-3.0"
BIN="$PREFIX/bin/bochs"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$CACHE/apt/lists/partial" "$CACHE/apt/archives/partial" "$CACHE/src"

# Reuse the mirror this machine already uses; never hard-code a host.
uri=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 | awk '{print $1}')
[ -n "$uri" ] || uri=$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /:\/\//) {print $i; exit}}' /etc/apt/sources.list 2>/dev/null)
[ -n "$uri" ] || { echo "build-bochs3: no Debian mirror found in /etc/apt" >&2; exit 1; }
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main" > "$CACHE/apt/sources.list"
APTOPT="-o Dir::Etc::SourceList=$CACHE/apt/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$CACHE/apt/lists -o Dir::Cache::Archives=$CACHE/apt/archives -o APT::Sandbox::User=root"
# shellcheck disable=SC2086
apt-get $APTOPT update -q >&2

srcidx=$(ls "$CACHE"/apt/lists/*trixie_main_source_Sources* | head -n1)
case "$srcidx" in
  *.xz) cat_idx="xz -dc" ;; *.gz) cat_idx="gzip -dc" ;; *.lz4) cat_idx="lz4 -dc" ;; *) cat_idx="cat" ;;
esac
# The bochs stanza: its directory and the sha256 + name of the upstream tarball.
stanza=$($cat_idx "$srcidx" | awk 'BEGIN{RS=""} /(^|\n)Package: bochs\n/ {print; exit}')
dir=$(printf '%s\n' "$stanza" | sed -n 's/^Directory: //p')
line=$(printf '%s\n' "$stanza" | awk '/^Checksums-Sha256:/{f=1;next} /^[^ ]/{f=0} f && /orig\.tar/ {print $1, $3}')
sum=${line% *}; file=${line#* }
[ -n "$dir" ] && [ -n "$file" ] || { echo "build-bochs3: bochs not found in trixie Sources" >&2; exit 1; }
case "$file" in *3.0*) ;; *) echo "build-bochs3: trixie has $file, expected Bochs 3.0" >&2; exit 1 ;; esac

tarball="$CACHE/src/$file"
if ! echo "$sum  $tarball" | sha256sum -c --status 2>/dev/null; then
  echo "build-bochs3: fetching $uri/$dir/$file" >&2
  python3 - "$uri/$dir/$file" "$tarball" <<'PY'
import sys, urllib.request, shutil
with urllib.request.urlopen(sys.argv[1], timeout=120) as r, open(sys.argv[2], "wb") as f:
    shutil.copyfileobj(r, f)
PY
  echo "$sum  $tarball" | sha256sum -c --status || { echo "build-bochs3: checksum mismatch for $file" >&2; exit 1; }
fi

build="$CACHE/src/build"
rm -rf "$build"; mkdir -p "$build"
tar -C "$build" -xf "$tarball"
cd "$build"/*/
# Flags measured in DESIGN.md section 6: VMX level 2 (EPT, unrestricted guest, MTF) and SVM.
./configure --prefix="$PREFIX" --with-nogui --with-term --enable-x86-64 --enable-smp \
  --enable-cpu-level=6 --enable-vmx=2 --enable-svm --enable-avx --enable-evex \
  --enable-all-optimizations --enable-pci --enable-usb=no --disable-plugins \
  --enable-debugger=no --enable-iodebug >"$CACHE/src/configure.log" 2>&1 \
  || { tail -n 30 "$CACHE/src/configure.log" >&2; exit 1; }
make -j"$(nproc)" >"$CACHE/src/make.log" 2>&1 || { tail -n 30 "$CACHE/src/make.log" >&2; exit 1; }
mkdir -p "$PREFIX/bin"
cp bochs "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
rm -rf "$build"
echo "$BIN"

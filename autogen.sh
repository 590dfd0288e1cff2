#!/bin/sh
# Generates configure.gen, the autoconf script behind ./configure, from configure.ac
# (XMHF64's first build step; ./configure also does it by itself when configure.gen is
# missing or older than configure.ac). Installs autoconf first if it is missing.
set -e
cd "$(dirname "$0")"
command -v autoconf >/dev/null 2>&1 || tools/deps.sh build >&2
autoconf -o configure.gen configure.ac
rm -rf autom4te.cache

#!/bin/sh
# `make check`: every test, one line per step with its verdict. Compiler, apt and
# emulator output goes to log files under build/check/ and is shown only when its step
# fails. Ends with the line "N passed, N failed".
#
# Steps: Debian packages; the builds (CHECK_BUILDS, from the Makefile; the build matrix
# with CHECK_MATRIX); the fuzz targets (tests/fuzz, FUZZ_SECONDS each); host unit tests (cmocka) and the runner's own unit tests (python);
# every integration run of tests/integration.txt; the Linux guest (XMHF_CHECK_LINUX=0
# leaves it out).
#
# Counting: a build is one test; cmocka and unittest cases count one each; an integration
# run counts its test guest's cases (a run that dies before its guest reports counts as one
# failure; a boot that must stop with a message counts one). Skipped cases (the guest's
# SKIP lines) and skipped runs (test2.py exit 77, e.g. no nested KVM here) are neither
# passed nor failed: they are listed on the "skipped" line before the closing line.
set -u
cd "$(dirname "$0")/.."
out=build/check
mkdir -p "$out"
rm -f "$out/skipped"
pass=0
fail=0
skip=0
t_all=$(date +%s)

add() { pass=$((pass + $1)); fail=$((fail + $2)); skip=$((skip + ${3:-0})); }
# say NAME VERDICT DETAIL: one step's line.
say() { printf '%-30s %-4s %s\n' "$1" "$2" "$3"; }
# show LOG: the end of a failed step's log, indented.
show() { echo "    ---- last lines of $1"; tail -n "${2:-40}" "$1" | sed 's/^/    | /'; }
# nums LINE: "P F S" from "... P passed, F failed[, S skipped]".
nums() {
    echo "$1" | sed -n 's/.*[^0-9]\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed\(, \([0-9][0-9]*\) skipped\)\{0,1\}.*/\1 \2 \4/p;
                       s/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed\(, \([0-9][0-9]*\) skipped\)\{0,1\}.*/\1 \2 \4/p' | head -n 1
}

# script_step NAME LOG LIST_RE COMMAND...: a step whose COMMAND ends "N passed, N failed"
# (its log in LOG); lines matching LIST_RE (if not empty) are listed under the verdict,
# the end of the log on a failure. No summary line counts one failure.
script_step() {
    name=$1; log=$2; list=$3; shift 3
    start=$(date +%s)
    "$@" >"$log" 2>&1
    rc=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n1)
    if [ -n "$line" ]; then
        set -- $(nums "$line")
        p=$1; f=$2
        [ $rc -eq 0 ] || [ "$f" -gt 0 ] || f=$((f + 1))
    else
        p=0; f=1
    fi
    add "$p" "$f"
    if [ "$f" = 0 ]; then v=PASS; else v=FAIL; fi
    say "$name" "$v" "$p passed, $f failed$([ -n "$line" ] || echo ': no summary line (build failed?)') ($(( $(date +%s) - start ))s)"
    [ -z "$list" ] || grep -E "$list" "$log" | sed 's/^/    /'
    [ "$f" = 0 ] || { grep -E '^FAIL' "$log" | head -n 20 | sed 's/^/    /'; show "$log" 40; }
}

# ---- packages
start=$(date +%s)
if tools/deps.sh check >"$out/deps.log" 2>&1; then
    if grep -q '^deps: installing' "$out/deps.log"; then
        say "packages" "ok" "$(sed -n 's/^deps: installing/installed/p' "$out/deps.log") ($(( $(date +%s) - start ))s)"
    else
        say "packages" "ok" "all present"
    fi
else
    say "packages" "FAIL" "apt-get failed (log $out/deps.log)"; show "$out/deps.log"
    add 0 1
fi

# ---- builds: each `make TARGET` with its output in a log
for target in ${CHECK_BUILDS:-all svm vmx-tf vmx-mtf guest} ${CHECK_MATRIX:-}; do
    log="$out/build-$(echo "$target" | tr '/' '-').log"
    start=$(date +%s)
    if make -s -j"$(nproc)" "$target" >"$log" 2>&1; then
        say "build $target" "ok" "($(( $(date +%s) - start ))s)"
        add 1 0
    else
        say "build $target" "FAIL" "(log $log)"; show "$log"
        add 0 1
    fi
done

# ---- fuzz targets (libFuzzer, ASan/UBSan): each runs FUZZ_SECONDS (8); each target is
# one test, failed by a finding (its input stays in tests/fuzz/build/crash-*); its
# executions and coverage are listed under the step's line
script_step "fuzz targets (${FUZZ_SECONDS:-8} s each)" "$out/fuzz.log" '^fuzz_' \
    make -s -C tests/fuzz check FUZZ_SECONDS="${FUZZ_SECONDS:-8}"

# ---- host unit tests
script_step "unit tests (cmocka)" "$out/unit.log" '' make -s -C tests/unit check

# ---- the runner's own unit tests (.jenkins/test2.py)
start=$(date +%s)
python3 -m unittest discover -s tests/runner -v >"$out/runner.log" 2>&1
rrc=$?
ran=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\} in.*/\1/p' "$out/runner.log" | tail -n1)
f=$(grep -cE '^(FAIL|ERROR): ' "$out/runner.log")
s=$(grep -cE ' \.\.\. skipped' "$out/runner.log")
if [ -n "$ran" ]; then
    p=$((ran - f - s))
    [ $rrc -eq 0 ] || [ "$f" -gt 0 ] || f=$((f + 1))
    add "$p" "$f" "$s"
    [ "$s" = 0 ] || grep -E ' \.\.\. skipped' "$out/runner.log" | sed "s/^/runner-unit: /" >>"$out/skipped"
    if [ "$f" = 0 ]; then v=PASS; else v=FAIL; fi
    say "runner tests (test2.py)" "$v" "$p passed, $f failed$([ "$s" = 0 ] || echo ", $s skipped") ($(( $(date +%s) - start ))s)"
    [ "$f" = 0 ] || show "$out/runner.log" 60
else
    say "runner tests (test2.py)" "FAIL" "did not run (log $out/runner.log)"; show "$out/runner.log"
    add 0 1
fi

# ---- scripts that end "N passed, N failed": configure's options and hypapp layouts,
# make install
script_step "configure options" "$out/configure.log" '' tests/configure/run.sh
script_step "make install (DESTDIR)" "$out/install.log" '' tests/install/run.sh

# ---- Bochs 3.0 (built once into ~/.cache/xmhf)
start=$(date +%s)
if tools/build-bochs3.sh >"$out/bochs3.log" 2>&1; then
    say "Bochs 3.0" "ok" "$(tail -n 1 "$out/bochs3.log") ($(( $(date +%s) - start ))s)"
else
    say "Bochs 3.0" "FAIL" "build failed (log $out/bochs3.log); its runs will fail"; show "$out/bochs3.log"
fi

# ---- integration runs
vendor_bin=""
grep -q AuthenticAMD /proc/cpuinfo 2>/dev/null && vendor_bin="--xmhf-bin build/svm"
rm -f "$out/counts"
grep -v '^#' tests/integration.txt | grep -v '^[[:space:]]*$' | while IFS='|' read -r name emu smp tmo args want regex; do
  name=$(echo $name); emu=$(echo $emu); smp=$(echo $smp); tmo=$(echo $tmo); want=$(echo $want)
  regex=$(echo "$regex" | sed 's/^ *//; s/ *$//')
  args=$(echo "$args" | sed 's/^ *//; s/ *$//')
  # QEMU/KVM runs the host's vendor: the AMD build on an AMD host.
  if [ "$emu" = qemu-kvm ] && [ -n "$vendor_bin" ]; then args="$vendor_bin $args"; fi
  wd="$out/$name"
  rm -rf "$wd"
  start=$(date +%s)
  # shellcheck disable=SC2086
  .jenkins/test2.py --emulator "$emu" --smp "$smp" --timeout "$tmo" --work-dir "$wd" $args >"$wd.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  what="$emu, $smp CPU$([ "$smp" = 1 ] || echo s)"
  if [ "$rc" = 77 ]; then
    why=$(sed -n 's/^test2: result SKIP: //p' "$wd.log" | head -n1)
    say "$name" "SKIP" "$what: $why"
    echo "$name: $why" >>"$out/skipped"
    echo "0 0 1" >>"$out/counts"
    continue
  fi
  summary=$(grep -aE 'guest: [0-9]+ passed, [0-9]+ failed' "$wd/serial.log" 2>/dev/null | tail -n1)
  ok=1; why=""
  [ "$rc" = "$want" ] || { why="test2.py exit $rc, expected $want: $(sed -n 's/^test2: result //p' "$wd.log" | head -n1)"; ok=0; }
  if [ $ok = 1 ] && [ -n "$regex" ] && ! grep -aEq "$regex" "$wd/serial.log" 2>/dev/null; then
    why="serial log lacks /$regex/"; ok=0
  fi
  if [ "$want" = 0 ] && [ -n "$summary" ]; then
    set -- $(nums "$summary")
    p=$1; f=$2; s=${3:-0}
    [ $ok = 1 ] || f=$((f + 1))
    grep -aE '^guest: SKIP ' "$wd/serial.log" | sed "s/^guest: SKIP /$name: /" >>"$out/skipped"
    detail="$p passed, $f failed$([ "$s" = 0 ] || echo ", $s skipped")"
  else
    if [ $ok = 1 ]; then p=1; f=0; else p=0; f=1; fi; s=0
    if [ "$want" = 0 ]; then detail="no guest summary"; else detail="stopped as expected"; fi
  fi
  if [ $ok = 1 ] && [ "$f" = 0 ]; then v=PASS; else v=FAIL; fi
  say "$name" "$v" "$what: $detail (${secs}s)${why:+; $why}"
  [ "$v" = PASS ] || show "$wd.log" 45
  echo "$p $f $s" >>"$out/counts"
done
[ -f "$out/counts" ] && while read -r p f s; do add "$p" "$f" "$s"; done <"$out/counts"

# ---- the real world: Debian's kernel booted from its own disk's MBR under both
# hypervisor builds, 2 CPUs each (tests/linux/run.sh; the disk is cached in ~/.cache/xmhf),
# the Intel build in both APIC modes (apic=zeroexit: about 200 s of CPU time more; on
# Bochs 2.7 too, where each AP start is a restart through INIT: about 400-550 s).
if [ "${XMHF_CHECK_LINUX:-1}" != 0 ]; then
  start=$(date +%s)
  LINUX_RUNS="svm-smp2 vmx-smp2 vmx-zeroexit-smp2 vmx-zeroexit-nomtf-smp2 q35-vtd-smp2 q35-amdvi-smp2" LINUX_TIMEOUT_BOCHS=900 tests/linux/run.sh >"$out/linux.log" 2>&1
  line=$(grep -E '^check-linux: [0-9]+ passed, [0-9]+ failed$' "$out/linux.log" | tail -n1)
  if [ -n "$line" ]; then
    set -- $(nums "$line")
    add "$1" "$2"
    if [ "$2" = 0 ]; then v=PASS; else v=FAIL; fi
    say "linux-guest" "$v" "Debian 12 kernel from the disk's MBR: ${line#check-linux: } ($(( $(date +%s) - start ))s)"
    grep -E '^check-linux: (PASS|FAIL) ' "$out/linux.log" | sed 's/^check-linux: /    /'
    [ "$2" = 0 ] || show "$out/linux.log" 30
  else
    add 0 1
    say "linux-guest" "FAIL" "no result line (log $out/linux.log)"; show "$out/linux.log" 30
  fi
else
  say "linux-guest" "-" "left out (XMHF_CHECK_LINUX=0)"
fi

if [ "$skip" -gt 0 ]; then
  # One line per skipped case or run and reason, with how many runs skipped it.
  echo "$skip skipped (neither passed nor failed; runs x case: why):"
  cut -d: -f2- "$out/skipped" | sed 's/^ //' | sort | uniq -c | sort -rn |
      sed 's/^ *\([0-9]*\) /    \1 x /'
fi
echo "make check: $(( $(date +%s) - t_all ))s, logs in $out/"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

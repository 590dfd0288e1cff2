#!/bin/sh
# `make check`: host unit tests, then every integration run of tests/integration.txt.
# Counts test cases (cmocka's and the test guest's; a run that dies before its guest
# reports counts as one failure) and ends with the line "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
out=build/check
mkdir -p "$out"
pass=0
fail=0
add() { pass=$((pass + $1)); fail=$((fail + $2)); }

echo "== unit tests (cmocka, ASan/UBSan)"
make -s -C tests/unit check >"$out/unit.log" 2>&1
urc=$?
cat "$out/unit.log"
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out/unit.log" | tail -n1)
if [ -n "$line" ]; then
  add "${line%% passed*}" "$(echo "$line" | sed 's/.*, \([0-9]*\) failed/\1/')"
  [ $urc -eq 0 ] || [ "$(echo "$line" | sed 's/.*, \([0-9]*\) failed/\1/')" -gt 0 ] || add 0 1
else
  echo "unit tests: no summary line (build or crash), counted as one failure"; add 0 1
fi

echo "== Bochs 3.0 (monitor trap flag model)"
tools/build-bochs3.sh >"$out/bochs3.log" 2>&1 || { cat "$out/bochs3.log"; echo "Bochs 3.0 build failed"; }

grep -v '^#' tests/integration.txt | grep -v '^[[:space:]]*$' | while IFS='|' read -r name emu smp tmo args want regex; do
  name=$(echo $name); emu=$(echo $emu); smp=$(echo $smp); tmo=$(echo $tmo); want=$(echo $want)
  regex=$(echo "$regex" | sed 's/^ *//; s/ *$//')
  args=$(echo "$args" | sed 's/^ *//; s/ *$//')
  wd="$out/$name"
  rm -rf "$wd"
  echo "== $name: $emu, $smp CPU(s)${args:+, $args}"
  start=$(date +%s)
  # shellcheck disable=SC2086
  .jenkins/test2.py --emulator "$emu" --smp "$smp" --timeout "$tmo" --work-dir "$wd" $args >"$wd.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  tail -n 3 "$wd.log"
  summary=$(grep -aE 'guest: [0-9]+ passed, [0-9]+ failed' "$wd/serial.log" 2>/dev/null | tail -n1)
  ok=1
  [ "$rc" = "$want" ] || { echo "$name: test2.py exit $rc, expected $want"; ok=0; }
  if [ -n "$regex" ] && ! grep -aEq "$regex" "$wd/serial.log" 2>/dev/null; then
    echo "$name: serial log lacks /$regex/"; ok=0
  fi
  if [ "$want" = 0 ] && [ -n "$summary" ]; then
    p=$(echo "$summary" | sed 's/.*guest: \([0-9]*\) passed.*/\1/')
    f=$(echo "$summary" | sed 's/.* \([0-9]*\) failed.*/\1/')
    [ $ok = 1 ] || f=$((f + 1))
    echo "$name: $p passed, $f failed in ${secs}s" >>"$out/results"
  else
    [ $ok = 1 ] && echo "$name: 1 passed, 0 failed in ${secs}s" >>"$out/results" \
                || echo "$name: 0 passed, 1 failed in ${secs}s" >>"$out/results"
  fi
  [ $ok = 1 ] || { echo "---- last lines of $wd.log"; tail -n 45 "$wd.log"; }
  echo "$name: $([ $ok = 1 ] && echo PASS || echo FAIL) (${secs}s)"
done

# The real world: Debian's kernel booted from its own disk's MBR under both hypervisor
# builds, 2 CPUs each (tests/linux/run.sh; the disk is cached in ~/.cache/xmhf/linux).
# XMHF_CHECK_LINUX=0 leaves it out.
if [ "${XMHF_CHECK_LINUX:-1}" != 0 ]; then
  echo "== Linux guest (Debian 12 kernel, busybox initramfs, from the disk's MBR)"
  LINUX_RUNS="svm-smp2 vmx-smp2" LINUX_TIMEOUT_BOCHS=900 tests/linux/run.sh >"$out/linux.log" 2>&1
  grep -E '^check-linux: ' "$out/linux.log" | tail -n 8
  line=$(grep -E '^check-linux: [0-9]+ passed, [0-9]+ failed$' "$out/linux.log" | tail -n1)
  if [ -n "$line" ]; then
    echo "linux-guest: ${line#check-linux: }" >>"$out/results"
  else
    echo "linux-guest: 0 passed, 1 failed" >>"$out/results"; tail -n 30 "$out/linux.log"
  fi
fi

if [ -f "$out/results" ]; then
  while read -r l; do
    p=$(echo "$l" | sed 's/.*: \([0-9]*\) passed.*/\1/'); f=$(echo "$l" | sed 's/.* \([0-9]*\) failed.*/\1/')
    add "$p" "$f"
  done <"$out/results"
  echo "== integration runs"; cat "$out/results"; rm -f "$out/results"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

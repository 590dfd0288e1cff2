#!/usr/bin/env python3
"""Boot-time figures for `make bench`, as a table in decimal.

Boots tests/boottime (a guest whose first instruction reads the TSC) under the hypervisor
on Bochs 3.0 with 1 and 4 CPUs. With `clock: sync=none` Bochs' TSC counts instructions,
so each figure is a path length in guest-visible ticks, the same on every run. The
hypervisor logs the TSC at init's entry and at the guest's launch; the guest logs it at
its first instruction. Figures only: the exit status is non-zero only when no run gave
any figure. Usage: tools/bench-boot.py BOOTTIME_BIN WORK_DIR
"""
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RE_HV = re.compile(r"xmhf: TSC (\d+) at init entry, (\d+) at guest launch")
RE_GUEST = re.compile(r"boottime: tsc=0x([0-9a-fA-F]+)")
ROWS = [
    ("BIOS + GRUB, until init's first instruction", lambda a, b, d: a),
    ("init + runtime, until the guest's launch", lambda a, b, d: b - a),
    ("guest launch to the guest's first instruction", lambda a, b, d: d - b),
    ("total, power-on to the guest's first instruction", lambda a, b, d: d),
]


def run(binary, work, ncpus):
    wd = os.path.join(work, "bench-boot-%d" % ncpus)
    subprocess.call([os.path.join(REPO, ".jenkins", "test2.py"), "--emulator", "bochs",
                     "--smp", str(ncpus), "--guest", binary, "--guest-done", "boottime: tsc=",
                     "--work-dir", wd], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        with open(os.path.join(wd, "serial.log"), errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    hv, guest = RE_HV.search(text), RE_GUEST.search(text)
    if not hv or not guest:
        return None
    return int(hv.group(1)), int(hv.group(2)), int(guest.group(1), 16)


def main():
    binary, work = sys.argv[1], sys.argv[2]
    cpus = (1, 4)
    figures = {n: run(binary, work, n) for n in cpus}
    width = max(len(r[0]) for r in ROWS)
    print("boot path on Bochs 3.0, in guest TSC ticks (= instructions; decimal)")
    print("%-*s %15s %15s" % (width, "", "1 CPU", "4 CPUs"))
    for name, fn in ROWS:
        cells = ["%15s" % ("{:,}".format(fn(*figures[n])) if figures[n] else "no figure")
                 for n in cpus]
        print("%-*s %s" % (width, name, " ".join(cells)))
    return 0 if any(figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Integration runner: boot the hypervisor and a guest in an emulator and judge the run.

Builds a BIOS-bootable ISO with grub-mkrescue that holds the three multiboot modules
(init, runtime, guest), boots it headless in Bochs or QEMU with COM1 going to a file,
follows that serial log while the emulator runs, and decides success from it.

Exit status: 0 success, 1 test failure (the reason is printed, with the last serial
lines), 2 usage or environment error (bad arguments, missing files or tools, a disk that
cannot boot, ISO build failure), 77 skipped (this machine cannot run the requested
emulator, e.g. qemu-kvm without nested VMX/SVM; "test2: result SKIP: why"), 130
interrupted.

Usage (from the repository root, after `./configure && make`):
    .jenkins/test2.py                               # Bochs 3.0 (MTF), 1 CPU, test guest
    .jenkins/test2.py --emulator bochs-nomtf --smp 2
    .jenkins/test2.py --emulator qemu-svm --smp 2 --timeout 120
    .jenkins/test2.py --emulator qemu-svm --qemu-image disk.img      # a disk guest
    .jenkins/test2.py --subarch amd64 --xmhf-bin . --qemu-image debian11x64-t.qcow2 \
        --qemu-image-back debian11x64.qcow2 --smp 4 --work-dir /tmp/t    # XMHF64's form
See --help for every option. The work directory keeps grub.cfg, the ISO, bochsrc,
serial.log and the emulator's own logs; a temporary one (no --work-dir) is removed at
the end.

Success needs, in the serial log: the runtime banner, an E820 line, "VMX/SVM on N of N
CPUs" with N = --smp, the guest's closing line (the test guest's "P passed, 0 failed",
P > 0; for a disk guest a line of the OS coming up, see DEFAULT_DISK_DONE), every
--expect regex; no fatal marker (xmhf FATAL/ERROR/PANIC, "triple fault", a GRUB error
before the banner); and the emulator must end (or be stopped by this runner a few
seconds after the closing line) before --timeout. With --judge-by-guest only the closing
line, the --expect regexes and the absence of a triple fault count (for hypervisors
other than this one, e.g. XMHF64's binaries).

Python 3 standard library only.
"""

import argparse
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tty

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

INIT_BIN = "init-x86-amd64.bin"
RUNTIME_BIN = "hypervisor-x86-amd64.bin.gz"

BOCHS27 = "/usr/bin/bochs"
BOCHS_BIOS = "/usr/share/bochs/BIOS-bochs-latest"
VGA_BIOS = "/usr/share/vgabios/vgabios.bin"
GRUB_I386_PC = "/usr/lib/grub/i386-pc"

# Serial-log patterns (success criteria 1-4 and 6).
RE_BANNER = re.compile(r"^XMHF \S+ \(amd64\) runtime")
RE_E820 = re.compile(r"^xmhf-init: E820 ")
RE_CPUS = {
    "VMX": re.compile(r"^xmhf: VMX on (\d+) of (\d+) CPUs"),
    "SVM": re.compile(r"^xmhf: SVM on (\d+) of (\d+) CPUs"),
}
DEFAULT_GUEST_DONE = r"(?P<passed>\d+) passed, (?P<failed>\d+) failed(, (?P<skipped>\d+) skipped)?"
# A disk guest has come up when one of these appears (no login needed): the kernel
# starting init (Linux prints it unless "quiet"), systemd's welcome, a getty's prompt on
# the serial console, or the project's Linux test disk's own closing line.
DEFAULT_DISK_DONE = (r"Run \S+ as init process|Welcome to .*(Linux|Debian)|"
                     r"^\S+ login: *$|linux-guest: done")
RE_FATAL = [
    re.compile(r"^xmhf(-init)?: (FATAL|ERROR|PANIC)"),
    re.compile(r"triple fault", re.IGNORECASE),
]
# GRUB reports a failed command (missing file, unknown command) like this; only looked
# for before the hypervisor banner, since a guest may print such lines itself.
RE_GRUB_ERROR = re.compile(r"^error: ")
# Terminal control sequences (GRUB's serial terminal emits them) and other control chars.
RE_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|[@-Z\\-_]|[()][0-9A-Za-z])|[\x00-\x08\x0b-\x1f\x7f]")

# How long the emulator may keep running after the guest's closing line before the
# runner stops it itself (the guest normally shuts the machine down right away).
GRACE_AFTER_DONE = 5.0
TAIL_LINES = 40

EXIT_SKIP = 77          # automake's "skipped" status

# QEMU's isa-debug-exit turns "out 0xf4, v" into exit status (v << 1) | 1.
QEMU_SUCCESS_VALUE = 0x31
QEMU_SUCCESS_STATUS = (QEMU_SUCCESS_VALUE << 1) | 1


class SetupError(Exception):
    """Bad arguments or a broken environment: exit status 2."""


class Skip(Exception):
    """This machine cannot run what was asked (not a failure): exit status 77."""


def log(msg=""):
    print(msg, flush=True)


# --------------------------------------------------------------------------- arguments

def parse_memory(text):
    """'128', '128M', '1024MiB', '1G', '1.5G' -> MB (int). Plain numbers are MB, as
    before; units are QEMU's -m spelling (XMHF64's runner uses '512M')."""
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*$", text)
    if not m:
        raise argparse.ArgumentTypeError("%r: give MB, or a size with a unit such as "
                                         "1024M or 1G" % text)
    value = float(m.group(1))
    unit = m.group(2).upper() or "M"
    mb = value * {"K": 1.0 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[unit]
    if mb != int(mb):
        raise argparse.ArgumentTypeError("%r is not a whole number of MB" % text)
    return int(mb)


def version():
    try:
        with open(os.path.join(REPO, "VERSION")) as f:
            return f.read().strip()
    except OSError:
        return "(unknown version)"


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Boot the hypervisor plus a guest in an emulator and check the serial log.")
    p.add_argument("--version", action="version", version="test2.py, XMHF %s" % version())
    p.add_argument("--subarch", default="amd64", choices=["amd64", "i386"],
                   help="hypervisor sub-architecture (only amd64 is supported)")
    p.add_argument("--xmhf-bin", default=REPO, metavar="DIR",
                   help="directory holding %s and %s (default: repository root)"
                   % (INIT_BIN, RUNTIME_BIN))
    p.add_argument("--guest", default=os.path.join(REPO, "tests", "guest", "guest.bin"),
                   metavar="PATH", help="guest image passed as the third multiboot module")
    p.add_argument("--qemu-image", metavar="PATH",
                   help="disk image (raw with an MBR, or qcow2) attached as the first hard "
                        "disk; the third module is then its MBR, loaded with 'module "
                        "--nounzip (hd0)+1' (GRUB 2's spelling of GRUB legacy's "
                        "'modulenounzip (hd0)+1'). QEMU boots a qcow2 as it is, Bochs a "
                        "raw copy converted with qemu-img; the run never changes the image")
    p.add_argument("--qemu-image-back", metavar="PATH",
                   help="as XMHF64's runner: --qemu-image is (re)created before the run as a "
                        "fresh qcow2 overlay backed by this image (qemu-img create -b), so "
                        "every run starts from the backing image")
    p.add_argument("--no-test-xmhf", action="store_true",
                   help="boot the --qemu-image disk alone, without the hypervisor (the "
                        "reference boot); judged by --guest-done / --expect only")
    p.add_argument("--judge-by-guest", action="store_true",
                   help="judge the run by --guest-done, --expect and the absence of a "
                        "triple fault only, not by this hypervisor's own lines (to boot "
                        "other binaries, e.g. XMHF64's, with the same runner)")
    p.add_argument("--smp", type=int, default=1, metavar="N",
                   help="number of CPUs (default: %(default)s)")
    p.add_argument("--work-dir", metavar="DIR",
                   help="where to keep grub.cfg, the ISO, bochsrc and logs (default: new temp dir)")
    p.add_argument("--emulator", default="bochs",
                   choices=["bochs", "bochs-nomtf", "qemu-svm", "qemu-kvm"],
                   help="bochs: Bochs 3.0 with MTF (built by tools/build-bochs3.sh); "
                        "bochs-nomtf: Debian's Bochs 2.7; qemu-svm: QEMU TCG with SVM+NPT; "
                        "qemu-kvm: QEMU/KVM, needs /dev/kvm (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="fail if the run takes longer (default: 300; 900 for a disk guest "
                        "under Bochs, where Linux with 4 CPUs takes about 5 minutes)")
    p.add_argument("--omit-guest-module", action="store_true",
                   help="leave the guest module out of the GRUB entry (tests the "
                        "hypervisor's message for a missing module)")
    p.add_argument("--cpu-model", default="corei7_skylake_x", metavar="MODEL",
                   help="Bochs CPU model (default corei7_skylake_x; others test the "
                        "hypervisor's capability checks)")
    p.add_argument("--memory", type=parse_memory, default=None, metavar="SIZE",
                   help="guest-physical memory: MB, or with a unit (512M, 1G) "
                        "(default: 128 MB, 512 MB with --qemu-image)")
    p.add_argument("--cmdline", default="", metavar="STRING",
                   help="extra options appended to the hypervisor command line")
    p.add_argument("--expect", action="append", default=[], metavar="REGEX",
                   help="regex that must also appear in the serial log (repeatable)")
    p.add_argument("--guest-done", default=None, metavar="REGEX",
                   help="the guest's closing line; if it has groups named 'passed' and "
                        "'failed', passed > 0 and failed == 0 are required (default: %r; "
                        "with --qemu-image: %r)" % (DEFAULT_GUEST_DONE, DEFAULT_DISK_DONE))
    p.add_argument("--qemu-machine", metavar="SPEC",
                   help="QEMU only: passed as -machine SPEC (e.g. q35)")
    p.add_argument("--qemu-device", action="append", default=[], metavar="SPEC",
                   help="QEMU only: passed as -device SPEC, before the machine's other "
                        "devices, in the order given (repeatable; e.g. intel-iommu, edu)")
    p.add_argument("--verbose", action="store_true",
                   help="echo every serial line as it arrives, and the emulator's output")
    p.add_argument("--watch-serial", action="store_true",
                   help="echo every serial line as it arrives (XMHF64's flag)")
    p.add_argument("--no-display", action="store_true",
                   help="accepted for XMHF64's command lines: every run here is headless")
    p.add_argument("--sshpass", metavar="PASSWORD",
                   help="accepted for XMHF64's command lines and not used: this runner "
                        "judges the guest by its serial console, not over SSH")
    args = p.parse_args(argv)

    if args.subarch == "i386":
        raise SetupError("i386 is not supported yet")
    if args.smp < 1:
        raise SetupError("--smp must be at least 1")
    if (args.qemu_machine or args.qemu_device) and not args.emulator.startswith("qemu"):
        raise SetupError("--qemu-machine and --qemu-device need a QEMU --emulator")
    if args.memory is None:
        args.memory = 512 if args.qemu_image else 128
    if args.memory < 16:
        raise SetupError("--memory must be at least 16 (MB)")
    if args.qemu_image_back and not args.qemu_image:
        raise SetupError("--qemu-image-back needs --qemu-image (the overlay to create)")
    if args.no_test_xmhf and not args.qemu_image:
        raise SetupError("--no-test-xmhf boots a disk: give --qemu-image")
    if args.guest_done is None:
        args.guest_done = DEFAULT_DISK_DONE if args.qemu_image else DEFAULT_GUEST_DONE
    if args.timeout is None:
        args.timeout = 900 if args.qemu_image and args.emulator.startswith("bochs") else 300
    if args.timeout <= 0:
        raise SetupError("--timeout must be positive")
    try:
        args.expect_re = [re.compile(x) for x in args.expect]
        args.done_re = re.compile(args.guest_done)
    except re.error as e:
        raise SetupError("bad regular expression: %s" % e)
    return args


# --------------------------------------------------------------------------- disks

# Formats a --qemu-image might be by mistake, by their magic (offset, bytes, name).
FOREIGN_MAGIC = [
    (0, b"KDMV", "a VMware VMDK image"),
    (0, b"# Disk DescriptorFile", "a VMware VMDK descriptor"),
    (0x40, b"\x7f\x10\xda\xbe", "a VirtualBox VDI image"),
    (0, b"vhdxfile", "a Hyper-V VHDX image"),
    (0, b"conectix", "a VHD image"),
    (0, b"\x1f\x8b", "a gzip file (decompress it first)"),
    (0, b"\xfd7zXZ\x00", "an xz file (decompress it first)"),
    (0, b"\x7fELF", "an ELF file (a kernel or a hypervisor binary?), not a disk"),
    (0x8001, b"CD001", "an ISO 9660 (CD) image, not a hard disk"),
]


def qemu_img():
    path = shutil.which("qemu-img")
    if path is None:
        raise SetupError("qemu-img not found (Debian package qemu-utils); it is needed for "
                         "qcow2 images")
    return path


def qemu_img_run(argv, what):
    res = subprocess.run([qemu_img()] + argv, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True)
    if res.returncode != 0:
        raise SetupError("%s: qemu-img %s failed: %s" % (what, argv[0], res.stdout.strip()))
    return res.stdout


def inspect_disk(path, scratch):
    """Says what kind of disk `path` is, or why it cannot boot, before anything runs.

    Returns (format, size) with format "raw" or "qcow2". A raw disk must hold an MBR
    (55 AA at byte 510), since GRUB hands its first sector to the hypervisor as the
    guest's boot code; a qcow2 image must open with every backing file and have such an
    MBR too (read through qemu-img). Anything else is a SetupError naming what it is.
    `scratch` is a directory for the sector read out of a qcow2 image.
    """
    if not os.path.exists(path):
        raise SetupError("disk image %s does not exist" % path)
    if not os.path.isfile(path):
        raise SetupError("disk image %s is not a regular file" % path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(0x8010)
    if head[:4] == b"QFI\xfb":
        info = qemu_img_run(["info", "--output=json", "--backing-chain", path],
                            "qcow2 image %s (or a backing file of it)" % path)
        try:
            import json
            chain = json.loads(info)
            size = int(chain[0]["virtual-size"])
        except (ValueError, KeyError, IndexError, TypeError):
            pass
        sector = os.path.join(scratch, "mbr.bin")
        qemu_img_run(["dd", "-f", "qcow2", "-O", "raw", "bs=512", "count=1",
                      "if=" + path, "of=" + sector], "qcow2 image %s" % path)
        with open(sector, "rb") as f:
            mbr = f.read(512)
        os.unlink(sector)
        fmt = "qcow2"
    else:
        for off, magic, name in FOREIGN_MAGIC:
            if head[off:off + len(magic)] == magic:
                raise SetupError("disk image %s is %s; give a raw disk with an MBR or a "
                                 "qcow2 image (qemu-img convert -O qcow2 ...)" % (path, name))
        if size < 512:
            raise SetupError("disk image %s is %d bytes: too small to hold a boot sector"
                             % (path, size))
        mbr = head[:512]
        fmt = "raw"
    if len(mbr) < 512 or mbr[510:512] != b"\x55\xaa":
        raise SetupError("disk image %s (%s) is not bootable: its first sector has no boot "
                         "signature (55 AA at byte 510), so there is no MBR for GRUB to hand "
                         "to the hypervisor" % (path, fmt))
    return fmt, size


def prepare_disk(args, work):
    """Creates the XMHF64-style overlay if asked, checks the disk, and for Bochs makes
    the raw file it will boot. Sets args.disk_format and args.bochs_disk."""
    image = os.path.abspath(args.qemu_image)
    if args.qemu_image_back:
        back = os.path.abspath(args.qemu_image_back)
        back_fmt, _ = inspect_disk(back, work)
        if os.path.exists(image) and os.path.samefile(image, back):
            raise SetupError("--qemu-image and --qemu-image-back are the same file")
        # An absolute backing path: qemu-img would read a relative one against the
        # overlay's own directory.
        qemu_img_run(["create", "-q", "-f", "qcow2", "-b", back, "-F", back_fmt, image],
                     "overlay %s on %s" % (image, back))
        log("test2: %s: new qcow2 overlay on %s (%s)" % (image, back, back_fmt))
    args.disk_format, size = inspect_disk(image, work)
    args.bochs_disk = image
    if args.emulator.startswith("bochs"):
        if args.disk_format == "qcow2":
            # Bochs has no qcow2 driver: a raw copy (sparse) of the whole chain.
            raw = os.path.join(work, "disk.raw")
            log("test2: converting %s to raw for Bochs (%d MiB) ..." % (image, size >> 20))
            qemu_img_run(["convert", "-O", "raw", image, raw], "converting %s" % image)
            args.bochs_disk = raw
        elif size % 512:
            raise SetupError("disk image %s is %d bytes, not a whole number of 512-byte "
                             "sectors, which Bochs cannot attach" % (image, size))


# --------------------------------------------------------------------------- ISO

def grub_cfg(args):
    cmdline = "serial=115200,8n1,0x3f8"
    if args.cmdline.strip():
        cmdline += " " + args.cmdline.strip()
    if args.qemu_image:
        # GRUB legacy's 'modulenounzip' (XMHF's documented entry) is spelled
        # 'module --nounzip' in GRUB 2; GRUB 2 has no 'modulenounzip' command.
        third = "module    --nounzip (hd0)+1"
    else:
        third = "module    /boot/guest.bin"
    return "\n".join([
        "set timeout=0",
        "set default=0",
        "serial --unit=0 --speed=115200",
        "terminal_input serial console",
        "terminal_output serial console",
        'menuentry "XMHF" {',
        "  multiboot /boot/%s %s" % (INIT_BIN, cmdline),
        "  module    /boot/%s" % RUNTIME_BIN,
        "" if args.omit_guest_module else "  " + third,
        "}",
        "",
    ])


def build_iso(args, work):
    xbin = os.path.abspath(args.xmhf_bin)
    sources = [os.path.join(xbin, INIT_BIN), os.path.join(xbin, RUNTIME_BIN)]
    if not args.qemu_image:
        sources.append(os.path.abspath(args.guest))
    for f in sources:
        if not os.path.isfile(f):
            raise SetupError("missing %s (build it first, or see --xmhf-bin / --guest)" % f)
    if shutil.which("grub-mkrescue") is None:
        raise SetupError("grub-mkrescue not found (Debian: grub-pc-bin grub-common xorriso mtools)")

    isodir = os.path.join(work, "isodir")
    shutil.rmtree(isodir, ignore_errors=True)
    os.makedirs(os.path.join(isodir, "boot", "grub"))
    shutil.copyfile(sources[0], os.path.join(isodir, "boot", INIT_BIN))
    shutil.copyfile(sources[1], os.path.join(isodir, "boot", RUNTIME_BIN))
    if not args.qemu_image:
        shutil.copyfile(sources[2], os.path.join(isodir, "boot", "guest.bin"))
    cfg = grub_cfg(args)
    for path in (os.path.join(work, "grub.cfg"), os.path.join(isodir, "boot", "grub", "grub.cfg")):
        with open(path, "w") as f:
            f.write(cfg)

    iso = os.path.join(work, "xmhf.iso")
    if os.path.exists(iso):
        os.unlink(iso)
    cmd = ["grub-mkrescue", "-o", iso]
    if os.path.isdir(GRUB_I386_PC):
        cmd += ["-d", GRUB_I386_PC]      # BIOS only; never depend on EFI bits being present
    cmd += [isodir]
    mklog = os.path.join(work, "grub-mkrescue.log")
    with open(mklog, "w") as out:
        rc = subprocess.call(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0 or not os.path.isfile(iso):
        with open(mklog, errors="replace") as f:
            sys.stdout.write(f.read()[-3000:])
        raise SetupError("grub-mkrescue failed (status %d), see %s" % (rc, mklog))
    return iso


# --------------------------------------------------------------------------- emulators

def bochs3_binary():
    cache = os.environ.get("XMHF_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "xmhf"))
    cached = os.path.join(cache, "bochs-3.0", "bin", "bochs")
    script = os.path.join(REPO, "tools", "build-bochs3.sh")
    if not (os.path.isfile(cached) and os.access(cached, os.X_OK)):
        if not os.path.isfile(script):
            raise SetupError("Bochs 3.0 is not built and %s is missing" % script)
        log("Bochs 3.0 is not built yet: building it with tools/build-bochs3.sh "
            "(about 5 minutes the first time, cached in %s) ..." % cache)
    # The script answers at once when the binary is cached; its last stdout line is the path.
    res = subprocess.run(["sh", script], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         universal_newlines=True)
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines or not os.access(lines[-1].strip(), os.X_OK):
        raise SetupError("tools/build-bochs3.sh failed (status %d)" % res.returncode)
    return lines[-1].strip()


def bochs_disk_line(args, work):
    """The bochsrc line of the hard disk, private to this run.

    Bochs opens a writable image only after creating <image>.lock beside it, refuses
    ("image locked") an image whose lock exists, and keeps the lock when it is killed.
    So a shared image (the cached Linux disk several runs boot at once) is never opened
    writable: 'volatile' mode opens it read-only (no lock is made) and sends the guest's
    writes to a redolog that Bochs creates with mkstemp from the journal path (in the
    work directory) and unlinks at once. Only if a lock left by something else is already
    there is the image copied into the work directory instead, where no one else looks.
    """
    path = args.bochs_disk
    if os.path.exists(path + ".lock"):
        private = os.path.join(work, "disk.img")
        log("test2: %s.lock exists (left by another Bochs): booting a private copy, %s"
            % (path, private))
        subprocess.check_call(["cp", "--sparse=always", path, private])
        path = private
    journal = os.path.join(work, "disk-redolog")
    return 'ata0-master: type=disk, mode=volatile, path="%s", journal="%s"' % (path, journal)


def remove_own_locks(work):
    """Removes Bochs' <image>.lock files in the work directory (only this run's images
    live there); Bochs 3.0 leaves them behind when it is stopped by a signal."""
    try:
        names = os.listdir(work)
    except OSError:
        return
    for name in names:
        if name.endswith(".lock"):
            try:
                os.unlink(os.path.join(work, name))
            except OSError:
                pass


class PtyDrain:
    """Reads and discards what Debian's Bochs 2.7 draws on its 'term' display.

    With its debugger built in, Bochs 2.7 opens /dev/ptmx itself, points curses at that
    master end and only names the other end ("Bochs connected to screen /dev/pts/N") on
    stderr. Nobody has the slave end open, so once about 4 KiB of screen output is queued
    Bochs blocks in write() and the guest stops for good. This opens the named slave,
    puts it in raw mode (no echo of the screen back into Bochs as keystrokes) and reads
    it until Bochs closes the master.
    """

    RE_SCREEN = re.compile(r'Bochs connected to screen "([^"]+)"')

    def __init__(self, out_path):
        self.out_path = out_path
        self.stop = threading.Event()
        self.pts = None
        self.bytes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _find(self):
        while not self.stop.is_set():
            m = self.RE_SCREEN.search(read_text(self.out_path))
            if m:
                return m.group(1)
            self.stop.wait(0.05)
        return None

    def _run(self):
        pts = self._find()
        if pts is None:
            return
        try:
            fd = os.open(pts, os.O_RDWR | os.O_NOCTTY)
        except OSError:
            return
        self.pts = pts
        try:
            tty.setraw(fd)
        except Exception:
            pass
        try:
            while not self.stop.is_set():
                r, _, _ = select.select([fd], [], [], 0.2)
                if r:
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    self.bytes += len(data)
        except OSError:
            pass            # EIO: Bochs closed the master
        finally:
            os.close(fd)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=2)


def bochsrc_text(args, work, iso, version3):
    serial = os.path.join(work, "serial.log")
    lines = [
        "display_library: %s" % ("nogui" if version3 else "term"),
        "romimage: file=%s" % BOCHS_BIOS,
        "vgaromimage: file=%s" % VGA_BIOS,
        "megs: %d" % args.memory,
        "cpu: count=%d, model=%s, reset_on_triple_fault=0" % (args.smp, args.cpu_model),
        "clock: sync=none, time0=local",
        "pci: enabled=1, chipset=i440fx",
    ]
    if iso is None:
        lines += [bochs_disk_line(args, work), "boot: disk"]     # --no-test-xmhf
    elif args.qemu_image:
        # The disk is the first BIOS hard disk, (hd0) for GRUB; the ISO goes to the
        # secondary channel and is still the boot device.
        lines += [
            bochs_disk_line(args, work),
            'ata1-master: type=cdrom, path="%s", status=inserted' % iso,
            "boot: cdrom",
        ]
    else:
        lines += ['ata0-master: type=cdrom, path="%s", status=inserted' % iso, "boot: cdrom"]
    lines += [
        'com1: enabled=1, mode=file, dev="%s"' % serial,
        'log: "%s"' % os.path.join(work, "bochs.log"),
        "panic: action=fatal",
        "error: action=report",
        "info: action=ignore",
        "debug: action=ignore",
        "",
    ]
    return "\n".join(lines)


def kvm_unavailable(root="/"):
    """Why QEMU/KVM cannot run this hypervisor here, or None if it can.

    The hypervisor needs VMX (or SVM) inside the KVM guest, so /dev/kvm alone is not
    enough: the host's KVM module must offer nested virtualization to its guests
    (kvm_intel/kvm_amd parameter 'nested'). `root` lets the unit tests fake the files.
    """
    def path(*parts):
        return os.path.join(root, *parts)
    dev = path("dev", "kvm")
    if not os.path.exists(dev):
        return ("no /dev/kvm: this machine offers no KVM (no hardware virtualization "
                "visible, or the kvm module is not loaded); use --emulator bochs, "
                "bochs-nomtf or qemu-svm")
    if not os.access(dev, os.R_OK | os.W_OK):
        return "/dev/kvm exists but is not readable and writable by this user"
    cpuinfo = read_text(path("proc", "cpuinfo"))
    module, ext = "kvm_intel", "VMX"
    if "AuthenticAMD" in cpuinfo:
        module, ext = "kvm_amd", "SVM"
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    if cpuinfo and ext.lower() not in flags:
        try:
            mods = sorted(m for m in os.listdir(path("sys", "module")) if m.startswith("kvm"))
        except OSError:
            mods = []
        return ("/dev/kvm exists, but this machine's CPU shows no %s (no '%s' in the "
                "/proc/cpuinfo flags; KVM modules loaded: %s), so KVM cannot offer %s to "
                "its guests and the hypervisor cannot run under it"
                % (ext, ext.lower(), ", ".join(mods) or "none", ext))
    nested = read_text(path("sys", "module", module, "parameters", "nested")).strip()
    if not nested:
        return ("/dev/kvm exists but %s is not loaded, so KVM cannot offer nested %s"
                % (module, ext))
    if nested not in ("Y", "y", "1"):
        return ("KVM does not offer nested %s to its guests (%s nested=%s), and the "
                "hypervisor needs %s inside the QEMU guest (modprobe %s nested=1 on the "
                "host enables it)" % (ext, module, nested, ext, module))
    return None


def preflight(args):
    """Checks the emulator can run at all, before anything is built."""
    if args.emulator.startswith("qemu"):
        if shutil.which("qemu-system-x86_64") is None:
            raise SetupError("qemu-system-x86_64 not found (Debian package qemu-system-x86)")
        if args.emulator == "qemu-kvm":
            why = kvm_unavailable()
            if why:
                raise Skip("qemu-kvm: " + why)
    elif args.emulator == "bochs-nomtf" and not os.access(BOCHS27, os.X_OK):
        raise SetupError("%s not found (Debian package bochs)" % BOCHS27)
    if args.emulator.startswith("bochs"):
        for f in (BOCHS_BIOS, VGA_BIOS):
            if not os.path.isfile(f):
                raise SetupError("missing %s (Debian packages bochsbios, vgabios)" % f)
    if args.qemu_image_back and not os.path.isfile(args.qemu_image_back):
        raise SetupError("--qemu-image-back %s does not exist" % args.qemu_image_back)
    if args.qemu_image and not args.qemu_image_back and not os.path.isfile(args.qemu_image):
        raise SetupError("--qemu-image %s does not exist" % args.qemu_image)


def emulator_command(args, work, iso):
    """Returns (argv, env, name of the emulator's own log files)."""
    env = dict(os.environ)
    serial = os.path.join(work, "serial.log")
    emu = args.emulator
    if emu in ("bochs", "bochs-nomtf"):
        version3 = emu == "bochs"
        if version3:
            binary = bochs3_binary()
        else:
            binary = BOCHS27
        rc_path = os.path.join(work, "bochsrc")
        with open(rc_path, "w") as f:
            f.write(bochsrc_text(args, work, iso, version3))
        argv = [binary, "-q", "-f", rc_path]
        if not version3:
            # Debian's 2.7 has the debugger built in and no nogui: run its 'term' display
            # into a file and give the debugger a command file that just continues.
            cmds = os.path.join(work, "bochs-debugger.rc")
            with open(cmds, "w") as f:
                f.write("c\n")
            argv += ["-rc", cmds]
            # (With the debugger built in, 'term' draws on a fresh pty from /dev/ptmx, not
            # on our terminal; curses still wants a TERM.)
            env["TERM"] = env.get("TERM") or "vt100"
        return argv, env, [os.path.join(work, "bochs.log"), os.path.join(work, "emulator.out")]

    # QEMU
    binary = shutil.which("qemu-system-x86_64")
    if emu == "qemu-kvm":
        accel = ["-enable-kvm", "-cpu", "host"]
    else:
        accel = ["-accel", "tcg", "-cpu", "qemu64,+svm,+npt"]
    qlog = os.path.join(work, "qemu.log")
    argv = [binary] + accel
    if args.qemu_machine:
        argv += ["-machine", args.qemu_machine]
    # An IOMMU device must be created before the PCI devices it translates.
    for dev in args.qemu_device:
        argv += ["-device", dev]
    boot = ["-boot", "c"] if iso is None else ["-cdrom", iso, "-boot", "d"]
    argv += [
        "-smp", str(args.smp), "-m", str(args.memory)] + boot + [
        "-display", "none", "-monitor", "none",
        "-serial", "file:" + serial,
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-no-reboot",
        # cpu_reset makes QEMU log "Triple fault"; guest_errors catches invalid accesses.
        "-d", "cpu_reset,guest_errors", "-D", qlog,
    ]
    if args.qemu_image:
        # snapshot=on: the guest's writes go to a temporary overlay, so the image is only
        # read and any number of runs can share it (QEMU locks images it writes).
        argv += ["-drive", "file=%s,format=%s,if=ide,index=0,snapshot=on"
                 % (os.path.abspath(args.qemu_image), args.disk_format)]
    return argv, env, [qlog, os.path.join(work, "emulator.out")]


AMD_BOCHS_MODELS = ("ryzen", "zambezi", "trinity_apu", "phenom_8650_toliman",
                    "athlon64_clawhammer", "athlon64_venice", "turion64_tyler")


def expected_virt(emulator, cpu_model=""):
    if emulator == "qemu-svm":
        return "SVM"
    if emulator.startswith("bochs") and cpu_model in AMD_BOCHS_MODELS:
        return "SVM"
    if emulator == "qemu-kvm":
        try:
            with open("/proc/cpuinfo") as f:
                if "AuthenticAMD" in f.read():
                    return "SVM"
        except OSError:
            pass
    return "VMX"


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


# Bochs ends with this "fatal" message when the guest turns the machine off through ACPI
# (S5); after the guest's closing line that is how a guest ends, not a failure.
RE_BOCHS_POWER_OFF = re.compile(r"ACPI control: soft power off")


def judge_emulator_exit(args, status, work, done_seen=False):
    """Returns None if the emulator's own exit is fine, else the reason it is not.
    done_seen: the guest's closing line appeared before the emulator ended."""
    out = read_text(os.path.join(work, "emulator.out"))
    if args.emulator.startswith("bochs"):
        blog = read_text(os.path.join(work, "bochs.log"))
        m = re.search(r"3rd \((\d+)\) exception with no resolution", blog)
        if m:
            return "triple fault (Bochs: 3rd exception, vector %s, with no resolution)" % m.group(1)
        m = re.search(r"Bochs is exiting with the following message:\s*\n(.*)", out)
        msg = m.group(1).strip() if m else ""
        if "Shutdown port: shutdown requested" in msg:
            return None
        if RE_BOCHS_POWER_OFF.search(msg):
            if done_seen:
                return None
            return "the guest powered the machine off (ACPI S5) before its closing line"
        if msg:
            return "Bochs stopped: %s" % msg
        panics = [l for l in blog.splitlines() if re.match(r"^\d+p\[", l)]
        if panics:
            return "Bochs panic: %s" % panics[-1]
        if status != 0:
            return "Bochs exited with status %d" % status
        return None
    qlog = read_text(os.path.join(work, "qemu.log"))
    if re.search(r"triple fault", qlog, re.IGNORECASE):
        return "triple fault (reported by QEMU)"
    if status == QEMU_SUCCESS_STATUS or status == 0:
        return None     # 99: guest wrote 0x31 to port 0xf4; 0: guest powered off / reset
    if status > 1 and status & 1:
        return "guest signalled failure through isa-debug-exit (value %#x)" % (status >> 1)
    tail = "\n".join(out.strip().splitlines()[-5:])
    return "QEMU exited with status %d%s" % (status, (": " + tail) if tail else "")


# --------------------------------------------------------------------------- serial log

class SerialLog:
    """Follows a growing file and hands out complete, cleaned lines."""

    def __init__(self, path):
        self.path = path
        self.f = None
        self.partial = b""
        self.lines = []

    def poll(self, final=False):
        if self.f is None:
            try:
                self.f = open(self.path, "rb")
            except OSError:
                return []
        data = self.f.read()
        if data:
            self.partial += data
        new = []
        while True:
            i = self.partial.find(b"\n")
            if i < 0:
                break
            new.append(self.partial[:i])
            self.partial = self.partial[i + 1:]
        if final and self.partial:
            new.append(self.partial)
            self.partial = b""
        out = []
        for raw in new:
            line = raw.decode("utf-8", errors="replace").rstrip("\r")
            # A carriage return inside a line rewrites it on a terminal: keep what is visible last.
            line = line.split("\r")[-1] if "\r" in line else line
            line = RE_ESCAPES.sub("", line)
            out.append(line)
        self.lines.extend(out)
        return out

    def current_partial(self):
        return RE_ESCAPES.sub("", self.partial.decode("utf-8", errors="replace"))

    def close(self):
        if self.f:
            self.f.close()


class Progress:
    """One refreshing status line on a terminal; an occasional line otherwise."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.tty = sys.stdout.isatty()
        self.last = 0.0 if self.tty else time.monotonic()
        self.shown = False
        self.last_count = -1

    def update(self, elapsed, count, latest, force=False):
        if not self.enabled:
            return
        now = time.monotonic()
        period = 1.0 if self.tty else 10.0
        if not force and now - self.last < period:
            return
        if not self.tty and count == self.last_count and not force:
            return
        self.last, self.last_count = now, count
        text = "[%6.1fs] %d serial lines | %s" % (elapsed, count, latest)
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            sys.stdout.write("\r" + text[:width].ljust(width))
            self.shown = True
        else:
            sys.stdout.write(text[:200] + "\n")
        sys.stdout.flush()

    def finish(self):
        if self.enabled and self.tty and self.shown:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.shown = False


# --------------------------------------------------------------------------- run

def kill_group(proc):
    if proc is None or proc.poll() is not None:
        return
    # QEMU exits cleanly on SIGTERM; Debian's Bochs 2.7 (debugger build) ignores it.
    for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def evaluate(args, lines, virt):
    """Criteria 1-5 on the whole serial log. Returns (failures, summary line)."""
    failures = []
    if not (args.judge_by_guest or args.no_test_xmhf):
        if not any(RE_BANNER.search(l) for l in lines):
            failures.append("no hypervisor banner (a line matching %r)" % RE_BANNER.pattern)
        if not any(RE_E820.search(l) for l in lines):
            failures.append("no E820 line (a line matching %r)" % RE_E820.pattern)
        cpus = [m for m in (RE_CPUS[virt].search(l) for l in lines) if m]
        other = "SVM" if virt == "VMX" else "VMX"
        if not cpus:
            hint = ""
            if any(RE_CPUS[other].search(l) for l in lines):
                hint = " (found a %s line instead)" % other
            failures.append("no CPU count line (a line matching %r)%s"
                            % (RE_CPUS[virt].pattern, hint))
        else:
            on, of = int(cpus[-1].group(1)), int(cpus[-1].group(2))
            if on != args.smp or of != args.smp:
                failures.append("CPU count: %s on %d of %d CPUs, expected %d of %d"
                                % (virt, on, of, args.smp, args.smp))
    summary = None
    done = [(l, m) for l, m in ((l, args.done_re.search(l)) for l in lines) if m]
    if not done:
        failures.append("the guest's closing line (%r) never appeared" % args.done_re.pattern)
    else:
        summary, m = done[-1]
        groups = m.groupdict()
        if "passed" in groups and "failed" in groups:
            passed, failed = int(groups["passed"]), int(groups["failed"])
            if failed != 0 or passed <= 0:
                failures.append("guest reports %d passed, %d failed" % (passed, failed))
    for rx in args.expect_re:
        if not any(rx.search(l) for l in lines):
            failures.append("--expect %r did not match any serial line" % rx.pattern)
    return failures, summary


def run(args):
    """Sets up the work directory (a temporary one is removed afterwards, whatever the
    outcome; --work-dir keeps everything) and runs the emulator in it."""
    t_start = time.monotonic()
    preflight(args)
    if args.work_dir:
        work = os.path.abspath(args.work_dir)
        os.makedirs(work, exist_ok=True)
    else:
        work = tempfile.mkdtemp(prefix="xmhf-test2-")
    try:
        return run_in(args, work, t_start)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


def run_in(args, work, t_start):
    remove_own_locks(work)
    for name in ("serial.log", "bochs.log", "qemu.log", "emulator.out", "disk.raw", "disk.img"):
        try:
            os.unlink(os.path.join(work, name))
        except FileNotFoundError:
            pass
    log("test2: emulator %s, smp %d, memory %d MB, timeout %gs, work dir %s%s"
        % (args.emulator, args.smp, args.memory, args.timeout, work,
           "" if args.work_dir else " (temporary, removed at the end)"))
    if args.sshpass:
        log("test2: --sshpass is not used: the guest is judged by its serial console")
    if args.qemu_image:
        prepare_disk(args, work)
    iso = None if args.no_test_xmhf else build_iso(args, work)
    argv, env, emu_logs = emulator_command(args, work, iso)
    virt = expected_virt(args.emulator, args.cpu_model)
    serial_path = os.path.join(work, "serial.log")
    with open(os.path.join(work, "emulator.cmd"), "w") as f:
        f.write(" ".join(argv) + "\n")
    if iso is None:
        log("test2: no hypervisor (--no-test-xmhf): booting the disk itself; starting: %s"
            % " ".join(argv))
    else:
        log("test2: ISO %s; starting: %s" % (iso, " ".join(argv)))

    echo = args.verbose or args.watch_serial
    serial = SerialLog(serial_path)
    progress = Progress(not echo)
    fatal = None
    timed_out = False
    stopped_after_done = False
    done_at = None
    banner_seen = False
    status = None
    proc = None
    drain = None
    emu_out = open(os.path.join(work, "emulator.out"), "wb")
    t_emu = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=work, env=env, stdin=subprocess.DEVNULL,
                                stdout=emu_out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        if args.emulator == "bochs-nomtf":
            drain = PtyDrain(os.path.join(work, "emulator.out"))
        while True:
            exited = proc.poll() is not None
            for line in serial.poll(final=exited):
                if echo:
                    log("| " + line)
                if banner_seen is False and RE_BANNER.search(line):
                    banner_seen = True
                if (fatal is None and not banner_seen and iso is not None
                        and RE_GRUB_ERROR.search(line)):
                    fatal = "GRUB " + line
                if fatal is None:
                    for rx in RE_FATAL:
                        if rx.search(line):
                            fatal = line
                            break
                if done_at is None and args.done_re.search(line):
                    done_at = time.monotonic()
            elapsed = time.monotonic() - t_emu
            if fatal is not None:
                break
            if exited:
                status = proc.returncode
                break
            if done_at is not None and time.monotonic() - done_at > GRACE_AFTER_DONE:
                stopped_after_done = True
                break
            if elapsed > args.timeout:
                timed_out = True
                break
            latest = serial.current_partial() or (serial.lines[-1] if serial.lines else "")
            progress.update(elapsed, len(serial.lines), latest.strip())
            time.sleep(0.1)
    finally:
        kill_group(proc)
        if drain is not None:
            drain.close()
            if drain.pts:
                log("test2: read %d bytes of Bochs' term display from %s (nobody else reads it)"
                    % (drain.bytes, drain.pts))
        if args.emulator.startswith("bochs"):
            remove_own_locks(work)
        emu_out.close()
        progress.finish()
    emu_time = time.monotonic() - t_emu
    serial.poll(final=True)
    serial.close()
    lines = serial.lines

    failures = []
    if fatal is not None:
        failures.append("fatal marker in the serial log: %s" % fatal.strip())
    if timed_out:
        failures.append("timeout after %gs" % args.timeout)
    if status is not None:
        why = judge_emulator_exit(args, status, work, done_at is not None)
        if why:
            failures.append(why)
    crit, summary = evaluate(args, lines, virt)
    failures += crit

    if status is not None:
        how = "emulator exited with status %d" % status
        if args.emulator.startswith("bochs") and "Shutdown port: shutdown requested" in \
                read_text(os.path.join(work, "emulator.out")):
            how += " (the guest's 'Shutdown' on port 0x8900)"
        elif args.emulator.startswith("bochs") and RE_BOCHS_POWER_OFF.search(
                read_text(os.path.join(work, "emulator.out"))):
            how += " (the guest's ACPI power-off)"
        elif args.emulator.startswith("qemu") and status == QEMU_SUCCESS_STATUS:
            how += " (the guest's %#x on port 0xf4)" % QEMU_SUCCESS_VALUE
        elif args.emulator.startswith("qemu") and status == 0:
            how += " (the guest powered off)"
    elif stopped_after_done:
        how = "emulator stopped by the runner %gs after the guest's closing line" % GRACE_AFTER_DONE
    elif fatal is not None:
        how = "emulator stopped by the runner on the fatal marker"
    else:
        how = "emulator stopped by the runner on timeout"

    ok = not failures
    if args.verbose:
        out = read_text(os.path.join(work, "emulator.out")).strip().splitlines()
        log("---- last %d lines of the emulator's output ----" % min(len(out), 20))
        for l in out[-20:]:
            log("> " + l)
    if not ok:
        log("")
        log("---- last %d serial lines (%s) ----" % (TAIL_LINES, serial_path))
        for l in lines[-TAIL_LINES:]:
            log("| " + l)
        log("---- end of serial log ----")
        log("FAILED:")
        for f in failures:
            log("  - " + f)
    log("")
    log("test2: guest summary: %s" % (summary.strip() if summary else "(none)"))
    log("test2: emulator %s, smp %d, %s" % (args.emulator, args.smp, how))
    log("test2: wall time %.1fs (emulator %.1fs), %d serial lines"
        % (time.monotonic() - t_start, emu_time, len(lines)))
    if args.work_dir:
        log("test2: serial log %s" % serial_path)
        log("test2: emulator logs %s" % ", ".join(p for p in emu_logs if os.path.exists(p)))
    elif not ok:
        log("test2: (the work directory is removed; give --work-dir DIR to keep its logs)")
    log("test2: result %s" % ("PASS" if ok else "FAIL: " + failures[0]))
    return 0 if ok else 1


def main(argv=None):
    # Turn SIGTERM into an exception so the finally clause stops the emulator.
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)   # even if started with SIGINT ignored
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        return run(args)
    except SetupError as e:
        log("test2: error: %s" % e)
        return 2
    except Skip as e:
        log("test2: result SKIP: %s" % e)
        return EXIT_SKIP
    except KeyboardInterrupt:
        log("\ntest2: interrupted; emulator stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())

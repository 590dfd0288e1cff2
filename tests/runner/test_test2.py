"""Unit tests of the integration runner .jenkins/test2.py itself: argument handling
(XMHF64's command-line forms), disk recognition, the KVM skip, and how a run is judged.
No emulator is started. Run with `python3 -m unittest discover -s tests/runner -v`
(make check does)."""

import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from contextlib import redirect_stdout

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def load_runner():
    spec = importlib.util.spec_from_file_location(
        "test2", os.path.join(REPO, ".jenkins", "test2.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


t2 = load_runner()


def quiet(fn, *a, **kw):
    """Calls fn with stdout and stderr swallowed (argparse prints its usage errors)."""
    out = io.StringIO()
    old_err = sys.stderr
    sys.stderr = out
    try:
        with redirect_stdout(out):
            return fn(*a, **kw)
    finally:
        sys.stderr = old_err


class Arguments(unittest.TestCase):
    def test_xmhf64_seed_form(self):
        a = t2.parse_args(["--subarch", "amd64", "--xmhf-bin", ".", "--qemu-image",
                           "debian11x64-t.qcow2", "--qemu-image-back", "debian11x64.qcow2",
                           "--smp", "4", "--work-dir", "/tmp/t"])
        self.assertEqual(a.qemu_image, "debian11x64-t.qcow2")
        self.assertEqual(a.qemu_image_back, "debian11x64.qcow2")
        self.assertEqual(a.smp, 4)
        self.assertEqual(a.work_dir, "/tmp/t")
        self.assertEqual(a.memory, 512)                 # a disk guest's default
        self.assertEqual(a.guest_done, t2.DEFAULT_DISK_DONE)

    def test_xmhf64_ci_flags_accepted(self):
        a = t2.parse_args(["--subarch", "amd64", "--no-display", "--verbose",
                           "--watch-serial", "--sshpass", "jkl"])
        self.assertTrue(a.no_display and a.verbose and a.watch_serial)
        self.assertEqual(a.memory, 128)                 # the test guest's default
        self.assertEqual(a.guest_done, t2.DEFAULT_GUEST_DONE)

    def test_memory_units(self):
        for text, mb in (("128", 128), ("1024M", 1024), ("1024MiB", 1024), ("512m", 512),
                         ("1G", 1024), ("1.5G", 1536), ("32768K", 32)):
            self.assertEqual(t2.parse_args(["--memory", text]).memory, mb, text)

    def test_memory_refused(self):
        for text in ("lots", "12X", "100K", "-5"):
            with self.assertRaises(SystemExit, msg=text):
                quiet(t2.parse_args, ["--memory", text])
        with self.assertRaises(t2.SetupError):
            t2.parse_args(["--memory", "8M"])

    def test_back_needs_image(self):
        with self.assertRaises(t2.SetupError):
            t2.parse_args(["--qemu-image-back", "b.qcow2"])

    def test_no_test_xmhf_needs_disk(self):
        with self.assertRaises(t2.SetupError):
            t2.parse_args(["--no-test-xmhf"])

    def test_i386_refused(self):
        with self.assertRaises(t2.SetupError):
            t2.parse_args(["--subarch", "i386"])

    def test_unknown_option_is_usage_error(self):
        with self.assertRaises(SystemExit) as cm:
            quiet(t2.parse_args, ["--no-such-option"])
        self.assertEqual(cm.exception.code, 2)

    def test_grub_entry_for_a_disk(self):
        a = t2.parse_args(["--qemu-image", "d.img"])
        cfg = t2.grub_cfg(a)
        self.assertIn("module    --nounzip (hd0)+1", cfg)
        self.assertIn("multiboot /boot/init-x86-amd64.bin serial=115200,8n1,0x3f8", cfg)
        self.assertNotIn("guest.bin", cfg)


class Disks(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="test2-unit-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def raw(self, name, first_sector, size=1 << 20):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(first_sector.ljust(512, b"\0")[:512])
            f.write(bytes(size - 512))
        return path

    def mbr(self):
        return b"\xeb\xfe".ljust(510, b"\0") + b"\x55\xaa"

    def test_raw_mbr(self):
        path = self.raw("ok.img", self.mbr())
        self.assertEqual(t2.inspect_disk(path, self.dir), ("raw", 1 << 20))

    def test_raw_without_signature(self):
        path = self.raw("blank.img", b"")
        with self.assertRaisesRegex(t2.SetupError, "not bootable.*55 AA"):
            t2.inspect_disk(path, self.dir)

    def test_too_small(self):
        path = os.path.join(self.dir, "tiny.img")
        with open(path, "wb") as f:
            f.write(b"\x55\xaa")
        with self.assertRaisesRegex(t2.SetupError, "too small"):
            t2.inspect_disk(path, self.dir)

    def test_missing(self):
        with self.assertRaisesRegex(t2.SetupError, "does not exist"):
            t2.inspect_disk(os.path.join(self.dir, "nope.img"), self.dir)

    def test_iso_named(self):
        path = os.path.join(self.dir, "cd.iso")
        with open(path, "wb") as f:
            f.write(bytes(0x8001) + b"CD001" + bytes(4096))
        with self.assertRaisesRegex(t2.SetupError, "ISO 9660"):
            t2.inspect_disk(path, self.dir)

    def test_elf_named(self):
        path = self.raw("init.bin", b"\x7fELF\x01\x01\x01")
        with self.assertRaisesRegex(t2.SetupError, "ELF"):
            t2.inspect_disk(path, self.dir)

    def need_qemu_img(self):
        if shutil.which("qemu-img") is None:
            self.skipTest("qemu-img not installed (qemu-utils)")

    def qcow2(self, raw_path, name):
        out = os.path.join(self.dir, name)
        subprocess.check_call(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2",
                               raw_path, out])
        return out

    def test_qcow2_with_mbr(self):
        self.need_qemu_img()
        q = self.qcow2(self.raw("src.img", self.mbr()), "d.qcow2")
        self.assertEqual(t2.inspect_disk(q, self.dir), ("qcow2", 1 << 20))

    def test_qcow2_without_mbr(self):
        self.need_qemu_img()
        q = self.qcow2(self.raw("src.img", b""), "blank.qcow2")
        with self.assertRaisesRegex(t2.SetupError, r"\(qcow2\) is not bootable"):
            t2.inspect_disk(q, self.dir)

    def test_qcow2_missing_backing_file(self):
        self.need_qemu_img()
        back = self.qcow2(self.raw("src.img", self.mbr()), "back.qcow2")
        top = os.path.join(self.dir, "top.qcow2")
        subprocess.check_call(["qemu-img", "create", "-q", "-f", "qcow2", "-b", back,
                               "-F", "qcow2", top])
        self.assertEqual(t2.inspect_disk(top, self.dir)[0], "qcow2")   # follows the chain
        os.unlink(back)
        with self.assertRaisesRegex(t2.SetupError, "backing file"):
            t2.inspect_disk(top, self.dir)

    def test_overlay_created_from_back(self):
        """--qemu-image-back: the image becomes a new overlay on the back, as XMHF64's
        runner makes it; for Bochs the chain is converted to a raw file in the work dir."""
        self.need_qemu_img()
        back = self.qcow2(self.raw("src.img", self.mbr()), "base.qcow2")
        top = os.path.join(self.dir, "run-t.qcow2")
        with open(top, "wb") as f:
            f.write(b"stale contents from an earlier run")
        work = os.path.join(self.dir, "work")
        os.mkdir(work)
        a = t2.parse_args(["--qemu-image", top, "--qemu-image-back", back])
        quiet(t2.prepare_disk, a, work)
        self.assertEqual(a.disk_format, "qcow2")
        info = subprocess.check_output(["qemu-img", "info", top], universal_newlines=True)
        self.assertIn("backing file: " + back, info)
        self.assertEqual(a.bochs_disk, os.path.join(work, "disk.raw"))
        with open(a.bochs_disk, "rb") as f:
            self.assertEqual(f.read(512), self.mbr())


class Kvm(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="test2-kvm-")

    def tearDown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def put(self, rel, text=""):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def test_no_dev_kvm(self):
        self.assertIn("no /dev/kvm", t2.kvm_unavailable(self.root))

    def test_cpu_without_vmx(self):
        self.put("dev/kvm")
        self.put("proc/cpuinfo", "vendor_id\t: AuthenticAMD\nflags\t: fpu hypervisor\n")
        self.put("sys/module/kvm_pvm/parameters/x", "")
        why = t2.kvm_unavailable(self.root)
        self.assertIn("shows no SVM", why)
        self.assertIn("kvm_pvm", why)

    def test_no_nested(self):
        self.put("dev/kvm")
        self.put("proc/cpuinfo", "vendor_id\t: GenuineIntel\nflags\t: vmx\n")
        self.put("sys/module/kvm_intel/parameters/nested", "N\n")
        why = t2.kvm_unavailable(self.root)
        self.assertIn("nested VMX", why)
        self.assertIn("nested=N", why)

    def test_amd_module_not_loaded(self):
        self.put("dev/kvm")
        self.put("proc/cpuinfo", "vendor_id\t: AuthenticAMD\nflags\t: svm\n")
        self.assertIn("kvm_amd is not loaded", t2.kvm_unavailable(self.root))

    def test_nested_offered(self):
        self.put("dev/kvm")
        self.put("proc/cpuinfo", "vendor_id\t: GenuineIntel\nflags\t: vmx\n")
        self.put("sys/module/kvm_intel/parameters/nested", "Y\n")
        self.assertIsNone(t2.kvm_unavailable(self.root))

    def test_skip_exit_status(self):
        if shutil.which("qemu-system-x86_64") is None:
            self.skipTest("qemu-system-x86_64 not installed")
        saved = t2.kvm_unavailable
        t2.kvm_unavailable = lambda root="/": "no /dev/kvm (faked)"
        try:
            out = io.StringIO()
            with redirect_stdout(out):
                rc = t2.main(["--emulator", "qemu-kvm"])
        finally:
            t2.kvm_unavailable = saved
        self.assertEqual(rc, t2.EXIT_SKIP)
        self.assertIn("test2: result SKIP: qemu-kvm: no /dev/kvm (faked)", out.getvalue())


class Judging(unittest.TestCase):
    OURS = ["XMHF 0.1 (amd64) runtime", "xmhf-init: E820 0 ...", "xmhf: VMX on 2 of 2 CPUs"]

    def args(self, *extra):
        return t2.parse_args(["--smp", "2"] + list(extra))

    def test_full_run(self):
        fails, summary = t2.evaluate(self.args(), self.OURS + ["guest: 17 passed, 0 failed"],
                                     "VMX")
        self.assertEqual(fails, [])
        self.assertEqual(summary, "guest: 17 passed, 0 failed")

    def test_skips_are_not_failures(self):
        fails, _ = t2.evaluate(self.args(),
                               self.OURS + ["guest: 16 passed, 0 failed, 3 skipped"], "VMX")
        self.assertEqual(fails, [])

    def test_failed_case_fails(self):
        fails, _ = t2.evaluate(self.args(), self.OURS + ["guest: 16 passed, 1 failed"], "VMX")
        self.assertTrue(any("1 failed" in f for f in fails))

    def test_nothing_passed_fails(self):
        fails, _ = t2.evaluate(self.args(),
                               self.OURS + ["guest: 0 passed, 0 failed, 19 skipped"], "VMX")
        self.assertTrue(fails)

    def test_other_hypervisor_needs_judge_by_guest(self):
        lines = ["eXtensible Modular Hypervisor Framework", "login: ", "booted: ok"]
        fails, _ = t2.evaluate(self.args("--guest-done", "booted: ok"), lines, "VMX")
        self.assertTrue(any("banner" in f for f in fails))
        fails, _ = t2.evaluate(self.args("--guest-done", "booted: ok", "--judge-by-guest",
                                         "--expect", "eXtensible"), lines, "VMX")
        self.assertEqual(fails, [])
        fails, _ = t2.evaluate(self.args("--guest-done", "booted: ok", "--judge-by-guest",
                                         "--expect", "absent line"), lines, "VMX")
        self.assertEqual(len(fails), 1)

    def test_disk_guest_default_closing_lines(self):
        rx = t2.parse_args(["--qemu-image", "d.img"]).done_re
        for line in ("[    1.234567] Run /init as init process",
                     "[    2.0] Run /sbin/init as init process",
                     "Welcome to Debian GNU/Linux 11 (bullseye)!",
                     "debian login: ", "linux-guest: done"):
            self.assertTrue(rx.search(line), line)
        for line in ("Freeing unused kernel image memory", "login incorrect"):
            self.assertFalse(rx.search(line), line)

    def bochs_exit(self, message, done_seen):
        work = tempfile.mkdtemp(prefix="test2-exit-")
        try:
            with open(os.path.join(work, "emulator.out"), "w") as f:
                f.write("========\nBochs is exiting with the following message:\n"
                        "[ACPI  ] %s\n========\n" % message)
            return t2.judge_emulator_exit(self.args(), 1, work, done_seen)
        finally:
            shutil.rmtree(work)

    def test_acpi_power_off_after_closing_line(self):
        self.assertIsNone(self.bochs_exit("ACPI control: soft power off", True))

    def test_acpi_power_off_before_closing_line(self):
        self.assertIn("before its closing line",
                      self.bochs_exit("ACPI control: soft power off", False))

    def test_other_bochs_fatal(self):
        self.assertIn("Bochs stopped", self.bochs_exit("something broke", True))


if __name__ == "__main__":
    unittest.main()

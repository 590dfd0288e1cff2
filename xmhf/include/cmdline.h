/* Boot command line of init-x86-amd64.bin (README "GRUB entry").
 * Pure logic: compiled freestanding (init) and on the host (tests/unit). */
#ifndef XMHF_CMDLINE_H
#define XMHF_CMDLINE_H
#include <stddef.h>
#include <stdint.h>

struct xmhf_bootopts {
    uint32_t baud;        /* serial=BAUD,...: a divisor of 115200 */
    uint16_t serial_port; /* serial=...,PORT: I/O port of the 16550 UART */
    uint8_t  boot_drive;  /* boot_drive=0xNN: DL handed to the guest */
    uint8_t  selftest;    /* selftest=pagefault: XMHF_SELFTEST_*, 0 = none */
    uint8_t  apic_mode;   /* apic=step|zeroexit: XMHF_APIC_* */
    uint8_t  dmap;        /* dmap=on|off: 1 = DMA protection wanted (default) */
    uint8_t  reserved[2]; /* explicit, so init (32-bit) and the runtime agree */
};

/* selftest=pagefault: the runtime takes a page fault on purpose before the guest starts,
 * to show (and let the test bench check) that a fault in the hypervisor is reported with
 * CPU, vector, RIP, error code and CR2 and halts that CPU instead of resetting the machine. */
#define XMHF_SELFTEST_PAGEFAULT 1

/* apic=step (the default): every guest write to the xAPIC page and the x2APIC ICR is
 * captured and single-stepped, so the hypervisor sees every IPI. apic=zeroexit (Intel
 * only): no APIC access is intercepted; APs wait in the wait-for-SIPI activity state and
 * the guest's INIT/STARTUP arrive as INIT and SIPI VM exits (README "APIC modes"). */
#define XMHF_APIC_STEP     0
#define XMHF_APIC_ZEROEXIT 1

/* Fills *out with the defaults (baud 115200, port default_port, drive 0x80, apic=step), then applies
 * every option in cmdline. The first token is skipped when it holds no '=' (GRUB passes
 * the image path first); dmap defaults to 1. Accepted options:
 *   serial=BAUD,8n1,PORT   BAUD decimal dividing 115200 evenly, "8n1" only, PORT 0x1..0xffff
 *   boot_drive=0xNN        hex, 0x00..0xff
 *   selftest=pagefault     see XMHF_SELFTEST_PAGEFAULT
 *   apic=step|zeroexit     see XMHF_APIC_* (the runtime refuses zeroexit where the CPU
 *                          cannot do it)
 *   dmap=on|off            DMA protection through the IOMMU (on by default)
 * Returns 0, or -1 with a one-line NUL-terminated message in err (at most errlen bytes,
 * naming the offending token) for an unknown option or a malformed value; *out then holds
 * the plain defaults (nothing partially applied). err may be NULL when errlen is 0. */
int xmhf_parse_cmdline(const char *cmdline, uint16_t default_port,
                       struct xmhf_bootopts *out, char *err, size_t errlen);

#endif

/* The bitmaps that decide which I/O ports and MSRs a hypapp intercepts, and the IN
 * result as the processor writes it. Pure logic (xmhf/src/lib/iobitmap.c), unit-tested on
 * the host.
 *
 * I/O ports, one layout for both vendors: one bit per port (bit p of byte p / 8), 64 Ki
 * bits, then bits 0x10000-0x10002 repeating ports 0-2, 12 KiB in all. That is AMD's I/O
 * permissions map (APM Vol. 2, 15.10.1 "I/O Permissions Map": an access of n bytes at
 * port p checks bits p .. p+n-1, which runs past 0xffff for an access that wraps), and
 * its first two pages are Intel's I/O bitmaps A (ports 0-7fff) and B (8000-ffff) (SDM
 * Vol. 3C 25.6.4 "I/O-Bitmap Addresses"; Intel exits on a wrapping access anyway).
 *
 * MSRs, Intel's layout (SDM Vol. 3C 25.6.9 "MSR-Bitmap Address"): 4 KiB, read bitmaps
 * of MSRs 0-1fff at 0 and c0000000-c0001fff at 0x400, write bitmaps at 0x800 and 0xc00.
 * AMD's map is svm.h's svm_msrpm_*. */
#ifndef XMHF_IOBITMAP_H
#define XMHF_IOBITMAP_H
#include <stdbool.h>
#include <stdint.h>

#define IOBITMAP_SIZE 0x3000u

/* Sets the bits of ports [port, port + count); port + count <= 0x10000 (the caller
 * checks). */
void iobitmap_set(uint8_t *bm, uint32_t port, uint32_t count);
/* Whether an access of size bytes at port touches an intercepted port (wrapping past
 * 0xffff to 0, as the processor's port numbers do). */
bool iobitmap_hits(const uint8_t *bm, uint16_t port, unsigned size);

/* RAX after IN of size 1, 2 or 4 bytes returned value: AL and AX keep the rest of RAX,
 * EAX is zero-extended (a 32-bit destination). */
uint64_t io_in_merge(uint64_t rax, unsigned size, uint32_t value);

/* Intel MSR bitmap: whether msr is in its ranges, and its read (access bit 0) and/or
 * write (bit 1) intercept bits set. -1 for an MSR outside the ranges. */
bool vmx_msr_bitmap_covers(uint32_t msr);
int vmx_msr_bitmap_set(uint8_t *bm, uint32_t msr, unsigned access);

#endif

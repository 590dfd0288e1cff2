/* I/O-port and MSR intercept bitmaps (contracts and layouts in iobitmap.h). */
#include "iobitmap.h"

static void bit_set(uint8_t *bm, uint32_t bit)
{
    bm[bit >> 3] = (uint8_t)(bm[bit >> 3] | (1u << (bit & 7)));
}

void iobitmap_set(uint8_t *bm, uint32_t port, uint32_t count)
{
    for (uint32_t p = port; p < port + count; p++) {
        bit_set(bm, p);
        if (p < 3)
            bit_set(bm, 0x10000u + p);  /* for an access that wraps from 0xffff */
    }
}

bool iobitmap_hits(const uint8_t *bm, uint16_t port, unsigned size)
{
    for (unsigned i = 0; i < size; i++) {
        uint16_t p = (uint16_t)(port + i);
        if (bm[p >> 3] & (1u << (p & 7)))
            return true;
    }
    return false;
}

uint64_t io_in_merge(uint64_t rax, unsigned size, uint32_t value)
{
    if (size == 1)
        return (rax & ~0xffull) | (value & 0xffu);
    if (size == 2)
        return (rax & ~0xffffull) | (value & 0xffffu);
    return value;
}

bool vmx_msr_bitmap_covers(uint32_t msr)
{
    return msr <= 0x1fffu || (msr >= 0xc0000000u && msr <= 0xc0001fffu);
}

int vmx_msr_bitmap_set(uint8_t *bm, uint32_t msr, unsigned access)
{
    if (!vmx_msr_bitmap_covers(msr))
        return -1;
    uint32_t base = msr <= 0x1fffu ? 0 : 0x400u, bit = msr & 0x1fffu;
    if (access & 1u)
        bit_set(bm, (base + bit / 8) * 8 + bit % 8);
    if (access & 2u)
        bit_set(bm, (0x800u + base + bit / 8) * 8 + bit % 8);
    return 0;
}

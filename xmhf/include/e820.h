/* The BIOS memory map: INT 15h, EAX=E820h (ACPI 6.5 section 15, "System Address Map
 * Interfaces"), as handed on by multiboot (Multiboot 0.6.96 section 3.3, mmap_*).
 * The editing functions are pure logic, compiled freestanding and on the host. */
#ifndef XMHF_E820_H
#define XMHF_E820_H
#include <stdbool.h>
#include <stdint.h>

#define E820_RAM      1u /* AddressRangeMemory: usable */
#define E820_RESERVED 2u /* AddressRangeReserved */
#define E820_ACPI     3u /* AddressRangeACPI: reclaimable after reading the tables */
#define E820_NVS      4u /* AddressRangeNVS */
#define E820_UNUSABLE 5u /* AddressRangeUnusable */

#define E820_SMAP     0x534d4150u /* 'SMAP' in EAX/EDX of the BIOS call */
#define E820_MAX      128u

struct e820_entry {
    _Alignas(8) uint64_t base; /* 8-aligned on i386 too: init and runtime share it */
    uint64_t length;
    uint32_t type;
};

struct e820_map {
    uint32_t count;
    struct e820_entry e[E820_MAX];
};

/* Sorts by base, drops empty entries, resolves overlaps (where entries overlap, the
 * higher type number wins, so a reserved range never turns usable) and merges
 * adjacent entries of one type. Returns 0, or -1 when the result would not fit. */
int e820_sanitize(struct e820_map *m);

/* Makes [base, base+len) exactly of type `type`, splitting entries as needed; parts of the
 * range no entry covered become `type` too. The map stays sanitized. Returns 0, or -1
 * (map unchanged) when it would exceed E820_MAX entries or base+len overflows. */
int e820_set_range(struct e820_map *m, uint64_t base, uint64_t len, uint32_t type);

/* True when every byte of [base, base+len) lies in entries of type `type`. */
bool e820_range_is(const struct e820_map *m, uint64_t base, uint64_t len, uint32_t type);

/* True when some byte of [base, base+len) lies in an entry of type `type`. */
bool e820_range_touches(const struct e820_map *m, uint64_t base, uint64_t len, uint32_t type);

/* The highest base, aligned to `align` (a power of two), such that [base, base+size) is
 * entirely usable RAM and base+size <= limit. Returns 0 and *out, or -1 if none. */
int e820_find_top(const struct e820_map *m, uint64_t size, uint64_t align,
                  uint64_t limit, uint64_t *out);

/* Leaves out everything at or above `limit` (a nonzero multiple of 4 KiB): entries above
 * it go, an entry across it ends there. Returns how many entries changed (0: none), or
 * -1 (map unchanged) for a bad limit. The map stays sanitized. */
int e820_clip(struct e820_map *m, uint64_t limit);

/* One past the highest byte of any usable-RAM entry (0 for an empty map). */
uint64_t e820_ram_top(const struct e820_map *m);

#endif

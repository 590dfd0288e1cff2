/* What init (32-bit) hands to the runtime (64-bit). Fixed-width fields only, no
 * pointers, so both sides see one layout; checked by the static asserts. */
#ifndef XMHF_BOOTPARAMS_H
#define XMHF_BOOTPARAMS_H
#include <stddef.h>
#include <stdint.h>
#include "cmdline.h"
#include "e820.h"

/* The runtime image starts with this header (xmhf/src/runtime/runtime.ld). */
#define RUNTIME_MAGIC 0x31464d48584d5452ull /* "RTXMHMF1" */
struct runtime_header {
    uint64_t magic;
    uint64_t entry_offset;  /* of the BSP entry from the start of the image */
    uint64_t image_size;    /* bytes in the file */
    uint64_t total_size;    /* image plus bss */
    uint64_t link_base;     /* virtual address the image is linked at */
};
_Static_assert(sizeof(struct runtime_header) == 40, "runtime header layout");

/* Virtual address the runtime is linked at (the -2 GiB "kernel" code model window). */
#define RUNTIME_VBASE 0xffffffff80000000ull

#define BOOTPARAMS_MAGIC 0x584d4846424f4f54ull
#define CMDLINE_MAX 256u

struct bootparams {
    uint64_t magic;
    uint64_t region_base;   /* physical, 2 MiB aligned: runtime, tables, heap */
    uint64_t region_size;
    uint64_t heap_base;     /* physical [heap_base, region_base + region_size) */
    uint64_t pml4_phys;     /* host page tables built by init */
    uint64_t guest_size;    /* bytes copied to 0x7c00 */
    uint64_t tsc_init;      /* TSC when init started: boot-time accounting */
    struct xmhf_bootopts opts;
    _Alignas(8) char cmdline[CMDLINE_MAX];
    _Alignas(8) struct e820_map e820;   /* firmware map with the region already reserved */
};
_Static_assert(offsetof(struct bootparams, cmdline) == 72, "bootparams layout (both ABIs)");
_Static_assert(offsetof(struct bootparams, e820) == 328, "bootparams layout (both ABIs)");
_Static_assert(sizeof(struct bootparams) == 3408, "bootparams layout (both ABIs)");
_Static_assert(sizeof(struct xmhf_bootopts) == 12, "boot options layout (both ABIs)");
_Static_assert(sizeof(struct e820_entry) == 24, "e820 entry layout (both ABIs)");

/* The BIOS data area's conventional-memory size (word at 413h, KiB). Firmware that
 * leaves nonsense there (below 64 KiB, above 640) is taken as having the usual 639 KiB:
 * init and the INT 15h hook (which takes the top KiB for its stub) use this one rule. */
#define BDA_BASE_MEM_KB 0x413u
static inline uint32_t bda_base_kb(uint32_t raw)
{
    return (raw < 64 || raw > 640) ? 639 : raw;
}

/* Highest physical address + 1 the hypervisor handles: its nested page tables translate
 * 48 bits (and no processor address is wider than MAXPHYADDR). init clips the firmware's
 * map there (e820_clip). */
#define PHYS_ADDR_LIMIT_48 (1ull << 48)

#endif

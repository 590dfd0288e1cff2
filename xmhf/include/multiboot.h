/* Multiboot Specification version 0.6.96: section 3.1 "OS image format" (header) and
 * 3.3 "Boot information format". All fields are 32-bit physical addresses. */
#ifndef XMHF_MULTIBOOT_H
#define XMHF_MULTIBOOT_H
#include <stddef.h>
#include <stdint.h>

#define MB_HEADER_MAGIC     0x1badb002u
#define MB_BOOTLOADER_MAGIC 0x2badb002u  /* in EAX at entry */
#define MB_HDR_ALIGN        (1u << 0)    /* modules page aligned */
#define MB_HDR_MEMINFO      (1u << 1)    /* ask for mem_* and mmap_* */

#define MB_INFO_MEM         (1u << 0)
#define MB_INFO_CMDLINE     (1u << 2)
#define MB_INFO_MODS        (1u << 3)
#define MB_INFO_MMAP        (1u << 6)

struct mb_info {
    uint32_t flags;
    uint32_t mem_lower, mem_upper;
    uint32_t boot_device;
    uint32_t cmdline;
    uint32_t mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr;
    /* drives, config table, loader name, APM, VBE, framebuffer follow; unused */
};
_Static_assert(offsetof(struct mb_info, cmdline) == 16, "multiboot info layout");
_Static_assert(offsetof(struct mb_info, mods_count) == 20, "multiboot info layout");
_Static_assert(offsetof(struct mb_info, mmap_length) == 44, "multiboot info layout");

struct mb_module {
    uint32_t mod_start, mod_end; /* [start, end) physical */
    uint32_t string;             /* the rest of the GRUB `module` line */
    uint32_t reserved;
};
_Static_assert(sizeof(struct mb_module) == 16, "multiboot module layout");

/* One mmap record; `size` counts the bytes after itself, so records may grow. */
struct __attribute__((packed)) mb_mmap {
    uint32_t size;
    uint64_t base;
    uint64_t length;
    uint32_t type;
};
_Static_assert(sizeof(struct mb_mmap) == 24, "multiboot mmap layout");

#endif

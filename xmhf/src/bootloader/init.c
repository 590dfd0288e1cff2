/* init-x86-amd64.bin: the 32-bit multiboot stage. It checks everything GRUB handed
 * over, picks and reserves the hypervisor's region, relocates the runtime there, puts
 * the guest's boot code at 0x7c00 and enters the 64-bit runtime. Any problem ends in a
 * clear message on serial and on the screen, then a halt: never a silent default. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "acpi.h"
#include "bootparams.h"
#include "cmdline.h"
#include "dmap.h"
#include "e820.h"
#include "multiboot.h"
#include "uart.h"
#include "version.h"
#include "x86.h"

#ifndef DEBUG_SERIAL_PORT
#define DEBUG_SERIAL_PORT 0x3f8
#endif

#define GUEST_LOAD_ADDR 0x7c00u
#define HEAP_BASE_SIZE  (4ull << 20)
#define HEAP_PER_CPU    (64ull << 10)   /* VMCS/VMCB, stacks, private nested-page path */
#define HEAP_BASE_CPUS  16u             /* covered by HEAP_BASE_SIZE */
#define TWO_MB          0x200000ull
#define FOUR_GB         0x100000000ull
#define ALIGN_UP4K(x)   (((x) + 0xfffull) & ~0xfffull)

extern char __init_start[], __init_end[];
void enter_runtime(uint32_t pml4, uint32_t bp, uint32_t entry_lo, uint32_t entry_hi);
int vsnprintk(char *buf, size_t n, const char *fmt, va_list ap);
void *memset(void *d, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);

static uint16_t con_port = DEBUG_SERIAL_PORT;
static unsigned vga_row;

static void vga_line(const char *s)
{
    volatile uint16_t *vga = (volatile uint16_t *)0xb8000;
    if (vga_row == 25) {
        for (unsigned i = 0; i < 24 * 80; i++)
            vga[i] = vga[i + 80];
        vga_row = 24;
    }
    unsigned col = 0;
    for (; *s && *s != '\n' && col < 80; s++)
        vga[vga_row * 80 + col++] = (uint16_t)(0x0f00 | (uint8_t)*s);
    for (; col < 80; col++)
        vga[vga_row * 80 + col] = 0x0f20;
    vga_row++;
}

static void out(int on_screen, const char *fmt, ...)
{
    char buf[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintk(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    for (const char *p = buf; *p; p++) {
        if (*p == '\n')
            uart_putc(con_port, '\r');
        uart_putc(con_port, *p);
    }
    if (on_screen)
        vga_line(buf);
}
#define info(...) out(0, __VA_ARGS__)

static __attribute__((noreturn)) void fail(const char *fmt, ...)
{
    char buf[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintk(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    out(1, "xmhf-init: ERROR: %s\n", buf);
    out(1, "xmhf-init: halted. Fix the GRUB entry (see README) and reboot.\n");
    halt_forever();
}

static const char *e820_name(uint32_t t)
{
    static const char *const names[] = { "?", "usable", "reserved", "ACPI", "NVS", "unusable" };
    return t < 6 ? names[t] : "other";
}

static void read_memory_map(const struct mb_info *mbi, struct e820_map *m)
{
    if (!(mbi->flags & MB_INFO_MMAP) || mbi->mmap_length == 0)
        fail("the boot loader passed no memory map (multiboot flag 6); boot with GRUB");
    m->count = 0;
    for (uint32_t off = 0; off + sizeof(struct mb_mmap) <= mbi->mmap_length;) {
        const struct mb_mmap *r = (const struct mb_mmap *)(uintptr_t)(mbi->mmap_addr + off);
        if (m->count == E820_MAX)
            fail("the firmware memory map has more than %u entries", E820_MAX);
        m->e[m->count].base = r->base;
        m->e[m->count].length = r->length;
        m->e[m->count].type = r->type;
        m->count++;
        off += r->size + 4;
    }
    if (e820_sanitize(m) != 0 || m->count == 0)
        fail("the firmware memory map is empty or cannot be normalised");
    /* Nothing above what the processor addresses (MAXPHYADDR) or the nested page tables
     * translate (48 bits) is of use to the guest: the map ends there, said once. */
    uint32_t r[4] = { 0, 0, 0, 0 };
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(0x80000000u), "c"(0));
    unsigned bits = 36;
    if (r[0] >= 0x80000008u) {
        __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(0x80000008u), "c"(0));
        bits = r[0] & 0xff;
    }
    uint64_t limit = bits >= 48 || bits < 32 ? PHYS_ADDR_LIMIT_48 : 1ull << bits;
    int clipped = e820_clip(m, limit);
    if (clipped < 0 || m->count == 0)
        fail("the firmware memory map has nothing below %llx", (unsigned long long)limit);
    if (clipped > 0)
        info("xmhf-init: the firmware memory map reaches beyond %llx (the physical address "
             "space the hypervisor maps): the part above is left out\n",
             (unsigned long long)limit);
    for (uint32_t i = 0; i < m->count; i++)
        info("xmhf-init: E820 %016llx-%016llx %s\n", (unsigned long long)m->e[i].base,
             (unsigned long long)(m->e[i].base + m->e[i].length), e820_name(m->e[i].type));
}

static int ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

/* Processors the firmware lists (enabled MADT entries, local APIC and x2APIC), so that
 * the heap holds each one's state; the runtime enumerates them again itself. ACPI 6.5
 * 5.2.5 (RSDP in the EBDA's first KiB or 0xe0000-0xfffff), 5.2.7 RSDT, 5.2.12 MADT.
 * Without ACPI: 1. Tables above 4 GiB are out of this 32-bit stage's reach: 1. */
static uint8_t sum8(const void *p, uint32_t n)
{
    uint8_t s = 0;
    for (const uint8_t *b = p; n--; b++)
        s = (uint8_t)(s + *b);
    return s;
}

static const struct acpi_header *sdt(uint64_t pa, const char *sig)
{
    if (!pa || pa >= 0xfff00000ull)
        return NULL;
    const struct acpi_header *h = (const struct acpi_header *)(uintptr_t)pa;
    if (memcmp(h->sig, sig, 4) || h->length < sizeof(*h) || pa + h->length > FOUR_GB ||
        sum8(h, h->length))
        return NULL;
    return h;
}

static uint32_t madt_cpu_count(void)
{
    const struct acpi_rsdp *r = NULL;
    uint32_t ebda = (uint32_t)*(volatile uint16_t *)(uintptr_t)0x40e << 4;
    for (uint32_t a = ebda; !r && ebda >= 0x80000 && a < ebda + 1024; a += 16)
        if (!memcmp((const void *)(uintptr_t)a, "RSD PTR ", 8) && !sum8((const void *)(uintptr_t)a, 20))
            r = (const struct acpi_rsdp *)(uintptr_t)a;
    for (uint32_t a = 0xe0000; !r && a < 0x100000; a += 16)
        if (!memcmp((const void *)(uintptr_t)a, "RSD PTR ", 8) && !sum8((const void *)(uintptr_t)a, 20))
            r = (const struct acpi_rsdp *)(uintptr_t)a;
    const struct acpi_header *rsdt = r ? sdt(r->rsdt, "RSDT") : NULL;
    if (!rsdt)
        return 1;
    const struct acpi_header *madt = NULL;
    for (uint32_t off = sizeof(*rsdt); !madt && off + 4 <= rsdt->length; off += 4) {
        uint32_t pa;
        memcpy(&pa, (const uint8_t *)rsdt + off, 4);
        madt = sdt(pa, "APIC");
    }
    if (!madt)
        return 1;
    const uint8_t *p = (const uint8_t *)madt;
    uint32_t n = 0;
    for (uint32_t off = MADT_ENTRIES_OFFSET; off + 2 <= madt->length && p[off + 1] >= 2 &&
                                             off + p[off + 1] <= madt->length; off += p[off + 1]) {
        uint32_t flags = 0;
        if (p[off] == MADT_LAPIC && p[off + 1] >= 8)
            memcpy(&flags, p + off + 4, 4);
        else if (p[off] == MADT_X2APIC && p[off + 1] >= 16)
            memcpy(&flags, p + off + 8, 4);
        n += flags & MADT_ENABLED;
    }
    return n ? n : 1;
}

/* Builds the runtime's page tables in [pt, pt + 8 pages): identity map of 0..4 GiB with
 * 2 MiB pages (the runtime reaches guest memory, ACPI tables and the APIC through it)
 * and the region at RUNTIME_VBASE. The MTRRs keep MMIO uncached. */
static void build_page_tables(uint64_t pt, uint64_t region, uint64_t region_size)
{
    uint64_t *pml4 = (uint64_t *)(uintptr_t)pt;
    uint64_t *pdpt_lo = pml4 + 512, *pd_lo = pml4 + 1024;      /* 4 PDs */
    uint64_t *pdpt_hi = pml4 + 512 * 5, *pd_hi = pml4 + 512 * 6;
    memset(pml4, 0, 7 * 4096);
    pml4[0] = (pt + 0x1000) | 3;
    for (unsigned i = 0; i < 4; i++)
        pdpt_lo[i] = (pt + 0x2000 + i * 0x1000ull) | 3;
    for (unsigned i = 0; i < 2048; i++)
        pd_lo[i] = ((uint64_t)i * TWO_MB) | 0x83;               /* P, RW, PS */
    pml4[511] = (pt + 0x5000) | 3;
    pdpt_hi[510] = (pt + 0x6000) | 3;
    for (uint64_t off = 0; off < region_size; off += TWO_MB)
        pd_hi[off / TWO_MB] = (region + off) | 0x83;
}

void init_main(uint32_t magic, const struct mb_info *mbi);
void init_main(uint32_t magic, const struct mb_info *mbi)
{
    static struct bootparams bp_tmp;
    struct bootparams *bp = &bp_tmp;
    char err[120];
    uint32_t tlo, thi;
    __asm__ volatile("rdtsc" : "=a"(tlo), "=d"(thi));
    bp->tsc_init = (uint64_t)thi << 32 | tlo;

    uart_init(con_port, 115200);
    if (magic != MB_BOOTLOADER_MAGIC)
        fail("not started by a multiboot loader (EAX=%08x); boot with GRUB's `multiboot`", magic);

    /* 1. Command line. */
    const char *cmd = (mbi->flags & MB_INFO_CMDLINE) ? (const char *)(uintptr_t)mbi->cmdline : "";
    if (xmhf_parse_cmdline(cmd, DEBUG_SERIAL_PORT, &bp->opts, err, sizeof(err)) != 0)
        fail("bad command line: %s", err);
    con_port = bp->opts.serial_port;
    uart_init(con_port, bp->opts.baud);
    info("\nxmhf-init: XMHF %s init (amd64), command line: %s\n", XMHF_VERSION, cmd);
    unsigned cl = 0;
    for (; cmd[cl] && cl + 1 < CMDLINE_MAX; cl++)
        bp->cmdline[cl] = cmd[cl];
    bp->cmdline[cl] = '\0';

    /* 2. Memory map. */
    read_memory_map(mbi, &bp->e820);

    /* 3. Modules: the runtime, then the guest's boot code. */
    if (!(mbi->flags & MB_INFO_MODS) || mbi->mods_count < 2)
        fail("expected 2 modules (hypervisor-x86-amd64.bin.gz, then the guest boot sector), got %u",
             (mbi->flags & MB_INFO_MODS) ? mbi->mods_count : 0);
    if (mbi->mods_count > 2)
        info("xmhf-init: warning: %u modules given, modules after the second are ignored\n",
             mbi->mods_count);
    const struct mb_module *mods = (const struct mb_module *)(uintptr_t)mbi->mods_addr;
    uint64_t init_lo = (uintptr_t)__init_start, init_len = (uintptr_t)__init_end - init_lo;
    for (unsigned i = 0; i < 2; i++) {
        if (mods[i].mod_end <= mods[i].mod_start)
            fail("module %u is empty", i + 1);
        uint64_t len = mods[i].mod_end - mods[i].mod_start;
        if (ranges_overlap(mods[i].mod_start, len, init_lo, init_len))
            fail("module %u overlaps init-x86-amd64.bin", i + 1);
        if (i == 1 && ranges_overlap(mods[1].mod_start, len, mods[0].mod_start,
                                     mods[0].mod_end - mods[0].mod_start))
            fail("modules 1 and 2 overlap");
    }
    const uint8_t *rt = (const uint8_t *)(uintptr_t)mods[0].mod_start;
    uint32_t rt_len = mods[0].mod_end - mods[0].mod_start;
    const struct runtime_header *rh = (const struct runtime_header *)rt;
    if (rt_len < sizeof(*rh) || rh->magic != RUNTIME_MAGIC) {
        if (rt_len >= 2 && rt[0] == 0x1f && rt[1] == 0x8b)
            fail("module 1 is still gzip-compressed: load it with `module`, not `modulenounzip`");
        fail("module 1 is not hypervisor-x86-amd64.bin (bad header)");
    }
    if (rh->image_size > rt_len || rh->total_size < rh->image_size ||
        rh->entry_offset >= rh->image_size || rh->link_base != RUNTIME_VBASE ||
        rh->total_size > (256ull << 20))
        fail("module 1: inconsistent runtime header (image %llu of %u bytes)",
             (unsigned long long)rh->image_size, rt_len);

    uint32_t guest_len = mods[1].mod_end - mods[1].mod_start;
    uint32_t base_kb = bda_base_kb(*(volatile uint16_t *)BDA_BASE_MEM_KB);
    /* The INT 15h hook takes the top KiB of conventional memory (e820hook.c). */
    uint32_t guest_max = (base_kb - 1) * 1024u - GUEST_LOAD_ADDR;
    if (guest_len > guest_max)
        fail("module 2 (guest boot code) is %u bytes; at most %u fit at 0x7c00", guest_len, guest_max);
    if (guest_len == 512) {
        const uint8_t *g = (const uint8_t *)(uintptr_t)mods[1].mod_start;
        if (g[510] != 0x55 || g[511] != 0xaa)
            info("xmhf-init: warning: module 2 is a 512-byte sector without the 55aa signature\n");
    }

    /* 4. The region: runtime, boot parameters, page tables, heap. */
    uint32_t ncpus = madt_cpu_count();
    uint64_t ram_top = e820_ram_top(&bp->e820);
    uint64_t rt_size = ALIGN_UP4K(rh->total_size);
    uint64_t bp_off = rt_size, pt_off = bp_off + ALIGN_UP4K(sizeof(*bp));
    uint64_t heap_off = pt_off + 7 * 4096;
    /* Heap: per-CPU state plus the guest's nested page tables (a page directory per GiB
     * of RAM, and page tables where 2 MiB pages must be split). */
    uint64_t heap = HEAP_BASE_SIZE + (ram_top >> 30) * 2 * 4096 +
                    (ncpus > HEAP_BASE_CPUS ? (ncpus - HEAP_BASE_CPUS) * HEAP_PER_CPU : 0);
    if (XMHF_DMAP)
        heap += DMAP_HEAP_SIZE + (ram_top >> 30) * 2 * 4096;   /* I/O page tables */
    uint64_t region_size = (heap_off + heap + TWO_MB - 1) & ~(TWO_MB - 1);

    static struct e820_map scratch;
    scratch = bp->e820;
    if (e820_set_range(&scratch, 0, 0x100000, E820_RESERVED) ||
        e820_set_range(&scratch, init_lo & ~0xfffull, init_len + 0x1000, E820_RESERVED) ||
        e820_set_range(&scratch, mods[0].mod_start, rt_len, E820_RESERVED) ||
        e820_set_range(&scratch, mods[1].mod_start, guest_len, E820_RESERVED))
        fail("memory map too fragmented to place the hypervisor");
    uint64_t region;
    if (e820_find_top(&scratch, region_size, TWO_MB, FOUR_GB, &region) != 0)
        fail("no room for the hypervisor: it needs %llu KiB of usable RAM below 4 GiB, 2 MiB aligned",
             (unsigned long long)(region_size >> 10));
    if (e820_set_range(&bp->e820, region, region_size, E820_RESERVED) != 0)
        fail("memory map too fragmented to reserve the hypervisor's region");
    info("xmhf-init: hypervisor region %08llx-%08llx (%llu KiB), runtime %llu KiB\n",
         (unsigned long long)region, (unsigned long long)(region + region_size),
         (unsigned long long)(region_size >> 10), (unsigned long long)(rh->total_size >> 10));

    /* 5. Relocate: runtime image, zeroed bss and heap, guest at 0x7c00. */
    uint8_t *dst = (uint8_t *)(uintptr_t)region;
    memcpy(dst, rt, rh->image_size);
    /* The runtime's bss and this stage's own pages; heap pages are zeroed as they are
     * handed out, so zeroing them here too would only cost boot time. */
    memset(dst + rh->image_size, 0, heap_off - rh->image_size);
    memmove((void *)GUEST_LOAD_ADDR, (const void *)(uintptr_t)mods[1].mod_start, guest_len);

    bp->magic = BOOTPARAMS_MAGIC;
    bp->region_base = region;
    bp->region_size = region_size;
    bp->heap_base = region + heap_off;
    bp->pml4_phys = region + pt_off;
    bp->guest_size = guest_len;
    memcpy(dst + bp_off, bp, sizeof(*bp));
    build_page_tables(region + pt_off, region, region_size);

    uint64_t entry = RUNTIME_VBASE + rh->entry_offset;
    info("xmhf-init: entering the runtime\n");
    enter_runtime((uint32_t)(region + pt_off), (uint32_t)(region + bp_off),
                  (uint32_t)entry, (uint32_t)(entry >> 32));
}

/* INT 15h, EAX=E820h for the guest: the hypervisor answers from its own map, where its
 * region is reserved, so no guest that asks the BIOS ever sees it as usable RAM.
 *
 * The hook is a real-mode stub in the top KiB of conventional memory, taken from the
 * BIOS data area's memory size (the way option ROMs reserve memory):
 *     +0  VMCALL / VMMCALL    traps to the hypervisor, which decides where to resume:
 *     +3  IRET                after an E820 call it answered,
 *     +4  JMP FAR old_vector  for every other INT 15h function (the BIOS's handler).
 * Results go to the guest's registers; CF goes into the FLAGS image on the guest's
 * stack that IRET restores. The older size calls (E801h, 88h) are answered from the same
 * map. The hypervisor writes guest memory for the caller (the E820 record, the FLAGS
 * image) only where the guest's map says RAM: a segment base the guest loaded in
 * protected mode ("unreal" mode) could otherwise point it at the APIC page, the I/O
 * APIC or any device, and the hypervisor's write would reach the device unobserved;
 * such a call fails with CF = 1 as a BIOS would for a bad buffer. The stub is found by
 * its linear address, so any CS:IP that reaches it works, and the guest resumes at the
 * same CS, IP + 3 or + 4. */
#include "xmhf.h"

#define IVT_INT15       (0x15u * 4)

struct e820_map g_guest_e820;
static uint64_t stub_linear;
uint64_t g_restart_page;

void e820_hook_install(void)
{
    volatile uint16_t *base_kb = phys_to_virt(BDA_BASE_MEM_KB);
    volatile uint32_t *ivt15 = phys_to_virt(IVT_INT15);
    /* The same size init trusted (bootparams.h): a BDA word of 0 or 1 would put the
     * stub at the top of 64 MiB or over the IVT. */
    uint16_t kb = (uint16_t)(bda_base_kb(*base_kb) - 1);
    uint32_t old = *ivt15;
    stub_linear = (uint64_t)kb * 1024;
    uint8_t stub[9] = { arch_hypercall_insn[0], arch_hypercall_insn[1], arch_hypercall_insn[2], 0xcf, 0xea,
                        (uint8_t)old, (uint8_t)(old >> 8), (uint8_t)(old >> 16), (uint8_t)(old >> 24) };
    memcpy(phys_to_virt(stub_linear), stub, sizeof(stub));
    *base_kb = kb;
    *ivt15 = (uint32_t)(stub_linear >> 4) << 16;   /* segment:0000 */

    g_guest_e820 = g_bp->e820;
    if (e820_set_range(&g_guest_e820, stub_linear, 1024, E820_RESERVED) != 0)
        panic("E820 map too fragmented to reserve the INT 15h hook");
    /* apic=zeroexit: a page below 1 MiB (a STARTUP vector names one) for restarting a
     * CPU whose INIT stays pending after its INIT exit (vmx-x86vmx.c, restart.c): the
     * hypervisor's like its region - outside the guest's map, read-only in its nested
     * page tables and out of its devices' DMA - since the CPU runs it outside VMX. */
    if (apic_zeroexit()) {
        kb = (uint16_t)((kb & ~3u) - 4);
        g_restart_page = (uint64_t)kb * 1024;
        *base_kb = kb;
        if (e820_set_range(&g_guest_e820, g_restart_page, 4096, E820_RESERVED) != 0)
            panic("E820 map too fragmented to reserve the restart page");
        printk("xmhf: apic=zeroexit: page %05llx reserved for restarting a CPU\n",
               (unsigned long long)g_restart_page);
    }
    printk("xmhf: INT 15h/E820 hooked at %04x:0000 (was %04x:%04x), %u entries for the guest\n",
           (unsigned)(stub_linear >> 4), old >> 16, old & 0xffff, g_guest_e820.count);
}

bool e820_hook_is_stub(uint64_t linear_rip)
{
    return stub_linear && linear_rip == stub_linear;
}

/* [gpa, gpa + n) lies in RAM of the guest's map (one entry: the map is sanitized). */
bool guest_ram_range(uint64_t gpa, uint64_t n)
{
    for (uint32_t i = 0; i < g_guest_e820.count; i++) {
        const struct e820_entry *e = &g_guest_e820.e[i];
        if (e->type == E820_RAM && e->base <= gpa && gpa + n <= e->base + e->length &&
            gpa + n >= gpa)
            return true;
    }
    return false;
}

static int ram_read(uint64_t gpa, void *buf, size_t n)
{
    return guest_ram_range(gpa, n) ? guest_phys_read(gpa, buf, n) : -1;
}

static int ram_write(uint64_t gpa, const void *buf, size_t n)
{
    return guest_ram_range(gpa, n) ? guest_phys_write(gpa, buf, n) : -1;
}

static void set_carry(struct vcpu *v, bool cf)
{
    uint64_t sp = arch_guest_seg_base(v, SEG_SS) + ((arch_guest_rsp(v) + 4) & 0xffff);
    uint16_t flags;
    if (ram_read(sp, &flags, 2) != 0)
        return;
    flags = (uint16_t)(cf ? flags | RFLAGS_CF : flags & ~RFLAGS_CF);
    ram_write(sp, &flags, 2);
}

/* End of the usable RAM that runs on from `from` without a gap (the map is sanitized, so
 * one entry); `from` itself when it is not usable RAM. */
static uint64_t usable_end(uint64_t from)
{
    for (uint32_t i = 0; i < g_guest_e820.count; i++) {
        const struct e820_entry *e = &g_guest_e820.e[i];
        if (e->type == E820_RAM && e->base <= from && from < e->base + e->length)
            return e->base + e->length;
    }
    return from;
}

static void set16(uint64_t *reg, uint64_t val)
{
    *reg = (*reg & ~0xffffull) | (val & 0xffff);
}

/* The older memory-size calls, answered from the same map so they end below the
 * hypervisor too (Ralf Brown's interrupt list, INT 15h AX=E801h and AH=88h):
 * E801: AX = CX = KiB between 1 MiB and 16 MiB, BX = DX = 64 KiB blocks above 16 MiB up
 * to the first hole; 88h: KiB above 1 MiB, at most 0xffff. */
static void memsize_call(uint64_t *r, bool e801)
{
    const uint64_t mb1 = 0x100000, mb16 = 0x1000000;
    uint64_t end = usable_end(mb1);
    if (end > PHYS_LIMIT)
        end = PHYS_LIMIT;
    uint64_t low_kb = ((end < mb16 ? end : mb16) - mb1) >> 10;
    if (!e801) {
        uint64_t kb = (end - mb1) >> 10;
        set16(&r[R_AX], kb > 0xffff ? 0xffff : kb);
        return;
    }
    uint64_t high = end >= mb16 ? usable_end(mb16) : mb16;
    if (high > PHYS_LIMIT)
        high = PHYS_LIMIT;
    uint64_t blocks = (high - mb16) >> 16;
    set16(&r[R_AX], low_kb);
    set16(&r[R_CX], low_kb);
    set16(&r[R_BX], blocks);
    set16(&r[R_DX], blocks);
}

uint64_t e820_hook_call(struct vcpu *v)
{
    uint64_t *r = v->regs->r;
    bool e801 = (r[R_AX] & 0xffff) == 0xe801, ah88 = (r[R_AX] & 0xff00) == 0x8800;
    if (e801 || ah88) {
        memsize_call(r, e801);
        set_carry(v, false);
        return 3;
    }
    if ((uint32_t)r[R_AX] != 0xe820)
        return 4;                                   /* the BIOS's own handler */
    uint32_t idx = (uint32_t)r[R_BX], want = (uint32_t)r[R_CX];
    if ((uint32_t)r[R_DX] != E820_SMAP || want < 20 || idx >= g_guest_e820.count) {
        r[R_AX] = (r[R_AX] & ~0xff00ull) | 0x8600;  /* AH=86h: unsupported */
        set_carry(v, true);
        return 3;
    }
    const struct e820_entry *e = &g_guest_e820.e[idx];
    uint32_t rec[6] = { (uint32_t)e->base, (uint32_t)(e->base >> 32), (uint32_t)e->length,
                        (uint32_t)(e->length >> 32), e->type, 1 /* ACPI 3: enabled */ };
    uint32_t n = want >= 24 ? 24 : 20;
    uint64_t dst = arch_guest_seg_base(v, SEG_ES) + (r[R_DI] & 0xffff);
    if (ram_write(dst, rec, n) != 0) {
        set_carry(v, true);
        return 3;
    }
    r[R_AX] = E820_SMAP;
    r[R_CX] = (r[R_CX] & ~0xffffffffull) | n;
    r[R_BX] = (r[R_BX] & ~0xffffffffull) | (idx + 1 < g_guest_e820.count ? idx + 1 : 0);
    set_carry(v, false);
    return 3;
}

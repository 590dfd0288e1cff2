/* Guest requests and guest misbehaviour that the common code decides on: hypercalls
 * (hypapp first, then the runtime's own), accesses to the hypervisor's memory, reset. */
#include "dmap.h"
#include "hypapp-dispatch.h"
#include "xmhf.h"

extern const char __image_start[], __ro_end[];

/* The hypapp's functions answer at any privilege level, as it decides; the runtime's
 * answer CPL 0 only (RUNTIME_INFO names the hypervisor's region, which user code has
 * no business knowing), and anything unanswered at CPL > 0 is #UD, as on a processor
 * without the instruction. */
void hypercall_dispatch(struct vcpu *v)
{
    uint64_t *r = v->regs->r;
    uint64_t fn = r[R_AX];
    unsigned cpl = arch_guest_cpl(v);
    if (fn < XMHF_HC_RUNTIME_BASE && hypapp_cb.hypercall &&
        hypapp_cb.hypercall(v, fn, cpl) == APP_HANDLED)
        return;
    if (cpl != 0) {
        arch_guest_inject_exception(v, EXC_UD, false, 0);
        return;
    }
    switch (fn) {
    case XMHF_HC_RUNTIME_INFO:
        r[R_AX] = 0;
        r[R_BX] = g_bp->region_base;
        r[R_CX] = g_bp->region_size;
        r[R_DX] = g_ncpus;
        break;
    case XMHF_HC_STATS: {
        uint64_t sel = r[R_BX];
        struct pcpu *c = v->cpu;
        if (sel < EXIT_STAT_SLOTS - 1)
            r[R_BX] = c->exits[sel];
        else if (sel == 0x100)
            r[R_BX] = c->exits_total;
        else if (sel >= 0x200 && sel < 0x200 + STAT_COUNT)
            r[R_BX] = c->stats[sel - 0x200];
        else if (sel == 0x2fe)      /* the machine's APIC mode: 0 step, 1 apic=zeroexit */
            r[R_BX] = g_bp->opts.apic_mode;
        else if (sel == 0x2fc)      /* CPUs restarted through INIT (their INIT stayed) */
            r[R_BX] = g_init_restarts;
        else if (sel == 0x2fd)      /* 1: only writes near the ICR exit (SPP) */
            r[R_BX] = arch_apic_subpage_writes(c);
        else if (sel == 0x2ff)      /* the whole machine's: pages the heap has left */
            r[R_BX] = heap_pages_free();
        else if (sel == XMHF_STAT_DMA_FAULTS) {
            dmap_poll(true);
            r[R_BX] = dmap_fault_count();
        } else if (sel == XMHF_STAT_DMA_UNITS)
            r[R_BX] = dmap_units_active();
        else {
            r[R_AX] = XMHF_HC_UNKNOWN;
            break;
        }
        r[R_AX] = 0;
        break;
    }
    case XMHF_HC_DMAP_INFO:
        dmap_poll(true);
        r[R_AX] = 0;
        r[R_BX] = dmap_units_active() | (uint64_t)dmap_kinds() << 32;
        r[R_CX] = dmap_first_unit_base();
        r[R_DX] = dmap_fault_count();
        break;
    case XMHF_HC_IMAGE_CHECKSUM:
        r[R_AX] = 0;
        r[R_BX] = dmap_fnv1a(__image_start, (size_t)(__ro_end - __image_start));
        break;
    default:
        r[R_AX] = XMHF_HC_UNKNOWN;
        break;
    }
}

bool hypercall_instruction(struct vcpu *v, bool real_mode)
{
    uint64_t lin = arch_guest_seg_base(v, SEG_CS) + arch_guest_rip(v);
    if (real_mode && e820_hook_is_stub(lin)) {
        /* Relative to the IP the guest arrived with: any CS:IP naming the stub works. */
        arch_guest_set_rip(v, (arch_guest_rip(v) + e820_hook_call(v)) & 0xffff);
        return false;
    }
    hypercall_dispatch(v);
    return !arch_guest_event_pending(v);
}

void hypervisor_memory_violation(struct vcpu *v, uint64_t gpa, uint32_t access)
{
    if (hypapp_cb.hypmem_violation && hypapp_cb.hypmem_violation(v, gpa, access) == APP_HANDLED &&
        arch_guest_event_pending(v))
        return;     /* the hypapp's own exception; nothing was accessed either way */
    printk("xmhf: CPU %u: guest %s of hypervisor memory at %llx (rip %llx): #GP injected\n",
           v->cpu->idx, (access & APP_ACCESS_WRITE) ? "write" :
           (access & APP_ACCESS_EXEC) ? "fetch" : "read", (unsigned long long)gpa,
           (unsigned long long)arch_guest_rip(v));
    arch_guest_inject_exception(v, EXC_GP, true, 0);
}

void xmhf_guest_inject_exception(struct vcpu *v, unsigned vector, int has_err, uint32_t err)
{
    arch_guest_inject_exception(v, vector, has_err != 0, err);
}

/* A triple fault resets a real machine; so does it here, after the hypapp's last word.
 * Reset through the PCI reset control register (0xcf9), then the keyboard controller. */
__noreturn void guest_reset(struct vcpu *v, const char *why)
{
    printk("xmhf: CPU %u: guest %s at rip %llx: resetting the system\n", v->cpu->idx, why,
           (unsigned long long)arch_guest_rip(v));
    if (hypapp_cb.shutdown)
        hypapp_cb.shutdown(v);
    outb(0xcf9, 0x02);
    outb(0xcf9, 0x06);
    for (unsigned i = 0; i < 100000u && (inb(0x64) & 0x02); i++)
        io_delay();
    outb(0x64, 0xfe);
    panic("system reset did not happen");
}

/* Guest requests and guest misbehaviour that the common code decides on: hypercalls
 * (hypapp first, then the runtime's own), accesses to the hypervisor's memory, reset. */
#include "xmhf-hypapp.h"
#include "xmhf.h"

void hypercall_dispatch(struct vcpu *v)
{
    uint64_t *r = v->regs->r;
    uint64_t fn = r[R_AX];
    if (arch_guest_cpl(v) != 0) {
        arch_guest_inject_exception(v, EXC_UD, false, 0);
        return;
    }
    if (fn < XMHF_HC_RUNTIME_BASE && xmhf_app_hypercall(v, fn) == APP_HANDLED)
        return;
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
        else {
            r[R_AX] = XMHF_HC_UNKNOWN;
            break;
        }
        r[R_AX] = 0;
        break;
    }
    default:
        r[R_AX] = XMHF_HC_UNKNOWN;
        break;
    }
}

bool hypercall_instruction(struct vcpu *v, bool real_mode)
{
    uint64_t lin = arch_guest_seg_base(v, SEG_CS) + arch_guest_rip(v);
    if (real_mode && e820_hook_is_stub(lin)) {
        arch_guest_set_rip(v, e820_hook_call(v));
        return false;
    }
    hypercall_dispatch(v);
    return !arch_guest_event_pending(v);
}

void hypervisor_memory_violation(struct vcpu *v, uint64_t gpa, uint32_t access)
{
    if (xmhf_app_hypmem_violation(v, gpa, access) == APP_HANDLED)
        return;
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
    xmhf_app_shutdown(v);
    outb(0xcf9, 0x02);
    outb(0xcf9, 0x06);
    for (unsigned i = 0; i < 100000u && (inb(0x64) & 0x02); i++)
        io_delay();
    outb(0x64, 0xfe);
    panic("system reset did not happen");
}

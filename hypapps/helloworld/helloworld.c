/* helloworld: the smallest useful hypapp. It shows the callbacks every hypapp starts
 * from (xmhf-hypapp.h; the other hypapps show the rest) and answers one hypercall, at
 * any privilege level:
 *   HELLO (RAX = 1): RAX = 0, RBX = 0x46484d58 ("XMHF" in memory order),
 *                    RCX = RCX + 1, RDX = HELLO calls so far, all CPUs, this one included.
 * Every other function below the runtime's range is left to the runtime (APP_CHAIN):
 * XMHF_HC_UNKNOWN at CPL 0, #UD from user code. */
#include "xmhf-hypapp.h"

#define HELLO_HC       0x1ull
#define HELLO_MAGIC    0x46484d58ull

static uint64_t hello_calls;    /* updated atomically: any CPU may call */

int xmhf_app_main(const struct app_bootparams *bp)
{
    printk("helloworld: init on %u CPU%s, hypervisor at %llx (+%llu KiB), boot drive %02x\n",
           bp->ncpus, bp->ncpus == 1 ? "" : "s", (unsigned long long)bp->region_base,
           (unsigned long long)(bp->region_size >> 10), bp->boot_drive);
    return 0;
}

void xmhf_app_cpu_start(struct vcpu *v)
{
    printk("helloworld: CPU %u starts its guest at %llx\n", v->cpu->idx,
           (unsigned long long)arch_guest_rip(v));
}

int xmhf_app_hypercall(struct vcpu *v, uint64_t function, unsigned cpl)
{
    uint64_t *r = v->regs->r;
    (void)cpl;      /* HELLO harms nobody: answered to user code as well */
    if (function != HELLO_HC)
        return APP_CHAIN;
    r[R_AX] = 0;
    r[R_BX] = HELLO_MAGIC;
    r[R_CX] = r[R_CX] + 1;
    r[R_DX] = __atomic_add_fetch(&hello_calls, 1, __ATOMIC_RELAXED);
    return APP_HANDLED;
}

int xmhf_app_hypmem_violation(struct vcpu *v, uint64_t gpa, uint32_t access)
{
    (void)v;
    (void)gpa;
    (void)access;
    return APP_CHAIN;   /* the runtime's default: #GP(0) to the guest */
}

void xmhf_app_shutdown(struct vcpu *v)
{
    printk("helloworld: guest on CPU %u is going down after %llu HELLO calls\n", v->cpu->idx,
           (unsigned long long)__atomic_load_n(&hello_calls, __ATOMIC_RELAXED));
}

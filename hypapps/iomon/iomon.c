/* iomon: an I/O-port monitor. It intercepts a few ports on every CPU and counts each
 * access (port, size, direction, value, string and REP forms), passes the real ports
 * through to the hardware, and emulates one small device of its own. It also shows the
 * CPUID and MSR hooks.
 *
 *   ports 0x70-0x71 (CMOS index/data) and 0x3ff (COM1 scratch): monitored, performed
 *                  on the hardware (APP_CHAIN);
 *   ports 0xe0e0-0xe0e3: iomon's device, a 32-bit register: OUT of n bytes at 0xe0e0
 *                  sets its low n bytes, IN of n bytes reads them (APP_HANDLED);
 *   string forms (INS/OUTS, REP or not) on any of them are counted and left to the
 *                  runtime, which gives the guest #GP(0) (iomon moves no guest memory);
 *   CPUID 0x40000000: EAX = 0x40000000, EBX:ECX:EDX = "XMHFiomon\0\0\0";
 *   MSR 0x40000100 (outside the bitmap ranges, so it always exits): RDMSR = monitored
 *                  accesses so far, all ports, all CPUs; WRMSR 0 resets that count,
 *                  anything else is #GP(0);
 *   MSR 0xc0000103 (IA32_TSC_AUX): reads intercepted (the MSR bitmap bit iomon asks
 *                  for), counted in MSR 0x40000101 and passed to the runtime (APP_CHAIN).
 * Hypercall IOMON_STATS (0x200, any CPL): RBX = port in; RAX = 0, RBX = accesses of
 * that port, RCX = the last value (OUT: written, IN: read), RDX = flags of the last
 * access (bit 0 IN, 1 string, 2 REP, bits 15:8 size). Unmonitored port: RAX = 1.
 * It also answers HELLO (RAX = 1) exactly as helloworld does, so the whole test guest
 * runs under it. */
#include "xmhf-hypapp.h"

#define HELLO_HC        0x1ull
#define HELLO_MAGIC     0x46484d58ull
#define IOMON_STATS     0x200ull
#define IOMON_DEV       0xe0e0u
#define MSR_IOMON_TOTAL 0x40000100u
#define MSR_IOMON_AUX   0x40000101u
#define MSR_TSC_AUX     0xc0000103u

static const struct { uint16_t first, count; } watched[] = {
    { 0x70, 2 }, { 0x3ff, 1 }, { IOMON_DEV, 4 },
};
#define NSLOTS 7u
static struct slot {
    uint16_t port;
    uint64_t count, last_value, last_flags;
} slots[NSLOTS];
static struct spinlock iomon_lock = SPINLOCK_INIT("iomon");
static uint64_t total, aux_reads, hello_calls;
static uint32_t dev_reg;

int xmhf_app_main(const struct app_bootparams *bp)
{
    unsigned n = 0;
    for (unsigned i = 0; i < sizeof(watched) / sizeof(watched[0]); i++) {
        if (xmhf_io_intercept(watched[i].first, watched[i].count) != 0)
            return -1;
        for (unsigned p = 0; p < watched[i].count; p++)
            slots[n++].port = (uint16_t)(watched[i].first + p);
    }
    if (xmhf_msr_intercept(MSR_TSC_AUX, APP_ACCESS_READ) != 0)
        return -1;
    printk("iomon: monitoring ports 70-71, 3ff, %x-%x on %u CPUs\n", IOMON_DEV,
           IOMON_DEV + 3, bp->ncpus);
    return 0;
}

static struct slot *slot_of(uint16_t port)
{
    for (unsigned i = 0; i < NSLOTS; i++) {
        if (slots[i].port == port)
            return &slots[i];
    }
    return NULL;
}

/* On the CPU that did the access. iomon's device is emulated here; an IN from a real
 * port is performed here too (so its value is known for the record), an OUT is left to
 * the runtime (APP_CHAIN), and so is every string form (the guest gets #GP(0)). */
int xmhf_app_portaccess(struct vcpu *v, struct app_io *io)
{
    (void)v;
    bool dev = io->port >= IOMON_DEV && io->port < IOMON_DEV + 4;
    uint32_t mask = io->size == 4 ? 0xffffffffu : (1u << (8 * io->size)) - 1;
    int rc = APP_CHAIN;
    spin_lock(&iomon_lock);
    if (!io->string) {
        if (dev && io->in)
            io->value = dev_reg & mask;
        else if (dev)
            dev_reg = (dev_reg & ~mask) | (io->value & mask);
        else if (io->in)
            io->value = io->size == 1 ? inb(io->port) : io->size == 2 ? inw(io->port)
                                                                   : inl(io->port);
        rc = dev || io->in ? APP_HANDLED : APP_CHAIN;
    }
    struct slot *s = slot_of(io->port);
    if (s) {
        s->count++;
        s->last_value = io->string ? 0 : io->value & mask;
        s->last_flags = (io->in ? 1u : 0) | (io->string ? 2u : 0) | (io->rep ? 4u : 0) |
                        ((uint64_t)io->size << 8);
    }
    __atomic_add_fetch(&total, 1, __ATOMIC_RELAXED);
    spin_unlock(&iomon_lock);
    return rc;
}

int xmhf_app_cpuid(struct vcpu *v, uint32_t leaf, uint32_t subleaf)
{
    uint64_t *r = v->regs->r;
    (void)subleaf;
    if (leaf != 0x40000000u)
        return APP_CHAIN;
    r[R_AX] = 0x40000000u;
    r[R_BX] = 0x46484d58u;      /* "XMHF" */
    r[R_CX] = 0x6e6f6d69u;      /* "iomo" */
    r[R_DX] = 0x0000006eu;      /* "n" */
    return APP_HANDLED;
}

int xmhf_app_rdmsr(struct vcpu *v, uint32_t msr, uint64_t *value)
{
    (void)v;
    if (msr == MSR_IOMON_TOTAL) {
        *value = __atomic_load_n(&total, __ATOMIC_RELAXED);
        return APP_HANDLED;
    }
    if (msr == MSR_IOMON_AUX) {
        *value = __atomic_load_n(&aux_reads, __ATOMIC_RELAXED);
        return APP_HANDLED;
    }
    if (msr == MSR_TSC_AUX)
        __atomic_add_fetch(&aux_reads, 1, __ATOMIC_RELAXED);
    return APP_CHAIN;
}

int xmhf_app_wrmsr(struct vcpu *v, uint32_t msr, uint64_t value)
{
    if (msr != MSR_IOMON_TOTAL)
        return APP_CHAIN;
    if (value != 0)
        xmhf_guest_inject_exception(v, EXC_GP, 1, 0);
    else
        __atomic_store_n(&total, 0, __ATOMIC_RELAXED);
    return APP_HANDLED;
}

int xmhf_app_hypercall(struct vcpu *v, uint64_t function, unsigned cpl)
{
    uint64_t *r = v->regs->r;
    (void)cpl;      /* counts only: answered to user code as well */
    if (function == HELLO_HC) {
        r[R_AX] = 0;
        r[R_BX] = HELLO_MAGIC;
        r[R_CX] = r[R_CX] + 1;
        r[R_DX] = __atomic_add_fetch(&hello_calls, 1, __ATOMIC_RELAXED);
        return APP_HANDLED;
    }
    if (function != IOMON_STATS)
        return APP_CHAIN;
    spin_lock(&iomon_lock);
    struct slot *s = r[R_BX] <= 0xffffu ? slot_of((uint16_t)r[R_BX]) : NULL;
    if (s) {
        r[R_BX] = s->count;
        r[R_CX] = s->last_value;
        r[R_DX] = s->last_flags;
    }
    spin_unlock(&iomon_lock);
    r[R_AX] = s ? 0 : 1;
    return APP_HANDLED;
}

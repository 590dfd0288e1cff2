/* The hypapp dispatch (contracts in xmhf-hypapp.h): the callback table, the hypapp's
 * start on each CPU, and the I/O-port, MSR and CPUID requests and intercepts common to
 * both halves. */
#include "hypapp-dispatch.h"
#include "iobitmap.h"

/* Every callback is optional: an undefined weak symbol is a null pointer here, and the
 * runtime never calls through one. */
#pragma weak xmhf_app_main
#pragma weak xmhf_app_cpu_start
#pragma weak xmhf_app_hypercall
#pragma weak xmhf_app_hypmem_violation
#pragma weak xmhf_app_guestmem_violation
#pragma weak xmhf_app_portaccess
#pragma weak xmhf_app_cpuid
#pragma weak xmhf_app_rdmsr
#pragma weak xmhf_app_wrmsr
#pragma weak xmhf_app_shutdown

const struct hypapp_callbacks hypapp_cb = {
    .main = xmhf_app_main,
    .cpu_start = xmhf_app_cpu_start,
    .hypercall = xmhf_app_hypercall,
    .hypmem_violation = xmhf_app_hypmem_violation,
    .guestmem_violation = xmhf_app_guestmem_violation,
    .portaccess = xmhf_app_portaccess,
    .cpuid = xmhf_app_cpuid,
    .rdmsr = xmhf_app_rdmsr,
    .wrmsr = xmhf_app_wrmsr,
    .shutdown = xmhf_app_shutdown,
};

/* Requests for ports and MSRs are taken only while xmhf_app_main runs: the bitmaps are
 * then built before any guest runs, and never change under a running guest (SDM Vol.
 * 3C 25.11.4 "Software Access to Related Structures"). */
static bool app_booting;

uint8_t *hypapp_io_bitmap;
uint64_t hypapp_io_bitmap_pa;

#define APP_MSRS_MAX 64u
static struct { uint32_t msr, access; } app_msrs[APP_MSRS_MAX];
static uint32_t app_msr_count;

int hypapp_boot(const struct app_bootparams *bp)
{
    if (!hypapp_cb.main)
        return 0;
    app_booting = true;
    int rc = hypapp_cb.main(bp);
    app_booting = false;
    return rc;
}

void hypapp_cpu_start(struct pcpu *c, struct gregs *initial)
{
    if (hypapp_cb.cpu_start) {
        struct vcpu v = { c, initial };
        hypapp_cb.cpu_start(&v);
    }
}

/* ---- I/O ports ---- */

int xmhf_io_intercept(uint32_t port, uint32_t count)
{
    if (!app_booting)
        return XMHF_ELATE;
    if (count == 0 || port > 0xffffu || count > 0x10000u - port)
        return XMHF_EINVAL;
    if (!hypapp_io_bitmap)
        hypapp_io_bitmap = pages_alloc(IOBITMAP_SIZE / 0x1000, &hypapp_io_bitmap_pa);
    iobitmap_set(hypapp_io_bitmap, port, count);
    return 0;
}

void io_set_result(struct vcpu *v, const struct app_io *io)
{
    v->regs->r[R_AX] = io_in_merge(v->regs->r[R_AX], io->size, io->value);
}

void io_passthrough(struct vcpu *v, struct app_io *io)
{
    uint16_t p = io->port;
    if (io->in) {
        io->value = io->size == 1 ? inb(p) : io->size == 2 ? inw(p) : inl(p);
        io_set_result(v, io);
    } else if (io->size == 1) {
        outb(p, (uint8_t)io->value);
    } else if (io->size == 2) {
        outw(p, (uint16_t)io->value);
    } else {
        outl(p, io->value);
    }
}

bool hypapp_io(struct vcpu *v, struct app_io *io, bool *skip)
{
    bool wanted = hypapp_io_bitmap && iobitmap_hits(hypapp_io_bitmap, io->port, io->size);
    /* With the I/O bitmaps on, Intel exits on any access that wraps from port 0xffff to
     * 0, asked for or not. A plain one is the arch half's to perform; a string one is
     * refused below, as on a hypapp's port. */
    bool wrap_string = hypapp_io_bitmap && io->string && io->port + io->size > 0x10000u;
    if (!wanted && !wrap_string)
        return false;
    int rc = wanted && hypapp_cb.portaccess ? hypapp_cb.portaccess(v, io) : APP_CHAIN;
    *skip = !arch_guest_event_pending(v);
    if (rc == APP_HANDLED) {
        if (*skip && io->in && !io->string)
            io_set_result(v, io);
        return true;
    }
    if (io->string) {
        /* The runtime does not move guest memory for a port (README "Writing a
         * hypapp"): refused as a port the TSS I/O bitmap denies. */
        if (*skip)
            arch_guest_inject_exception(v, EXC_GP, true, 0);
        *skip = false;
        return true;
    }
    if (*skip)
        io_passthrough(v, io);
    return true;
}

/* ---- MSRs ---- */

/* MSRs the runtime itself owns on one half or the other: a hypapp never gets them
 * (they hold the APIC trap and the hiding of VMX/SVM). */
static bool msr_is_runtimes(uint32_t msr)
{
    return msr == 0x1bu /* IA32_APIC_BASE */ || msr == 0x3au /* IA32_FEATURE_CONTROL */ ||
           msr == 0x830u /* x2APIC ICR */ || (msr >= 0x480u && msr <= 0x4ffu) /* VMX caps */ ||
           msr == 0xc0000080u /* EFER */ || msr == 0xc0010114u /* VM_CR */ ||
           msr == 0xc0010117u /* VM_HSAVE_PA */;
}

int xmhf_msr_intercept(uint32_t msr, uint32_t access)
{
    if (!app_booting)
        return XMHF_ELATE;
    if (!access || (access & ~(APP_ACCESS_READ | APP_ACCESS_WRITE)))
        return XMHF_EINVAL;
    if (msr_is_runtimes(msr))
        return XMHF_EPERM;
    if (app_msr_count == APP_MSRS_MAX)
        return XMHF_ENOSPC;
    if (arch_msr_intercept(msr, access) != 0)
        return XMHF_EINVAL;     /* outside the bitmap: it exits anyway */
    app_msrs[app_msr_count].msr = msr;
    app_msrs[app_msr_count].access = access;
    app_msr_count++;
    return 0;
}

static bool msr_wanted(uint32_t msr, bool write)
{
    if (msr_is_runtimes(msr))
        return false;
    if (!arch_msr_in_bitmap(msr))
        return true;
    for (uint32_t i = 0; i < app_msr_count; i++) {
        if (app_msrs[i].msr == msr &&
            (app_msrs[i].access & (write ? APP_ACCESS_WRITE : APP_ACCESS_READ)))
            return true;
    }
    return false;
}

bool hypapp_msr(struct vcpu *v, bool write, bool *skip)
{
    uint64_t *r = v->regs->r;
    uint32_t msr = (uint32_t)r[R_CX];
    uint64_t val = (r[R_DX] << 32) | (uint32_t)r[R_AX];
    if ((write ? !hypapp_cb.wrmsr : !hypapp_cb.rdmsr) || !msr_wanted(msr, write))
        return false;
    int rc = write ? hypapp_cb.wrmsr(v, msr, val) : hypapp_cb.rdmsr(v, msr, &val);
    if (rc != APP_HANDLED)
        return false;
    *skip = !arch_guest_event_pending(v);
    if (*skip && !write) {
        r[R_AX] = (uint32_t)val;
        r[R_DX] = val >> 32;
    }
    return true;
}

/* ---- CPUID ---- */

bool hypapp_cpuid(struct vcpu *v, bool *skip)
{
    if (!hypapp_cb.cpuid)
        return false;
    uint64_t *r = v->regs->r;
    if (hypapp_cb.cpuid(v, (uint32_t)r[R_AX], (uint32_t)r[R_CX]) != APP_HANDLED)
        return false;
    *skip = !arch_guest_event_pending(v);
    return true;
}

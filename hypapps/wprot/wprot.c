/* wprot: a guest-page write protector. The guest's kernel (CPL 0) asks it to protect
 * pages of its own memory through the nested page tables; the hypervisor then enforces
 * that on every CPU, whatever the guest's own page tables say.
 *
 * Hypercalls (RAX = function; results in RAX, 0 = success):
 *   WP_PROTECT   0x100  RBX = guest-physical address, RCX = mode:
 *                       0 DENY     writes fault (#GP(0) at the writing instruction);
 *                       1 WATCH    the first write is recorded and then allowed: the
 *                                  page is writable again (one-shot write watch);
 *                       2 NOEXEC   instruction fetches fault (#GP(0) at the fetch);
 *                       CPL 0 only: user code gets RAX = WP_EPERM.
 *   WP_UNPROTECT 0x101  RBX = address: back to the normal mapping (CPL 0 only).
 *   WP_QUERY     0x102  RBX = address: RBX = violations recorded on the page, RCX = the
 *                       guest RIP of the last one, RDX = the page's protection now
 *                       (APP_PROT_* bits, 7 = none). Any CPL: it reveals only counts.
 * Errors: WP_EINVAL (bad mode or address), WP_EPERM (not allowed: user code, the
 * hypervisor's region), WP_EFULL (WP_PAGES pages are protected already).
 * It also answers HELLO (RAX = 1) exactly as helloworld does, so the whole test guest
 * runs under it. */
#include "xmhf-hypapp.h"

#define HELLO_HC       0x1ull
#define HELLO_MAGIC    0x46484d58ull
#define WP_PROTECT     0x100ull
#define WP_UNPROTECT   0x101ull
#define WP_QUERY       0x102ull
#define WP_EINVAL      1ull
#define WP_EPERM       2ull
#define WP_EFULL       3ull

/* WP_SEEN: a watch that saw its write (writable again, its record kept for WP_QUERY). */
enum wp_mode { WP_DENY, WP_WATCH, WP_NOEXEC, WP_SEEN, WP_FREE };

#define WP_PAGES 64u
static struct wp_page {
    uint64_t page;
    uint32_t mode;      /* enum wp_mode; WP_FREE: slot unused */
    uint64_t violations, last_rip;
} pages[WP_PAGES];
static struct spinlock wp_lock = SPINLOCK_INIT("wprot");
static uint64_t hello_calls;

int xmhf_app_main(const struct app_bootparams *bp)
{
    for (unsigned i = 0; i < WP_PAGES; i++)
        pages[i].mode = WP_FREE;
    printk("wprot: guest-page write protector, %u pages, %u CPUs\n", WP_PAGES, bp->ncpus);
    return 0;
}

/* Caller holds wp_lock. */
static struct wp_page *find(uint64_t page)
{
    for (unsigned i = 0; i < WP_PAGES; i++) {
        if (pages[i].mode != WP_FREE && pages[i].page == page)
            return &pages[i];
    }
    return NULL;
}

static uint64_t protect(uint64_t page, uint64_t mode)
{
    if (mode > WP_NOEXEC)
        return WP_EINVAL;
    uint32_t prot = mode == WP_NOEXEC ? APP_PROT_READ | APP_PROT_WRITE
                                      : APP_PROT_READ | APP_PROT_EXEC;
    spin_lock(&wp_lock);
    struct wp_page *p = find(page);
    for (unsigned i = 0; !p && i < WP_PAGES; i++) {
        if (pages[i].mode == WP_FREE)
            p = &pages[i];
    }
    if (!p) {
        spin_unlock(&wp_lock);
        return WP_EFULL;
    }
    int rc = xmhf_guestmem_setprot(page, prot);
    if (rc == 0) {
        p->page = page;
        p->mode = (uint32_t)mode;
        p->violations = 0;
        p->last_rip = 0;
    }
    spin_unlock(&wp_lock);
    if (rc != 0)
        return rc == XMHF_EPERM ? WP_EPERM : WP_EINVAL;
    xmhf_guestmem_flush();   /* no CPU may still hold the writable translation */
    return 0;
}

static uint64_t unprotect(uint64_t page)
{
    spin_lock(&wp_lock);
    struct wp_page *p = find(page);
    if (p) {
        xmhf_guestmem_setprot(page, APP_PROT_ALL);
        p->mode = WP_FREE;
    }
    spin_unlock(&wp_lock);
    return p ? 0 : WP_EINVAL;   /* widening needs no flush */
}

int xmhf_app_hypercall(struct vcpu *v, uint64_t function, unsigned cpl)
{
    uint64_t *r = v->regs->r;
    uint64_t page = r[R_BX] & ~0xfffull;
    switch (function) {
    case HELLO_HC:
        r[R_AX] = 0;
        r[R_BX] = HELLO_MAGIC;
        r[R_CX] = r[R_CX] + 1;
        r[R_DX] = __atomic_add_fetch(&hello_calls, 1, __ATOMIC_RELAXED);
        return APP_HANDLED;
    case WP_PROTECT:
        r[R_AX] = cpl != 0 ? WP_EPERM : protect(page, r[R_CX]);
        return APP_HANDLED;
    case WP_UNPROTECT:
        r[R_AX] = cpl != 0 ? WP_EPERM : unprotect(page);
        return APP_HANDLED;
    case WP_QUERY: {
        spin_lock(&wp_lock);
        struct wp_page *p = find(page);
        r[R_BX] = p ? p->violations : 0;
        r[R_CX] = p ? p->last_rip : 0;
        spin_unlock(&wp_lock);
        r[R_DX] = xmhf_guestmem_getprot(page);
        r[R_AX] = 0;
        return APP_HANDLED;
    }
    default:
        return APP_CHAIN;
    }
}

/* On the faulting CPU. DENY and NOEXEC: #GP(0) at the instruction, injected here (the
 * runtime's default would do the same, with a log line for each). WATCH: recorded,
 * then the page is writable again and the write retried. */
int xmhf_app_guestmem_violation(struct vcpu *v, const struct app_memfault *f)
{
    uint64_t page = f->gpa & ~0xfffull;
    spin_lock(&wp_lock);
    struct wp_page *p = find(page);
    if (!p) {
        spin_unlock(&wp_lock);
        return APP_CHAIN;
    }
    if (p->mode == WP_SEEN) {
        spin_unlock(&wp_lock);
        return APP_HANDLED;     /* another CPU's write ended the watch: retry */
    }
    p->violations++;
    p->last_rip = arch_guest_rip(v);
    if (p->mode == WP_WATCH) {
        printk("wprot: CPU %u: first write to %llx at rip %llx: watch ends\n", v->cpu->idx,
               (unsigned long long)f->gpa, (unsigned long long)p->last_rip);
        xmhf_guestmem_setprot(page, APP_PROT_ALL);
        p->mode = WP_SEEN;
        spin_unlock(&wp_lock);
        return APP_HANDLED;
    }
    spin_unlock(&wp_lock);
    xmhf_guest_inject_exception(v, EXC_GP, 1, 0);
    return APP_HANDLED;
}

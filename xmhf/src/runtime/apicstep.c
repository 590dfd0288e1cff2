/* The architecture-neutral half of watching the guest's xAPIC (apicstep.h): SDM Vol. 3A
 * 11.4.1 "The Local APIC Block Diagram" (table 11-1, the register map), 11.4.4 "Local
 * APIC Status and Location" for IA32_APIC_BASE, 11.6.1 for the ICR, 11.12.9 for the
 * x2APIC ICR. */
#include "apic.h"
#include "apicstep.h"
#include "msr.h"

#define SLOT(off) ((off) >> 4)
#define SLOT_ICR_LO SLOT(APIC_ICR_LO)
#define SLOT_ICR_HI SLOT(APIC_ICR_HI)

uint64_t apic_guest_page(void)
{
    uint64_t base = rdmsr(MSR_IA32_APIC_BASE);
    if (!(base & APIC_BASE_EN) || (base & APIC_BASE_EXTD))
        return 0;
    return base & APIC_BASE_ADDR;
}

/* The hypervisor's own window onto each CPU's APIC: one page-table page whose entry
 * idx maps CPU idx's APIC registers (a page per 512 CPUs), uncached (PCD|PWT: PAT entry 3, UC at power-on), at
 * APIC_WINDOW_VBASE + idx * 4 KiB, in the top 1 GiB of the address space the runtime's
 * tables leave free. The entry follows IA32_APIC_BASE, so the guest may put its APIC
 * anywhere the processor allows (above 4 GiB, over RAM, which the identity map would
 * reach write-back) any number of times at no cost in memory. Before the window exists
 * (boot, the firmware's base below 4 GiB, uncached by the MTRRs) the identity map serves. */
#define APIC_WINDOW_VBASE 0xffffffffc0000000ull
#define HOST_PTE_P   (1ull << 0)
#define HOST_PTE_RW  (1ull << 1)
#define HOST_PTE_PWT (1ull << 3)
#define HOST_PTE_PCD (1ull << 4)
static uint64_t *apic_window_pt;
static volatile bool apic_window_on;
/* One page-table page per 512 CPUs, contiguous, so the entries form one array. */
#define APIC_WINDOW_PTS ((MAX_CPUS + 511) / 512)
_Static_assert(APIC_WINDOW_PTS <= 512, "one window entry per CPU, in one page directory");

static void apic_window_init(void)
{
    uint64_t *pml4 = phys_to_virt(g_bp->pml4_phys);
    uint64_t *pdpt = phys_to_virt(pml4[511] & APIC_BASE_ADDR);
    uint64_t pd_pa, pt_pa;
    uint64_t *pd = page_alloc(&pd_pa);
    apic_window_pt = pages_alloc(APIC_WINDOW_PTS, &pt_pa);
    for (unsigned i = 0; i < APIC_WINDOW_PTS; i++)
        pd[i] = (pt_pa + i * 4096ull) | HOST_PTE_P | HOST_PTE_RW;
    pdpt[511] = pd_pa | HOST_PTE_P | HOST_PTE_RW;
    __atomic_store_n(&apic_window_on, true, __ATOMIC_RELEASE);
}

volatile uint32_t *apic_regs(void)
{
    uint64_t pa = rdmsr(MSR_IA32_APIC_BASE) & APIC_BASE_ADDR;
    if (!__atomic_load_n(&apic_window_on, __ATOMIC_ACQUIRE))
        return phys_to_virt(pa);
    struct pcpu *c = this_pcpu();
    uint64_t va = APIC_WINDOW_VBASE + (uint64_t)c->idx * 0x1000;
    uint64_t want = pa | HOST_PTE_P | HOST_PTE_RW | HOST_PTE_PCD | HOST_PTE_PWT;
    if (apic_window_pt[c->idx] != want) {
        apic_window_pt[c->idx] = want;
        __asm__ volatile("invlpg (%0)" :: "r"(va) : "memory");
    }
    return (volatile uint32_t *)(uintptr_t)va;
}

static void set_readable(struct apic_capture *cap, unsigned slot)
{
    cap->readable[slot / 64] |= 1ull << (slot % 64);
}

/* Table 11-1, the registers that can be read. Left out: the APR (0x90) and the RRD
 * (0xc0), which current processors do not have, EOI (write-only; reads give 0, as the
 * capture page does), the reserved slots, and the LVTs this APIC lacks (its version
 * register's max LVT entry: 4 adds the performance-counter LVT to the four every APIC
 * has, 5 the thermal LVT, 6 the CMCI LVT). */
void apic_capture_init(struct apic_capture *cap, struct pcpu *c)
{
    static const uint16_t always[] = {
        0x020, 0x030, 0x080, 0x0a0, 0x0d0, 0x0e0, 0x0f0, 0x280, 0x300, 0x310,
        0x320, 0x350, 0x360, 0x370, 0x380, 0x390, 0x3e0,
    };
    if (c->is_bsp && !apic_window_on)
        apic_window_init();     /* before any guest runs; the APs are parked */
    if (!cap->page) {
        cap->page = page_alloc(&cap->pa);
        cap->ref = page_alloc(NULL);
    }
    memset(cap->readable, 0, sizeof(cap->readable));
    for (unsigned i = 0; i < ARRAY_SIZE(always); i++)
        set_readable(cap, SLOT(always[i]));
    for (unsigned s = SLOT(0x100); s < SLOT(0x280); s++)     /* ISR, TMR, IRR */
        set_readable(cap, s);
    uint32_t max_lvt = 3;
    if (apic_guest_page())
        max_lvt = (apic_regs()[0x030 / 4] >> 16) & 0xff;
    if (max_lvt >= 4)
        set_readable(cap, SLOT(0x340));
    if (max_lvt >= 5)
        set_readable(cap, SLOT(0x330));
    if (max_lvt >= 6)
        set_readable(cap, SLOT(0x2f0));
    memset(cap->page, 0, 4096);
    memset(cap->ref, 0, 4096);
}

/* Between steps the capture page holds zeros except in the readable slots' first dwords,
 * so only those are written here. */
bool apic_insn_is_plain_store(const uint8_t *b, unsigned n, bool long64)
{
    unsigned i = 0;
    while (i < n && (b[i] == 0x66 || b[i] == 0x67 || b[i] == 0x26 || b[i] == 0x2e ||
                     b[i] == 0x36 || b[i] == 0x3e || b[i] == 0x64 || b[i] == 0x65))
        i++;
    if (long64 && i < n && (b[i] & 0xf0) == 0x40)
        i++;
    if (i + 1 >= n)
        return false;
    if (b[i] == 0x88 || b[i] == 0x89)
        return true;
    return (b[i] == 0xc6 || b[i] == 0xc7) && ((b[i + 1] >> 3) & 7) == 0;
}

bool apic_insn_is_pushf(const uint8_t *b, unsigned n, bool long64)
{
    unsigned i = 0;
    while (i < n && (b[i] == 0x66 || b[i] == 0x67 || b[i] == 0x26 || b[i] == 0x2e ||
                     b[i] == 0x36 || b[i] == 0x3e || b[i] == 0x64 || b[i] == 0x65 ||
                     b[i] == 0xf0 || b[i] == 0xf2 || b[i] == 0xf3))
        i++;
    if (long64 && i < n && (b[i] & 0xf0) == 0x40)
        i++;
    return i < n && b[i] == 0x9c;
}

/* The step's TF out of the image byte at gpa (FLAGS bits 15:8). */
static void untrace_byte(struct apic_capture *cap, uint64_t apic_gpa, uint64_t gpa)
{
    const uint8_t tf = (uint8_t)(RFLAGS_TF >> 8);
    if ((gpa & ~0xfffull) == apic_gpa) {
        ((uint8_t *)cap->page)[gpa & 0xfff] &= (uint8_t)~tf;
        return;
    }
    uint8_t fl;
    if (guest_ram_range(gpa, 1) && guest_phys_read(gpa, &fl, 1) == 0 && (fl & tf)) {
        fl &= (uint8_t)~tf;
        guest_phys_write(gpa, &fl, 1);
    }
}

void apic_step_untrace_pushf(struct apic_capture *cap, uint64_t apic_gpa,
                             const struct gwalk *g, const struct apic_step_regs *r)
{
    const uint64_t mask = r->long64 ? ~0ull : r->stack32 ? 0xffffffffull : 0xffffull;
    const uint64_t lmask = r->long64 ? ~0ull : 0xffffffffull;
    const uint64_t d = (r->rsp_before - r->rsp_after) & mask;
    if (d != 2 && d != 4 && d != 8)
        return;
    uint8_t b[15];
    const uint64_t la = ((r->long64 ? 0 : r->cs_base) + r->rip) & lmask;
    unsigned n = sizeof(b);
    if (gwalk_read(g, la, b, n) != 0) {     /* the next page may not be there */
        n = 4096 - (unsigned)(la & 0xfff);
        if (n > sizeof(b) || gwalk_read(g, la, b, n) != 0)
            return;
    }
    if (!apic_insn_is_pushf(b, n, r->long64))
        return;
    /* TF is in the image's second byte, whatever its size (little-endian). */
    const uint64_t tf_la = ((r->long64 ? 0 : r->ss_base) + ((r->rsp_after + 1) & mask)) & lmask;
    uint64_t gpa;
    if (gwalk_translate(g, tf_la, &gpa) == 0)
        untrace_byte(cap, apic_gpa, gpa);
}

void apic_capture_fill(struct apic_capture *cap, struct pcpu *c, uint32_t off,
                       const struct gregs *g, bool regs)
{
    (void)c;
    cap->fault_off = off & 0xfff;
    cap->string_regs[0] = g->r[R_CX];
    cap->string_regs[1] = g->r[R_SI];
    cap->string_regs[2] = g->r[R_DI];
    volatile uint32_t *apic = apic_regs();
    if (!regs) {
        /* The page as the last fill left it (only the writes will differ), but ICR_HI
         * as it is now: an ICR_LO write is sent to that destination. */
        uint32_t hi = apic[APIC_ICR_HI / 4];
        cap->page[APIC_ICR_HI / 4] = hi;
        cap->ref[APIC_ICR_HI / 4] = hi;
        return;
    }
    for (unsigned w = 0; w < APIC_SLOTS / 64; w++) {
        for (uint64_t m = cap->readable[w]; m; m &= m - 1) {
            unsigned s = w * 64 + (unsigned)__builtin_ctzll(m);
            uint32_t val = apic[s * 4];
            cap->page[s * 4] = val;
            cap->ref[s * 4] = val;
        }
    }
}

/* The first 8-byte word from q on (of 512) where the capture page differs from the
 * page as filled, or 512. One REPE CMPSQ: the common step wrote one register, so the
 * page is compared in about three runs rather than 512 loop rounds (which mattered
 * under Bochs, where a Linux timer tick has some 16,000 instructions of budget). */
static unsigned next_diff(const struct apic_capture *cap, unsigned q)
{
    const uint64_t *a = (const uint64_t *)cap->page, *b = (const uint64_t *)cap->ref;
    if (q >= 512)
        return 512;
    const uint64_t *pa = a + q, *pb = b + q;
    uint64_t n = 512 - q;
    __asm__ volatile("repe cmpsq" : "+S"(pa), "+D"(pb), "+c"(n) : : "cc", "memory");
    unsigned last = (unsigned)(pa - a) - 1;
    return a[last] != b[last] ? last : 512;
}

/* Back to the page as filled (the next fill rewrites the readable slots of both). */
static void tidy(struct apic_capture *cap)
{
    uint64_t *a = (uint64_t *)cap->page;
    const uint64_t *b = (const uint64_t *)cap->ref;
    for (unsigned q = next_diff(cap, 0); q < 512; q = next_diff(cap, q + 1))
        a[q] = b[q];
}

bool apic_capture_string_moved(const struct apic_capture *cap, const struct gregs *g)
{
    return cap->string_regs[0] != g->r[R_CX] || cap->string_regs[1] != g->r[R_SI] ||
           cap->string_regs[2] != g->r[R_DI];
}

void apic_capture_discard(struct apic_capture *cap)
{
    tidy(cap);
}

/* What one instruction wrote. A 16-byte slot was written when the write that faulted
 * began in its first four bytes or when those bytes changed; the register then gets the
 * four bytes as they are now (a narrower write is merged with the value filled in, which
 * is the register's). Bytes 4-15 of a slot are reserved: a write there is dropped. The
 * registers are acted on in ascending order with ICR_LO last, so that an instruction
 * writing ICR_HI too sends to the destination it wrote. SDM 11.4.1 defines only aligned
 * 32-bit loads and stores of a register; an instruction whose write began elsewhere than
 * at a slot's start, that touched reserved bytes, or that wrote more than one register
 * is counted as undefined (STATS 0x207), and handled as above. A register written with
 * the value it held, other than at the faulting offset, cannot be told from one not
 * written, and is not written again (README "APIC writes"). */
void apic_capture_commit(struct vcpu *v, struct apic_capture *cap)
{
    struct pcpu *c = v->cpu;
    const uint32_t *pg = cap->page, *ref = cap->ref;
    uint64_t written[APIC_SLOTS / 64] = { 0 };
    unsigned count = 0, fault_slot = SLOT(cap->fault_off);
    bool undefined = (cap->fault_off & 0xf) != 0;
    c->stats[STAT_STEPS_DONE]++;
    if ((cap->fault_off & 0xf) < 4) {
        written[fault_slot / 64] |= 1ull << (fault_slot % 64);
        count++;
    }
    for (unsigned q = next_diff(cap, 0); q < 512; q = next_diff(cap, q + 1)) {
        unsigned s = q / 2, d = q * 2;
        if (q & 1 || pg[d + 1] != ref[d + 1])
            undefined = true;       /* bytes 4-15: reserved */
        if (!(q & 1) && pg[d] != ref[d] && !(written[s / 64] >> (s % 64) & 1)) {
            written[s / 64] |= 1ull << (s % 64);
            count++;
        }
    }
    if (count > 1)
        undefined = true;
    if (undefined)
        c->stats[STAT_APIC_UNDEFINED]++;
    volatile uint32_t *apic = apic_regs();
    for (unsigned w = 0; w < APIC_SLOTS / 64; w++) {
        for (uint64_t m = written[w]; m; m &= m - 1) {
            unsigned s = w * 64 + (unsigned)__builtin_ctzll(m);
            if (s == SLOT_ICR_LO)
                continue;
            apic[s * 4] = pg[s * 4];
            if (s == SLOT(APIC_LDR) || s == SLOT(APIC_DFR)) {
                c->apic_ldr = apic[APIC_LDR / 4];
                c->apic_dfr = apic[APIC_DFR / 4];
            }
        }
    }
    if (written[SLOT_ICR_LO / 64] >> (SLOT_ICR_LO % 64) & 1) {
        uint32_t lo = pg[APIC_ICR_LO / 4], hi = pg[APIC_ICR_HI / 4];
        smpg_icr_write(v, (uint64_t)hi << 32 | lo, false);
        /* The policy may have used this APIC's ICR itself (the NMIs that ask another CPU
         * to take its INIT): the guest's destination goes back, as it reads it. */
        apic[APIC_ICR_HI / 4] = hi;
    }
    tidy(cap);
}

int apic_base_write(struct pcpu *c, uint64_t val)
{
    uint64_t addr_bits = APIC_BASE_ADDR & ((1ull << cpu_phys_bits()) - 1);
    uint64_t reserved = ~(addr_bits | APIC_BASE_BSP | APIC_BASE_EXTD | APIC_BASE_EN);
    if (val & reserved)
        return -1;
    if (gpa_in_hypervisor(val & APIC_BASE_ADDR, 0x1000))
        return -1;
    int rc = wrmsr_safe(c, MSR_IA32_APIC_BASE, val);
    if (rc == 0)
        c->apic_off = !(val & APIC_BASE_EN);
    return rc;
}

/* SDM 11.12.1.3 "Reserved Bit Checking": a WRMSR that sets a reserved bit of an x2APIC
 * register raises #GP; the x2APIC ICR's reserved bits are 12-13, 16-17 and 20-31 (11.12.9,
 * no delivery status in x2APIC mode). AMD keeps bit 12 as the read-only delivery status
 * (APM Vol. 2, 16.11 "x2APIC"): written, it is ignored there, not a fault. */
static bool cpu_is_amd(void)
{
    uint32_t r[4];
    cpuid(0, 0, r);
    return r[1] == 0x68747541u;     /* "Auth" of AuthenticAMD */
}

int apic_x2apic_icr_write(struct vcpu *v, uint64_t val)
{
    if (!(rdmsr(MSR_IA32_APIC_BASE) & APIC_BASE_EXTD))
        return -1;      /* x2APIC MSRs do not exist in xAPIC mode */
    uint64_t reserved = X2APIC_ICR_RESERVED;
    if (cpu_is_amd()) {
        reserved &= ~(uint64_t)ICR_DELIVERY_PENDING;
        val &= ~(uint64_t)ICR_DELIVERY_PENDING;
    }
    if (val & reserved)
        return -1;
    smpg_icr_write(v, val, true);
    return 0;
}

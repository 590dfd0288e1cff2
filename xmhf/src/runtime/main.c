/* The runtime's start: per-CPU state, every processor into VMX/SVM, the guest's
 * memory map and nested page tables, the hypapp, then the guest on the BSP. */
#include "apic.h"
#include "dmap.h"
#include "hypapp-dispatch.h"
#include "msr.h"
#include "xmhf.h"

struct pcpu *g_pcpu[MAX_CPUS];
uint32_t g_ncpus;
struct bootparams *g_bp;
volatile bool g_guest_go;

void heap_init(void);
struct pcpu *smp_bsp_init(void);

static void cpu_bringup(struct pcpu *c)
{
    c->apic_off = !(rdmsr(MSR_IA32_APIC_BASE) & APIC_BASE_EN);
    c->state = arch_cpu_init(c) == 0 ? PCPU_VMX_ON : PCPU_FAILED;
}

/* APs arrive here from the trampoline, on their own stack, in long mode. */
__noreturn void ap_entry(struct pcpu *c);
__noreturn void ap_entry(struct pcpu *c)
{
    cpu_tables_load(c);
    c->state = PCPU_STARTED;
    cpu_bringup(c);
    if (c->state != PCPU_VMX_ON)
        smp_hold_cpu(c, "its set-up failed (above)");
    arch_park_ap(c);
}

__noreturn void runtime_main(uint64_t bp_phys);
__noreturn void runtime_main(uint64_t bp_phys)
{
    g_bp = phys_to_virt(bp_phys);
    if (g_bp->magic != BOOTPARAMS_MAGIC)
        halt_forever();     /* no console settings to report with: init is broken */
    console_init(g_bp->opts.serial_port, g_bp->opts.baud);
    printk("XMHF %s (amd64) runtime, %s, region %08llx-%08llx\n", XMHF_VERSION, arch_name,
           (unsigned long long)g_bp->region_base,
           (unsigned long long)(g_bp->region_base + g_bp->region_size));
    heap_init();
    idt_init();
    struct pcpu *bsp = smp_bsp_init();
    cpu_tables_load(bsp);
    bsp->state = PCPU_STARTED;
    bsp->guest_state = GUEST_CPU_RUNNING;

    smp_start_aps();
    cpu_bringup(bsp);
    /* Every AP reports VMX on or failed; a CPU that never got to start counts as failed. */
    uint32_t on = 0;
    for (uint32_t i = 0; i < g_ncpus; i++) {
        while (g_pcpu[i]->state == PCPU_STARTED)
            cpu_pause();
        on += g_pcpu[i]->state == PCPU_VMX_ON;
    }
    printk("xmhf: %s on %u of %u CPUs\n", arch_name, on, g_ncpus);
    if (bsp->state != PCPU_VMX_ON)
        panic("the boot processor cannot run the guest (see the message above)");
    /* apic=zeroexit lets the guest's INIT and STARTUP reach the hardware: a processor
     * outside VMX operation would obey them and run guest code unsupervised. */
    if (apic_zeroexit() && (on != g_ncpus || g_cpus_left_off))
        panic("apic=zeroexit needs every processor in VMX operation (%u of %u%s): the "
              "guest's INIT/STARTUP would start the others outside the hypervisor; boot "
              "without it", on, g_ncpus, g_cpus_left_off ? ", more not started" : "");

    if (g_bp->opts.selftest == XMHF_SELFTEST_PAGEFAULT) {
        /* Above the 4 GiB the runtime maps: a not-present page fault on purpose. */
        printk("xmhf: selftest=pagefault: reading 0x%llx\n", 0x100000000000ull);
        (void)*(volatile uint64_t *)(uintptr_t)0x100000000000ull;
    }
    e820_hook_install();
    dmap_init();            /* first: the nested page tables leave its registers out */
    arch_nested_paging_init();

    struct app_bootparams abp = {
        .region_base = g_bp->region_base, .region_size = g_bp->region_size,
        .ncpus = g_ncpus, .boot_drive = g_bp->opts.boot_drive, .cmdline = g_bp->cmdline,
    };
    if (hypapp_boot(&abp) != 0)
        panic("the hypapp's init failed: not starting the guest unprotected");
    uint64_t now = rdtsc();
    printk("xmhf: heap %llu KiB free; starting the guest at 0000:7c00 with DL=%02x\n",
           (unsigned long long)(heap_pages_free() * 4), g_bp->opts.boot_drive);
    printk("xmhf: TSC %llu at init entry, %llu at guest launch (+%llu in the hypervisor)\n",
           (unsigned long long)g_bp->tsc_init, (unsigned long long)now,
           (unsigned long long)(now - g_bp->tsc_init));
    if (apic_zeroexit()) {
        /* Every AP in wait-for-SIPI before the guest's first instruction: a STARTUP
         * to a CPU still in the hypervisor would be lost (SIPIs are ignored in VMX root
         * operation, SDM 24.8). */
        __atomic_store_n(&g_guest_go, true, __ATOMIC_RELEASE);
        for (uint32_t i = 0; i < g_ncpus; i++)
            while (g_pcpu[i] != bsp && g_pcpu[i]->state == PCPU_VMX_ON &&
                   __atomic_load_n(&g_pcpu[i]->guest_state, __ATOMIC_ACQUIRE) != GUEST_CPU_WAIT_SIPI)
                cpu_pause();
    }
    arch_launch_bsp_guest(bsp);
}

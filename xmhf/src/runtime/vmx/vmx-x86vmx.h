/* State shared by the VMX half's files (not by common code). */
#ifndef XMHF_VMX_X86VMX_H
#define XMHF_VMX_X86VMX_H
#include "apicstep.h"
#include "msr.h"
#include "ptpath.h"
#include "vmx.h"
#include "xmhf.h"

/* Per-CPU VMX state, one heap page per CPU (pcpu->arch_page[2]). */
struct vmx_cpu {
    uint32_t pin, proc, proc2, exit, entry;     /* controls as adjusted for this CPU */
    uint64_t cr0_fixed0, cr0_fixed1, cr4_fixed0, cr4_fixed1;
    uint64_t cr0_guest_fixed0;                  /* fixed0 without PE/PG (unrestricted guest) */
    struct gregs launch_regs;
    uint64_t eptp;                              /* this CPU's root: its own APIC hole */
    struct pt_path path;                        /* private PML4, PDPT, PD, PT down to it */
    uint64_t apic_gpa;                          /* watched xAPIC page; 0: none (off, x2APIC) */
    struct apic_capture cap;                    /* a write step runs against its page */
    bool mtf;                                   /* step with MTF, else RFLAGS.TF + #DB */
    bool spp;                                   /* EPT sub-page write permissions in use */
    uint64_t *sppt[4];                          /* this CPU's SPP table: one path (ept-) */
    uint64_t sppt_pa[4];
    bool nmi_window;                            /* NMI-window exiting requested */
    bool nmi_intr_window;                       /* interrupt-window exiting, for an NMI */
    bool wait_sipi;         /* apic=zeroexit: the guest was entered in wait-for-SIPI */
    bool sipi_guard;        /* apic=zeroexit: MTF until the started CPU's first instruction */
    bool sipi_fresh;        /* apic=zeroexit: started by a SIPI, no exit since */
    uint32_t reset_inits;   /* apic=zeroexit, BSP: INIT exits in a row at the reset vector */
    uint32_t preempt_value; /* the kick timer's period (0: no VMX-preemption timer) */
    /* The step in progress (smpg-x86vmx.c). */
    bool stepping, step_sti, step_extint, step_guest_tf;
    bool step_event;        /* TF mode: an event's delivery wrote the page (no TF) */
    uint64_t step_rip, step_rsp;
    uint32_t saved_exc_bitmap;
    uint64_t types_gen;                         /* memory types flushed up to (ept-x86vmx.c) */
    bool vectoring_done;                        /* this exit's handler delivered the event
                                                   it interrupted (a task gate) */
};
_Static_assert(sizeof(struct vmx_cpu) <= 4096, "struct vmx_cpu lives in one page");
static inline struct vmx_cpu *vmx_of(struct pcpu *c) { return c->arch_page[2]; }

int vmx_ept_map_lazy(uint64_t gpa);
void vmx_ept_private_init(struct vmx_cpu *x);
int vmx_ept_private_build(struct vmx_cpu *x, uint64_t apic_gpa);
/* The APIC page's entry in this CPU's private path: read-only on the real APIC, or the
 * capture page writable for a step. */
enum apic_map { APIC_MAP_GUARD, APIC_MAP_CAPTURE };
void vmx_ept_apic_entry(struct vmx_cpu *x, enum apic_map how);
void vmx_ept_types_flush(struct vmx_cpu *x);

/* smpg-x86vmx.c */
void vmx_smpg_cpu_setup(struct pcpu *c);
bool vmx_smpg_apic_trap(struct vcpu *v, uint64_t gpa, uint64_t qual);
bool vmx_smpg_step_exit(struct vcpu *v, uint32_t basic);
void vmx_smpg_apic_base_write(struct vcpu *v, uint64_t val);
void vmx_smpg_x2apic_icr_write(struct vcpu *v, uint64_t val);
void vmx_nmi_prepare(struct pcpu *c);
void vmx_write_proc(struct vmx_cpu *x);
bool vmx_event_pending(void);
void vmx_zeroexit_sipi(struct vcpu *v);
int vmx_root_enter(struct pcpu *c);
void vmx_kick_timer(struct pcpu *c);
/* restart-x86vmx.c: a CPU whose INIT stays pending after its exit (Bochs 2.7) */
void vmx_restart_through_init(struct pcpu *c);
void vmx_world_gate(struct pcpu *c);
void vmx_restart_done(struct pcpu *c);

void vmx_skip_instruction(struct vcpu *v);

/* The guest's general-purpose register n as the exit qualifications number them; RSP
 * lives in the VMCS. */
static inline uint64_t vmx_gpr(struct vcpu *v, unsigned n)
{
    return n == R_SP ? vmreadN(VMCS_GUEST_RSP) : v->regs->r[n];
}
static inline void vmx_set_gpr(struct vcpu *v, unsigned n, uint64_t val)
{
    if (n == R_SP)
        vmwriteN(VMCS_GUEST_RSP, val);
    else
        v->regs->r[n] = val;
}
/* 64-bit mode: IA-32e mode and a 64-bit code segment. */
static inline bool vmx_guest_64bit(void)
{
    return (vmread64(VMCS_GUEST_EFER) & EFER_LMA) && (vmread32(VMCS_GUEST_CS_AR) & AR_L);
}

/* emul-x86vmx.c: instructions and events performed on the guest's behalf. */
void vmx_exit_cr_access(struct vcpu *v);
/* After the hypervisor changed CR0/CR3/CR4/EFER: PAE PDPTEs and the IA-32e entry control. */
void vmx_after_paging_change(struct vmx_cpu *x, uint64_t cr0, uint64_t cr4, uint64_t efer);
/* taskswitch-x86vmx.c */
void vmx_exit_task_switch(struct vcpu *v);
void vmx_exit_dr_access(struct vcpu *v);
void vmx_exit_io(struct vcpu *v);
void vmx_exit_rdtsc(struct vcpu *v);
void vmx_exit_rdtscp(struct vcpu *v);
void vmx_exit_rdrand(struct vcpu *v);
void vmx_exit_hlt(struct vcpu *v);
void vmx_exit_invpcid(struct vcpu *v);
void vmx_reflect_exception(struct vcpu *v, uint32_t info);
void vmx_exit_handler(struct pcpu *c, struct gregs *g);
__noreturn void vmx_resume_failed(struct pcpu *c);
void vmx_launch(struct gregs *g);
void vmx_exit_entry(void);

#endif

/* State shared by the SVM half's files (not by common code). */
#ifndef XMHF_SVM_X86SVM_H
#define XMHF_SVM_X86SVM_H
#include "apicstep.h"
#include "ptpath.h"
#include "svm.h"
#include "xmhf.h"

/* What CPUID Fn8000_000A reported on this CPU (EDX: SVM_FEAT_*). */
struct svm_features {
    uint32_t revision, nasid, edx;
};

/* Per-CPU SVM state, one heap page per CPU (pcpu->arch_page[2]); the other arch pages
 * are [0] the host save area (VM_HSAVE_PA), [1] the VMCB, [3] the host's VMSAVE image. */
struct svm_cpu {
    struct vmcb *vmcb;
    uint64_t vmcb_pa;
    uint64_t host_state_pa;     /* VMSAVE/VMLOAD image of the host's FS/GS/TR/LDTR/... */
    struct svm_features feat;
    uint64_t efer_allowed;      /* EFER bits the guest may write (besides LMA, ignored) */
    struct gregs launch_regs;
    /* This CPU's nested-page root (npt-x86svm.c): shared tables except the private path
     * to its APIC page, whose entry is not present outside a step. */
    struct pt_path npt;
    uint64_t apic_gpa;          /* watched xAPIC page; 0: none (APIC off, x2APIC) */
    struct apic_capture cap;    /* a write step runs against its page */
    /* The single-step in progress (smpg-x86svm.c). */
    uint32_t step;              /* enum svm_step */
    bool step_guest_tf;         /* RFLAGS.TF was the guest's own at the start */
    uint64_t step_rip, step_rsp, step_dr6;
    struct svm_seg step_tr;     /* TR and CR3 at the start: a task switch in the step */
    uint64_t step_cr3;
    uint32_t saved_exc, saved_int1, saved_int2;
    uint64_t saved_vintr;
    /* NMI delivery: the guest's NMI blocking from an injected NMI to its IRET. */
    bool nmi_blocked;
    bool nmi_force;             /* inject at the next entry whatever the shadow says */
    bool nmi_iret_armed;        /* nmi_iret_rip: the handler's IRET, maybe not yet run */
    uint64_t nmi_iret_rip;
    uint64_t types_gen;         /* memory types flushed up to (npt-x86svm.c) */
};
_Static_assert(sizeof(struct svm_cpu) <= 4096, "struct svm_cpu lives in one page");
static inline struct svm_cpu *svm_of(struct pcpu *c) { return c->arch_page[2]; }
static inline struct vmcb *vmcb_of(struct vcpu *v) { return svm_of(v->cpu)->vmcb; }

/* What a step is for: an APIC write, an event whose delivery writes the APIC page (no
 * TF: it lasts until the next exit), the IRET that ends the guest's NMI handler, or one
 * instruction out of an interrupt shadow that holds up a pending NMI. */
enum svm_step { STEP_NONE, STEP_APIC, STEP_APIC_EVENT, STEP_IRET, STEP_WINDOW };

/* npt-x86svm.c */
int svm_npt_map_lazy(uint64_t gpa);
void svm_npt_private_init(struct pcpu *c, uint64_t apic_gpa);
int svm_npt_private_build(struct svm_cpu *s, uint64_t apic_gpa);
void svm_npt_retarget(struct pcpu *c, uint64_t apic_gpa);
/* The APIC page's entry in this CPU's own path: read-only on the real APIC, or the
 * capture page writable for a step. */
enum apic_map { APIC_MAP_GUARD, APIC_MAP_CAPTURE };
void svm_npt_apic_entry(struct svm_cpu *s, enum apic_map how);
void svm_npt_types_flush(struct svm_cpu *s);

/* smpg-x86svm.c */
void svm_smpg_cpu_setup(struct pcpu *c);
bool svm_smpg_apic_trap(struct vcpu *v, uint64_t gpa, uint64_t err);
bool svm_smpg_step_exit(struct vcpu *v, uint64_t code);
void svm_smpg_apic_base_write(struct vcpu *v, uint64_t val);
void svm_smpg_x2apic_icr_write(struct vcpu *v, uint64_t val);
void svm_smpg_iret(struct vcpu *v);
void svm_nmi_prepare(struct pcpu *c);

/* svm-x86svm.c */
int svm_guest_read_linear(struct vcpu *v, uint64_t la, void *buf, unsigned n);
int svm_gpa_read(void *ctx, uint64_t gpa, void *buf, unsigned n);  /* gwalk's reader */
uint64_t svm_guest_cs_linear(struct vcpu *v, uint64_t rip);
unsigned svm_insn_len(struct vcpu *v, unsigned opcode_len);
void svm_skip_instruction(struct vcpu *v, unsigned opcode_len);
bool svm_event_pending(struct vcpu *v);
void svm_guest_set_cr2(struct vcpu *v, uint64_t cr2);

/* peh-x86svm-main.c, svm-entry.S */
void svm_exit_handler(struct pcpu *c, struct gregs *g);
__noreturn void svm_launch_guest(struct pcpu *c, uint16_t cs_sel, uint64_t rip);
__noreturn void svm_run(uint64_t vmcb_pa, uint64_t host_state_pa, const struct gregs *init);

#endif

/* State shared by the SVM half's files (not by common code). */
#ifndef XMHF_SVM_X86SVM_H
#define XMHF_SVM_X86SVM_H
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
};
static inline struct svm_cpu *svm_of(struct pcpu *c) { return c->arch_page[2]; }
static inline struct vmcb *vmcb_of(struct vcpu *v) { return svm_of(v->cpu)->vmcb; }

/* npt-x86svm.c */
extern uint64_t g_ncr3;
int svm_npt_map_lazy(uint64_t gpa);

/* svm-x86svm.c */
int svm_guest_read_linear(struct vcpu *v, uint64_t la, void *buf, unsigned n);
uint64_t svm_guest_cs_linear(struct vcpu *v, uint64_t rip);
unsigned svm_insn_len(struct vcpu *v, unsigned opcode_len);
void svm_skip_instruction(struct vcpu *v, unsigned opcode_len);
bool svm_event_pending(struct vcpu *v);

/* peh-x86svm-main.c, svm-entry.S */
void svm_exit_handler(struct pcpu *c, struct gregs *g);
__noreturn void svm_run(uint64_t vmcb_pa, uint64_t host_state_pa, const struct gregs *init);

#endif

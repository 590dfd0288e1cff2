/* State shared by the VMX half's files (not by common code). */
#ifndef XMHF_VMX_X86VMX_H
#define XMHF_VMX_X86VMX_H
#include "vmx.h"
#include "xmhf.h"

/* Per-CPU VMX state, one heap page per CPU (pcpu->arch_page[2]). */
struct vmx_cpu {
    uint32_t pin, proc, proc2, exit, entry;     /* controls as adjusted for this CPU */
    uint64_t cr0_fixed0, cr0_fixed1, cr4_fixed0, cr4_fixed1;
    uint64_t cr0_guest_fixed0;                  /* fixed0 without PE/PG (unrestricted guest) */
    struct gregs launch_regs;
};
static inline struct vmx_cpu *vmx_of(struct pcpu *c) { return c->arch_page[2]; }

extern uint64_t g_eptp;
int vmx_ept_map_lazy(uint64_t gpa);

void vmx_skip_instruction(struct vcpu *v);
void vmx_exit_handler(struct pcpu *c, struct gregs *g);
__noreturn void vmx_resume_failed(struct pcpu *c);
void vmx_launch(struct gregs *g);
void vmx_exit_entry(void);

#endif

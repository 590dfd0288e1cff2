/* CPUID for the guest, both halves: the processor as it is, except what the hypervisor
 * owns. VMX (leaf 1 ECX bit 5), SMX (bit 6: GETSEC always exits and is refused) and SVM
 * (leaf 8000_0001 ECX bit 2, and the SVM leaf 8000_000A all zero) are hidden as on a
 * processor without them; OSXSAVE (leaf 1 ECX bit 27) mirrors the guest's CR4, because
 * CPUID runs here with the host's CR4 (SDM Vol. 2A CPUID; AMD APM Vol. 3 appendix E). */
#include "xmhf.h"

#define CPUID1_ECX_VMX       (1u << 5)
#define CPUID1_ECX_SMX       (1u << 6)
#define CPUID1_ECX_OSXSAVE   (1u << 27)
#define CPUID81_ECX_SVM      (1u << 2)

void guest_cpuid(struct vcpu *v, uint64_t guest_cr4)
{
    uint64_t *r = v->regs->r;
    uint32_t out[4];
    uint32_t leaf = (uint32_t)r[R_AX];
    cpuid(leaf, (uint32_t)r[R_CX], out);
    if (leaf == 1) {
        out[2] &= ~(CPUID1_ECX_VMX | CPUID1_ECX_SMX | CPUID1_ECX_OSXSAVE);
        if (guest_cr4 & CR4_OSXSAVE)
            out[2] |= CPUID1_ECX_OSXSAVE;
    } else if (leaf == 0x80000001u) {
        out[2] &= ~CPUID81_ECX_SVM;
    } else if (leaf == 0x8000000au) {
        out[0] = out[1] = out[2] = out[3] = 0;
    }
    r[R_AX] = out[0];
    r[R_BX] = out[1];
    r[R_CX] = out[2];
    r[R_DX] = out[3];
}

/* The guest loop (AMD APM Vol. 2, 15.5 "VMRUN Instruction", 15.5.2 "VMSAVE and VMLOAD
 * Instructions"). VMRUN switches only RAX, RSP, RIP, RFLAGS, CR0/3/4, EFER, ES/CS/SS/DS,
 * GDTR/IDTR, DR6/7 and the guest's PAT; every other general register keeps whatever
 * value it has, so this stub loads and saves them around VMRUN. FS, GS, TR, LDTR (with
 * their hidden parts), KernelGSBase, STAR/LSTAR/CSTAR/SFMASK and SYSENTER_* are switched
 * with VMLOAD/VMSAVE: the host's image is saved once, the guest's lives in its VMCB. The
 * host needs its GS base (%gs:0 is struct pcpu) back before any C code runs.
 *
 * Frame on the host stack, from %rsp up: struct gregs (16 * 8, R_AX slot unused: the
 * guest's RAX lives in the VMCB), 8 bytes of padding, the VMCB's physical address, the
 * host VMSAVE image's physical address. */
    .text
    .code64

#define FRAME_VMCB  136
#define FRAME_HOST  144

/* void svm_run(uint64_t vmcb_pa, uint64_t host_state_pa, const struct gregs *init):
 * never returns. The CPU's stack from here on belongs to the loop. */
    .globl svm_run
svm_run:
    push %rsi
    push %rdi
    sub $136, %rsp              /* %rsp is 16-byte aligned from here (call below) */
    mov %rdx, %rsi
    mov %rsp, %rdi
    mov $16, %ecx
    cld
    rep movsq
    mov FRAME_HOST(%rsp), %rax
    vmsave                      /* the host's FS/GS/TR/LDTR/syscall MSRs */
    clgi                        /* GIF is 0 in the host but for the STGI below */

/* NMIs: the guest's exit on an NMI (NMI intercept) leaves the NMI pending while GIF is
 * 0. Here, once per entry, GIF opens for an instruction boundary: a pending NMI is taken
 * by the host's handler, which counts it in pcpu->nmi_host (exceptions.c); then
 * svm_nmi_prepare turns what was counted into an injection when the guest can take
 * one. One that arrives after the CLGI stays pending: VMRUN sets GIF, the NMI exits the
 * guest at once, and it is counted on the next round. Host IF is 0 throughout, so
 * nothing else is taken here. */
1:  stgi
    nop
    clgi
    mov %gs:0, %rdi
    call svm_nmi_prepare
    mov FRAME_VMCB(%rsp), %rax
    vmload                      /* the guest's FS/GS/TR/LDTR/syscall MSRs */
    mov 1*8(%rsp), %rcx
    mov 2*8(%rsp), %rdx
    mov 3*8(%rsp), %rbx
    mov 5*8(%rsp), %rbp
    mov 6*8(%rsp), %rsi
    mov 7*8(%rsp), %rdi
    mov 8*8(%rsp), %r8
    mov 9*8(%rsp), %r9
    mov 10*8(%rsp), %r10
    mov 11*8(%rsp), %r11
    mov 12*8(%rsp), %r12
    mov 13*8(%rsp), %r13
    mov 14*8(%rsp), %r14
    mov 15*8(%rsp), %r15
    vmrun                       /* #VMEXIT resumes here with host RSP/RAX/RFLAGS, GIF=0 */
    .globl svm_vmexit_rip
svm_vmexit_rip:                 /* %gs is still the guest's: see arch_host_db_is_stale */
    mov %rcx, 1*8(%rsp)
    mov %rdx, 2*8(%rsp)
    mov %rbx, 3*8(%rsp)
    mov %rbp, 5*8(%rsp)
    mov %rsi, 6*8(%rsp)
    mov %rdi, 7*8(%rsp)
    mov %r8, 8*8(%rsp)
    mov %r9, 9*8(%rsp)
    mov %r10, 10*8(%rsp)
    mov %r11, 11*8(%rsp)
    mov %r12, 12*8(%rsp)
    mov %r13, 13*8(%rsp)
    mov %r14, 14*8(%rsp)
    mov %r15, 15*8(%rsp)
    mov FRAME_VMCB(%rsp), %rax
    vmsave                      /* the guest's FS/GS/... into its VMCB */
    mov FRAME_HOST(%rsp), %rax
    vmload                      /* the host's GS base (struct pcpu) and the rest */
    mov %gs:0, %rdi
    mov %rsp, %rsi
    call svm_exit_handler
    jmp 1b

/* The NMI window of exceptions.c: on VMX an NMI can reach the host between the exit
 * handler and VM entry, and the handler rewinds to the window's start. Here the host
 * takes NMIs only at the STGI above, before anything is decided for the next entry
 * (15.17 "Global Interrupt Flag, STGI and CLGI Instructions"), so there is nothing to
 * rewind: the window is empty. */
    .globl entry_nmi_window_start, entry_nmi_window_end
entry_nmi_window_start:
entry_nmi_window_end:


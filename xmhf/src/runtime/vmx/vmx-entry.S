/* VM entry and exit (SDM Vol. 3C 27.5 "Loading Host State": on an exit the processor
 * loads RSP/RIP from the VMCS host fields and leaves every general register with the
 * guest's value, so the stub saves them first). The frame is struct gregs. */
#define PCPU_LAUNCH_RSP 8
#define PCPU_NMI_HOST   16

    .text
    .code64

    .macro SAVE_GUEST
    push %r15
    push %r14
    push %r13
    push %r12
    push %r11
    push %r10
    push %r9
    push %r8
    push %rdi
    push %rsi
    push %rbp
    push $0                 /* RSP slot: the guest's RSP is in the VMCS */
    push %rbx
    push %rdx
    push %rcx
    push %rax
    .endm

    .macro LOAD_GUEST       /* %rsp points at a struct gregs */
    pop %rax
    pop %rcx
    pop %rdx
    pop %rbx
    add $8, %rsp
    pop %rbp
    pop %rsi
    pop %rdi
    pop %r8
    pop %r9
    pop %r10
    pop %r11
    pop %r12
    pop %r13
    pop %r14
    pop %r15
    .endm

/* void vmx_launch(struct gregs *g): a guest CPU's first entry; returns only if
 * VMLAUNCH fails (VM-instruction error in the VMCS). The host stack is HOST_RSP from
 * then on. NMIs owed before the first entry were the hypervisor's own (wake-ups). */
    .globl vmx_launch
vmx_launch:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %gs:PCPU_LAUNCH_RSP   /* every GPR is the guest's after LOAD_GUEST */
    mov %rdi, %rsp
    LOAD_GUEST
    vmlaunch
    mov %gs:PCPU_LAUNCH_RSP, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

    .globl vmx_exit_entry
vmx_exit_entry:
    SAVE_GUEST
    mov %gs:0, %rdi         /* struct pcpu * (HOST_GS_BASE) */
    mov %rsp, %rsi
    call vmx_exit_handler
resume:
    LOAD_GUEST
/* From here to VMRESUME only memory operands: an NMI in the host after the handler
 * decided what to inject would otherwise wait for the next exit. The NMI handler moves
 * an interrupted RIP back to the start of this window. */
    .globl entry_nmi_window_start, entry_nmi_window_end
entry_nmi_window_start:
    cmpq $0, %gs:PCPU_NMI_HOST
    jne nmi_arrived
    vmresume
entry_nmi_window_end:
    /* VMRESUME failed: the guest state is in the VMCS, the error too. */
    SAVE_GUEST
    mov %gs:0, %rdi
    call vmx_resume_failed
1:  cli
    hlt
    jmp 1b

nmi_arrived:
    SAVE_GUEST
    mov %gs:0, %rdi
    call vmx_nmi_prepare
    jmp resume

/* Instructions that a test expects may fault, each with a global label on the
 * instruction itself (so a test can compare the reported RIP) and a recovery label
 * where the trap handler resumes when a fault was expected (fault_expect()). The stack
 * at the recovery label is the one at the faulting instruction. */
    .text
    .code64

/* int hc_vmcall(struct hc_regs *r)
 * Loads every general-purpose register but RSP from *r, executes VMCALL, stores them
 * back to *r. Returns 0; or 1 from hc_vmcall_recover when VMCALL faulted (*r untouched). */
    .globl hc_vmcall, hc_vmcall_insn, hc_vmcall_recover
hc_vmcall:
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    pushq   %rdi                    /* the struct, for after the call */
    movq    0(%rdi), %rax
    movq    8(%rdi), %rbx
    movq    16(%rdi), %rcx
    movq    24(%rdi), %rdx
    movq    32(%rdi), %rsi
    movq    48(%rdi), %rbp
    movq    56(%rdi), %r8
    movq    64(%rdi), %r9
    movq    72(%rdi), %r10
    movq    80(%rdi), %r11
    movq    88(%rdi), %r12
    movq    96(%rdi), %r13
    movq    104(%rdi), %r14
    movq    112(%rdi), %r15
    movq    40(%rdi), %rdi
hc_vmcall_insn:
    vmcall
    pushq   %rdi                    /* RDI as the hypervisor left it */
    movq    8(%rsp), %rdi
    movq    %rax, 0(%rdi)
    movq    %rbx, 8(%rdi)
    movq    %rcx, 16(%rdi)
    movq    %rdx, 24(%rdi)
    movq    %rsi, 32(%rdi)
    popq    %rax
    movq    %rax, 40(%rdi)
    movq    %rbp, 48(%rdi)
    movq    %r8, 56(%rdi)
    movq    %r9, 64(%rdi)
    movq    %r10, 72(%rdi)
    movq    %r11, 80(%rdi)
    movq    %r12, 88(%rdi)
    movq    %r13, 96(%rdi)
    movq    %r14, 104(%rdi)
    movq    %r15, 112(%rdi)
    xorl    %eax, %eax
    jmp     1f
hc_vmcall_recover:
    movl    $1, %eax
1:  addq    $8, %rsp                /* the struct pointer */
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret

/* void probe_write64(uint64_t addr, uint64_t val) */
    .globl probe_write64, probe_write64_insn, probe_write64_recover
probe_write64:
probe_write64_insn:
    movq    %rsi, (%rdi)
probe_write64_recover:
    ret

/* uint64_t probe_read64(uint64_t addr) -- returns 0 when the read faulted */
    .globl probe_read64, probe_read64_insn, probe_read64_recover
probe_read64:
    xorl    %eax, %eax
probe_read64_insn:
    movq    (%rdi), %rax
probe_read64_recover:
    ret

/* void probe_ud2(void) -- raises #UD; used to check the runner's abort path */
    .globl probe_ud2, probe_ud2_insn
probe_ud2:
probe_ud2_insn:
    ud2
    ret

/* void probe_movs(uint64_t src, uint64_t dst, uint64_t out[2])
 * One MOVSL (DF = 0) from src to dst; out[0] = RSI, out[1] = RDI afterwards. A fault
 * leaves RSI/RDI as they were, and the recovery label stores them just the same. */
    .globl probe_movs, probe_movs_insn, probe_movs_recover
probe_movs:
    movq    %rdx, %r8
    movq    %rdi, %rax
    movq    %rsi, %rdi
    movq    %rax, %rsi
    cld
probe_movs_insn:
    movsl
probe_movs_recover:
    movq    %rsi, 0(%r8)
    movq    %rdi, 8(%r8)
    ret

/* uint32_t probe_tf_read(uint64_t addr)
 * POPFQ sets TF; the single-step #DB comes after the instruction that follows it, the
 * read at probe_tf_read_insn, so its RIP is probe_tf_read_after (SDM Vol. 3B,
 * "Single-Step Exception Condition"). The #DB handler clears TF; the NOPs would each
 * raise another #DB if it did not. */
/* uint32_t probe_tf_if_read(uint64_t addr): the same with interrupts enabled over the
 * read (IF = 1, nothing pending), restoring the caller's RFLAGS at the end. A hypervisor
 * that holds interrupts off for its step by STI blocking must not do so with TF set
 * (VM entry would fail), so this takes the other path. */
    .globl probe_tf_if_read, probe_tf_if_read_insn, probe_tf_if_read_after
probe_tf_if_read:
    pushfq
    pushfq
    orq     $0x300, (%rsp)
    popfq
probe_tf_if_read_insn:
    movl    (%rdi), %eax
probe_tf_if_read_after:
    nop
    nop
    nop
    popfq
    ret

    .globl probe_tf_read, probe_tf_read_insn, probe_tf_read_after
probe_tf_read:
    pushfq
    orq     $0x100, (%rsp)
    popfq
probe_tf_read_insn:
    movl    (%rdi), %eax
probe_tf_read_after:
    nop
    nop
    nop
    ret

/* uint64_t probe_call(uint64_t addr): calls the code at addr, which returns a value in
 * RAX and keeps RBX. A fault at addr resumes at probe_call_recover (fault_expect), which
 * drops the pushed return address and returns all ones. */
    .globl probe_call, probe_call_recover
probe_call:
    pushq   %rbx
    movq    %rsp, %rbx
    callq   *%rdi
    popq    %rbx
    ret
probe_call_recover:
    movq    %rbx, %rsp
    movq    $-1, %rax
    popq    %rbx
    ret

/* uint64_t probe_outsb(uint64_t port, uint64_t src): OUTSB of the byte at src to port;
 * returns RSI after it (from probe_outsb_recover: RSI at the fault). */
    .globl probe_outsb, probe_outsb_insn, probe_outsb_recover
probe_outsb:
    movq    %rdi, %rdx
probe_outsb_insn:
    outsb
probe_outsb_recover:
    movq    %rsi, %rax
    ret

/* uint64_t probe_rep_insb(uint64_t port, uint64_t dst, uint64_t count): REP INSB of
 * count bytes from port to dst; returns RCX after it (from the recovery label: at the
 * fault). RDI is the caller's to lose. */
    .globl probe_rep_insb, probe_rep_insb_insn, probe_rep_insb_recover
probe_rep_insb:
    movq    %rdx, %rcx
    movq    %rdi, %rdx
    movq    %rsi, %rdi
probe_rep_insb_insn:
    rep insb
probe_rep_insb_recover:
    movq    %rcx, %rax
    ret

/* CPL 3 for user_hypercall (hypapp_tests.c). enter_user(rip, rsp, arg): IRETQ to rip
 * at CPL 3 (selector 0x2b, stack selector 0x23, IF clear) with RDI = arg; it never
 * returns here (the case longjmps back from its INT 0x81 or exception hook).
 * user_vmcall runs at CPL 3: RAX..RDX from the struct hc_regs at RDI, VMCALL, RAX..RDX
 * back into it, then INT 0x81 back to CPL 0. */
    .globl enter_user, user_vmcall, user_vmcall_insn
enter_user:
    pushq   $0x23
    pushq   %rsi
    pushq   $0x2
    pushq   $0x2b
    pushq   %rdi
    movq    %rdx, %rdi
    iretq
user_vmcall:
    movq    0(%rdi), %rax
    movq    8(%rdi), %rbx
    movq    16(%rdi), %rcx
    movq    24(%rdi), %rdx
user_vmcall_insn:
    vmcall
    movq    %rax, 0(%rdi)
    movq    %rbx, 8(%rdi)
    movq    %rcx, 16(%rdi)
    movq    %rdx, 24(%rdi)
    int     $0x81
    ud2

/* At CPL 3 with IOPL 0 and no I/O bitmap in the TSS: IN from port 0xe0e0 (iomon's
 * device when iomon is built in) must be #GP(0) before any intercept. */
    .globl user_inb, user_inb_insn
user_inb:
    movw    $0xe0e0, %dx
user_inb_insn:
    inb     %dx, %al
    int     $0x81
    ud2

/* uint64_t probe_rdmsr(uint32_t msr) -- RDMSR; returns 0 when it faulted */
    .globl probe_rdmsr, probe_rdmsr_recover
probe_rdmsr:
    movl    %edi, %ecx
    xorl    %eax, %eax
    xorl    %edx, %edx
    rdmsr
probe_rdmsr_recover:
    shlq    $32, %rdx
    orq     %rdx, %rax
    ret

/* void probe_wrmsr(uint32_t msr, uint64_t val) */
    .globl probe_wrmsr, probe_wrmsr_recover
probe_wrmsr:
    movl    %edi, %ecx
    movl    %esi, %eax
    movq    %rsi, %rdx
    shrq    $32, %rdx
    wrmsr
probe_wrmsr_recover:
    ret

/* void probe_write_cr0(uint64_t val) */
    .globl probe_write_cr0, probe_write_cr0_recover
probe_write_cr0:
    movq    %rdi, %cr0
probe_write_cr0_recover:
    ret

/* void probe_write_cr4(uint64_t val) */
    .globl probe_write_cr4, probe_write_cr4_recover
probe_write_cr4:
    movq    %rdi, %cr4
probe_write_cr4_recover:
    ret

/* Instructions of the virtualisation extensions and SMX, each alone:
 * void probe_vmxoff(void), probe_stgi(void), probe_getsec(void) */
    .globl probe_vmxoff, probe_stgi, probe_getsec, probe_virt_recover
probe_vmxoff:
    vmxoff
    ret
probe_stgi:
    stgi
    ret
probe_getsec:
    xorl    %eax, %eax              /* CAPABILITIES */
    getsec
probe_virt_recover:
    ret

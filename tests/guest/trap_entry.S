/* Entry stubs for all 256 vectors (exceptions and interrupts), the common save/restore path, and a small
 * setjmp/longjmp used by the test runner to abort a case after an unexpected fault.
 *
 * Each stub leaves the same frame (struct trap_frame in guest.h): the CPU's
 * SS, RSP, RFLAGS, CS, RIP; then the error code (a 0 pushed by the stub for vectors
 * without one); the vector; then the 15 general-purpose registers, RAX pushed first.
 */
    .text
    .code64

/* Vectors whose exceptions push an error code (SDM Vol. 3A, 6.13 "Error Code"):
 * 8 #DF, 10 #TS, 11 #NP, 12 #SS, 13 #GP, 14 #PF, 17 #AC, 21 #CP, 29 #VC, 30 #SX. */
.macro trap_stub vec
    .balign 16
trap_stub_\vec:
    .if (\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
    .else
    pushq   $0
    .endif
    pushq   $\vec
    jmp     trap_common
.endm

    .altmacro
.macro trap_stubs from, to
    trap_stub \from
    .if \to - \from
    trap_stubs %(\from + 1), \to
    .endif
.endm
    trap_stubs 0, 63
    trap_stubs 64, 127
    trap_stubs 128, 191
    trap_stubs 192, 255

trap_common:
    pushq   %rax
    pushq   %rbx
    pushq   %rcx
    pushq   %rdx
    pushq   %rsi
    pushq   %rdi
    pushq   %rbp
    pushq   %r8
    pushq   %r9
    pushq   %r10
    pushq   %r11
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    cld
    movq    %rsp, %rdi              /* struct trap_frame * */
    movq    %rsp, %rbx              /* callee-saved: the frame, to come back to */
    andq    $-16, %rsp              /* ABI alignment for the C handler */
    call    trap_dispatch
    movq    %rbx, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %r11
    popq    %r10
    popq    %r9
    popq    %r8
    popq    %rbp
    popq    %rdi
    popq    %rsi
    popq    %rdx
    popq    %rcx
    popq    %rbx
    popq    %rax
    addq    $16, %rsp               /* vector, error code */
    iretq

/* Stub addresses, for trap_init(). */
    .section .rodata
    .balign 8
    .globl trap_stub_table
.macro stub_addr vec
    .quad   trap_stub_\vec
.endm
.macro stub_addrs from, to
    stub_addr \from
    .if \to - \from
    stub_addrs %(\from + 1), \to
    .endif
.endm
trap_stub_table:
    stub_addrs 0, 63
    stub_addrs 64, 127
    stub_addrs 128, 191
    stub_addrs 192, 255
    .noaltmacro

/* int guest_setjmp(struct jump_buf *jb) -- returns 0 now, and val when longjmp'ed to. */
    .text
    .globl guest_setjmp
guest_setjmp:
    movq    %rbx, 0(%rdi)
    movq    %rbp, 8(%rdi)
    movq    %r12, 16(%rdi)
    movq    %r13, 24(%rdi)
    movq    %r14, 32(%rdi)
    movq    %r15, 40(%rdi)
    leaq    8(%rsp), %rdx           /* RSP after our return */
    movq    %rdx, 48(%rdi)
    movq    (%rsp), %rdx            /* return address */
    movq    %rdx, 56(%rdi)
    xorl    %eax, %eax
    ret

/* void guest_longjmp(struct jump_buf *jb, int val) -- val 0 becomes 1. */
    .globl guest_longjmp
guest_longjmp:
    movq    0(%rdi), %rbx
    movq    8(%rdi), %rbp
    movq    16(%rdi), %r12
    movq    24(%rdi), %r13
    movq    32(%rdi), %r14
    movq    40(%rdi), %r15
    movq    48(%rdi), %rsp
    movl    %esi, %eax
    testl   %eax, %eax
    jnz     1f
    incl    %eax
1:  jmp     *56(%rdi)

/* Runtime entry points: the BSP entry from init, the AP trampoline
 * (copied below 1 MiB, real mode to long mode: SDM Vol. 3A 10.8.5 "Initializing IA-32e
 * Mode"), and the host exception stubs. */

    .text
    .code64
    .globl _start64
_start64:                               /* RDI = boot parameters (physical = identity) */
    lea boot_stack_top(%rip), %rsp
    xor %ebp, %ebp
    lea gs_null(%rip), %rax             /* %gs:0 reads NULL until per-CPU state exists */
    mov %rax, %rdx
    shr $32, %rdx
    mov $0xc0000101, %ecx
    wrmsr
    call runtime_main
1:  cli
    hlt
    jmp 1b

/* void call_on_stack(uint64_t top, void (*fn)(void *), void *arg): never returns. A
 * guest CPU that is sent INIT leaves whatever it was doing in the hypervisor and starts
 * over from the top of its stack, so repeated INITs cannot pile up frames. */
    .globl call_on_stack
call_on_stack:
    mov %rdi, %rsp
    mov %rdx, %rdi
    xor %ebp, %ebp
    call *%rsi
2:  cli
    hlt
    jmp 2b

/* ---- AP trampoline: position-independent, run from any page below 1 MiB that a
 * STARTUP names (0x1000 at boot; apic=zeroexit's restart page, restart-x86vmx.c). The
 * page's base is CS << 4; the three absolute addresses (GDT base, two far-jump targets)
 * are written into the page by the code itself before they are used. ---- */
#define O(x) ((x) - ap_tramp_start)
    .globl ap_tramp_start, ap_tramp_end, ap_tramp_data
    .code16
ap_tramp_start:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    xor %ebx, %ebx
    mov %ax, %bx
    shl $4, %ebx                        /* EBX = the page's linear (= physical) base */
    leal O(tramp_gdt)(%ebx), %eax
    movl %eax, O(tramp_gdt_desc) + 2
    leal O(tramp_pm)(%ebx), %eax
    movl %eax, O(tramp_pm_ptr)
    leal O(tramp_lm)(%ebx), %eax
    movl %eax, O(tramp_lm_ptr)
    lgdtl O(tramp_gdt_desc)
    mov %cr0, %eax
    and $0x9fffffff, %eax               /* CD, NW: INIT left the caches off (CR0 60000010h) */
    or $1, %eax
    mov %eax, %cr0
    ljmpl *O(tramp_pm_ptr)
    .code32
tramp_pm:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $0x20, %eax                      /* PAE */
    mov %eax, %cr4
    mov O(tramp_cr3)(%ebx), %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax                     /* EFER.LME */
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0
    ljmp *O(tramp_lm_ptr)(%ebx)
    .code64
tramp_lm:
    mov O(tramp_stack)(%rbx), %rsp
    mov O(tramp_pcpu)(%rbx), %rdi
    mov O(tramp_entry)(%rbx), %rax
    xor %ebp, %ebp
    jmp *%rax
    .balign 8
tramp_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff            /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff            /* 0x10: data */
    .quad 0x00af9a000000ffff            /* 0x18: 64-bit code */
tramp_gdt_desc:
    .word tramp_gdt_desc - tramp_gdt - 1
    .long 0
tramp_pm_ptr:
    .long 0
    .word 0x08
tramp_lm_ptr:
    .long 0
    .word 0x18
    .balign 8
ap_tramp_data:                          /* struct tramp_data in smp.c */
tramp_cr3:   .quad 0
tramp_stack: .quad 0
tramp_pcpu:  .quad 0
tramp_entry: .quad 0
ap_tramp_end:

/* ---- exception stubs: push a dummy error code where the CPU does not ---- */
    .macro EXC vec
    .balign 16
    .if (\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
    .else
    push $0
    .endif
    push $\vec
    jmp exc_common
    .endm

    .balign 16
    .globl exc_stubs
exc_stubs:
    .set v, 0
    .rept 256
    EXC v
    .set v, v + 1
    .endr

exc_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    mov %rsp, %rbx
    and $-16, %rsp                      /* the frame may be misaligned by an error code */
    call exception_dispatch
    mov %rbx, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq

    .bss
    .balign 16
gs_null:
    .quad 0
    .balign 16
    .space 16384
boot_stack_top:

/* The 32-bit protected-mode part of the test guest: hardware task switches (SDM Vol. 3A
 * chapter 8). pm32_run() leaves long mode on the calling CPU (interrupts off), loads the
 * GDT, IDT and TSSs task_tests.c built (pm32_gdt, pm32_idt, the pm32_tss array), runs
 * the sequence below in the main task (TSS selector 0x20) and comes back to long mode
 * with the guest's own GDT, IDT and GS base. Every step appends words to pm32_log;
 * task_tests.c compares them with what the SDM says, the same natively and under the
 * hypervisor. In between it runs with 32-bit paging (PSE, task_tests.c's pm32_pd), EFER.LME
 * clear; every TSS holds that CR3. */
#define SEL_C32  0x08
#define SEL_CODE64 0x18
#define SEL_D    0x10
#define TSS_MAIN 0x20
#define TSS_A    0x28
#define TSS_B    0x30
#define TSS_DF   0x38
#define TSS_NMI  0x40
#define TSS_BAD  0x48
#define TSS_TSH  0x50
#define TSS_NP   0x58
#define GATE_B   0x60
#define TSS_SIZE 0x68
#define T_EIP    0x20
#define NT       0x4000
#define PM32_LOG_MAX 64

/* LOG value: one word to pm32_log (clobbers %edi). */
.macro LOG val
    movl    pm32_n, %edi
    cmpl    $PM32_LOG_MAX, %edi
    jae     99f
    movl    \val, pm32_log(,%edi,4)
    incl    pm32_n
99:
.endm

    .text
    .code64
    .globl pm32_run
pm32_run:
    pushq   %rbx
    pushq   %rbp
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    pushfq
    cli
    movl    $0xc0000101, %ecx       /* GS base: a 32-bit GS load clears it */
    rdmsr
    movl    %eax, saved_gs
    movl    %edx, saved_gs + 4
    sgdt    saved_gdt
    sidt    saved_idt
    movq    %cr3, %rax
    movq    %rax, saved_cr3
    movq    %cr4, %rax
    movq    %rax, saved_cr4
    movq    %rsp, saved_rsp
    pushq   $SEL_C32                /* to the guest's 32-bit code segment */
    leaq    1f(%rip), %rax
    pushq   %rax
    lretq
    .code32
1:  movl    $SEL_D, %eax
    movl    %eax, %ds
    movl    %eax, %es
    movl    %eax, %ss
    movl    %cr0, %eax              /* paging off: out of IA-32e mode */
    andl    $0x7fffffff, %eax
    movl    %eax, %cr0
    lgdtl   pm32_gdtr
    ljmpl   $SEL_C32, $2f
2:  movl    $SEL_D, %eax
    movl    %eax, %ds
    movl    %eax, %es
    movl    %eax, %ss
    movl    %eax, %fs
    movl    %eax, %gs
    lidtl   pm32_idtr
    movl    $TSS_MAIN, %eax
    ltr     %ax
    /* 32-bit paging: EFER.LME off first (with it, PG would mean IA-32e mode again), PAE
     * off, PSE on, CR3 = pm32_pd. */
    movl    $0xc0000080, %ecx
    rdmsr
    andl    $~0x100, %eax
    wrmsr
    movl    saved_cr4, %eax
    andl    $~0x20, %eax
    orl     $0x10, %eax
    movl    %eax, %cr4
    movl    $pm32_pd, %eax
    movl    %eax, %cr3
    movl    %cr0, %eax
    orl     $0x80000000, %eax
    movl    %eax, %cr0
    call    pm32_tests
    /* Paging off, the long-mode CR4, CR3 and EFER.LME back. */
    movl    %cr0, %eax
    andl    $0x7fffffff, %eax
    movl    %eax, %cr0
    movl    saved_cr4, %eax
    movl    %eax, %cr4
    movl    saved_cr3, %eax
    movl    %eax, %cr3
    movl    $0xc0000080, %ecx
    rdmsr
    orl     $0x100, %eax
    wrmsr
    /* Back: the guest's GDT, paging on (IA-32e mode again), its 64-bit code segment. */
    lgdtl   saved_gdt
    ljmpl   $SEL_C32, $3f
3:  movl    $SEL_D, %eax
    movl    %eax, %ds
    movl    %eax, %es
    movl    %eax, %ss
    movl    %cr0, %eax
    orl     $0x80000000, %eax
    movl    %eax, %cr0
    ljmpl   $SEL_CODE64, $4f
    .code64
4:  movl    $SEL_D, %eax
    movl    %eax, %ds
    movl    %eax, %es
    movl    %eax, %ss
    xorl    %eax, %eax
    movl    %eax, %fs
    movl    %eax, %gs
    lidtq   saved_idt
    movl    $0xc0000101, %ecx
    movl    saved_gs, %eax
    movl    saved_gs + 4, %edx
    wrmsr
    movq    saved_rsp, %rsp
    popfq
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbp
    popq    %rbx
    ret

    .code32
/* The sequence, in the main task. EBX carries a pattern the main task's TSS must keep
 * across every switch. */
pm32_tests:
    pushl   %ebx
    pushl   %esi
    pushl   %edi
    pushl   %ebp
    movl    %esp, saved_esp
    movl    $0x5a5aa5a5, %ebx

    /* 1. JMP to a TSS: task A runs (NT clear, no link), JMPs back. The A/D flags of
     * the TSS page's and the GDT page's PTEs are cleared first and logged after. */
    movl    $pm32_tss_page, %eax
    shrl    $12, %eax
    andl    $~0x60, pm32_pt(,%eax,4)
    invlpg  pm32_tss_page
    movl    $pm32_gdt_page, %eax
    shrl    $12, %eax
    andl    $~0x60, pm32_pt(,%eax,4)
    invlpg  pm32_gdt_page
    ljmpl   $TSS_A, $0
    LOG     %ebx
    movl    %cr0, %eax
    andl    $8, %eax                /* CR0.TS: set by every task switch */
    LOG     %eax
    movl    $pm32_tss_page, %eax
    shrl    $12, %eax
    movl    pm32_pt(,%eax,4), %eax
    andl    $0x60, %eax
    LOG     %eax
    movl    $pm32_gdt_page, %eax
    shrl    $12, %eax
    movl    pm32_pt(,%eax,4), %eax
    andl    $0x60, %eax
    LOG     %eax
    clts
    /* 2. CALL to a TSS, 3. CALL through a task gate in the GDT, 4. INT 0x40 through a
     * task gate in the IDT: task B runs nested (NT set, link = the main task) and IRETs. */
    lcalll  $TSS_B, $0
    LOG     %ebx
    lcalll  $GATE_B, $0
    LOG     %ebx
    int     $0x40
    LOG     %ebx
    pushfl
    popl    %eax
    andl    $NT, %eax               /* the main task's NT stays clear */
    LOG     %eax
    /* 5. Faults in the old task: JMP to a not-present TSS (#NP), CALL to the busy main
     * task (#GP); each names the TSS selector. */
    movl    $5f, recovery
    ljmpl   $TSS_NP, $0
5:  movl    $6f, recovery
    lcalll  $TSS_MAIN, $0
6:  /* 6. A fault in the new task: its TSS names a data segment for CS: #TS(0x10) after
     * the switch, delivered through a task gate to the handler task, which JMPs back. */
    ljmpl   $TSS_BAD, $0
    LOG     %ebx
    /* 7. #DF through a task gate: #GP with IDT[13] not present becomes #DF, whose task
     * gets error code 0, points the main task past the fault and IRETs. */
    andb    $0x7f, pm32_idt + 13 * 8 + 5
    movl    $0xfff8, %eax
df_fault:
    movl    %eax, %ds               /* beyond the GDT: #GP(0xfff8) */
    LOG     $0xbad                  /* never: the DF task resumes the main task below */
df_resume:
    movl    $SEL_D, %eax
    movl    %eax, %ds
    orb     $0x80, pm32_idt + 13 * 8 + 5
    LOG     %ebx
    /* 8. NMI through a task gate: an NMI to this CPU by physical destination. The NMI
     * task sends a second one, which stays blocked until its IRET, then runs again. */
    call    send_nmi
    movl    $2000000, %ecx
7:  cmpl    $2, nmi_count
    je      8f
    pause
    loop    7b
8:  movl    nmi_count, %eax
    LOG     %eax
    /* The descriptors' busy flags at the end, and TR. */
    movzbl  pm32_gdt_page + TSS_MAIN + 5, %eax
    LOG     %eax
    movzbl  pm32_gdt_page + TSS_A + 5, %eax
    LOG     %eax
    movzbl  pm32_gdt_page + TSS_B + 5, %eax
    LOG     %eax
    movzbl  pm32_gdt_page + TSS_BAD + 5, %eax
    LOG     %eax
    movzbl  pm32_gdt_page + TSS_NMI + 5, %eax
    LOG     %eax
    str     %ax
    movzwl  %ax, %eax
    LOG     %eax
    clts
    popl    %ebp
    popl    %edi
    popl    %esi
    popl    %ebx
    ret

/* NMI to this CPU's own APIC ID (no shorthand: "self" is not valid for NMIs). */
send_nmi:
    movl    0xfee00020, %eax
    andl    $0xff000000, %eax
    movl    %eax, 0xfee00310
    movl    $0x400, 0xfee00300
    ret

/* ---- the other tasks: each starts at its entry, and after its IRET/JMP the next
 * switch to it resumes just after that instruction, so each is a loop. */
    .globl pm32_task_a, pm32_task_b, pm32_task_df, pm32_task_nmi, pm32_task_tsh
/* A task's first words: its tag, TR, and its NT flag. */
.macro TASK_HEAD tag
    LOG     \tag
    str     %ax
    movzwl  %ax, %eax
    LOG     %eax
    pushfl
    popl    %eax
    andl    $NT, %eax
    LOG     %eax
.endm

pm32_task_a:
    TASK_HEAD $0xa0
    movzwl  pm32_tss_page + 1 * TSS_SIZE, %eax   /* link field: a JMP leaves it */
    LOG     %eax
    ljmpl   $TSS_MAIN, $0
    jmp     pm32_task_a

pm32_task_b:
    TASK_HEAD $0xb0
    movzwl  pm32_tss_page + 2 * TSS_SIZE, %eax
    LOG     %eax
    movzbl  pm32_gdt_page + TSS_MAIN + 5, %eax   /* the caller stays busy */
    LOG     %eax
    iretl
    jmp     pm32_task_b

pm32_task_df:
    popl    %eax                    /* #DF's error code, pushed by the switch */
    LOG     $0xdf
    LOG     %eax
    pushfl
    popl    %eax
    andl    $NT, %eax
    LOG     %eax
    movzwl  pm32_tss_page + 3 * TSS_SIZE, %eax
    LOG     %eax
    movl    pm32_tss_page + T_EIP, %eax  /* where the main task stopped: the faulting MOV */
    subl    $df_fault, %eax
    LOG     %eax
    movl    $df_resume, pm32_tss_page + T_EIP
    iretl
    jmp     pm32_task_df

pm32_task_nmi:
    incl    nmi_count
    LOG     $0x2a0
    pushfl
    popl    %eax
    andl    $NT, %eax
    LOG     %eax
    cmpl    $1, nmi_count
    jne     2f
    call    send_nmi                /* blocked until this task's IRET */
    movl    $20000, %ecx
1:  pause
    loop    1b
    movl    nmi_count, %eax
    LOG     %eax
2:  iretl
    jmp     pm32_task_nmi

pm32_task_tsh:
    popl    %eax                    /* #TS's error code */
    LOG     $0x7a
    LOG     %eax
    str     %ax
    movzwl  %ax, %eax
    LOG     %eax
    movzwl  pm32_tss_page + 6 * TSS_SIZE, %eax   /* link: the task that faulted */
    LOG     %eax
    ljmpl   $TSS_MAIN, $0
    jmp     pm32_task_tsh

/* #NP and #GP in the main task: vector and error code, then the recovery address. */
    .globl pm32_np_stub, pm32_gp_stub
pm32_np_stub:
    popl    %eax
    LOG     $11
    LOG     %eax
    movl    saved_esp, %esp
    jmp     *recovery
pm32_gp_stub:
    popl    %eax
    LOG     $13
    LOG     %eax
    movl    saved_esp, %esp
    jmp     *recovery

    .data
    .balign 8
saved_rsp:  .quad 0
saved_cr3:  .quad 0
saved_cr4:  .quad 0
saved_gs:   .quad 0
saved_gdt:  .fill 10, 1, 0
saved_idt:  .fill 10, 1, 0
saved_esp:  .long 0
recovery:   .long 0
    .globl pm32_n, pm32_log, nmi_count, pm32_gdtr, pm32_idtr
nmi_count:  .long 0
pm32_n:     .long 0
pm32_gdtr:  .word 0
            .long 0
pm32_idtr:  .word 0
            .long 0
    .bss
    .balign 4
pm32_log:   .space 4 * PM32_LOG_MAX

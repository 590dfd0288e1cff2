/* An AP's way from the STARTUP IPI to C.
 *
 * ap_tramp_start..ap_tramp_end is copied to AP_TRAMPOLINE (0x76000) by smp_init(); a
 * STARTUP IPI with vector 0x76 starts the AP there in real mode, CS:IP = 7600:0000
 * (SDM Vol. 3A, 9.4.4 "MP Initialization Example"). The copied code uses no address of
 * its own: it loads the guest's GDT (gdt_desc, below 64 KiB, reachable with DS = 0) and
 * far-jumps into the image, which then takes the same path as the BSP did in entry.S:
 * protected mode, the shared page tables, long mode. In 64-bit mode the AP reads its own
 * APIC ID (IA32_APIC_BASE + 0x20), takes the stack the starter put in
 * ap_stack_by_id[id], and calls ap_main(id) (smp.c). An AP without a stack halts.
 * On entry, still in real mode, it also writes its CS, its MSW and a count of entries
 * into three words of the copy (ap_tramp_seen_*, ap_tramp_entries; read via
 * AP_TRAMPOLINE + their offset), so that a case can see how an AP (re)started.
 */
#include "longmode.inc"
#define MSR_APIC_BASE   0x1b

    .text
    .code16
    .globl ap_tramp_start, ap_tramp_end
ap_tramp_start:
    cli
    cld
    /* What the AP started with, in the copy (DS = CS: offsets from the copy's start),
     * for the BSP to read (ap_restart): CS, the MSW (PE clear in real mode) and a count
     * of entries. */
    movw    %cs, %ax
    movw    %ax, %ds
    movw    %ax, (ap_tramp_seen_cs - ap_tramp_start)
    smsw    (ap_tramp_seen_msw - ap_tramp_start)
    incw    (ap_tramp_entries - ap_tramp_start)
    /* The state the CPU started with (SDM Vol. 3A table 9-1, after INIT): EDX, CR0,
     * IDTR, DR0, DR6, DR7 (init_state checks them). */
    movl    %edx, (ap_tramp_seen_edx - ap_tramp_start)
    movl    %cr0, %eax
    movl    %eax, (ap_tramp_seen_cr0 - ap_tramp_start)
    sidtl   (ap_tramp_seen_idtr - ap_tramp_start)
    movl    %dr0, %eax
    movl    %eax, (ap_tramp_seen_dr0 - ap_tramp_start)
    movl    %dr6, %eax
    movl    %eax, (ap_tramp_seen_dr6 - ap_tramp_start)
    movl    %dr7, %eax
    movl    %eax, (ap_tramp_seen_dr7 - ap_tramp_start)
    xorw    %ax, %ax
    movw    %ax, %ds
    lgdtl   gdt_desc                /* absolute, below 0x10000 (guest.ld checks it) */
    movl    %cr0, %eax
    orl     $CR0_PE, %eax
    movl    %eax, %cr0
    ljmpl   $SEL_CODE32, $ap_pm32
    .globl ap_tramp_seen_cs, ap_tramp_seen_msw, ap_tramp_entries
ap_tramp_seen_cs:   .word 0
ap_tramp_seen_msw:  .word 0
ap_tramp_entries:   .word 0
    .globl ap_tramp_seen_edx, ap_tramp_seen_cr0, ap_tramp_seen_idtr, ap_tramp_seen_dr0
    .globl ap_tramp_seen_dr6, ap_tramp_seen_dr7
ap_tramp_seen_edx:  .long 0
ap_tramp_seen_cr0:  .long 0
ap_tramp_seen_idtr: .word 0, 0, 0
ap_tramp_seen_dr0:  .long 0
ap_tramp_seen_dr6:  .long 0
ap_tramp_seen_dr7:  .long 0
ap_tramp_end:

    .code32
ap_pm32:
    movw    $SEL_DATA, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    movw    %ax, %fs
    movw    %ax, %gs
    ENTER_LONG_MODE ap_lm64

    .code64
ap_lm64:
    xorl    %eax, %eax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    movw    %ax, %fs
    movw    %ax, %gs
    movl    $MSR_APIC_BASE, %ecx
    rdmsr
    andl    $0xfffff000, %eax       /* the guest maps only the low 4 GiB */
    movl    0x20(%rax), %edi        /* APIC ID register: ID in bits 31:24 */
    shrl    $24, %edi
    leaq    ap_stack_by_id(%rip), %rax
    movq    (%rax,%rdi,8), %rsp
    testq   %rsp, %rsp
    jz      1f
    call    ap_main                 /* does not return */
1:  cli
    hlt
    jmp     1b

/* The test guest's first code: real mode at 0000:7c00 -> protected mode -> long mode.
 *
 * Real mode (entered like a boot sector, interrupts disabled, DL = boot drive):
 *   1. set up DS/ES/SS = 0 and a stack below 0x7c00;
 *   2. record CS, IP (found with a near call), DL and EFLAGS as they were at entry;
 *   3. enable A20 (BIOS call, then the fast-A20 port) so odd megabytes are not aliased;
 *   4. read the BIOS memory map with INT 15h/E820 into e820_map while the BIOS is usable,
 *      and the older size calls INT 15h AX=E801h and AH=88h (CF and registers kept);
 * then load the GDT and enter 32-bit protected mode, build identity page tables for
 * 0..4 GiB at GUEST_PT_BASE, enable PAE + EFER.LME + paging, and far-jump to 64-bit
 * code, which clears .bss and calls guest_main().
 *
 * Everything the real-mode part touches lies below 0x10000 (checked by guest.ld), so
 * plain 16-bit offsets with segment 0 reach it.
 */
#include "longmode.inc"

#define GUEST_STACK_TOP 0x80000
#define RM_STACK_TOP    0x7c00
#define SMAP            0x534d4150
#define E820_MAX_SEEN   64
#define E820_SLOT       24


#define PTE_P    0x001
#define PTE_RW   0x002
#define PTE_PWT  0x008
#define PTE_PCD  0x010
#define PTE_PS   0x080
/* 2 MiB pages from 0xfe000000 up (IOAPIC, LAPIC, firmware) are mapped uncached. */
#define PD_UC_FIRST (0xfe000000 >> 21)

    .section .text.entry, "ax"
    .code16
    .globl _start
_start:
    movw    %cs, %bx                /* CS at entry */
    xorw    %ax, %ax
    movw    %ax, %ss                /* a known stack first: the entry SS:SP may point */
    movw    $RM_STACK_TOP, %sp      /* anywhere, even into this image */
    pushfl                          /* EFLAGS at entry (IF is 0 per the contract) */
    cli
    popl    %ebp
    call    1f                      /* pushes the run-time IP of 1: */
1:  popw    %si
    subw    $(1b - _start), %si     /* run-time IP of _start */
    movw    %ax, %ds
    movw    %ax, %es
    ljmp    $0, $2f                 /* from here on CS = 0, whatever it was */
2:
    movw    %bx, boot_entry_cs
    movw    %si, boot_entry_ip
    movb    %dl, boot_entry_dl
    movl    %ebp, boot_entry_eflags
    cld

    call    enable_a20
    call    read_e820
    call    read_memsize
    call    read_e820_odd
    cli                             /* the BIOS may have enabled interrupts */

    /* ---- to protected mode ---- */
    lgdtl   gdt_desc
    movl    %cr0, %eax
    orl     $CR0_PE, %eax
    movl    %eax, %cr0
    ljmpl   $SEL_CODE32, $pm32

/* A20: ask the BIOS (INT 15h AX=2401h), then try port 0x92; record the result. */
enable_a20:
    call    a20_test
    jz      .La20_done
    movw    $0x2401, %ax
    int     $0x15
    cli
    call    a20_test
    jz      .La20_done
    inb     $0x92, %al
    andb    $0xfe, %al              /* never set bit 0: it resets the machine */
    orb     $0x02, %al
    outb    %al, $0x92
    call    a20_test
.La20_done:
    setz    boot_a20_ok
    ret

/* ZF set when A20 is on: compares 0000:0500 with its 1 MiB alias FFFF:0510. */
a20_test:
    pushw   %ds
    pushw   %es
    xorw    %ax, %ax
    movw    %ax, %ds
    notw    %ax
    movw    %ax, %es
    movw    0x0500, %cx             /* save both words */
    movw    %es:0x0510, %dx
    movw    $0x1234, 0x0500
    movw    $0xedcb, %es:0x0510
    cmpw    $0x1234, 0x0500         /* unchanged -> not aliased -> A20 on */
    movw    %dx, %es:0x0510         /* restore (mov does not touch flags) */
    movw    %cx, 0x0500
    popw    %es
    popw    %ds
    ret

/* INT 15h E820h asked in two odd ways (e820_hook_odd): with ES:DI on VGA memory
 * (A000:0000, a device, not RAM: the word there is saved and put back), and through an
 * alias of the IVT's CS:IP (segment - 1, offset + 10h: the same linear address) with a
 * far call and the FLAGS pushed, as an INT would. CF and EAX of each are kept. */
read_e820_odd:
    pushw   %es
    movw    $0xa000, %ax
    movw    %ax, %es
    movl    %es:0, %eax
    movl    %eax, e820_vga_word
    movl    $0xe820, %eax
    xorl    %ebx, %ebx
    movl    $SMAP, %edx
    movl    $E820_SLOT, %ecx
    xorw    %di, %di
    int     $0x15
    cli
    pushfw
    popw    e820_vga_flags
    movl    e820_vga_word, %eax
    movl    %eax, %es:0
    popw    %es
    /* The alias only where the vector holds a hypercall stub (0F 01 C1 / 0F 01 D9): a
     * BIOS's own handler may address its data through CS and break under an alias. */
    movw    $2, e820_alias_done
    pushw   %es
    lesw    0x15 * 4, %bx
    cmpw    $0x010f, %es:(%bx)
    jne     1f
    movb    %es:2(%bx), %al
    cmpb    $0xc1, %al
    je      2f
    cmpb    $0xd9, %al
    je      2f
1:  popw    %es
    ret
2:  popw    %es
    movw    0x15 * 4, %ax
    addw    $0x10, %ax
    movw    %ax, e820_alias_ptr
    movw    0x15 * 4 + 2, %ax
    decw    %ax
    movw    %ax, e820_alias_ptr + 2
    movw    $e820_alias_rec, %di
    movl    $0xe820, %eax
    xorl    %ebx, %ebx
    movl    $SMAP, %edx
    movl    $E820_SLOT, %ecx
    pushfw
    lcallw  *e820_alias_ptr
    cli
    pushfw
    popw    e820_alias_flags
    movl    %eax, e820_alias_eax
    movw    $1, e820_alias_done
    ret

/* INT 15h, EAX=E820h: stores up to E820_MAX_SEEN entries at e820_map. */
read_e820:
    movl    $0, e820_count
    movl    $0, e820_flags
    movl    $0, e820_first_eax
    xorl    %ebx, %ebx              /* continuation: 0 = start */
.Le820_next:
    movl    e820_count, %eax
    cmpl    $E820_MAX_SEEN, %eax
    jae     .Le820_full
    imulw   $E820_SLOT, %ax, %di
    addw    $e820_map, %di
    xorw    %ax, %ax
    movw    %ax, %es                /* ES:DI = the slot */
    movl    $1, %es:20(%di)         /* ACPI 3.0: extended attributes default "valid" */
    movl    $0xe820, %eax
    movl    $SMAP, %edx
    movl    $E820_SLOT, %ecx
    int     $0x15
    cli
    jc      .Le820_cf
    cmpl    $0, e820_count
    jne     1f
    movl    %eax, e820_first_eax
1:  cmpl    $SMAP, %eax
    je      2f
    orl     $0x2, e820_flags        /* E820F_BAD_SIG */
    jmp     .Le820_done
2:  movl    e820_count, %eax
    movw    %ax, %di
    movb    %cl, e820_len(%di)      /* bytes the call wrote */
    incl    %eax
    movl    %eax, e820_count
    testl   %ebx, %ebx
    jnz     .Le820_next
    jmp     .Le820_done
.Le820_cf:                          /* CF: error, or (after entries) end of the list */
    cmpl    $0, e820_count
    jne     .Le820_done
    orl     $0x1, e820_flags        /* E820F_CF_FIRST */
    movl    %eax, e820_first_eax
    jmp     .Le820_done
.Le820_full:
    orl     $0x4, e820_flags        /* E820F_TRUNCATED */
.Le820_done:
    xorw    %ax, %ax
    movw    %ax, %es
    ret

/* INT 15h AX=E801h and AH=88h: for each, the FLAGS after the call (CF in bit 0) and
 * the registers it answers in (E801: AX, BX, CX, DX; 88h: AX). Inputs not used by a
 * call are zeroed first so that an untouched register reads 0. */
read_memsize:
    movw    $0xe801, %ax
    xorw    %bx, %bx
    xorw    %cx, %cx
    xorw    %dx, %dx
    stc                             /* a BIOS without the call may return without CF */
    int     $0x15
    cli
    pushfw
    popw    memsize_e801_flags
    movw    %ax, memsize_e801 + 0
    movw    %bx, memsize_e801 + 2
    movw    %cx, memsize_e801 + 4
    movw    %dx, memsize_e801 + 6
    movw    $0x8800, %ax
    stc
    int     $0x15
    cli
    pushfw
    popw    memsize_88_flags
    movw    %ax, memsize_88_ax
    ret

/* ---- 32-bit protected mode: page tables, then long mode ---- */
    .code32
pm32:
    movw    $SEL_DATA, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    movw    %ax, %fs
    movw    %ax, %gs
    movl    $GUEST_STACK_TOP, %esp

    /* clear PML4, PDPT and the four PDs */
    movl    $GUEST_PT_BASE, %edi
    xorl    %eax, %eax
    movl    $(6 * 4096 / 4), %ecx
    rep stosl
    movl    $(GUEST_PT_BASE + 0x1000 + PTE_P + PTE_RW), GUEST_PT_BASE
    movl    $(GUEST_PT_BASE + 0x2000 + PTE_P + PTE_RW), GUEST_PT_BASE + 0x1000
    movl    $(GUEST_PT_BASE + 0x3000 + PTE_P + PTE_RW), GUEST_PT_BASE + 0x1008
    movl    $(GUEST_PT_BASE + 0x4000 + PTE_P + PTE_RW), GUEST_PT_BASE + 0x1010
    movl    $(GUEST_PT_BASE + 0x5000 + PTE_P + PTE_RW), GUEST_PT_BASE + 0x1018
    /* 2048 consecutive PD entries: entry i maps 2 MiB page i (upper halves stay 0) */
    movl    $(GUEST_PT_BASE + 0x2000), %edi
    xorl    %ecx, %ecx
1:  movl    %ecx, %eax
    shll    $21, %eax
    orl     $(PTE_P + PTE_RW + PTE_PS), %eax
    cmpl    $PD_UC_FIRST, %ecx
    jb      2f
    orl     $(PTE_PCD + PTE_PWT), %eax
2:  movl    %eax, (%edi,%ecx,8)
    incl    %ecx
    cmpl    $2048, %ecx
    jb      1b

    ENTER_LONG_MODE lm64

/* ---- 64-bit long mode ---- */
    .code64
lm64:
    xorl    %eax, %eax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    movw    %ax, %fs
    movw    %ax, %gs
    movq    $GUEST_STACK_TOP, %rsp
    movq    $__bss_start, %rdi
    movq    $__bss_end, %rcx
    subq    %rdi, %rcx
    rep stosb                       /* eax = 0 */
    call    guest_main
3:  cli
    hlt
    jmp     3b

/* ---- GDT (also usable later by APs: flat 32-bit code/data and 64-bit code) ---- */
    .balign 8
gdt:
    .quad   0                       /* null */
    .quad   0x00cf9a000000ffff      /* 0x08: code, 32-bit, base 0, limit 4 GiB */
    .quad   0x00cf92000000ffff      /* 0x10: data, base 0, limit 4 GiB */
    .quad   0x00af9a000000ffff      /* 0x18: code, 64-bit */
gdt_end:
    .globl gdt_desc
gdt_desc:
    .word   gdt_end - gdt - 1
    .long   gdt

/* ---- data written by the real-mode code (below 0x10000: see guest.ld) ---- */
    .section .realdata, "aw"
    .balign 8
    .globl boot_entry_eflags, boot_entry_cs, boot_entry_ip, boot_entry_dl, boot_a20_ok
    .globl e820_count, e820_flags, e820_first_eax, e820_len, e820_map
    .globl memsize_e801, memsize_e801_flags, memsize_88_ax, memsize_88_flags
    .globl e820_vga_flags, e820_alias_flags, e820_alias_eax, e820_alias_done, e820_alias_rec
boot_entry_eflags:  .long 0
boot_entry_cs:      .word 0
boot_entry_ip:      .word 0
boot_entry_dl:      .byte 0
boot_a20_ok:        .byte 0
    .balign 4
e820_count:         .long 0
e820_flags:         .long 0
e820_first_eax:     .long 0
e820_len:           .fill E820_MAX_SEEN, 1, 0
memsize_e801:       .fill 4, 2, 0       /* AX, BX, CX, DX after INT 15h AX=E801h */
e820_vga_word:      .long 0
e820_vga_flags:     .word 0             /* FLAGS after E820h with ES:DI = A000:0000 */
e820_alias_ptr:     .word 0, 0          /* the IVT's INT 15h vector, aliased */
e820_alias_flags:   .word 0             /* FLAGS after E820h through the alias */
e820_alias_done:    .word 0             /* 1: the far call came back; 2: no stub to alias */
e820_alias_eax:     .long 0
e820_alias_rec:     .fill 24, 1, 0
memsize_e801_flags: .word 0
memsize_88_ax:      .word 0
memsize_88_flags:   .word 0
    .balign 8
e820_map:           .fill E820_MAX_SEEN * E820_SLOT, 1, 0

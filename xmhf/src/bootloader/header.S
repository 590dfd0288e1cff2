/* init-x86-amd64.bin entry: the multiboot v1 header (Multiboot 0.6.96, 3.1.1) and the
 * 32-bit to 64-bit switch that hands over to the runtime (SDM Vol. 3A, 10.8.5
 * "Initializing IA-32e Mode"). */
#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0x00000003  /* page-aligned modules, memory map */

    .section .multiboot, "a"
    .balign 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .text
    .code32
    .globl _start
_start:
    cli
    cld
    mov $init_stack_top, %esp
    push $0
    popf
    push %ebx                       /* multiboot information */
    push %eax                       /* loader magic */
    call init_main
1:  cli
    hlt
    jmp 1b

/* void enter_runtime(uint32_t pml4, uint32_t bootparams, uint32_t entry_lo, uint32_t entry_hi)
 * Paging is off on entry (multiboot state); the tables map the runtime's link address. */
    .globl enter_runtime
enter_runtime:
    mov 4(%esp), %eax
    mov 8(%esp), %esi               /* boot parameters, stays in RSI/RDI */
    mov 12(%esp), %ebx
    mov 16(%esp), %ecx
    mov %ebx, entry_target
    mov %ecx, entry_target + 4
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax                  /* CR4.PAE */
    mov %eax, %cr4
    mov $0xc0000080, %ecx           /* IA32_EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    lgdt gdt_desc
    mov %cr0, %eax
    or $0x80000001, %eax            /* PG | PE: activates IA-32e mode */
    mov %eax, %cr0
    ljmp $0x08, $long_mode

    .code64
long_mode:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %esi, %edi
    mov $entry_target, %eax
    jmp *(%rax)

    .data
    .balign 8
entry_target:
    .quad 0
gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: data */
gdt_desc:
    .word gdt_desc - gdt - 1
    .long gdt

    .bss
    .balign 16
    .space 16384
init_stack_top:

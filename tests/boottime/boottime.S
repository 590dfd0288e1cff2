/* A one-purpose guest for `make bench`: its first instruction reads the TSC, which in
 * Bochs with `clock: sync=none` counts instructions since reset, so the figure is the
 * cost of BIOS + GRUB + init + runtime up to the guest's first instruction. Prints
 * "boottime: tsc=0x<hex>" on COM1 and shuts the emulator down. */
    .code16
    .text
    .globl _start
_start:
    rdtsc
    mov %edx, %esi
    mov %eax, %edi
    xor %ax, %ax
    mov %ax, %ds
    mov $msg, %bx
    call puts
    mov %esi, %eax
    call puthex32
    mov %edi, %eax
    call puthex32
    mov $nl, %bx
    call puts
    mov $0x8900, %dx            /* Bochs shutdown port */
    mov $shutdown, %bx
1:  mov (%bx), %al
    test %al, %al
    jz 2f
    out %al, %dx
    inc %bx
    jmp 1b
2:  mov $0xf4, %dx              /* QEMU isa-debug-exit */
    mov $0x31, %al
    out %al, %dx
3:  cli
    hlt
    jmp 3b

putc:                           /* AL; COM1 was set up by the hypervisor */
    push %dx
    push %ax
    mov $0x3fd, %dx
4:  in %dx, %al
    test $0x20, %al
    jz 4b
    pop %ax
    mov $0x3f8, %dx
    out %al, %dx
    pop %dx
    ret

puts:                           /* DS:BX, NUL-terminated */
    mov (%bx), %al
    test %al, %al
    jz 5f
    call putc
    inc %bx
    jmp puts
5:  ret

puthex32:                       /* EAX */
    mov $8, %cx
6:  rol $4, %eax
    push %eax
    and $0xf, %al
    add $'0', %al
    cmp $'9', %al
    jbe 7f
    add $('a' - '9' - 1), %al
7:  call putc
    pop %eax
    loop 6b
    ret

msg:      .asciz "boottime: tsc=0x"
nl:       .asciz "\r\nboottime: done\r\n"
shutdown: .asciz "Shutdown"

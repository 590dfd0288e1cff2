/* Boot sector for the Bochs self-test only (the hypervisor does not use it): the BIOS
 * loads just 512 bytes, so this sector moves itself to 0x0600, reads the sectors after
 * it (guest.bin, GUEST_SECTORS of them) to 0x7c00 with the INT 13h extended read, and
 * jumps to 0000:7c00 with DL = the boot drive and interrupts disabled, as the hypervisor
 * would start the guest. Linked at 0x600; the code before the far jump uses no absolute
 * addresses. */
#define GUEST_SECTORS 192           /* 96 KiB: the most guest.bin may hold */

    .code16
    .text
    .globl _start
_start:
    cli
    xorw    %ax, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    movw    $0x7c00, %sp
    cld
    movw    $0x7c00, %si
    movw    $0x0600, %di
    movw    $256, %cx
    rep movsw
    ljmp    $0, $relocated
relocated:
    sti                             /* the BIOS disk code may need interrupts */
    movb    %dl, drive
    movw    $GUEST_SECTORS, %bp
1:  movw    $dap, %si
    movb    drive, %dl
    movb    $0x42, %ah
    int     $0x13
    jc      fail
    addw    $0x20, dap_seg          /* next 512 bytes */
    incl    dap_lba
    decw    %bp
    jnz     1b
    cli
    movb    drive, %dl
    ljmp    $0, $0x7c00

fail:
    movw    $msg, %si
2:  lodsb
    testb   %al, %al
    jz      3f
    movb    $0x0e, %ah
    xorw    %bx, %bx
    int     $0x10
    jmp     2b
3:  cli
    hlt
    jmp     3b

msg:    .asciz "loader: disk read failed"
drive:  .byte 0
    .balign 4
dap:    .byte 16, 0                 /* size, reserved */
        .word 1                     /* sectors per call */
        .word 0                     /* buffer offset */
dap_seg: .word 0x07c0               /* buffer segment */
dap_lba: .quad 1                    /* guest.bin starts at the second sector */

    .org 510
    .byte 0x55, 0xaa

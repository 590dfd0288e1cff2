/* Control registers, flags and descriptor formats: Intel SDM Vol. 3A, 2.5 "Control
 * Registers", 2.3 "System Flags in the EFLAGS Register", 3.4.5 "Segment Descriptors",
 * 6.14 "Exception and Interrupt Handling in 64-bit Mode", 8.7 "Task Management in
 * 64-bit Mode"; and the inline instruction wrappers the hypervisor uses. */
#ifndef XMHF_X86_H
#define XMHF_X86_H
#include <stdint.h>

#define CR0_PE (1ul << 0)
#define CR0_MP (1ul << 1)
#define CR0_TS (1ul << 3)
#define CR0_ET (1ul << 4)
#define CR0_NE (1ul << 5)
#define CR0_WP (1ul << 16)
#define CR0_NW (1ul << 29)
#define CR0_CD (1ul << 30)
#define CR0_PG (1ul << 31)
#define CR4_PAE  (1ul << 5)
#define CR4_PGE  (1ul << 7)
#define CR4_OSFXSR (1ul << 9)
#define CR4_VMXE (1ul << 13)
#define CR4_SMXE (1ul << 14)
#define CR4_PCIDE (1ul << 17)
#define CR4_OSXSAVE (1ul << 18)
#define CR4_CET  (1ul << 23)
#define RFLAGS_CF (1ul << 0)
#define RFLAGS_FIXED (1ul << 1)
#define RFLAGS_TF (1ul << 8)
#define RFLAGS_IF (1ul << 9)
#define RFLAGS_RF (1ul << 16)
#define RFLAGS_VM (1ul << 17)

/* Exception vectors (SDM Vol. 3A, table 6-1). */
#define EXC_DE 0
#define EXC_DB 1
#define EXC_NMI 2
#define EXC_BP 3
#define EXC_OF 4
#define EXC_UD 6
#define EXC_DF 8
#define EXC_TS 10
#define EXC_NP 11
#define EXC_SS 12
#define EXC_GP 13
#define EXC_PF 14
#define EXC_AC 17
#define EXC_MC 18
#define EXC_SX 30   /* AMD: security exception; error code 1 = a redirected INIT (VM_CR.R_INIT) */

/* Which vectors push an error code (SDM table 6-1). */
static inline int exc_has_errcode(unsigned v)
{
    return v == EXC_DF || (v >= EXC_TS && v <= EXC_PF) || v == EXC_AC || v == 21;
}

/* 64-bit TSS (SDM 8.7, figure 8-11). */
struct __attribute__((packed)) tss64 {
    uint32_t rsvd0;
    uint64_t rsp[3];
    uint64_t rsvd1;
    uint64_t ist[7];
    uint64_t rsvd2;
    uint16_t rsvd3;
    uint16_t iomap_base;
};
_Static_assert(sizeof(struct tss64) == 104, "TSS64 layout");

/* 64-bit interrupt gate (SDM 6.14.1, figure 6-8). */
struct __attribute__((packed)) idt_gate64 {
    uint16_t off_lo, sel;
    uint8_t ist, type_attr;
    uint16_t off_mid;
    uint32_t off_hi, rsvd;
};
_Static_assert(sizeof(struct idt_gate64) == 16, "IDT gate layout");

struct __attribute__((packed)) dtr64 {
    uint16_t limit;
    uint64_t base;
};

#ifndef XMHF_HOST_TEST
static inline void outb(uint16_t p, uint8_t v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(p)); }
static inline void outw(uint16_t p, uint16_t v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(p)); }
static inline void outl(uint16_t p, uint32_t v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(p)); }
static inline uint8_t inb(uint16_t p) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline uint16_t inw(uint16_t p) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline uint32_t inl(uint16_t p) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(p)); return v; }
static inline void cpu_pause(void) { __asm__ volatile("pause" ::: "memory"); }
/* About one microsecond on PC hardware: the write to the POST port is a slow ISA cycle. */
static inline void io_delay(void) { outb(0x80, 0); }

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}
static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" :: "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}
static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}
#define DEFINE_CR(n) \
    static inline unsigned long read_cr##n(void) { unsigned long v; __asm__ volatile("mov %%cr" #n ", %0" : "=r"(v)); return v; } \
    static inline void write_cr##n(unsigned long v) { __asm__ volatile("mov %0, %%cr" #n :: "r"(v) : "memory"); }
DEFINE_CR(0)
DEFINE_CR(2)
DEFINE_CR(3)
DEFINE_CR(4)
#undef DEFINE_CR
__attribute__((noreturn)) static inline void halt_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}
#endif /* XMHF_HOST_TEST */

#endif

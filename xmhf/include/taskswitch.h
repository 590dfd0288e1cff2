/* A hardware task switch carried out on a processor's state, as the processor does it:
 * Intel SDM Vol. 3A 8.3 "Task Switching" (the steps, and table 8-1 "Exception
 * Conditions Checked During a Task Switch"), 8.2 (TSS and TSS descriptor formats, figures
 * 8-2 and 8-11), 8.4 "Task Linking" (busy flag, NT, previous-task link), 6.12.2
 * "Interrupt Tasks" (error code pushed on the new task's stack); Vol. 3C 26.4.2
 * "Treatment of Task Switches" (VMX: every task switch exits, after the checks of the
 * task gate and of the TSS descriptor's type). Both 32-bit (type 9/11) and 16-bit
 * (type 1/3) TSSs; the new task may be in virtual-8086 mode.
 *
 * Pure logic over a state image and a linear-memory callback, so the VMX half and the
 * host tests and fuzz targets run the same code. Segment state uses the VMX access-
 * rights format (SDM 24.4.1: descriptor bits 47:40 in 7:0, bits 55:52 in 15:12, bit 16
 * "unusable"). */
#ifndef XMHF_TASKSWITCH_H
#define XMHF_TASKSWITCH_H
#include <stdbool.h>
#include <stdint.h>

enum ts_seg { TS_ES, TS_CS, TS_SS, TS_DS, TS_FS, TS_GS, TS_LDTR, TS_TR, TS_NSEG };

struct ts_segment {
    uint16_t sel;
    uint64_t base;
    uint32_t limit;     /* byte granular (G already applied) */
    uint32_t ar;        /* VMX access-rights format */
};

#define TS_AR_UNUSABLE (1u << 16)

struct ts_cpu {
    struct ts_segment seg[TS_NSEG];
    uint64_t gdtr_base;
    uint32_t gdtr_limit;
    uint64_t cr0, cr3, cr4, efer, dr7, rflags, rip;
    uint64_t gpr[8];    /* RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI */
};

/* What started the switch (the VMX exit qualification's "source", table 28-2). */
enum ts_source { TS_CALL = 0, TS_IRET = 1, TS_JMP = 2, TS_GATE = 3 };

/* Linear memory of the guest with the paging state of c (its CR0/CR3/CR4/EFER), as a
 * supervisor access: 0, or a fault in *f (#PF with its error code and CR2, or #GP(0)
 * where the hypervisor refuses the memory). */
struct ts_fault;
struct ts_mem {
    int (*access)(void *ctx, const struct ts_cpu *c, uint64_t la, void *buf, unsigned n,
                  bool write, struct ts_fault *f);
    void *ctx;
};

struct ts_fault {
    int vector;         /* -1: none */
    bool has_err;
    uint32_t err;
    uint64_t cr2;       /* #PF only */
};

struct ts_request {
    uint16_t sel;           /* the new TSS's selector */
    enum ts_source source;
    uint64_t next_rip;      /* the EIP saved in the old TSS */
    bool push_err;          /* an exception's error code goes on the new task's stack */
    uint32_t err;
};

/* The outcome: TS_DONE (c is the new task's state), TS_FAULT_OLD (nothing changed in c;
 * the fault belongs to the old task), TS_FAULT_NEW (c is the new task's state as far as
 * the processor had loaded it; the fault is raised in the new task). debug_trap: the
 * new TSS's T flag asks for a #DB (DR6.BT) once the switch is done. */
enum ts_result { TS_DONE, TS_FAULT_OLD, TS_FAULT_NEW };
enum ts_result task_switch(struct ts_cpu *c, const struct ts_request *rq,
                           const struct ts_mem *m, struct ts_fault *f, bool *debug_trap);

#endif

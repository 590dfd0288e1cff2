/* The partition event handler: every #VMEXIT enters svm_exit_handler, which counts it
 * and dispatches through one table indexed by the exit code (AMD APM Vol. 2, appendix C
 * "SVM Intercept Exit Codes"). Every code has a defined outcome: a handler, the
 * exception the processor would give, or, for an intercept this hypervisor never sets
 * (and the codes no table holds), one log line and a reset of the guest. Nothing a
 * guest does stops the hypervisor. Exception intercepts have one slot per vector
 * (SVM_EXIT_EXCP(v)), so the single-step #DB of the guest-SMP stage is one more entry. */
#include "dmap.h"
#include "apic.h"
#include "msr.h"
#include "svm-x86svm.h"
#include "hypapp-dispatch.h"


typedef void (*exit_handler_t)(struct vcpu *v);

static void inject_ud(struct vcpu *v)
{
    arch_guest_inject_exception(v, EXC_UD, false, 0);
}

static void inject_gp0(struct vcpu *v)
{
    arch_guest_inject_exception(v, EXC_GP, true, 0);
}

/* CPUID is intercepted (vector 3 bit 18) so that the guest sees the processor without
 * SVM (guest_cpuid in cpuid.c). */
static void exit_cpuid(struct vcpu *v)
{
    bool skip = true;
    if (!hypapp_cpuid(v, &skip))
        guest_cpuid(v, vmcb_of(v)->save.cr4);
    if (skip)
        svm_skip_instruction(v, 2);                 /* 0f a2 */
}

/* The hypercall instruction (3 bytes: VMMCALL 0f 01 d9, or VMCALL 0f 01 c1 through
 * #UD): the INT 15h E820 stub's, else a hypercall for common code. */
static void hypercall_insn(struct vcpu *v)
{
    if (hypercall_instruction(v, !(vmcb_of(v)->save.cr0 & CR0_PE)))
        svm_skip_instruction(v, 3);
}

/* #UD (exception intercept, 15.12 "Exception Intercepts"): Intel's VMCALL is an
 * undefined opcode on AMD. Guests written for the Intel convention (and the E820 stub)
 * execute it, so it is taken as the hypercall instruction, as VMMCALL is; every other
 * #UD goes back to the guest unchanged. The bytes are fetched through the guest's page
 * tables: without decode assists the processor does not supply them. */
static void exit_excp_ud(struct vcpu *v)
{
    static const uint8_t vmcall[3] = { 0x0f, 0x01, 0xc1 };
    uint8_t b[3];
    uint64_t lin = svm_guest_cs_linear(v, vmcb_of(v)->save.rip);
    if (svm_guest_read_linear(v, lin, b, sizeof(b)) == 0 && memcmp(b, vmcall, 3) == 0)
        hypercall_insn(v);
    else
        inject_ud(v);
}

/* MSR accesses that exit: those the permission map intercepts (EFER, the APIC writes,
 * and guestmsr.c's: MTRRs, AMD memory-type MSRs, VM_CR, VM_HSAVE_PA, SVM_KEY; see
 * svm-x86svm.c) and those outside the map's ranges, which always exit (15.11).
 * EXITINFO1 is 0 for RDMSR, 1 for WRMSR. The guest sees a processor without SVM:
 * EFER.SVME reads as 0 and setting it is a reserved-bit #GP; VM_CR, VM_HSAVE_PA and
 * SVM_KEY do not exist for it (guestmsr.c). */
static bool guest_write_efer(struct vcpu *v, uint64_t val)
{
    struct vmcb *vm = vmcb_of(v);
    uint64_t cur = vm->save.efer;
    if (val & ~(svm_of(v->cpu)->efer_allowed | EFER_LMA))
        return false;
    /* Changing LME while paging is on is a #GP (APM Vol. 2, 14.6.1 "Activating and
     * Deactivating Long Mode"). LMA is the processor's: a write leaves it as it is. */
    if ((vm->save.cr0 & CR0_PG) && ((val ^ cur) & EFER_LME))
        return false;
    vm->save.efer = (val & ~EFER_LMA) | (cur & EFER_LMA) | MSR_EFER_SVME;
    return true;
}

static void exit_msr(struct vcpu *v)
{
    uint64_t *r = v->regs->r;
    uint32_t msr = (uint32_t)r[R_CX];
    bool write = vmcb_of(v)->ctl.exitinfo1 & 1;
    uint64_t val = (r[R_DX] << 32) | (uint32_t)r[R_AX];
    bool ok, skip;
    if (hypapp_msr(v, write, &skip)) {     /* a hypapp's MSR (hypapp.c) */
        if (skip)
            svm_skip_instruction(v, 2);
        return;
    }
    if (write && msr == MSR_IA32_APIC_BASE) {
        svm_smpg_apic_base_write(v, val);
        return;
    }
    if (write && msr == X2APIC_MSR(APIC_ICR_LO)) {
        svm_smpg_x2apic_icr_write(v, val);
        return;
    }
    enum msr_outcome o = msr == MSR_IA32_EFER ? MSR_PASS :
                         write ? guest_msr_write(v, msr, val) : guest_msr_read(v, msr, &val);
    if (msr == MSR_VM_CR || msr == MSR_VM_HSAVE_PA) {
        ok = false;         /* whatever the vendor string says */
    } else if (o != MSR_PASS) {
        ok = o == MSR_DONE;
    } else if (msr == MSR_IA32_EFER) {
        if (write) {
            ok = guest_write_efer(v, val);
        } else {
            val = vmcb_of(v)->save.efer & ~MSR_EFER_SVME;
            ok = true;
        }
    } else if (write) {
        ok = wrmsr_safe(v->cpu, msr, val) == 0;
    } else {
        int fault;
        val = rdmsr_safe(v->cpu, msr, &fault);
        ok = !fault;
    }
    if (!ok) {
        inject_gp0(v);
        return;
    }
    if (!write) {
        r[R_AX] = (uint32_t)val;
        r[R_DX] = val >> 32;
    }
    svm_skip_instruction(v, 2);                     /* 0f 32 / 0f 30 */
}

static void exit_vmmcall(struct vcpu *v)
{
    hypercall_insn(v);
}

static void exit_invd(struct vcpu *v)
{
    /* INVD would drop the hypervisor's dirty lines too; WBINVD is the safe superset. */
    __asm__ volatile("wbinvd" ::: "memory");
    svm_skip_instruction(v, 2);                     /* 0f 08 */
}

/* #NPF (15.25.6): EXITINFO1 is a page-fault error code, EXITINFO2 the guest-physical
 * address. The APIC page begins a step; accesses to the hypervisor's region never
 * complete, nor do those above what the NPT can map (at or above MAXPHYADDR or 2^48):
 * #GP(0) and a line. A fault on a present entry means the hypervisor's own table is
 * wrong (nothing here maps less than RWX): the guest cannot go on. */
static void exit_npf(struct vcpu *v)
{
    struct vmcb *vm = vmcb_of(v);
    uint64_t err = vm->ctl.exitinfo1, gpa = vm->ctl.exitinfo2;
    if (svm_smpg_apic_trap(v, gpa, err))
        return;
    if (gpa_in_hypervisor(gpa, 1)) {
        uint32_t access = (err & SVM_NPF_WRITE) ? APP_ACCESS_WRITE :
                          (err & SVM_NPF_FETCH) ? APP_ACCESS_EXEC : APP_ACCESS_READ;
        hypervisor_memory_violation(v, gpa, access);
        return;
    }
    /* A page a hypapp protected (guestmem.c). AMD reports no linear address. */
    struct app_memfault f = {
        .gpa = gpa,
        .access = (err & SVM_NPF_WRITE) ? APP_ACCESS_WRITE :
                  (err & SVM_NPF_FETCH) ? APP_ACCESS_EXEC : APP_ACCESS_READ,
        .paging_walk = (err & SVM_NPF_GUEST_PT) != 0,
    };
    if ((err & SVM_NPF_P) && guestmem_violation(v, &f))
        return;
    if (err & SVM_NPF_P) {
        printk("xmhf: CPU %u: nested page fault on a present entry at guest-physical %llx "
               "(error code %llx)\n", v->cpu->idx, (unsigned long long)gpa,
               (unsigned long long)err);
        guest_reset(v, "nested page fault on a present entry");
    }
    if (svm_npt_map_lazy(gpa) != 0) {
        printk("xmhf: CPU %u: guest access to guest-physical %llx, beyond what the NPT maps "
               "(rip %llx): #GP injected\n", v->cpu->idx, (unsigned long long)gpa,
               (unsigned long long)vm->save.rip);
        inject_gp0(v);
    }
}

/* A shutdown condition (triple fault, 15.13 "Miscellaneous Intercepts"). */
static void exit_shutdown(struct vcpu *v)
{
    guest_reset(v, "triple fault (shutdown)");
}

/* Exits that need nothing done: the guest resumes where it was.
 *   NMI       still pending; the host's handler takes it when svm-entry.S opens GIF and
 *             counts it once; svm_nmi_prepare injects it when the guest can take it;
 *   INTR, SMI physical events, still pending for the processor to take;
 *   FERR_FREEZE, BUSLOCK  notifications for intercepts never set. */
static void exit_resume(struct vcpu *v)
{
    (void)v;
}

/* A physical INIT reached the guest (INIT intercept): it is this guest CPU's INIT
 * (smpguest.c). The INIT itself stays pending (APM Vol. 2, 15.13) and turns into #SX
 * where GIF next opens (VM_CR.R_INIT), which counts as the same INIT. */
static void exit_init(struct vcpu *v)
{
    smpg_physical_init(v->cpu);
}

/* A virtual-interrupt window nobody asked for: the intercept goes off again. */
static void exit_vintr(struct vcpu *v)
{
    vmcb_of(v)->ctl.intercept1 &= ~SVM_INTERCEPT_VINTR;
}

/* An exception intercepted outside a step (only #UD is, then; any other is left over)
 * goes back to the guest as it was raised: error code from EXITINFO1, #PF's address
 * from EXITINFO2 (an intercepted #PF does not write CR2). #BP and #OF come from INT3
 * and INTO, one byte each, and are traps: the guest resumes after them. */
static void exit_reflect_exception(struct vcpu *v)
{
    struct vmcb *vm = vmcb_of(v);
    unsigned vec = (unsigned)(vm->ctl.exitcode - SVM_EXIT_EXCP(0));
    if (vec == EXC_PF)
        svm_guest_set_cr2(v, vm->ctl.exitinfo2);
    if (vec == EXC_BP || vec == EXC_OF)
        vm->save.rip += 1;
    arch_guest_inject_exception(v, vec, exc_has_errcode(vec), (uint32_t)vm->ctl.exitinfo1);
}

/* Instructions performed for the guest where their intercept is on (none of these is
 * set by this hypervisor; the outcome is defined all the same). */
static void exit_rdtsc(struct vcpu *v)
{
    uint64_t t = rdtsc() + vmcb_of(v)->ctl.tsc_offset;
    v->regs->r[R_AX] = (uint32_t)t;
    v->regs->r[R_DX] = t >> 32;
    svm_skip_instruction(v, 2);                     /* 0f 31 */
}

static void exit_rdtscp(struct vcpu *v)
{
    uint64_t t = rdtsc() + vmcb_of(v)->ctl.tsc_offset;
    v->regs->r[R_AX] = (uint32_t)t;
    v->regs->r[R_DX] = t >> 32;
    v->regs->r[R_CX] = (uint32_t)rdmsr(MSR_IA32_TSC_AUX);
    svm_skip_instruction(v, 3);                     /* 0f 01 f9 */
}

static void exit_wbinvd(struct vcpu *v)
{
    __asm__ volatile("wbinvd" ::: "memory");
    svm_skip_instruction(v, 2);                     /* 0f 09 */
}

/* PAUSE (f3 90: the f3 counts as a prefix), HLT (f4), MONITOR / MWAIT (0f 01 c8/c9,
 * 0f 01 fa/fb): a hint, a wait that may end at any time, an address to watch. */
static void exit_pause(struct vcpu *v) { svm_skip_instruction(v, 1); }
static void exit_hlt(struct vcpu *v) { svm_skip_instruction(v, 1); }
static void exit_skip3(struct vcpu *v) { svm_skip_instruction(v, 3); }

/* XSETBV (0f 01 d1) at CPL > 0 or with a bad value is #GP(0), as the instruction. */
static void exit_xsetbv(struct vcpu *v)
{
    uint64_t *r = v->regs->r;
    uint64_t val = (r[R_DX] << 32) | (uint32_t)r[R_AX];
    if (arch_guest_cpl(v) != 0 || xsetbv_safe(v->cpu, (uint32_t)r[R_CX], val) != 0)
        inject_gp0(v);
    else
        svm_skip_instruction(v, 3);
}

/* IOIO (15.10.2 "IN and OUT Behavior"): EXITINFO1 bit 0 IN, bit 2 string, bit 3 REP,
 * bits 6:4 the size (one-hot 8/16/32), bits 31:16 the port; EXITINFO2 the next RIP.
 * A plain IN/OUT is performed on the physical port (the guest's anyway); string forms
 * would need the guest's segments and paging: reset with a line naming the port. */
static void exit_ioio(struct vcpu *v)
{
    struct vmcb *vm = vmcb_of(v);
    uint64_t info = vm->ctl.exitinfo1;
    uint16_t port = (uint16_t)(info >> 16);
    unsigned size = (info & (1u << 4)) ? 1 : (info & (1u << 5)) ? 2 : (info & (1u << 6)) ? 4 : 0;
    /* A port a hypapp asked for (hypapp.c; 15.10.2 "IN and OUT Behavior": bit 0 IN,
     * 2 string, 3 REP, 4-6 the size; EXITINFO2 the next RIP). */
    struct app_io io = {
        .port = port, .size = (uint8_t)size, .in = info & 1, .string = (info >> 2) & 1,
        .rep = (info >> 3) & 1,
        .value = (uint32_t)v->regs->r[R_AX] & (size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1),
    };
    bool skip;
    if (size && hypapp_io(v, &io, &skip)) {
        if (skip) {
            vm->save.rip = vm->ctl.exitinfo2;
            vm->ctl.int_state &= ~SVM_INT_SHADOW;
        }
        return;
    }
    if ((info & 0xc) || !size) {
        printk("xmhf: CPU %u: string I/O intercept on port %x (EXITINFO1 %llx)\n",
               v->cpu->idx, port, (unsigned long long)info);
        guest_reset(v, "string I/O instruction intercepted");
    }
    /* Plain IN/OUT on the physical port, which is the guest's anyway. */
    io_passthrough(v, &io);
    vm->save.rip = vm->ctl.exitinfo2;
    vm->ctl.int_state &= ~SVM_INT_SHADOW;
}

struct exit_entry {
    exit_handler_t fn;
    const char *name;
};

/* Every code of APM Vol. 2 table C-1. An entry without a handler is an intercept this
 * hypervisor never sets (CR/DR accesses, descriptor-table accesses, RDPMC, PUSHF/POPF
 * and INTn outside a step, INVLPG, task switches: see below, SEV-ES traps, AVIC, ...):
 * exit_unexpected resets the guest with one line naming it. Task switches are not
 * intercepted: the processor performs them inside the guest (15.14.2 "Task Switches"),
 * with every fault going to the guest's own handlers. */
static const struct exit_entry exit_table[SVM_EXIT_CODE_COUNT] = {
    [SVM_EXIT_CR_READ(0) ... SVM_EXIT_CR_READ(15)] = { NULL, "CR read" },
    [SVM_EXIT_CR_WRITE(0) ... SVM_EXIT_CR_WRITE(15)] = { NULL, "CR write" },
    [SVM_EXIT_DR_READ(0) ... SVM_EXIT_DR_READ(15)] = { NULL, "DR read" },
    [SVM_EXIT_DR_WRITE(0) ... SVM_EXIT_DR_WRITE(15)] = { NULL, "DR write" },
    [SVM_EXIT_EXCP(0) ... SVM_EXIT_EXCP(EXC_UD - 1)] = { exit_reflect_exception, "exception" },
    [SVM_EXIT_EXCP(EXC_UD)] = { exit_excp_ud, "#UD" },
    [SVM_EXIT_EXCP(EXC_UD + 1) ... SVM_EXIT_EXCP(31)] = { exit_reflect_exception, "exception" },
    [SVM_EXIT_INTR] = { exit_resume, "INTR" },
    [SVM_EXIT_NMI] = { exit_resume, "NMI" },
    [SVM_EXIT_SMI] = { exit_resume, "SMI" },
    [SVM_EXIT_INIT] = { exit_init, "INIT" },
    [SVM_EXIT_VINTR] = { exit_vintr, "VINTR" },
    [SVM_EXIT_CR0_SEL_WRITE] = { NULL, "CR0 selective write" },
    [SVM_EXIT_IDTR_READ] = { NULL, "IDTR read" },
    [SVM_EXIT_GDTR_READ] = { NULL, "GDTR read" },
    [SVM_EXIT_LDTR_READ] = { NULL, "LDTR read" },
    [SVM_EXIT_TR_READ] = { NULL, "TR read" },
    [SVM_EXIT_IDTR_WRITE] = { NULL, "IDTR write" },
    [SVM_EXIT_GDTR_WRITE] = { NULL, "GDTR write" },
    [SVM_EXIT_LDTR_WRITE] = { NULL, "LDTR write" },
    [SVM_EXIT_TR_WRITE] = { NULL, "TR write" },
    [SVM_EXIT_RDTSC] = { exit_rdtsc, "RDTSC" },
    [SVM_EXIT_RDPMC] = { NULL, "RDPMC" },
    [SVM_EXIT_PUSHF] = { NULL, "PUSHF" },
    [SVM_EXIT_POPF] = { NULL, "POPF" },
    [SVM_EXIT_CPUID] = { exit_cpuid, "CPUID" },
    [SVM_EXIT_RSM] = { inject_ud, "RSM" },      /* outside SMM: #UD */
    [SVM_EXIT_IRET] = { svm_smpg_iret, "IRET" },
    [SVM_EXIT_SWINT] = { NULL, "INTn" },
    [SVM_EXIT_INVD] = { exit_invd, "INVD" },
    [SVM_EXIT_PAUSE] = { exit_pause, "PAUSE" },
    [SVM_EXIT_HLT] = { exit_hlt, "HLT" },
    [SVM_EXIT_INVLPG] = { NULL, "INVLPG" },
    [SVM_EXIT_INVLPGA] = { inject_ud, "INVLPGA" },
    [SVM_EXIT_IOIO] = { exit_ioio, "IOIO" },
    [SVM_EXIT_MSR] = { exit_msr, "MSR" },
    [SVM_EXIT_TASK_SWITCH] = { NULL, "task switch" },
    [SVM_EXIT_FERR_FREEZE] = { exit_resume, "FERR freeze" },
    [SVM_EXIT_SHUTDOWN] = { exit_shutdown, "shutdown" },
    /* The guest sees no SVM: its SVM instructions are undefined opcodes to it. */
    [SVM_EXIT_VMRUN] = { inject_ud, "VMRUN" },
    [SVM_EXIT_VMMCALL] = { exit_vmmcall, "VMMCALL" },
    [SVM_EXIT_VMLOAD] = { inject_ud, "VMLOAD" },
    [SVM_EXIT_VMSAVE] = { inject_ud, "VMSAVE" },
    [SVM_EXIT_STGI] = { inject_ud, "STGI" },
    [SVM_EXIT_CLGI] = { inject_ud, "CLGI" },
    [SVM_EXIT_SKINIT] = { inject_ud, "SKINIT" },
    [SVM_EXIT_RDTSCP] = { exit_rdtscp, "RDTSCP" },
    [SVM_EXIT_ICEBP] = { NULL, "ICEBP" },
    [SVM_EXIT_WBINVD] = { exit_wbinvd, "WBINVD" },
    [SVM_EXIT_MONITOR] = { exit_skip3, "MONITOR" },
    [SVM_EXIT_MWAIT] = { exit_skip3, "MWAIT" },
    [SVM_EXIT_MWAIT_COND] = { exit_skip3, "MWAIT (armed)" },
    [SVM_EXIT_XSETBV] = { exit_xsetbv, "XSETBV" },
    [SVM_EXIT_RDPRU] = { NULL, "RDPRU" },
    [SVM_EXIT_EFER_WRITE_TRAP] = { NULL, "EFER write trap" },
    [SVM_EXIT_CR_WRITE_TRAP(0) ... SVM_EXIT_CR_WRITE_TRAP(15)] = { NULL, "CR write trap" },
    [SVM_EXIT_INVLPGB] = { NULL, "INVLPGB" },
    [SVM_EXIT_INVLPGB_ILLEGAL] = { NULL, "illegal INVLPGB" },
    [SVM_EXIT_INVPCID] = { NULL, "INVPCID" },
    [SVM_EXIT_MCOMMIT] = { NULL, "MCOMMIT" },
    [SVM_EXIT_TLBSYNC] = { NULL, "TLBSYNC" },
    [SVM_EXIT_BUSLOCK] = { exit_resume, "bus lock" },
    [SVM_EXIT_IDLE_HLT] = { NULL, "idle HLT" },
    [SVM_EXIT_NPF] = { exit_npf, "nested page fault" },
    [SVM_EXIT_AVIC_INCOMPLETE_IPI] = { NULL, "AVIC incomplete IPI" },
    [SVM_EXIT_AVIC_NOACCEL] = { NULL, "AVIC no acceleration" },
    [SVM_EXIT_VMGEXIT] = { NULL, "VMGEXIT" },
};

/* The default: an exit no intercept here asks for, or a code no table holds. The
 * guest cannot be continued correctly and the hypervisor must not stop: one line with
 * every value, then the guest's reset. */
static void exit_unexpected(struct vcpu *v)
{
    struct vmcb *vm = vmcb_of(v);
    uint64_t code = vm->ctl.exitcode;
    const char *name = code < SVM_EXIT_CODE_COUNT && exit_table[code].name ?
                       exit_table[code].name : "unassigned";
    printk("xmhf: CPU %u: unexpected #VMEXIT, exit code %#llx (%s), exitinfo1 %llx "
           "exitinfo2 %llx, guest rip %llx cr0 %llx efer %llx\n", v->cpu->idx,
           (unsigned long long)code, name, (unsigned long long)vm->ctl.exitinfo1,
           (unsigned long long)vm->ctl.exitinfo2, (unsigned long long)vm->save.rip,
           (unsigned long long)vm->save.cr0, (unsigned long long)vm->save.efer);
    guest_reset(v, "caused an unexpected #VMEXIT");
}

/* Whether the guest's instruction at RIP is MOV to CR4 (0f 22 /4 after any prefixes). */
static bool at_mov_to_cr4(struct vcpu *v)
{
    struct vmcb *vm = vmcb_of(v);
    uint8_t b[15];
    if (svm_guest_read_linear(v, svm_guest_cs_linear(v, vm->save.rip), b, sizeof(b)) != 0)
        return false;
    bool long64 = (vm->save.efer & EFER_LMA) && (vm->save.cs.attrib & (1u << 9));
    unsigned n = 0;
    while (n < 12 && (b[n] == 0x66 || b[n] == 0x67 || b[n] == 0x2e || b[n] == 0x36 ||
                      b[n] == 0x3e || b[n] == 0x26 || b[n] == 0x64 || b[n] == 0x65 ||
                      b[n] == 0xf0 || b[n] == 0xf2 || b[n] == 0xf3 ||
                      (long64 && (b[n] & 0xf0) == 0x40)))
        n++;
    return n < 12 && b[n] == 0x0f && b[n + 1] == 0x22 && ((b[n + 2] >> 3) & 7) == 4;
}

/* VMRUN refused the guest state (exit code -1, 15.5.1 consistency checks). The state is
 * the hypervisor's to keep valid, with one exception an emulator makes: QEMU's TCG
 * reports a guest MOV to CR4 with a reserved bit set this way, where the processor
 * raises #GP(0) in the guest (the guest's CR4 writes are not intercepted). That case
 * gets the #GP; any other is reported and the guest reset. The other negative codes
 * (SEV-SNP) cannot come from a guest without SEV. */
static void exit_invalid(struct vcpu *v)
{
    struct vmcb *vm = vmcb_of(v);
    if (vm->ctl.exitcode == SVM_EXIT_INVALID && at_mov_to_cr4(v)) {
        inject_gp0(v);
        return;
    }
    printk("xmhf: CPU %u: VMRUN failed (exit code %#llx), guest rip %llx cr0 %llx cr4 %llx "
           "efer %llx\n", v->cpu->idx, (unsigned long long)vm->ctl.exitcode,
           (unsigned long long)vm->save.rip, (unsigned long long)vm->save.cr0,
           (unsigned long long)vm->save.cr4, (unsigned long long)vm->save.efer);
    guest_reset(v, "state refused by VMRUN");
}

/* Exit statistics: the slots of struct pcpu are fewer than the exit codes, so they are
 * folded: 0-63 the codes 0x60-0x9f (instruction and event intercepts), 64 exceptions,
 * 65 #NPF, 66 CR/DR accesses, 71 anything else. */
static unsigned stat_slot(uint64_t code)
{
    if (code >= 0x60 && code < 0xa0)
        return (unsigned)(code - 0x60);
    if (code >= 0x40 && code < 0x60)
        return 64;
    if (code == SVM_EXIT_NPF)
        return 65;
    if (code < 0x40)
        return 66;
    return EXIT_STAT_SLOTS - 1;
}
_Static_assert(EXIT_STAT_SLOTS >= 72, "SVM exit statistics use 72 slots");

/* An event whose delivery the exit interrupted (EXITINTINFO, 15.7.2 "Intercepts During
 * IDT Interrupt Delivery") is delivered again on entry unless the handler injected
 * something of its own. Software interrupts and INT3/INTO are not re-injected: the
 * guest's RIP is still at their instruction, which raises them again. */
static void reinject_interrupted_event(struct vmcb *vm, uint64_t info)
{
    uint64_t type = info & SVM_EVT_TYPE_MASK, vec = info & SVM_EVT_VECTOR_MASK;
    if (!(info & SVM_EVT_VALID) || (vm->ctl.eventinj & SVM_EVT_VALID))
        return;
    if (type == SVM_EVT_TYPE_SOFTINT ||
        (type == SVM_EVT_TYPE_EXCEPTION && (vec == EXC_BP || vec == EXC_OF)))
        return;
    vm->ctl.eventinj = info;
}

void svm_exit_handler(struct pcpu *c, struct gregs *g)
{
    struct vcpu v = { c, g };
    struct vmcb *vm = svm_of(c)->vmcb;
    uint64_t code = vm->ctl.exitcode;
    /* QEMU's TCG stores the negative codes in 32 bits (0xffffffff for -1). */
    if (code >= 0xfffffffcull && code <= 0xffffffffull)
        code = vm->ctl.exitcode = code | 0xffffffff00000000ull;
    g->r[R_AX] = vm->save.rax;
    /* Whatever the last VMRUN injected was delivered, or it is in EXITINTINFO now. */
    vm->ctl.eventinj = 0;
    vm->ctl.tlb_control = SVM_TLB_FLUSH_NOTHING;
    c->exits_total++;
    dmap_poll(false);       /* IOMMU faults into the log, at most every few ms */
    c->exits[stat_slot(code)]++;
    exit_log(c);
    uint64_t info = vm->ctl.exitintinfo;
    /* A step in progress sees every exit first (its #DB, exceptions, NMIs). */
    if (svm_of(c)->step != STEP_NONE && code < SVM_EXIT_CODE_COUNT && svm_smpg_step_exit(&v, code))
        ;
    else if (code >= SVM_EXIT_INVALID_PMC)
        exit_invalid(&v);
    else if (code < SVM_EXIT_CODE_COUNT && exit_table[code].fn)
        exit_table[code].fn(&v);
    else
        exit_unexpected(&v);
    reinject_interrupted_event(vm, info);
    svm_npt_types_flush(svm_of(c));
    vm->save.rax = g->r[R_AX];
    guestmem_tlb_sync(c);
}

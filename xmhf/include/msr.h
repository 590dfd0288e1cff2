/* Model-specific registers used by the hypervisor: Intel SDM Vol. 4, chapter 2
 * "Model-Specific Registers", and Vol. 3D appendix A "VMX Capability Reporting Facility". */
#ifndef XMHF_MSR_H
#define XMHF_MSR_H

#define MSR_IA32_FEATURE_CONTROL   0x03au
#define   FEATCTL_LOCK             (1ull << 0)
#define   FEATCTL_VMX_INSIDE_SMX   (1ull << 1)
#define   FEATCTL_VMX_OUTSIDE_SMX  (1ull << 2)
#define   FEATCTL_SENTER_MASK      0xff00ull    /* SENTER local enables 14:8, global 15 */
#define MSR_IA32_APIC_BASE         0x01bu
#define   APIC_BASE_BSP            (1ull << 8)
#define   APIC_BASE_EXTD           (1ull << 10) /* x2APIC mode */
#define   APIC_BASE_EN             (1ull << 11)
#define   APIC_BASE_ADDR           0x000ffffffffff000ull
#define MSR_IA32_SYSENTER_CS       0x174u
#define MSR_IA32_SYSENTER_ESP      0x175u
#define MSR_IA32_SYSENTER_EIP      0x176u
#define MSR_IA32_DEBUGCTL          0x1d9u
#define MSR_IA32_PAT               0x277u
#define   PAT_POWERON              0x0007040600070406ull
#define MSR_IA32_VMX_BASIC         0x480u
#define MSR_IA32_VMX_PINBASED      0x481u
#define MSR_IA32_VMX_PROCBASED     0x482u
#define MSR_IA32_VMX_EXIT          0x483u
#define MSR_IA32_VMX_ENTRY         0x484u
#define MSR_IA32_VMX_MISC          0x485u
#define MSR_IA32_VMX_CR0_FIXED0    0x486u
#define MSR_IA32_VMX_CR0_FIXED1    0x487u
#define MSR_IA32_VMX_CR4_FIXED0    0x488u
#define MSR_IA32_VMX_CR4_FIXED1    0x489u
#define MSR_IA32_VMX_PROCBASED2    0x48bu
#define MSR_IA32_VMX_EPT_VPID_CAP  0x48cu
#define MSR_IA32_VMX_TRUE_PINBASED 0x48du
#define MSR_IA32_VMX_TRUE_PROCBASED 0x48eu
#define MSR_IA32_VMX_TRUE_EXIT     0x48fu
#define MSR_IA32_VMX_TRUE_ENTRY    0x490u
#define MSR_IA32_EFER              0xc0000080u
#define   EFER_SCE                 (1ull << 0)
#define   EFER_LME                 (1ull << 8)
#define   EFER_LMA                 (1ull << 10)
#define   EFER_NXE                 (1ull << 11)
#define MSR_IA32_TSC_AUX           0xc0000103u
#define MSR_FS_BASE                0xc0000100u
#define MSR_GS_BASE                0xc0000101u

#endif

/* PCI configuration space as the hypervisor reads it: configuration mechanism #1 (PCI
 * Local Bus Specification 3.0, 3.2.2.3.2: address at port CF8h, data at CFCh), the
 * capability list (6.7), MSI (6.8.1) and MSI-X (6.8.2). An MSI's message data carries
 * the local APIC's delivery mode in bits 10:8 (SDM Vol. 3A 11.11.2; apic.h). */
#ifndef XMHF_PCI_H
#define XMHF_PCI_H
#include <stdint.h>

#define PCI_CFG_ADDR        0xcf8u
#define PCI_CFG_DATA        0xcfcu
#define PCI_CFG_ENABLE      (1u << 31)
#define PCI_CFG(bus, dev, fn, reg) \
    (PCI_CFG_ENABLE | ((uint32_t)(bus) << 16) | ((uint32_t)(dev) << 11) | \
     ((uint32_t)(fn) << 8) | ((uint32_t)(reg) & 0xfcu))

#define PCI_VENDOR_NONE     0xffffu
#define PCI_STATUS_CAPS     (1u << 20)      /* dword 04h: status bit 4 */
#define PCI_HEADER_MULTI    (1u << 23)      /* dword 0Ch: header type bit 7 */
#define PCI_CAP_PTR         0x34u
#define PCI_CAP_MSI         0x05u
#define PCI_CAP_MSIX        0x11u

#define MSI_CTRL_ENABLE     (1u << 16)      /* in the capability's first dword */
#define MSI_CTRL_64BIT      (1u << 23)
#define MSIX_CTRL_ENABLE    (1u << 31)
#define MSIX_CTRL_MASKALL   (1u << 30)
#define MSIX_CTRL_SIZE(d)   ((((d) >> 16) & 0x7ffu) + 1u)
#define MSIX_ENTRY_SIZE     16u             /* address lo, hi, data, vector control */
#define MSIX_VEC_MASKED     1u

#endif

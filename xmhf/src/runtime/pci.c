/* The devices' message-signalled interrupts, read once where an MSI's delivery mode
 * matters (a CPU outside VMX operation during a restart through INIT,
 * restart-x86vmx.c). The configuration address register is the guest's, so it is put
 * back: the guest may be between its address write and its data access. */
#include "apic.h"
#include "pci.h"
#include "xmhf.h"

static uint32_t cfg_read(uint32_t addr)
{
    outl(PCI_CFG_ADDR, addr);
    return inl(PCI_CFG_DATA);
}

/* An enabled MSI-X entry, unmasked, with an unsafe mode; the table lives in a memory
 * BAR. A table the hypervisor cannot read counts as unsafe. */
static bool msix_unsafe(uint32_t bus, uint32_t dev, uint32_t fn, uint32_t ctrl, uint32_t tab)
{
    unsigned bir = tab & 7u;
    if (bir > 5)
        return true;
    uint32_t lo = cfg_read(PCI_CFG(bus, dev, fn, 0x10 + 4 * bir));
    uint64_t base = lo & ~0xfull;
    if (lo & 1u)
        return true;                                /* an I/O BAR cannot hold it */
    if ((lo & 6u) == 4u && bir < 5)
        base |= (uint64_t)cfg_read(PCI_CFG(bus, dev, fn, 0x14 + 4 * bir)) << 32;
    uint64_t at = base + (tab & ~7u), n = MSIX_CTRL_SIZE(ctrl);
    if (!base || at + n * MSIX_ENTRY_SIZE > PHYS_LIMIT)
        return true;
    const volatile uint32_t *e = phys_to_virt(at);
    for (uint64_t i = 0; i < n; i++, e += MSIX_ENTRY_SIZE / 4)
        if (!(e[3] & MSIX_VEC_MASKED) && DM_RUNS_GUEST_CODE(e[2]))
            return true;
    return false;
}

static bool function_unsafe(uint32_t bus, uint32_t dev, uint32_t fn)
{
    if (!(cfg_read(PCI_CFG(bus, dev, fn, 0x04)) & PCI_STATUS_CAPS))
        return false;
    uint32_t p = cfg_read(PCI_CFG(bus, dev, fn, PCI_CAP_PTR)) & 0xfcu;
    for (unsigned hops = 0; p >= 0x40 && hops < 48; hops++) {
        uint32_t d = cfg_read(PCI_CFG(bus, dev, fn, p));
        uint8_t id = (uint8_t)d;
        if (id == PCI_CAP_MSI && (d & MSI_CTRL_ENABLE)) {
            uint32_t data = cfg_read(PCI_CFG(bus, dev, fn, p + ((d & MSI_CTRL_64BIT) ? 12 : 8)));
            if (DM_RUNS_GUEST_CODE(data))
                return true;
        } else if (id == PCI_CAP_MSIX && (d & MSIX_CTRL_ENABLE) && !(d & MSIX_CTRL_MASKALL)) {
            if (msix_unsafe(bus, dev, fn, d, cfg_read(PCI_CFG(bus, dev, fn, p + 4))))
                return true;
        }
        p = (d >> 8) & 0xfcu;
    }
    return false;
}

/* The first function (bus << 8 | device << 3 | function) with an enabled, unmasked MSI
 * or MSI-X message whose delivery mode is NMI or the reserved STARTUP encoding; -1:
 * none. */
int pci_msi_unsafe(void)
{
    uint32_t saved = inl(PCI_CFG_ADDR);
    int found = -1;
    for (uint32_t bus = 0; bus < 256 && found < 0; bus++)
        for (uint32_t dev = 0; dev < 32 && found < 0; dev++) {
            uint32_t id = cfg_read(PCI_CFG(bus, dev, 0, 0));
            if ((id & 0xffffu) == PCI_VENDOR_NONE)
                continue;
            unsigned fns = (cfg_read(PCI_CFG(bus, dev, 0, 0x0c)) & PCI_HEADER_MULTI) ? 8 : 1;
            for (uint32_t fn = 0; fn < fns && found < 0; fn++) {
                if (fn && (cfg_read(PCI_CFG(bus, dev, fn, 0)) & 0xffffu) == PCI_VENDOR_NONE)
                    continue;
                if (function_unsafe(bus, dev, fn))
                    found = (int)(bus << 8 | dev << 3 | fn);
            }
        }
    outl(PCI_CFG_ADDR, saved);
    return found;
}

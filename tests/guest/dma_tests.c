/* DMA protection: the guest programs a bus-master device to read and write the
 * hypervisor's memory and checks that nothing happens there, that the hypervisor
 * recorded the faults, and that the same device still reaches ordinary guest memory.
 *
 * The device is QEMU's "edu" (docs/specs/edu.rst in QEMU): PCI 1234:11e8, BAR0 MMIO with
 * a DMA engine: 0x80 source, 0x88 destination, 0x90 count, 0x98 command (bit 0 start /
 * busy, bit 1 direction: 0 RAM -> device, 1 device -> RAM), and a 4 KiB buffer at device
 * address 0x40000. A transfer completes about 100 ms (QEMU virtual time) after it starts.
 * edu clamps DMA addresses to its dma_mask (28 bits unless set), so the tests keep the
 * guest below 256 MiB. */
#include "guest.h"

#define HC_DMAP_INFO       0x80000010ull
#define HC_IMAGE_CHECKSUM  0x80000011ull
#define ST_DMA_FAULTS      0x300ull
#define RUNTIME_MAGIC      0x31464d48584d5452ull    /* "RTXMHMF1": the image's first bytes */
#define KIND_VTD           1u                       /* DMAP_INFO RBX bits 63:32 */
#define KIND_AMDVI         2u

#define EDU_ID_REG      0x00u
#define EDU_ID_VALUE    0x010000edu
#define EDU_DMA_SRC     0x80u
#define EDU_DMA_DST     0x88u
#define EDU_DMA_CNT     0x90u
#define EDU_DMA_CMD     0x98u
#define EDU_CMD_RUN     0x1u
#define EDU_CMD_TO_RAM  0x2u
#define EDU_BUF         0x40000ull

#define SRC_PAGE 0x90000ull
#define DST_PAGE 0x91000ull
#define LEN      64u

static inline uint32_t inl(uint16_t port)
{
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* PCI configuration mechanism #1 (ports 0xcf8 / 0xcfc), bus 0. */
static uint32_t pci_read(unsigned dev, unsigned off)
{
    outl(0xcf8, 0x80000000u | (dev << 11) | (off & 0xfcu));
    return inl(0xcfc);
}

static void pci_write(unsigned dev, unsigned off, uint32_t v)
{
    outl(0xcf8, 0x80000000u | (dev << 11) | (off & 0xfcu));
    outl(0xcfc, v);
}

static volatile uint32_t *reg32(uint64_t bar, unsigned off)
{
    return (volatile uint32_t *)(uintptr_t)(bar + off);
}

static volatile uint64_t *reg64(uint64_t bar, unsigned off)
{
    return (volatile uint64_t *)(uintptr_t)(bar + off);
}

/* One transfer; false when the engine does not finish. */
static bool edu_dma(uint64_t bar, uint64_t src, uint64_t dst, bool to_ram)
{
    *reg64(bar, EDU_DMA_SRC) = src;
    *reg64(bar, EDU_DMA_DST) = dst;
    *reg64(bar, EDU_DMA_CNT) = LEN;
    *reg64(bar, EDU_DMA_CMD) = EDU_CMD_RUN | (to_ram ? EDU_CMD_TO_RAM : 0);
    for (unsigned long i = 0; i < 400000000ul; i++) {
        if (!(*reg32(bar, EDU_DMA_CMD) & EDU_CMD_RUN))
            return true;
        cpu_relax();
    }
    return false;
}

/* A runtime hypercall with RBX in; RAX = 0 and the other registers kept, or false. */
static bool hc(uint64_t fn, uint64_t rbx, struct hc_regs *h)
{
    *h = (struct hc_regs){ .rax = fn, .rbx = rbx, .rcx = 41 };
    hc_fill_patterns(h);
    return hypercall(h, NULL) && h->rax == 0 && !hc_clobbered(h);
}

/* RAM -> edu -> RAM through guest pages: the positive control. */
static bool dma_roundtrip(uint64_t bar, uint8_t seed)
{
    uint8_t *src = (uint8_t *)(uintptr_t)SRC_PAGE, *dst = (uint8_t *)(uintptr_t)DST_PAGE;
    for (unsigned i = 0; i < LEN; i++) {
        src[i] = (uint8_t)(seed + i * 7);
        dst[i] = 0;
    }
    return edu_dma(bar, SRC_PAGE, EDU_BUF, false) && edu_dma(bar, EDU_BUF, DST_PAGE, true) &&
           memcmp(src, dst, LEN) == 0;
}

#define CHECK(cond, msg, val) do { if (!(cond)) { why = (msg); at = (val); goto fail; } } while (0)

bool t_dma_protection(struct test_result *r)
{
    const char *why;
    uint64_t at;
    struct hc_regs h;
    struct runtime_info ri;
    if (!hv_present())
        return test_skip(r, "no hypervisor");
    if (!hc(HC_DMAP_INFO, 0, &h))
        return test_skip(r, "the hypervisor does not answer DMAP_INFO (rax %lx)", h.rax);
    uint64_t units = h.rbx & 0xffffffffu, kinds = h.rbx >> 32, regs = h.rcx;
    CHECK(get_runtime_info(&ri, r->msg, sizeof r->msg), "RUNTIME_INFO failed", 0);
    /* Hidden from the ACPI view whenever the hypervisor uses the IOMMU. */
    CHECK(!units || (acpi_count_tables("DMAR") <= 0 && acpi_count_tables("IVRS") <= 0),
          "the guest's ACPI still names DMAR/IVRS; units", units);

    unsigned dev = 0;
    while (dev < 32 && pci_read(dev, 0) != 0x11e81234u)
        dev++;
    if (dev == 32)
        return test_skip(r, "no edu PCI device (QEMU -device edu); %lu IOMMU(s)",
                         units);
    if (!units)
        return test_skip(r, "the hypervisor has no IOMMU translating, so a DMA "
                            "into it would succeed");
    uint64_t bar = pci_read(dev, 0x10) & ~0xfull;
    pci_write(dev, 0x04, pci_read(dev, 0x04) | 0x6);     /* memory space, bus master */
    CHECK(*reg32(bar, EDU_ID_REG) == EDU_ID_VALUE, "not edu's id at BAR0", bar);
    CHECK(ri.base + ri.size <= (1ull << 28), "hypervisor beyond edu's 28-bit DMA mask at",
          ri.base);
    CHECK(dma_roundtrip(bar, 0x11), "DMA to guest memory failed, edu at", bar);

    /* Measured: QEMU 7.2's AMD-Vi model detects these faults (its amdvi_page_fault trace
     * fires) but writes nothing to the event log, so there the count cannot grow. */
    bool counts = !(kinds == KIND_AMDVI && smbios_manufacturer_is("QEMU"));
    uint64_t sum0, f0, f;
    CHECK(hc(HC_IMAGE_CHECKSUM, 0, &h), "IMAGE_CHECKSUM failed", h.rax);
    sum0 = h.rbx;
    CHECK(hv_stat(ST_DMA_FAULTS, &f0) == HV_STAT_OK, "STATS 0x300 failed", 0);

    /* Writes: the image header, its code, and the last page (heap: IOMMU tables live
     * there), from edu's buffer (the round trip's pattern); then a read of the header.
     * The fault count is read after each: an IOMMU records a limited number of faults
     * (VT-d folds repeats from one device into the pending record) until the hypervisor
     * collects them. */
    const uint64_t targets[] = { ri.base, ri.base + 0x1000, ri.base + ri.size - 0x1000,
                                 ri.base };
    uint64_t *dst = (uint64_t *)(uintptr_t)DST_PAGE;
    f = f0;
    for (unsigned i = 0; i < ARRAY_SIZE(targets); i++) {
        uint64_t before = f;
        bool rd = i == ARRAY_SIZE(targets) - 1;
        dst[0] = 0x5a5a5a5a5a5a5a5aull;
        CHECK(rd ? edu_dma(bar, targets[i], EDU_BUF, false) &&
                   edu_dma(bar, EDU_BUF, DST_PAGE, true)
                 : edu_dma(bar, EDU_BUF, targets[i], true), "edu DMA did not finish at",
              targets[i]);
        CHECK(hv_stat(ST_DMA_FAULTS, &f) == HV_STAT_OK, "STATS 0x300 failed", 0);
        CHECK(!counts || f > before, "no fault recorded for the blocked DMA at", targets[i]);
    }
    CHECK(dst[0] != RUNTIME_MAGIC, "a device read the hypervisor's image header at", ri.base);
    CHECK(hc(HC_IMAGE_CHECKSUM, 0, &h) && h.rbx == sum0, "the hypervisor's image changed, sum",
          h.rbx);
    CHECK(hc(HC_HELLO, 0, &h) && h.rbx == HC_HELLO_MAGIC && h.rcx == 42,
          "HELLO fails after the DMAs, rbx", h.rbx);

    /* The IOMMU's registers are the hypervisor's too: #GP(0) on a read and a write. */
    struct fault_info fi;
    uint64_t v;
    CHECK(mem_read64_faults(regs, &v, &fi) == 1 && fi.vector == VEC_GP && !fi.error,
          "no #GP(0) reading the IOMMU registers at", regs);
    CHECK(mem_write64_faults(regs + 0x18, 0, &fi) == 1 && fi.vector == VEC_GP && !fi.error,
          "no #GP(0) writing the IOMMU registers at", regs);
    /* The device still works, so the tables survived all of it. */
    CHECK(dma_roundtrip(bar, 0x77), "DMA to guest memory failed afterwards, edu at", bar);
    return test_pass(r, "edu 00:%02x.0 via %s: guest DMA works; 3 writes, 1 read into the "
                        "hypervisor blocked (image sum kept, %lu faults%s); IOMMU regs #GP; "
                        "%s hidden", dev, kinds == KIND_VTD ? "VT-d" : "AMD-Vi", f - f0,
                     counts ? "" : ": QEMU logs none", kinds == KIND_VTD ? "DMAR" : "IVRS");
fail:
    return test_fail(r, "%s %lx", why, at);
}

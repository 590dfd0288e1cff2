/* DMA protection inside the runtime: what dmap.c (common) and the two drivers, vtd.c
 * (Intel VT-d) and amdvi.c (AMD-Vi), share. The drivers use no VMX/SVM state: either
 * works under either half of the hypervisor. */
#ifndef XMHF_DMAP_INT_H
#define XMHF_DMAP_INT_H
#include "dmap.h"
#include "xmhf.h"

#define DMAP_MAX_UNITS 16u

struct dmap_unit {
    const char *kind;           /* "VT-d" / "AMD-Vi" */
    unsigned idx;
    uint64_t base, size;        /* register block: left out of every map the guest has */
    volatile uint8_t *regs;
    bool active;                /* translation on */
    void (*enable)(struct dmap_unit *u);    /* panics when the unit cannot be brought up */
    void (*poll)(struct dmap_unit *u);      /* records faults through dmap_fault */
    /* VT-d */
    uint64_t cap, ecap;
    bool include_all;           /* DRHD INCLUDE_PCI_ALL */
    unsigned scopes;            /* device scope entries */
    uint64_t *qi;               /* invalidation queue (NULL: register-based) */
    uint32_t qi_tail;
    volatile uint32_t qi_status;
    /* AMD-Vi */
    uint16_t devid;             /* the IOMMU's own requester ID */
    int devid_max;
    uint64_t efr;
    uint64_t *cmd;              /* command buffer, AMDVI_RING_LOG2 entries */
    uint32_t cmd_tail;
    uint8_t *evt;               /* event log */
    volatile uint64_t cw_store; /* completion-wait store target */
};

/* Registers a unit (its register block must lie in the identity-mapped 4 GiB); NULL
 * when DMAP_MAX_UNITS are taken or the block is unreachable, with the reason printed. */
struct dmap_unit *dmap_unit_add(const char *kind, uint64_t base, uint64_t size);
/* The identity tables of the format, built on first use over [0, max(4 GiB, top of RAM))
 * without the hypervisor's region and every registered unit's registers. Returns the
 * root (4 levels) and its physical address. */
uint64_t *dmap_tables(enum iopt_format fmt, uint64_t *root_pa);
/* Whether a reserved-memory region (RMRR / IVMD) a device needs overlaps what the
 * tables leave out: said in the log; the tables are not changed for it. */
void dmap_check_reserved(const char *what, uint64_t base, uint64_t end);
/* One recorded translation fault: counted, and logged (the first 16, then every power
 * of two). devid = PCI requester ID (bus << 8 | dev << 3 | fn). */
void dmap_fault(struct dmap_unit *u, unsigned devid, uint64_t addr, int write,
                const char *why, unsigned code);
/* Spins until (reg & mask) == want, for at most about a second; false on timeout. */
bool dmap_wait32(struct dmap_unit *u, uint32_t off, uint32_t mask, uint32_t want);
bool dmap_wait64(struct dmap_unit *u, uint32_t off, uint64_t mask, uint64_t want);

static inline uint32_t rd32(struct dmap_unit *u, uint32_t off)
{
    return *(volatile uint32_t *)(u->regs + off);
}
static inline uint64_t rd64(struct dmap_unit *u, uint32_t off)
{
    return *(volatile uint64_t *)(u->regs + off);
}
static inline void wr32(struct dmap_unit *u, uint32_t off, uint32_t v)
{
    *(volatile uint32_t *)(u->regs + off) = v;
}
static inline void wr64(struct dmap_unit *u, uint32_t off, uint64_t v)
{
    *(volatile uint64_t *)(u->regs + off) = v;
}

/* Parse the ACPI table and register its units (enable and poll set). 0, or -1 with the
 * reason printed when the table is malformed. */
int vtd_parse(struct acpi_header *dmar);
int amdvi_parse(struct acpi_header *ivrs);

#endif

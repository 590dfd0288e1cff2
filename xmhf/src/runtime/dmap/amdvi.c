/* AMD-Vi: every IOMMU of the IVRS table translates every requester ID through one
 * device table whose entries all name the shared identity tables (host translation,
 * 4 levels, one domain). Spec references in amdvi.h. */
#include "amdvi.h"
#include "dmap-int.h"

#define DOMAIN_ID 1u
#define RING_ENTRIES (1u << AMDVI_RING_LOG2)

static void amdvi_enable(struct dmap_unit *u);
static void amdvi_poll(struct dmap_unit *u);

int amdvi_parse(struct acpi_header *ivrs)
{
    if (ivrs->length < IVRS_BLOCK_OFFSET) {
        printk("xmhf: DMAP: IVRS table too short (%u bytes)\n", ivrs->length);
        return -1;
    }
    unsigned ivhds = 0, ivmds = 0;
    for (const uint8_t *s = acpi_sub_next(ivrs, IVRS_BLOCK_OFFSET, NULL); s;
         s = acpi_sub_next(ivrs, IVRS_BLOCK_OFFSET, s)) {
        uint16_t len = (uint16_t)(s[2] | (s[3] << 8));
        if ((s[0] == IVRS_IVHD_10 || s[0] == IVRS_IVHD_11 || s[0] == IVRS_IVHD_40) &&
            len >= sizeof(struct ivhd)) {
            struct ivhd h;
            memcpy(&h, s, sizeof(h));
            int max = ivhd_devid_max(s, len);
            ivhds++;
            if (max < 0) {
                printk("xmhf: DMAP: IVHD type %x of the IOMMU at %llx: malformed device "
                       "entries\n", s[0], (unsigned long long)h.base);
                return -1;
            }
            struct dmap_unit *u = dmap_unit_add("AMD-Vi", h.base, AMDVI_MMIO_SIZE);
            if (!u)
                continue;
            u->devid = h.devid;
            u->devid_max = max;
            u->enable = amdvi_enable;
            u->poll = amdvi_poll;
        } else if ((s[0] == IVRS_IVMD_ALL || s[0] == IVRS_IVMD_DEV || s[0] == IVRS_IVMD_RANGE) &&
                   len >= sizeof(struct ivmd)) {
            struct ivmd m;
            memcpy(&m, s, sizeof(m));
            ivmds++;
            /* Unity ranges are in the identity map unless they lie in its holes; an
             * exclusion range is never programmed: its DMA is translated like any. */
            dmap_check_reserved("AMD-Vi IVMD", m.start, m.start + m.size);
        }
    }
    if (ivhds == 0) {
        printk("xmhf: DMAP: IVRS table lists no IOMMU\n");
        return -1;
    }
    printk("xmhf: DMAP: IVRS: %u IOMMU block(s), %u memory definition(s) (IVMD)\n", ivhds,
           ivmds);
    return 0;
}

/* One device table for every IOMMU, with an entry for each of the 65536 requester IDs:
 * a device table shorter than the IDs a guest can make a device use (by renumbering
 * buses) would leave those IDs to rules other than ours. */
static uint64_t devtab_pa;

static void build_devtab(void)
{
    uint64_t root_pa;
    dmap_tables(IOPT_AMDVI, &root_pa);
    uint64_t *dt = pages_alloc(0x10000u * AMDVI_DTE_SIZE / 4096u, &devtab_pa);
    for (unsigned id = 0; id < 0x10000u; id++) {
        uint64_t *e = &dt[id * 4];
        e[1] = DOMAIN_ID;
        /* IV = 0: interrupts are not remapped (README: what is not protected); the
         * pass bits and IntCtl = forward keep them flowing where IV is honoured. */
        e[2] = (1ull << 56) | (1ull << 57) | (1ull << 58) | (1ull << 60) | (1ull << 62) |
               (1ull << 63);
        e[0] = root_pa | AMDVI_DTE_MODE(4) | AMDVI_DTE_IR | AMDVI_DTE_IW | AMDVI_DTE_TV |
               AMDVI_DTE_V;
    }
}

static void cmd_submit(struct dmap_unit *u, uint64_t lo, uint64_t hi)
{
    uint32_t next = (u->cmd_tail + 1) % RING_ENTRIES;
    /* Full when the tail would meet the head: wait for the unit to consume. */
    for (unsigned long i = 0; (uint32_t)(rd64(u, AMDVI_CMD_HEAD) >> 4) == next; i++) {
        if (i == 50000000ul)
            panic("DMAP: AMD-Vi %u: command buffer stuck", u->idx);
        cpu_pause();
    }
    u->cmd[u->cmd_tail * 2] = lo;
    u->cmd[u->cmd_tail * 2 + 1] = hi;
    u->cmd_tail = next;
    wr64(u, AMDVI_CMD_TAIL, (uint64_t)next << 4);
}

/* COMPLETION_WAIT with a store: every earlier command has completed when it lands. */
static void cmd_sync(struct dmap_unit *u)
{
    uint64_t pa = virt_to_phys((const void *)&u->cw_store);
    u->cw_store = 0;
    cmd_submit(u, AMDVI_CMD_OP(AMDVI_CMD_COMPLETION_WAIT) | (pa & 0x000ffffffffffff8ull) |
               AMDVI_CW_STORE, 1);
    for (unsigned long i = 0; u->cw_store != 1; i++) {
        if (i == 50000000ul)
            panic("DMAP: AMD-Vi %u: commands not completed (status %llx)", u->idx,
                  (unsigned long long)rd64(u, AMDVI_STATUS));
        cpu_pause();
    }
}

static void invalidate_all(struct dmap_unit *u)
{
    if (u->efr & AMDVI_EFR_IASUP) {
        cmd_submit(u, AMDVI_CMD_OP(AMDVI_CMD_INV_IOMMU_ALL), 0);
    } else {
        for (unsigned id = 0; id < 0x10000u; id++)
            cmd_submit(u, AMDVI_CMD_OP(AMDVI_CMD_INV_DEVTAB_ENTRY) | id, 0);
        cmd_submit(u, AMDVI_CMD_OP(AMDVI_CMD_INV_IOMMU_PAGES) | ((uint64_t)DOMAIN_ID << 32),
                   AMDVI_INV_ALL_PAGES_HI);
    }
    cmd_sync(u);
}

static void amdvi_enable(struct dmap_unit *u)
{
    if (!devtab_pa)
        build_devtab();
    u->efr = rd64(u, AMDVI_EFR);
    if (u->efr & AMDVI_EFR_PCSUP)
        printk("xmhf: DMAP: AMD-Vi %u: has performance counters beyond the 16 KiB the guest "
               "is kept from\n", u->idx);
    uint64_t ctl = rd64(u, AMDVI_CONTROL);
    if (ctl & AMDVI_CTL_EN) {
        /* The device table base may only change while the IOMMU is off (3.4.1). */
        printk("xmhf: DMAP: AMD-Vi %u: firmware left it on (control %llx): reprogramming\n",
               u->idx, (unsigned long long)ctl);
        wr64(u, AMDVI_CONTROL, 0);
    }
    uint64_t cmd_pa, evt_pa;
    u->cmd = page_alloc(&cmd_pa);
    u->evt = page_alloc(&evt_pa);
    wr64(u, AMDVI_DEVTAB_BASE, devtab_pa | (0x10000u * AMDVI_DTE_SIZE / 4096u - 1u));
    wr64(u, AMDVI_CMDBUF_BASE, cmd_pa | ((uint64_t)AMDVI_RING_LOG2 << AMDVI_LEN_SHIFT));
    wr64(u, AMDVI_EVTLOG_BASE, evt_pa | ((uint64_t)AMDVI_RING_LOG2 << AMDVI_LEN_SHIFT));
    wr64(u, AMDVI_CMD_HEAD, 0);
    wr64(u, AMDVI_CMD_TAIL, 0);
    wr64(u, AMDVI_EVT_HEAD, 0);
    wr64(u, AMDVI_EVT_TAIL, 0);
    u->cmd_tail = 0;
    /* No exclusion range: every DMA is translated. */
    wr64(u, AMDVI_EXCL_BASE, 0);
    wr64(u, AMDVI_EXCL_LIMIT, 0);
    wr64(u, AMDVI_STATUS, AMDVI_STS_EVT_OVERFLOW | AMDVI_STS_EVT_INT | AMDVI_STS_COMWAIT_INT);
    /* Events are polled (dmap_poll), so no event or completion interrupts. The command
     * buffer and the event log are turned on with the IOMMU itself: some implementations
     * (QEMU's) run commands only while IommuEn is set. The device table is complete by
     * now, so what the invalidation just after covers is only what firmware left cached. */
    ctl = AMDVI_CTL_CMDBUF_EN | AMDVI_CTL_EVTLOG_EN | AMDVI_CTL_INVTIMEOUT_1S |
          AMDVI_CTL_COHERENT;
    wr64(u, AMDVI_CONTROL, ctl | AMDVI_CTL_EN);
    if (!(rd64(u, AMDVI_CONTROL) & AMDVI_CTL_EN))
        panic("DMAP: AMD-Vi %u: IommuEn does not stick", u->idx);
    invalidate_all(u);
    printk("xmhf: DMAP: AMD-Vi %u at %llx (its requester ID %02x:%02x.%u; IVHD names IDs "
           "up to %x): EFR %llx, %s invalidation, device table for all 65536 IDs: "
           "translation on\n", u->idx, (unsigned long long)u->base, u->devid >> 8,
           (u->devid >> 3) & 0x1f, u->devid & 7, u->devid_max, (unsigned long long)u->efr,
           (u->efr & AMDVI_EFR_IASUP) ? "INVALIDATE_IOMMU_ALL" : "per-entry");
}

static const char *event_name(unsigned code)
{
    switch (code) {
    case AMDVI_EVT_ILLEGAL_DTE:      return "AMD-Vi ILLEGAL_DEV_TABLE_ENTRY";
    case AMDVI_EVT_IO_PAGE_FAULT:    return "AMD-Vi IO_PAGE_FAULT";
    case AMDVI_EVT_DEVTAB_HW_ERROR:  return "AMD-Vi DEV_TAB_HARDWARE_ERROR";
    case AMDVI_EVT_PAGETAB_HW_ERROR: return "AMD-Vi PAGE_TAB_HARDWARE_ERROR";
    case AMDVI_EVT_ILLEGAL_COMMAND:  return "AMD-Vi ILLEGAL_COMMAND_ERROR";
    case AMDVI_EVT_COMMAND_HW_ERROR: return "AMD-Vi COMMAND_HARDWARE_ERROR";
    default:                         return "AMD-Vi event";
    }
}

/* The event log between head and tail (2.5 "Event Logging"): each entry is reported,
 * then the head moves past it. */
static void amdvi_poll(struct dmap_unit *u)
{
    uint32_t head = (uint32_t)(rd64(u, AMDVI_EVT_HEAD) >> 4) % RING_ENTRIES;
    uint32_t tail = (uint32_t)(rd64(u, AMDVI_EVT_TAIL) >> 4) % RING_ENTRIES;
    while (head != tail) {
        const volatile uint64_t *e = (const volatile uint64_t *)(u->evt + head * AMDVI_EVT_SIZE);
        uint64_t lo = e[0], addr = e[1];
        unsigned code = AMDVI_EVT_CODE(lo);
        dmap_fault(u, code == AMDVI_EVT_ILLEGAL_COMMAND || code == AMDVI_EVT_COMMAND_HW_ERROR
                   ? 0 : AMDVI_EVT_DEVID(lo), addr,
                   code == AMDVI_EVT_IO_PAGE_FAULT ? (lo & AMDVI_EVT_IOPF_RW) != 0 : -1,
                   event_name(code), code);
        head = (head + 1) % RING_ENTRIES;
        wr64(u, AMDVI_EVT_HEAD, (uint64_t)head << 4);
    }
    uint64_t sts = rd64(u, AMDVI_STATUS);
    if (sts & AMDVI_STS_EVT_OVERFLOW) {
        /* Logging stops on overflow until the log is emptied and re-enabled (3.4.11). */
        printk("xmhf: DMAP: AMD-Vi %u: event log overflowed: some faults were not "
               "recorded\n", u->idx);
        uint64_t ctl = rd64(u, AMDVI_CONTROL);
        wr64(u, AMDVI_CONTROL, ctl & ~AMDVI_CTL_EVTLOG_EN);
        wr64(u, AMDVI_STATUS, AMDVI_STS_EVT_OVERFLOW);
        wr64(u, AMDVI_EVT_HEAD, 0);
        wr64(u, AMDVI_EVT_TAIL, 0);
        wr64(u, AMDVI_CONTROL, ctl | AMDVI_CTL_EVTLOG_EN);
    }
}

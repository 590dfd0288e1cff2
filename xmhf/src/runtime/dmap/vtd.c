/* Intel VT-d: every DMA-remapping unit of the DMAR table translates every bus, device and
 * function through one context table whose entries all name the shared identity tables
 * (legacy mode, second-level translation, one domain). Spec references in vtd.h. */
#include "dmap-int.h"
#include "vtd.h"

#define DOMAIN_ID 1u    /* 0 is reserved when CAP.CM is set */

static void vtd_enable(struct dmap_unit *u);
static void vtd_poll(struct dmap_unit *u);

int vtd_parse(struct acpi_header *dmar)
{
    const uint8_t *t = (const uint8_t *)dmar;
    if (dmar->length < DMAR_STRUCT_OFFSET) {
        printk("xmhf: DMAP: DMAR table too short (%u bytes)\n", dmar->length);
        return -1;
    }
    unsigned drhds = 0, rmrrs = 0;
    for (const uint8_t *s = acpi_sub_next(dmar, DMAR_STRUCT_OFFSET, NULL); s;
         s = acpi_sub_next(dmar, DMAR_STRUCT_OFFSET, s)) {
        uint16_t type = (uint16_t)(s[0] | (s[1] << 8));
        uint16_t len = (uint16_t)(s[2] | (s[3] << 8));
        if (type == DMAR_TYPE_DRHD && len >= sizeof(struct dmar_drhd)) {
            struct dmar_drhd d;
            memcpy(&d, s, sizeof(d));
            uint64_t size = (uint64_t)VTD_REG_PAGE << (d.size < 8 ? d.size : 0);
            struct dmap_unit *u = dmap_unit_add("VT-d", d.base, size);
            drhds++;
            if (!u)
                continue;
            u->include_all = d.flags & DRHD_INCLUDE_PCI_ALL;
            for (uint32_t o = sizeof(d); o + sizeof(struct dmar_scope) <= len && s[o + 1] >= 6;
                 o += s[o + 1])
                u->scopes++;
            u->enable = vtd_enable;
            u->poll = vtd_poll;
        } else if (type == DMAR_TYPE_RMRR && len >= sizeof(struct dmar_rmrr)) {
            struct dmar_rmrr r;
            memcpy(&r, s, sizeof(r));
            rmrrs++;
            /* The identity map already gives a device its RMRR unless it lies in what the
             * map leaves out. */
            dmap_check_reserved("VT-d RMRR", r.base, r.limit + 1);
        }
    }
    if (drhds == 0) {
        printk("xmhf: DMAP: DMAR table lists no remapping unit\n");
        return -1;
    }
    printk("xmhf: DMAP: DMAR: %u remapping unit(s), %u reserved region(s) (RMRR), host "
           "address width %u, flags %x\n", drhds, rmrrs, t[DMAR_HAW_OFFSET] + 1u,
           t[DMAR_FLAGS_OFFSET]);
    return 0;
}

static uint32_t gsts_persist(struct dmap_unit *u)
{
    return rd32(u, VTD_GSTS) & VTD_GCMD_PERSIST;
}

/* One global command: written with the persistent state kept, then waited for. */
static void gcmd(struct dmap_unit *u, uint32_t set, uint32_t sts_mask, uint32_t sts_want,
                 const char *what)
{
    wr32(u, VTD_GCMD, gsts_persist(u) | set);
    if (!dmap_wait32(u, VTD_GSTS, sts_mask, sts_want))
        panic("DMAP: VT-d %u at %llx: %s did not complete (GSTS %x)", u->idx,
              (unsigned long long)u->base, what, rd32(u, VTD_GSTS));
}

static void qi_submit(struct dmap_unit *u, uint64_t lo, uint64_t hi)
{
    uint32_t slot = u->qi_tail;
    u->qi[slot * 2] = lo;
    u->qi[slot * 2 + 1] = hi;
    u->qi_tail = (slot + 1) % 256u;
    wr64(u, VTD_IQT, (uint64_t)u->qi_tail << 4);
}

/* Global context-cache and IOTLB invalidation (6.5 "Caching Mode and Invalidation"):
 * queued when the unit has a queue, else through the registers. */
static void invalidate_all(struct dmap_unit *u)
{
    if (u->cap & VTD_CAP_RWBF)
        gcmd(u, VTD_GCMD_WBF, VTD_GCMD_WBF, 0, "write-buffer flush");
    if (u->qi) {
        u->qi_status = 0;
        qi_submit(u, VTD_QI_CC_GLOBAL, 0);
        qi_submit(u, VTD_QI_IOTLB_GLOBAL, 0);
        qi_submit(u, VTD_QI_WAIT_SW | (1ull << 32), virt_to_phys((const void *)&u->qi_status));
        for (unsigned long i = 0; u->qi_status != 1; i++) {
            if (i == 50000000ul || (rd32(u, VTD_FSTS) & 0x70u))
                panic("DMAP: VT-d %u: queued invalidation failed (FSTS %x)", u->idx,
                      rd32(u, VTD_FSTS));
            cpu_pause();
        }
        return;
    }
    wr64(u, VTD_CCMD, VTD_CCMD_ICC | VTD_CCMD_GLOBAL);
    if (!dmap_wait64(u, VTD_CCMD, VTD_CCMD_ICC, 0))
        panic("DMAP: VT-d %u: context-cache invalidation did not complete", u->idx);
    uint32_t iotlb = VTD_ECAP_IRO(u->ecap) + 8u;
    wr64(u, iotlb, VTD_IOTLB_IVT | VTD_IOTLB_GLOBAL | VTD_IOTLB_DR | VTD_IOTLB_DW);
    if (!dmap_wait64(u, iotlb, VTD_IOTLB_IVT, 0))
        panic("DMAP: VT-d %u: IOTLB invalidation did not complete", u->idx);
}

static void vtd_enable(struct dmap_unit *u)
{
    u->cap = rd64(u, VTD_CAP);
    u->ecap = rd64(u, VTD_ECAP);
    uint32_t ver = rd32(u, VTD_VER);
    unsigned sagaw = VTD_CAP_SAGAW(u->cap);
    unsigned levels = (sagaw & 4u) ? 4 : (sagaw & 2u) ? 3 : 0;
    if (!levels)
        panic("DMAP: VT-d %u: neither 3- nor 4-level tables (SAGAW %x)", u->idx, sagaw);
    if (!(VTD_CAP_SLLPS(u->cap) & 1u))
        panic("DMAP: VT-d %u: no 2 MiB second-level pages (the identity tables use them)",
              u->idx);
    if (VTD_ECAP_IRO(u->ecap) + 16u > u->size || VTD_CAP_FRO(u->cap) +
        16u * VTD_CAP_NFR(u->cap) > u->size)
        panic("DMAP: VT-d %u: registers beyond the block the DMAR gives", u->idx);
    uint64_t root_pa;
    uint64_t *sl = dmap_tables(IOPT_VTD, &root_pa);
    uint64_t sl_pa = levels == 4 ? root_pa : (sl[0] & PT_ADDR_MASK);

    /* Root and context tables (9.1, 9.3): every bus shares one context table, every
     * device function the same domain and second-level tables. */
    uint64_t rt_pa, ct_pa;
    uint64_t *rt = page_alloc(&rt_pa), *ct = page_alloc(&ct_pa);
    for (unsigned i = 0; i < 256; i++) {
        ct[2 * i + 1] = (levels == 4 ? VTD_CTX_AW_48 : VTD_CTX_AW_39) | VTD_CTX_DID(DOMAIN_ID);
        ct[2 * i] = sl_pa | VTD_CTX_TT_SL | VTD_CTX_P;
        rt[2 * i] = ct_pa | VTD_ROOT_P;
    }
    /* A unit that does not snoop its page walks reads memory, not the caches. */
    if (!(u->ecap & VTD_ECAP_C))
        __asm__ volatile("wbinvd" ::: "memory");

    uint32_t was = rd32(u, VTD_GSTS);
    if (was & (VTD_GCMD_TE | VTD_GCMD_QIE | VTD_GCMD_IRE))
        printk("xmhf: DMAP: VT-d %u: firmware left it on (GSTS %x): reprogramming\n", u->idx,
               was);
    /* Faults are collected by polling (dmap_poll): no interrupt into a guest's IDT. */
    wr32(u, VTD_FECTL, VTD_FECTL_IM);
    vtd_poll(u);    /* anything recorded before us is reported, then cleared */

    wr64(u, VTD_RTADDR, rt_pa);
    gcmd(u, VTD_GCMD_SRTP, VTD_GCMD_SRTP, VTD_GCMD_SRTP, "set root-table pointer");
    /* Register-based invalidation is refused while queued invalidation is on, and some
     * units have only the queue: use the queue where the unit has one. */
    if ((u->ecap & VTD_ECAP_QI) && !(rd32(u, VTD_GSTS) & VTD_GCMD_QIE)) {
        uint64_t q_pa;
        u->qi = page_alloc(&q_pa);
        u->qi_tail = 0;
        wr64(u, VTD_IQT, 0);
        wr64(u, VTD_IQA, q_pa | VTD_IQA_QS_4K);
        gcmd(u, VTD_GCMD_QIE, VTD_GCMD_QIE, VTD_GCMD_QIE, "enable queued invalidation");
    } else if (u->ecap & VTD_ECAP_QI) {
        panic("DMAP: VT-d %u: queued invalidation already on with the firmware's queue",
              u->idx);
    }
    invalidate_all(u);
    gcmd(u, VTD_GCMD_TE, VTD_GCMD_TE, VTD_GCMD_TE, "enable translation");
    /* Protected-memory regions only ever block more; with translation on they are not
     * needed (11.4.13), so a firmware's PMRs are turned off. */
    if (rd32(u, VTD_PMEN) & VTD_PMEN_EPM) {
        wr32(u, VTD_PMEN, 0);
        dmap_wait32(u, VTD_PMEN, VTD_PMEN_PRS, 0);
    }
    printk("xmhf: DMAP: VT-d %u at %llx: version %u.%u, %u-level tables, %s invalidation, "
           "%u fault record(s), DRHD %s with %u device scope(s); every bus translated: "
           "translation on\n", u->idx, (unsigned long long)u->base, (ver >> 4) & 0xf,
           ver & 0xf, levels, u->qi ? "queued" : "register-based", VTD_CAP_NFR(u->cap),
           u->include_all ? "INCLUDE_PCI_ALL" : "scoped", u->scopes);
}

/* Fault recording registers (7.2.1 "Primary Fault Logging"): each recorded fault is
 * reported and its F bit cleared (write 1). */
static void vtd_poll(struct dmap_unit *u)
{
    uint32_t fsts = rd32(u, VTD_FSTS);
    if (!(fsts & (VTD_FSTS_PPF | VTD_FSTS_PFO)))
        return;
    unsigned nfr = VTD_CAP_NFR(u->cap), fro = VTD_CAP_FRO(u->cap);
    unsigned i = (unsigned)VTD_FSTS_FRI(fsts) % nfr;
    for (unsigned n = 0; n < nfr; n++, i = (i + 1) % nfr) {
        uint32_t off = fro + 16u * i;
        uint64_t hi = rd64(u, off + 8);
        if (!(hi & VTD_FRCD_HI_F))
            continue;
        uint64_t lo = rd64(u, off);
        wr64(u, off + 8, VTD_FRCD_HI_F);
        dmap_fault(u, VTD_FRCD_HI_SID(hi), VTD_FRCD_LO_FI(lo), !(hi & VTD_FRCD_HI_T),
                   "VT-d fault reason", VTD_FRCD_HI_FR(hi));
    }
    if (fsts & VTD_FSTS_PFO)
        printk("xmhf: DMAP: VT-d %u: fault records overflowed: some faults were not "
               "recorded\n", u->idx);
    wr32(u, VTD_FSTS, fsts & VTD_FSTS_RW1C);
}

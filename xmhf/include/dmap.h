/* DMA protection (DMAP): every DMA-capable device is translated by the platform's IOMMU
 * (Intel VT-d or AMD-Vi, whichever the ACPI tables describe) through identity tables
 * that leave out the hypervisor's region and the IOMMUs' own registers.
 *
 * The first half is pure logic shared with the host unit tests (xmhf/src/lib/iopt.c):
 * building the I/O page tables, walking the ACPI structures, hiding a table from the
 * guest's ACPI view. The second half is the runtime's interface (src/runtime/dmap/). */
#ifndef XMHF_DMAP_H
#define XMHF_DMAP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "acpi.h"
#include "pagetable.h"

/* Heap init reserves for it: the AMD-Vi device table (65536 entries of 32 bytes), the
 * identity tables of both formats, rings and root/context tables. */
#define DMAP_HEAP_SIZE (0x200000ull + 0x40000ull)

/* A physical range [base, base + size). */
struct dmap_range {
    uint64_t base, size;
};

enum iopt_format {
    IOPT_VTD,       /* VT-d second-level entries (vtd.h): R|W, PS for 2 MiB leaves */
    IOPT_AMDVI,     /* AMD-Vi host page-table entries (amdvi.h): PR, NextLevel, IR|IW */
};

/* Builds, into the zeroed 4-level table `root`, a read/write identity map of [0, top)
 * minus the holes (every range rounded out to 4 KiB), 2 MiB leaves wherever a 2 MiB
 * block is wholly mapped, 4 KiB leaves elsewhere. top is 2 MiB aligned, at most 2^48.
 * 0, or -1 when the allocator runs dry or the input is invalid. The AMD-Vi result is
 * for DTE.Mode = 4 (its root entries name level 3 tables) and can no longer be changed
 * through pagetable.h. */
int iopt_identity(enum iopt_format fmt, uint64_t *root, uint64_t top,
                  const struct dmap_range *holes, unsigned nholes, const struct pt_alloc *a);

/* The physical address `in` translates to through a table built by iopt_identity, or -1
 * when a DMA to it faults. levels = 4 (root as built) or 3 (root = the table root[0]
 * points at, the VT-d 39-bit form). Used by the unit tests and the boot-time self-check. */
int64_t iopt_translate(enum iopt_format fmt, const uint64_t *root, unsigned levels,
                       uint64_t in, const struct pt_alloc *a);

/* ACPI: the next structure of a DMAR or IVRS table (both lay structures out as
 * type, ..., uint16 length at offset 2), starting at byte `first` of the table when prev
 * is NULL. NULL at the end or at a malformed structure (length < 4 or past the table). */
const uint8_t *acpi_sub_next(const struct acpi_header *t, uint32_t first, const uint8_t *prev);

/* The highest PCI requester ID an IVHD block's device entries name (0xffff for the
 * "all" entry), or -1 when an entry is malformed or runs past the block. */
int ivhd_devid_max(const uint8_t *ivhd, uint32_t len);

/* Sets the checksum byte so that the table's bytes sum to 0. */
void acpi_fix_checksum(struct acpi_header *h);

/* Removes every pointer to `pa` from an RSDT (width 4) or XSDT (width 8), shifting the
 * later ones down, shrinking the length and fixing the checksum. Returns how many
 * were removed. */
unsigned acpi_root_remove(struct acpi_header *root, unsigned width, uint64_t pa);

/* FNV-1a, 64-bit: the image checksum the DMA test asks for. */
uint64_t dmap_fnv1a(const void *p, size_t n);

/* ---- runtime ---- */
/* Finds the IOMMUs in ACPI and turns DMA translation on (BSP, before the nested page
 * tables are built and before the guest runs). Panics when an IOMMU is there but cannot
 * be brought up, rather than start the guest unprotected. Says in the boot log when
 * there is none, or when dmap=off / --disable-dmap turned it off. */
void dmap_init(void);
/* The IOMMUs' register ranges (count in *n): the nested page tables leave them out,
 * gpa_in_hypervisor() counts them as the hypervisor's. */
const struct dmap_range *dmap_mmio_ranges(unsigned *n);
/* Collects recorded translation faults into the log (rate-limited) and the counter.
 * Cheap when nothing is due: called on every VM exit; polls the hardware at most once
 * per DMAP_POLL_TICKS TSC ticks unless force. */
void dmap_poll(bool force);
/* Machine-wide: translation faults recorded so far, units translating. */
uint64_t dmap_fault_count(void);
unsigned dmap_units_active(void);
unsigned dmap_kinds(void);          /* DMAP_KIND_* of the units translating */
#define DMAP_KIND_VTD   1u
#define DMAP_KIND_AMDVI 2u
uint64_t dmap_first_unit_base(void);

#endif

/* E820 map editing (contract in e820.h).
 *
 * Ranges are handled internally as [base, last] with an inclusive last byte: a range that
 * ends exactly at 2^64 is legal in a firmware map, and its exclusive end does not fit in
 * 64 bits. Everything is O(n^2) over at most E820_MAX entries: this runs once at boot and
 * simple loops are easier to trust than a clever sort. No 64-bit division anywhere (the
 * -m32 build has no libgcc). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "e820.h"

/* The 32-bit init hands the map to the 64-bit runtime as raw bytes (bootparams.h), so the
 * layout must not depend on the ABI: i386 would align uint64_t to 4 and make the entry 20
 * bytes, hence the _Alignas in e820.h. */
_Static_assert(offsetof(struct e820_entry, base) == 0, "e820_entry.base");
_Static_assert(offsetof(struct e820_entry, length) == 8, "e820_entry.length");
_Static_assert(offsetof(struct e820_entry, type) == 16, "e820_entry.type");
_Static_assert(sizeof(struct e820_entry) == 24, "e820_entry size, both ABIs");
_Static_assert(E820_MAX >= 2, "a full-space range needs two entries");

static uint64_t last_of(const struct e820_entry *e)
{
    return e->base + (e->length - 1);
}

static void set_entry(struct e820_entry *e, uint64_t base, uint64_t last, uint32_t type)
{
    e->base = base;
    e->length = last - base + 1;
    e->type = type;
}

static void copy_entry(struct e820_entry *dst, const struct e820_entry *src)
{
    dst->base = src->base;
    dst->length = src->length;
    dst->type = src->type;
}

/* [0, 2^64) has a length of 2^64, which a 64-bit length cannot hold: such a range is
 * stored as two halves. That is the only case where two adjacent entries share a type. */
static bool is_full_space(uint64_t base, uint64_t last)
{
    return base == 0 && last == UINT64_MAX;
}

/* --- sanitize ----------------------------------------------------------------------- */

/* Sanitize reads the firmware's entries as they are, without rewriting them first, so that
 * a map it rejects is left exactly as it came: an empty entry is skipped, one running past
 * 2^64 is clamped to end there, and type 0 (undefined by ACPI) reads as reserved, which
 * also keeps it apart from the 0 that type_at returns for "not covered". */
static bool fw_range(const struct e820_entry *e, uint64_t *last)
{
    if (e->length == 0)
        return false;
    *last = e->length - 1 > UINT64_MAX - e->base ? UINT64_MAX : e->base + (e->length - 1);
    return true;
}

static uint32_t fw_type(const struct e820_entry *e)
{
    return e->type == 0 ? E820_RESERVED : e->type;
}

/* Highest type among the entries containing addr; 0 when none does. */
static uint32_t type_at(const struct e820_map *m, uint64_t addr)
{
    uint32_t t = 0;
    uint64_t last;

    for (uint32_t i = 0; i < m->count; i++)
        if (fw_range(&m->e[i], &last) && m->e[i].base <= addr && addr <= last &&
            fw_type(&m->e[i]) > t)
            t = fw_type(&m->e[i]);
    return t;
}

/* Smallest entry boundary strictly above addr (a base, or a last + 1). false when there is
 * none, i.e. everything from addr up to 2^64 - 1 looks the same. */
static bool next_boundary(const struct e820_map *m, uint64_t addr, uint64_t *b)
{
    bool found = false;
    uint64_t best = 0, last, cand;

    for (uint32_t i = 0; i < m->count; i++) {
        if (!fw_range(&m->e[i], &last))
            continue;
        if (m->e[i].base > addr)
            cand = m->e[i].base;
        else if (last >= addr && last != UINT64_MAX)
            cand = last + 1;
        else
            continue;
        if (!found || cand < best) {
            best = cand;
            found = true;
        }
    }
    *b = best;
    return found;
}

/* Lowest base above addr: where coverage resumes after a hole. */
static bool next_base(const struct e820_map *m, uint64_t addr, uint64_t *b)
{
    bool found = false;
    uint64_t best = 0, last;

    for (uint32_t i = 0; i < m->count; i++)
        if (fw_range(&m->e[i], &last) && m->e[i].base > addr &&
            (!found || m->e[i].base < best)) {
            best = m->e[i].base;
            found = true;
        }
    *b = best;
    return found;
}

int e820_sanitize(struct e820_map *m)
{
    /* The result is built aside and only copied back once it is known to fit, so a
     * failure leaves the firmware's map as it was. ~3 KiB of stack. */
    struct e820_entry out[E820_MAX];
    uint32_t k = 0;
    uint64_t pos = 0;

    if (m->count > E820_MAX)
        return -1;

    /* Sweep upwards through the elementary intervals between boundaries, emitting one entry
     * per maximal run of one winning type. Adjacent output entries therefore always differ
     * in type, which is the "merged" property. Each boundary is visited once and costs
     * O(n): O(n^2) in all. */
    for (;;) {
        uint32_t t = type_at(m, pos);
        uint64_t cur = pos, b, seg_last;

        if (t == 0) {
            if (!next_base(m, pos, &pos))
                break;
            continue;
        }
        for (;;) {
            if (!next_boundary(m, cur, &b)) {
                seg_last = UINT64_MAX;
                break;
            }
            if (type_at(m, b) != t) {
                seg_last = b - 1;
                break;
            }
            cur = b;
        }

        if (is_full_space(pos, seg_last)) {
            set_entry(&out[0], 0, UINT64_MAX >> 1, t);
            set_entry(&out[1], (UINT64_MAX >> 1) + 1, UINT64_MAX, t);
            k = 2;
            break;
        }
        if (k == E820_MAX)
            return -1;
        set_entry(&out[k++], pos, seg_last, t);
        if (seg_last == UINT64_MAX)
            break;
        pos = seg_last + 1;
    }

    for (uint32_t i = 0; i < k; i++)
        copy_entry(&m->e[i], &out[i]);
    m->count = k;
    return 0;
}

/* --- set_range ---------------------------------------------------------------------- */

int e820_set_range(struct e820_map *m, uint64_t base, uint64_t len, uint32_t type)
{
    struct e820_entry *e = m->e;
    uint32_t n = m->count, i, j, newcount, dst;
    uint64_t nb = base, nl;
    bool has_left, has_right;
    struct e820_entry left, right;

    if (len == 0)
        return 0;
    if (len - 1 > UINT64_MAX - base || n > E820_MAX)
        return -1;
    nl = base + (len - 1);

    /* Same-type entries touching or overlapping the range are absorbed into it, so the
     * result stays merged. One pass suffices: in a sanitized map same-type entries are
     * never adjacent, so absorbing one cannot make the range touch another. */
    for (i = 0; i < n; i++) {
        uint64_t last = last_of(&e[i]);

        if (e[i].type != type)
            continue;
        if ((nb == 0 || last >= nb - 1) && (nl == UINT64_MAX || e[i].base <= nl + 1)) {
            if (e[i].base < nb)
                nb = e[i].base;
            if (last > nl)
                nl = last;
        }
    }

    if (is_full_space(nb, nl)) {
        set_entry(&e[0], 0, UINT64_MAX >> 1, type);
        set_entry(&e[1], (UINT64_MAX >> 1) + 1, UINT64_MAX, type);
        m->count = 2;
        return 0;
    }

    /* [0, i): wholly below; [i, j): intersecting [nb, nl]; [j, n): wholly above. Only
     * e[i] can stick out below and only e[j-1] above (they may be the same entry when the
     * range splits it in the middle). */
    for (i = 0; i < n && last_of(&e[i]) < nb; i++)
        ;
    for (j = i; j < n && e[j].base <= nl; j++)
        ;
    has_left = i < j && e[i].base < nb;
    has_right = i < j && last_of(&e[j - 1]) > nl;
    if (has_left)
        copy_entry(&left, &e[i]);
    if (has_right)
        copy_entry(&right, &e[j - 1]);

    dst = i + (has_left ? 1u : 0u) + 1u + (has_right ? 1u : 0u);
    newcount = dst + (n - j);
    if (newcount > E820_MAX)
        return -1;

    /* Move the entries above the range into place; the direction of the copy depends on
     * whether the map grows or shrinks, as with memmove. */
    if (dst > j) {
        for (uint32_t k = n; k > j; k--)
            copy_entry(&e[dst + (k - 1 - j)], &e[k - 1]);
    } else if (dst < j) {
        for (uint32_t k = j; k < n; k++)
            copy_entry(&e[dst + (k - j)], &e[k]);
    }

    if (has_left) {
        set_entry(&e[i], left.base, nb - 1, left.type);
        i++;
    }
    set_entry(&e[i++], nb, nl, type);
    if (has_right)
        set_entry(&e[i], nl + 1, last_of(&right), right.type);
    m->count = newcount;
    return 0;
}

/* --- queries ------------------------------------------------------------------------ */

bool e820_range_is(const struct e820_map *m, uint64_t base, uint64_t len, uint32_t type)
{
    uint32_t n = m->count > E820_MAX ? E820_MAX : m->count;
    uint64_t pos = base, last;

    if (len == 0)
        return true;
    /* A range past 2^64 is not a range of memory at all; answering "no" is the safe side
     * for a caller asking "may I use this?". */
    if (len - 1 > UINT64_MAX - base)
        return false;
    last = base + (len - 1);

    /* Walk up through the entries covering pos; does not rely on the map being sorted. */
    for (;;) {
        uint32_t i;

        for (i = 0; i < n; i++)
            if (m->e[i].type == type && m->e[i].length != 0 && m->e[i].base <= pos &&
                pos <= last_of(&m->e[i]))
                break;
        if (i == n)
            return false;
        if (last_of(&m->e[i]) >= last)
            return true;
        pos = last_of(&m->e[i]) + 1;
    }
}

bool e820_range_touches(const struct e820_map *m, uint64_t base, uint64_t len,
                        uint32_t type)
{
    uint32_t n = m->count > E820_MAX ? E820_MAX : m->count;
    uint64_t last;

    if (len == 0)
        return false;
    /* Clamped rather than refused: "touches" is asked to find conflicts, so answering for
     * the part that exists errs on the safe side. */
    last = len - 1 > UINT64_MAX - base ? UINT64_MAX : base + (len - 1);

    for (uint32_t i = 0; i < n; i++)
        if (m->e[i].type == type && m->e[i].length != 0 && m->e[i].base <= last &&
            last_of(&m->e[i]) >= base)
            return true;
    return false;
}

int e820_find_top(const struct e820_map *m, uint64_t size, uint64_t align, uint64_t limit,
                  uint64_t *out)
{
    uint32_t n = m->count > E820_MAX ? E820_MAX : m->count;
    bool found = false;
    uint64_t best = 0;

    if (size == 0 || align == 0 || (align & (align - 1)) != 0 || limit < size)
        return -1;

    /* The best placement ends in some RAM entry: for each entry, try the highest aligned
     * base whose range ends inside it (and below limit), then check the whole range, which
     * may start in a lower adjacent entry. */
    for (uint32_t i = 0; i < n; i++) {
        uint64_t top, cand;

        if (m->e[i].type != E820_RAM || m->e[i].length == 0)
            continue;
        top = last_of(&m->e[i]);
        if (top > limit - 1)
            top = limit - 1;
        if (top < m->e[i].base || top < size - 1)
            continue;
        cand = (top - (size - 1)) & ~(align - 1);
        if ((!found || cand > best) && e820_range_is(m, cand, size, E820_RAM)) {
            best = cand;
            found = true;
        }
    }
    if (!found)
        return -1;
    *out = best;
    return 0;
}

uint64_t e820_ram_top(const struct e820_map *m)
{
    uint32_t n = m->count > E820_MAX ? E820_MAX : m->count;
    uint64_t top = 0;

    for (uint32_t i = 0; i < n; i++) {
        uint64_t last;

        if (m->e[i].type != E820_RAM || m->e[i].length == 0)
            continue;
        last = last_of(&m->e[i]);
        /* RAM reaching the very top of the address space: one past it is 2^64, which
         * saturates. */
        if (last == UINT64_MAX)
            return UINT64_MAX;
        if (last + 1 > top)
            top = last + 1;
    }
    return top;
}

int e820_clip(struct e820_map *m, uint64_t limit)
{
    if (limit == 0 || (limit & 0xfffu))
        return -1;
    int changed = 0;
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->count; i++) {
        struct e820_entry e;
        copy_entry(&e, &m->e[i]);
        if (e.length == 0 || e.base >= limit) {
            changed++;
            continue;
        }
        if (last_of(&e) >= limit) {
            e.length = limit - e.base;
            changed++;
        }
        copy_entry(&m->e[n++], &e);
    }
    m->count = n;
    return changed;
}

/* The guest page walk (gwalk.h) over a small guest-physical memory taken from the input
 * (reads outside it fail, as the hypervisor's refusal of memory would), in every paging
 * mode the control registers can select. Invariants: the walk never reads outside the
 * memory it is given, translate and a read access agree, a write access agrees with
 * translate whenever it succeeds, a successful translation keeps the page offset,
 * gwalk_read returns what the translated bytes hold, and the A/D updates touch only
 * aligned entries inside the memory, set only A and (once, on a write) D, and leave the
 * translation as it was. */
#include "fuzz.h"
#include "gwalk.h"

#define MEM (64 * 1024)
static uint8_t mem[MEM];

static int rd(void *ctx, uint64_t gpa, void *buf, unsigned n)
{
    (void)ctx;
    if (gpa >= MEM || n > MEM - gpa)
        return -1;
    memcpy(buf, mem + gpa, n);
    return 0;
}

static unsigned dirty_sets;

static int set_bits(void *ctx, uint64_t gpa, unsigned size, uint64_t bits)
{
    (void)ctx;
    CHECK(size == 4 || size == 8);
    CHECK((gpa & (size - 1)) == 0 && gpa < MEM && size <= MEM - gpa);
    CHECK(bits == 0x20 || bits == 0x60);
    dirty_sets += bits == 0x60;
    uint64_t v = 0;
    memcpy(&v, mem + gpa, size);
    v |= bits;
    memcpy(mem + gpa, &v, size);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = { data, size };
    memset(mem, 0, MEM);
    struct gwalk g;
    g.cr0 = take(&in, 4) | ((take(&in, 1) & 1) ? 1ull << 31 : 0);
    g.cr3 = take(&in, 2) & ~0xfull;
    g.cr4 = take(&in, 2);
    g.efer = take(&in, 2);
    g.read = rd;
    g.ctx = NULL;
    g.set_bits = (take(&in, 1) & 1) ? set_bits : NULL;
    uint64_t la = take(&in, 8);
    /* the rest of the input is guest memory, laid out from the root on */
    size_t n = in.n < MEM ? in.n : MEM;
    memcpy(mem, in.p, n);
    uint64_t gpa, gpa2;
    uint32_t err;
    int t = gwalk_translate(&g, la, &gpa);
    int ra = gwalk_access(&g, la, 0, &gpa2, &err);
    CHECK(t == ra);
    if (t == 0) {
        CHECK(gpa == gpa2);
        CHECK((gpa & 0xfff) == (la & 0xfff));
        uint8_t b;
        if (rd(NULL, gpa, &b, 1) == 0) {
            uint8_t b2;
            CHECK(gwalk_read(&g, la, &b2, 1) == 0 && b2 == b);
        }
    } else {
        CHECK(err == 0);
    }
    dirty_sets = 0;
    if (gwalk_access(&g, la, 1, &gpa2, &err) == 0) {
        CHECK(t == 0 && gpa2 == gpa);
        CHECK(dirty_sets == (g.set_bits && (g.cr0 >> 31) ? 1u : 0u));
        uint64_t gpa3;
        CHECK(gwalk_translate(&g, la, &gpa3) == 0 && gpa3 == gpa);
    } else {
        CHECK(err == 2 || err == 3);
        CHECK(dirty_sets == 0);
    }
    return 0;
}

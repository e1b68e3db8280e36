/* The rate-limit table every worker process shares: a header and a fixed array of slots in
 * one MAP_SHARED mapping (a memfd the supervisor creates). Each client key owns one slot
 * holding its GCRA "theoretical arrival time" (TAT). Every change to a slot is one
 * compare-and-swap on its 64-bit state word, so processes never wait on a lock and a
 * process that dies mid-update leaves nothing held.
 *
 * state == 0                    empty
 * state == tat << 1             owned by `key`; the bucket is full again at `tat`
 * state == (claimed_at << 1)|1  being (re)assigned to a new key by some process
 *
 * Times are CLOCK_MONOTONIC nanoseconds, the same clock in every process.
 */
#include <stdint.h>

#include "rate_table.h"

#define RT_MAGIC 0x315441525f475050ULL /* "PPG_RAT1" */
#define RT_PROBE 8                     /* slots a key may live in: its home and the next 7 */
#define RT_CLAIM_STALE_NS 1000000000LL /* a claim this old was left by a dead process */
#define RT_BUSY_RESCANS 64             /* rescans while another process inserts nearby */
#define RT_MAX_ATTEMPTS 1000           /* lost races before giving up (answer: allowed) */

typedef struct rt_header {
    uint64_t magic;
    uint64_t capacity;
    uint64_t seed; /* random per table: clients cannot aim their keys at one probe window */
    uint64_t reserved[5];
} rt_header;

typedef struct rt_slot {
    uint64_t key;
    uint64_t state;
} rt_slot;

size_t rt_bytes(uint64_t capacity) { return sizeof(rt_header) + capacity * sizeof(rt_slot); }

void rt_init(void *mem, uint64_t capacity, uint64_t seed) {
    rt_header *h = mem;
    h->capacity = capacity;
    h->seed = seed;
    __atomic_store_n(&h->magic, RT_MAGIC, __ATOMIC_RELEASE);
}

int rt_valid(const void *mem, size_t size) {
    const rt_header *h = mem;
    if (size < sizeof(rt_header) || __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != RT_MAGIC)
        return 0;
    return h->capacity > 0 && rt_bytes(h->capacity) <= size;
}

uint64_t rt_capacity(const void *mem) { return ((const rt_header *)mem)->capacity; }

static uint64_t mix(uint64_t x) { /* splitmix64's finalizer: every input bit moves the index */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Lower is a better slot to give a new key: one that holds nothing worth keeping. */
enum { FREE = 0, EXPIRED = 1, LIVE = 2, NONE = 3 };

int rt_take(void *mem, uint64_t key, int64_t now, int64_t interval, int64_t tolerance,
            int64_t *tat_out) {
    rt_header *h = mem;
    rt_slot *slots = (rt_slot *)(h + 1);
    uint64_t cap = h->capacity;
    uint64_t home = mix(key ^ h->seed) % cap;
    unsigned probe = cap < RT_PROBE ? (unsigned)cap : RT_PROBE;
    int busy_rescans = 0;

    for (int attempt = 0; attempt < RT_MAX_ATTEMPTS; attempt++) {
        rt_slot *victim = NULL;
        uint64_t victim_state = 0;
        int victim_rank = NONE;
        int64_t victim_tat = INT64_MAX;
        int busy = 0, torn = 0;

        for (unsigned i = 0; i < probe && !torn; i++) {
            rt_slot *s = &slots[(home + i) % cap];
            uint64_t st = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
            int rank;
            int64_t tat = (int64_t)(st >> 1);
            if (st & 1) {
                if (now - tat < RT_CLAIM_STALE_NS) {
                    busy = 1; /* maybe our own key, being inserted by another process */
                    continue;
                }
                rank = FREE;
            } else if (st == 0) {
                rank = FREE;
            } else {
                uint64_t k = __atomic_load_n(&s->key, __ATOMIC_RELAXED);
                /* seqlock-style check: the key read belongs to the state read */
                __atomic_thread_fence(__ATOMIC_ACQUIRE);
                if (__atomic_load_n(&s->state, __ATOMIC_RELAXED) != st) {
                    torn = 1;
                    break;
                }
                if (k == key) {
                    int64_t next = (tat > now ? tat : now) + interval;
                    if (next - now > tolerance) {
                        *tat_out = tat;
                        return 0;
                    }
                    if (__atomic_compare_exchange_n(&s->state, &st, (uint64_t)next << 1, 0,
                                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                        *tat_out = next;
                        return 1;
                    }
                    torn = 1; /* another process charged this key first: decide again */
                    break;
                }
                rank = tat <= now ? EXPIRED : LIVE;
            }
            /* free and expired slots in probe order; among live ones the nearest to full */
            if (rank < victim_rank || (rank == LIVE && victim_rank == LIVE && tat < victim_tat)) {
                victim = s;
                victim_state = st;
                victim_rank = rank;
                victim_tat = tat;
            }
        }
        if (torn)
            continue;
        if (busy && busy_rescans < RT_BUSY_RESCANS) {
            busy_rescans++;
            cpu_relax();
            continue;
        }
        if (victim == NULL)
            break; /* every slot of the window mid-claim for a long time: let it pass */
        uint64_t claim = ((uint64_t)now << 1) | 1;
        if (!__atomic_compare_exchange_n(&victim->state, &victim_state, claim, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            continue;
        /* readers that see the new key must also see the claim (their recheck fails) */
        __atomic_thread_fence(__ATOMIC_RELEASE);
        __atomic_store_n(&victim->key, key, __ATOMIC_RELAXED);
        int64_t next = now + interval;
        __atomic_store_n(&victim->state, (uint64_t)next << 1, __ATOMIC_RELEASE);
        *tat_out = next;
        return 1;
    }
    *tat_out = now;
    return 1;
}

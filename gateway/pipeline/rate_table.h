/* The shared rate-limit table (rate_table.c); gateway/pipeline/rate_table_build.py hands
 * these declarations to cffi as they are, so keep them plain C with no macros. */
#include <stddef.h>
#include <stdint.h>

/* Bytes of a table with `capacity` slots (16 bytes each, plus a 64-byte header). */
size_t rt_bytes(uint64_t capacity);
/* Formats zeroed memory as an empty table; `seed` keys the slot hash. */
void rt_init(void *mem, uint64_t capacity, uint64_t seed);
/* 1 if `mem` holds a table made by rt_init that fits in `size` bytes. */
int rt_valid(const void *mem, size_t size);
uint64_t rt_capacity(const void *mem);
/* One request for `key` at `now` (ns): 1 = allowed, 0 = refused. A request passes when the
 * key's TAT after it would be at most `tolerance` ns ahead of now; each adds `interval`.
 * *tat_out is the key's TAT afterwards (refused: unchanged). */
int rt_take(void *mem, uint64_t key, int64_t now, int64_t interval, int64_t tolerance,
            int64_t *tat_out);

/* Random bytes: a ChaCha20 keystream keyed by the host's seed in the boot
 * info, with the restore generation mixed in. Serves getrandom, /dev/urandom
 * and /dev/random. */
#include "kernel.h"

/* ---- ChaCha20 (RFC 8439 block function) ---- */
static u32 rng_key[8];
static u64 rng_counter;
static u8 rng_buf[64];
static u32 rng_left;
static u64 seen_generation;

#define ROTL(a, b) (((a) << (b)) | ((a) >> (32 - (b))))
#define QR(a, b, c, d)                                                                             \
    (a += b, d ^= a, d = ROTL(d, 16), c += d, b ^= c, b = ROTL(b, 12), a += b, d ^= a,             \
     d = ROTL(d, 8), c += d, b ^= c, b = ROTL(b, 7))
static void chacha_block(void) {
    u32 in[16] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574};
    for (int i = 0; i < 8; i++)
        in[4 + i] = rng_key[i];
    in[12] = (u32)rng_counter;
    in[13] = (u32)(rng_counter >> 32);
    in[14] = (u32)boot->restore_generation;
    in[15] = (u32)(boot->restore_generation >> 32);
    u32 x[16];
    for (int i = 0; i < 16; i++)
        x[i] = in[i];
    for (int i = 0; i < 10; i++) {
        QR(x[0], x[4], x[8], x[12]);
        QR(x[1], x[5], x[9], x[13]);
        QR(x[2], x[6], x[10], x[14]);
        QR(x[3], x[7], x[11], x[15]);
        QR(x[0], x[5], x[10], x[15]);
        QR(x[1], x[6], x[11], x[12]);
        QR(x[2], x[7], x[8], x[13]);
        QR(x[3], x[4], x[9], x[14]);
    }
    for (int i = 0; i < 16; i++) {
        u32 v = x[i] + in[i];
        rng_buf[4 * i] = (u8)v;
        rng_buf[4 * i + 1] = (u8)(v >> 8);
        rng_buf[4 * i + 2] = (u8)(v >> 16);
        rng_buf[4 * i + 3] = (u8)(v >> 24);
    }
    rng_counter++;
    rng_left = 64;
}
void random_fill(u8* p, u64 n) {
    while (n) {
        if (!rng_left)
            chacha_block();
        u64 k = n < rng_left ? n : rng_left;
        memcpy(p, rng_buf + (64 - rng_left), k);
        memset(rng_buf + (64 - rng_left), 0, k); /* no keystream reuse after a snapshot */
        rng_left -= (u32)k;
        p += k;
        n -= k;
    }
}

/* Keys the generator from the seed the monitor put in the boot info. A
 * restored snapshot gets a new seed and a new generation: clones of one
 * snapshot must never share random bytes. */
void reseed(void) {
    for (int i = 0; i < 8; i++)
        rng_key[i] = (u32)boot->random_seed[4 * i] | (u32)boot->random_seed[4 * i + 1] << 8 |
                     (u32)boot->random_seed[4 * i + 2] << 16 |
                     (u32)boot->random_seed[4 * i + 3] << 24;
    rng_counter = 0;
    memset(rng_buf, 0, sizeof rng_buf);
    rng_left = 0;
    seen_generation = boot->restore_generation;
}
/* Called after each INPUT hypercall: a restore happens at a wait point. */
void reseed_if_restored(void) {
    if (boot->restore_generation != seen_generation)
        reseed();
}

/* Flags are ignored: the generator never blocks. */
i64 sys_getrandom(u64 buf, u64 n) {
    if (!user_ok(buf, n))
        return -EFAULT;
    random_fill((u8*)buf, n);
    return (i64)n;
}

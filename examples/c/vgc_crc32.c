/*
 * vgc_crc32.c -- the CRC-32 of a message's trailer (format.md "Trailer"):
 * the common CRC-32 of zip, PNG and Ethernet, IEEE 802.3 polynomial 0x04C11DB7 taken
 * reflected (0xEDB88320), initial value 0xFFFFFFFF, final XOR 0xFFFFFFFF.
 * Check value: crc32("123456789") == 0xCBF43926.
 */
#include "vgc.h"

static uint32_t crc_table[256];
static int crc_table_ready = 0;

static void crc_make_table(void) {
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int bit = 0; bit < 8; bit++) {
            c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : (c >> 1);
        }
        crc_table[b] = c;
    }
    crc_table_ready = 1;
}

uint32_t vgc_crc32(const uint8_t *data, size_t len) {
    if (!crc_table_ready) crc_make_table();  /* idempotent: a race writes the same table */
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        c = crc_table[(c ^ data[i]) & 0xFFu] ^ (c >> 8);
    }
    return c ^ 0xFFFFFFFFu;
}

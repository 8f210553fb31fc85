/*
 * selftest.c -- the examples format.md spells out byte by byte, checked without Python:
 *   - the CRC-32 check value: crc32("123456789") == 0xCBF43926 ("Trailer");
 *   - the empty message: 56 47 43 4d 01 00 00 00 00 00 00 00 82 6d 1a c1 ("Golden files");
 *   - the worked example tests/golden/vgc_q4.bin, 60 bytes ("Worked example"): encoded
 *     from its six words, decoded back, and each word's value as the table says.
 */
#include <stdio.h>
#include <string.h>

#include "vgc.h"

static int failures = 0;
#define CHECK(cond, what) do { if (!(cond)) { printf("FAIL %s\n", what); failures++; } else printf("ok   %s\n", what); } while (0)

int main(void) {
    CHECK(vgc_crc32((const uint8_t *)"123456789", 9) == 0xCBF43926u, "crc32(\"123456789\") == 0xCBF43926");

    static const uint8_t empty[16] = {0x56, 0x47, 0x43, 0x4d, 0x01, 0x00, 0x00, 0x00,
                                      0x00, 0x00, 0x00, 0x00, 0x82, 0x6d, 0x1a, 0xc1};
    uint8_t buf[64];
    vgc_error err = {0};
    CHECK(vgc_message_length(NULL, 0) == 16 && vgc_encode_message(NULL, 0, buf, &err) == VGC_OK &&
          memcmp(buf, empty, 16) == 0, "empty message, 16 bytes");

    static const uint8_t vgc_q4_bin[60] = {
        0x56, 0x47, 0x43, 0x4d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x03, 0x00, 0x00, 0x00, 0xe8, 0x03, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x82, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x30, 0x00, 0x00, 0x00, 0xaf, 0x00, 0x00, 0x00,
        0x33, 0x02, 0x00, 0x00, 0xc7, 0x7c, 0x00, 0x00, 0xff, 0x7c, 0x00, 0x00,
        0xee, 0xaf, 0x94, 0x0e};
    static const uint32_t words[6] = {0x00000000, 0x00000030, 0x000000af, 0x00000233, 0x00007cc7, 0x00007cff};
    vgc_packet p = {3, 1000, VGC_CODEC_VGC_Q4, 130, 6, words};
    CHECK(vgc_message_length(&p, 1) == 60 && vgc_encode_message(&p, 1, buf, &err) == VGC_OK &&
          memcmp(buf, vgc_q4_bin, 60) == 0, "worked example vgc_q4.bin encodes to its 60 bytes");

    vgc_packet out[3];
    uint32_t out_words[15];
    size_t S = 0;
    int rc = vgc_decode_message(vgc_q4_bin, 60, out, out_words, &S, &err);
    CHECK(rc == VGC_OK && S == 1 && out[0].segment_id == 3 && out[0].n == 1000 && out[0].param == 130 &&
          out[0].count == 6 && memcmp(out[0].words, words, sizeof words) == 0, "worked example decodes");

    static const uint32_t index[6] = {0, 1, 5, 17, 998, 999};
    const float value[6] = {8.0f, -8.0f, 1.0f / 4096, -1.0f, 0.0625f, -1.0f / 4096};
    int values_ok = 1;
    for (int i = 0; i < 6; i++) {
        uint32_t at;
        float v = vgc_word_value(VGC_CODEC_VGC_Q4, 130, words[i], &at);
        values_ok &= at == index[i] && v == value[i];
    }
    CHECK(values_ok, "worked example word values: 8, -8, 2^-12, -1, 0.0625, -2^-12");

    /* one flipped CRC bit: check 8 at offset L - 4 = 56 */
    uint8_t bad[60];
    memcpy(bad, vgc_q4_bin, 60);
    bad[59] ^= 0x80;
    rc = vgc_decode_message(bad, 60, out, out_words, &S, &err);
    CHECK(rc == VGC_ERR_FORMAT && !strcmp(err.name, "crc32") && err.index == 56, "bad CRC: crc32 at 56");
    /* cut before the CRC: reported at the last segment's words (offset 32) */
    rc = vgc_decode_message(vgc_q4_bin, 56, out, out_words, &S, &err);
    CHECK(rc == VGC_ERR_FORMAT && !strcmp(err.name, "words") && err.index == 32, "cut before the CRC: words at 32");

    printf(failures ? "%d selftest checks FAILED\n" : "all selftest checks ok\n", failures);
    return failures != 0;
}

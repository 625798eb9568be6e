/* SPDX-License-Identifier: MPL-2.0 */
/*
 * The event stream decoder. A message that arrives whole inside one chunk is
 * handled in place; only a message split across chunks is gathered in a
 * capped buffer, sized from its prelude, so a large message arriving in many
 * reads is copied once. The prelude CRC is checked before its lengths are
 * trusted (that is what it is for: a corrupt length must not make us wait
 * for, or hold, bytes that never belonged to a message). Does not interpret
 * payloads.
 */
#include "agent/eventstream.h"

#include <string.h>

/* The reflected IEEE polynomial of CRC32 (gzip, zlib, Go's hash/crc32.IEEE). */
#define EVS_CRC_POLY 0xEDB88320u

/* Header value types (the framing's own numbering). */
enum {
    EVS_T_TRUE = 0,
    EVS_T_FALSE = 1,
    EVS_T_BYTE = 2,
    EVS_T_INT16 = 3,
    EVS_T_INT32 = 4,
    EVS_T_INT64 = 5,
    EVS_T_BYTES = 6,
    EVS_T_STRING = 7,
    EVS_T_TIMESTAMP = 8,
    EVS_T_UUID = 9,
};

uint32_t evs_crc32(uint32_t crc, const void *data, size_t len)
{
    /* Bitwise: a stream message is small and this is not the agent's hot path (see docs). */
    const unsigned char *p = data;
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (EVS_CRC_POLY & (0u - (crc & 1u)));
        }
    }
    return ~crc;
}

static uint32_t evs_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

void evs_init(struct evs *p, size_t max_message, evs_message_cb cb, void *arg)
{
    if (max_message > EVS_MAX_MESSAGE) {
        max_message = EVS_MAX_MESSAGE;
    }
    buf_init(&p->pending, max_message);
    p->max_message = max_message;
    p->ended = false;
    p->err = ERR_OK;
    p->cb = cb;
    p->arg = arg;
}

void evs_done(struct evs *p)
{
    buf_done(&p->pending);
}

bool evs_ended(const struct evs *p)
{
    return p->ended;
}

bool evs_idle(const struct evs *p)
{
    return p->pending.len == 0;
}

/* Checks a prelude (EVS_PRELUDE_LEN bytes); the message's total length into *ret_total. */
static enum err evs_prelude(const struct evs *p, const unsigned char *b, size_t *ret_total)
{
    if (evs_crc32(0, b, 8) != evs_be32(b + 8)) {
        return ERR_PROTO;
    }
    size_t total = evs_be32(b);
    size_t hlen = evs_be32(b + 4);
    if (total < EVS_OVERHEAD || hlen > total - EVS_OVERHEAD) {
        return ERR_PROTO;
    }
    if (total > p->max_message || hlen > EVS_MAX_HEADERS) {
        return ERR_TOOBIG;
    }
    *ret_total = total;
    return ERR_OK;
}

/* A string header's value into out (NUL-terminated) when it fits; "" otherwise. */
static void evs_keep(char *out, const unsigned char *v, size_t n)
{
    if (n < EVS_MAX_NAME + 1) {
        memcpy(out, v, n);
        out[n] = '\0';
    } else {
        out[0] = '\0';
    }
}

static bool evs_named(const unsigned char *name, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(name, want, n) == 0;
}

/* The fixed size of a value type; 0 for a length-prefixed one, -1 for an unknown type. */
static int evs_fixed(unsigned type)
{
    static const int sizes[] = {
        [EVS_T_TRUE] = 0,      [EVS_T_FALSE] = 0, [EVS_T_BYTE] = 1,  [EVS_T_INT16] = 2,
        [EVS_T_INT32] = 4,     [EVS_T_INT64] = 8, [EVS_T_BYTES] = 0, [EVS_T_STRING] = 0,
        [EVS_T_TIMESTAMP] = 8, [EVS_T_UUID] = 16,
    };
    return type < sizeof(sizes) / sizeof(sizes[0]) ? sizes[type] : -1;
}

/* One whole message of total bytes (its prelude already checked). */
static enum err evs_message(struct evs *p, const unsigned char *m, size_t total)
{
    if (evs_crc32(0, m, total - 4) != evs_be32(m + total - 4)) {
        return ERR_PROTO;
    }
    size_t hlen = evs_be32(m + 4);
    const unsigned char *h = m + EVS_PRELUDE_LEN;
    const unsigned char *end = h + hlen;
    char mtype[EVS_MAX_NAME + 1] = "", etype[EVS_MAX_NAME + 1] = "", xtype[EVS_MAX_NAME + 1] = "";
    while (h < end) {
        size_t nlen = h[0];
        if ((size_t)(end - h) < 1 + nlen + 1) {
            return ERR_PROTO;
        }
        const unsigned char *name = h + 1;
        unsigned type = h[1 + nlen];
        h += 1 + nlen + 1;
        int fixed = evs_fixed(type);
        size_t vlen;
        if (fixed < 0) {
            return ERR_PROTO;
        }
        if (type == EVS_T_BYTES || type == EVS_T_STRING) {
            if (end - h < 2) {
                return ERR_PROTO;
            }
            vlen = ((size_t)h[0] << 8) | h[1];
            h += 2;
        } else {
            vlen = (size_t)fixed;
        }
        if ((size_t)(end - h) < vlen) {
            return ERR_PROTO;
        }
        if (type == EVS_T_STRING && evs_named(name, nlen, ":message-type")) {
            evs_keep(mtype, h, vlen);
        } else if (type == EVS_T_STRING && evs_named(name, nlen, ":event-type")) {
            evs_keep(etype, h, vlen);
        } else if (type == EVS_T_STRING && evs_named(name, nlen, ":exception-type")) {
            evs_keep(xtype, h, vlen);
        }
        h += vlen;
    }
    const char *payload = (const char *)end;
    size_t plen = total - EVS_PRELUDE_LEN - hlen - 4;
    int rc = p->cb(p->arg, mtype, strcmp(mtype, "event") == 0 ? etype : xtype, payload, plen);
    if (rc == EVS_END) {
        p->ended = true;
        return ERR_OK;
    }
    return rc == 0 ? ERR_OK : ERR_CANCELLED;
}

/* The total length of the message gathered in pending (its prelude is complete and checked). */
static size_t evs_pending_total(const struct evs *p)
{
    return evs_be32((const unsigned char *)p->pending.data);
}

static enum err evs_feed_inner(struct evs *p, const unsigned char *data, size_t len)
{
    while (len > 0 && !p->ended) {
        size_t total = 0;
        enum err e;
        if (p->pending.len == 0 && len >= EVS_PRELUDE_LEN) {
            /* A message starting at a chunk boundary: in place when it is all here. */
            e = evs_prelude(p, data, &total);
            if (e != ERR_OK) {
                return e;
            }
            if (len >= total) {
                e = evs_message(p, data, total);
                if (e != ERR_OK) {
                    return e;
                }
                data += total;
                len -= total;
                continue;
            }
        }
        /* Gather: the prelude first, then up to the message's total length. */
        size_t have = p->pending.len;
        size_t need = have >= EVS_PRELUDE_LEN ? evs_pending_total(p) : EVS_PRELUDE_LEN;
        if (total > 0) {
            need = total;
        }
        size_t take = need - have < len ? need - have : len;
        e = buf_append(&p->pending, data, take);
        if (e != ERR_OK) {
            return e;
        }
        data += take;
        len -= take;
        if (have < EVS_PRELUDE_LEN && p->pending.len == EVS_PRELUDE_LEN && total == 0) {
            e = evs_prelude(p, (const unsigned char *)p->pending.data, &total);
            if (e != ERR_OK) {
                return e;
            }
            continue;
        }
        if (p->pending.len >= EVS_PRELUDE_LEN && p->pending.len == evs_pending_total(p)) {
            e = evs_message(p, (const unsigned char *)p->pending.data, p->pending.len);
            buf_reset(&p->pending);
            if (e != ERR_OK) {
                return e;
            }
        }
    }
    return ERR_OK;
}

enum err evs_feed(struct evs *p, const char *data, size_t len)
{
    if (p->err != ERR_OK) {
        return p->err;
    }
    if (p->ended) {
        return ERR_OK;
    }
    enum err e = evs_feed_inner(p, (const unsigned char *)data, len);
    if (e != ERR_OK) {
        p->err = e;
        buf_reset(&p->pending);
    }
    return e;
}

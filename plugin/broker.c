/* SPDX-License-Identifier: MPL-2.0 */
/*
 * Broker client: a small table of announced addresses and one shared channel
 * to Vault. It deliberately knows nothing about pb.Storage: storage_grpc.c
 * builds the messages, broker_call moves them.
 *
 * Why a completion queue per call: the server's queue is drained by whichever
 * worker holds the turn (pool.h), so a reply landing there would reach that
 * worker, not the one waiting for it. A pluck queue owned by the calling
 * worker keeps each blocking call to itself, and the one channel multiplexes
 * all of them as HTTP/2 streams. While the caller keeps its turn (the first
 * BROKER_GRACE_US) usually no other thread polls, so it reads its reply
 * itself with no hand-off. The queues are pooled: creating one and shutting it down (a
 * pollset set up, kicked and torn down) cost a key write's storage round trip
 * about as much as the rest of its CPU work, and a queue whose one call has
 * completed has nothing left in it.
 */
#include "plugin/broker.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plugin/pool.h"

struct broker_conninfo {
    uint32_t id;
    int used;
    unsigned long seq; /* arrival order: the oldest is dropped when the table is full */
    char target[BROKER_MAX_ADDRESS + 8]; /* "unix:" + address, or host:port */
};

/* The channel is shared by reference: Cleanup may close it while calls are in flight. */
struct broker_chan {
    grpc_channel *ch;
    int refs;
};

/* Idle pluck queues kept for reuse; more than the workers that can call at once is waste. */
#define BROKER_CQ_POOL 16

static pthread_mutex_t broker_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t broker_cv;
static int broker_cv_ready;
static struct broker_conninfo broker_pending[BROKER_MAX_PENDING];
static unsigned long broker_seq;
static struct broker_chan *broker_cur;
static const struct tlsgen *broker_tls;
static const char *broker_root_pem;
static grpc_completion_queue *broker_cq_pool[BROKER_CQ_POOL];
static size_t broker_cq_n;

/* An idle pluck queue from the pool, or a new one (NULL on out of memory). */
static grpc_completion_queue *broker_cq_take(void)
{
    grpc_completion_queue *cq = NULL;
    pthread_mutex_lock(&broker_mu);
    if (broker_cq_n > 0) {
        cq = broker_cq_pool[--broker_cq_n];
    }
    pthread_mutex_unlock(&broker_mu);
    return cq != NULL ? cq : grpc_completion_queue_create_for_pluck(NULL);
}

static void broker_cq_destroy(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

/* Back to the pool: only a queue with no event pending (its call's one batch plucked, or none). */
static void broker_cq_give(grpc_completion_queue *cq)
{
    pthread_mutex_lock(&broker_mu);
    if (broker_cq_n < BROKER_CQ_POOL) {
        broker_cq_pool[broker_cq_n++] = cq;
        cq = NULL;
    }
    pthread_mutex_unlock(&broker_mu);
    if (cq != NULL) {
        broker_cq_destroy(cq);
    }
}

/* Destroys the pooled queues (calls still running return theirs later, which is fine). */
static void broker_cq_pool_drain(void)
{
    grpc_completion_queue *cqs[BROKER_CQ_POOL];
    pthread_mutex_lock(&broker_mu);
    size_t n = broker_cq_n;
    memcpy(cqs, broker_cq_pool, n * sizeof(grpc_completion_queue *));
    broker_cq_n = 0;
    pthread_mutex_unlock(&broker_mu);
    for (size_t i = 0; i < n; i++) {
        broker_cq_destroy(cqs[i]);
    }
}

enum err broker_init(const struct tlsgen *tls, const char *client_root_pem)
{
    if (tls == NULL || tls->key_pem == NULL || tls->cert_pem == NULL || client_root_pem == NULL) {
        return ERR_INVAL;
    }
    pthread_mutex_lock(&broker_mu);
    if (!broker_cv_ready) {
        /* Waits use a monotonic clock: a wall-clock step must not stretch Setup. */
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&broker_cv, &attr);
        pthread_condattr_destroy(&attr);
        broker_cv_ready = 1;
    }
    broker_tls = tls;
    broker_root_pem = client_root_pem;
    pthread_mutex_unlock(&broker_mu);
    return ERR_OK;
}

enum err broker_conninfo_put(uint32_t service_id, const char *network, const char *address)
{
    if (network == NULL || address == NULL || address[0] == '\0' ||
        strlen(address) > BROKER_MAX_ADDRESS) {
        return ERR_INVAL;
    }
    const char *prefix;
    if (strcmp(network, "unix") == 0) {
        prefix = "unix:";
    } else if (strcmp(network, "tcp") == 0) {
        prefix = "";
    } else {
        return ERR_INVAL;
    }
    pthread_mutex_lock(&broker_mu);
    struct broker_conninfo *slot = NULL;
    for (size_t i = 0; i < BROKER_MAX_PENDING; i++) {
        struct broker_conninfo *c = &broker_pending[i];
        if (c->used && c->id == service_id) {
            slot = c; /* a re-announcement replaces the old address */
            break;
        }
        if (!c->used && slot == NULL) {
            slot = c;
        }
    }
    if (slot == NULL) {
        slot = &broker_pending[0];
        for (size_t i = 1; i < BROKER_MAX_PENDING; i++) {
            if (broker_pending[i].seq < slot->seq) {
                slot = &broker_pending[i];
            }
        }
    }
    slot->used = 1;
    slot->id = service_id;
    slot->seq = ++broker_seq;
    snprintf(slot->target, sizeof(slot->target), "%s%s", prefix, address);
    if (broker_cv_ready) {
        pthread_cond_broadcast(&broker_cv);
    }
    pthread_mutex_unlock(&broker_mu);
    return ERR_OK;
}

/* Takes the entry for id out of the table; caller holds broker_mu. */
static int broker_take_locked(uint32_t id, char *target, size_t size)
{
    for (size_t i = 0; i < BROKER_MAX_PENDING; i++) {
        struct broker_conninfo *c = &broker_pending[i];
        if (c->used && c->id == id) {
            snprintf(target, size, "%s", c->target);
            memset(c, 0, sizeof(*c));
            return 1;
        }
    }
    return 0;
}

static void broker_chan_unref(struct broker_chan *c)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&broker_mu);
    int last = --c->refs == 0;
    pthread_mutex_unlock(&broker_mu);
    if (last) {
        grpc_channel_destroy(c->ch);
        free(c);
    }
}

static struct broker_chan *broker_chan_ref(void)
{
    pthread_mutex_lock(&broker_mu);
    struct broker_chan *c = broker_cur;
    if (c != NULL) {
        c->refs++;
    }
    pthread_mutex_unlock(&broker_mu);
    return c;
}

static enum err broker_dial(const char *target, struct broker_chan **ret_chan)
{
    grpc_ssl_pem_key_cert_pair pair = {
        .private_key = (const char *)broker_tls->key_pem->data,
        .cert_chain = broker_tls->cert_pem,
    };
    /* Vault's broker presents its AutoMTLS certificate: trust exactly that one. */
    grpc_channel_credentials *creds =
        grpc_ssl_credentials_create_ex(broker_root_pem, &pair, NULL, NULL);
    if (creds == NULL) {
        return ERR_CRYPTO;
    }
    grpc_arg args[] = {
        /* A Unix target has no host name; Vault's certificate names localhost. */
        {.type = GRPC_ARG_STRING,
         .key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
         .value.string = "localhost"},
        /* Vault sends and accepts up to MaxInt32; gRPC core's default receive cap is 4 MiB. */
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, .value.integer = -1},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, .value.integer = -1},
    };
    grpc_channel_args cargs = {.num_args = sizeof(args) / sizeof(args[0]), .args = args};
    grpc_channel *ch = grpc_channel_create(target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    if (ch == NULL) {
        return ERR_NOMEM;
    }
    struct broker_chan *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        grpc_channel_destroy(ch);
        return ERR_NOMEM;
    }
    c->ch = ch;
    c->refs = 1;
    *ret_chan = c;
    return ERR_OK;
}

enum err broker_connect(uint32_t service_id, int wait_ms)
{
    char target[BROKER_MAX_ADDRESS + 8];
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }

    /* The ConnInfo arrives on the server's queue: another worker must drain it meanwhile. */
    pool_block_begin();
    pthread_mutex_lock(&broker_mu);
    if (broker_tls == NULL) {
        pthread_mutex_unlock(&broker_mu);
        pool_block_end();
        return ERR_INVAL;
    }
    int found;
    while (!(found = broker_take_locked(service_id, target, sizeof(target)))) {
        if (pthread_cond_timedwait(&broker_cv, &broker_mu, &until) != 0) {
            found = broker_take_locked(service_id, target, sizeof(target));
            break;
        }
    }
    pthread_mutex_unlock(&broker_mu);
    pool_block_end();
    if (!found) {
        return ERR_TIMEOUT;
    }

    struct broker_chan *c = NULL;
    enum err rc = broker_dial(target, &c);
    if (rc != ERR_OK) {
        return rc;
    }
    pthread_mutex_lock(&broker_mu);
    struct broker_chan *old = broker_cur;
    broker_cur = c;
    pthread_mutex_unlock(&broker_mu);
    broker_chan_unref(old);
    return ERR_OK;
}

int broker_connected(void)
{
    pthread_mutex_lock(&broker_mu);
    int up = broker_cur != NULL;
    pthread_mutex_unlock(&broker_mu);
    return up;
}

void broker_close(void)
{
    pthread_mutex_lock(&broker_mu);
    struct broker_chan *old = broker_cur;
    broker_cur = NULL;
    pthread_mutex_unlock(&broker_mu);
    broker_chan_unref(old);
    broker_cq_pool_drain();
}

void broker_reset(void)
{
    pthread_mutex_lock(&broker_mu);
    memset(broker_pending, 0, sizeof(broker_pending));
    pthread_mutex_unlock(&broker_mu);
}

static void broker_detail(char *out, grpc_slice details)
{
    if (out == NULL) {
        return;
    }
    size_t n = GRPC_SLICE_LENGTH(details);
    if (n >= BROKER_MAX_DETAIL) {
        n = BROKER_MAX_DETAIL - 1;
    }
    memcpy(out, GRPC_SLICE_START_PTR(details), n);
    out[n] = '\0';
}

/*
 * Storage calls carry the raw KEK (kek/<n> Puts and Gets): neither the packed
 * request nor the reply we read may go back to the allocator holding it. The
 * request is packed into a block that this frees, wiped, when gRPC drops its
 * last reference.
 */
static void broker_wipe_free(void *p, size_t len)
{
    OPENSSL_cleanse(p, len);
    free(p);
}

/*
 * Wipes every slice of a received message in place. Only once the call has
 * completed (or was never started): gRPC then holds no reference that still
 * reads them.
 */
static void broker_wipe_message(grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader reader;
    if (bb == NULL || !grpc_byte_buffer_reader_init(&reader, bb)) {
        return;
    }
    grpc_slice *s = NULL;
    while (grpc_byte_buffer_reader_peek(&reader, &s)) {
        OPENSSL_cleanse(GRPC_SLICE_START_PTR(*s), GRPC_SLICE_LENGTH(*s));
    }
    grpc_byte_buffer_reader_destroy(&reader);
}

enum err broker_call(grpc_call *parent, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **ret_reply,
                     char ret_detail[BROKER_MAX_DETAIL])
{
    if (ret_detail != NULL) {
        ret_detail[0] = '\0';
    }
    struct broker_chan *c = broker_chan_ref();
    if (c == NULL) {
        if (ret_detail != NULL) {
            snprintf(ret_detail, BROKER_MAX_DETAIL, "no broker connection to Vault storage");
        }
        return ERR_UNAVAIL;
    }
    enum err rc = ERR_NOMEM;
    grpc_byte_buffer *send_bb = NULL;
    grpc_byte_buffer *recv_bb = NULL;
    grpc_call *call = NULL;
    grpc_metadata_array init_md;
    grpc_metadata_array trail_md;
    grpc_metadata_array_init(&init_md);
    grpc_metadata_array_init(&trail_md);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();

    /* Set once the queue is known to hold nothing more: it may then be reused. */
    bool cq_idle = false;
    grpc_completion_queue *cq = broker_cq_take();
    if (cq == NULL) {
        goto out_chan;
    }

    /*
     * Packed into our own block, which the slice wipes when gRPC lets it go:
     * a kek/ Put carries the raw KEK. (gRPC moves a byte buffer's slices out
     * when the batch starts, so wiping send_bb afterwards would find it empty.)
     */
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *packed = malloc(len > 0 ? len : 1);
    if (packed == NULL) {
        cq_idle = true; /* nothing was started on it */
        goto out_cq;
    }
    protobuf_c_message_pack(req, packed);
    grpc_slice payload = grpc_slice_new_with_len(packed, len, broker_wipe_free);
    send_bb = grpc_raw_byte_buffer_create(&payload, 1);
    grpc_slice_unref(payload);

    /*
     * A child of the request being handled: the core caps our deadline at the
     * parent's and cancels this call when the parent ends, so no write of a
     * request Vault has given up on goes on to land (a client retry would
     * apply it twice). A parent that has already ended gives a call that
     * fails at once.
     */
    gpr_timespec deadline = gpr_time_add(
        gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(BROKER_CALL_TIMEOUT_MS, GPR_TIMESPAN));
    call = grpc_channel_create_call(c->ch, parent, GRPC_PROPAGATE_DEFAULTS, cq,
                                    grpc_slice_from_static_string(method), NULL, deadline, NULL);
    if (call == NULL) {
        cq_idle = true;
        goto out_cq;
    }

    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv_bb;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    if (grpc_call_start_batch(call, ops, 6, call, NULL) != GRPC_CALL_OK) {
        rc = ERR_INTERNAL;
        cq_idle = true; /* a refused batch queues no completion */
        goto out_call;
    }
    /*
     * Within the grace this thread is usually the only one polling, so it reads
     * the reply itself. A handler past its slice (pool.h) hands the queue on at once.
     */
    gpr_timespec grace = pool_turn_overdue()
                             ? gpr_inf_past(GPR_CLOCK_MONOTONIC)
                             : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                            gpr_time_from_micros(BROKER_GRACE_US, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_pluck(cq, call, grace, NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        pool_block_begin();
        ev = grpc_completion_queue_pluck(cq, call, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        pool_block_end();
    }
    if (ev.type != GRPC_OP_COMPLETE) {
        rc = ERR_INTERNAL;
        goto out_call;
    }
    cq_idle = true;
    if (status != GRPC_STATUS_OK) {
        broker_detail(ret_detail, details);
        rc = status == GRPC_STATUS_DEADLINE_EXCEEDED ? ERR_TIMEOUT : ERR_UNAVAIL;
        goto out_call;
    }
    rc = ERR_PROTO;
    if (recv_bb == NULL || grpc_byte_buffer_length(recv_bb) > BROKER_MAX_REPLY) {
        goto out_call;
    }
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, recv_bb)) {
        goto out_call;
    }
    grpc_slice whole = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    ProtobufCMessage *reply = protobuf_c_message_unpack(reply_desc, NULL, GRPC_SLICE_LENGTH(whole),
                                                        GRPC_SLICE_START_PTR(whole));
    OPENSSL_cleanse(GRPC_SLICE_START_PTR(whole), GRPC_SLICE_LENGTH(whole));
    grpc_slice_unref(whole);
    if (reply == NULL) {
        goto out_call;
    }
    *ret_reply = reply;
    rc = ERR_OK;

out_call:
    if (call != NULL) {
        grpc_call_unref(call);
    }
out_cq:
    if (cq_idle) {
        broker_cq_give(cq);
    } else {
        broker_cq_destroy(cq);
    }
out_chan:
    /* cq_idle: the call completed or never started; otherwise gRPC may still read it. */
    if (cq_idle) {
        broker_wipe_message(recv_bb); /* the request wipes itself: broker_wipe_free */
    }
    if (send_bb != NULL) {
        grpc_byte_buffer_destroy(send_bb);
    }
    if (recv_bb != NULL) {
        grpc_byte_buffer_destroy(recv_bb);
    }
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&init_md);
    grpc_metadata_array_destroy(&trail_md);
    broker_chan_unref(c);
    return rc;
}

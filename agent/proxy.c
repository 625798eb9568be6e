/* SPDX-License-Identifier: MPL-2.0 */
/*
 * One struct call per provider-bound request. Its life:
 *   parse + validate the app's JSON -> classify `model` -> (auto / bare model)
 *   probe the tenant's keys for every configured provider in parallel ->
 *   plan candidates -> move demoted providers last (health.c) ->
 *   attempt candidate i: key, adapter, upstream transfer ->
 *   on connect error / timeout / 429 / 5xx before the provider answered 2xx,
 *   attempt i+1 -> reply (buffered) or stream (SSE, chunk by chunk). A 2xx
 *   the call cannot complete (cut, unreadable, too large) is counted with
 *   estimated usage and answered 502: the provider may have billed it.
 * Streaming applies backpressure: when the app's socket buffer is above
 * stream.high_water_bytes the curl transfer is paused and resumed when evhttp
 * reports the buffer drained. The same pause forwards every chunk as soon as
 * it arrives: curl reads a socket for as long as it has data before it
 * returns to the event loop, and evhttp writes only from the loop, so a
 * provider burst would otherwise reach the app in one piece at its end. A failure after the first
 * byte ends the stream with an explicit error event, never a silent truncation; the provider's
 * end marker ([DONE], message_stop) ends it at once, and nothing after the marker reaches the app.
 *
 * Keys are touched only inside providers.c's build step, which puts them in a
 * wiped curl header list. Provider error bodies are read (capped) to classify
 * them and never forwarded: they may echo parts of a key.
 */
#include "agent/proxy.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

#include "agent/budget.h"
#include "agent/cooldown.h"
#include "agent/eventstream.h"
#include "agent/gcptoken.h"
#include "agent/health.h"
#include "agent/keycache.h"
#include "agent/latency.h"
#include "agent/messages.h"
#include "agent/metrics.h"
#include "agent/provider_bedrock.h"
#include "agent/provider_error.h"
#include "agent/provider_vertex.h"
#include "agent/providers.h"
#include "agent/ratelease.h"
#include "agent/ratelimit.h"
#include "agent/responses.h"
#include "agent/route.h"
#include "agent/sse.h"
#include "agent/upstream.h"
#include "agent/usage.h"
#include "agent/usagebound.h"
#include "common/jsonw.h"
#include "common/log.h"

#define PROXY_MAX_PROBE CONFIG_MAX_PROVIDERS
/* Longest value of a forwarded (allow-listed) header. */
#define PROXY_MAX_FORWARD_VALUE 1024
/* Stream bytes queued to the app in one curl read loop before the provider is held. */
#define PROXY_ROUND_BYTES ((size_t)4096)
/* More than one curl read (CURLOPT_BUFFERSIZE, upstream.c): the hold buffer's room past a frame. */
#define PROXY_HOLD_SLACK ((size_t)64 * 1024)
/* The Content-Type of an AWS event stream (Bedrock's ConverseStream). */
#define PROXY_EVENTSTREAM_TYPE "application/vnd.amazon.eventstream"

/* Why route_classify refused a model name (the name is never echoed). */
#define PROXY_BAD_MODEL                                                                            \
    "model name is empty, longer than 128 characters or has characters other than printable "      \
    "ASCII (spaces included)"

/*
 * The app-facing shape: OpenAI's (chat, embeddings), the original platform's
 * brain chat, the model list, or the Responses API bridged onto chat
 * (responses.h: the request translated before the call, the answer and the
 * stream's chunks after it), or Anthropic's Messages API passed through to
 * Anthropic-style providers (messages.h: the app's body and the answer's
 * bytes as they are, errors in Anthropic's shape).
 */
enum call_shape { SHAPE_OPENAI, SHAPE_BRAIN, SHAPE_MODELS, SHAPE_RESPONSES, SHAPE_MESSAGES };

struct call;

struct probe_slot {
    struct call *c;
    size_t i;
    struct keycache_wait *wait;
    struct keycache_entry *ent;
};

struct call {
    struct request *r;
    struct agent_ctx *ctx;
    enum provider_op op;
    enum call_shape shape;
    json_t *req;
    bool stream;
    /*
     * The app asked for the usage chunk (stream_options.include_usage), as it
     * sent the request: adapters ask the provider for it whatever the app did.
     */
    bool include_usage;
    char task[PROXY_MAX_HINT + 1];
    char tier[PROXY_MAX_HINT + 1];
    char route[PROXY_MAX_HINT + 1]; /* X-BYOK-Route */
    enum route_strategy strategy;   /* the header's, or the tenant's routing_strategy */
    json_t *fwd;                    /* forwarded header lines ("Name: value") */
    enum route_kind kind;
    bool model_one; /* SHAPE_MODELS: one model (kind, one), GET /v1/models/{model} */
    /* Allocated only as large as needed: a call lives as long as its stream. */
    struct route_candidate *cands; /* &one, or ROUTE_MAX_CANDIDATES from the planner */
    struct route_candidate one;
    size_t n_cands, cur;
    struct probe_slot *probes; /* one per configured provider, only when probing */
    size_t n_probes, probe_pending;
    enum err probe_err;
    /* current attempt */
    struct keycache_wait *wait;
    struct keycache_entry *ent;
    struct gcptoken_wait *twait; /* a Vertex service-account key's token trade (gcptoken.h) */
    bool token_failed;           /* the last failure: no access token could be had */
    unsigned long token_gen;     /* which access token the attempt sent (gcptoken_generation) */
    bool refetched;              /* this candidate's key was wiped once and fetched again */
    bool key_logged;             /* a key-cache failure has been logged for this call */
    const struct provider_adapter *ad;
    struct upstream_xfer *xfer;
    long up_status;
    bool up_ok;
    bool health_noted; /* this attempt's outcome went to the provider's health record */
    bool too_big;
    bool err_body_cut;  /* a non-2xx body passed its cap: the transfer was dropped */
    const char *coding; /* a 2xx body's Content-Encoding, not asked for (upstream_xfer_coding) */
    bool not_sse;       /* a 2xx stream answer that is not SSE: read whole, never forwarded */
    struct buf body;
    size_t received; /* bytes of a 2xx body received (non-streamed), kept past too_big */
    /*
     * The provider's reason of the last attempt that ended on a 4xx (not
     * 401/403), for the app's error (call_provider_error); allocated on the
     * first one. perr_status is that attempt's status, 0 when the last
     * attempt left no reason.
     */
    struct provider_error *perr;
    long perr_status;
    double attempt_start;
    /* streaming */
    bool reply_started;
    bool paused;
    unsigned long sent_round; /* upstream_round() when a chunk was last queued to the app */
    size_t round_bytes;       /* bytes queued to the app in that round */
    struct sse sse;
    bool sse_ready;
    enum provider_framing framing; /* of the current adapter's streams */
    struct evs evs;                /* framing PROVIDER_FRAMING_EVENTSTREAM (Bedrock) */
    bool evs_ready;
    struct provider_stream st;
    struct buf tbuf;
    struct buf hold; /* passthrough: bytes of an unfinished SSE frame */
    /*
     * Why the stream is ended early by what the provider sent (the code of
     * the agent's error event), NULL while it is fine: provider_stream_error,
     * stream_event_too_large, stream_parse_error.
     */
    const char *stream_error;
    struct evbuffer *chunk;
    /*
     * SHAPE_RESPONSES: the fields the answer echoes (responses_request), and
     * for a stream the translator of its chat chunks and the buffer its
     * events are made in before they go to chunk.
     */
    json_t *echo;
    struct responses_stream *rs;
    struct buf rbuf;
    /*
     * SHAPE_MESSAGES: the app's body as it sent it (sent on with the model
     * spliced in), count_tokens, and the app's anthropic-version and
     * anthropic-beta headers (validated; empty when it sent none).
     */
    char *raw;
    size_t raw_len;
    bool count_tokens;
    char anth_version[MESSAGES_VERSION_LEN + 1];
    char anth_beta[MESSAGES_MAX_BETA + 1];
    /* outcome */
    struct provider_usage usage;
    /* The failure that decides the reply when every candidate failed (call_failed). */
    enum err last_err;
    long last_status; /* the provider's HTTP status, 0 for none, -1 for key trouble */
    bool failed_transient;
    bool last_cooling;     /* the last failure: a candidate skipped, cooling after a Retry-After */
    bool last_key_limited; /* the last failure: a candidate skipped, its key at its rate_limit */
    bool last_key_shared;  /* ... by the rate_limit shared across the agents (a rate lease) */
    /* The tenant's rpm_limit and tpm_limit were applied (once a call: call_tenant_limits). */
    bool limits_checked;
    /*
     * Its rpm request was taken: from this node's rate lease (rpm_shared,
     * of the window ending rpm_window) or from the node's own bucket.
     */
    bool rpm_taken, rpm_shared;
    double rpm_window;
    /*
     * Tokens reserved of the tenant's tpm_limit, settled when the call ends:
     * from the rate lease (tpm_shared, window tpm_window) or the node's bucket.
     */
    long long tpm_limit, tpm_reserved;
    bool tpm_shared;
    double tpm_window;
    /* The wait for a rate lease, if any. */
    struct ratelease_wait *rlwait;
    bool usage_counted; /* call_record_usage ran: c->usage is what the call is counted with */
    /*
     * USD reserved of the tenant's monthly budget (budget.h), settled with
     * the counted cost when the call ends; the wait for a lease, if any.
     */
    double budget_reserved;
    bool budget_taken;
    struct budget_wait *bwait;
    /* This attempt's 429 or 503: the provider's wait in ms (cooldown_parse), -1 for none. */
    long long ra_ms;
    /*
     * When (server_now) the first of the candidates that were rate limited
     * or cooling may be called again; < 0 for none.
     */
    double retry_at;
};

static void call_attempt(struct call *c);
/* The current adapter's stream is AWS's binary event stream, not SSE. */
static bool call_evs(const struct call *c)
{
    return c->framing == PROVIDER_FRAMING_EVENTSTREAM;
}
static void call_health_answered(struct call *c, long status);
static void call_fetch_key(struct call *c);
static void call_key_failure_log(struct call *c, const char *provider, enum err e);
static void call_key_failure_reply(struct call *c, enum err e);
static void call_stream_complete(struct call *c);
static struct route_want call_want(const struct call *c, bool context);
static bool call_messages_model(const json_t *entry, const char *model);
static bool call_chat_model(const json_t *entry, const char *model);

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void call_release_attempt(struct call *c)
{
    upstream_xfer_cancel(c->xfer);
    c->xfer = NULL;
    keycache_cancel(c->wait);
    c->wait = NULL;
    budget_cancel(c->bwait);
    c->bwait = NULL;
    ratelease_cancel(c->rlwait);
    c->rlwait = NULL;
    gcptoken_cancel(c->twait); /* before the entry it waits on is let go */
    c->twait = NULL;
    keycache_put(&c->ent);
    buf_done(&c->body);
}

static void call_free(struct call *c)
{
    call_release_attempt(c);
    for (size_t i = 0; i < c->n_probes; i++) {
        keycache_cancel(c->probes[i].wait);
        keycache_put(&c->probes[i].ent);
    }
    free(c->probes);
    if (c->cands != &c->one) {
        free(c->cands);
    }
    if (c->sse_ready) {
        sse_done(&c->sse);
    }
    if (c->evs_ready) {
        evs_done(&c->evs);
    }
    buf_done(&c->tbuf);
    buf_done(&c->hold);
    json_decref(c->echo);
    responses_stream_free(&c->rs);
    buf_done(&c->rbuf);
    free(c->raw);
    if (c->chunk != NULL) {
        evbuffer_free(c->chunk);
    }
    json_decref(c->req);
    json_decref(c->fwd);
    free(c->perr);
    if (c->r != NULL) {
        c->r->call = NULL;
        c->r->abort = NULL;
    }
    free(c);
}

/*
 * The tenant's tpm reservation (call_tenant_limits) becomes what the call is
 * counted with: the rest goes back to the bucket, or what it used beyond
 * the reservation is taken too (the bucket may go into debt, which delays
 * the tenant's next calls). A call that reached no provider, or whose
 * provider did not answer, is counted with nothing: all of it goes back.
 */
static void call_settle_limits(struct call *c)
{
    if (c->budget_taken) {
        budget_settle(c->ctx->budget, c->r->tenant, c->budget_reserved,
                      c->usage_counted ? c->r->cost_usd : 0);
        c->budget_taken = false;
    }
    if (c->tpm_limit <= 0) {
        return;
    }
    long long used = c->usage_counted ? c->usage.prompt_tokens + c->usage.completion_tokens : 0;
    if (c->tpm_shared) {
        ratelease_give(c->ctx->ratelease, c->r->tenant, RATELEASE_TPM, c->tpm_limit,
                       c->tpm_reserved - used, c->tpm_window);
    } else {
        ratelimit_give(c->ctx->rl, RATELIMIT_TPM, c->r->tenant, NULL, NULL, c->tpm_limit,
                       c->tpm_reserved - used, server_now());
    }
    c->tpm_limit = 0;
}

/* Detaches the call from its request and frees it; the request is finished by the caller. */
static struct request *call_end(struct call *c)
{
    struct request *r = c->r;
    call_settle_limits(c);
    r->attempts = (int)(c->cur < c->n_cands ? c->cur + 1 : c->n_cands);
    call_free(c);
    return r;
}

static void call_error(struct call *c, int status, const char *type, const char *code,
                       const char *msg)
{
    struct request *r = call_end(c);
    server_reply_error(r, status, type, code, msg);
}

/*
 * An attempt ended on status e/status: when it is a 4xx other than 401/403
 * (those may quote the key and say nothing the app can fix), the provider's
 * reason is read from the body (provider_error.h: cleaned, 24-byte runs of
 * the key, or of the access token sent instead of a service-account key,
 * redacted: the one this attempt sent, kept by gcptoken.c across one
 * refresh); else the last reason is forgotten. Without that secret in hand
 * (the key wiped meanwhile, the token dropped or replaced twice) nothing is
 * read: what cannot be redacted is not shown. A service-account key file is never the secret
 * matched: its JSON is mostly known text, around the private key
 * (provider_error.h).
 */
static void call_note_provider_error(struct call *c, enum err e, long status)
{
    c->perr_status = 0;
    if (e != ERR_OK || status < 400 || status >= 500 || status == 401 || status == 403 ||
        c->ent == NULL || c->body.len == 0) {
        return;
    }
    const struct secret *k = gcptoken_wanted(c->ent) ? gcptoken_sent(c->ent, c->token_gen)
                                                     : (const struct secret *)c->ent->key;
    if (k == NULL || (c->perr == NULL && (c->perr = malloc(sizeof(*c->perr))) == NULL)) {
        return;
    }
    struct provider_secret secret = {(const char *)k->data, k->len};
    if (provider_error_parse(c->body.data, c->body.len, &secret, 1, c->perr)) {
        c->perr_status = status;
    }
}

/*
 * The call ends on a provider's refusal (status): the agent's message, then
 * the provider's reason when the last attempt had one with that status
 * (call_note_provider_error); in OpenAI's shape also the provider's code and
 * param when it gave them (an SDK tests error.code ==
 * "context_length_exceeded"). Anthropic's shape (/v1/messages) carries the
 * provider's message as it is (Claude Code acts on "prompt is too long").
 * The log line keeps the agent's code.
 */
static void call_provider_error(struct call *c, int status, const char *type, const char *code,
                                const char *msg)
{
    if (c->perr == NULL || c->perr_status != status) {
        call_error(c, status, type, code, msg);
        return;
    }
    struct provider_error pe = *c->perr;
    struct request *r = call_end(c);
    if (messages_route(r->route)) {
        server_reply_error(r, status, type, code, pe.message);
        return;
    }
    char text[PROVIDER_ERROR_MAX_MESSAGE + 256];
    snprintf(text, sizeof(text), "%s: %s", msg, pe.message);
    r->error_code = code;
    json_t *body = json_pack("{s:{s:s,s:s,s:s?,s:s}}", "error", "message", text, "type", type,
                             "param", pe.param[0] != '\0' ? pe.param : NULL, "code",
                             pe.code[0] != '\0' ? pe.code : code);
    server_reply_json(r, status, body);
}

static void call_param_error(struct request *r, const char *param, const char *code,
                             const char *msg)
{
    if (messages_route(r->route)) { /* Anthropic's shape has no param */
        server_reply_error(r, 400, "invalid_request_error", code, msg);
        return;
    }
    r->error_code = code;
    json_t *body = json_pack("{s:{s:s,s:s,s:s?,s:s}}", "error", "message", msg, "type",
                             "invalid_request_error", "param", param, "code", code);
    server_reply_json(r, 400, body);
}

/*
 * The usage the call is counted with, bounded by what the request and the
 * model allow (usagebound_clamp): a provider's absurd count must not book the
 * call at an absurd cost. A count the provider reported that was lowered is
 * logged (the field, never the provider's text) and counted in
 * byok_usage_clamped_total; the agent's own estimates (usage_estimated) are
 * bounded silently. Idempotent: a stream's usage, bounded before its last
 * events (call_stream_end), is not reported again when it is recorded.
 */
static void call_usage_bound(struct call *c)
{
    if (c->ent == NULL || c->ent->entry == NULL) {
        return; /* no catalog: nothing to bound by, and no price either */
    }
    const struct route_candidate *cand = &c->cands[c->cur];
    unsigned clamped = usagebound_clamp(c->ent->entry, cand->model, c->op, c->req,
                                        !c->r->usage_estimated, &c->usage);
    if (clamped == 0 || c->r->usage_estimated) {
        return;
    }
    for (unsigned i = 0; i < USAGEBOUND_FIELDS; i++) {
        unsigned bit = 1U << i;
        if ((clamped & bit) == 0) {
            continue;
        }
        const char *field = usagebound_field_name(bit);
        char labels[METRICS_MAX_LABELS];
        metrics_labels(labels, sizeof(labels), "provider", cand->provider, "field", field, NULL);
        metrics_add(M_USAGE_CLAMPED, 1, labels);
        log_kv(LOGL_WARN,
               "provider usage above what the request and model allow; counted at the bound",
               "request_id", c->r->id, "tenant", c->r->tenant, "provider", cand->provider, "model",
               cand->model, "field", field, NULL);
    }
}

static void call_record_usage(struct call *c, const char *status)
{
    struct request *r = c->r;
    if (c->count_tokens) {
        return; /* counting tokens costs nothing: no usage, no cost */
    }
    const struct route_candidate *cand = &c->cands[c->cur];
    double cost = 0;
    call_usage_bound(c);
    if (c->ent != NULL && c->ent->entry != NULL) {
        cost = provider_cost(c->ent->entry, cand->model, &c->usage);
    }
    r->prompt_tokens = c->usage.prompt_tokens;
    r->completion_tokens = c->usage.completion_tokens;
    r->cached_tokens = c->usage.cached_tokens;
    r->cost_usd = cost;
    c->usage_counted = true;
    struct usage_record rec = {
        .tenant = r->tenant,
        .app = r->app,
        .provider = cand->provider,
        .model = cand->model,
        .key_type = r->cfg->vault.key_type,
        .status = status,
        .tokens = c->usage,
        .cost_usd = cost,
        .estimated = r->usage_estimated,
    };
    usage_record(c->ctx->usage, &rec);
    if (r->usage_estimated) {
        char labels[METRICS_MAX_LABELS];
        metrics_labels(labels, sizeof(labels), "tenant", r->tenant, "provider", cand->provider,
                       NULL);
        metrics_add(M_USAGE_ESTIMATED, 1, labels);
    }
}

/* The prompt tokens the request is estimated at (its own shape's fields). */
static long long call_prompt_estimate(const struct call *c)
{
    return c->shape == SHAPE_MESSAGES ? messages_prompt_estimate(c->req)
                                      : provider_prompt_estimate(c->op, c->req);
}

/* The route_need bits of the request. */
static unsigned call_needs(const struct call *c)
{
    return c->shape == SHAPE_MESSAGES ? messages_needs(c->req, c->count_tokens)
                                      : route_needs(c->op, c->req);
}

/*
 * The usage a stream or an abandoned call is counted with. Providers report
 * usage at the end (a stream's last chunk, Anthropic's message_delta); a call
 * that ends before, because the app left or the provider cut the stream, or a
 * provider that ignores include_usage, would count nothing although the
 * provider may bill it. The missing parts are estimated (prompt from the
 * request, completion from what was forwarded) and the request is marked.
 */
static void call_usage_settle(struct call *c)
{
    c->usage = c->st.usage;
    if (c->stream && c->st.usage_final) {
        return;
    }
    if (c->usage.prompt_tokens == 0) {
        c->usage.prompt_tokens = call_prompt_estimate(c);
    }
    if (c->usage.completion_tokens < c->st.est_completion) {
        c->usage.completion_tokens =
            c->st.est_completion < PROVIDER_MAX_TOKENS ? c->st.est_completion : PROVIDER_MAX_TOKENS;
    }
    c->usage.seen = true;
    c->r->usage_estimated = true;
}

/* The request's log line names the candidate being called. */
static void call_name_candidate(struct call *c)
{
    const struct route_candidate *cand = &c->cands[c->cur];
    snprintf(c->r->provider, sizeof(c->r->provider), "%s", cand->provider);
    snprintf(c->r->model, sizeof(c->r->model), "%s", cand->model);
}

/* The app went away: stop everything, no reply. */
static void call_abort(struct request *r)
{
    struct call *c = r->call;
    if (c != NULL) {
        if (c->cur < c->n_cands) { /* the log line names the provider being called */
            call_name_candidate(c);
        }
        if (c->xfer != NULL) {
            /*
             * The provider has the request and may bill it: the ledger keeps
             * the call, with its usage estimated where the provider has not
             * reported it yet.
             */
            call_usage_settle(c);
            call_record_usage(c, "client_closed");
        }
        (void)call_end(c);
    }
    r->status = 499;
    r->error_code = "client_closed";
    server_finish(r);
}

static void call_success_headers(struct call *c)
{
    struct request *r = c->r;
    const struct route_candidate *cand = &c->cands[c->cur];
    char att[16];
    snprintf(att, sizeof(att), "%zu", c->cur + 1);
    server_header(r, "X-BYOK-Provider", cand->provider);
    server_header(r, "X-BYOK-Model", cand->model);
    server_header(r, "X-BYOK-Attempts", att);
    if (c->kind != ROUTE_EXPLICIT) { /* one candidate: nothing was ranked */
        server_header(r, "X-BYOK-Route", route_strategy_name(c->strategy));
    }
    call_name_candidate(c);
}

/* ---- upstream callbacks -----------------------------------------------------------------------
 */

static void call_on_status(void *arg, long status)
{
    struct call *c = arg;
    c->up_status = status;
    c->up_ok = status >= 200 && status < 300;
    /*
     * A 2xx answer to a stream request labelled other than text/event-stream
     * is no event stream: the provider's error in JSON (some gateways answer
     * 200 with it, and its text may echo the key), an HTML page from a proxy,
     * an answer that ignored "stream". Passthrough would forward its lines as
     * frames; it is read whole instead, like a non-streamed answer, and never
     * forwarded. No Content-Type at all is taken as the stream it should be.
     */
    const char *ct = upstream_xfer_content_type(c->xfer);
    const char *want = call_evs(c) ? PROXY_EVENTSTREAM_TYPE : "text/event-stream";
    c->not_sse = c->stream && c->up_ok && ct != NULL && strncasecmp(ct, want, strlen(want)) != 0;
    char labels[METRICS_MAX_LABELS];
    metrics_labels(labels, sizeof(labels), "provider", c->cands[c->cur].provider, NULL);
    double now = server_now();
    metrics_observe(M_UPSTREAM_SECONDS, now - c->attempt_start, labels);
    if (c->up_ok) {
        latency_answered(c->ctx->latency, c->cands[c->cur].provider, c->cands[c->cur].model,
                         c->stream, now - c->attempt_start, now,
                         (double)c->r->cfg->router.latency_ttl_s);
    }
    call_health_answered(c, status);
    if (c->up_ok) {
        /*
         * The agent asks for identity and decodes nothing: a body in another
         * coding can be neither read nor passed on. Refused before a byte of
         * it reaches the app (call_on_data); a non-2xx body is only
         * classified, and its status decides whatever its coding.
         */
        c->coding = upstream_xfer_coding(c->xfer);
    }
    if (status == 429 || status == 503) {
        /* Only a bounded number is kept: the header's own bytes are never logged or passed on. */
        char ra[COOLDOWN_MAX_HEADER + 1], ra_ms[COOLDOWN_MAX_HEADER + 1];
        bool has_ra = upstream_xfer_header(c->xfer, "Retry-After", ra, sizeof(ra));
        bool has_ms = upstream_xfer_header(c->xfer, "retry-after-ms", ra_ms, sizeof(ra_ms));
        long long ms;
        c->ra_ms =
            cooldown_parse(has_ra ? ra : NULL, has_ms ? ra_ms : NULL, time(NULL), &ms) == ERR_OK
                ? ms
                : -1;
    }
    if (!c->up_ok) {
        /* Error bodies are only classified: keep a small cap. */
        buf_done(&c->body);
        buf_init(&c->body, PROXY_MAX_ERROR_BODY);
    }
}

/*
 * One provider event. Parsing stops at the first one that fails the stream
 * (the provider's error event, or one the adapter cannot read): sse_frame_end
 * then says where its frame starts, so that exactly the frames before it are
 * forwarded (and counted), never it or anything after it. Parsing also stops
 * after the stream's end marker, whose frame is the last one forwarded.
 */
static int call_sse_event(void *arg, const char *event, const char *data, size_t len)
{
    struct call *c = arg;
    size_t before = c->tbuf.len;
    enum err e = c->ad->stream_event(&c->st, event, data, len, &c->tbuf);
    if (e == ERR_OK && !c->st.failed && c->st.usage_tail) {
        /* The usage chunk the app did not ask for: the stream ends before it (call_on_data). */
        return 1;
    }
    if (e == ERR_OK && !c->st.failed) {
        /* The end marker ([DONE], message_stop): nothing after it is read. */
        return c->st.done ? SSE_END : 0;
    }
    if (c->tbuf.len > before) { /* nothing of the failing event goes out */
        c->tbuf.len = before;
        c->tbuf.data[before] = '\0';
    }
    c->stream_error = c->st.failed ? "provider_stream_error" : "stream_parse_error";
    return 1;
}

/*
 * One message of an AWS event stream (Bedrock): an event goes to the adapter
 * as the SSE event of its :event-type would, an exception or error message as
 * an "error" event, so that both framings share call_sse_event's handling.
 */
static int call_evs_message(void *arg, const char *message_type, const char *event_type,
                            const char *payload, size_t len)
{
    int rc = call_sse_event(arg, strcmp(message_type, "event") == 0 ? event_type : "error", payload,
                            len);
    return rc == SSE_END ? EVS_END : rc;
}

static void call_drained(struct evhttp_connection *evcon, void *arg)
{
    struct call *c = arg;
    if (c->paused && c->xfer != NULL) {
        c->paused = false;
        upstream_xfer_resume(c->xfer);
    }
}

static size_t call_app_backlog(const struct call *c)
{
    if (c->r->ev == NULL) {
        return 0;
    }
    struct evhttp_connection *evcon = evhttp_request_get_connection(c->r->ev);
    if (evcon == NULL) {
        return 0;
    }
    return evbuffer_get_length(bufferevent_get_output(evhttp_connection_get_bufferevent(evcon)));
}

static void call_stream_start(struct call *c)
{
    struct request *r = c->r;
    if (r->ev->major == 1 && r->ev->minor == 0) {
        /*
         * HTTP/1.0 has no chunked coding: a stream ends when the connection
         * closes. evhttp keeps a 1.0 connection that asked for keep-alive
         * open and frames its reply with the length known at the start:
         * "Content-Length: 0", and the stream's bytes would then be read as
         * the answer to the app's next request. Closed after the stream.
         */
        while (evhttp_remove_header(evhttp_request_get_input_headers(r->ev), "Connection") == 0) {
        }
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-BYOK-Request-Id", r->id);
    call_success_headers(c);
    evhttp_send_reply_start(r->ev, 200, "OK");
    c->reply_started = true;
    r->status = 200;
}

/*
 * Passthrough forwards whole SSE frames only, as the parser delimits them
 * (sse_frame_end): bytes after the last frame end wait in hold for the next
 * chunk, so a stream cut mid-frame never hands the app half an event glued to
 * our error event, and no byte is scanned twice (a large event arriving in
 * many reads costs linear time). last: parsing stopped, at a frame that
 * fails the stream (the provider's error event, which may echo key
 * fragments, or one that could not be read: the frames before it go on, it
 * and everything after are dropped) or after the end marker's frame (which
 * goes on; everything after it is dropped).
 */
/*
 * Queues whole frames for the app as they came, but for comments (their text
 * dropped) and id and retry lines (dropped): sse_scrub. The copy is made only
 * for frames that hold one, which providers rarely send.
 */
static enum err call_add_frames(struct call *c, const char *data, size_t len)
{
    if (!sse_needs_scrub(data, len)) {
        return evbuffer_add(c->chunk, data, len) == 0 ? ERR_OK : ERR_NOMEM;
    }
    char *tmp = malloc(len);
    if (tmp == NULL) {
        return ERR_NOMEM;
    }
    size_t n = sse_scrub(data, len, tmp);
    int rc = evbuffer_add(c->chunk, tmp, n);
    free(tmp);
    return rc == 0 ? ERR_OK : ERR_NOMEM;
}

static enum err call_forward_frames(struct call *c, const char *data, size_t len, bool last)
{
    size_t end = sse_frame_end(&c->sse);
    if (end > 0) {
        enum err e = ERR_OK;
        if (c->hold.len > 0) {
            /* A frame begun in an earlier read: scrubbed whole, its lines may straddle. */
            e = buf_append(&c->hold, data, end);
            if (e == ERR_OK) {
                e = call_add_frames(c, c->hold.data, c->hold.len);
            }
            buf_reset(&c->hold);
        } else {
            e = call_add_frames(c, data, end);
        }
        if (e != ERR_OK) {
            return e;
        }
    }
    if (last) {
        buf_reset(&c->hold);
        return ERR_OK;
    }
    return end < len ? buf_append(&c->hold, data + end, len - end) : ERR_OK;
}

/*
 * How a stream's first body bytes begin, before anything went to the app:
 * LEAD_BLANK when the chunk holds only whitespace and a UTF-8 BOM (nothing
 * decided yet: the bytes are dropped, they mean nothing to SSE or JSON),
 * LEAD_JSON when its first other byte opens a JSON document (no event stream
 * begins so: it would be a line of one field named "{..."; an error labelled
 * text/event-stream does), LEAD_SSE otherwise.
 */
enum call_lead { LEAD_BLANK, LEAD_JSON, LEAD_SSE };

static enum call_lead call_stream_lead(const char *data, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char ch = (unsigned char)data[i];
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
            i++;
        } else if (ch == 0xEF && len - i >= 3 && memcmp(data + i, "\xEF\xBB\xBF", 3) == 0) {
            i += 3;
        } else {
            return ch == '{' || ch == '[' ? LEAD_JSON : LEAD_SSE;
        }
    }
    return LEAD_BLANK;
}

/*
 * SHAPE_RESPONSES: the OpenAI chat chunks queued in c->chunk (whole frames:
 * passthrough forwards only whole ones, adapters translate whole events)
 * become the Responses events they make. On an error the events of the
 * frames before the failing one are queued all the same, and the stream's
 * error code is set for call_stream_end.
 */
static enum err call_responses_convert(struct call *c)
{
    size_t len = evbuffer_get_length(c->chunk);
    if (c->rs == NULL || len == 0) {
        return ERR_OK;
    }
    const char *data = (const char *)evbuffer_pullup(c->chunk, -1);
    enum err e = data != NULL ? responses_stream_feed(c->rs, data, len, &c->rbuf) : ERR_NOMEM;
    evbuffer_drain(c->chunk, len);
    if (c->rbuf.len > 0 && evbuffer_add(c->chunk, c->rbuf.data, c->rbuf.len) != 0 && e == ERR_OK) {
        e = ERR_NOMEM;
    }
    buf_reset(&c->rbuf);
    if (e != ERR_OK && c->stream_error == NULL) {
        c->stream_error = e == ERR_TOOBIG  ? "response_too_large"
                          : e == ERR_NOMEM ? "internal"
                                           : "stream_parse_error";
    }
    return e;
}

static enum upstream_data_rc call_on_data(void *arg, const char *data, size_t len)
{
    struct call *c = arg;
    if (c->coding != NULL) {
        return UPSTREAM_ABORT;
    }
    if (c->stream && c->up_ok && !c->reply_started && !c->not_sse && !call_evs(c)) {
        enum call_lead lead = call_stream_lead(data, len);
        if (lead == LEAD_BLANK) {
            return UPSTREAM_CONTINUE; /* the stream has not begun: nothing to forward or parse */
        }
        if (lead == LEAD_JSON) {
            c->not_sse = true; /* read whole, never forwarded: see call_on_status */
        }
    }
    if (!c->up_ok || !c->stream || c->not_sse) {
        c->received += c->up_ok ? len : 0;
        if (buf_append(&c->body, data, len) != ERR_OK) {
            if (!c->up_ok) {
                /*
                 * The error body is only a hint and its status is known: stop
                 * reading rather than wait out an endless one before failing over.
                 */
                c->err_body_cut = true;
                return UPSTREAM_ABORT;
            }
            c->too_big = true;
            return UPSTREAM_ABORT;
        }
        return UPSTREAM_CONTINUE;
    }
    if (c->r->ev == NULL) {
        return UPSTREAM_ABORT;
    }
    unsigned long round = upstream_round(c->ctx->up);
    bool first = !c->reply_started;
    if (first) {
        call_stream_start(c);
    } else {
        size_t backlog = call_app_backlog(c);
        /*
         * Above the high-water mark the app reads slower than the provider
         * writes. Within one read loop of curl (which reads a socket for as
         * long as it has data), queued bytes have not had a chance to leave
         * yet: frames that came together go together, up to
         * PROXY_ROUND_BYTES, then the provider is held until evhttp has
         * written the queue (call_drained). The first frame goes alone, so
         * that the app sees it at once.
         */
        if (backlog > (size_t)c->r->cfg->stream.high_water_bytes ||
            (backlog > 0 && c->sent_round == round && c->round_bytes >= PROXY_ROUND_BYTES)) {
            c->paused = true;
            return UPSTREAM_PAUSE;
        }
    }
    enum err e = call_evs(c) ? evs_feed(&c->evs, data, len) : sse_feed(&c->sse, data, len);
    /*
     * The usage chunk the app did not ask for (include_usage is the agent's,
     * for billing): its usage is read, the frames before it go, and the
     * stream ends there with [DONE], as the provider's would right after it.
     */
    bool usage_tail = e == ERR_CANCELLED && c->stream_error == NULL && c->st.usage_tail;
    if (usage_tail) {
        e = ERR_OK;
    }
    if (e != ERR_OK && c->stream_error == NULL) {
        /* The parser's own limits (SSE_MAX_LINE, upstream.max_response_bytes per event). */
        c->stream_error = e == ERR_TOOBIG ? "stream_event_too_large" : "stream_parse_error";
    }
    bool ended =
        usage_tail || (e == ERR_OK && (call_evs(c) ? evs_ended(&c->evs) : sse_ended(&c->sse)));
    /* What came before a failing frame in this read still goes to the app, then our error. */
    if (c->ad->stream_passthrough) {
        enum err fe = call_forward_frames(c, data, len, e != ERR_OK || ended);
        if (fe == ERR_OK && usage_tail) {
            evbuffer_add(c->chunk, "data: [DONE]\n\n", 14);
        }
        if (fe != ERR_OK) {
            /*
             * An unfinished frame past upstream.max_response_bytes: its data
             * may be small (comment lines, many short data lines), the frame
             * is not. The frames before it still go, then our error event.
             */
            if (fe == ERR_TOOBIG && c->stream_error == NULL) {
                c->stream_error = "stream_event_too_large";
            }
            return UPSTREAM_ABORT;
        }
    } else if (c->tbuf.len > 0) {
        evbuffer_add(c->chunk, c->tbuf.data, c->tbuf.len);
        buf_reset(&c->tbuf);
    }
    if (call_responses_convert(c) != ERR_OK) {
        /* The events before the failing chunk go, then the failure (call_on_done). */
        ended = false;
        e = ERR_PROTO;
    }
    size_t n = evbuffer_get_length(c->chunk);
    if (n > 0) {
        evhttp_send_reply_chunk_with_cb(c->r->ev, c->chunk, call_drained, c);
        server_flush_soon(c->r);
        c->round_bytes = c->sent_round == round ? c->round_bytes + n : n;
        c->sent_round = round;
        if (first) {
            c->round_bytes = PROXY_ROUND_BYTES;
        }
    }
    if (ended) {
        call_stream_complete(c); /* c is freed */
        return UPSTREAM_CONTINUE;
    }
    /* After a failing event nothing more is wanted from the provider. */
    return e != ERR_OK ? UPSTREAM_ABORT : UPSTREAM_CONTINUE;
}

/* Sends one stream frame: prefix, the compact dump of j (taken), a blank line. */
static void call_stream_send_json(struct call *c, const char *prefix, json_t *j)
{
    size_t len = 0;
    char *s = j != NULL ? jsonw_dumps(j, &len) : NULL;
    json_decref(j);
    if (s != NULL) {
        evbuffer_add(c->chunk, prefix, strlen(prefix));
        evbuffer_add(c->chunk, s, len);
        evbuffer_add(c->chunk, "\n\n", 2);
        free(s);
        evhttp_send_reply_chunk(c->r->ev, c->chunk);
        server_flush_soon(c->r);
    }
}

/*
 * A stream's cost is known only at its end, long after the headers left, so
 * no X-BYOK-Cost-USD header can carry it. The stream closes instead with an
 * SSE comment line, ": x-byok-usage {json}", that SSE readers (EventSource,
 * the OpenAI SDKs) skip and an app that wants the figure can read.
 */
static void call_stream_usage_comment(struct call *c)
{
    struct request *r = c->r;
    const struct route_candidate *cand = &c->cands[c->cur];
    call_stream_send_json(c, ": x-byok-usage ",
                          json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:f,s:b}", "request_id", r->id,
                                    "provider", cand->provider, "model", cand->model,
                                    "prompt_tokens", (json_int_t)c->usage.prompt_tokens,
                                    "completion_tokens", (json_int_t)c->usage.completion_tokens,
                                    "cached_tokens", (json_int_t)c->usage.cached_tokens,
                                    "cache_write_tokens", (json_int_t)c->usage.cache_write_tokens,
                                    "cost_usd", r->cost_usd, "estimated", (int)r->usage_estimated));
}

/*
 * SHAPE_RESPONSES: the stream's last events, response.completed (or
 * .incomplete) with the usage the call is counted with, or response.failed
 * naming the error code. Past rbuf's cap or out of memory the closing events
 * cannot be made: a short response.failed instead, else nothing.
 */
static void call_responses_end(struct call *c, const char *error_code, const char *message)
{
    /* Frames not yet converted (a passthrough cut mid-frame leaves the whole ones before it). */
    (void)call_responses_convert(c);
    enum err e = error_code != NULL
                     ? responses_stream_fail(c->rs, error_code, message, &c->usage, &c->rbuf)
                     : responses_stream_finish(c->rs, &c->usage, &c->rbuf);
    if (e != ERR_OK) {
        buf_reset(&c->rbuf);
        responses_stream_free(&c->rs);
        json_t *ev = json_pack("{s:s,s:s,s:s,s:n}", "type", "error", "code", "response_too_large",
                               "message", "the answer exceeded the agent's size limit", "param");
        call_stream_send_json(c, "event: error\ndata: ", ev);
        c->r->error_code = "response_too_large";
        return;
    }
    evbuffer_add(c->chunk, c->rbuf.data, c->rbuf.len);
    buf_reset(&c->rbuf);
    evhttp_send_reply_chunk(c->r->ev, c->chunk);
    server_flush_soon(c->r);
}

/* Ends a started stream; an error code adds an explicit error event first. */
static void call_stream_end(struct call *c, const char *error_code, const char *message)
{
    struct request *r = c->r;
    /* Before the events: the Responses ones carry the usage the call is counted with. */
    call_usage_settle(c);
    call_usage_bound(c);
    if (c->rs != NULL && r->ev != NULL) {
        if (error_code != NULL) {
            r->error_code = error_code;
        }
        call_responses_end(c, error_code, message);
    } else if (error_code != NULL && r->ev != NULL && c->shape == SHAPE_MESSAGES) {
        /* Anthropic's error event; the code is in the request's log line. */
        call_stream_send_json(c, "event: error\ndata: ", messages_error_json(500, message, r->id));
        r->error_code = error_code;
    } else if (error_code != NULL && r->ev != NULL) {
        call_stream_send_json(c, "event: error\ndata: ",
                              json_pack("{s:{s:s,s:s,s:n,s:s}}", "error", "message", message,
                                        "type", "upstream_error", "param", "code", error_code));
        r->error_code = error_code;
    }
    call_record_usage(c, error_code != NULL ? error_code : "ok");
    if (r->ev != NULL) {
        call_stream_usage_comment(c);
        evhttp_send_reply_end(r->ev);
        server_flush_soon(r);
    }
    r = call_end(c);
    server_finish(r);
}

/* byok_upstream_requests_total: one per transfer, by the provider's status (0: none). */
static void call_count_upstream(const struct call *c, enum err e, long status)
{
    char labels[METRICS_MAX_LABELS];
    char st[16];
    snprintf(st, sizeof(st), "%ld", e == ERR_OK ? status : 0L);
    metrics_labels(labels, sizeof(labels), "provider", c->cands[c->cur].provider, "status", st,
                   NULL);
    metrics_add(M_UPSTREAM, 1, labels);
}

/*
 * The end marker ([DONE], message_stop) went out whole: the app has the
 * complete answer, and its usage (include_usage puts it before [DONE],
 * Anthropic in message_delta). The stream ends now, counted ok, whatever the
 * provider does after the marker: more frames (never forwarded or counted),
 * a stall, a reset instead of the body's end. The transfer is left to
 * upstream to read to its end (normally the next bytes), so that the
 * connection serves the next call.
 */
static void call_stream_complete(struct call *c)
{
    call_count_upstream(c, ERR_OK, c->up_status);
    upstream_xfer_drain(c->xfer);
    c->xfer = NULL;
    call_stream_end(c, NULL, NULL);
}

/* The agent's own words for a stream_error code (never the provider's). */
static const char *call_stream_error_message(const char *code)
{
    static const struct {
        const char *code;
        const char *message;
    } messages[] = {
        {"provider_stream_error", "the provider reported an error mid-stream"},
        {"stream_event_too_large", "a provider stream event exceeded the agent's size limit"},
        {"stream_parse_error", "a provider stream event could not be read"},
        {"response_too_large", "the answer exceeded upstream.max_response_bytes"},
        {"internal", "the agent ran out of memory"},
    };
    for (size_t i = 0; i < sizeof(messages) / sizeof(messages[0]); i++) {
        if (strcmp(messages[i].code, code) == 0) {
            return messages[i].message;
        }
    }
    return "the provider stream failed after it started";
}

static bool call_failover_ok(const struct call *c, enum err e, long status)
{
    /*
     * Once a 2xx body has begun (up_ok is set by its first bytes) the provider
     * has done the work and may bill it: never a second call, streamed or
     * not. A 2xx whose first body byte never comes within
     * upstream.first_byte_timeout_ms (the time-to-first-token deadline) still
     * fails over.
     */
    if (c->reply_started || c->up_ok) {
        return false;
    }
    if (e != ERR_OK) {
        return e == ERR_TIMEOUT || e == ERR_UNAVAIL || e == ERR_CRYPTO || e == ERR_UPSTREAM;
    }
    /* A redirect is not followed (it could carry the key elsewhere): the provider is misconfigured.
     */
    return status == 429 || status >= 500 || (status >= 300 && status < 400);
}

/*
 * Notes why the current candidate failed. e is ERR_OK when the provider
 * answered with the failing status; status is -1 for trouble getting the key.
 * A candidate that cannot serve the request at all (no key, an API style this
 * agent does not speak) does not hide an earlier candidate's failure that a
 * retry may not meet (a timeout, a 429, a 5xx, the key store down): the app is
 * told to come back, not that nothing can serve it.
 */
static void call_failed(struct call *c, enum err e, long status)
{
    bool permanent = status != -1 && (e == ERR_NOTFOUND || e == ERR_UNSUPPORTED);
    if (permanent && c->failed_transient) {
        return;
    }
    c->last_err = e;
    c->last_status = status;
    c->token_failed = false;
    c->failed_transient = !permanent;
    c->last_cooling = false;
    c->last_key_limited = false;
    call_name_candidate(c); /* the log line names the provider whose failure decides the reply */
}

static void call_next(struct call *c)
{
    char labels[METRICS_MAX_LABELS];
    metrics_labels(labels, sizeof(labels), "provider", c->cands[c->cur].provider, NULL);
    metrics_add(M_FAILOVERS, 1, labels);
    call_release_attempt(c);
    c->cur++;
    call_attempt(c);
}

/* ---- provider health ------------------------------------------------------------------------ */

/*
 * The provider answered this attempt with a status that shows it is up: a
 * 2xx, or a 4xx other than 429 (the request's or the key's trouble, not the
 * provider's; a 429 is the account's, and cools the key instead). Its
 * health record is cleared. A 3xx (a catalog base_url that redirects) and a
 * 429 neither clear nor count.
 */
static void call_health_answered(struct call *c, long status)
{
    bool up = (status >= 200 && status < 300) || (status >= 400 && status < 500 && status != 429);
    if (!up || c->health_noted) {
        return;
    }
    c->health_noted = true;
    const char *provider = c->cands[c->cur].provider;
    if (health_success(c->ctx->health, provider) == HEALTH_RECOVERED) {
        log_kv(LOGL_INFO, "provider answers again; back in its place", "request_id", c->r->id,
               "provider", provider, NULL);
    }
}

/*
 * The kind of a transport-level failure, in the agent's words (for the log
 * line; never the provider's text), or NULL when the outcome says nothing
 * of the provider's health: e is upstream's, status the provider's (0 for
 * none).
 */
static const char *call_health_kind(enum err e, long status)
{
    switch (e) {
    case ERR_OK:
        return status >= 500 ? "status_5xx" : NULL;
    case ERR_UNAVAIL:
        return "connect_error";
    case ERR_CRYPTO:
        return "tls_error";
    case ERR_TIMEOUT:
        return "timeout"; /* connect, first byte, idle or total */
    case ERR_UPSTREAM:
        return "transport_error"; /* reset, an empty reply, a broken answer */
    default:
        return NULL;
    }
}

/*
 * The attempt's transfer ended (e, status as upstream gave them) before the
 * provider showed it is up (call_health_answered): a connect error, a TLS
 * failure, a timeout or a 5xx counts against the provider. Once its failures
 * in a row reach upstream.health_failures it is demoted for
 * upstream.health_demote_s: counted and logged once, at warn.
 */
static void call_health_failed(struct call *c, enum err e, long status)
{
    const char *kind = call_health_kind(e, status);
    if (c->health_noted || c->up_ok || kind == NULL) {
        return;
    }
    c->health_noted = true;
    const struct config *cfg = c->r->cfg;
    const char *provider = c->cands[c->cur].provider;
    double now = server_now();
    /* The "fastest" ranking counts it too, against this model: its success share drops. */
    latency_failed(c->ctx->latency, provider, c->cands[c->cur].model, now,
                   (double)cfg->router.latency_ttl_s);
    unsigned failures = 0;
    enum health_event ev =
        health_failure(c->ctx->health, provider, (unsigned)cfg->upstream.health_failures,
                       (double)cfg->upstream.health_demote_s, now, &failures);
    if (ev != HEALTH_DEMOTED) {
        return;
    }
    char labels[METRICS_MAX_LABELS];
    metrics_labels(labels, sizeof(labels), "provider", provider, NULL);
    metrics_add(M_DEMOTIONS, 1, labels);
    char n[16], secs[24], st[16];
    snprintf(n, sizeof(n), "%u", failures);
    snprintf(secs, sizeof(secs), "%ld", cfg->upstream.health_demote_s);
    snprintf(st, sizeof(st), "%ld", e == ERR_OK ? status : 0L);
    log_kv(LOGL_WARN, "provider demoted: tried after the healthy candidates", "request_id",
           c->r->id, "provider", provider, "failures", n, "demote_s", secs, "last_failure", kind,
           "status", st, NULL);
}

/*
 * The "fastest" strategy: the candidates ranked by the speed this node
 * observed (latency.h): the ones not measured within router.latency_ttl_s
 * first (so they get measured: call_attempt marks one it calls as being
 * measured, so that calls starting meanwhile do not all go to it), then by
 * expected time to an answer, then the ones that only failed lately. Equal ones keep the order
 * planned (the tenant's). Demotion (call_health_order) applies after it.
 */
static void call_rank_fastest(struct call *c)
{
    if (c->n_cands < 2) {
        return;
    }
    const char *providers[ROUTE_MAX_CANDIDATES], *models[ROUTE_MAX_CANDIDATES];
    size_t order[ROUTE_MAX_CANDIDATES];
    for (size_t i = 0; i < c->n_cands; i++) {
        providers[i] = c->cands[i].provider;
        models[i] = c->cands[i].model;
    }
    latency_rank(c->ctx->latency, providers, models, c->n_cands, c->stream, server_now(),
                 (double)c->r->cfg->router.latency_ttl_s, order);
    struct route_candidate sorted[ROUTE_MAX_CANDIDATES];
    for (size_t i = 0; i < c->n_cands; i++) {
        sorted[i] = c->cands[order[i]];
    }
    memcpy(c->cands, sorted, c->n_cands * sizeof(*c->cands));
    log_kv(LOGL_DEBUG, "candidates ranked by observed speed", "request_id", c->r->id, "first",
           c->cands[0].provider, "model", c->cands[0].model, NULL);
}

/*
 * The "balanced" strategy: the planned estimates (cands[i].cost) and this
 * node's speeds, mixed by the tenant's speed_weight (route_rank_balanced).
 */
static void call_rank_balanced(struct call *c, const json_t *settings)
{
    if (c->n_cands < 2) {
        return;
    }
    double speed[ROUTE_MAX_CANDIDATES];
    double now = server_now();
    double ttl = (double)c->r->cfg->router.latency_ttl_s;
    for (size_t i = 0; i < c->n_cands; i++) {
        speed[i] = latency_score(c->ctx->latency, c->cands[i].provider, c->cands[i].model,
                                 c->stream, now, ttl);
    }
    const json_t *sw = json_object_get(settings, "speed_weight");
    route_rank_balanced(c->cands, c->n_cands, speed,
                        json_is_integer(sw) ? (long long)json_integer_value(sw)
                                            : ROUTE_DEFAULT_SPEED_WEIGHT);
    log_kv(LOGL_DEBUG, "candidates ranked by cost and speed", "request_id", c->r->id, "first",
           c->cands[0].provider, "model", c->cands[0].model, NULL);
}

/*
 * Demoted providers go behind the healthy candidates of this call, each
 * group in the order planned (the tenant's). None is dropped: when every
 * candidate is demoted the order stays as planned, and a call pinned to one
 * provider has that one candidate.
 */
static void call_health_order(struct call *c)
{
    if (c->r->cfg->upstream.health_failures == 0 || c->n_cands < 2 ||
        health_count(c->ctx->health) == 0) {
        return;
    }
    const char *names[ROUTE_MAX_CANDIDATES];
    size_t order[ROUTE_MAX_CANDIDATES];
    for (size_t i = 0; i < c->n_cands; i++) {
        names[i] = c->cands[i].provider;
    }
    size_t demoted = health_order(c->ctx->health, names, c->n_cands, server_now(), order);
    if (demoted == 0 || demoted == c->n_cands) {
        return;
    }
    struct route_candidate sorted[ROUTE_MAX_CANDIDATES];
    for (size_t i = 0; i < c->n_cands; i++) {
        sorted[i] = c->cands[order[i]];
    }
    memcpy(c->cands, sorted, c->n_cands * sizeof(*c->cands));
    char nd[24];
    snprintf(nd, sizeof(nd), "%zu", demoted);
    log_kv(LOGL_DEBUG, "demoted providers moved behind the healthy candidates", "request_id",
           c->r->id, "demoted", nd, "first", c->cands[0].provider, NULL);
}

/* The tenant's key for the candidate being tried, as cooldowns name it (creds key_id). */
static const char *call_key_id(const struct keycache_entry *ent)
{
    const char *id = json_string_value(json_object_get(ent->creds, "key_id"));
    return id != NULL ? id : "";
}

/* The cooldown's cap: upstream.retry_after_max_s, or with cooldowns off the default one. */
static long long call_retry_cap_ms(const struct call *c)
{
    long max_s = c->r->cfg->upstream.retry_after_max_s;
    return (max_s > 0 ? max_s : CONFIG_DEFAULT_RETRY_AFTER_MAX_S) * 1000LL;
}

static void call_note_wait(struct call *c, long long ms)
{
    double at = server_now() + (double)ms / 1000.0;
    if (c->retry_at < 0 || at < c->retry_at) {
        c->retry_at = at;
    }
}

/*
 * The provider answered 429, or 503 with a Retry-After: the tenant's key for
 * it cools for the provider's wait (COOLDOWN_DEFAULT_MS for a 429 that gave
 * none usable), capped by upstream.retry_after_max_s. A 503 without one
 * fails over as before, with no cooldown.
 */
static void call_cooldown_note(struct call *c, long status)
{
    long long wait = c->ra_ms;
    if (wait < 0) {
        if (status != 429) {
            return;
        }
        wait = COOLDOWN_DEFAULT_MS;
    }
    long long cap = call_retry_cap_ms(c);
    if (wait > cap) {
        wait = cap;
    }
    call_note_wait(c, wait);
    if (c->r->cfg->upstream.retry_after_max_s == 0 || wait == 0 || c->ent == NULL) {
        return;
    }
    const char *provider = c->cands[c->cur].provider;
    double now = server_now();
    int started = cooldown_start(c->ctx->cool, c->r->tenant, provider, call_key_id(c->ent),
                                 now + (double)wait / 1000.0, now);
    if (started != 0) {
        char st[16], secs[32];
        snprintf(st, sizeof(st), "%ld", status);
        snprintf(secs, sizeof(secs), "%.3f", (double)wait / 1000.0);
        log_kv(started > 0 ? LOGL_INFO : LOGL_WARN,
               started > 0 ? "provider asked to wait; the tenant's key cools down"
                           : "cooldown table full; the provider's wait is not kept",
               "request_id", c->r->id, "tenant", c->r->tenant, "provider", provider, "status", st,
               "cooldown_s", secs, NULL);
    }
}

/*
 * Seconds the candidate's key (ent) still cools, 0 when it may be called.
 * The table is empty unless a provider asked to wait: then no lookup.
 */
static double call_cooling(const struct call *c, const struct keycache_entry *ent)
{
    if (cooldown_count(c->ctx->cool) == 0) {
        return 0;
    }
    return cooldown_left(c->ctx->cool, c->r->tenant, c->cands[c->cur].provider, call_key_id(ent),
                         server_now());
}

/*
 * The candidate's key cools (key_limited false) or is at its own rate_limit
 * (true): not called, counted, and the next candidate is tried. Either way
 * the skip counts as a 429 where the last failure decides the reply, and
 * left (seconds until the key may be called) goes into its Retry-After.
 */
static void call_skip(struct call *c, double left, bool key_limited)
{
    const char *provider = c->cands[c->cur].provider;
    char labels[METRICS_MAX_LABELS];
    if (key_limited) {
        metrics_labels(labels, sizeof(labels), "tenant", c->r->tenant, "limit", "rate_limit", NULL);
        metrics_add(M_RATE_LIMITED, 1, labels);
    } else {
        metrics_labels(labels, sizeof(labels), "provider", provider, NULL);
        metrics_add(M_COOLDOWN_SKIPS, 1, labels);
    }
    long long ms = (long long)(left * 1000.0);
    call_note_wait(c, (double)ms < left * 1000.0 ? ms + 1 : ms);
    call_failed(c, ERR_OK, 429);
    c->last_cooling = !key_limited;
    c->last_key_limited = key_limited;
    char secs[32];
    snprintf(secs, sizeof(secs), "%.3f", left);
    log_kv(LOGL_DEBUG,
           key_limited ? "candidate skipped: the tenant's key is at its rate_limit"
                       : "candidate skipped: the tenant's key cools down",
           "request_id", c->r->id, "tenant", c->r->tenant, "provider", provider, "retry_in_s", secs,
           NULL);
    call_release_attempt(c);
    c->cur++;
    call_attempt(c);
}

/* The rate-limit table is full of buckets in use: the limit is not applied to this call. */
static void call_limit_unrecorded(const struct call *c, const char *limit)
{
    log_kv(LOGL_WARN, "rate limit table full; the limit is not applied to this call", "request_id",
           c->r->id, "tenant", c->r->tenant, "limit", limit, NULL);
}

/*
 * The tenant's limit (rpm_limit or tpm_limit, of value limit) is reached:
 * answered 429 at once, no provider called, with Retry-After (seconds,
 * rounded up, until the bucket holds enough again). The message names the
 * limit and its value: the tenant's own settings, nothing secret.
 */
static void call_tenant_limited(struct call *c, const char *name, long long limit, double wait,
                                bool shared)
{
    char labels[METRICS_MAX_LABELS];
    metrics_labels(labels, sizeof(labels), "tenant", c->r->tenant, "limit", name, NULL);
    metrics_add(M_RATE_LIMITED, 1, labels);
    char ra[24], secs[32], value[24];
    snprintf(ra, sizeof(ra), "%lld", ratelimit_retry_after(wait));
    snprintf(secs, sizeof(secs), "%.3f", wait);
    snprintf(value, sizeof(value), "%lld", limit);
    log_kv(LOGL_DEBUG, "call refused: the tenant's rate limit is reached", "request_id", c->r->id,
           "tenant", c->r->tenant, "limit", name, "value", value, "retry_in_s", secs, NULL);
    server_header(c->r, "Retry-After", ra);
    bool rpm = strcmp(name, "rpm_limit") == 0;
    char msg[192];
    snprintf(msg, sizeof(msg),
             "the tenant's %s of %lld %s per minute is reached %s; retry after Retry-After "
             "seconds",
             name, limit, rpm ? "requests" : "tokens",
             shared ? "across the agents (this minute)" : "on this agent");
    call_error(c, 429, "rate_limit_error", rpm ? "tenant_rpm_exceeded" : "tenant_tpm_exceeded",
               msg);
}

/*
 * The prompt tokens a call reserves of the tenant's tpm_limit and budget: the
 * whole request (usagebound_request_tokens: tools, tool call arguments,
 * tool_use input, schemas and media too), never less than the router's
 * estimate (call_prompt_estimate, which counts message text only: the context
 * window check must not refuse calls that fit, so it keeps its own).
 */
static long long call_reserve_prompt(const struct call *c)
{
    long long text = call_prompt_estimate(c);
    long long all = usagebound_request_tokens(c->req);
    return all > text ? all : text;
}

/*
 * The tokens a call reserves in the tenant's tpm bucket: the whole request
 * (call_reserve_prompt), plus the output the app capped (max_tokens or
 * max_completion_tokens). Without a cap nothing is reserved for the output:
 * no bound is known (a guess would refuse calls that fit, or mean nothing),
 * and what the call used is settled when it ends, the bucket going into debt.
 */
static long long call_tpm_estimate(const struct call *c)
{
    if (c->count_tokens) {
        return 0; /* counting tokens uses none */
    }
    struct route_want w = call_want(c, false);
    return call_reserve_prompt(c) + w.max_output;
}

static void call_attempt_with(struct call *c, struct keycache_entry *ent);

/* A rate lease came (or did not): this candidate is tried again from the top. */
static void call_limits_ready(void *arg)
{
    struct call *c = arg;
    c->rlwait = NULL;
    call_attempt_with(c, c->ent);
}

/*
 * Takes n from name's rate lease of kind (ratelease.h). 1: taken; 0: the
 * call waits for a lease (call_limits_ready comes); -1: refused across the
 * nodes, for *ret_wait seconds; 2: not shared now (RATELEASE_LOCAL: the
 * caller applies this node's bucket). *ret_shared: taken or refused by the
 * shared limit.
 */
static int call_lease_take(struct call *c, const char *name, enum ratelease_kind kind,
                           long long limit, long long n, bool *ret_shared, double *ret_window,
                           double *ret_wait)
{
    long long retry = 0;
    enum ratelease_rc rc = ratelease_take(c->ctx->ratelease, name, kind, limit, n,
                                          call_limits_ready, c, &c->rlwait, ret_window, &retry);
    *ret_shared = rc == RATELEASE_OK || rc == RATELEASE_REFUSED;
    switch (rc) {
    case RATELEASE_OK:
        return 1;
    case RATELEASE_WAIT:
        return 0;
    case RATELEASE_REFUSED:
        *ret_wait = (double)retry;
        return -1;
    case RATELEASE_LOCAL:
    default:
        return 2;
    }
}

/*
 * The candidate's key (ent) against its rate_limit (requests per minute,
 * from creds; 0 = none): 1 when it may be called (its request taken), 0 when
 * the call waits for a rate lease (call_limits_ready comes), -1 when the key
 * is at its limit for *ret_wait seconds (*ret_shared: across the agents). The
 * limit is shared across the nodes through a rate lease of the key
 * (tenant/provider/key_type, ratelease.h); when that is not used now
 * (RATELEASE_LOCAL: per-node config, an older plugin, Vault unreachable) it
 * is this node's own bucket, per tenant × provider × key_id as a cooldown is.
 * The request is not given back if the call then fails, as with the bucket.
 */
static int call_key_limit(struct call *c, const struct keycache_entry *ent, double *ret_wait,
                          bool *ret_shared)
{
    long long limit = ratelimit_limit_of(json_object_get(ent->creds, "rate_limit"));
    *ret_shared = false;
    if (limit == 0) {
        return 1;
    }
    const char *provider = c->cands[c->cur].provider;
    char name[RATELEASE_MAX_NAME + 1];
    if (ratelease_key_name(name, sizeof(name), c->r->tenant, provider, c->r->cfg->vault.key_type)) {
        double window = 0;
        int lrc = call_lease_take(c, name, RATELEASE_KEY, limit, 1, ret_shared, &window, ret_wait);
        if (lrc != 2) {
            return lrc;
        }
    }
    int rc = ratelimit_take(c->ctx->rl, RATELIMIT_KEY, c->r->tenant, provider, call_key_id(ent),
                            limit, 1, server_now(), ret_wait);
    if (rc < 0) {
        call_limit_unrecorded(c, "rate_limit");
    }
    return rc == 0 && *ret_wait > 0 ? -1 : 1;
}

/*
 * Takes n of the tenant's limit of kind: from this node's rate lease when
 * the limit is shared across the nodes (ratelease.h), else (the config says
 * per node, or the shared path failed and the node fell back) from the
 * node's own bucket. 1: taken (*ret_shared, *ret_window say where from); 2:
 * passed without being recorded (the node's bucket table is full: nothing to
 * settle); 0: the call waits for a lease (call_limits_ready comes); -1:
 * refused, for *ret_wait seconds (the caller answers 429; *ret_shared: by the
 * shared limit).
 */
static int call_limit_take(struct call *c, enum ratelease_kind kind, long long limit, long long n,
                           bool *ret_shared, double *ret_window, double *ret_wait)
{
    int rc = call_lease_take(c, c->r->tenant, kind, limit, n, ret_shared, ret_window, ret_wait);
    if (rc != 2) {
        return rc;
    }
    int lrc = ratelimit_take(c->ctx->rl, kind == RATELEASE_RPM ? RATELIMIT_RPM : RATELIMIT_TPM,
                             c->r->tenant, NULL, NULL, limit, n, server_now(), ret_wait);
    if (lrc == 0) {
        return -1;
    }
    if (lrc < 0) {
        call_limit_unrecorded(c, kind == RATELEASE_RPM ? "rpm_limit" : "tpm_limit");
        return 2;
    }
    return 1;
}

/* Gives back the rpm request the call took (its tpm reservation was refused). */
static void call_rpm_give_back(struct call *c, long long rpm)
{
    if (c->rpm_shared) {
        ratelease_give(c->ctx->ratelease, c->r->tenant, RATELEASE_RPM, rpm, 1, c->rpm_window);
    } else {
        ratelimit_give(c->ctx->rl, RATELIMIT_RPM, c->r->tenant, NULL, NULL, rpm, 1, server_now());
    }
}

/*
 * The tenant's rpm_limit and tpm_limit (its settings, as the creds reply
 * of this candidate's key carries them; 0 = none), applied once a call,
 * before its first provider call: one request of rpm_limit, the estimate
 * (call_tpm_estimate) reserved of tpm_limit, each from this node's rate
 * lease (shared across the nodes) or its own bucket (call_limit_take).
 * Until the agent has fetched creds for the tenant it knows no settings; a
 * call always has them here, so the limits apply from the tenant's first
 * call on. False when the call was answered 429 or waits for a rate lease
 * (then it comes back here, and what it already took stays taken).
 */
static bool call_tenant_limits(struct call *c, const struct keycache_entry *ent)
{
    if (c->limits_checked) {
        return true;
    }
    long long rpm = ratelimit_limit_of(json_object_get(ent->settings, "rpm_limit"));
    long long tpm = ratelimit_limit_of(json_object_get(ent->settings, "tpm_limit"));
    double wait = 0;
    if (rpm > 0 && !c->rpm_taken) {
        int rc = call_limit_take(c, RATELEASE_RPM, rpm, 1, &c->rpm_shared, &c->rpm_window, &wait);
        if (rc < 0) {
            call_tenant_limited(c, "rpm_limit", rpm, wait, c->rpm_shared);
            return false;
        }
        if (rc == 0) {
            return false;
        }
        c->rpm_taken = true;
    }
    if (tpm > 0) {
        /*
         * At most one limit: a bucket or slice is debited no deeper than one
         * limit below zero (ratelimit_spend), so a larger reservation would be
         * settled against tokens never taken and the call would cost less
         * than it used. What it uses beyond is taken at settlement.
         */
        long long est = call_tpm_estimate(c);
        est = est < tpm ? est : tpm;
        bool shared = false;
        double window = 0;
        int rc = call_limit_take(c, RATELEASE_TPM, tpm, est, &shared, &window, &wait);
        if (rc == 0) {
            return false;
        }
        if (rc < 0) {
            /* Refused: the request is not made, so its rpm request goes back. */
            if (rpm > 0 && c->rpm_taken) {
                call_rpm_give_back(c, rpm);
            }
            call_tenant_limited(c, "tpm_limit", tpm, wait, shared);
            return false;
        }
        if (rc == 2) {
            c->limits_checked = true;
            return true; /* not recorded: nothing to settle */
        }
        c->tpm_limit = tpm;
        c->tpm_reserved = est;
        c->tpm_shared = shared;
        c->tpm_window = window;
    }
    c->limits_checked = true;
    return true;
}

/* All candidates failed (or there were none): the last failure decides the status. */
static void call_exhausted(struct call *c)
{
    if (c->retry_at >= 0) {
        /*
         * A candidate was rate limited or is cooling: Retry-After says in how
         * many seconds (rounded up) from now the first of them may be called
         * again (0 when that time passed while later candidates were tried).
         * The official SDKs wait that long before they retry a 429 or 5xx.
         */
        double left = c->retry_at - server_now();
        long long secs = left > 0 ? (long long)left : 0;
        if (left > 0 && (double)secs < left) {
            secs++;
        }
        char ra[24];
        snprintf(ra, sizeof(ra), "%lld", secs);
        server_header(c->r, "Retry-After", ra);
    }
    if (c->last_status == 402 && c->last_err == ERR_OK) {
        call_error(c, 402, "insufficient_quota", "budget_exceeded",
                   "the tenant's monthly budget (max_monthly_cost) has less left than this call "
                   "may cost (its prompt and max_tokens at the model's price)");
    } else if (c->last_status == 402) {
        call_error(c, 503, "server_error", "budget_unavailable",
                   "the tenant's monthly budget could not be checked: no budget lease from the "
                   "key store");
    } else if (c->last_err == ERR_TIMEOUT) {
        call_error(c, 504, "upstream_error", "upstream_timeout",
                   "the provider did not answer in time");
    } else if (c->last_err == ERR_OK && c->last_status == 429 && c->last_key_limited) {
        call_error(c, 429, "rate_limit_error", "key_rate_limited",
                   c->last_key_shared
                       ? "the tenant's key for the provider is at its rate_limit across the agents "
                         "(this minute); retry after Retry-After seconds"
                       : "the tenant's key for the provider is at its rate_limit on this agent; "
                         "retry after Retry-After seconds");
    } else if (c->last_err == ERR_OK && c->last_status == 429) {
        /* Every 429 noted a wait (COOLDOWN_DEFAULT_MS without a usable Retry-After). */
        call_provider_error(c, 429, "rate_limit_error", "rate_limited",
                            c->last_cooling
                                ? "the provider asked to wait before the tenant's key is used "
                                  "again; retry after Retry-After seconds"
                                : "the provider is rate limiting this key");
    } else if (c->last_err == ERR_OK && c->last_status >= 300 && c->last_status < 400) {
        call_error(c, 502, "upstream_error", "provider_redirect",
                   "the provider answered with a redirect, which is not followed: check its "
                   "base_url in the catalog");
    } else if (c->token_failed && c->last_err == ERR_AUTH) {
        call_error(c, 502, "upstream_error", "provider_auth_failed",
                   "the token endpoint refused the tenant's service-account key");
    } else if (c->token_failed) {
        call_error(c, 502, "upstream_error", "provider_error",
                   "no access token could be had for the tenant's service-account key");
    } else if (c->last_err == ERR_UNAVAIL && c->last_status == -1) {
        call_error(c, 503, "server_error", "vault_unavailable", "the key store is unreachable");
    } else if (c->last_status == -1) {
        call_key_failure_reply(c, c->last_err);
    } else if (c->last_err == ERR_NOTFOUND) {
        call_error(c, 404, "invalid_request_error", "no_provider_key",
                   "the tenant has no active key for this provider");
    } else if (c->last_err == ERR_UNSUPPORTED) {
        call_error(c, 400, "invalid_request_error", "unsupported",
                   "no candidate provider supports this request");
    } else {
        call_error(c, 502, "upstream_error", "provider_error", "the provider call failed");
    }
}

static void call_free_body(const void *data, size_t len, void *arg)
{
    free((void *)data);
}

/*
 * A 2xx answer that reports no usage (some local servers): estimated like an
 * abandoned call's, the completion from the answer's text. out is the answer
 * in OpenAI's shape, or NULL when it was not parsed (passthrough).
 */
/* Usage wholly estimated: the prompt from the request, completion as given (capped). */
static void call_usage_estimated(struct call *c, long long completion)
{
    c->usage.prompt_tokens = call_prompt_estimate(c);
    c->usage.completion_tokens =
        completion < PROVIDER_MAX_TOKENS ? completion : PROVIDER_MAX_TOKENS;
    c->usage.cached_tokens = 0;
    c->usage.cache_write_tokens = 0;
    c->usage.cache_write_1h_tokens = 0;
    c->usage.seen = true;
    c->r->usage_estimated = true;
}

static void call_usage_from_answer(struct call *c, const json_t *out)
{
    json_t *own = NULL;
    if (out == NULL && c->op == PROVIDER_CHAT && c->body.data != NULL) {
        own = json_loadb(c->body.data, c->body.len, 0, NULL);
        out = own;
    }
    call_usage_estimated(c, c->op == PROVIDER_CHAT ? provider_completion_estimate(out) : 0);
    json_decref(own);
}

/*
 * A 2xx the call cannot complete: its body cut, unreadable or over
 * upstream.max_response_bytes, or an empty stream. The provider answered and
 * may bill it, so it is counted, with estimated usage (prompt from the
 * request; completion from the bytes received, / 4), under the error code,
 * and never failed over.
 */
static void call_answered_error(struct call *c, int status, const char *code, const char *msg)
{
    call_name_candidate(c); /* the log line names the provider that answered */
    if (c->stream) {
        call_usage_settle(c);
    } else {
        call_usage_estimated(c, (long long)(c->received / 4));
    }
    call_record_usage(c, code);
    call_error(c, status, "upstream_error", code, msg);
}

/* The success headers, with the cost call_record_usage counted. */
static void call_success_cost_headers(struct call *c)
{
    char cost[32];
    snprintf(cost, sizeof(cost), "%.8f", c->r->cost_usd);
    call_success_headers(c);
    server_header(c->r, "X-BYOK-Cost-USD", cost);
}

/*
 * A 2xx answer passed through (OpenAI-shaped passthrough, SHAPE_MESSAGES):
 * the provider's bytes (c->body) are handed to evhttp without a copy, the
 * call counted "ok", and the app gets them in a 200. When the agent cannot
 * hold them for evhttp (out of memory) the call is still counted, as
 * "internal" (the provider answered and may bill it, as in
 * call_stream_send_answer), and the app gets a 500 in its route's error
 * shape (server_reply_error: OpenAI's, or Anthropic's on /v1/messages),
 * never a 200 with an empty body.
 */
static void call_reply_body(struct call *c)
{
    size_t len = 0;
    char *data = buf_take(&c->body, &len);
    struct evbuffer *eb = evbuffer_new();
    if (eb == NULL ||
        (data != NULL && evbuffer_add_reference(eb, data, len, call_free_body, NULL) != 0)) {
        free(data);
        if (eb != NULL) {
            evbuffer_free(eb);
        }
        call_name_candidate(c); /* the log line names the provider that answered */
        call_record_usage(c, "internal");
        call_error(c, 500, "server_error", "internal", "out of memory");
        return;
    }
    call_record_usage(c, "ok");
    call_success_cost_headers(c);
    struct request *r = call_end(c);
    server_reply_buf(r, 200, "application/json", eb);
    evbuffer_free(eb);
}

/*
 * SHAPE_MESSAGES: the provider's 2xx answer goes to the app as its bytes,
 * counted with its usage (Anthropic's usage object; estimated when it has
 * none). A count_tokens answer is passed on and counts nothing.
 */
static void call_messages_reply(struct call *c)
{
    struct provider_usage u = {0};
    enum err e = c->ad->response(c->op, c->body.data != NULL ? c->body.data : "", c->body.len,
                                 c->cands[c->cur].model, NULL, &u);
    if (e == ERR_UPSTREAM) {
        call_answered_error(c, 502, "provider_error", "the provider answered with an error");
        return;
    }
    if (e != ERR_OK) {
        call_answered_error(c, 502, "bad_provider_response",
                            "the provider's response could not be read");
        return;
    }
    c->usage = u;
    if (!u.seen && !c->count_tokens) {
        call_usage_estimated(c, (long long)(c->received / 4));
    }
    call_reply_body(c);
}

static void call_reply_success(struct call *c)
{
    struct request *r = c->r;
    const struct route_candidate *cand = &c->cands[c->cur];
    if (c->shape == SHAPE_MESSAGES) {
        call_messages_reply(c);
        return;
    }
    json_t *out = NULL;
    struct provider_usage u = {0};
    bool passthrough = c->ad->stream_passthrough && c->shape == SHAPE_OPENAI;
    enum err e = c->ad->response(c->op, c->body.data != NULL ? c->body.data : "", c->body.len,
                                 cand->model, passthrough ? NULL : &out, &u);
    if (e == ERR_UPSTREAM) {
        /* The provider's error in a 2xx: our words, never its text (it may echo the key). */
        call_answered_error(c, 502, "provider_error", "the provider answered with an error");
        return;
    }
    /*
     * An embeddings answer translated from another shape (Vertex predictions,
     * Cohere, Bedrock) must hold one vector per input: data[i] is input i, and
     * a short or long list would pair texts with the wrong vectors.
     */
    if (e == ERR_OK && c->op == PROVIDER_EMBEDDINGS && out != NULL &&
        json_array_size(json_object_get(out, "data")) != provider_embed_inputs(c->req)) {
        json_decref(out);
        out = NULL;
        e = ERR_PROTO;
    }
    if (e != ERR_OK) {
        call_answered_error(c, 502, "bad_provider_response",
                            "the provider's response could not be read");
        return;
    }
    c->usage = u;
    if (!u.seen) {
        call_usage_from_answer(c, out);
        u = c->usage;
    }
    json_t *resp = NULL;
    if (c->shape == SHAPE_RESPONSES) {
        char id[RESPONSES_MAX_ID + 1];
        snprintf(id, sizeof(id), "resp_%s", r->id + 4); /* "req_" + 24 hex digits */
        e = responses_answer(c->echo, out, &u, id, (long long)time(NULL), cand->model, &resp);
        json_decref(out);
        out = NULL;
        if (e != ERR_OK) {
            call_answered_error(c, 502, "bad_provider_response",
                                e == ERR_NOMEM ? "the agent ran out of memory"
                                               : "the provider's response could not be read");
            return;
        }
    }
    if (passthrough) {
        /* OpenAI-shaped already: forward the provider's bytes without re-serialising. */
        call_reply_body(c);
        return;
    }
    call_record_usage(c, "ok");
    call_success_cost_headers(c);
    if (c->shape == SHAPE_BRAIN) {
        const json_t *msg =
            json_object_get(json_array_get(json_object_get(out, "choices"), 0), "message");
        json_t *b =
            json_pack("{s:O?,s:s,s:s,s:{s:I,s:I,s:I},s:f}", "response",
                      json_object_get(msg, "content"), "provider", cand->provider, "model",
                      cand->model, "usage", "prompt_tokens", (json_int_t)u.prompt_tokens,
                      "completion_tokens", (json_int_t)u.completion_tokens, "total_tokens",
                      (json_int_t)(u.prompt_tokens + u.completion_tokens), "cost_usd", r->cost_usd);
        json_decref(out);
        r = call_end(c);
        server_reply_json(r, 200, b);
        return;
    }
    if (c->shape == SHAPE_RESPONSES) {
        r = call_end(c);
        server_reply_json(r, 200, resp);
        return;
    }
    r = call_end(c);
    server_reply_json(r, 200, out);
}

/*
 * Sends the stream built from a whole answer (sse) as one buffer: it is
 * bounded, as the answer is and as sse's cap bounds the chunks built from it.
 * Then it ends as any stream that reached its end marker: the closing usage
 * comment, counted ok.
 */
static void call_stream_send_answer(struct call *c, struct buf *sse)
{
    size_t len = 0;
    char *data = buf_take(sse, &len);
    if (data == NULL || evbuffer_add_reference(c->chunk, data, len, call_free_body, NULL) != 0) {
        free(data);
        call_name_candidate(c);
        call_usage_settle(c);
        call_record_usage(c, "internal"); /* the provider answered: it may bill the call */
        call_error(c, 500, "server_error", "internal", "out of memory");
        return;
    }
    call_stream_start(c);
    bool converted = call_responses_convert(c) == ERR_OK;
    evhttp_send_reply_chunk(c->r->ev, c->chunk);
    server_flush_soon(c->r);
    call_stream_end(c, converted ? NULL : c->stream_error,
                    converted ? NULL : call_stream_error_message(c->stream_error));
}

/*
 * A stream request answered 2xx without SSE (call_on_status). A server that
 * ignored "stream" sent the whole answer: the app gets it as the stream it
 * asked for (what LiteLLM calls a fake stream), chunks built from the answer
 * in OpenAI's shape, which the adapter gives for Anthropic too. Anything else
 * (the provider's error in JSON, a proxy's page, a document that is no chat
 * answer) is a 502 in our words, never its text: it may echo the key.
 */
static void call_stream_not_sse(struct call *c)
{
    if (c->body.len == 0) {
        call_answered_error(c, 502, "empty_stream", "the provider sent no data");
        return;
    }
    if (c->shape == SHAPE_MESSAGES) {
        /* A passthrough has no stream to make of a whole answer in the app's shape. */
        call_answered_error(c, 502, "bad_provider_response",
                            "the provider answered a stream request without an event stream");
        return;
    }
    struct provider_usage u = {0};
    json_t *out = NULL;
    enum err re = c->ad->response(c->op, c->body.data != NULL ? c->body.data : "", c->body.len,
                                  c->cands[c->cur].model, &out, &u);
    /*
     * The chunks repeat the answer's id and model per choice: twice the
     * largest answer leaves room for them, and bounds an answer of many
     * choices under a long id.
     */
    struct buf sse;
    buf_init(&sse, (size_t)c->r->cfg->upstream.max_response_bytes * 2);
    enum err e = re == ERR_OK ? provider_stream_from_answer(out, c->include_usage, &sse) : re;
    /*
     * The usage is the provider's when it reported it (an answer that ignored
     * "stream" is billed in full), else estimated: from the answer's text
     * when it is streamed, from the bytes received when the body cannot be used.
     */
    if (re == ERR_OK && u.seen) {
        c->st.usage = u;
        c->st.usage_final = true;
    } else {
        c->st.est_completion =
            e == ERR_OK ? provider_completion_estimate(out) : (long long)(c->received / 4);
    }
    json_decref(out);
    if (e == ERR_OK) {
        call_stream_send_answer(c, &sse);
    } else if (e == ERR_UPSTREAM) {
        call_answered_error(c, 502, "provider_error", "the provider answered with an error");
    } else if (e == ERR_TOOBIG) {
        call_answered_error(c, 502, "response_too_large",
                            "the provider's answer, as an event stream, exceeded twice "
                            "upstream.max_response_bytes");
    } else {
        call_answered_error(c, 502, "bad_provider_response",
                            "the provider answered a stream request without an event stream");
    }
    buf_done(&sse);
}

static void call_on_done(void *arg, enum err e, long status)
{
    struct call *c = arg;
    c->xfer = NULL;
    if (c->err_body_cut && !c->up_ok && status > 0) {
        e = ERR_OK; /* aborted on purpose past the error body's cap: the status decides */
    }
    if (c->coding != NULL) {
        e = ERR_OK; /* aborted on purpose at the body's first byte: the status decides */
    }
    call_count_upstream(c, e, status);
    if (e == ERR_OK && !c->up_ok && status != 401 && status != 403 && c->ad != NULL &&
        c->ad->key_refused != NULL &&
        c->ad->key_refused(status, c->body.data != NULL ? c->body.data : "", c->body.len)) {
        /* The key refused in the provider's own words (Vertex's 400): a 401 from here on. */
        status = 401;
    }
    call_health_failed(c, e, status);
    if (c->too_big) {
        e = ERR_TOOBIG;
    }
    if (c->coding != NULL) {
        /* The agent's words: the coding only when upstream.c knows its name. */
        char msg[128];
        if (c->coding[0] != '\0') {
            snprintf(msg, sizeof(msg),
                     "the provider replied with Content-Encoding: %s, which was not requested",
                     c->coding);
        } else {
            snprintf(msg, sizeof(msg), "%s",
                     "the provider replied with a Content-Encoding that was not requested");
        }
        call_answered_error(c, 502, "upstream_bad_encoding", msg);
        return;
    }
    if (c->reply_started) {
        /* A stream whose end marker went out was ended then (call_stream_complete). */
        if (c->stream_error != NULL) {
            /* Checked first: the transfer was aborted on a failing event. */
            call_stream_end(c, c->stream_error, call_stream_error_message(c->stream_error));
        } else if (e != ERR_OK || !c->up_ok) {
            call_stream_end(c, e == ERR_TIMEOUT ? "upstream_timeout" : "upstream_stream_error",
                            "the provider stream failed after it started");
        } else {
            call_stream_end(c, "stream_truncated", "the provider stream ended early");
        }
        return;
    }
    if (e == ERR_OK && c->up_ok && c->not_sse) {
        call_stream_not_sse(c);
        return;
    }
    if (e == ERR_OK && c->up_ok) {
        if (c->stream) {
            /* A 2xx with an empty body: nothing was streamed. */
            call_answered_error(c, 502, "empty_stream", "the provider sent no data");
            return;
        }
        call_reply_success(c);
        return;
    }
    if (c->up_ok) {
        /* The provider answered 2xx and the transfer then failed: counted, no failover. */
        if (e == ERR_TOOBIG) {
            call_answered_error(c, 502, "response_too_large",
                                "the provider's response exceeded upstream.max_response_bytes");
        } else if (e == ERR_TIMEOUT) {
            call_answered_error(c, 504, "upstream_timeout",
                                "the provider's answer stopped before its end");
        } else {
            call_answered_error(c, 502, "provider_error",
                                "the provider's answer was cut before its end");
        }
        return;
    }
    call_note_provider_error(c, e, status);
    call_failed(c, e, e == ERR_OK ? status : 0);
    if (e == ERR_OK && (status == 429 || status == 503)) {
        call_cooldown_note(c, status);
    }
    if (e == ERR_OK && (status == 401 || status == 403)) {
        /*
         * The key was refused: drop it so the next call fetches a fresh (maybe
         * rotated) one, unless another call already replaced it.
         */
        keycache_invalidate_entry(c->ctx->keys, c->ent);
        gcptoken_drop(c->ent); /* a token Vertex refused (revoked, the account disabled) */
    }
    if (call_failover_ok(c, e, status)) {
        call_next(c);
        return;
    }
    if (e != ERR_OK) {
        call_error(c, 502, "upstream_error", "provider_error", "the provider call failed");
    } else if (status == 401 || status == 403) {
        call_error(c, 502, "upstream_error", "provider_auth_failed",
                   "the provider refused the tenant's key");
    } else if (status == 404) {
        call_provider_error(c, 404, "invalid_request_error", "model_not_found",
                            "the provider does not know this model");
    } else if (status == 413) {
        call_provider_error(c, 413, "invalid_request_error", "request_too_large",
                            "the provider refused the request size");
    } else {
        if (c->perr_status != 0) {
            c->perr_status = 400; /* the app gets a 400 for any other 4xx: the reason with it */
        }
        call_provider_error(c, 400, "invalid_request_error", "provider_rejected_request",
                            "the provider rejected the request");
    }
}

/* ---- attempts ---------------------------------------------------------------------------------
 */

/*
 * The catalog is the list of models a provider serves: an explicit
 * "<provider>/<model>" outside it is refused before anything is sent. An
 * entry without a model list (a local server whose models vary) allows any.
 */
static bool call_model_listed(const json_t *entry, const char *model)
{
    const json_t *models = json_object_get(entry, "models");
    if (json_array_size(models) == 0) {
        return true;
    }
    size_t i;
    const json_t *m;
    json_array_foreach(models, i, m)
    {
        const char *name = json_string_value(json_object_get(m, "name"));
        if (name != NULL && strcmp(name, model) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * What the router needs to know of this request. context: the planner will
 * check context windows (auto and bare names), so the prompt is estimated;
 * an explicit model's check does not use it.
 */
static struct route_want call_want(const struct call *c, bool context)
{
    long long out = 0;
    static const char *const outs[] = {"max_tokens", "max_completion_tokens"};
    for (size_t i = 0; i < 2; i++) {
        const json_t *v = json_object_get(c->req, outs[i]);
        if (json_is_integer(v) && json_integer_value(v) > out) {
            out = (long long)json_integer_value(v);
        }
    }
    struct route_want w = {
        .model = json_string_value(json_object_get(c->req, "model")),
        .task = c->task[0] ? c->task : NULL,
        .tier = c->tier[0] ? c->tier : NULL,
        .op = c->op,
        .prompt_tokens = context ? call_prompt_estimate(c) : 0,
        .max_output = out,
        .needs = call_needs(c),
        .model_ok = c->shape == SHAPE_MESSAGES ? call_messages_model : call_chat_model,
    };
    return w;
}

/*
 * The router's refusal as an answer: e from route_plan / route_check (not
 * ERR_OK). False when e is ERR_NOTFOUND for no reason (the caller answers).
 */
static bool call_refused(struct call *c, enum err e, enum route_refusal why)
{
    if (e == ERR_DENIED) {
        call_error(c, 403, "permission_error", "task_not_allowed",
                   "the tenant's settings do not allow this task type");
    } else if (e == ERR_INVAL) {
        call_error(c, 400, "invalid_request_error", "invalid_hint",
                   "X-BYOK-Task or X-BYOK-Tier has an unknown value");
    } else if (why == ROUTE_RESIDENCY) {
        call_error(c, 403, "permission_error", "residency_not_allowed",
                   "the provider does not serve from the tenant's residency (catalog regions)");
    } else if (why == ROUTE_TIER) {
        call_error(c, 403, "permission_error", "tier_not_allowed",
                   "the model is above the tenant's budget_tier (or X-BYOK-Tier)");
    } else if (why == ROUTE_CONTEXT) {
        call_error(c, 400, "invalid_request_error", "context_length_exceeded",
                   "the prompt (estimated) and max_tokens do not fit the model's context window "
                   "or maximum output");
    } else if (why == ROUTE_CAPABILITY) {
        call_error(c, 400, "invalid_request_error", "model_not_supported",
                   c->op == PROVIDER_EMBEDDINGS ? "the model does not do embeddings"
                                                : "the model does not do chat completions");
    } else if (why == ROUTE_PERMISSION) {
        /* What the request uses, by permission name: never anything of the key. */
        char msg[192];
        size_t n = (size_t)snprintf(msg, sizeof(msg),
                                    "the tenant's key for the provider does not permit this "
                                    "request; it uses:");
        unsigned needs = call_needs(c);
        for (unsigned b = 1; b < (1U << ROUTE_NEED_COUNT) && n < sizeof(msg); b <<= 1) {
            if (needs & b) {
                n += (size_t)snprintf(msg + n, sizeof(msg) - n, " %s", route_need_name(b));
            }
        }
        call_error(c, 403, "permission_error", "key_not_permitted", msg);
    } else {
        return false;
    }
    return true;
}

/* ---- monthly budget ------------------------------------------------------------------------- */

/* The tenant's max_monthly_cost, as the creds reply's settings carry it; 0 = no cap. */
static double call_budget_cap(const struct keycache_entry *ent)
{
    double cap = json_number_value(json_object_get(ent->settings, "max_monthly_cost"));
    return isfinite(cap) && cap > 0 ? cap : 0;
}

/*
 * What calling this candidate may cost, as far as the request tells: the
 * whole request (call_reserve_prompt) plus the output the app capped
 * (max_tokens), or default_max_tokens when it did not, at the catalog's
 * prices. What the call really cost replaces it when the call ends.
 */
static double call_budget_estimate(const struct call *c, const struct keycache_entry *ent)
{
    if (c->count_tokens) {
        return 0; /* counting tokens costs nothing */
    }
    struct route_want w = call_want(c, false);
    struct provider_usage u = {.prompt_tokens = call_reserve_prompt(c)};
    if (c->op == PROVIDER_CHAT) {
        u.completion_tokens = w.max_output > 0 ? w.max_output : c->r->cfg->default_max_tokens;
    }
    return provider_cost(ent->entry, c->cands[c->cur].model, &u);
}

/*
 * The budget could not cover this candidate (e ERR_OK: what is left of the
 * month's budget is less than its estimate; ERR_UNAVAIL: no lease could be
 * had). The next candidate may be cheaper (a local model costs nothing);
 * when none is left, the status 402 decides the reply (call_exhausted).
 */
static void call_budget_skip(struct call *c, enum err e, double est)
{
    char labels[METRICS_MAX_LABELS];
    const char *why = e == ERR_OK ? "exceeded" : "unavailable";
    metrics_labels(labels, sizeof(labels), "tenant", c->r->tenant, "reason", why, NULL);
    metrics_add(M_BUDGET_REFUSED, 1, labels);
    char usd[32];
    snprintf(usd, sizeof(usd), "%.6f", est);
    log_kv(LOGL_DEBUG,
           e == ERR_OK ? "candidate skipped: the tenant's monthly budget does not cover it"
                       : "candidate skipped: no budget lease could be had",
           "request_id", c->r->id, "tenant", c->r->tenant, "provider", c->cands[c->cur].provider,
           "estimate_usd", usd, NULL);
    call_failed(c, e, 402);
    call_release_attempt(c);
    c->cur++;
    call_attempt(c);
}

/* The catalog entry's api_style is style. */
static bool call_style_is(const json_t *entry, const char *style)
{
    const char *s = json_string_value(json_object_get(entry, "api_style"));
    return s != NULL && strcmp(s, style) == 0;
}

/*
 * SHAPE_MESSAGES: may the catalog entry's provider serve the call?
 * Anthropic-style providers, and Bedrock and Vertex (for their Claude
 * models, call_messages_model) except for count_tokens.
 */
static bool call_messages_style(const struct call *c, const json_t *entry)
{
    return call_style_is(entry, "anthropic") ||
           (!c->count_tokens &&
            (call_style_is(entry, "bedrock") || call_style_is(entry, "vertex")));
}

/* SHAPE_MESSAGES: route_want's model_ok: a Bedrock or Vertex provider's Claude models only. */
static bool call_messages_model(const json_t *entry, const char *model)
{
    if (call_style_is(entry, "bedrock")) {
        return provider_bedrock_claude(model);
    }
    return !call_style_is(entry, "vertex") || provider_vertex_claude_model(model);
}

/* The other shapes' model_ok: Claude on Vertex takes the Messages API only. */
static bool call_chat_model(const json_t *entry, const char *model)
{
    return !call_style_is(entry, "vertex") || !provider_vertex_claude_model(model);
}

/* SHAPE_MESSAGES: the upstream request for the current candidate (messages_build). */
static enum err call_messages_build(const struct call *c, const struct keycache_entry *ent,
                                    struct provider_http *h)
{
    struct messages_call mc = {
        .body = c->raw,
        .len = c->raw_len,
        .model = c->cands[c->cur].model,
        .stream = c->stream,
        .count = c->count_tokens,
        .version = c->anth_version[0] != '\0' ? c->anth_version : NULL,
        .beta = c->anth_beta[0] != '\0' ? c->anth_beta : NULL,
        .entry = ent->entry,
        .metadata = ent->metadata,
        .key = ent->key,
        .token = gcptoken_current(ent),
    };
    if (call_style_is(ent->entry, "bedrock")) {
        return messages_bedrock_build(&mc, h);
    }
    return call_style_is(ent->entry, "vertex") ? messages_vertex_build(&mc, h)
                                               : messages_build(&mc, h);
}

static void call_send(struct call *c);

/*
 * The token trade for a Vertex service-account key failed. A key the token
 * endpoint refused (invalid_grant: deleted, disabled, a wrong key) is treated
 * as a provider 401: the cached key (and its token) is dropped, so the next
 * call reads it from Vault again, and the call goes on to the next candidate.
 * Any other failure (the endpoint unreachable, slow or answering 5xx) fails
 * over too. Logged without the key, the JWT or the endpoint's words.
 */
static void call_token_failed(struct call *c, enum err e, long status)
{
    const char *provider = c->cands[c->cur].provider;
    char st[24];
    snprintf(st, sizeof(st), "%ld", status);
    log_kv(LOGL_WARN,
           e == ERR_DENIED ? "the token endpoint refused a service-account key"
                           : "no access token for a service-account key",
           "request_id", c->r->id, "tenant", c->r->tenant, "provider", provider, "error",
           err_name(e), "status", st, NULL);
    if (e == ERR_CANCELLED) {
        /* The key was wiped while the trade ran: fetched again, once (call_attempt_with). */
        call_attempt_with(c, c->ent);
        return;
    }
    if (e == ERR_DENIED) {
        keycache_invalidate_entry(c->ctx->keys, c->ent);
        gcptoken_drop(c->ent);
        call_failed(c, ERR_AUTH, 401);
    } else {
        call_failed(c, e == ERR_TIMEOUT ? ERR_TIMEOUT : ERR_UPSTREAM, 0);
    }
    c->token_failed = true;
    call_next(c);
}

static void call_token_ready(void *arg, enum err e, long status)
{
    struct call *c = arg;
    c->twait = NULL;
    if (e == ERR_OK && gcptoken_current(c->ent) == NULL) {
        e = c->ent->key == NULL ? ERR_CANCELLED : ERR_PROTO;
    }
    if (e != ERR_OK) {
        call_token_failed(c, e, status);
        return;
    }
    call_send(c);
}

/* Trades the current key (a service-account JSON) for an access token, or joins the trade. */
static void call_token_fetch(struct call *c)
{
    const struct config *cfg = c->r->cfg;
    struct gcptoken_opts o = {
        .token_url = cfg->upstream.google_token_url != NULL ? cfg->upstream.google_token_url
                                                            : CONFIG_GOOGLE_TOKEN_URL,
        .http =
            {
                .connect_timeout_ms = cfg->upstream.connect_timeout_ms,
                .first_byte_timeout_ms = cfg->upstream.first_byte_timeout_ms,
                .idle_timeout_ms = cfg->upstream.idle_timeout_ms,
                .total_timeout_ms = cfg->upstream.total_timeout_ms,
                .ca_file = cfg->upstream.ca_file,
                .proxy = cfg->upstream.proxy,
            },
    };
    struct gcptoken_wait *w = NULL;
    enum err e = gcptoken_get(c->ctx->up, &o, c->ent, call_token_ready, c, &w);
    if (e != ERR_OK) {
        call_token_failed(c, e, 0);
        return;
    }
    c->twait = w;
}

/* A lease came (or did not): this candidate is tried again from the top. */
static void call_budget_ready(void *arg)
{
    struct call *c = arg;
    c->bwait = NULL;
    call_attempt_with(c, c->ent);
}

/*
 * Reserves this candidate's estimate of a capped tenant's budget (the part
 * not already reserved for an earlier candidate of the call). False when
 * the call waits for a lease or the candidate was skipped.
 */
static bool call_budget(struct call *c, struct keycache_entry *ent)
{
    double cap = call_budget_cap(ent);
    if (cap <= 0) {
        return true;
    }
    double est = call_budget_estimate(c, ent);
    /* A call that costs nothing (a free local model) needs no lease. */
    if (est <= 0 || (c->budget_taken && est <= c->budget_reserved)) {
        return true;
    }
    double more = est - (c->budget_taken ? c->budget_reserved : 0);
    struct budget_wait *w = NULL;
    switch (budget_take(c->ctx->budget, c->r->tenant, cap, more, call_budget_ready, c, &w)) {
    case BUDGET_OK:
        c->budget_reserved += more;
        c->budget_taken = true;
        return true;
    case BUDGET_WAIT:
        c->bwait = w;
        return false;
    case BUDGET_EXHAUSTED:
        call_budget_skip(c, ERR_OK, est);
        return false;
    case BUDGET_UNAVAILABLE:
    default:
        call_budget_skip(c, ERR_UNAVAIL, est);
        return false;
    }
}

static void call_attempt_with(struct call *c, struct keycache_entry *ent)
{
    const struct route_candidate *cand = &c->cands[c->cur];
    c->ent = ent;
    if (ent->key == NULL) {
        /* Wiped between its delivery and now: fetched again, once. */
        keycache_put(&c->ent);
        if (!c->refetched) {
            c->refetched = true;
            call_fetch_key(c);
            return;
        }
        call_failed(c, ERR_CANCELLED, -1);
        call_key_failure_log(c, cand->provider, ERR_CANCELLED);
        call_next(c);
        return;
    }
    const char *style = json_string_value(json_object_get(ent->entry, "api_style"));
    c->ad = provider_find(style);
    if (c->shape == SHAPE_MESSAGES) {
        if (!call_messages_style(c, ent->entry) || !call_messages_model(ent->entry, cand->model)) {
            /* An explicit provider/model: the planner leaves other styles and models out. */
            struct request *rr = call_end(c);
            server_reply_error(rr, 404, "invalid_request_error", "model_not_found",
                               "the provider does not serve Anthropic's Messages API for this "
                               "model: /v1/messages goes to Anthropic-style providers and to "
                               "Claude on Bedrock and Vertex (count_tokens: Anthropic-style only)");
            return;
        }
        if (!messages_output_fits(c->req, ent->entry, cand->model)) {
            call_error(c, 400, "invalid_request_error", "context_length_exceeded",
                       "max_tokens is above the model's maximum output (catalog "
                       "max_output_tokens)");
            return;
        }
        c->ad =
            call_style_is(ent->entry, "bedrock") ? messages_bedrock_adapter() : messages_adapter();
    }
    c->framing = provider_stream_framing(c->ad);
    if (c->ad == NULL) {
        call_failed(c, ERR_UNSUPPORTED, 0);
        call_next(c);
        return;
    }
    if (c->kind == ROUTE_EXPLICIT && !call_model_listed(ent->entry, cand->model)) {
        struct request *rr = call_end(c);
        rr->error_code = "model_not_found";
        server_reply_error(rr, 404, "invalid_request_error", "model_not_found",
                           "the provider's catalog entry does not list this model");
        return;
    }
    if (c->kind == ROUTE_EXPLICIT) {
        struct route_want w = call_want(c, false);
        struct route_view v = {cand->provider, ent->entry, ent->settings, ent->permissions};
        enum route_refusal why;
        enum err re = route_check(&w, &v, cand->model, &why);
        if (re != ERR_OK) {
            if (!call_refused(c, re, why)) {
                call_error(c, 404, "invalid_request_error", "model_not_found",
                           "the provider's catalog entry does not list this model");
            }
            return;
        }
    }
    /*
     * After the explicit checks: a model the provider cannot serve is refused
     * as such. The tenant's limits before a cooling or rate-limited key: a
     * request the tenant may not make now is 429 whatever its candidates.
     */
    if (!call_tenant_limits(c, ent)) {
        return;
    }
    /*
     * The budget before cooling and the key's rate_limit: a wait for a lease
     * tries the candidate again from the top, and those two take their turn
     * only once.
     */
    if (!call_budget(c, ent)) {
        return;
    }
    double left = call_cooling(c, ent);
    if (left > 0) {
        call_skip(c, left, false);
        return;
    }
    bool key_shared = false;
    int krc = call_key_limit(c, ent, &left, &key_shared);
    if (krc == 0) {
        return; /* waits for the key's rate lease: back here from the top */
    }
    if (krc < 0) {
        c->last_key_shared = key_shared;
        call_skip(c, left, true);
        return;
    }
    if (strcmp(style, "vertex") == 0 && gcptoken_wanted(ent) && gcptoken_current(ent) == NULL) {
        call_token_fetch(c);
        return;
    }
    call_send(c);
}

/* Builds the current candidate's request (its key in c->ent) and starts the transfer. */
static void call_send(struct call *c)
{
    struct request *r = c->r;
    const struct config *cfg = r->cfg;
    const struct route_candidate *cand = &c->cands[c->cur];
    struct keycache_entry *ent = c->ent;
    struct provider_call pc = {
        .op = c->op,
        .req = c->req,
        .model = cand->model,
        .stream = c->stream,
        .entry = ent->entry,
        .metadata = ent->metadata,
        .key = ent->key,
        .token = gcptoken_current(ent),
        .default_max_tokens = cfg->default_max_tokens,
    };
    c->token_gen = gcptoken_generation(ent);
    struct provider_http h;
    memset(&h, 0, sizeof(h));
    enum err e =
        c->shape == SHAPE_MESSAGES ? call_messages_build(c, ent, &h) : c->ad->build(&pc, &h);
    size_t i;
    const json_t *line;
    json_array_foreach(c->fwd, i, line)
    {
        if (e == ERR_OK) {
            e = upstream_header_add(&h.headers, json_string_value(line));
        }
    }
    if (e == ERR_INVAL) {
        /* The adapter names the field when it knows it; never a value from the request. */
        struct provider_bad bad = h.bad;
        provider_http_done(&h);
        struct request *rr = call_end(c);
        if (bad.param[0] != '\0') {
            char msg[sizeof(bad.param) + sizeof(bad.msg) + 2];
            snprintf(msg, sizeof(msg), "%s %s", bad.param, bad.msg);
            call_param_error(rr, bad.param, "invalid_messages", msg);
        } else {
            call_param_error(rr, "messages", "invalid_messages",
                             "messages cannot be translated for this provider");
        }
        return;
    }
    if (e != ERR_OK) {
        provider_http_done(&h);
        call_failed(c, e == ERR_NOMEM ? ERR_UPSTREAM : ERR_UNSUPPORTED, 0);
        call_next(c);
        return;
    }
    struct upstream_opts o = {
        .connect_timeout_ms = cfg->upstream.connect_timeout_ms,
        .first_byte_timeout_ms = cfg->upstream.first_byte_timeout_ms,
        .idle_timeout_ms = cfg->upstream.idle_timeout_ms,
        .total_timeout_ms = cfg->upstream.total_timeout_ms,
        .allow_http = h.allow_http,
        .ca_file = cfg->upstream.ca_file,
        .unix_socket = NULL,
        /* A provider on the node is reached directly, never through the proxy. */
        .proxy = json_is_true(json_object_get(c->ent->entry, "local")) ? NULL : cfg->upstream.proxy,
    };
    static const struct upstream_cbs cbs = {call_on_status, call_on_data, call_on_done, NULL};
    c->up_status = 0;
    c->up_ok = false;
    c->health_noted = false;
    c->ra_ms = -1;
    c->too_big = false;
    c->err_body_cut = false;
    c->coding = NULL;
    c->not_sse = false;
    buf_done(&c->body);
    buf_init(&c->body, (size_t)cfg->upstream.max_response_bytes);
    if (c->stream) {
        if (c->sse_ready) {
            sse_done(&c->sse);
        }
        sse_init(&c->sse, (size_t)cfg->upstream.max_response_bytes, call_sse_event, c);
        c->sse_ready = true;
        if (c->evs_ready) {
            evs_done(&c->evs);
        }
        evs_init(&c->evs, (size_t)cfg->upstream.max_response_bytes, call_evs_message, c);
        c->evs_ready = true;
        memset(&c->st, 0, sizeof(c->st));
        c->st.skip_usage_chunk = !c->include_usage;
        buf_done(&c->hold);
        /*
         * The unfinished frame (at most max_response_bytes), plus one read's
         * frames after it: a frame begun in an earlier read is scrubbed
         * together with the rest of the read (call_forward_frames).
         */
        buf_init(&c->hold, (size_t)cfg->upstream.max_response_bytes + PROXY_HOLD_SLACK);
        snprintf(c->st.model, sizeof(c->st.model), "%s", cand->model);
    }
    c->attempt_start = server_now();
    if (c->strategy == ROUTE_FASTEST || c->strategy == ROUTE_BALANCED) {
        double ttl = (double)cfg->router.latency_ttl_s;
        if (latency_score(c->ctx->latency, cand->provider, cand->model, c->stream, c->attempt_start,
                          ttl) == LATENCY_UNKNOWN) {
            /* This attempt measures it: calls ranked by speed that start meanwhile go elsewhere. */
            latency_probe(c->ctx->latency, cand->provider, cand->model, c->stream, c->attempt_start,
                          ttl);
        }
    }
    e = upstream_xfer_start(c->ctx->up, "POST", h.url, h.body, h.body_len, h.headers, &o, &cbs, c,
                            &c->xfer);
    if (e != ERR_OK) {
        call_failed(c, ERR_UPSTREAM, 0);
        call_next(c);
    }
}

/*
 * A key-cache error that is the key store's trouble, not the tenant's: Vault
 * unreachable, slow, refusing the agent or rate-limiting it, a creds reply
 * that does not parse, or the cache / Vault queue full. The app gets 503
 * vault_unavailable for these (when no candidate is left), never 404 no key.
 */
static bool call_vault_trouble(enum err e)
{
    return e == ERR_UNAVAIL || e == ERR_TIMEOUT || e == ERR_DENIED || e == ERR_BUSY ||
           e == ERR_PROTO;
}

/*
 * A key-cache failure that is neither the key store's trouble nor "no key":
 * the secure heap full (ERR_NOMEM), a key wiped again before the call could
 * use it (ERR_CANCELLED), anything unexpected. Not the provider's fault: it
 * is logged once a call at error level and answered 503, never 502.
 */
static bool call_key_failure(enum err e)
{
    return e != ERR_OK && e != ERR_NOTFOUND && !call_vault_trouble(e);
}

static void call_key_failure_log(struct call *c, const char *provider, enum err e)
{
    if (c->key_logged) {
        return;
    }
    c->key_logged = true;
    log_kv(LOGL_ERROR,
           e == ERR_NOMEM ? "provider key not held: the secure heap is full"
                          : "provider key could not be used",
           "request_id", c->r->id, "tenant", c->r->tenant, "provider", provider, "error",
           err_name(e), NULL);
}

static void call_key_failure_reply(struct call *c, enum err e)
{
    if (e == ERR_NOMEM) {
        call_error(c, 503, "server_error", "key_memory_full",
                   "the agent could not hold the provider key in locked memory");
    } else {
        call_error(c, 503, "server_error", "key_unavailable",
                   "the agent could not get the provider key");
    }
}

static void call_key_ready(void *arg, enum err e, struct keycache_entry *ent)
{
    struct call *c = arg;
    c->wait = NULL;
    if (e != ERR_OK) {
        /* Key store or key cache trouble is reported as such when no other candidate is left. */
        if (e == ERR_NOTFOUND) {
            call_failed(c, e, 0);
        } else if (call_vault_trouble(e)) {
            call_failed(c, ERR_UNAVAIL, -1);
        } else {
            call_key_failure_log(c, c->cands[c->cur].provider, e);
            call_failed(c, e, -1);
        }
        metrics_add(M_CACHE, 1, "result=\"error\"");
        c->cur++;
        call_attempt(c);
        return;
    }
    call_attempt_with(c, ent);
}

/* Gets the current candidate's key from the key cache (call_key_ready). */
static void call_fetch_key(struct call *c)
{
    struct keycache_wait *w = NULL;
    enum err e =
        keycache_get(c->ctx->keys, c->r->tenant, c->cands[c->cur].provider, call_key_ready, c, &w);
    if (e != ERR_OK) {
        call_key_ready(c, e, NULL);
        return;
    }
    /* A cache hit has already run call_key_ready (which may have ended the call): w is NULL then.
     */
    if (w != NULL) {
        c->wait = w;
    }
}

static void call_attempt(struct call *c)
{
    if (c->cur >= c->n_cands) {
        call_exhausted(c);
        return;
    }
    const struct route_candidate *cand = &c->cands[c->cur];
    c->refetched = false;
    for (size_t i = 0; i < c->n_probes; i++) {
        struct keycache_entry *pe = c->probes[i].ent;
        if (pe == NULL || strcmp(pe->provider, cand->provider) != 0) {
            continue;
        }
        if (pe->key != NULL) {
            pe->refs++;
            call_attempt_with(c, pe);
            return;
        }
        /*
         * The probe's key was wiped while the call waited (on Vault for the
         * other probes, or on an earlier candidate): expired and swept,
         * dropped by another call's provider 401 or by a reload. Fetched
         * again, once.
         */
        c->refetched = true;
        break;
    }
    call_fetch_key(c);
}

/* ---- probing and planning ------------------------------------------------------------------- */

/* Does provider's catalog model m answer to what GET /v1/models/{model} asked (c->kind, c->one)? */
static bool call_model_asked(const struct call *c, const char *provider, const char *name)
{
    return strcmp(name, c->one.model) == 0 &&
           (c->kind != ROUTE_EXPLICIT || strcmp(provider, c->one.provider) == 0);
}

static void call_models_reply(struct call *c)
{
    json_t *data = json_array();
    for (size_t i = 0; i < c->n_probes; i++) {
        const struct keycache_entry *ent = c->probes[i].ent;
        if (ent == NULL) {
            continue;
        }
        size_t k;
        const json_t *m;
        json_array_foreach(json_object_get(ent->entry, "models"), k, m)
        {
            const char *name = json_string_value(json_object_get(m, "name"));
            if (name == NULL || !route_usable(ent->settings, ent->entry, m) ||
                !route_model_permitted(ent->permissions, m) ||
                (c->model_one && !call_model_asked(c, ent->provider, name))) {
                continue; /* outside the tenant's residency or budget tier, or its key's use */
            }
            char id[CONFIG_MAX_NAME + ROUTE_MAX_MODEL + 2];
            snprintf(id, sizeof(id), "%s/%s", ent->provider, name);
            json_array_append_new(
                data, json_pack("{s:s,s:s,s:i,s:s,s:O?,s:O?}", "id", id, "object", "model",
                                "created", 0, "owned_by", ent->provider, "capabilities",
                                json_object_get(m, "capabilities"), "context_window",
                                json_object_get(m, "context_window")));
        }
    }
    bool one = c->model_one;
    struct request *r = call_end(c);
    if (!one) {
        server_reply_json(r, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
        return;
    }
    /* The first provider (in the agent's providers order) that serves it, as a bare model call. */
    json_t *m = json_incref(json_array_get(data, 0));
    json_decref(data);
    if (m == NULL) {
        server_reply_error(r, 404, "invalid_request_error", "model_not_found",
                           "no provider the tenant has a key for serves this model");
        return;
    }
    server_reply_json(r, 200, m);
}

static void call_plan(struct call *c)
{
    struct route_view views[PROXY_MAX_PROBE];
    size_t n = 0;
    for (size_t i = 0; i < c->n_probes; i++) {
        const struct keycache_entry *ent = c->probes[i].ent;
        if (ent != NULL && ent->entry != NULL &&
            (c->shape != SHAPE_MESSAGES || call_messages_style(c, ent->entry))) {
            views[n].provider = ent->provider;
            views[n].entry = ent->entry;
            views[n].settings = ent->settings;
            views[n].permissions = ent->permissions;
            n++;
        }
    }
    if (n == 0 && call_vault_trouble(c->probe_err)) {
        call_error(c, 503, "server_error", "vault_unavailable", "the key store is unreachable");
        return;
    }
    if (n == 0 && call_key_failure(c->probe_err)) {
        call_key_failure_reply(c, c->probe_err);
        return;
    }
    if (c->shape == SHAPE_MODELS) {
        call_models_reply(c);
        return;
    }
    struct route_want w = call_want(c, true);
    if (c->route[0] == '\0') {
        /* The tenant's choice; a value this agent does not know (a newer plugin's) is "ordered". */
        const char *s =
            n > 0 ? json_string_value(json_object_get(views[0].settings, "routing_strategy"))
                  : NULL;
        if (route_strategy_of(s, &c->strategy) != ERR_OK) {
            c->strategy = ROUTE_ORDERED;
        }
    }
    w.strategy = c->strategy;
    w.default_output = c->r->cfg->default_max_tokens;
    c->cands = calloc(ROUTE_MAX_CANDIDATES, sizeof(*c->cands));
    if (c->cands == NULL) {
        c->cands = &c->one;
        call_error(c, 500, "server_error", "internal", "out of memory");
        return;
    }
    enum route_refusal why;
    enum err e = route_plan(c->kind, &w, views, n, c->cands, &c->n_cands, &why);
    if (e != ERR_OK && call_refused(c, e, why)) {
        return;
    }
    if (e != ERR_OK) {
        if (n == 0 && c->shape == SHAPE_MESSAGES) {
            call_error(c, 404, "invalid_request_error", "model_not_found",
                       "the tenant has no key for an Anthropic-style provider, Bedrock or "
                       "Vertex (Claude) that serves this model");
        } else if (n == 0) {
            call_error(c, 404, "invalid_request_error", "no_provider_key",
                       "the tenant has no active provider key");
        } else {
            call_error(c, 404, "invalid_request_error", "model_not_found",
                       "no provider the tenant has a key for serves this model");
        }
        return;
    }
    if (c->strategy == ROUTE_FASTEST) {
        call_rank_fastest(c);
    } else if (c->strategy == ROUTE_WEIGHTED && c->n_cands > 1) {
        /* The tenant's provider_weights (one settings object for all its views). */
        route_rank_weighted(c->cands, c->n_cands,
                            json_object_get(n > 0 ? views[0].settings : NULL, "provider_weights"),
                            &c->ctx->route_rng);
        log_kv(LOGL_DEBUG, "candidates drawn by provider_weights", "request_id", c->r->id, "first",
               c->cands[0].provider, "model", c->cands[0].model, NULL);
    } else if (c->strategy == ROUTE_BALANCED) {
        call_rank_balanced(c, n > 0 ? views[0].settings : NULL);
    }
    call_health_order(c);
    c->cur = 0;
    call_attempt(c);
}

static void call_probe_done(void *arg, enum err e, struct keycache_entry *ent)
{
    struct probe_slot *s = arg;
    struct call *c = s->c;
    s->wait = NULL;
    if (e == ERR_OK) {
        s->ent = ent;
    } else if (e != ERR_NOTFOUND && c->probe_err == ERR_OK) {
        c->probe_err = e;
    }
    if (call_key_failure(e)) {
        call_key_failure_log(c, c->r->cfg->providers.items[s->i], e);
    }
    if (--c->probe_pending == 0) {
        call_plan(c);
    }
}

static void call_probe(struct call *c)
{
    const struct config *cfg = c->r->cfg;
    size_t n = cfg->providers.n < PROXY_MAX_PROBE ? cfg->providers.n : PROXY_MAX_PROBE;
    c->probes = calloc(n, sizeof(*c->probes));
    if (c->probes == NULL) {
        call_error(c, 500, "server_error", "internal", "out of memory");
        return;
    }
    c->n_probes = n;
    /* One extra count held while issuing, so synchronous answers cannot finish the probe early. */
    c->probe_pending = 1;
    for (size_t i = 0; i < c->n_probes; i++) {
        struct probe_slot *s = &c->probes[i];
        s->c = c;
        s->i = i;
        c->probe_pending++;
        struct keycache_wait *w = NULL;
        enum err e = keycache_get(c->ctx->keys, c->r->tenant, cfg->providers.items[i],
                                  call_probe_done, s, &w);
        if (e != ERR_OK) {
            call_probe_done(s, e, NULL);
        } else {
            s->wait = w;
        }
    }
    if (--c->probe_pending == 0) {
        call_plan(c);
    }
}

/* ---- request parsing ------------------------------------------------------------------------ */

static struct call *call_new(struct request *r, enum provider_op op, enum call_shape shape)
{
    struct call *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->r = r;
    c->ctx = r->ctx;
    c->op = op;
    c->shape = shape;
    c->cands = &c->one;
    c->retry_at = -1;
    /* c->chunk (streams) and c->fwd (forwarded headers) are made only when needed. */
    buf_init(&c->tbuf, (size_t)16 * 1024 * 1024);
    r->call = c;
    r->abort = call_abort;
    return c;
}

/* Routing hints and the documented allow-list of headers forwarded upstream. */
static bool call_headers(struct call *c)
{
    struct request *r = c->r;
    static const struct {
        const char *name;
        size_t off;
    } hints[] = {{"X-BYOK-Task", offsetof(struct call, task)},
                 {"X-BYOK-Tier", offsetof(struct call, tier)},
                 {"X-BYOK-Route", offsetof(struct call, route)}};
    const struct config_strlist *allow = &r->cfg->forward_headers;
    /*
     * One pass over the request's headers (evhttp_find_header per name walked
     * them once per hint and per allowed name). The first of repeated headers
     * counts, as with evhttp_find_header.
     */
    enum { N_HINTS = sizeof(hints) / sizeof(hints[0]) };
    bool hint_seen[N_HINTS] = {false};
    bool allow_seen[CONFIG_MAX_LIST] = {false};
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(r->ev), next)
    {
        const char *v = kv->value;
        for (size_t i = 0; i < N_HINTS; i++) {
            if (hint_seen[i] || evutil_ascii_strcasecmp(kv->key, hints[i].name) != 0) {
                continue;
            }
            hint_seen[i] = true;
            if (strlen(v) > PROXY_MAX_HINT || strpbrk(v, "\r\n") != NULL) {
                char msg[128];
                snprintf(msg, sizeof(msg), "header '%s': longer than %d bytes or contains CR/LF",
                         hints[i].name, PROXY_MAX_HINT);
                call_param_error(r, hints[i].name, "invalid_header", msg);
                return false;
            }
            snprintf((char *)c + hints[i].off, PROXY_MAX_HINT + 1, "%s", v);
        }
        for (size_t i = 0; i < allow->n && i < CONFIG_MAX_LIST; i++) {
            if (allow_seen[i] || evutil_ascii_strcasecmp(kv->key, allow->items[i]) != 0) {
                continue;
            }
            if (c->shape == SHAPE_MESSAGES &&
                (evutil_ascii_strcasecmp(kv->key, "anthropic-version") == 0 ||
                 evutil_ascii_strcasecmp(kv->key, "anthropic-beta") == 0)) {
                /* /v1/messages checks and sends these itself: no second, unchecked copy. */
                continue;
            }
            allow_seen[i] = true;
            /* Header injection: a value with CR or LF would start a new upstream header. */
            if (strpbrk(v, "\r\n") != NULL || strlen(v) > PROXY_MAX_FORWARD_VALUE) {
                char msg[CONFIG_MAX_STR + 96];
                snprintf(msg, sizeof(msg),
                         "forwarded header '%s': longer than %d bytes or contains CR/LF",
                         allow->items[i], PROXY_MAX_FORWARD_VALUE);
                call_param_error(r, allow->items[i], "invalid_header", msg);
                return false;
            }
            if (c->fwd == NULL && (c->fwd = json_array()) == NULL) {
                server_reply_error(r, 500, "server_error", "internal", "out of memory");
                return false;
            }
            char line[CONFIG_MAX_NAME + PROXY_MAX_FORWARD_VALUE + 8];
            int n = snprintf(line, sizeof(line), "%s: %s", allow->items[i], v);
            /*
             * Not json_string: it refuses a value that is not UTF-8, and the
             * header was silently left out. RFC 9110 allows obs-text (bytes
             * 0x80-0xFF) in a value; curl sends it as it is.
             */
            if (n < 0 || (size_t)n >= sizeof(line) ||
                json_array_append_new(c->fwd, json_stringn_nocheck(line, (size_t)n)) != 0) {
                server_reply_error(r, 500, "server_error", "internal", "out of memory");
                return false;
            }
        }
    }
    return true;
}

static json_t *call_read_body(struct request *r)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->ev);
    size_t len = evbuffer_get_length(in);
    if ((long)len > r->cfg->limits.max_body_bytes) {
        server_reply_error(r, 413, "invalid_request_error", "body_too_large",
                           "request body exceeds limits.max_body_bytes");
        return NULL;
    }
    const char *data = (const char *)evbuffer_pullup(in, -1);
    json_error_t jerr;
    json_t *j = json_loadb(data != NULL ? data : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL) {
        call_param_error(r, NULL, "invalid_json", "request body is not valid JSON");
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        call_param_error(r, NULL, "invalid_json", "request body must be a JSON object");
        return NULL;
    }
    return j;
}

/* Type checks for the fields we rely on; the rest is forwarded as the app sent it. */
static bool call_validate(struct request *r, json_t *j, enum provider_op op)
{
    const json_t *model = json_object_get(j, "model");
    if (model != NULL && !json_is_string(model)) {
        call_param_error(r, "model", "invalid_type", "model must be a string");
        return false;
    }
    const json_t *stream = json_object_get(j, "stream");
    if (stream != NULL && !json_is_boolean(stream)) {
        call_param_error(r, "stream", "invalid_type", "stream must be a boolean");
        return false;
    }
    /*
     * Token counts the app asks for are bounded like the counts a provider
     * reports (PROVIDER_MAX_TOKENS, also the catalog's bound on a model's
     * max_output_tokens): the router adds them to the prompt estimate, and an
     * absurd value must be refused here rather than overflow there.
     */
    static const struct {
        const char *name;
        json_int_t max;
    } ints[] = {{"max_tokens", PROVIDER_MAX_TOKENS},
                {"max_completion_tokens", PROVIDER_MAX_TOKENS},
                {"n", LLONG_MAX}}; /* n is only passed on */
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        const json_t *v = json_object_get(j, ints[i].name);
        if (v != NULL && !json_is_null(v) &&
            (!json_is_integer(v) || json_integer_value(v) < 1 ||
             json_integer_value(v) > ints[i].max)) {
            char msg[96];
            snprintf(msg, sizeof(msg), "%s must be an integer from 1 to %lld", ints[i].name,
                     (long long)ints[i].max);
            call_param_error(r, ints[i].name, "invalid_type", msg);
            return false;
        }
    }
    const json_t *temp = json_object_get(j, "temperature");
    if (temp != NULL && !json_is_null(temp) && !json_is_number(temp)) {
        call_param_error(r, "temperature", "invalid_type", "temperature must be a number");
        return false;
    }
    const json_t *so = json_object_get(j, "stream_options");
    if (so != NULL && !json_is_null(so) && !json_is_object(so)) {
        call_param_error(r, "stream_options", "invalid_type", "stream_options must be an object");
        return false;
    }
    if (op == PROVIDER_EMBEDDINGS) {
        const json_t *input = json_object_get(j, "input");
        if (!json_is_string(input) && !(json_is_array(input) && json_array_size(input) > 0)) {
            call_param_error(r, "input", "invalid_type",
                             "input must be a string or a non-empty array");
            return false;
        }
        return true;
    }
    const json_t *msgs = json_object_get(j, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        call_param_error(r, "messages", "invalid_type", "messages must be a non-empty array");
        return false;
    }
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m)
    {
        const json_t *content = json_object_get(m, "content");
        if (!json_is_object(m) || !json_is_string(json_object_get(m, "role")) ||
            !(content == NULL || json_is_null(content) || json_is_string(content) ||
              json_is_array(content))) {
            call_param_error(r, "messages", "invalid_type",
                             "each message needs a string role and string or array content");
            return false;
        }
    }
    /*
     * Prompt-cache hints are checked here, for every provider (those that do
     * not take them have them stripped), so a bad one reaches none.
     */
    struct provider_bad bad;
    memset(&bad, 0, sizeof(bad));
    if (provider_cache_check(j, &bad) != ERR_OK) {
        char msg[sizeof(bad.param) + sizeof(bad.msg) + 2];
        snprintf(msg, sizeof(msg), "%s %s", bad.param, bad.msg);
        call_param_error(r, bad.param, "invalid_cache_control", msg);
        return false;
    }
    return true;
}

static void call_start(struct call *c)
{
    struct request *r = c->r;
    if (r->cfg->log_prompts) {
        const json_t *p = json_object_get(c->req, c->op == PROVIDER_CHAT ? "messages" : "input");
        r->prompt_log = json_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY);
    }
    const char *model = json_string_value(json_object_get(c->req, "model"));
    if (model == NULL) {
        json_object_set_new(c->req, "model", json_string("auto"));
        model = "auto";
    }
    struct route_candidate one;
    memset(&one, 0, sizeof(one));
    if (route_classify(model, &r->cfg->providers, &c->kind, &one) != ERR_OK) {
        struct request *rr = call_end(c);
        call_param_error(rr, "model", "invalid_model", PROXY_BAD_MODEL);
        return;
    }
    if (!route_hints_valid(c->task[0] ? c->task : NULL, c->tier[0] ? c->tier : NULL)) {
        call_error(c, 400, "invalid_request_error", "invalid_hint",
                   "X-BYOK-Task or X-BYOK-Tier has an unknown value");
        return;
    }
    if (c->route[0] != '\0' && route_strategy_of(c->route, &c->strategy) != ERR_OK) {
        call_error(
            c, 400, "invalid_request_error", "invalid_hint",
            "X-BYOK-Route has an unknown value: it must be ordered, cheapest, fastest, weighted or "
            "balanced");
        return;
    }
    if (c->kind == ROUTE_EXPLICIT) {
        c->one = one;
        c->n_cands = 1;
        c->cur = 0;
        call_attempt(c);
        return;
    }
    call_probe(c);
}

static void proxy_openai(struct request *r, enum provider_op op)
{
    json_t *j = call_read_body(r);
    if (j == NULL) {
        return;
    }
    if (!call_validate(r, j, op)) {
        json_decref(j);
        return;
    }
    struct call *c = call_new(r, op, SHAPE_OPENAI);
    if (c == NULL) {
        json_decref(j);
        server_reply_error(r, 500, "server_error", "internal", "out of memory");
        return;
    }
    c->req = j;
    c->stream = op == PROVIDER_CHAT && json_is_true(json_object_get(j, "stream"));
    c->include_usage =
        c->stream &&
        json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage"));
    if (c->stream && (c->chunk = evbuffer_new()) == NULL) {
        call_error(c, 500, "server_error", "internal", "out of memory");
        return;
    }
    if (!call_headers(c)) {
        c->r = NULL; /* the reply was sent: do not touch the request again */
        call_free(c);
        return;
    }
    call_start(c);
}

void proxy_chat(struct request *r)
{
    proxy_openai(r, PROVIDER_CHAT);
}

void proxy_embeddings(struct request *r)
{
    proxy_openai(r, PROVIDER_EMBEDDINGS);
}

/*
 * POST /v1/responses: the Responses request becomes a chat request
 * (responses.h), which is then called exactly as /v1/chat/completions is;
 * a refusal names the Responses field and sends nothing.
 */
void proxy_responses(struct request *r)
{
    json_t *j = call_read_body(r);
    if (j == NULL) {
        return;
    }
    struct responses_bad bad;
    json_t *chat = NULL, *echo = NULL;
    enum err e = responses_request(j, &bad, &chat, &echo);
    json_decref(j);
    if (e == ERR_INVAL) {
        call_param_error(r, bad.param, bad.code, bad.msg);
        return;
    }
    if (e != ERR_OK) {
        server_reply_error(r, 500, "server_error", "internal", "out of memory");
        return;
    }
    /* The chat path's own checks: what responses_request built passes them. */
    if (!call_validate(r, chat, PROVIDER_CHAT)) {
        json_decref(chat);
        json_decref(echo);
        return;
    }
    struct call *c = call_new(r, PROVIDER_CHAT, SHAPE_RESPONSES);
    if (c == NULL) {
        json_decref(chat);
        json_decref(echo);
        server_reply_error(r, 500, "server_error", "internal", "out of memory");
        return;
    }
    c->req = chat;
    c->echo = echo;
    c->stream = json_is_true(json_object_get(chat, "stream"));
    /* The usage chunk is wanted: response.completed carries the usage. */
    c->include_usage = c->stream;
    if (c->stream) {
        /*
         * What the translator holds (the answer's text and arguments) is
         * bounded like an answer. The events made at the end repeat it four
         * times (three .done events and the final response), with JSON's
         * escapes (two bytes for a newline or a quote: code answers are full
         * of them), and the echoed request fields (tools, instructions: the
         * body's bound). rbuf grows only as far as it is used.
         */
        size_t max = (size_t)r->cfg->upstream.max_response_bytes;
        char id[RESPONSES_MAX_ID + 1];
        snprintf(id, sizeof(id), "resp_%s", r->id + 4); /* "req_" + 24 hex digits */
        buf_init(&c->rbuf, 8 * max + (size_t)r->cfg->limits.max_body_bytes + (size_t)64 * 1024);
        if ((c->chunk = evbuffer_new()) == NULL ||
            responses_stream_new(echo, id, (long long)time(NULL), NULL, max, &c->rs) != ERR_OK) {
            call_error(c, 500, "server_error", "internal", "out of memory");
            return;
        }
    }
    if (!call_headers(c)) {
        c->r = NULL;
        call_free(c);
        return;
    }
    call_start(c);
}

void proxy_brain_chat(struct request *r)
{
    json_t *j = call_read_body(r);
    if (j == NULL) {
        return;
    }
    const json_t *msg = json_object_get(j, "message");
    const json_t *task = json_object_get(j, "task_type");
    const json_t *pref = json_object_get(j, "model_preference");
    if (!json_is_string(msg) || json_string_length(msg) == 0) {
        json_decref(j);
        call_param_error(r, "message", "invalid_type", "message must be a non-empty string");
        return;
    }
    if ((task != NULL && !json_is_null(task) && !json_is_string(task)) ||
        (pref != NULL && !json_is_null(pref) && !json_is_string(pref))) {
        json_decref(j);
        call_param_error(r,
                         task != NULL && !json_is_string(task) ? "task_type" : "model_preference",
                         "invalid_type", "must be a string");
        return;
    }
    const char *model =
        json_is_string(pref) && json_string_length(pref) > 0 ? json_string_value(pref) : "auto";
    json_t *oreq = json_pack("{s:s,s:[{s:s,s:O}]}", "model", model, "messages", "role", "user",
                             "content", msg);
    struct call *c = oreq != NULL ? call_new(r, PROVIDER_CHAT, SHAPE_BRAIN) : NULL;
    if (c == NULL) {
        json_decref(oreq);
        json_decref(j);
        server_reply_error(r, 500, "server_error", "internal", "out of memory");
        return;
    }
    c->req = oreq;
    if (json_is_string(task)) {
        /* Checked here: a later refusal would name the X-BYOK-Task header the app did not send. */
        if (json_string_length(task) > PROXY_MAX_HINT ||
            !route_hints_valid(json_string_value(task), NULL)) {
            json_decref(j);
            struct request *rr = call_end(c);
            call_param_error(rr, "task_type", "invalid_task", "unknown task_type");
            return;
        }
        snprintf(c->task, sizeof(c->task), "%s", json_string_value(task));
    }
    json_decref(j);
    if (!call_headers(c)) {
        c->r = NULL;
        call_free(c);
        return;
    }
    call_start(c);
}

void proxy_models(struct request *r)
{
    struct call *c = call_new(r, PROVIDER_CHAT, SHAPE_MODELS);
    if (c == NULL) {
        server_reply_error(r, 500, "server_error", "internal", "out of memory");
        return;
    }
    call_probe(c);
}

void proxy_model(struct request *r)
{
    /* The id as the SDKs send it: percent-encoded or not ("openai%2Fgpt-4o", "openai/gpt-4o"). */
    const char *uri = evhttp_request_get_uri(r->ev);
    const char *id = uri + strlen(PROXY_MODEL_PREFIX); /* server.c routed on the prefix */
    size_t len = strcspn(id, "?");
    char raw[3 * (CONFIG_MAX_NAME + ROUTE_MAX_MODEL + 1) + 1]; /* room for every byte encoded */
    char *dec = NULL;
    size_t n = 0;
    if (len < sizeof(raw)) {
        memcpy(raw, id, len);
        raw[len] = '\0';
        dec = evhttp_uridecode(raw, 0, &n);
    }
    struct call *c = call_new(r, PROVIDER_CHAT, SHAPE_MODELS);
    if (c == NULL) {
        free(dec);
        server_reply_error(r, 500, "server_error", "internal", "out of memory");
        return;
    }
    c->model_one = true;
    if (dec == NULL || n != strlen(dec) || strcmp(dec, "auto") == 0 ||
        route_classify(dec, &r->cfg->providers, &c->kind, &c->one) != ERR_OK) {
        free(dec);
        struct request *rr = call_end(c);
        call_param_error(rr, "model", "invalid_model", PROXY_BAD_MODEL);
        return;
    }
    free(dec);
    call_probe(c);
}

void proxy_usage(struct request *r)
{
    json_t *u = usage_tenant_json(r->ctx->usage, r->tenant);
    if (u == NULL) {
        server_reply_error(r, 500, "server_error", "internal", "out of memory");
        return;
    }
    server_reply_json(r, 200, u);
}

/*
 * An app's anthropic-version or anthropic-beta header into dst (size
 * bytes), validated: false when it was refused (answered 400, naming the
 * header, never its value). Absent: dst stays empty.
 */
static bool call_anthropic_header(struct request *r, const char *name, bool (*valid)(const char *),
                                  const char *what, char *dst, size_t size)
{
    const char *v = evhttp_find_header(evhttp_request_get_input_headers(r->ev), name);
    if (v == NULL) {
        return true;
    }
    if (strlen(v) >= size || !valid(v)) {
        char msg[192];
        snprintf(msg, sizeof(msg), "header '%s' must be %s", name, what);
        call_param_error(r, name, "invalid_header", msg);
        return false;
    }
    snprintf(dst, size, "%s", v);
    return true;
}

/*
 * POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API,
 * passed through to Anthropic-style providers (messages.h). The body is
 * checked, kept as the app wrote it, and routed and limited as a chat call is.
 */
static void proxy_messages_call(struct request *r, bool count)
{
    json_t *j = call_read_body(r);
    if (j == NULL) {
        return;
    }
    struct messages_bad bad;
    if (messages_validate(j, count, &bad) != ERR_OK) {
        json_decref(j);
        call_param_error(r, bad.param, "invalid_request", bad.msg);
        return;
    }
    char version[MESSAGES_VERSION_LEN + 1] = "";
    char beta[MESSAGES_MAX_BETA + 1] = "";
    if (!call_anthropic_header(r, "anthropic-version", messages_version_valid, "a date YYYY-MM-DD",
                               version, sizeof(version)) ||
        !call_anthropic_header(r, "anthropic-beta", messages_beta_valid,
                               "comma-separated names of letters, digits, '-' and '_', at most "
                               "512 bytes",
                               beta, sizeof(beta))) {
        json_decref(j);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(r->ev);
    size_t len = evbuffer_get_length(in);
    const char *data = (const char *)evbuffer_pullup(in, -1);
    struct call *c = call_new(r, PROVIDER_CHAT, SHAPE_MESSAGES);
    char *raw = malloc(len + 1);
    if (c == NULL || raw == NULL || data == NULL) {
        free(raw);
        json_decref(j);
        if (c != NULL) {
            call_error(c, 500, "server_error", "internal", "out of memory");
            return;
        }
        server_reply_error(r, 500, "server_error", "internal", "out of memory");
        return;
    }
    memcpy(raw, data, len);
    raw[len] = '\0';
    c->raw = raw;
    c->raw_len = len;
    c->req = j;
    c->count_tokens = count;
    c->stream = !count && json_is_true(json_object_get(j, "stream"));
    snprintf(c->anth_version, sizeof(c->anth_version), "%s", version);
    snprintf(c->anth_beta, sizeof(c->anth_beta), "%s", beta);
    if (c->stream && (c->chunk = evbuffer_new()) == NULL) {
        call_error(c, 500, "server_error", "internal", "out of memory");
        return;
    }
    if (!call_headers(c)) {
        c->r = NULL;
        call_free(c);
        return;
    }
    call_start(c);
}

void proxy_messages(struct request *r)
{
    proxy_messages_call(r, false);
}

void proxy_messages_count(struct request *r)
{
    proxy_messages_call(r, true);
}

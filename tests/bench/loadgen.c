// SPDX-License-Identifier: MPL-2.0
/*
 * loadgen: an HTTP/1.1 keep-alive load generator for byok's benchmarks. It
 * speaks to a Unix socket (the agent's, nginx's) or a loopback TCP port (the
 * mock provider) over N connections with one request in flight per connection.
 *
 * Open loop (-r RATE): requests are scheduled at fixed intended times and the
 * latency of each is measured from its INTENDED send time, so a stalled server
 * is charged for the queue it causes (no coordinated omission). Closed loop (no
 * -r): every connection sends again as soon as its answer is complete; this
 * finds saturation throughput. Streaming (-S): the time to the first body byte
 * is recorded too, and the SSE body is checked for the mock provider's word
 * sequence "w0 w1 ..." (-e N words expected) so a lost, duplicated or reordered
 * frame is counted as an error.
 *
 * It prints p50/p90/p99/max and req/s, and one machine-readable RESULT line.
 * It deliberately does not pipeline, follow redirects or speak TLS: the
 * benchmarks measure the agent, not the client. poll(2) only, no dependencies.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

/* Limits on what the peer controls. */
#define LOADGEN_MAX_CONNS 20000
#define LOADGEN_MAX_HEADER_BYTES ((size_t)64 * 1024)
#define LOADGEN_MAX_KEPT_BODY ((size_t)4 * 1024 * 1024) /* body bytes kept for stream checks */
#define LOADGEN_MAX_EXTRA_HEADERS 32
#define LOADGEN_READ_CHUNK ((size_t)64 * 1024)

enum conn_state {
    CONN_IDLE,
    CONN_CONNECTING,
    CONN_WRITING,
    CONN_HEADERS,
    CONN_BODY_LENGTH,
    CONN_BODY_CHUNK_SIZE,
    CONN_BODY_CHUNK_DATA,
    CONN_BODY_CHUNK_CRLF,
    CONN_BODY_TRAILER,
    CONN_BODY_CLOSE,
    CONN_DEAD,
};

struct conn {
    int fd;
    enum conn_state state;
    double intended;   /* when the request should have been sent */
    double sent;       /* when it was handed to the kernel */
    double first_byte; /* first body byte, 0 until then */
    size_t wpos;
    char *in; /* unparsed input */
    size_t in_len;
    size_t in_cap;
    long long remaining; /* body bytes (content-length or current chunk) */
    int status;
    bool close_after;
    char *body; /* kept body (streaming checks), capped */
    size_t body_len;
    size_t body_seen;
};

struct sample {
    double at; /* intended (open loop) or actual send time */
    double latency;
    double ttfb;
};

struct opts {
    const char *unix_path;
    const char *tcp_addr;
    const char *method;
    const char *path;
    const char *host;
    const char *name;
    char *body;
    size_t body_len;
    const char *headers[LOADGEN_MAX_EXTRA_HEADERS];
    int n_headers;
    int conns;
    double duration;
    double warmup;
    double rate;
    double timeout;
    bool stream;
    const char *samples_file;
    long expect_words;
};

static struct opts opt = {
    .method = "GET",
    .path = "/",
    .host = "localhost",
    .name = "run",
    .conns = 1,
    .duration = 5,
    .warmup = 0,
    .rate = 0,
    .timeout = 30,
    .expect_words = -1,
};

static char *request;
static size_t request_len;
static struct sample *samples;
static size_t n_samples, cap_samples;
static long long n_ok, n_http_err, n_io_err, n_timeout, n_verify_err, n_reconnects,
    n_connect_retries;
/* Non-2xx answers by status, to tell a 429 from a 502 in the report. */
static long long status_count[600];
static double measure_start, measure_end;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q == NULL) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(2);
    }
    return q;
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: loadgen (-u SOCKET | -t HOST:PORT) [-X METHOD] [-p PATH] [-b BODYFILE | -B BODY]\n"
        "               [-H 'Name: value']... [-c CONNS] [-d SECONDS] [-w WARMUP] [-r RATE]\n"
        "               [-T TIMEOUT] [-S] [-e WORDS] [-n NAME] [-L FILE]\n"
        "  -r RATE   open loop at RATE req/s, latency from the intended send time\n"
        "            (without -r: closed loop, every connection back to back)\n"
        "  -S        streaming: record time to first body byte; -e N checks the\n"
        "            mock's words w0..w(N-1) arrive once each and in order\n"
        "  -L FILE   every sample as a line \"send_s latency_us ttfb_us\" (send_s from\n"
        "            the start of the run): where in time the tail is\n");
    exit(2);
}

/* A command-line number, checked: garbage or out of range is a usage error. */
static double arg_num(const char *s, double lo, double hi, const char *what)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "loadgen: bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

static void load_body_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        die(path);
    }
    size_t cap = 4096, len = 0;
    char *b = xrealloc(NULL, cap);
    size_t n;
    while ((n = fread(b + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            cap *= 2;
            b = xrealloc(b, cap);
        }
    }
    fclose(f);
    opt.body = b;
    opt.body_len = len;
}

static void build_request(void)
{
    size_t cap = 1024 + opt.body_len;
    for (int i = 0; i < opt.n_headers; i++) {
        cap += strlen(opt.headers[i]) + 2;
    }
    request = xrealloc(NULL, cap);
    int n =
        snprintf(request, cap, "%s %s HTTP/1.1\r\nHost: %s\r\n", opt.method, opt.path, opt.host);
    bool have_ct = false;
    for (int i = 0; i < opt.n_headers; i++) {
        n += snprintf(request + n, cap - (size_t)n, "%s\r\n", opt.headers[i]);
        if (strncasecmp(opt.headers[i], "content-type:", 13) == 0) {
            have_ct = true;
        }
    }
    if (opt.body != NULL) {
        if (!have_ct) {
            n += snprintf(request + n, cap - (size_t)n, "Content-Type: application/json\r\n");
        }
        n += snprintf(request + n, cap - (size_t)n, "Content-Length: %zu\r\n", opt.body_len);
    }
    n += snprintf(request + n, cap - (size_t)n, "\r\n");
    if (opt.body != NULL) {
        memcpy(request + n, opt.body, opt.body_len);
        n += (int)opt.body_len;
    }
    request_len = (size_t)n;
}

static struct sockaddr_storage target;
static socklen_t target_len;

static void resolve_target(void)
{
    memset(&target, 0, sizeof(target));
    if (opt.unix_path != NULL) {
        struct sockaddr_un *su = (struct sockaddr_un *)&target;
        if (strlen(opt.unix_path) >= sizeof(su->sun_path)) {
            fprintf(stderr, "loadgen: socket path too long\n");
            exit(2);
        }
        su->sun_family = AF_UNIX;
        memcpy(su->sun_path, opt.unix_path, strlen(opt.unix_path) + 1);
        target_len = sizeof(*su);
        return;
    }
    char host[256];
    const char *colon = strrchr(opt.tcp_addr, ':');
    if (colon == NULL || (size_t)(colon - opt.tcp_addr) >= sizeof(host)) {
        usage();
    }
    memcpy(host, opt.tcp_addr, (size_t)(colon - opt.tcp_addr));
    host[colon - opt.tcp_addr] = '\0';
    struct sockaddr_in *si = (struct sockaddr_in *)&target;
    si->sin_family = AF_INET;
    si->sin_port = htons((uint16_t)arg_num(colon + 1, 1, 65535, "port"));
    if (inet_pton(AF_INET, host, &si->sin_addr) != 1) {
        fprintf(stderr, "loadgen: -t takes an IPv4 address:port\n");
        exit(2);
    }
    target_len = sizeof(*si);
}

static void conn_reset_response(struct conn *c)
{
    c->in_len = 0;
    c->remaining = 0;
    c->status = 0;
    c->close_after = false;
    c->first_byte = 0;
    c->body_len = 0;
    c->body_seen = 0;
    c->wpos = 0;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    c->state = CONN_DEAD;
}

/* Opens a fresh connection; the connection is idle (or connecting) afterwards. */
static void conn_open(struct conn *c)
{
    c->fd = socket(target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        die("socket");
    }
    if (target.ss_family == AF_INET) {
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    conn_reset_response(c);
    if (connect(c->fd, (struct sockaddr *)&target, target_len) == 0) {
        c->state = CONN_IDLE;
    } else if (errno == EAGAIN && target.ss_family == AF_UNIX) {
        /* A Unix socket's listen backlog is full: nothing was connected; try
         * again on a later turn of the loop (not an error of the server). */
        n_connect_retries++;
        conn_close(c);
    } else if (errno == EINPROGRESS || errno == EAGAIN) {
        c->state = CONN_CONNECTING;
    } else {
        n_io_err++;
        conn_close(c);
    }
}

static void record(struct conn *c, double done)
{
    if (c->intended < measure_start || c->intended >= measure_end) {
        return;
    }
    if (c->status < 200 || c->status > 299) {
        n_http_err++;
        if (c->status > 0 && c->status < 600) {
            status_count[c->status]++;
        }
        return;
    }
    if (opt.stream && opt.expect_words >= 0) {
        /* The mock's stream carries "w0", " w1", ... one per frame, in JSON
         * strings; whatever the framing, the words must appear in order, once. */
        long want = 0;
        bool bad = false;
        const char *p = c->body, *end = c->body + c->body_len;
        while (p < end && (p = memmem(p, (size_t)(end - p), "\"content\":", 10)) != NULL) {
            /* Any JSON spacing: "content":"w1", "content": " w1". */
            p += 10;
            while (p < end && *p == ' ') {
                p++;
            }
            if (p >= end || *p != '"') {
                continue;
            }
            p++;
            if (p < end && *p == ' ') {
                p++;
            }
            if (p < end && *p == 'w') {
                char *e;
                long w = strtol(p + 1, &e, 10);
                if (e != p + 1) {
                    if (w != want) {
                        bad = true;
                    }
                    want = w + 1;
                }
            }
        }
        if (c->body_seen > c->body_len || bad || want != opt.expect_words ||
            memmem(c->body, c->body_len, "[DONE]", 6) == NULL) {
            n_verify_err++;
            return;
        }
    }
    n_ok++;
    if (n_samples == cap_samples) {
        cap_samples = cap_samples ? cap_samples * 2 : 65536;
        samples = xrealloc(samples, cap_samples * sizeof(*samples));
    }
    double base = opt.rate > 0 ? c->intended : c->sent;
    samples[n_samples].at = base;
    samples[n_samples].latency = done - base;
    samples[n_samples].ttfb = c->first_byte > 0 ? c->first_byte - base : done - base;
    n_samples++;
}

static void body_bytes(struct conn *c, const char *p, size_t n, double t)
{
    if (n == 0) {
        return;
    }
    if (c->first_byte == 0) {
        c->first_byte = t;
    }
    c->body_seen += n;
    if (opt.stream && c->body_len < LOADGEN_MAX_KEPT_BODY) {
        size_t take = n;
        if (take > LOADGEN_MAX_KEPT_BODY - c->body_len) {
            take = LOADGEN_MAX_KEPT_BODY - c->body_len;
        }
        memcpy(c->body + c->body_len, p, take);
        c->body_len += take;
    }
}

static void response_done(struct conn *c, double t)
{
    record(c, t);
    bool close_it = c->close_after;
    conn_reset_response(c);
    if (close_it) {
        conn_close(c);
        n_reconnects++;
        conn_open(c);
    } else {
        c->state = CONN_IDLE;
    }
}

static bool parse_headers(struct conn *c)
{
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (end == NULL) {
        if (c->in_len > LOADGEN_MAX_HEADER_BYTES) {
            n_io_err++;
            conn_close(c);
        }
        return false;
    }
    *end = '\0';
    size_t hlen = (size_t)(end - c->in) + 4;
    if (strncmp(c->in, "HTTP/1.", 7) != 0 || strlen(c->in) < 12) {
        n_io_err++;
        conn_close(c);
        return false;
    }
    char *st_end;
    long st = strtol(c->in + 9, &st_end, 10);
    if (st_end != c->in + 12 || st < 100 || st > 599) {
        n_io_err++;
        conn_close(c);
        return false;
    }
    c->status = (int)st;
    if (strncmp(c->in, "HTTP/1.0", 8) == 0) {
        c->close_after = true;
    }
    bool chunked = false;
    long long clen = -1;
    for (char *line = strstr(c->in, "\r\n"); line != NULL; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, "content-length:", 15) == 0) {
            char *e;
            clen = strtoll(line + 15, &e, 10);
            if (e == line + 15 || clen < 0 || (*e != '\r' && *e != '\0' && *e != ' ')) {
                n_io_err++;
                conn_close(c);
                return false;
            }
        } else if (strncasecmp(line, "transfer-encoding:", 18) == 0) {
            chunked = strcasestr(line, "chunked") != NULL;
        } else if (strncasecmp(line, "connection:", 11) == 0) {
            char *eol = strstr(line, "\r\n");
            if (eol) {
                *eol = '\0';
            }
            if (strcasestr(line, "close") != NULL) {
                c->close_after = true;
            }
            if (eol) {
                *eol = '\r';
            }
        }
    }
    memmove(c->in, c->in + hlen, c->in_len - hlen);
    c->in_len -= hlen;
    if (chunked) {
        c->state = CONN_BODY_CHUNK_SIZE;
    } else if (clen >= 0) {
        c->remaining = clen;
        c->state = CONN_BODY_LENGTH;
    } else if (c->status == 204 || c->status == 304 || strcmp(opt.method, "HEAD") == 0) {
        c->remaining = 0;
        c->state = CONN_BODY_LENGTH;
    } else {
        c->close_after = true;
        c->state = CONN_BODY_CLOSE;
    }
    return true;
}

/* Consumes buffered input; returns when more input is needed. */
static void parse_input(struct conn *c, double t)
{
    for (;;) {
        switch (c->state) {
        case CONN_HEADERS:
            if (!parse_headers(c)) {
                return;
            }
            break;
        case CONN_BODY_LENGTH: {
            size_t take = c->in_len < (size_t)c->remaining ? c->in_len : (size_t)c->remaining;
            body_bytes(c, c->in, take, t);
            memmove(c->in, c->in + take, c->in_len - take);
            c->in_len -= take;
            c->remaining -= (long long)take;
            if (c->remaining == 0) {
                response_done(c, t);
            }
            return;
        }
        case CONN_BODY_CHUNK_SIZE: {
            char *eol = memmem(c->in, c->in_len, "\r\n", 2);
            if (eol == NULL) {
                return;
            }
            c->remaining = strtoll(c->in, NULL, 16);
            size_t used = (size_t)(eol - c->in) + 2;
            memmove(c->in, c->in + used, c->in_len - used);
            c->in_len -= used;
            c->state = c->remaining == 0 ? CONN_BODY_TRAILER : CONN_BODY_CHUNK_DATA;
            break;
        }
        case CONN_BODY_CHUNK_DATA: {
            if (c->in_len == 0) {
                return;
            }
            size_t take = c->in_len < (size_t)c->remaining ? c->in_len : (size_t)c->remaining;
            body_bytes(c, c->in, take, t);
            memmove(c->in, c->in + take, c->in_len - take);
            c->in_len -= take;
            c->remaining -= (long long)take;
            if (c->remaining == 0) {
                c->state = CONN_BODY_CHUNK_CRLF;
            }
            break;
        }
        case CONN_BODY_CHUNK_CRLF:
            if (c->in_len < 2) {
                return;
            }
            memmove(c->in, c->in + 2, c->in_len - 2);
            c->in_len -= 2;
            c->state = CONN_BODY_CHUNK_SIZE;
            break;
        case CONN_BODY_TRAILER: {
            char *eol = memmem(c->in, c->in_len, "\r\n", 2);
            if (eol == NULL) {
                return;
            }
            size_t used = (size_t)(eol - c->in) + 2;
            bool last = used == 2;
            memmove(c->in, c->in + used, c->in_len - used);
            c->in_len -= used;
            if (last) {
                response_done(c, t);
                return;
            }
            break;
        }
        case CONN_BODY_CLOSE:
            body_bytes(c, c->in, c->in_len, t);
            c->in_len = 0;
            return;
        default:
            return;
        }
    }
}

static void conn_read(struct conn *c, double t)
{
    for (;;) {
        if (c->in_cap - c->in_len < LOADGEN_READ_CHUNK) {
            c->in_cap = c->in_len + LOADGEN_READ_CHUNK;
            c->in = xrealloc(c->in, c->in_cap);
        }
        ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (n > 0) {
            c->in_len += (size_t)n;
            parse_input(c, t);
            if (c->state == CONN_IDLE || c->state == CONN_DEAD || c->state == CONN_CONNECTING) {
                return;
            }
            continue;
        }
        if (n == 0) {
            if (c->state == CONN_BODY_CLOSE) {
                c->close_after = true;
                response_done(c, t);
            } else {
                n_io_err++;
                conn_close(c);
            }
            return;
        }
        if (errno == EAGAIN || errno == EINTR) {
            return;
        }
        n_io_err++;
        conn_close(c);
        return;
    }
}

static void conn_write(struct conn *c)
{
    while (c->wpos < request_len) {
        ssize_t n = send(c->fd, request + c->wpos, request_len - c->wpos, MSG_NOSIGNAL);
        if (n > 0) {
            c->wpos += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        n_io_err++;
        conn_close(c);
        return;
    }
    c->state = CONN_HEADERS;
}

static void conn_send(struct conn *c, double intended, double t)
{
    c->intended = intended;
    c->sent = t;
    conn_reset_response(c);
    c->state = CONN_WRITING;
    conn_write(c);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double p)
{
    if (n == 0) {
        return NAN;
    }
    size_t i = (size_t)ceil(p / 100.0 * (double)n);
    if (i > 0) {
        i--;
    }
    if (i >= n) {
        i = n - 1;
    }
    return v[i];
}

static void write_samples(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "loadgen: %s: cannot write\n", path);
        return;
    }
    for (size_t i = 0; i < n_samples; i++) {
        fprintf(f, "%.6f %.0f %.0f\n", samples[i].at - measure_start, samples[i].latency * 1e6,
                samples[i].ttfb * 1e6);
    }
    fclose(f);
}

static void report(double elapsed)
{
    double *lat = xrealloc(NULL, (n_samples + 1) * sizeof(double));
    double *ttfb = xrealloc(NULL, (n_samples + 1) * sizeof(double));
    for (size_t i = 0; i < n_samples; i++) {
        lat[i] = samples[i].latency * 1e6;
        ttfb[i] = samples[i].ttfb * 1e6;
    }
    qsort(lat, n_samples, sizeof(double), cmp_double);
    qsort(ttfb, n_samples, sizeof(double), cmp_double);
    double rps = elapsed > 0 ? (double)n_ok / elapsed : 0;
    printf("%s: %s loop%s, %d conns, %.1f s: %lld ok, %lld http errors, %lld io errors, "
           "%lld timeouts, %lld stream check failures, %.0f req/s (%lld reconnects, %lld "
           "connects retried on a full backlog)\n",
           opt.name, opt.rate > 0 ? "open" : "closed", opt.stream ? " streaming" : "", opt.conns,
           elapsed, n_ok, n_http_err, n_io_err, n_timeout, n_verify_err, rps, n_reconnects,
           n_connect_retries);
    if (n_http_err > 0) {
        printf("  non-2xx:");
        for (int st = 0; st < 600; st++) {
            if (status_count[st] > 0) {
                printf(" %d x%lld", st, status_count[st]);
            }
        }
        printf("\n");
    }
    printf("  latency us: p50 %.0f  p90 %.0f  p99 %.0f  max %.0f\n", pct(lat, n_samples, 50),
           pct(lat, n_samples, 90), pct(lat, n_samples, 99), n_samples ? lat[n_samples - 1] : NAN);
    if (opt.stream) {
        printf("  ttfb us:    p50 %.0f  p90 %.0f  p99 %.0f  max %.0f\n", pct(ttfb, n_samples, 50),
               pct(ttfb, n_samples, 90), pct(ttfb, n_samples, 99),
               n_samples ? ttfb[n_samples - 1] : NAN);
    }
    printf("RESULT name=%s mode=%s conns=%d rate=%.0f ok=%lld http_err=%lld io_err=%lld "
           "timeouts=%lld verify_err=%lld rps=%.1f p50_us=%.0f p90_us=%.0f p99_us=%.0f "
           "max_us=%.0f ttfb_p50_us=%.0f ttfb_p99_us=%.0f\n",
           opt.name, opt.rate > 0 ? "open" : "closed", opt.conns, opt.rate, n_ok, n_http_err,
           n_io_err, n_timeout, n_verify_err, rps, pct(lat, n_samples, 50), pct(lat, n_samples, 90),
           pct(lat, n_samples, 99), n_samples ? lat[n_samples - 1] : NAN, pct(ttfb, n_samples, 50),
           pct(ttfb, n_samples, 99));
    free(lat);
    free(ttfb);
}

/* Scheduled-but-unsent intended times (open loop): a ring that grows. */
static double *queue;
static size_t q_head, q_len, q_cap;

static void queue_push(double t)
{
    if (q_len == q_cap) {
        size_t ncap = q_cap ? q_cap * 2 : 4096;
        double *nq = xrealloc(NULL, ncap * sizeof(double));
        for (size_t i = 0; i < q_len; i++) {
            nq[i] = queue[(q_head + i) % q_cap];
        }
        free(queue);
        queue = nq;
        q_head = 0;
        q_cap = ncap;
    }
    queue[(q_head + q_len) % q_cap] = t;
    q_len++;
}

static double queue_pop(void)
{
    double t = queue[q_head];
    q_head = (q_head + 1) % q_cap;
    q_len--;
    return t;
}

static bool busy(const struct conn *c)
{
    return c->state >= CONN_WRITING && c->state <= CONN_BODY_CLOSE;
}

int main(int argc, char **argv)
{
    int ch;
    while ((ch = getopt(argc, argv, "u:t:X:p:b:B:H:c:d:w:r:T:Se:n:h:L:")) != -1) {
        switch (ch) {
        case 'u':
            opt.unix_path = optarg;
            break;
        case 't':
            opt.tcp_addr = optarg;
            break;
        case 'X':
            opt.method = optarg;
            break;
        case 'p':
            opt.path = optarg;
            break;
        case 'b':
            load_body_file(optarg);
            break;
        case 'B':
            opt.body = optarg;
            opt.body_len = strlen(optarg);
            break;
        case 'H':
            if (opt.n_headers == LOADGEN_MAX_EXTRA_HEADERS) {
                usage();
            }
            opt.headers[opt.n_headers++] = optarg;
            break;
        case 'c':
            opt.conns = (int)arg_num(optarg, 1, LOADGEN_MAX_CONNS, "-c");
            break;
        case 'd':
            opt.duration = arg_num(optarg, 0.001, 86400, "-d");
            break;
        case 'w':
            opt.warmup = arg_num(optarg, 0, 86400, "-w");
            break;
        case 'r':
            opt.rate = arg_num(optarg, 0, 10000000, "-r");
            break;
        case 'T':
            opt.timeout = arg_num(optarg, 0.001, 86400, "-T");
            break;
        case 'S':
            opt.stream = true;
            break;
        case 'e':
            opt.expect_words = (long)arg_num(optarg, 0, 100000000, "-e");
            break;
        case 'n':
            opt.name = optarg;
            break;
        case 'h':
            opt.host = optarg;
            break;
        case 'L':
            opt.samples_file = optarg;
            break;
        default:
            usage();
        }
    }
    if ((opt.unix_path == NULL) == (opt.tcp_addr == NULL) || opt.conns < 1 ||
        opt.conns > LOADGEN_MAX_CONNS || opt.duration <= 0 || opt.timeout <= 0) {
        usage();
    }
    if (opt.body != NULL && strcmp(opt.method, "GET") == 0) {
        opt.method = "POST";
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)opt.conns + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    resolve_target();
    build_request();
    /* Wake at the intended send times, not up to 50 us later (the default slack). */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);

    struct conn *conns = calloc((size_t)opt.conns, sizeof(*conns));
    struct pollfd *pfds = calloc((size_t)opt.conns, sizeof(*pfds));
    if (conns == NULL || pfds == NULL) {
        die("calloc");
    }
    for (int i = 0; i < opt.conns; i++) {
        conns[i].fd = -1;
        if (opt.stream) {
            conns[i].body = xrealloc(NULL, LOADGEN_MAX_KEPT_BODY);
        }
        conn_open(&conns[i]);
    }

    double start = now_s();
    measure_start = start + opt.warmup;
    measure_end = measure_start + opt.duration;
    double sched_end = measure_end;
    double next = start;
    double interval = opt.rate > 0 ? 1.0 / opt.rate : 0;
    double drain_deadline = sched_end + opt.timeout;

    for (;;) {
        double t = now_s();
        bool scheduling = t < sched_end;
        if (opt.rate > 0) {
            while (next <= t && next < sched_end) {
                queue_push(next);
                next += interval;
            }
        }
        int inflight = 0;
        for (int i = 0; i < opt.conns; i++) {
            struct conn *c = &conns[i];
            if (c->state == CONN_DEAD) {
                n_reconnects++;
                conn_open(c);
            }
            if (c->state == CONN_IDLE) {
                if (opt.rate > 0 && q_len > 0) {
                    conn_send(c, queue_pop(), t);
                } else if (opt.rate == 0 && scheduling) {
                    conn_send(c, t, t);
                }
            }
            if (busy(c) && t - c->sent > opt.timeout) {
                if (c->intended >= measure_start && c->intended < measure_end) {
                    n_timeout++;
                }
                conn_close(c);
                continue;
            }
            if (busy(c)) {
                inflight++;
            }
        }
        if (!scheduling && q_len == 0 && inflight == 0) {
            break;
        }
        if (t > drain_deadline) {
            n_timeout += (long long)q_len + inflight;
            break;
        }
        int np = 0;
        for (int i = 0; i < opt.conns; i++) {
            struct conn *c = &conns[i];
            pfds[i].fd = -1;
            pfds[i].events = 0;
            if (c->state == CONN_CONNECTING || c->state == CONN_WRITING) {
                pfds[i].fd = c->fd;
                pfds[i].events = POLLOUT;
                np++;
            } else if (busy(c) || c->state == CONN_IDLE) {
                /* Idle connections are watched too: a server closing one is noticed. */
                pfds[i].fd = c->fd;
                pfds[i].events = POLLIN;
                np++;
            }
        }
        /*
         * Sleep until the next intended send time with nanosecond resolution
         * (ppoll; timer slack set to 1 ns at start). poll(2)'s millisecond
         * timeout sent open-loop requests up to 1 ms late, in bursts, which
         * added several hundred microseconds of the client's own scheduling
         * to every target's latency and buried the tails being compared.
         */
        double wait_s = 0.1;
        if (opt.rate > 0 && next < sched_end) {
            double d = next - now_s();
            wait_s = d <= 0 ? 0 : d;
        }
        if (np == 0 && wait_s > 0.01) {
            /* Nothing to watch: all connections broke; pace the reconnects. */
            wait_s = 0.01;
        }
        struct timespec wait_ts = {.tv_sec = (time_t)wait_s,
                                   .tv_nsec = (long)((wait_s - (double)(time_t)wait_s) * 1e9)};
        int r = ppoll(pfds, (nfds_t)opt.conns, &wait_ts, NULL);
        if (r < 0 && errno != EINTR) {
            die("ppoll");
        }
        t = now_s();
        for (int i = 0; r > 0 && i < opt.conns; i++) {
            struct conn *c = &conns[i];
            if (pfds[i].fd < 0 || pfds[i].revents == 0) {
                continue;
            }
            if (c->state == CONN_CONNECTING) {
                int err = 0;
                socklen_t l = sizeof(err);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err != 0) {
                    n_io_err++;
                    conn_close(c);
                } else {
                    c->state = CONN_IDLE;
                }
            } else if (c->state == CONN_WRITING) {
                conn_write(c);
            } else if (c->state == CONN_IDLE) {
                /* The server closed an idle keep-alive connection: reopen quietly. */
                conn_close(c);
            } else {
                conn_read(c, t);
            }
        }
    }
    double elapsed = opt.duration;
    if (opt.rate == 0) {
        elapsed = (now_s() < measure_end ? now_s() : measure_end) - measure_start;
    }
    report(elapsed);
    if (opt.samples_file != NULL) {
        write_samples(opt.samples_file);
    }
    for (int i = 0; i < opt.conns; i++) {
        if (conns[i].fd >= 0) {
            close(conns[i].fd);
        }
        free(conns[i].in);
        free(conns[i].body);
    }
    free(conns);
    free(pfds);
    free(samples);
    free(queue);
    free(request);
    return n_ok > 0 ? 0 : 1;
}

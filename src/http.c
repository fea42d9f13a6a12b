#include "http.h"

#include <errno.h>
#include <event2/event_struct.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiosk/hex.h"
#include "log.h"
#include "tailq.h"
#include "util.h"

/* A secret file bigger than this is a mistake (a certificate chain given
 * as token_file, say), not a secret. */
#define SECRET_MAX 8192

static CURLM *multi;
static struct event_base *base;
static struct event *timer;

/* A socket libcurl asked us to watch. */
struct sock {
	struct event ev;
	int assigned; /* ev was event_assign()ed */
	LIST_ENTRY(sock) entry;
};
static LIST_HEAD(, sock) socks = LIST_HEAD_INITIALIZER(socks);

static char *xstrdup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int streq_null(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return !strcmp(a, b);
}

/* ---- secrets ---- */

/* Read a secret file whole: malloc()ed in *out (NUL-terminated), 0; or -1
 * with why. */
static int read_secret(const char *what, const char *path, char **out, size_t *len, char *why,
                       size_t whylen)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	ssize_t r;
	int fd;

	*out = NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		snprintf(why, whylen, "%s %s: %s", what, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > SECRET_MAX) {
		snprintf(why, whylen, "%s %s: not a regular file of at most %d bytes", what, path,
		         SECRET_MAX);
		close(fd);
		return -1;
	}
	if (st.st_mode & S_IROTH)
		log_warnx("%s %s is readable by every user", what, path);
	if (!(buf = malloc(SECRET_MAX + 1))) {
		snprintf(why, whylen, "%s: out of memory", what);
		close(fd);
		return -1;
	}
	while (n < SECRET_MAX && (r = read(fd, buf + n, SECRET_MAX - n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(why, whylen, "%s %s: %s", what, path, strerror(errno));
			explicit_bzero(buf, SECRET_MAX + 1);
			free(buf);
			close(fd);
			return -1;
		}
		n += (size_t)r;
	}
	close(fd);
	buf[n] = 0;
	*out = buf;
	*len = n;
	return 0;
}

static void free_secret(void *p, size_t len)
{
	if (p) {
		explicit_bzero(p, len);
		free(p);
	}
}

int http_endpoint_load_secrets(struct http_endpoint *h)
{
	char why[sizeof(h->secret_error)] = "";
	char *tok = NULL, *key = NULL;
	size_t toklen = 0, keylen = 0;

	if (h->token_file &&
	    read_secret("token_file", h->token_file, &tok, &toklen, why, sizeof(why)) == 0) {
		/* one line: the usual trailing newline (and blanks) go */
		while (toklen && strchr(" \t\r\n", tok[toklen - 1]))
			tok[--toklen] = 0;
		int ok = toklen > 0;
		for (size_t i = 0; i < toklen; i++)
			ok &= tok[i] > 0x20 && tok[i] < 0x7f; /* nothing that could end a header */
		if (!ok) {
			snprintf(why, sizeof(why),
			         "token_file %s: not one line of printable ASCII without blanks",
			         h->token_file);
			free_secret(tok, SECRET_MAX + 1);
			tok = NULL;
		}
	}
	if (!why[0] && h->hmac_key_file &&
	    read_secret("hmac_key_file", h->hmac_key_file, &key, &keylen, why, sizeof(why)) == 0) {
		/* the key is the file's bytes, less one trailing newline */
		if (keylen && key[keylen - 1] == '\n')
			keylen--;
		if (keylen && key[keylen - 1] == '\r')
			keylen--;
		if (!keylen) {
			snprintf(why, sizeof(why), "hmac_key_file %s: empty", h->hmac_key_file);
			free_secret(key, SECRET_MAX + 1);
			key = NULL;
		}
	}
	if (why[0]) {
		free_secret(tok, SECRET_MAX + 1);
		free_secret(key, SECRET_MAX + 1);
		/* log a problem once, not at every attempt */
		if (strcmp(why, h->secret_error))
			log_warnx("endpoint %s: %s: not sending until it is fixed", h->name, why);
		snprintf(h->secret_error, sizeof(h->secret_error), "%s", why);
		return -1;
	}
	free_secret(h->token, SECRET_MAX + 1);
	free_secret(h->hmac_key, SECRET_MAX + 1);
	h->token = tok;
	h->hmac_key = (unsigned char *)key;
	h->hmac_len = keylen;
	if (h->secret_error[0])
		log_notice("endpoint %s: secrets readable again", h->name);
	h->secret_error[0] = 0;
	return 0;
}

int http_endpoint_init(struct http_endpoint *h, const struct conf_endpoint *ce)
{
	memset(h, 0, sizeof(*h));
	h->name = strdup(ce->name);
	h->url = strdup(ce->url ? ce->url : "");
	h->ca_file = xstrdup_or_null(ce->ca_file);
	h->cert_file = xstrdup_or_null(ce->cert_file);
	h->key_file = xstrdup_or_null(ce->key_file);
	h->token_file = xstrdup_or_null(ce->token_file);
	h->hmac_key_file = xstrdup_or_null(ce->hmac_key_file);
	h->connect_timeout_ms = ce->connect_timeout_ms;
	h->timeout_ms = ce->timeout_ms;
	h->low_speed_bytes = ce->low_speed_bytes;
	h->low_speed_time_s = ce->low_speed_time_s;
	if (!h->name || !h->url || (ce->ca_file && !h->ca_file) ||
	    (ce->cert_file && !h->cert_file) || (ce->key_file && !h->key_file) ||
	    (ce->token_file && !h->token_file) || (ce->hmac_key_file && !h->hmac_key_file)) {
		http_endpoint_free(h);
		return -1;
	}
	/* <url>/transactions and <url><path> both want no trailing '/' */
	for (size_t n = strlen(h->url); n > 8 && h->url[n - 1] == '/'; n--)
		h->url[n - 1] = 0;
	http_endpoint_load_secrets(h);
	return 0;
}

void http_endpoint_free(struct http_endpoint *h)
{
	free(h->name);
	free(h->url);
	free(h->ca_file);
	free(h->cert_file);
	free(h->key_file);
	free(h->token_file);
	free(h->hmac_key_file);
	free_secret(h->token, SECRET_MAX + 1);
	free_secret(h->hmac_key, SECRET_MAX + 1);
	memset(h, 0, sizeof(*h));
}

int http_endpoint_same(const struct http_endpoint *h, const struct conf_endpoint *ce)
{
	struct http_endpoint tmp = {.url = ce->url ? strdup(ce->url) : NULL};
	int same;

	if (tmp.url)
		for (size_t n = strlen(tmp.url); n > 8 && tmp.url[n - 1] == '/'; n--)
			tmp.url[n - 1] = 0;
	same = streq_null(h->url, tmp.url) && streq_null(h->ca_file, ce->ca_file) &&
	       streq_null(h->cert_file, ce->cert_file) && streq_null(h->key_file, ce->key_file) &&
	       streq_null(h->token_file, ce->token_file) &&
	       streq_null(h->hmac_key_file, ce->hmac_key_file) &&
	       h->connect_timeout_ms == ce->connect_timeout_ms && h->timeout_ms == ce->timeout_ms &&
	       h->low_speed_bytes == ce->low_speed_bytes &&
	       h->low_speed_time_s == ce->low_speed_time_s;
	free(tmp.url);
	return same;
}

/* ---- libcurl on the loop ---- */

static void check_done(void)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURL *e = m->easy_handle;
		CURLcode rc = m->data.result;
		struct http_xfer *x = NULL;
		long status = 0;

		curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
		curl_multi_remove_handle(multi, e); /* m is gone now */
		x->running = 0;
		x->done(x, rc, status);
	}
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
	int flags = 0, running;
	(void)arg;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(multi, fd, flags, &running);
	check_done();
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	int running;
	(void)fd;
	(void)what;
	(void)arg;

	curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done();
}

static int socket_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct sock *sk = socketp;
	(void)e;
	(void)userp;

	if (what == CURL_POLL_REMOVE) {
		if (sk) {
			if (sk->assigned)
				event_del(&sk->ev);
			LIST_REMOVE(sk, entry);
			free(sk);
		}
		return 0;
	}
	if (!sk) {
		if (!(sk = calloc(1, sizeof(*sk))))
			return -1;
		LIST_INSERT_HEAD(&socks, sk, entry);
		curl_multi_assign(multi, s, sk);
	} else if (sk->assigned) {
		event_del(&sk->ev);
	}
	short ev = EV_PERSIST;
	if (what & CURL_POLL_IN)
		ev |= EV_READ;
	if (what & CURL_POLL_OUT)
		ev |= EV_WRITE;
	event_assign(&sk->ev, base, s, ev, on_socket, NULL);
	sk->assigned = 1;
	event_add(&sk->ev, NULL);
	return 0;
}

/* libcurl's one timer: never act from inside this callback, let the loop
 * call back (a 0 timeout runs on the next turn). */
static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	(void)m;
	(void)userp;

	if (timeout_ms < 0) {
		evtimer_del(timer);
	} else {
		struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
		evtimer_add(timer, &tv);
	}
	return 0;
}

int http_init(struct event_base *b)
{
	if (multi)
		return 0;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_warnx("libcurl: initialisation failed");
		return -1;
	}
	base = b;
	if (!(multi = curl_multi_init()) || !(timer = evtimer_new(base, on_timer, NULL))) {
		log_warnx("libcurl: out of memory");
		http_shutdown();
		return -1;
	}
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	http_set_maxconnects(8);
	return 0;
}

void http_set_maxconnects(long n)
{
	if (multi)
		curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, n);
}

void http_shutdown(void)
{
	struct sock *sk;

	/* the owners took their transfers off already; this closes the
	 * connections kept for reuse */
	if (multi)
		curl_multi_cleanup(multi);
	multi = NULL;
	while ((sk = LIST_FIRST(&socks))) {
		if (sk->assigned)
			event_del(&sk->ev);
		LIST_REMOVE(sk, entry);
		free(sk);
	}
	if (timer)
		event_free(timer);
	timer = NULL;
	base = NULL;
	curl_global_cleanup();
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *arg)
{
	struct http_xfer *x = arg;
	size_t n = size * nmemb;

	if (x->resp_len + n > (size_t)HTTP_MAX_BODY) {
		x->too_big = 1;
		return 0; /* libcurl stops with CURLE_WRITE_ERROR */
	}
	if (x->resp_len + n + 1 > x->resp_cap) {
		size_t cap = x->resp_cap ? x->resp_cap : 4096;
		while (cap < x->resp_len + n + 1)
			cap *= 2;
		char *r = realloc(x->resp, cap);
		if (!r)
			return 0;
		x->resp = r;
		x->resp_cap = cap;
	}
	memcpy(x->resp + x->resp_len, p, n);
	x->resp_len += n;
	x->resp[x->resp_len] = 0;
	return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
	struct http_xfer *x = arg;
	size_t n = size * nmemb;
	char v[128];

	if (n >= 5 && !strncmp(p, "HTTP/", 5)) {
		x->retry_after_ms = -1; /* a new answer (after a 1xx) */
	} else if (n > 12 && !strncasecmp(p, "Retry-After:", 12)) {
		size_t len = n - 12 < sizeof(v) - 1 ? n - 12 : sizeof(v) - 1;
		memcpy(v, p + 12, len);
		v[len] = 0;
		/* an HTTP-date is read against the wall clock: it only makes a
		 * delay, which the caller caps */
		x->retry_after_ms = http_retry_after_ms(v, time(NULL));
	}
	return n;
}

static int add_header(struct http_xfer *x, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static int add_header(struct http_xfer *x, const char *fmt, ...)
{
	char buf[SECRET_MAX + 64];
	struct curl_slist *l;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	l = n >= 0 && (size_t)n < sizeof(buf) ? curl_slist_append(x->headers, buf) : NULL;
	explicit_bzero(buf, sizeof(buf));
	if (!l)
		return -1;
	x->headers = l;
	return 0;
}

struct http_xfer *http_xfer_new(const struct http_endpoint *h, const char *url, const char *body,
                                size_t len, const char *kiosk_id, const char *idempotency_key,
                                int timeout_ms, http_done_fn done, void *arg)
{
	struct http_xfer *x = calloc(1, sizeof(*x));
	CURL *e;
	int bad = 0;

	if (!x || !(e = x->easy = curl_easy_init())) {
		free(x);
		return NULL;
	}
	x->retry_after_ms = -1;
	x->done = done;
	x->arg = arg;
	if (timeout_ms <= 0)
		timeout_ms = h->timeout_ms;

	bad |= add_header(x, "Content-Type: application/json");
	bad |= add_header(x, "Accept: application/json");
	bad |= add_header(x, "Expect:"); /* no 100-continue round trip */
	if (kiosk_id)
		bad |= add_header(x, "X-Kiosk-Id: %s", kiosk_id);
	if (idempotency_key)
		bad |= add_header(x, "Idempotency-Key: %s", idempotency_key);
	if (h->token)
		bad |= add_header(x, "Authorization: Bearer %s", h->token);
	if (h->hmac_key) {
		char sig[72];
		http_signature(h->hmac_key, h->hmac_len, body ? body : "", len, sig);
		bad |= add_header(x, "X-Kiosk-Signature: %s", sig);
	}

	bad |= curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK;
	/* https only, no redirect: a URL in the configuration is the only
	 * place a request goes */
	bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "https") != CURLE_OK;
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	/* TLS verification is not configurable, on purpose */
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK;
	if (h->ca_file)
		bad |= curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file) != CURLE_OK;
	if (h->cert_file) {
		bad |= curl_easy_setopt(e, CURLOPT_SSLCERT, h->cert_file) != CURLE_OK;
		bad |= curl_easy_setopt(e, CURLOPT_SSLKEY, h->key_file) != CURLE_OK;
	}
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(
	        e, CURLOPT_CONNECTTIMEOUT_MS,
	        (long)(h->connect_timeout_ms < timeout_ms ? h->connect_timeout_ms : timeout_ms));
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	if (h->low_speed_bytes > 0 && h->low_speed_time_s > 0) {
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, (long)h->low_speed_bytes);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)h->low_speed_time_s);
	}
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	if (bad) {
		http_xfer_free(x);
		return NULL;
	}
	return x;
}

int http_xfer_start(struct http_xfer *x)
{
	if (!multi || curl_multi_add_handle(multi, x->easy) != CURLM_OK)
		return -1;
	x->running = 1;
	return 0;
}

void http_xfer_free(struct http_xfer *x)
{
	if (!x)
		return;
	if (x->running && multi)
		curl_multi_remove_handle(multi, x->easy);
	curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->headers);
	free(x->resp);
	free(x);
}

const char *http_xfer_error(const struct http_xfer *x, CURLcode rc)
{
	static char msg[CURL_ERROR_SIZE + 128];
	const char *text;
	curl_off_t tls_us = 0;
	long status = 0;

	if (x->too_big)
		return "the answer is larger than 1 MiB";
	text = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
	/* With TLS 1.3 a server that refuses our client certificate says so
	 * only after the handshake seemed to succeed: libcurl then reports a
	 * plain send/receive error ("getpeername() failed", "Broken pipe").
	 * Name the likely cause so that an admin looks at the certificate. */
	if ((rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING) &&
	    curl_easy_getinfo(x->easy, CURLINFO_APPCONNECT_TIME_T, &tls_us) == CURLE_OK &&
	    tls_us > 0 && curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
	    status == 0) {
		snprintf(msg, sizeof(msg),
		         "TLS: the endpoint closed the connection right after the handshake "
		         "(client certificate refused?): %s",
		         text);
		return msg;
	}
	return text;
}

/* ---- pure parts ---- */

static void hex(const unsigned char *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = 0;
}

void http_idempotency_key(const char *const *ids, int n, char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		abort(); /* no SHA-256: nothing to deliver with */
	for (int i = 0; i < n; i++) {
		EVP_DigestUpdate(ctx, ids[i], strlen(ids[i]));
		EVP_DigestUpdate(ctx, "\n", 1);
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	hex(md, 32, out);
}

void http_signature(const unsigned char *key, size_t keylen, const char *body, size_t len,
                    char out[72])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)body, len, md, &mdlen))
		abort();
	memcpy(out, "sha256=", 7);
	hex(md, 32, out + 7);
}

long http_retry_after_ms(const char *value, time_t now)
{
	char v[128];
	size_t n;

	while (*value == ' ' || *value == '\t')
		value++;
	n = strlen(value);
	while (n && strchr(" \t\r\n", value[n - 1]))
		n--;
	if (!n || n >= sizeof(v))
		return -1;
	memcpy(v, value, n);
	v[n] = 0;
	if (strspn(v, "0123456789") == n) {
		/* delay-seconds; anything above a day is a day (capped later) */
		if (n > 6)
			return 86400L * 1000;
		long s = strtol(v, NULL, 10);
		return (s > 86400 ? 86400 : s) * 1000;
	}
	time_t t = curl_getdate(v, NULL);
	if (t == (time_t)-1)
		return -1;
	if (t <= now)
		return 0;
	if (t - now > 86400)
		return 86400L * 1000;
	return (long)(t - now) * 1000;
}

long http_backoff_ms(long min_ms, long max_ms, unsigned attempt, uint64_t rnd)
{
	long cap = min_ms > 0 ? min_ms : 0;

	if (max_ms < 0)
		max_ms = 0;
	for (unsigned i = 0; i < attempt && cap < max_ms; i++)
		cap = cap > max_ms / 2 ? max_ms : cap * 2;
	if (cap > max_ms)
		cap = max_ms;
	return (long)(rnd % ((uint64_t)cap + 1));
}

uint64_t http_random(void)
{
	uint64_t r;
	ssize_t n;

	while ((n = getrandom(&r, sizeof(r), 0)) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(r)) {
		/* never seen on Linux ≥ 3.17; still spread a fleet out somewhat */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		r = (uint64_t)ts.tv_nsec * 6364136223846793005ULL ^ (uint64_t)getpid();
	}
	return r;
}

int http_path_check(const char *path, char *why, size_t whylen)
{
	/* RFC 3986 pchar and '/', less '%' (checked below) */
	static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                         "0123456789-._~!$&'()*+,;=:@/";
	size_t n;

	if (!path || path[0] != '/') {
		snprintf(why, whylen, "path must start with '/'");
		return -1;
	}
	if ((n = strlen(path)) > 1024) {
		snprintf(why, whylen, "path is longer than 1024 bytes");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)path[i];
		if (c == '%') {
			int hi = kiosk_hex_digit(path[i + 1]),
			    lo = hi < 0 ? -1 : kiosk_hex_digit(path[i + 2]);
			if (hi < 0 || lo < 0) {
				snprintf(why, whylen, "path: '%%' not followed by two hex digits");
				return -1;
			}
			int d = hi * 16 + lo;
			if (d == '.' || d == '/' || d == '\\' || d < 0x20 || d == 0x7f) {
				snprintf(why, whylen,
				         "path: an encoded '.', '/', '\\' or control byte");
				return -1;
			}
			i += 2;
		} else if (!c || !strchr(ok, c)) {
			if (c == '?' || c == '#')
				snprintf(why, whylen,
				         "path: no '?' or '#' (send parameters in body)");
			else
				snprintf(why, whylen, "path: byte 0x%02x is not allowed", c);
			return -1;
		}
	}
	if (strstr(path, "//")) {
		snprintf(why, whylen, "path: no '//'");
		return -1;
	}
	if (strstr(path, "..")) {
		snprintf(why, whylen, "path: no '..'");
		return -1;
	}
	if (strstr(path, "/./") || (n >= 2 && !strcmp(path + n - 2, "/."))) {
		snprintf(why, whylen, "path: no '.' segment");
		return -1;
	}
	return 0;
}

void http_excerpt(const char *body, size_t len, size_t max, char *out, size_t outlen)
{
	size_t o = 0, i = 0;
	int blank = 1; /* drop leading blanks */

	if (!outlen)
		return;
	if (outlen < 8) {
		out[0] = 0;
		return;
	}
	for (; body && i < len && i < max && o + 4 < outlen; i++) {
		unsigned char c = (unsigned char)body[i];
		if (c < 0x20 || c == 0x7f || c == ' ') {
			if (!blank)
				out[o++] = ' ';
			blank = 1;
			continue;
		}
		out[o++] = (char)c;
		blank = 0;
	}
	while (o && out[o - 1] == ' ')
		o--;
	if (body && i < len) {
		/* cut: a character split here is marked by utf8_sanitize */
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = 0;
	utf8_sanitize(out);
}

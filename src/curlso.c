/* libcurl, loaded on first use.  kioskd does not link libcurl: a kiosk
 * without endpoints (the default configuration) never maps it and the
 * forty libraries it drags in (TLS, Kerberos, LDAP, ...), which would
 * more than double the idle daemon's resident memory.  These definitions
 * stand in for libcurl's functions and forward to the real ones, found
 * with dlopen() the first time any of them is called.  Only the functions
 * kioskd uses are here. */
/* our definitions must not be taken for libcurl's type-checking macros */
#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdlib.h>

#include "log.h"

#define LIBCURL "libcurl.so.4"

static struct {
	void *dl;
	CURLcode (*global_init)(long);
	void (*global_cleanup)(void);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	void (*easy_cleanup)(CURL *);
	const char *(*easy_strerror)(CURLcode);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
	CURLMcode (*multi_add_handle)(CURLM *, CURL *);
	CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
	CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
	CURLMsg *(*multi_info_read)(CURLM *, int *);
	CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
	CURLMcode (*multi_cleanup)(CURLM *);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
	CURLU *(*url)(void);
	CURLUcode (*url_set)(CURLU *, CURLUPart, const char *, unsigned int);
	CURLUcode (*url_get)(CURLU *, CURLUPart, char **, unsigned int);
	void (*url_cleanup)(CURLU *);
	void (*free)(void *);
	time_t (*getdate)(const char *, const time_t *);
} api;

static void *sym(const char *name)
{
	void *p = dlsym(api.dl, name);
	if (!p)
		fatalx("%s has no %s", LIBCURL, name);
	return p;
}

/* Called before every forwarded call; cheap once loaded.  Without
 * libcurl no endpoint can work at all: that is a broken installation. */
static void load(void)
{
	if (api.dl)
		return;
	if (!(api.dl = dlopen(LIBCURL, RTLD_NOW | RTLD_LOCAL)))
		fatalx("cannot load %s (needed for the [endpoint] sections): %s", LIBCURL,
		       dlerror());
	*(void **)&api.global_init = sym("curl_global_init");
	*(void **)&api.global_cleanup = sym("curl_global_cleanup");
	*(void **)&api.easy_init = sym("curl_easy_init");
	*(void **)&api.easy_setopt = sym("curl_easy_setopt");
	*(void **)&api.easy_getinfo = sym("curl_easy_getinfo");
	*(void **)&api.easy_cleanup = sym("curl_easy_cleanup");
	*(void **)&api.easy_strerror = sym("curl_easy_strerror");
	*(void **)&api.multi_init = sym("curl_multi_init");
	*(void **)&api.multi_setopt = sym("curl_multi_setopt");
	*(void **)&api.multi_add_handle = sym("curl_multi_add_handle");
	*(void **)&api.multi_remove_handle = sym("curl_multi_remove_handle");
	*(void **)&api.multi_socket_action = sym("curl_multi_socket_action");
	*(void **)&api.multi_info_read = sym("curl_multi_info_read");
	*(void **)&api.multi_assign = sym("curl_multi_assign");
	*(void **)&api.multi_cleanup = sym("curl_multi_cleanup");
	*(void **)&api.slist_append = sym("curl_slist_append");
	*(void **)&api.slist_free_all = sym("curl_slist_free_all");
	*(void **)&api.url = sym("curl_url");
	*(void **)&api.url_set = sym("curl_url_set");
	*(void **)&api.url_get = sym("curl_url_get");
	*(void **)&api.url_cleanup = sym("curl_url_cleanup");
	*(void **)&api.free = sym("curl_free");
	*(void **)&api.getdate = sym("curl_getdate");
}

CURLcode curl_global_init(long flags)
{
	load();
	return api.global_init(flags);
}

void curl_global_cleanup(void)
{
	if (api.dl)
		api.global_cleanup();
}

CURL *curl_easy_init(void)
{
	load();
	return api.easy_init();
}

/* The option's number says the type of its one argument, as in libcurl
 * itself: long, a pointer (object, string, list, blob, function) or a
 * curl_off_t. */
CURLcode curl_easy_setopt(CURL *h, CURLoption opt, ...)
{
	va_list ap;
	CURLcode rc;

	load();
	va_start(ap, opt);
	if (opt < CURLOPTTYPE_OBJECTPOINT)
		rc = api.easy_setopt(h, opt, va_arg(ap, long));
	else if (opt >= CURLOPTTYPE_OFF_T && opt < CURLOPTTYPE_BLOB)
		rc = api.easy_setopt(h, opt, va_arg(ap, curl_off_t));
	else
		rc = api.easy_setopt(h, opt, va_arg(ap, void *));
	va_end(ap);
	return rc;
}

CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
	va_list ap;
	CURLcode rc;

	load();
	va_start(ap, info);
	rc = api.easy_getinfo(h, info, va_arg(ap, void *)); /* always a pointer */
	va_end(ap);
	return rc;
}

void curl_easy_cleanup(CURL *h)
{
	load();
	api.easy_cleanup(h);
}

const char *curl_easy_strerror(CURLcode rc)
{
	load();
	return api.easy_strerror(rc);
}

CURLM *curl_multi_init(void)
{
	load();
	return api.multi_init();
}

CURLMcode curl_multi_setopt(CURLM *m, CURLMoption opt, ...)
{
	va_list ap;
	CURLMcode rc;

	load();
	va_start(ap, opt);
	if (opt < CURLOPTTYPE_OBJECTPOINT)
		rc = api.multi_setopt(m, opt, va_arg(ap, long));
	else if (opt >= CURLOPTTYPE_OFF_T && opt < CURLOPTTYPE_BLOB)
		rc = api.multi_setopt(m, opt, va_arg(ap, curl_off_t));
	else
		rc = api.multi_setopt(m, opt, va_arg(ap, void *));
	va_end(ap);
	return rc;
}

CURLMcode curl_multi_add_handle(CURLM *m, CURL *h)
{
	load();
	return api.multi_add_handle(m, h);
}

CURLMcode curl_multi_remove_handle(CURLM *m, CURL *h)
{
	load();
	return api.multi_remove_handle(m, h);
}

CURLMcode curl_multi_socket_action(CURLM *m, curl_socket_t s, int ev, int *running)
{
	load();
	return api.multi_socket_action(m, s, ev, running);
}

CURLMsg *curl_multi_info_read(CURLM *m, int *left)
{
	load();
	return api.multi_info_read(m, left);
}

CURLMcode curl_multi_assign(CURLM *m, curl_socket_t s, void *p)
{
	load();
	return api.multi_assign(m, s, p);
}

CURLMcode curl_multi_cleanup(CURLM *m)
{
	load();
	return api.multi_cleanup(m);
}

struct curl_slist *curl_slist_append(struct curl_slist *l, const char *s)
{
	load();
	return api.slist_append(l, s);
}

void curl_slist_free_all(struct curl_slist *l)
{
	load();
	api.slist_free_all(l);
}

CURLU *curl_url(void)
{
	load();
	return api.url();
}

CURLUcode curl_url_set(CURLU *u, CURLUPart what, const char *part, unsigned int flags)
{
	load();
	return api.url_set(u, what, part, flags);
}

CURLUcode curl_url_get(CURLU *u, CURLUPart what, char **part, unsigned int flags)
{
	load();
	return api.url_get(u, what, part, flags);
}

void curl_url_cleanup(CURLU *u)
{
	load();
	api.url_cleanup(u);
}

void curl_free(void *p)
{
	load();
	api.free(p);
}

time_t curl_getdate(const char *p, const time_t *unused)
{
	load();
	return api.getdate(p, unused);
}

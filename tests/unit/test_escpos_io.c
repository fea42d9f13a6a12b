/* escpos_io.c, the TCP transport with a host name: looked up by the
 * first job (escpos_io_prepare), each address tried in turn.  The resolver
 * is this file's own getaddrinfo(), which the program's copy of
 * escpos_io.c calls instead of libc's: "two.example" gives a refused
 * address first, then a listening one, as a name with an IPv6 address the
 * printer does not listen on would.  The sockets are real. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../hal/escpos/escpos.h"

static int open_port, closed_port, lookups;

/* A listening socket on 127.0.0.1, and a port that refuses. */
static int listener(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static struct addrinfo *loopback(int port, struct addrinfo *next)
{
	struct addrinfo *ai = calloc(1, sizeof(*ai) + sizeof(struct sockaddr_in));
	struct sockaddr_in *sa = (struct sockaddr_in *)(ai + 1);

	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ai->ai_family = AF_INET;
	ai->ai_socktype = SOCK_STREAM;
	ai->ai_addr = (struct sockaddr *)sa;
	ai->ai_addrlen = sizeof(*sa);
	ai->ai_next = next;
	return ai;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
	(void)service;
	if (hints && (hints->ai_flags & AI_NUMERICHOST))
		return EAI_NONAME; /* the names below are not addresses */
	lookups++;
	if (!strcmp(node, "two.example"))
		*res = loopback(closed_port, loopback(open_port, NULL));
	else if (!strcmp(node, "refused.example"))
		*res = loopback(closed_port, loopback(closed_port, NULL));
	else
		return EAI_NONAME;
	return 0;
}

void freeaddrinfo(struct addrinfo *ai)
{
	while (ai) {
		struct addrinfo *next = ai->ai_next;
		free(ai);
		ai = next;
	}
}

struct fixture {
	int lfd, cfd;
};

static int setup(void **state)
{
	static struct fixture f;
	f.lfd = listener(&open_port);
	assert_int_equal(listen(f.lfd, 4), 0);
	f.cfd = listener(&closed_port); /* bound, never listening: refused */
	lookups = 0;
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	close(f->lfd);
	close(f->cfd);
	return 0;
}

static void start(struct escpos_io *io, const char *host)
{
	char why[256] = "";

	memset(io, 0, sizeof(*io));
	io->t = ESCPOS_TCP;
	io->timeout_ms = 1000;
	assert_int_equal(escpos_io_start_fd(io, host, 9100, NULL, 0, why, sizeof(why)), 0);
	/* nothing looked up or connected on the loop */
	assert_int_equal(io->fd, -1);
	assert_int_equal(lookups, 0);
}

static void test_name_falls_through_to_the_address_that_answers(void **state)
{
	struct fixture *f = *state;
	struct escpos_io io;
	char why[256] = "";

	start(&io, "two.example");
	assert_int_equal(escpos_io_prepare(&io, why, sizeof(why)), ESCPOS_IO_OK);
	assert_int_equal(lookups, 1);
	assert_true(io.connected && io.fd >= 0);
	int peer = accept(f->lfd, NULL, NULL); /* it is the listening one */
	assert_true(peer >= 0);
	assert_int_equal(write(io.fd, "x", 1), 1);
	char c = 0;
	assert_int_equal(read(peer, &c, 1), 1);
	assert_int_equal(c, 'x');
	/* connected: the next job does not look it up again */
	assert_int_equal(escpos_io_prepare(&io, why, sizeof(why)), ESCPOS_IO_OK);
	assert_int_equal(lookups, 1);
	close(peer);
	escpos_io_close_fd(&io);
}

static void test_every_address_refused_says_so(void **state)
{
	struct escpos_io io;
	char why[256] = "", want[128];
	(void)state;

	start(&io, "refused.example");
	assert_int_equal(escpos_io_prepare(&io, why, sizeof(why)), ESCPOS_IO_LOST);
	snprintf(want, sizeof(want), "connect to refused.example port 9100: Connection refused");
	assert_string_equal(why, want);
	assert_int_equal(io.fd, -1);
}

static void test_unknown_name_says_the_resolvers_reason(void **state)
{
	struct escpos_io io;
	char why[256] = "";
	(void)state;

	start(&io, "nx.example");
	assert_int_equal(escpos_io_prepare(&io, why, sizeof(why)), ESCPOS_IO_LOST);
	assert_non_null(strstr(why, "host 'nx.example': "));
	assert_int_equal(io.fd, -1);
}

static void test_name_too_long_is_refused_at_open(void **state)
{
	struct escpos_io io;
	char host[300], why[256] = "";
	(void)state;

	memset(host, 'a', sizeof(host) - 1);
	host[sizeof(host) - 1] = 0;
	memset(&io, 0, sizeof(io));
	io.t = ESCPOS_TCP;
	assert_int_equal(escpos_io_start_fd(&io, host, 9100, NULL, 0, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "longer than 255 characters"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_name_falls_through_to_the_address_that_answers,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(test_every_address_refused_says_so, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_unknown_name_says_the_resolvers_reason, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_name_too_long_is_refused_at_open, setup,
	                                        teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

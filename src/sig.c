/* The daemon takes its signals from a signalfd, with the signals blocked
 * in every thread.  A sigaction() handler would belong to the process,
 * and vendor libraries running on the workers do reset dispositions (the
 * SANE test backend's reader thread puts SIGTERM back to its default): a
 * stop request would then kill the daemon instead of stopping it.  A
 * blocked signal waits in the signalfd whatever its disposition says. */
#include "sig.h"

#include <errno.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "log.h"

static int sfd = -1;
static struct event *sig_ev;
static void (*sig_cb)(int);

static void sig_set(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
}

/* SIGPIPE is ignored and also blocked: should a library put it back to
 * its default, a write to a client that went away still only fails with
 * EPIPE. */
void sig_block(void)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sig_set(&set);
	sigaddset(&set, SIGPIPE);
	sigprocmask(SIG_BLOCK, &set, NULL);
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
	struct signalfd_siginfo si;
	(void)what;
	(void)arg;

	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		sig_cb((int)si.ssi_signo);
}

int sig_init(struct event_base *base, void (*cb)(int signo))
{
	sigset_t set;

	sig_set(&set);
	sig_cb = cb;
	if ((sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		log_warn("signalfd");
		return -1;
	}
	sig_ev = event_new(base, sfd, EV_READ | EV_PERSIST, on_signal, NULL);
	if (!sig_ev || event_add(sig_ev, NULL) < 0)
		return -1;
	return 0;
}

void sig_shutdown(void)
{
	if (sig_ev)
		event_free(sig_ev);
	sig_ev = NULL;
	if (sfd >= 0)
		close(sfd);
	sfd = -1;
}

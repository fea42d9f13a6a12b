/* Daemon-wide state and the two whole-daemon operations: reload and stop. */
#include "daemon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices.h"
#include "ipc.h"
#include "log.h"
#include "notify.h"
#include "sync.h"

struct event_base *daemon_base;
struct conf *daemon_conf;
struct timespec daemon_started;

double daemon_uptime(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - daemon_started.tv_sec) +
	       (double)(now.tv_nsec - daemon_started.tv_nsec) / 1e9;
}

void daemon_timestamp(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	char when[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03ldZ", when, ts.tv_nsec / 1000000);
}

int daemon_reload(struct diag *diag, json_t *changed)
{
	struct conf *c;

	notify_reloading();
	c = conf_load(daemon_conf->path, diag);
	if (c) {
		/* sockets and the database stay where they are until a restart */
		free(c->runtime_dir);
		free(c->state_dir);
		c->runtime_dir = strdup(daemon_conf->runtime_dir);
		c->state_dir = strdup(daemon_conf->state_dir);
	}
	if (!c || devices_check_conf(c, diag) < 0) {
		log_err("reload refused, keeping the running configuration (%d problem%s):",
		        diag->n, diag->n == 1 ? "" : "s");
		for (int i = 0; i < diag->n; i++)
			log_err("  %s", diag->msgs[i]);
		conf_free(c);
		notify_ready("running (reload refused)");
		return -1;
	}
	struct conf *old = daemon_conf;
	daemon_conf = c;
	log_setlevel(c->log_level);
	ipc_apply(c);
	devices_apply(c, changed);
	sync_apply(c);
	if (strcmp(c->store_path, old->store_path) ||
	    (c->store_key_file &&
	     (!old->store_key_file || strcmp(c->store_key_file, old->store_key_file))))
		log_warnx("[store] changes take effect at the next restart");
	conf_free(old);
	log_info("configuration reloaded from %s", c->path);
	notify_ready("running");
	return 0;
}

void daemon_stop(void)
{
	log_info("stopping");
	notify_stopping();
	ipc_stop_listening();
	devices_shutdown(); /* answers every request still open */
	sync_shutdown();    /* and every remote.call */
	ipc_shutdown();
	event_base_loopexit(daemon_base, NULL);
}

/* kioskd: the kiosk device daemon.  Parses the command line, reads the
 * configuration, sets up the loop and runs it. */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob.h"
#include "conf.h"
#include "daemon.h"
#include "devices.h"
#include "events.h"
#include "hwlist.h"
#include "ipc.h"
#include "log.h"
#include "notify.h"
#include "plugin.h"
#include "sig.h"
#include "store.h"
#include "sync.h"
#include "usb.h"
#include "util.h"
#include "worker.h"

#define EX_CONFIG 78 /* sysexits.h: systemd does not restart-loop on it */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: kioskd [--config FILE] [--runtime-dir DIR] [--state-dir DIR]\n"
	        "              [--debug] [--check-config] [--version] [--help]\n"
	        "       kioskd --list-hardware | --udev-rules [--plugin-path PATH]\n"
	        "\n"
	        "The kiosk device daemon: drives the kiosk's peripherals through HAL plugins\n"
	        "and serves the UI protocol on DIR/ui.sock and DIR/admin.sock.\n"
	        "\n"
	        "  -c, --config FILE     configuration file (default %s/kioskd/kioskd.conf);\n"
	        "                        drop-ins: *.conf in kioskd.conf.d/ and conf.d/ beside it\n"
	        "  -r, --runtime-dir DIR sockets (default $RUNTIME_DIRECTORY or /run/kioskd)\n"
	        "  -s, --state-dir DIR   database and blob spool (default $STATE_DIRECTORY or\n"
	        "                        /var/lib/kioskd)\n"
	        "  -d, --debug           log at debug level\n"
	        "  -n, --check-config    check the configuration and its plugins, print every\n"
	        "                        problem as file:line: message, exit 0 when it is valid\n"
	        "      --list-hardware   list every installed plugin and the hardware its match\n"
	        "                        table names, then exit\n"
	        "      --udev-rules      print udev rules giving group kioskd access to that USB\n"
	        "                        hardware, then exit\n"
	        "      --plugin-path PATH  plugin directories for the two above (colon-separated;\n"
	        "                        default: plugin_path of the configuration)\n"
	        "  -V, --version         print the version and exit\n"
	        "  -h, --help            print this help and exit\n"
	        "\n"
	        "Signals: SIGHUP reloads the configuration (a bad one is refused and the\n"
	        "running one kept); SIGTERM and SIGINT stop gracefully.\n"
	        "Exit status: 0 on a clean stop, 1 on a runtime failure, 2 on a usage error,\n"
	        "78 when the configuration is invalid.\n",
	        KIOSKD_SYSCONFDIR);
}

struct options {
	const char *config, *runtime_dir, *state_dir;
	const char *plugin_path;
	int debug, check, hwlist; /* hwlist: 1 + enum hwlist_format */
};

static void parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
	        {"config", required_argument, NULL, 'c'},
	        {"runtime-dir", required_argument, NULL, 'r'},
	        {"state-dir", required_argument, NULL, 's'},
	        {"debug", no_argument, NULL, 'd'},
	        {"check-config", no_argument, NULL, 'n'},
	        {"list-hardware", no_argument, NULL, 'L'},
	        {"udev-rules", no_argument, NULL, 'U'},
	        {"plugin-path", required_argument, NULL, 'P'},
	        {"version", no_argument, NULL, 'V'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "c:r:s:dnVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->config = optarg;
			break;
		case 'r':
			o->runtime_dir = optarg;
			break;
		case 's':
			o->state_dir = optarg;
			break;
		case 'd':
			o->debug = 1;
			break;
		case 'n':
			o->check = 1;
			break;
		case 'L':
			o->hwlist = 1 + HWLIST_TEXT;
			break;
		case 'U':
			o->hwlist = 1 + HWLIST_UDEV;
			break;
		case 'P':
			o->plugin_path = optarg;
			break;
		case 'V':
			printf("kioskd %s (plugin ABI %d.%d)\n", KIOSKD_VERSION,
			       KIOSK_HAL_ABI_MAJOR, KIOSK_HAL_ABI_MINOR);
			exit(0);
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kioskd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		exit(2);
	}
}

/* The command line wins, then the configuration, then systemd's
 * RuntimeDirectory=/StateDirectory=, then the built-in defaults. */
static void pick_dir(char **dst, const char *cli, const char *env, const char *def)
{
	const char *e = getenv(env);
	if (cli) {
		free(*dst);
		*dst = strdup(cli);
	} else if (!*dst) {
		/* systemd may list several directories separated by ':' */
		*dst = e && *e ? strndup(e, strcspn(e, ":")) : strdup(def);
	}
}

/* libevent's own complaints go to our log (with a priority under
 * journald), not bare to stderr. */
static void on_libevent_log(int severity, const char *msg)
{
	int prio = severity >= EVENT_LOG_ERR    ? LOG_ERR
	           : severity >= EVENT_LOG_WARN ? LOG_WARNING
	                                        : LOG_DEBUG;
	log_msg(prio, "libevent: %s", msg);
}

static void on_signal(int sig)
{
	if (sig == SIGHUP) {
		struct diag diag = {0};
		log_info("SIGHUP: reloading %s", daemon_conf->path);
		daemon_reload(&diag, NULL);
		diag_free(&diag);
	} else {
		daemon_stop();
	}
}

/* Report every problem, not just the first: read what can be read, then
 * check its devices against their plugins too. */
/* A paid top-up whose card write never came (a power cut in between) must
 * not be forgotten: say so loudly; subscribers to flow.* get them too. */
static void report_unfinished_flows(void)
{
	json_t *flows = store_unfinished_flows(), *f;
	size_t i;

	if (json_array_size(flows))
		log_warnx("%zu unfinished flow%s (a transaction without its final one): "
		          "see txn.list {\"unfinished\": true}",
		          json_array_size(flows), json_array_size(flows) == 1 ? "" : "s");
	json_array_foreach(flows, i, f) events_publish("flow.unfinished", NULL, json_incref(f));
	json_decref(flows);
}

/* --list-hardware / --udev-rules: the plugins on --plugin-path, else on
 * the configuration's plugin_path (a configuration that cannot be read
 * falls back to the built-in directory). */
static int list_hardware(const struct options *o)
{
	struct diag diag = {0};
	struct conf *c;

	log_setlevel(LOG_WARNING); /* stdout is the product here */
	c = o->plugin_path ? NULL : conf_load_partial(o->config, &diag);
	char path[8192], beside[4096];
	int rc;

	if (o->plugin_path)
		snprintf(path, sizeof(path), "%s", o->plugin_path);
	else if (plugin_dir_beside_binary(beside, sizeof(beside)) == 0)
		snprintf(path, sizeof(path), "%s:%s",
		         c && c->plugin_path ? c->plugin_path : KIOSKD_PLUGINDIR, beside);
	else
		snprintf(path, sizeof(path), "%s",
		         c && c->plugin_path ? c->plugin_path : KIOSKD_PLUGINDIR);
	rc = hwlist_print(stdout, path, (enum hwlist_format)(o->hwlist - 1), "kioskd");

	diag_free(&diag);
	conf_free(c);
	plugin_unload_all();
	return rc;
}

static int check_config(const char *path)
{
	struct diag diag = {0};
	struct conf *c = conf_load_partial(path, &diag);
	int ok = c && diag.n == 0;

	if (c && devices_check_conf(c, &diag) < 0)
		ok = 0;
	for (int i = 0; i < diag.n; i++)
		fprintf(stderr, "%s\n", diag.msgs[i]);
	if (ok)
		printf("%s: configuration OK\n", path);
	diag_free(&diag);
	conf_free(c);
	plugin_unload_all();
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct options o = {.config = KIOSKD_SYSCONFDIR "/kioskd/kioskd.conf"};
	struct diag diag = {0};

	parse_args(argc, argv, &o);
	log_init("kioskd", o.debug ? LOG_DEBUG : LOG_INFO);
	clock_gettime(CLOCK_MONOTONIC, &daemon_started);
	sig_block();

	if (o.hwlist)
		return list_hardware(&o);
	if (o.check)
		return check_config(o.config);
	daemon_conf = conf_load(o.config, &diag);
	for (int i = 0; i < diag.n; i++)
		fprintf(stderr, "%s\n", diag.msgs[i]);
	diag_free(&diag);
	if (!daemon_conf) {
		if (!o.check)
			log_err("invalid configuration, not starting (see kioskd --check-config)");
		return o.check ? 1 : EX_CONFIG;
	}
	pick_dir(&daemon_conf->runtime_dir, o.runtime_dir, "RUNTIME_DIRECTORY", "/run/kioskd");
	pick_dir(&daemon_conf->state_dir, o.state_dir, "STATE_DIRECTORY", "/var/lib/kioskd");
	if (!o.debug)
		log_setlevel(daemon_conf->log_level);

	if (mkdir_p(daemon_conf->state_dir, 0700) < 0)
		fatal("cannot create state directory %s", daemon_conf->state_dir);
	if (blob_init(daemon_conf->state_dir) < 0)
		fatal("cannot create the blob spool in %s", daemon_conf->state_dir);
	event_set_log_callback(on_libevent_log);
	if (!(daemon_base = event_base_new()))
		fatalx("cannot create the event loop");
	/* three priorities: I/O and timers run at 1 (the default); the store's
	 * group commit runs at 2, after every socket callback of a loop turn */
	event_base_priority_init(daemon_base, 3);
	if (store_open(daemon_base, daemon_conf) < 0)
		fatalx("cannot open the transaction store in %s", daemon_conf->state_dir);
	if (worker_init(daemon_base, daemon_conf->workers) < 0)
		fatal("cannot start the worker pool");
	if (ipc_init(daemon_base, daemon_conf) < 0)
		fatalx("cannot listen; giving up");
	if (sig_init(daemon_base, on_signal) < 0)
		fatalx("cannot receive signals");
	devices_start(daemon_conf);
	if (sync_init(daemon_base, daemon_conf) < 0)
		fatalx("cannot start delivery");
	report_unfinished_flows();
	notify_init(daemon_base);
	log_info("kioskd %s ready (config %s, state %s)", KIOSKD_VERSION, daemon_conf->path,
	         daemon_conf->state_dir);
	notify_ready("running");

	event_base_dispatch(daemon_base);

	/* A device library blocked in a call that never returns (its service
	 * stopped answering) must not hang the stop.  Its thread still runs
	 * plugin code and may still use libusb, so neither is torn down then:
	 * the store is closed (every commit is durable already) and the
	 * process ends. */
	int stuck = worker_shutdown(daemon_conf->cancel_grace_ms);
	if (stuck > 0)
		log_err("%d device call%s still running %d ms (cancel_grace_ms) after the stop: "
		        "a device library or service is not answering; exiting without waiting",
		        stuck, stuck == 1 ? " is" : "s are", daemon_conf->cancel_grace_ms);
	else
		usb_shutdown(); /* after the devices closed their handles */
	sync_shutdown();
	store_close();
	notify_shutdown();
	if (stuck > 0) {
		log_info("stopped");
		_exit(EXIT_FAILURE);
	}
	sig_shutdown();
	plugin_unload_all();
	conf_free(daemon_conf);
	event_base_free(daemon_base);
	log_info("stopped");
	return 0;
}

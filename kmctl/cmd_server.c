/*
 * cmd_server.c - kmctl's commands that talk to the servers: ping (the KM
 * servers), stats (the running kmilter), flush (the caches of every
 * gateway).  See cmd.h and kmctl.8.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "conf.h"
#include "ctlproto.h"
#include "keymodel.h"
#include "keymodel_admin.h"
#include "kmctl.h"

/* cmd_ping - Discover Versions on both KM servers, timed */
int
cmd_ping(const struct kmilter_conf *conf, const struct opts *o,
    const char *a1, const char *a2)
{
	struct keymodel *km;
	char ver[16];
	struct kmerr err;
	double ms;
	int i, rc = EX_OK_;

	(void)o;
	(void)a1;
	(void)a2;
	if ((km = kmctl_open_km(conf)) == NULL)
		return EX_FAIL;
	for (i = 0; i < 2; i++) {
		enum km_status st = keymodel_ping(km, i, &ms, ver,
		    sizeof(ver), &err);

		if (st == KM_OK)
			printf("%s %s:%d: OK KMIP %s, %.1f ms\n",
			    keymodel_server_name(km, i),
			    conf->km_servers[i].host,
			    conf->km_servers[i].port, ver, ms);
		else {
			printf("%s %s:%d: error: %s\n",
			    keymodel_server_name(km, i),
			    conf->km_servers[i].host,
			    conf->km_servers[i].port, err.msg);
			if (rc == EX_OK_)
				rc = st == KM_TEMPFAIL ? EX_UNREACH : EX_FAIL;
		}
	}
	keymodel_free(km);
	return rc;
}

/* One name of the control socket's answer as a Prometheus sample. */
struct prom_metric {
	const char	*stat;		/* name in "name=value" */
	const char	*family;	/* metric family */
	const char	*label;		/* "" or {key="value"} */
};

/* One metric family: its samples come together after HELP and TYPE. */
struct prom_family {
	const char	*name;
	const char	*type;
	const char	*help;
};

static const struct prom_family families[] = {
	{ "kmilter_connections_total", "counter", "MTA connections since start." },
	{ "kmilter_messages_total", "counter", "Messages by direction since start." },
	{ "kmilter_message_outcomes_total", "counter",
	    "Messages by what kmilter did with them since start." },
	{ "kmilter_downgraded_total", "counter", "Messages that left less protected "
	    "than policy wanted (unsigned, signed only, kept encrypted, certificate "
	    "missing), by direction, since start." },
	{ "kmilter_downgraded_outbound_total", "counter", "Outbound messages that "
	    "left without what policy wanted: a signature (lost=\"signature\") or "
	    "encryption (lost=\"encryption\"), since start." },
	{ "kmilter_latency_milliseconds", "gauge", "Message processing time: upper "
	    "bound of the latency bucket holding the quantile (-1: above 10 s)." },
	{ "kmilter_key_lookups_total", "counter", "Key store lookups since start or reload." },
	{ "kmilter_key_cache_hits_total", "counter", "Key store lookups answered by a "
	    "cache, by level (l1 memory, l2 Redis)." },
	{ "kmilter_key_misses_total", "counter", "Key store lookups that found nothing." },
	{ "kmilter_km_fetches_total", "counter", "Fetches from the KM servers." },
	{ "kmilter_km_errors_total", "counter", "KM fetches that failed." },
	{ "kmilter_cache_errors_total", "counter", "Redis (L2 cache) operations that failed." },
	{ "kmilter_hook_calls_total", "counter", "Admin hook calls." },
	{ "kmilter_hook_outcomes_total", "counter", "Enhanced keys the admin hook unlocked "
	    "or left locked." },
};

static const struct prom_metric metrics[] = {
	{ "connections", "kmilter_connections_total", "" },
	{ "outbound", "kmilter_messages_total", "{direction=\"outbound\"}" },
	{ "inbound", "kmilter_messages_total", "{direction=\"inbound\"}" },
	{ "pass", "kmilter_messages_total", "{direction=\"pass\"}" },
	{ "rewritten", "kmilter_message_outcomes_total", "{outcome=\"rewritten\"}" },
	{ "passed", "kmilter_message_outcomes_total", "{outcome=\"passed\"}" },
	{ "rejected", "kmilter_message_outcomes_total", "{outcome=\"rejected\"}" },
	{ "tempfailed", "kmilter_message_outcomes_total", "{outcome=\"tempfailed\"}" },
	{ "aborted", "kmilter_message_outcomes_total", "{outcome=\"aborted\"}" },
	{ "downgraded_outbound", "kmilter_downgraded_total", "{direction=\"outbound\"}" },
	{ "downgraded_inbound", "kmilter_downgraded_total", "{direction=\"inbound\"}" },
	{ "downgraded_unsigned", "kmilter_downgraded_outbound_total", "{lost=\"signature\"}" },
	{ "downgraded_unencrypted", "kmilter_downgraded_outbound_total",
	    "{lost=\"encryption\"}" },
	{ "latency_p50_ms", "kmilter_latency_milliseconds", "{quantile=\"0.5\"}" },
	{ "latency_p90_ms", "kmilter_latency_milliseconds", "{quantile=\"0.9\"}" },
	{ "latency_p99_ms", "kmilter_latency_milliseconds", "{quantile=\"0.99\"}" },
	{ "keys_lookups", "kmilter_key_lookups_total", "" },
	{ "keys_l1_hits", "kmilter_key_cache_hits_total", "{level=\"l1\"}" },
	{ "keys_l2_hits", "kmilter_key_cache_hits_total", "{level=\"l2\"}" },
	{ "keys_misses", "kmilter_key_misses_total", "" },
	{ "keys_km_fetches", "kmilter_km_fetches_total", "" },
	{ "keys_km_errors", "kmilter_km_errors_total", "" },
	{ "keys_l2_errors", "kmilter_cache_errors_total", "" },
	{ "hook_calls", "kmilter_hook_calls_total", "" },
	{ "hook_unlocked", "kmilter_hook_outcomes_total", "{outcome=\"unlocked\"}" },
	{ "hook_locked", "kmilter_hook_outcomes_total", "{outcome=\"locked\"}" },
};

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

/* stat_value - the value of name in the "name=value" lines, or NULL */
static const char *
stat_value(const char *text, const char *name, char *buf, size_t len)
{
	size_t n = strlen(name);

	for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (strncmp(p, name, n) == 0 && p[n] == '=') {
			size_t v = strcspn(p + n + 1, "\n");

			snprintf(buf, len, "%.*s", (int)v, p + n + 1);
			return buf;
		}
	return NULL;
}

/* known_stat - name is in the table */
static int
known_stat(const char *name, size_t n)
{
	for (size_t i = 0; i < NELEM(metrics); i++)
		if (strlen(metrics[i].stat) == n && strncmp(metrics[i].stat, name, n) == 0)
			return 1;
	return 0;
}

/* print_prometheus - the counters in the Prometheus text format: each
 * family's HELP and TYPE, then its samples; a name kmctl does not know
 * yet as an untyped kmilter_NAME */
static void
print_prometheus(const char *text)
{
	char v[64];

	for (size_t f = 0; f < NELEM(families); f++) {
		int head = 0;

		for (size_t i = 0; i < NELEM(metrics); i++) {
			if (strcmp(metrics[i].family, families[f].name) != 0 ||
			    stat_value(text, metrics[i].stat, v, sizeof(v)) == NULL)
				continue;
			if (!head++)
				printf("# HELP %s %s\n# TYPE %s %s\n", families[f].name,
				    families[f].help, families[f].name, families[f].type);
			printf("%s%s %s\n", families[f].name, metrics[i].label, v);
		}
	}
	for (const char *p = text; *p; ) {
		size_t len = strcspn(p, "\n"), n = strcspn(p, "=");

		if (n < len && !known_stat(p, n) && strspn(p, "abcdefghijklmnopqrstuvwxyz_0123456789") == n)
			printf("# HELP kmilter_%.*s kmilter counter %.*s.\n# TYPE kmilter_%.*s untyped\n"
			    "kmilter_%.*s %.*s\n", (int)n, p, (int)n, p, (int)n, p, (int)n, p,
			    (int)(len - n - 1), p + n + 1);
		p += len;
		if (*p == '\n')
			p++;
	}
}

/* cmd_stats - the running milter's counters, through its control socket */
int
cmd_stats(const struct kmilter_conf *conf, const struct opts *o,
    const char *a1, const char *a2)
{
	char out[8192];
	struct kmerr err;

	(void)a1;
	(void)a2;
	if (ctlproto_ask(conf->control_socket, "stats", out, sizeof(out),
	    &err) != 0) {
		kmctl_warn("%s", err.msg);
		return EX_UNREACH;
	}
	if (strcmp(o->format, "prometheus") == 0)
		print_prometheus(out);
	else
		fputs(out, stdout);
	return EX_OK_;
}

/* cmd_flush - drop a1's cached entries on every gateway */
int
cmd_flush(const struct kmilter_conf *conf, const struct opts *o,
    const char *a1, const char *a2)
{
	(void)o;
	(void)a2;
	return kmctl_after_change(conf, a1);
}

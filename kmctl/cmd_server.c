/*
 * cmd_server.c - kmctl's commands that talk to the servers: ping (the KM
 * servers), stats (the running kmilter), flush (the caches of every
 * gateway).  See cmd.h and kmctl.8.
 */
#include <stdio.h>

#include "cmd.h"
#include "conf.h"
#include "ctlproto.h"
#include "keymodel.h"
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

/* cmd_stats - the running milter's counters, through its control socket */
int
cmd_stats(const struct kmilter_conf *conf, const struct opts *o,
    const char *a1, const char *a2)
{
	char out[8192];
	struct kmerr err;

	(void)o;
	(void)a1;
	(void)a2;
	if (ctlproto_ask(conf->control_socket, "stats", out, sizeof(out),
	    &err) != 0) {
		kmctl_warn("%s", err.msg);
		return EX_UNREACH;
	}
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

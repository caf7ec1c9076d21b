#ifndef KMILTER_KMCTL_CMD_H
#define KMILTER_KMCTL_CMD_H
/*
 * NAME
 *	cmd - kmctl's commands, one function each, as kmctl.c's table runs
 *	them
 * SUMMARY
 *	cmd_keys.c: cmd_enroll(), cmd_renew(), cmd_set_password(),
 *	cmd_clear_password(), cmd_revoke(), cmd_import(), cmd_unban(),
 *	cmd_export(), cmd_retire_gateway().
 *	cmd_show.c: cmd_show(), cmd_export_cert().
 *	cmd_gateway.c: cmd_keygen(), cmd_signing_enroll().
 *	cmd_server.c: cmd_ping(), cmd_stats(), cmd_flush().
 *	cmd_maintain.c: cmd_list(), cmd_maintain().
 *	cmd_bulk.c: cmd_enroll_bulk() (cmd_enroll() with --from).
 * DESCRIPTION
 *	Every command takes the loaded configuration, the options and its
 *	arguments (a1, a2: NULL when absent; kmctl.c has checked how many
 *	there are and that a1, when given, is a valid address) and returns
 *	kmctl's exit code (kmctl.8).  See kmctl.8 for what each does.
 * OWNERSHIP
 *	Everything is borrowed for the call.
 * ERRORS
 *	An EX_* code of kmctl.h, after a kmctl_warn() message unless EX_OK_.
 * THREADS
 *	kmctl has one thread.
 */
struct kmilter_conf;
struct opts;

int	cmd_enroll(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_renew(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_set_password(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_clear_password(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_revoke(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_import(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_unban(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_export(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_retire_gateway(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_show(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_export_cert(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_keygen(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_signing_enroll(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_ping(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_stats(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_flush(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_list(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_maintain(const struct kmilter_conf *, const struct opts *,
	    const char *a1, const char *a2);
int	cmd_enroll_bulk(const struct kmilter_conf *, const struct opts *);

#endif

#ifndef KMILTER_MILTER_CALLBACKS_H
#define KMILTER_MILTER_CALLBACKS_H
/*
 * NAME
 *	callbacks - the libmilter glue: mlfi_* callbacks and the smfiDesc table
 * SUMMARY
 *	callbacks_register(), callbacks_set_conf(), callbacks_conf(),
 *	callbacks_active(), callbacks_drain()
 * DESCRIPTION
 *	Each callback turns libmilter's arguments into session_* calls and
 *	maps results to SMFIS_* codes.  All message changes are made in
 *	mlfi_eom.  The current configuration is swapped in by
 *	callbacks_set_conf() (reload); each new connection pins the one
 *	current at its start.  After callbacks_drain() (kmilter stopping)
 *	every new connection is tempfailed; those in progress go on.
 *	KMILTER_MILTER_STEPS are the protocol steps kmilter negotiates: no
 *	HELO, end of headers, DATA or unknown commands, and no reply to each
 *	header and body chunk (failures there are reported at end of message).
 *	The benchmarks' null milter negotiates the same (needs <libmilter/mfapi.h>).
 * OWNERSHIP
 *	callbacks_set_conf() takes over the caller's reference and drops the
 *	old one; callbacks_conf() returns a new reference (conf_unref it).
 * ERRORS
 *	callbacks_register() returns -1 when smfi_register fails.
 * THREADS
 *	Thread-safe.
 */
#include "conf.h"

#define KMILTER_MILTER_STEPS	(SMFIP_NOHELO | SMFIP_NOEOH | SMFIP_NOUNKNOWN | \
	SMFIP_NODATA | SMFIP_NR_HDR | SMFIP_NR_BODY)

int			 callbacks_register(void);
void			 callbacks_set_conf(struct kmilter_conf *);
struct kmilter_conf	*callbacks_conf(void);
int			 callbacks_active(void);
void			 callbacks_drain(void);

#endif

#ifndef KMILTER_MILTER_OUTBOUND_INT_H
#define KMILTER_MILTER_OUTBOUND_INT_H
/*
 * outbound_int.h - shared by outbound.c and outbound_rcpt.c only.
 *
 * outbound_lookup_cert() gives recipient i's usable certificate (kept in
 * m->rcpt_certs[i] from RCPT time, or looked up now and checked for
 * revocation): KM_OK with the certificate or none, else why in err;
 * *unknown (if not NULL) says a "none" is not a "no" (a directory did not
 * answer, or the revocation status could not be told under
 * revocation.check = hard).
 */
#include <stddef.h>

#include "conf.h"
#include "session.h"

enum km_status	outbound_lookup_cert(const struct kmilter_conf *, struct message *,
		    int i, char *err, size_t errlen, int *unknown);

#endif

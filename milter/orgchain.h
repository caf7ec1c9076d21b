#ifndef KMILTER_MILTER_ORGCHAIN_H
#define KMILTER_MILTER_ORGCHAIN_H
/*
 * NAME
 *	orgchain - the organization CA certificates that travel with our
 *	users' published encryption certificates
 * SUMMARY
 *	orgchain_load(), orgchain_get(), orgchain_free()
 * DESCRIPTION
 *	orgchain_load() reads every certificate of km.org_ca_cert (PEM) and
 *	makes them the current chain (none when the setting is empty); it is
 *	called with the trust store at start-up and at reload (runtime.c).
 *	orgchain_get() gives the current chain, empty before the first load.
 *	Kept apart from runtime.c so that outbound.c's unit test, which
 *	fakes the runtime, links without it.
 * OWNERSHIP
 *	orgchain_get() returns new references: sk_X509_pop_free(sk,
 *	X509_free).
 * ERRORS
 *	orgchain_load(): 0, or -1 with err set (KM_PERMFAIL KMERR_BADINPUT:
 *	the file does not load or holds no certificate; KM_NOMEM); the
 *	current chain is then unchanged.  orgchain_get(): NULL only when out
 *	of memory.
 * THREADS
 *	Thread-safe.
 */
#include <openssl/x509.h>

#include "conf.h"
#include "kmerr.h"

int		 orgchain_load(const struct kmilter_conf *, struct kmerr *err);
STACK_OF(X509)	*orgchain_get(void);
void		 orgchain_free(void);

#endif

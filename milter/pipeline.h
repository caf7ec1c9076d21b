#ifndef KMILTER_MILTER_PIPELINE_H
#define KMILTER_MILTER_PIPELINE_H
/*
 * NAME
 *	pipeline - end-of-message processing: direction, then what to do
 * SUMMARY
 *	pipeline_run(), pipeline_outbound()
 * DESCRIPTION
 *	pipeline_run() decides the message's direction (policy.c) and fills
 *	the verdict: pass unchanged, rewrite (sign/encrypt outbound, decrypt
 *	inbound), reject, or tempfail.  It never talks to libmilter; the
 *	caller applies the verdict.  Malformed input gets the configured
 *	policy.on_malformed action.  In every direction, headers that
 *	imitate kmilter's own results are removed first (forged.h).
 * OWNERSHIP
 *	The verdict is the caller's (verdict_init before, verdict_clear after).
 * ERRORS
 *	Failures are expressed in the verdict (tempfail with a reason).
 * THREADS
 *	Thread-safe; one call per message.
 */
#include "policy.h"
#include "session.h"
#include "verdict.h"

enum direction pipeline_run(struct session *, struct verdict *);
int	       pipeline_outbound(const struct session *);

#endif

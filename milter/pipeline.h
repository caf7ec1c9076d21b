#ifndef KMILTER_MILTER_PIPELINE_H
#define KMILTER_MILTER_PIPELINE_H
/*
 * NAME
 *	pipeline - end-of-message processing: direction, then what to do
 * SUMMARY
 *	pipeline_run(), pipeline_outbound(), pipeline_sender_refused()
 * DESCRIPTION
 *	pipeline_run() decides the message's direction (policy.c) and fills
 *	the verdict: pass unchanged, rewrite (sign/encrypt outbound, decrypt
 *	inbound), reject, or tempfail.  It never talks to libmilter; the
 *	caller applies the verdict.  Malformed input gets the configured
 *	policy.on_malformed action.
 *	pipeline_outbound() tells, at RCPT time, whether the message is
 *	outbound with the recipients so far.  pipeline_sender_refused() says
 *	whether MAIL FROM must be refused (553 5.7.1) because the SMTP AUTH
 *	login does not own the internal sender address (policy_signer()).
 * OWNERSHIP
 *	The verdict is the caller's (verdict_init before, verdict_clear after).
 * ERRORS
 *	Failures are expressed in the verdict (tempfail with a reason).
 * THREADS
 *	Thread-safe; one call per message.
 */
#include <stddef.h>

#include "policy.h"
#include "session.h"
#include "verdict.h"

enum direction pipeline_run(struct session *, struct verdict *);
int	       pipeline_outbound(const struct session *);
int	       pipeline_sender_refused(const struct session *, char *reply, size_t replylen);

#endif

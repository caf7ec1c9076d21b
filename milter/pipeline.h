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
 *	caller applies the verdict.  Malformed inbound S/MIME gets the
 *	configured policy.on_malformed action (outbound content is wrapped
 *	whatever its MIME).  In every direction, headers that
 *	imitate kmilter's own results are removed first (forged.h).
 *
 *	Two passes (policy.inbound.decrypt_daemon set).  Postfix expands
 *	virtual aliases in cleanup, after the smtpd milter saw the
 *	recipients, so a forward could carry plaintext to an address kmilter
 *	never saw.  In the two-pass layout the public smtpd runs kmilter for
 *	outbound work only (signing, encryption, RCPT-time refusals) and
 *	leaves inbound messages as they are; its content_filter re-injects
 *	every message, with the recipients after alias expansion, into a
 *	second smtpd whose {daemon_name} is decrypt_daemon.  There kmilter
 *	does inbound work only (forged header removal, decryption,
 *	verification), whatever the client, and leaves alone a message whose
 *	envelope sender is internal (its outbound work was done in the first
 *	pass: signed, maybe encrypted on purpose; decrypting or unwrapping it
 *	would undo that).  The first pass still removes forged kmilter
 *	headers from inbound mail, which may claim an internal sender.
 *	Unset: one pass, everything in the public smtpd.
 *
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

#ifndef KMILTER_MILTER_VERDICT_H
#define KMILTER_MILTER_VERDICT_H
/*
 * NAME
 *	verdict - what end-of-message decided: pass, rewrite, reject or tempfail
 * SUMMARY
 *	verdict_init(), verdict_clear(), verdict_drop_changes(), verdict_header_change(),
 *	verdict_header_add(), verdict_set_body(), verdict_set_body_spool(),
 *	verdict_reject(),
 *	verdict_tempfail(), verdict_downgrade()
 * DESCRIPTION
 *	The pipeline fills a verdict; callbacks.c applies it with libmilter
 *	(smfi_chgheader, smfi_addheader, smfi_replacebody, smfi_setreply) in
 *	mlfi_eom, the only place message changes happen.  A rewrite is all
 *	or nothing: either every change is applied, or the message is
 *	tempfailed so the MTA retries.
 *	action_name and result are the words of the per-message log line.
 *	verdict_downgrade() marks a message that leaves less protected than
 *	policy wanted (unsigned, signed only, kept encrypted): its log line
 *	says result=downgraded with the reason, at warning level.  Before
 *	calling it, an outbound step ORs into downgrade_kinds what was lost
 *	(VERDICT_DG_UNSIGNED: policy wanted it signed; VERDICT_DG_UNENCRYPTED:
 *	wanted it encrypted): the log line then says signed=no or
 *	encrypted=no, and kmctl stats counts it (stats.h).
 * OWNERSHIP
 *	The verdict owns its strings and body; verdict_clear() frees them.
 *	The body (malloc'ed; it may be decrypted or signed plaintext) is
 *	wiped before it is freed.  A body built in a spool (a large message
 *	on the streaming path) is given with verdict_set_body_spool(): the
 *	verdict owns the spool and callbacks.c sends it to the MTA in
 *	bounded chunks read from it.  One of body and bodyspool at most.
 * ERRORS
 *	KM_NOMEM from the adders.
 * THREADS
 *	One verdict per message, one thread.
 */
#include <stddef.h>

#include "status.h"

struct spool;

enum verdict_kind { VERDICT_PASS, VERDICT_REWRITE, VERDICT_REJECT, VERDICT_TEMPFAIL };

#define VERDICT_DG_UNSIGNED	0x1	/* policy wanted it signed */
#define VERDICT_DG_UNENCRYPTED	0x2	/* policy wanted it encrypted */

struct header_change {
	char	*name;
	char	*value;		/* NULL deletes */
	int	 index;		/* 1-based among headers of that name; 0 = add */
};

struct verdict {
	enum verdict_kind kind;
	const char	*action_name;	/* "pass", "sign", "encrypt", "decrypt", ... */
	char		 result[256];	/* "ok" or why */
	int		 downgraded;	/* left less protected than policy wanted */
	unsigned	 downgrade_kinds; /* VERDICT_DG_*: what it left without */
	char		 rcode[4];	/* SMTP reply for reject/tempfail */
	char		 xcode[8];
	char		 reply[256];
	struct header_change *changes;
	int		 nchanges;
	unsigned char	*body;		/* new body, CRLF lines; NULL = keep */
	size_t		 bodylen;
	struct spool	*bodyspool;	/* new body in a spool; NULL = see body */
};

void		verdict_init(struct verdict *);
void		verdict_clear(struct verdict *);
void		verdict_drop_changes(struct verdict *);
enum km_status	verdict_header_change(struct verdict *, const char *name, int index,
		    const char *value);
enum km_status	verdict_header_add(struct verdict *, const char *name, const char *value);
void		verdict_set_body(struct verdict *, unsigned char *body, size_t len);
void		verdict_set_body_spool(struct verdict *, struct spool *body);
void		verdict_reject(struct verdict *, const char *rcode, const char *xcode,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void		verdict_tempfail(struct verdict *, const char *fmt, ...)
		    __attribute__((format(printf, 2, 3)));
void		verdict_downgrade(struct verdict *, const char *fmt, ...)
		    __attribute__((format(printf, 2, 3)));

#endif

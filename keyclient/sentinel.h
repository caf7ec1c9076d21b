#ifndef KMILTER_KEYCLIENT_SENTINEL_H
#define KMILTER_KEYCLIENT_SENTINEL_H
/*
 * NAME
 *	sentinel - which Redis is the master: asking Redis Sentinels, following
 *	their +switch-master events
 * SUMMARY
 *	sentinel_new(), sentinel_ref(), sentinel_unref(), sentinel_master(),
 *	sentinel_confirm(), sentinel_reject(), sentinel_gen(), sentinel_listen(),
 *	sentinel_unlisten(), sentinel_parse_switch()
 * DESCRIPTION
 *	hiredis 0.14 knows nothing of Sentinel; this module speaks the two
 *	things a client needs.  A struct sentinel holds a master name and a
 *	list of Sentinels ("host:port" or "[v6]:port", hostport.h).
 *
 *	sentinel_master() gives the master's address as last known, unless
 *	it is in the caller's skip list (addresses that just failed: no
 *	answer, a replica, READONLY); then it asks the Sentinels in turn
 *	(SENTINEL get-master-addr-by-name), starting with the one that last
 *	answered, and takes the first answer not in the skip list nor
 *	rejected (sentinel_reject()) in the last 30 s; only when every
 *	answer is one of those does it take one rejected lately (a master
 *	that restarted is still the master).  A Sentinel that does not
 *	answer, does not know the master, or names such an address is passed
 *	over, so a lying or stale Sentinel costs one wrong try, not an
 *	outage.  What the Sentinels name is only a candidate: the caller
 *	checks what it connects to (ROLE) and calls sentinel_confirm() when it
 *	is the master (it becomes the known master), sentinel_reject() when
 *	it is not.
 *
 *	A watcher thread, started on first use, SUBSCRIBEs to +switch-master
 *	on one Sentinel at a time (the next one when it goes away) and, after
 *	each subscription, asks that Sentinel for the master so that a switch
 *	missed meanwhile is caught.  Whenever the known address changes, the
 *	generation counter (sentinel_gen()) grows and a byte is written to
 *	each descriptor given to sentinel_listen(): the cache's pool drops
 *	its connections, its subscriber reconnects.  Changes are logged at
 *	info level; rejected addresses at warning level, once a minute at
 *	most per address.
 * OWNERSHIP
 *	sentinel_new() copies its options (the password in secmem) and
 *	returns one reference; sentinel_ref() adds one, sentinel_unref()
 *	drops one and, with the last, stops the watcher and frees everything;
 *	it returns NULL.  Listener descriptors stay the caller's: unlisten
 *	before closing them.
 * ERRORS
 *	sentinel_new(): NULL with err set (KM_PERMFAIL, KMERR_BADINPUT for a
 *	bad address, an empty list or master name; KM_NOMEM).
 *	sentinel_master(): 0, or -1 with err set (KM_TEMPFAIL,
 *	KMERR_UNREACHABLE: no Sentinel named a usable master; the message
 *	says what each answered, never the password).
 *	sentinel_listen(): -1 when the list of listeners is full.
 *	sentinel_parse_switch(): 1 when
 *	the payload of a +switch-master message is about master and
 *	well formed (new address set), 0 when it is about another master, -1
 *	when malformed.
 * THREADS
 *	Every function is thread-safe.  One thread at a time asks the
 *	Sentinels; others wait for its answer.
 */
#include <stddef.h>

#include "kmerr.h"

#define SENTINEL_HOST_MAX	256
#define SENTINEL_MAX		16	/* Sentinels in a list */
#define SENTINEL_LISTEN_MAX	4
#define SENTINEL_DEFAULT_TIMEOUT_MS	200

struct sentinel;

struct sentinel_addr {
	char	host[SENTINEL_HOST_MAX];
	int	port;
};

struct sentinel_opts {
	const char *const	*addrs;		/* "host:port" */
	int			 naddrs;
	const char		*master;	/* the monitored master's name */
	const char		*password;	/* Sentinels' AUTH; NULL: none */
	int			 timeout_ms;	/* connect and command; 0: default */
};

struct sentinel	*sentinel_new(const struct sentinel_opts *, struct kmerr *err);
struct sentinel	*sentinel_ref(struct sentinel *);
struct sentinel	*sentinel_unref(struct sentinel *);
int		 sentinel_master(struct sentinel *, const struct sentinel_addr *skip,
		    int nskip, struct sentinel_addr *out, struct kmerr *err);
void		 sentinel_confirm(struct sentinel *,
		    const struct sentinel_addr *);
void		 sentinel_reject(struct sentinel *, const struct sentinel_addr *,
		    const char *why);
unsigned	 sentinel_gen(struct sentinel *);
const char	*sentinel_name(const struct sentinel *);
int		 sentinel_listen(struct sentinel *, int fd);
void		 sentinel_unlisten(struct sentinel *, int fd);
int		 sentinel_parse_switch(const char *payload, size_t len,
		    const char *master, struct sentinel_addr *out);

#endif

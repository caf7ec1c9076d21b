/*
 * sentinel.c - the Redis master as the Sentinels name it: asking them in
 * turn, following +switch-master, telling the cache when it moves (see
 * sentinel.h).  hiredis 0.14 has no Sentinel support; this is the little a
 * client needs, over plain hiredis connections.
 */
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "clock.h"
#include "hostport.h"
#include "log.h"
#include "secmem.h"
#include "sentinel.h"

#define SENTINEL_CHANNEL	"+switch-master"
#define REJECT_LOG_MS		60000	/* one warning per address a minute */
#define BAD_MAX			8	/* rejected addresses remembered */
#define BAD_MS			30000	/* for so long */

struct sentinel {
	pthread_mutex_t		 lk;		/* everything below but ask */
	pthread_mutex_t		 ask;		/* one thread asks at a time */
	int			 refs;
	struct sentinel_addr	 list[SENTINEL_MAX];
	int			 n;
	int			 first;		/* the one that answered last */
	char			*master;
	char			*password;	/* secmem */
	struct timeval		 tv;
	struct sentinel_addr	 cur;		/* last known master */
	int			 known;		/* cur is believed */
	unsigned		 gen;
	int			 listen[SENTINEL_LISTEN_MAX];
	struct sentinel_addr	 last_reject;
	int64_t			 last_reject_ms;
	struct sentinel_addr	 bad[BAD_MAX];	/* rejected lately */
	int64_t			 bad_until[BAD_MAX];
	int			 watching;	/* the watcher thread runs */
	pthread_t		 tid;
	int			 stop[2];
};

/* sentinel_parse_switch - "<name> <old-ip> <old-port> <new-ip> <new-port>" */
int
sentinel_parse_switch(const char *p, size_t len, const char *master,
    struct sentinel_addr *out)
{
	const char *f[5];
	size_t fl[5], i = 0, nf = 0;
	char buf[16];
	char *end;
	long port;

	while (i < len && nf < 5) {
		while (i < len && p[i] == ' ')
			i++;
		if (i == len)
			break;
		f[nf] = p + i;
		while (i < len && p[i] != ' ')
			i++;
		fl[nf] = (size_t)(p + i - f[nf]);
		nf++;
	}
	while (i < len && p[i] == ' ')
		i++;
	if (nf != 5 || i != len)
		return -1;
	if (fl[4] >= sizeof(buf) || fl[3] == 0 ||
	    fl[3] >= sizeof(out->host) || memchr(f[3], '\0', fl[3]) != NULL)
		return -1;
	memcpy(buf, f[4], fl[4]);
	buf[fl[4]] = '\0';
	errno = 0;
	port = strtol(buf, &end, 10);
	if (*end != '\0' || errno != 0 || port < 1 || port > 65535)
		return -1;
	if (strlen(master) != fl[0] || memcmp(master, f[0], fl[0]) != 0)
		return 0;
	memcpy(out->host, f[3], fl[3]);
	out->host[fl[3]] = '\0';
	out->port = (int)port;
	return 1;
}

static int
addr_eq(const struct sentinel_addr *a, const struct sentinel_addr *b)
{
	return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* set_master - adopt a (new) master address; locked by the caller */
static void
set_master(struct sentinel *s, const struct sentinel_addr *a,
    const char *how)
{
	ssize_t n;
	int moved;

	if (!addr_eq(&s->cur, a)) {
		if (s->cur.port != 0)
			log_info("cache: sentinel: master %s is now at %s:%d "
			    "(was %s:%d; %s)", s->master, a->host, a->port,
			    s->cur.host, s->cur.port, how);
		else
			log_info("cache: sentinel: master %s is at %s:%d (%s)",
			    s->master, a->host, a->port, how);
		moved = s->cur.port != 0;	/* not the first answer */
		s->cur = *a;
		__atomic_add_fetch(&s->gen, 1, __ATOMIC_SEQ_CST);
		for (int i = 0; moved && i < SENTINEL_LISTEN_MAX; i++)
			if (s->listen[i] != -1)
				do
					n = write(s->listen[i], "m", 1);
				while (n == -1 && errno == EINTR);
	}
	s->known = 1;
}

/* sent_open - a connection to Sentinel i, AUTHed; NULL with why set */
static redisContext *
sent_open(struct sentinel *s, const struct sentinel_addr *a, char *why,
    size_t whylen)
{
	redisContext *ctx;
	redisReply *r;

	ctx = redisConnectWithTimeout(a->host, a->port, s->tv);
	if (ctx == NULL) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	if (ctx->err || redisSetTimeout(ctx, s->tv) != REDIS_OK) {
		snprintf(why, whylen, "%.100s", ctx->errstr);
		redisFree(ctx);
		return NULL;
	}
	if (s->password != NULL) {
		r = redisCommand(ctx, "AUTH %s", s->password);
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			snprintf(why, whylen, "AUTH: %.80s", r ? r->str :
			    ctx->errstr);
			if (r != NULL)
				freeReplyObject(r);
			redisFree(ctx);
			return NULL;
		}
		freeReplyObject(r);
	}
	return ctx;
}

/* ask_master - SENTINEL get-master-addr-by-name on ctx; 0 or -1 with why */
static int
ask_master(struct sentinel *s, redisContext *ctx, struct sentinel_addr *out,
    char *why, size_t whylen)
{
	redisReply *r;
	char buf[SENTINEL_HOST_MAX + 16];
	int rc = -1;

	r = redisCommand(ctx, "SENTINEL get-master-addr-by-name %s",
	    s->master);
	if (r == NULL) {
		snprintf(why, whylen, "%.100s", ctx->errstr[0] ? ctx->errstr :
		    "no answer");
		return -1;
	}
	if (r->type == REDIS_REPLY_NIL)
		snprintf(why, whylen, "does not know master %s", s->master);
	else if (r->type == REDIS_REPLY_ERROR)
		snprintf(why, whylen, "refused: %.80s", r->str);
	else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_STRING ||
	    r->element[0]->len >= SENTINEL_HOST_MAX ||
	    r->element[1]->len > 5)
		snprintf(why, whylen, "malformed answer");
	else {
		snprintf(buf, sizeof(buf), "%s%s%s:%s",
		    strchr(r->element[0]->str, ':') ? "[" : "",
		    r->element[0]->str,
		    strchr(r->element[0]->str, ':') ? "]" : "",
		    r->element[1]->str);
		if (hostport_parse(buf, out->host, sizeof(out->host),
		    &out->port) == 0)
			rc = 0;
		else
			snprintf(why, whylen, "malformed address");
	}
	freeReplyObject(r);
	return rc;
}

/* in_skip - 1 if a is one of the addresses to pass over */
static int
in_skip(const struct sentinel_addr *a, const struct sentinel_addr *skip,
    int nskip)
{
	for (int i = 0; i < nskip; i++)
		if (addr_eq(a, &skip[i]))
			return 1;
	return 0;
}

/* is_bad - 1 if a was rejected less than BAD_MS ago (locked) */
static int
is_bad(struct sentinel *s, const struct sentinel_addr *a, int64_t now)
{
	for (int i = 0; i < BAD_MAX; i++)
		if (s->bad_until[i] > now && addr_eq(&s->bad[i], a))
			return 1;
	return 0;
}

/* ask_round - ask each Sentinel in turn for an answer not in skip (nor,
 * unless take_bad, rejected lately); 0 with *out, or -1 with said */
static int
ask_round(struct sentinel *s, const struct sentinel_addr *skip, int nskip,
    int take_bad, struct sentinel_addr *out, char *said, size_t saidlen)
{
	struct sentinel_addr a;
	redisContext *ctx;
	char why[160];
	size_t sl = strlen(said);
	int i, k, ok, bad;

	for (k = 0; k < s->n; k++) {
		i = (s->first + k) % s->n;
		ok = 0;
		memset(&a, 0, sizeof(a));
		if ((ctx = sent_open(s, &s->list[i], why, sizeof(why))) != NULL) {
			if (ask_master(s, ctx, &a, why, sizeof(why)) == 0) {
				pthread_mutex_lock(&s->lk);
				bad = !take_bad && is_bad(s, &a, clock_ms());
				pthread_mutex_unlock(&s->lk);
				if (in_skip(&a, skip, nskip) || bad)
					snprintf(why, sizeof(why), "names "
					    "%.100s:%d, which %s failed",
					    a.host, a.port, bad ? "lately" :
					    "just");
				else
					ok = 1;
			}
			redisFree(ctx);
		}
		if (ok) {
			s->first = i;
			*out = a;
			return 0;
		}
		if (sl < saidlen)
			sl += (size_t)snprintf(said + sl, saidlen - sl,
			    "%s%s:%d %s", sl ? "; " : "", s->list[i].host,
			    s->list[i].port, why);
	}
	return -1;
}

static void	watch_start(struct sentinel *);

/* sentinel_master - the master's address, asking the Sentinels if the last
 * known one is unknown or skipped */
int
sentinel_master(struct sentinel *s, const struct sentinel_addr *skip,
    int nskip, struct sentinel_addr *out, struct kmerr *err)
{
	char said[512];

	watch_start(s);
	pthread_mutex_lock(&s->ask);
	pthread_mutex_lock(&s->lk);
	if (s->known && !in_skip(&s->cur, skip, nskip)) {
		*out = s->cur;
		pthread_mutex_unlock(&s->lk);
		pthread_mutex_unlock(&s->ask);
		return 0;
	}
	pthread_mutex_unlock(&s->lk);
	said[0] = '\0';
	/* Addresses rejected lately are taken only when nothing else is
	 * named: a master that restarted is still the master. */
	if (ask_round(s, skip, nskip, 0, out, said, sizeof(said)) == 0 ||
	    ask_round(s, skip, nskip, 1, out, said, sizeof(said)) == 0) {
		pthread_mutex_unlock(&s->ask);
		return 0;
	}
	pthread_mutex_unlock(&s->ask);
	kmerr_set(err, KM_TEMPFAIL, KMERR_UNREACHABLE,
	    "no Sentinel names a usable master %s (%.400s)", s->master, said);
	return -1;
}

/* sentinel_confirm - a answered ROLE master: it is the master now */
void
sentinel_confirm(struct sentinel *s, const struct sentinel_addr *a)
{
	pthread_mutex_lock(&s->lk);
	set_master(s, a, "named by a Sentinel, checked with ROLE");
	pthread_mutex_unlock(&s->lk);
}

/* sentinel_reject - a is not the master (no answer, a replica, READONLY) */
void
sentinel_reject(struct sentinel *s, const struct sentinel_addr *a,
    const char *why)
{
	int64_t now = clock_ms();

	int slot = 0;

	pthread_mutex_lock(&s->lk);
	if (s->known && addr_eq(&s->cur, a))
		s->known = 0;
	for (int i = 1; i < BAD_MAX; i++)
		if (addr_eq(&s->bad[i], a) ||
		    s->bad_until[i] < s->bad_until[slot])
			slot = i;
	for (int i = 0; i < BAD_MAX; i++)
		if (addr_eq(&s->bad[i], a))
			slot = i;
	s->bad[slot] = *a;
	s->bad_until[slot] = now + BAD_MS;
	if (!addr_eq(&s->last_reject, a) ||
	    now - s->last_reject_ms >= REJECT_LOG_MS) {
		s->last_reject = *a;
		s->last_reject_ms = now;
		log_warnx("cache: sentinel: %s:%d is not usable as master %s "
		    "(%s); asking the Sentinels", a->host, a->port, s->master,
		    why);
	} else
		log_debug(1, "cache: sentinel: %s:%d is not usable as master "
		    "%s (%s)", a->host, a->port, s->master, why);
	pthread_mutex_unlock(&s->lk);
}

unsigned
sentinel_gen(struct sentinel *s)
{
	return __atomic_load_n(&s->gen, __ATOMIC_SEQ_CST);
}

const char *
sentinel_name(const struct sentinel *s)
{
	return s->master;
}

/* sentinel_listen - write a byte to fd whenever the master moves */
int
sentinel_listen(struct sentinel *s, int fd)
{
	int rc = -1;

	watch_start(s);
	pthread_mutex_lock(&s->lk);
	for (int i = 0; i < SENTINEL_LISTEN_MAX; i++)
		if (s->listen[i] == -1) {
			s->listen[i] = fd;
			rc = 0;
			break;
		}
	pthread_mutex_unlock(&s->lk);
	return rc;
}

void
sentinel_unlisten(struct sentinel *s, int fd)
{
	pthread_mutex_lock(&s->lk);
	for (int i = 0; i < SENTINEL_LISTEN_MAX; i++)
		if (s->listen[i] == fd)
			s->listen[i] = -1;
	pthread_mutex_unlock(&s->lk);
}

/* watch_wait - sleep ms or until stopped; 1 if stopping */
static int
watch_wait(struct sentinel *s, int ms)
{
	struct pollfd pfd = { s->stop[0], POLLIN, 0 };

	return poll(&pfd, 1, ms) > 0;
}

/* watch_message - act on one reply of the +switch-master subscription */
static void
watch_message(struct sentinel *s, const struct sentinel_addr *from,
    redisReply *r)
{
	struct sentinel_addr a;
	redisReply *p;
	int rc;

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(r->element[0]->str, "message") != 0)
		return;
	p = r->element[2];
	if (p->type != REDIS_REPLY_STRING)
		return;
	memset(&a, 0, sizeof(a));
	rc = sentinel_parse_switch(p->str, p->len, s->master, &a);
	if (rc == -1) {
		log_warnx("cache: sentinel %s:%d: ignoring a malformed %s "
		    "message (%zu bytes)", from->host, from->port,
		    SENTINEL_CHANNEL, (size_t)p->len);
		return;
	}
	if (rc == 1) {
		pthread_mutex_lock(&s->lk);
		set_master(s, &a, SENTINEL_CHANNEL);
		pthread_mutex_unlock(&s->lk);
	}
}

/* watch_session - ask, subscribe and read one Sentinel until it goes away
 * (0) or we stop (1) */
static int
watch_session(struct sentinel *s, const struct sentinel_addr *sa)
{
	struct sentinel_addr a;
	struct pollfd pfd[2];
	redisContext *ctx;
	redisReply *r;
	char why[160];
	void *rv;

	if ((ctx = sent_open(s, sa, why, sizeof(why))) == NULL) {
		log_debug(1, "cache: sentinel %s:%d: %s", sa->host, sa->port,
		    why);
		return 0;
	}
	r = redisCommand(ctx, "SUBSCRIBE %s", SENTINEL_CHANNEL);
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		log_debug(1, "cache: sentinel %s:%d: SUBSCRIBE: %.80s",
		    sa->host, sa->port, r ? r->str : ctx->errstr);
		if (r != NULL)
			freeReplyObject(r);
		redisFree(ctx);
		return 0;
	}
	freeReplyObject(r);
	log_debug(1, "cache: sentinel: watching %s on %s:%d",
	    SENTINEL_CHANNEL, sa->host, sa->port);
	/* A switch may have happened while nobody watched: a second
	 * connection asks (a subscribed one cannot). */
	pthread_mutex_lock(&s->lk);
	if (s->known) {
		pthread_mutex_unlock(&s->lk);
		redisContext *q = sent_open(s, sa, why, sizeof(why));
		memset(&a, 0, sizeof(a));
		if (q != NULL && ask_master(s, q, &a, why, sizeof(why)) == 0) {
			pthread_mutex_lock(&s->lk);
			set_master(s, &a, "asked a Sentinel");
			pthread_mutex_unlock(&s->lk);
		}
		if (q != NULL)
			redisFree(q);
	} else
		pthread_mutex_unlock(&s->lk);
	for (;;) {
		for (;;) {
			rv = NULL;
			if (redisGetReplyFromReader(ctx, &rv) != REDIS_OK) {
				redisFree(ctx);
				return 0;
			}
			if (rv == NULL)
				break;
			watch_message(s, sa, rv);
			freeReplyObject(rv);
		}
		pfd[0].fd = s->stop[0];
		pfd[0].events = POLLIN;
		pfd[1].fd = ctx->fd;
		pfd[1].events = POLLIN;
		pfd[0].revents = pfd[1].revents = 0;
		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			redisFree(ctx);
			return 0;
		}
		if (pfd[0].revents) {
			redisFree(ctx);
			return 1;
		}
		if (pfd[1].revents && redisBufferRead(ctx) != REDIS_OK) {
			log_debug(1, "cache: sentinel %s:%d: %s", sa->host,
			    sa->port, ctx->errstr[0] ? ctx->errstr :
			    "connection lost");
			redisFree(ctx);
			return 0;
		}
	}
}

/* watch_main - the watcher thread: one Sentinel after the other */
static void *
watch_main(void *arg)
{
	struct sentinel *s = arg;
	sigset_t set;
	int i = 0, pause;

	/* A Sentinel that closed the connection must not kill us. */
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	pause = (int)(s->tv.tv_sec * 1000 + s->tv.tv_usec / 1000);
	for (;;) {
		if (watch_session(s, &s->list[i]))
			break;
		i = (i + 1) % s->n;
		if (watch_wait(s, pause))
			break;
	}
	return NULL;
}

/* watch_start - start the watcher once */
static void
watch_start(struct sentinel *s)
{
	int rc;

	pthread_mutex_lock(&s->lk);
	if (!s->watching) {
		if ((rc = pthread_create(&s->tid, NULL, watch_main, s)) == 0)
			s->watching = 1;
		else
			log_warnx("cache: sentinel: no watcher thread (%s); "
			    "a switch is noticed when the master fails",
			    strerror(rc));
	}
	pthread_mutex_unlock(&s->lk);
}

/* sentinel_new - a Sentinel list for one master name; NULL with err set */
struct sentinel *
sentinel_new(const struct sentinel_opts *o, struct kmerr *err)
{
	struct sentinel *s;
	int ms;

	if (o == NULL || o->naddrs < 1 || o->naddrs > SENTINEL_MAX ||
	    o->master == NULL || *o->master == '\0' ||
	    strlen(o->master) > 200 || strpbrk(o->master, " \r\n") != NULL ||
	    o->timeout_ms < 0) {
		kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT, "sentinel: need "
		    "1..%d Sentinels, a master name without spaces and a "
		    "timeout >= 0", SENTINEL_MAX);
		return NULL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		goto nomem;
	for (int i = 0; i < o->naddrs; i++)
		if (hostport_parse(o->addrs[i], s->list[i].host,
		    sizeof(s->list[i].host), &s->list[i].port) == -1) {
			kmerr_set(err, KM_PERMFAIL, KMERR_BADINPUT,
			    "sentinel: bad address \"%.100s\" (host:port)",
			    o->addrs[i]);
			free(s);
			return NULL;
		}
	s->n = o->naddrs;
	s->refs = 1;
	s->stop[0] = s->stop[1] = -1;
	for (int i = 0; i < SENTINEL_LISTEN_MAX; i++)
		s->listen[i] = -1;
	ms = o->timeout_ms ? o->timeout_ms : SENTINEL_DEFAULT_TIMEOUT_MS;
	s->tv.tv_sec = ms / 1000;
	s->tv.tv_usec = (ms % 1000) * 1000;
	if ((s->master = strdup(o->master)) == NULL)
		goto fail;
	if (o->password != NULL &&
	    (s->password = secmem_strdup(o->password)) == NULL)
		goto fail;
	if (pipe2(s->stop, O_CLOEXEC) == -1)
		goto fail;
	pthread_mutex_init(&s->lk, NULL);
	pthread_mutex_init(&s->ask, NULL);
	return s;
fail:
	if (s->stop[0] != -1) {
		close(s->stop[0]);
		close(s->stop[1]);
	}
	free(s->master);
	secmem_strfree(s->password);
	free(s);
nomem:
	kmerr_set(err, KM_NOMEM, KMERR_NONE, "out of memory");
	return NULL;
}

struct sentinel *
sentinel_ref(struct sentinel *s)
{
	if (s != NULL) {
		pthread_mutex_lock(&s->lk);
		s->refs++;
		pthread_mutex_unlock(&s->lk);
	}
	return s;
}

/* sentinel_unref - drop a reference; the last stops the watcher */
struct sentinel *
sentinel_unref(struct sentinel *s)
{
	ssize_t n;
	int last;

	if (s == NULL)
		return NULL;
	pthread_mutex_lock(&s->lk);
	last = --s->refs == 0;
	pthread_mutex_unlock(&s->lk);
	if (!last)
		return NULL;
	if (s->watching) {
		do
			n = write(s->stop[1], "x", 1);
		while (n == -1 && errno == EINTR);
		pthread_join(s->tid, NULL);
	}
	close(s->stop[0]);
	close(s->stop[1]);
	pthread_mutex_destroy(&s->lk);
	pthread_mutex_destroy(&s->ask);
	free(s->master);
	secmem_strfree(s->password);
	free(s);
	return NULL;
}

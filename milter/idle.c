/*
 * idle.c - end connections that stall longer than milter.timeout (see idle.h).
 */
#include <sys/socket.h>
#include <pthread.h>
#include <time.h>

#include "clock.h"
#include "idle.h"
#include "log.h"
#include "session.h"

static pthread_mutex_t	 idle_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t	 idle_once = PTHREAD_ONCE_INIT;
static struct session	*idle_head;
static int		 idle_n;

/* reap_one - end one stalled session (list locked) */
static void
reap_one(struct session *s, long idle_ms)
{
	s->idle_reaped = 1;
	log_warnx("milter: closing the connection from %s [%s]: no command for %ld s "
	    "(milter.timeout %d)", *s->client_host ? s->client_host : "?",
	    *s->client_addr ? s->client_addr : "?", idle_ms / 1000, s->conf->timeout);
	if (shutdown(s->idle_fd, SHUT_RDWR) != 0)
		log_warn("milter: shutdown of a stalled connection");
}

/* reap - one pass over the list */
static void
reap(void)
{
	long now = clock_ms();

	pthread_mutex_lock(&idle_mtx);
	for (struct session *s = idle_head; s != NULL; s = s->idle_next) {
		long last = __atomic_load_n(&s->idle_last, __ATOMIC_SEQ_CST);

		if (s->idle_fd < 0 || s->idle_reaped ||
		    __atomic_load_n(&s->idle_busy, __ATOMIC_SEQ_CST))
			continue;
		if (now - last >= s->conf->timeout * 1000L)
			reap_one(s, now - last);
	}
	pthread_mutex_unlock(&idle_mtx);
}

/* reaper - the thread: a pass every quarter second */
static void *
reaper(void *arg)
{
	struct timespec tick = { 0, 250 * 1000000L };

	(void)arg;
	for (;;) {
		nanosleep(&tick, NULL);
		reap();
	}
	return NULL;
}

/* start - start the reaper thread (once) */
static void
start(void)
{
	pthread_t tid;
	pthread_attr_t attr;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&tid, &attr, reaper, NULL) != 0)
		log_warn("milter: cannot start the idle-session reaper: "
		    "milter.timeout will not end stalled connections");
	pthread_attr_destroy(&attr);
}

/* idle_add - watch a new session whose MTA socket is fd (-1: unknown) */
void
idle_add(struct session *s, int fd)
{
	pthread_once(&idle_once, start);
	s->idle_fd = fd;
	s->idle_last = clock_ms();
	s->idle_busy = 0;
	s->idle_reaped = 0;
	pthread_mutex_lock(&idle_mtx);
	s->idle_prev = NULL;
	s->idle_next = idle_head;
	if (idle_head != NULL)
		idle_head->idle_prev = s;
	idle_head = s;
	idle_n++;
	pthread_mutex_unlock(&idle_mtx);
}

/* idle_remove - stop watching a session (before it is freed) */
void
idle_remove(struct session *s)
{
	pthread_mutex_lock(&idle_mtx);
	if (s->idle_prev != NULL)
		s->idle_prev->idle_next = s->idle_next;
	else if (idle_head == s)
		idle_head = s->idle_next;
	else {
		pthread_mutex_unlock(&idle_mtx);
		return;		/* never added */
	}
	if (s->idle_next != NULL)
		s->idle_next->idle_prev = s->idle_prev;
	s->idle_prev = s->idle_next = NULL;
	idle_n--;
	pthread_mutex_unlock(&idle_mtx);
}

/* idle_enter - a callback for the session starts: never reaped meanwhile */
void
idle_enter(struct session *s)
{
	__atomic_store_n(&s->idle_busy, 1, __ATOMIC_SEQ_CST);
}

/* idle_leave - a callback ends: the idle time counts from now */
void
idle_leave(struct session *s)
{
	__atomic_store_n(&s->idle_last, clock_ms(), __ATOMIC_SEQ_CST);
	__atomic_store_n(&s->idle_busy, 0, __ATOMIC_SEQ_CST);
}

/* idle_count - sessions watched now */
int
idle_count(void)
{
	int n;

	pthread_mutex_lock(&idle_mtx);
	n = idle_n;
	pthread_mutex_unlock(&idle_mtx);
	return n;
}

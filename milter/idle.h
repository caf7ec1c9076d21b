#ifndef KMILTER_MILTER_IDLE_H
#define KMILTER_MILTER_IDLE_H
/*
 * NAME
 *	idle - end connections that stall longer than milter.timeout
 * SUMMARY
 *	idle_add(), idle_remove(), idle_enter(), idle_leave()
 * DESCRIPTION
 *	libmilter's own timeout (smfi_settimeout) bounds a read that has
 *	begun, but a connection that simply sends nothing more between two
 *	commands is, with the pool of workers the packaged libmilter is
 *	built with, looked at only every 600 seconds: a client could hold
 *	sessions (and their messages) for far longer than milter.timeout.
 *	This module keeps a list of open sessions with the time of their last
 *	command.  A reaper thread, started with the first session, looks
 *	every quarter second; a session idle for its configuration's milter.timeout
 *	seconds, and not inside a callback, has its socket shut down (never
 *	closed: libmilter owns it), once, with one warning line.  libmilter
 *	then reads end of file and calls abort and close as for any client
 *	that went away, which frees the session and its budget.
 * OWNERSHIP
 *	Sessions are borrowed: idle_remove() must be called before a session
 *	is freed, and the socket must stay open until then.
 * ERRORS
 *	None.  A session added with fd -1 is never ended here.
 * THREADS
 *	Thread-safe: one mutex over the list; idle_enter()/idle_leave() are
 *	atomic stores by the session's own thread.
 */
struct session;

void	idle_add(struct session *, int fd);
void	idle_remove(struct session *);
void	idle_enter(struct session *);
void	idle_leave(struct session *);
int	idle_count(void);

#endif

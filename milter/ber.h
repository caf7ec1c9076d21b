#ifndef KMILTER_MILTER_BER_H
#define KMILTER_MILTER_BER_H
/*
 * NAME
 *	ber - the BER/DER reader under cms_stream.c
 * SUMMARY
 *	struct cms_stream, struct buf, struct tlv; ber_init(), ber_rewind(),
 *	ber_detect(), ber_fail(), ber_buf_add(), ber_buf_free(),
 *	ber_ensure(), ber_take(), ber_tlv_read(), ber_expect(), ber_enter(),
 *	ber_more(), ber_leave(), ber_capture(), ber_capture_rest(),
 *	ber_open_value(), ber_take_field()
 * DESCRIPTION
 *	Only cms_stream.c uses this; it knows nothing of CMS.  The input
 *	(cs->in, rewound by ber_rewind()) is decoded, from base64 (white
 *	space ignored, strict otherwise) or raw, into a window of at most
 *	WIN octets; cs->pos counts the octets consumed.  ber_detect() reads
 *	the first piece and says whether it is raw DER (a SEQUENCE of long
 *	or indefinite length) or base64.  ber_tlv_read() reads one header and
 *	checks its length against the innermost open value of definite
 *	length; ber_enter() opens a value (at most MAXDEPTH deep),
 *	ber_more() says whether another one follows inside it, ber_leave()
 *	closes it (its length matched, or its end-of-contents read).
 *	ber_take() never reads past the end of the open value.
 *	ber_capture() keeps a whole value as it came (BER, headers and all)
 *	in a struct buf; the kept fields are bounded by SMALL_MAX.
 *	ber_init() must run once before the first stream (pthread_once).
 * OWNERSHIP
 *	A struct buf owns its bytes: ber_buf_free() releases them and zeroes
 *	the buf.  cs->in is borrowed.
 * ERRORS
 *	Functions returning int give 0 (ber_more(), ber_ensure(): 1 for yes,
 *	0 for no) or -1; ber_take() the count or -1.  On -1 the first error
 *	is in cs->err (ber_fail(): KM_PROTO with reason KMERR_BADINPUT for
 *	malformed input, KM_TEMPFAIL when the input could not be read,
 *	KM_NOMEM) and cs->bad is set: later reads fail at once.
 * THREADS
 *	One stream per thread.
 */
#include <stddef.h>
#include <stdint.h>

#include <openssl/bio.h>

#include "kmerr.h"
#include "log.h"

#define WIN		16384		/* decoded bytes held at most */
#define RAW		16384		/* input bytes read at a time */
#define MAXDEPTH	24		/* BER nesting followed */
#define SMALL_MAX	(1024 * 1024)	/* all the fields but the content */
#define INDEF		UINT64_MAX	/* end of an indefinite-length value */

/* Universal tags and classes (X.690) */
#define C_UNIV	0
#define C_CTX	2
#define T_INT	2
#define T_OCTET	4
#define T_OID	6
#define T_SEQ	16
#define T_SET	17

/* A kept field (or the re-encoded ContentInfo). */
struct buf {
	unsigned char	*p;
	size_t		 len, cap;
};

/* One TLV header. */
struct tlv {
	int		 cls, cons, tag, indef;
	uint64_t	 len;
	unsigned char	 h[10];
	size_t		 hl;
};

/* The reader's state, then what cms_stream.c keeps of the structure. */
struct cms_stream {
	BIO		*in;		/* borrowed */
	int		 b64;		/* decode base64 (else raw) */
	unsigned char	 raw[RAW];	/* input not yet decoded */
	size_t		 rawpos, rawlen;
	int		 ineof;
	unsigned int	 acc;		/* base64: bits of the group */
	int		 nq, pad, padded;
	unsigned char	 win[WIN];	/* decoded, not consumed: [wlo, whi) */
	size_t		 wlo, whi;
	uint64_t	 pos;		/* decoded octets consumed */
	uint64_t	 end[MAXDEPTH];	/* open values: where each ends */
	int		 depth;
	int		 bad;
	struct kmerr	 err;
	int		 cprim, cdone;	/* the encrypted content being read */
	uint64_t	 cleft, cgot, ctlen;
	int		 auth;
	int		 sd;		/* SignedData (else enveloped) */
	struct buf	 der;		/* the ContentInfo, content detached */
	BIO		*content;
};

void		 ber_init(void);
int		 ber_rewind(struct cms_stream *);
int		 ber_detect(struct cms_stream *);
int		 ber_fail(struct cms_stream *, enum km_status, const char *, ...)
		    KM_PRINTF(3, 4);
int		 ber_buf_add(struct cms_stream *, struct buf *, const void *, size_t);
void		 ber_buf_free(struct buf *);
int		 ber_ensure(struct cms_stream *, size_t);
int64_t		 ber_take(struct cms_stream *, unsigned char *dst, size_t n, int exact);
int		 ber_tlv_read(struct cms_stream *, struct tlv *);
int		 ber_expect(struct cms_stream *, const struct tlv *, int cls, int cons,
		    int tag, const char *what);
int		 ber_enter(struct cms_stream *, const struct tlv *);
int		 ber_more(struct cms_stream *);
int		 ber_leave(struct cms_stream *);
int		 ber_capture(struct cms_stream *, struct buf *);
int		 ber_capture_rest(struct cms_stream *, const struct tlv *, struct buf *);
int		 ber_open_value(struct cms_stream *, int cls, int tag, const char *what);
int		 ber_take_field(struct cms_stream *, struct buf *, int cls, int cons,
		    int tag, const char *what);

#endif

/*
 * fuzz_cms_stream.c - libFuzzer target for the stream reader of large
 * enveloped messages (milter/cms_stream.c, smime_envelope_open_stream())
 *
 * Build and run (from the repository root):
 *   make FUZZ=1 build-fuzz/fuzz/fuzz_cms_stream
 *   build-fuzz/fuzz/fuzz_cms_stream -max_total_time=30 /tmp/cs-new \
 *       tests/fuzz/corpus/cms_stream
 *
 * Each input is read as raw DER, as base64 and as the reader guesses
 * (CMS_IN_AUTO): the whole structure is walked, the content BIO read to
 * its end twice, and through smime_envelope_open_stream() the
 * RecipientInfos are matched and a decryption tried with the key the seed
 * corpus is encrypted to (a throwaway key made for this target only), so
 * mutations reach OpenSSL's content decryption through the content BIO;
 * smime_verify_stream() checks it as signed-data (seeds signed with the
 * same key), its content through the same BIO.
 * Nothing may crash, hang or leak, and the OpenSSL error queue must be
 * empty afterwards.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "cms_stream.h"
#include "smime.h"
#include "smime_verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* The seeds' recipient: a throwaway RSA key, for this fuzz target only. */
static const char key_pem[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDDXfVjP3HZBNbO\n"
	"8WeODAZRRtQqTJ7XhkJ0dQUs0uHDTmRqDdldO/pWrH5KDtjiZ8WCrsZmXFGJqjfg\n"
	"CCI3z+yY+2rWffCrOk2QtAGZtOKv22F1R3jItyEVKVgnhhMtsJicmQ1ikwL5QjJg\n"
	"qXuvPiLfAdlseObstvCeiWCxBWnhB19j0wEJ64q1X6V1qsYSKG7gFJVo0cmCIq5e\n"
	"PX7s6bHRbs1mtaduhUMyxELD9+5ffb6sqAX4RxmKn1tM135lb1hkis/ocVb1GXeo\n"
	"+EwOww+nO7xOwboAOBtPRyw5fMDFVodTz+H6WIXtPQysgC5yyR5i3mXPY/uF2SVd\n"
	"OUCPlgP/AgMBAAECggEABPsUwf0rQwv8tABIkmuxD4poPKnWajU/OtEu8BfHmgnv\n"
	"b8VpnhcPiKfTfReIJQGInLklpWoYyWiLDc2h8wf8hrabizC2cuRvd3nMs/qoxYX+\n"
	"I+t4uK6ei80RinRrHGuXqx+7InZlXth2s1XZfubCedVbZzNlORy9jAqBlLxyw2y4\n"
	"GlNbYNvKTpwTGMJD1/KAvi2B4/qFFESjUmRIi7JGYoI6L7Kj9Jd7OXioAXHUcKa+\n"
	"v5qqWpWewLMY5iV1/4s8LLt8xfise5HyF06C7hxFnum3wILqwT0tjiZVWCd72A74\n"
	"PIm4UCSRZovl+7UGq4Z6O2SFWMu2ztAS5D4dPatHmQKBgQDtwOMGGkzstQFRayyy\n"
	"mnnelan33Co1BNWuM0zc8iqPAMcmhano1ooGQtfnr0hIBzMFIMQWQ7GiYIJWWNHK\n"
	"oX8WGAPmzt1y4T7+qCoT++bepYK08q/zrhin2LYTr6+8St6VupzDzlbIFie0KE/Y\n"
	"J5R3VQYeyc6Z4CR/UrIGwJ44mQKBgQDSXE+BWdL99MSEldA8WApjWEuao/USzFpe\n"
	"KWrOq71cj1d9UVRSAP7q+S+E+F2/WQEK9Ao/PN/TgV4sKjtBQrCW4TL/c0tZiDUG\n"
	"VSlLt8RoSisFvcU6QbAYBN8PA+PY2y1Os70JM8MyZSv95dz69/XyiIhqKYDpPXw1\n"
	"OZcps+wIVwKBgQDIIE24rFjGAtJ6M0mriUY+KyKoBUXt3QT0ni/750gVmWUJMwfD\n"
	"exsxjABq/+tK3ex/S4Zi61ZRxQTRI/BrrSbpdQuLs+NJuPoqp2jL64T5Mr5kC8g5\n"
	"yPjuCAezaHX3e9oClNMyKrR3tdZz2l7jJuXc0M/XCK4EblyqY/SApJBKOQKBgF6C\n"
	"YqX2uTins3Lt6/RwiZpAnRcI+p5LeX48lWPs/NKNA/2lgICnOeBPu+29uECzuCg3\n"
	"pDLtIpJf2PN2tdCIKdZfrw3dusiqzUffEwKVuYQxbkrSC740rOzdo2mXkdJoBl8J\n"
	"mbB8tQH7OlyD3VhT9wfUF5W6t9QSb69qBGQUFcNZAoGANVwEzPybUM9IqkKAs11v\n"
	"kq+EPOMaB2e76lJoCYc6Zw2C81P4D9odrqqJdQ//+XNZcgJZLfpxpbvwDrfiXVPj\n"
	"RObpKuniCyXJXi9fKx9tKiOdKFSKY/YbdH2AP6sHxPwYL4BhPr0HHMrdesJX52xL\n"
	"XVppraEd8sES6vFKtOaD6Vw=\n"
	"-----END PRIVATE KEY-----\n";
static const char cert_pem[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIDDzCCAfegAwIBAgIUA+62BWui5iLdYdSzmMsqUoxyTIAwDQYJKoZIhvcNAQEL\n"
	"BQAwFjEUMBIGA1UEAwwLZnV6ei1zdHJlYW0wIBcNMjYxMjAxMTAzOTQ5WhgPMjEy\n"
	"NjExMDcxMDM5NDlaMBYxFDASBgNVBAMMC2Z1enotc3RyZWFtMIIBIjANBgkqhkiG\n"
	"9w0BAQEFAAOCAQ8AMIIBCgKCAQEAw131Yz9x2QTWzvFnjgwGUUbUKkye14ZCdHUF\n"
	"LNLhw05kag3ZXTv6Vqx+Sg7Y4mfFgq7GZlxRiao34AgiN8/smPtq1n3wqzpNkLQB\n"
	"mbTir9thdUd4yLchFSlYJ4YTLbCYnJkNYpMC+UIyYKl7rz4i3wHZbHjm7Lbwnolg\n"
	"sQVp4QdfY9MBCeuKtV+ldarGEihu4BSVaNHJgiKuXj1+7Omx0W7NZrWnboVDMsRC\n"
	"w/fuX32+rKgF+EcZip9bTNd+ZW9YZIrP6HFW9Rl3qPhMDsMPpzu8TsG6ADgbT0cs\n"
	"OXzAxVaHU8/h+liF7T0MrIAucskeYt5lz2P7hdklXTlAj5YD/wIDAQABo1MwUTAd\n"
	"BgNVHQ4EFgQU+jsOx3eNgjGAt8Okv6oi9kL6DNcwHwYDVR0jBBgwFoAU+jsOx3eN\n"
	"gjGAt8Okv6oi9kL6DNcwDwYDVR0TAQH/BAUwAwEB/zANBgkqhkiG9w0BAQsFAAOC\n"
	"AQEAvjOxza6aHcUbH4pRakXHIU0jPedMd/LVYkKpgfKw4oXiGn20SGoRoiLf/1pu\n"
	"loudLSIV4qxUusaEHt9CcSfzdgxJlrZshgViHdzAR34BKYMziDqqIF4ghQCXQph4\n"
	"acw7fHcWSVDJv42pdFSTL0wqggBIgoNC55QXfQZtooHjzb3NFatgYGAzJxBc+nX8\n"
	"Dw1lngyOyaGpimEXi6Uap7lf2xZcBda5U72b5fxbv1I8MiDISoF76Fc+K4ULfpdV\n"
	"TTC1GdbsSYeAnG47phH0jZLrUF7BR4WFIfilH2xVRT0SUoTubQOqyfNwuz4bZ85g\n"
	"zvYTt1+D43659LIrOPm0R39Z1g==\n"
	"-----END CERTIFICATE-----\n";

static X509 *cert;
static EVP_PKEY *key;
static X509_STORE *store;

/* setup - the seeds' recipient certificate and key */
static void
setup(void)
{
	BIO *b;

	if (cert != NULL)
		return;
	b = BIO_new_mem_buf(key_pem, -1);
	key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	b = BIO_new_mem_buf(cert_pem, -1);
	cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	store = X509_STORE_new();
	if (cert == NULL || key == NULL || store == NULL ||
	    X509_STORE_add_cert(store, cert) != 1)
		abort();
}

/* walk - the reader alone: open, then read the content twice */
static void
walk(BIO *in, enum cms_in_mode mode)
{
	struct cms_stream *cs = NULL;
	struct kmerr err;
	char buf[1000];
	int n;

	if (cms_stream_open(in, mode, &cs, &err) != KM_OK)
		return;
	for (int pass = 0; pass < 2; pass++) {
		BIO *c = cms_stream_content(cs, &err);
		uint64_t total = 0;

		if (c == NULL)
			abort();	/* it read once: it must read again */
		while ((n = BIO_read(c, buf, sizeof(buf))) > 0)
			total += (uint64_t)n;
		if (n < 0 || total != cms_stream_content_length(cs))
			abort();
	}
	cms_stream_free(cs);
}

/* one - the reader and the envelope over one input in one mode */
static void
one(const uint8_t *data, size_t size, enum cms_in_mode mode)
{
	struct smime_keypair kp = { cert, key };
	struct smime_envelope *env = NULL;
	BIO *in = BIO_new_mem_buf(data, (int)size);
	BIO *out = BIO_new(BIO_s_mem());
	struct smime_verify_result res;
	struct kmerr err;
	char cbuf[64];
	int m;

	if (in == NULL || out == NULL)
		abort();
	walk(in, mode);
	if (smime_envelope_open_stream(in, mode, &env, &err) == KM_OK) {
		for (size_t i = 0; i < smime_envelope_count(env); i++)
			if (smime_envelope_rid(env, i) == NULL)
				abort();
		(void)smime_envelope_cipher(env, cbuf, sizeof(cbuf));
		(void)smime_envelope_match(env, cert);
		(void)smime_envelope_decrypt(env, &kp, 1, out, &m, &err);
	}
	smime_envelope_free(env);
	(void)BIO_reset(out);
	(void)smime_verify_stream(in, mode, store, NULL, "fuzz@example.com", &res, out,
	    NULL, &err);
	BIO_free(out);
	BIO_free(in);
	if (ERR_peek_error() != 0)
		abort();
}

/* LLVMFuzzerTestOneInput - one input, copied so overreads are caught */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1);

	setup();
	if (buf == NULL || size > 1000000)
		goto out;
	memcpy(buf, data, size);
	one(buf, size, CMS_IN_AUTO);
	one(buf, size, (size & 1) ? CMS_IN_DER : CMS_IN_BASE64);
out:
	free(buf);
	return 0;
}

/*
 * bench-accounts.c - creates many xmppd accounts quickly, for benchmarks.
 *
 *   bench-accounts --spool DIR --host HOST --count N [--prefix u] [--first 0]
 *                  [--password PW] [--iterations 4096] [--indexed-passwords]
 *
 * Run it while xmppd is stopped (it writes the LMDB store in DIR directly).
 * The first account is created with account_create(), exactly as
 * `xmppctl register` creates one; every other account gets a byte-for-byte
 * copy of its record, in transactions of 20,000. So all the accounts share
 * one salt and one password: a load generator then derives the SCRAM keys
 * once instead of once per account, and creating 100,000 accounts takes a
 * second instead of the minutes that 100,000 PBKDF2 runs and durable
 * commits through the control socket take. What the server does at login
 * is the same whatever the salt.
 *
 * The copy depends only on the key layout (host NUL node NUL) documented
 * in src/auth/account.h, not on the record format.
 *
 * --indexed-passwords gives account PREFIX<i> the password PW<i>, which is
 * what tsung logs in with (it appends the user number to both): every
 * account is then made by account_create(), one PBKDF2 pair each.
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/account.h"
#include "store/store.h"

#define TABLE	"accounts"
#define BATCH	20000

static int
make_key(struct store_key *k, const char *host, const char *node)
{
	store_key_init(k);
	if (store_key_add(k, host) < 0 || store_key_add(k, node) < 0)
		return -1;
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "spool", required_argument, NULL, 's' },
		{ "host", required_argument, NULL, 'H' },
		{ "count", required_argument, NULL, 'n' },
		{ "first", required_argument, NULL, 'f' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "password", required_argument, NULL, 'w' },
		{ "iterations", required_argument, NULL, 'i' },
		{ "indexed-passwords", no_argument, NULL, 'x' },
		{ NULL, 0, NULL, 0 },
	};
	const char *spool = NULL, *host = NULL, *prefix = "u", *password = "bench-pw", *err;
	long count = 0, first = 0, i, made = 0;
	unsigned long iterations = 4096;
	struct store_key k;
	store_txn *txn;
	const void *val;
	size_t vlen;
	unsigned char *rec;
	char node[256], pw[256];
	int ch, rc, indexed = 0;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 's': spool = optarg; break;
		case 'H': host = optarg; break;
		case 'n': count = atol(optarg); break;
		case 'f': first = atol(optarg); break;
		case 'p': prefix = optarg; break;
		case 'w': password = optarg; break;
		case 'i': iterations = strtoul(optarg, NULL, 10); break;
		case 'x': indexed = 1; break;
		default: goto usage;
		}
	}
	if (spool == NULL || host == NULL || count < 1 || first < 0 || optind != argc)
		goto usage;
	if (store_open(spool, 0, &err) < 0) {
		fprintf(stderr, "bench-accounts: %s: %s\n", spool, err);
		return 1;
	}
	account_set_iterations((uint32_t)iterations);

	if (indexed) {
		for (i = 0; i < count; i++) {
			snprintf(node, sizeof(node), "%s%ld", prefix, first + i);
			snprintf(pw, sizeof(pw), "%s%ld", password, first + i);
			if (account_create(node, host, pw, &err) < 0 && strcmp(err, "exists") != 0) {
				fprintf(stderr, "bench-accounts: cannot create %s@%s: %s\n", node, host,
				    err);
				goto fail;
			}
			made++;
		}
		store_close();
		printf("%ld accounts %s%ld..%s%ld@%s with passwords %s<i>\n", made, prefix, first,
		    prefix, first + count - 1, host, password);
		return 0;
	}

	/* The template: a real account, or the existing one if its password
	 * is the one asked for (a second run over the same spool). */
	snprintf(node, sizeof(node), "%s%ld", prefix, first);
	if (account_create(node, host, password, &err) < 0) {
		if (strcmp(err, "exists") != 0 || account_check_password(node, host, password) != 1) {
			fprintf(stderr, "bench-accounts: cannot create %s@%s: %s\n", node, host,
			    strcmp(err, "exists") == 0 ? "exists with another password" : err);
			goto fail;
		}
	}
	if (make_key(&k, host, node) < 0 || (txn = store_begin(0)) == NULL)
		goto fail;
	if (store_get(txn, TABLE, k.buf, k.len, &val, &vlen) != 0) {
		store_abort(txn);
		fprintf(stderr, "bench-accounts: %s@%s not found after creating it\n", node, host);
		goto fail;
	}
	if ((rec = malloc(vlen)) == NULL) {
		store_abort(txn);
		goto fail;
	}
	memcpy(rec, val, vlen);
	store_abort(txn);

	for (i = 1; i < count; i += BATCH) {
		long j, end = i + BATCH < count ? i + BATCH : count;

		if ((txn = store_begin(1)) == NULL)
			goto fail_rec;
		for (j = i; j < end; j++) {
			snprintf(node, sizeof(node), "%s%ld", prefix, first + j);
			if (make_key(&k, host, node) < 0 ||
			    store_put(txn, TABLE, k.buf, k.len, rec, vlen) < 0) {
				store_abort(txn);
				goto fail_rec;
			}
		}
		if (store_commit(txn) < 0)
			goto fail_rec;
		made += end - i;
	}
	free(rec);
	/* Read one copy back through the server's own code. */
	snprintf(node, sizeof(node), "%s%ld", prefix, first + count - 1);
	rc = account_check_password(node, host, password);
	store_close();
	if (rc != 1) {
		fprintf(stderr, "bench-accounts: %s@%s does not check out (%d)\n", node, host, rc);
		return 1;
	}
	printf("%ld accounts %s%ld..%s%ld@%s\n", made + 1, prefix, first, prefix,
	    first + count - 1, host);
	return 0;

fail_rec:
	free(rec);
fail:
	fprintf(stderr, "bench-accounts: failed after %ld accounts\n", made);
	store_close();
	return 1;
usage:
	fprintf(stderr, "usage: bench-accounts --spool DIR --host HOST --count N [--prefix u] "
	    "[--first 0] [--password PW] [--iterations 4096] [--indexed-passwords]\n");
	return 2;
}

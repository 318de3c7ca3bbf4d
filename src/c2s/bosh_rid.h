/*
 * bosh_rid.h - where a BOSH request's rid falls in its session's window
 * (XEP-0124 14): a pure function, for bosh.c and its unit test.
 */
#ifndef XMPPD_C2S_BOSH_RID_H
#define XMPPD_C2S_BOSH_RID_H

#include <stdint.h>

enum bosh_rid {
	BOSH_RID_NEXT,      /* the one to process now */
	BOSH_RID_EARLY,     /* after a gap, within the window: waits (14.2) */
	BOSH_RID_REPEAT,    /* one of the last 'requests' answered: the same answer (14.3) */
	BOSH_RID_OLD,       /* before those: refused */
	BOSH_RID_BEYOND,    /* 'requests' or more ahead: refused (14.3) */
};

/* rid against next (the rid the session processes next) and the
 * session's 'requests' (at least 1). */
enum bosh_rid bosh_rid_classify(uint64_t rid, uint64_t next, unsigned requests);

#endif

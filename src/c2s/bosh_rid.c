/*
 * bosh_rid.c - the rid window of a BOSH session (bosh_rid.h).
 *
 * XEP-0124 14.2: the client may have up to 'requests' requests open, so a
 * rid up to requests - 1 past the next one expected is legitimate and
 * waits for those before it; 14.3: a rid the client repeats (it lost the
 * answer) is answered again if it is one of the last 'requests' answered;
 * anything further ahead, or older, ends the session (item-not-found).
 */
#include "config.h"

#include "c2s/bosh_rid.h"

enum bosh_rid
bosh_rid_classify(uint64_t rid, uint64_t next, unsigned requests)
{
	if (requests == 0)
		requests = 1;
	if (rid == next)
		return BOSH_RID_NEXT;
	if (rid > next)
		return rid - next < requests ? BOSH_RID_EARLY : BOSH_RID_BEYOND;
	/* rid < next: next - 1 is the last answered. */
	return next - rid <= requests ? BOSH_RID_REPEAT : BOSH_RID_OLD;
}

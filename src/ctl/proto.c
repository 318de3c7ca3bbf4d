/*
 * proto.c - the control socket's request format, shared by both ends.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"

int
ctl_parse_request(const char *buf, size_t len, char ***args_r, char **mem_r)
{
	char **args;
	char *mem;
	size_t pos = 0, mpos = 0;
	int n = 0, r = -1;

	*args_r = NULL;
	*mem_r = NULL;
	if (len > CTL_MAX_REQUEST)
		return -1;
	args = calloc(CTL_MAX_ARGS + 1, sizeof(*args));
	mem = malloc(len + 1);
	if (args == NULL || mem == NULL)
		goto out;
	for (;;) {
		size_t alen = 0, digits = 0;

		if (pos == len) {
			r = 0;              /* more to come */
			goto out;
		}
		if (buf[pos] == '\n')
			break;
		if (n == CTL_MAX_ARGS)
			goto out;
		/* "<len>:<bytes>," */
		while (pos < len && buf[pos] >= '0' && buf[pos] <= '9' && digits < 6) {
			alen = alen * 10 + (size_t)(buf[pos++] - '0');
			digits++;
		}
		if (pos == len) {
			r = 0;
			goto out;
		}
		if (digits == 0 || buf[pos] != ':')
			goto out;
		if (len - pos - 1 < alen + 1) {
			r = 0;
			goto out;
		}
		if (buf[pos + 1 + alen] != ',')
			goto out;
		memcpy(mem + mpos, buf + pos + 1, alen);
		/* A NUL inside an argument would cut it short silently. */
		if (memchr(mem + mpos, '\0', alen) != NULL)
			goto out;
		mem[mpos + alen] = '\0';
		args[n++] = mem + mpos;
		mpos += alen + 1;
		pos += alen + 2;
	}
	if (n == 0)
		goto out;
	*args_r = args;
	*mem_r = mem;
	return n;
out:
	free(args);
	free(mem);
	return r;
}

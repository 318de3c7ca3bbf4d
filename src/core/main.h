/*
 * main.h - what the daemon's main thread offers the control socket.
 */
#ifndef XMPPD_MAIN_H
#define XMPPD_MAIN_H

#include <stddef.h>
#include <time.h>

/* Reloads the configuration file and certificates (SIGHUP, xmppctl
 * reload). Returns 0, or -1 with the reason in errbuf; the running
 * configuration is then unchanged. Main thread only. */
int main_reload(char *errbuf, size_t errlen);
/* Starts an orderly shutdown (SIGTERM, xmppctl stop). */
void main_request_stop(void);

#endif

/*
 * websocket.h - the WebSocket opening handshake (RFC 6455 4.2) on the HTTP
 * listener; the framing after it is stream/ws.c's.
 */
#ifndef XMPPD_HTTP_WEBSOCKET_H
#define XMPPD_HTTP_WEBSOCKET_H

struct conn;
struct http_req;

/*
 * Checks r as a WebSocket opening handshake for subprotocol (RFC 6455
 * 4.2.1, 1.9; the Origin against websocket_origins) and answers it: 101
 * and the connection (taken from HTTP: the caller conn_moves it at once),
 * or an error status (405, 426, 400, 403) and NULL.
 */
struct conn *http_ws_accept(struct http_req *r, const char *subprotocol);

/* Sec-WebSocket-Accept for key (RFC 6455 4.2.2 5.4): base64 of the SHA-1
 * of key and the protocol's GUID; out holds 29 bytes. 0, or -1 if key is
 * not 16 bytes in base64. */
int http_ws_accept_key(const char *key, char out[29]);

#endif

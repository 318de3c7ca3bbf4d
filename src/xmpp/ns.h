/*
 * ns.h - XML namespaces of the protocols xmppd speaks.
 */
#ifndef XMPPD_NS_H
#define XMPPD_NS_H

#define NS_CLIENT       "jabber:client"
#define NS_SERVER       "jabber:server"
#define NS_STREAMS      "urn:ietf:params:xml:ns:xmpp-streams"
#define NS_STANZAS      "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_TLS          "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL         "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND         "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION      "urn:ietf:params:xml:ns:xmpp-session"
#define NS_SASL_CB      "urn:xmpp:sasl-cb:0"          /* XEP-0440 */
#define NS_PING         "urn:xmpp:ping"
#define NS_SM           "urn:xmpp:sm:3"               /* XEP-0198 */

/* RFC 7395 3.3.2: the framing of XMPP over WebSocket (and of BOSH's
 * framed stream, c2s/bosh.c). */
#define NS_FRAMING "urn:ietf:params:xml:ns:xmpp-framing"

#endif

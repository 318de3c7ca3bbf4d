// chat.js - a strophe.js session over BOSH (XEP-0124, XEP-0206) for the
// integration tests: logs in, says which JID it is bound to, sends initial
// presence and one chat message, echoes every chat message it receives
// ("echo: BODY") and reports what happens as JSON lines on stdout; when its
// stdin closes it disconnects (unavailable presence, type='terminate').
//   node chat.js SERVICE JID PASSWORD PEER BODY
"use strict";

// strophe.js's Node build installs a DOM (@xmldom/xmldom) but BOSH also needs
// XMLHttpRequest, which Node lacks: xhr2 provides it, without responseXML,
// which strophe.js reads the response body from; parse it as a browser would
// (strophe.js overrides the MIME type to text/xml, so a browser parses any
// response, whatever its Content-Type).
const XHR2 = require("xhr2");
const { Strophe, $msg, $pres } = require("strophe.js");

class XMLHttpRequest extends XHR2 {
  get responseXML() {
    if (this.readyState !== 4 || !this.responseText) return null;
    return new globalThis.DOMParser().parseFromString(this.responseText, "text/xml");
  }
}
globalThis.XMLHttpRequest = XMLHttpRequest;
// SCRAM uses WebCrypto, a global only from Node.js 19 on (Debian 12 has 18).
globalThis.crypto ??= require("node:crypto").webcrypto;

// stdout carries the JSON lines only: strophe.js's log (console.debug,
// console.info) goes to stderr, which the test shows when something fails.
globalThis.console = new console.Console({ stdout: process.stderr, stderr: process.stderr });

const [service, jid, password, peer, body] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const names = Object.fromEntries(Object.entries(Strophe.Status).map(([k, v]) => [v, k]));

const conn = new Strophe.Connection(service);
conn.rawInput = (data) => out({ event: "recv", xml: data });
conn.rawOutput = (data) => out({ event: "sent", xml: data });

let stopping = false;
conn.connect(jid, password, (status, condition) => {
  const name = names[status] || String(status);
  out({ event: "status", status: name, condition: condition || null });
  if (status === Strophe.Status.CONNECTED) {
    conn.addHandler((st) => {
      out({ event: "message", from: st.getAttribute("from"), xml: Strophe.serialize(st) });
      const b = st.getElementsByTagName("body")[0];
      const text = b ? Strophe.getText(b) : null;
      if (text !== null && !text.startsWith("echo: "))
        conn.send($msg({ to: st.getAttribute("from"), type: "chat" }).c("body").t("echo: " + Strophe.xmlunescape(text)));
      return true;
    }, null, "message", "chat");
    conn.send($pres());
    conn.send($msg({ to: peer, type: "chat" }).c("body").t(body));
    out({ event: "online", jid: conn.jid, sid: conn._proto.sid });
  } else if (status === Strophe.Status.DISCONNECTED) {
    out({ event: "offline" });
    process.exit(stopping ? 0 : 1);
  } else if (status === Strophe.Status.CONNFAIL || status === Strophe.Status.AUTHFAIL ||
             status === Strophe.Status.ERROR) {
    out({ event: "error", status: name, condition: condition || null });
  }
});

process.stdin.on("end", () => {
  stopping = true;
  conn.flush();
  conn.disconnect("stdin closed");
});
process.stdin.resume();

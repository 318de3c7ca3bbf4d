// chat.js - an @xmpp/client session over WebSocket for the integration
// tests: logs in, says which JID it is bound to, sends one chat message,
// echoes what it receives and reports every stanza as a JSON line on stdout.
//   node chat.js SERVICE DOMAIN USER PASSWORD PEER BODY
"use strict";

const { client, xml } = require("@xmpp/client");

const [service, domain, username, password, peer, body] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const xmpp = client({ service, domain, username, password, resource: "ws" });

xmpp.on("error", (err) => out({ event: "error", error: String(err && (err.condition || err.message || err)) }));
xmpp.on("offline", () => out({ event: "offline" }));
xmpp.on("stanza", async (st) => {
  out({ event: "stanza", xml: st.toString() });
  if (st.is("message") && st.getChild("body") && st.attrs.type !== "error") {
    const text = st.getChildText("body");
    if (!text.startsWith("echo: "))
      await xmpp.send(xml("message", { to: st.attrs.from, type: "chat" }, xml("body", {}, "echo: " + text)));
  }
});
xmpp.on("online", async (address) => {
  out({ event: "online", jid: address.toString() });
  await xmpp.send(xml("presence"));
  await xmpp.send(xml("message", { to: peer, type: "chat" }, xml("body", {}, body)));
});

process.stdin.on("end", async () => {
  try { await xmpp.stop(); } catch (e) { out({ event: "error", error: String(e) }); }
  process.exit(0);
});
process.stdin.resume();
xmpp.start().catch((err) => { out({ event: "start-failed", error: String(err && (err.condition || err.message || err)) }); process.exit(1); });

// mnemo's reference capture client for JavaScript (browsers and Node.js), over WebSocket.
//
// A page holds an API token, never a long-lived NATS seed: it makes a NATS user key of its
// own, asks the API for a short-lived JWT for that key (POST /v1/users/{id}/devices with
// `nats_public_key`), and connects to the WebSocket listener with it. The seed never leaves
// the page, and the JWT lapses in 15 minutes. Captures go with JetStream to `mnemo.capture`
// (the answer is the ingest stream's PubAck) or, for an immediate receipt, as a request to
// `mnemo.ingest` (docs/EDGE.md, docs/asyncapi.yaml).

import { jwtAuthenticator, wsconnect } from "@nats-io/nats-core";
import { jetstream } from "@nats-io/jetstream";
import { createUser } from "@nats-io/nkeys";

/** Short-lived NATS credentials for this page, from the user's API token. */
export async function browserCredentials(api, token, user, name) {
  const key = createUser();
  const r = await fetch(`${api}/v1/users/${encodeURIComponent(user)}/devices`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ name, nats_public_key: key.getPublicKey() }),
  });
  if (r.status !== 201) {
    throw new Error(`credentials refused: ${r.status} ${await r.text()}`);
  }
  const { jwt, expires_in } = await r.json();
  return { authenticator: jwtAuthenticator(jwt, key.getSeed()), expiresIn: expires_in };
}

/** Connects over WebSocket and captures `text` twice under one id (a retry), then once
 * more as a request: what the tests check. */
export async function captureOverWebSocket({ api, token, user, ws, id, text }) {
  const { authenticator, expiresIn } = await browserCredentials(api, token, user, "browser");
  const nc = await wsconnect({ servers: ws, authenticator });
  try {
    const js = jetstream(nc);
    const body = JSON.stringify({ text, stream: "web", kind: "web" });
    const ack = await js.publish("mnemo.capture", body, { msgID: id });
    const retry = await js.publish("mnemo.capture", body, { msgID: id });
    const m = await nc.request("mnemo.ingest", JSON.stringify({ text: `${text} (request)` }), {
      timeout: 10000,
    });
    const receipt = JSON.parse(new TextDecoder().decode(m.data));
    return {
      expiresIn,
      ack: { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate },
      retry: { stream: retry.stream, duplicate: retry.duplicate },
      receipt: { user: receipt.user, seq: receipt.seq, custody: Boolean(receipt.custody) },
    };
  } finally {
    await nc.close();
  }
}

// Node.js over WebSocket (node --experimental-websocket): the bundled reference client.
// usage: node ws_node.mjs BUNDLE API TOKEN USER WS ID
// The bundle is built for browsers: its random source (tweetnacl) looks for `self.crypto`.
globalThis.self ??= globalThis;
const [bundle, api, token, user, ws, id] = process.argv.slice(2);
const { captureOverWebSocket } = await import(bundle);
const r = await captureOverWebSocket({ api, token, user, ws, id, text: "from node over websocket" });
console.log(JSON.stringify(r));

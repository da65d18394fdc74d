// Headless Chromium (Debian's, driven by playwright-core) runs the bundled reference client
// in a page served on localhost.
// usage: node browser.mjs PLAYWRIGHT_CORE BUNDLE PAGE_PORT API TOKEN USER WS ID
import http from "node:http";
import fs from "node:fs";
import path from "node:path";

const [pw, bundle, port, api, token, user, ws, id] = process.argv.slice(2);
const { chromium } = (await import(path.join(pw, "index.mjs"))).default ?? (await import(path.join(pw, "index.mjs")));
const page = `<!doctype html><meta charset="utf-8"><title>mnemo capture</title>
<script type="module">
import { captureOverWebSocket } from "/capture.bundle.mjs";
const q = new URLSearchParams(location.search);
captureOverWebSocket({ api: q.get("api"), token: q.get("token"), user: q.get("user"),
  ws: q.get("ws"), id: q.get("id"), text: "from a browser page" })
  .then((r) => { window.result = r; }, (e) => { window.result = { error: String(e) }; });
</script>`;
const server = http.createServer((req, res) => {
  if (req.url.startsWith("/capture.bundle.mjs")) {
    res.writeHead(200, { "content-type": "text/javascript" });
    res.end(fs.readFileSync(bundle));
  } else {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(page);
  }
});
await new Promise((ok) => server.listen(Number(port), "127.0.0.1", ok));
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const p = await browser.newPage();
  const q = new URLSearchParams({ api, token, user, ws, id });
  await p.goto(`http://127.0.0.1:${port}/?${q}`);
  await p.waitForFunction(() => window.result !== undefined, null, { timeout: 30000 });
  console.log(JSON.stringify(await p.evaluate(() => window.result)));
} finally {
  await browser.close();
  server.close();
}

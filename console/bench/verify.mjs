// The in-browser verifier timed in Debian's headless Chromium (playwright-core) on a
// custody bundle `mnemo-bench verify --keep FILE` wrote, for docs/BENCHMARKS.md (not part
// of the test command). Prints events/s, the median of ROUNDS runs in one page.
// usage: node verify.mjs PLAYWRIGHT_CORE BUNDLED_VERIFIER BUNDLE [ROUNDS]
import fs from "node:fs";
import http from "node:http";
import path from "node:path";

const [pw, verifier, bundle, rounds = "3"] = process.argv.slice(2);
const { chromium } = await import(path.join(pw, "index.mjs"));
const server = http.createServer((req, res) => {
  if (req.url === "/verifier.mjs") {
    res.writeHead(200, { "content-type": "text/javascript" });
    res.end(fs.readFileSync(verifier));
  } else if (req.url === "/bundle.jsonl") {
    res.writeHead(200, { "content-type": "text/plain" });
    fs.createReadStream(bundle).pipe(res);
  } else {
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<!doctype html><title>verify bench</title>");
  }
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const url = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  await page.goto(url);
  const r = await page.evaluate(async (n) => {
    const { verifyBundle } = await import("/verifier.mjs");
    const text = await (await fetch("/bundle.jsonl")).text();
    const times = [];
    let verdict;
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      verdict = verifyBundle(text);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    return { ms: times[Math.floor(times.length / 2)], events: verdict.events.length, valid: verdict.valid, failure: verdict.failure };
  }, Number(rounds));
  console.log(`in-browser verifier (Chromium): ${r.events} events, valid ${r.valid}, median ${(r.ms / 1000).toFixed(2)} s, ${Math.round(r.events / (r.ms / 1000))} events/s`);
  if (!r.valid) console.log(JSON.stringify(r.failure));
} finally {
  await browser.close();
  server.close();
}

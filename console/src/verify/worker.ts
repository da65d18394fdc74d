// Verifies a bundle off the page's main thread: the page stays responsive on a large chain.
import { verifyBundle } from "./verifier";

self.onmessage = (e: MessageEvent<string>) => {
  const t = performance.now();
  const verdict = verifyBundle(e.data);
  self.postMessage({ verdict, ms: performance.now() - t });
};

import { defineConfig } from "vite";
import vue from "@vitejs/plugin-vue";

// Served by `mnemo serve` at /console (api/src/http/console.rs), under a CSP with no inline
// scripts: Vite's build emits only external module scripts and stylesheets.
export default defineConfig({
  base: "/console/",
  plugins: [vue()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, modulePreload: { polyfill: false } },
});

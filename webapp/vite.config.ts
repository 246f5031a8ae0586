import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

// The build is package data of the store server: index.html plus content-hashed files under assets/,
// which the server serves with long cache headers (a new build changes their names).
export default defineConfig({
  plugins: [preact()],
  base: "/",
  build: {
    outDir: process.env.TRACKLOG_WEBAPP_OUT ?? "../server/tracklog_server/transport/webapp",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 400,
  },
  server: {
    // `npm run dev` proxies the JSON API to a running `tracklog ui` (TRACKLOG_UI_URL).
    proxy: { "/api": process.env.TRACKLOG_UI_URL ?? "http://127.0.0.1:8765" },
  },
});

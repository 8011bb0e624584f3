/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import vue from "@vitejs/plugin-vue";

// The dashboard is served by `fedmetamal serve` from src/fedmetamal/web/static (package data).
// `npm run dev` proxies the Connect paths to a local server on its default web port.
export default defineConfig({
  plugins: [vue()],
  base: "/",
  build: {
    outDir: "../src/fedmetamal/web/static",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    proxy: {
      "^/fedmetamal\\.v1\\.": { target: "http://127.0.0.1:8080", changeOrigin: false },
    },
  },
  test: {
    environment: "jsdom",
    include: ["tests/**/*.test.ts"],
  },
});

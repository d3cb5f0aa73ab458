import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

/**
 * The editor page's build: static `index.html` + content-hashed `assets/` that the router serves at
 * `/` (router/src/editor-assets.ts builds it on start). A React app (`@vitejs/plugin-react`: the
 * automatic JSX runtime). Everything is bundled from node_modules: no network at build or run time.
 */
export default defineConfig({
  base: '/',
  plugins: [react()],
  build: { target: 'es2022', assetsDir: 'assets', chunkSizeWarningLimit: 8000, reportCompressedSize: false },
});

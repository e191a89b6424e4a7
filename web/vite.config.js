// Builds GraphiQL and the External Health dashboard into the Python package
// (src/studio_integrations/web/static), served by the app under /static/: no CDN, no
// request leaving the host. Rebuild with `make web`; the output is committed.
import { resolve } from 'node:path';
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/static/',
  build: {
    outDir: resolve(import.meta.dirname, '../src/studio_integrations/web/static'),
    emptyOutDir: true,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 8000,
    reportCompressedSize: false,
    rollupOptions: {
      input: {
        graphiql: resolve(import.meta.dirname, 'graphiql.html'),
        dashboard: resolve(import.meta.dirname, 'dashboard.html'),
      },
    },
  },
});

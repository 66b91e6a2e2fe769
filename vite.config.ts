import { defineConfig } from 'vite'

// The dashboard: `npm run dev` serves web/ with hot reload; `npm run build:web` writes dist/web, which Node
// peers serve. It imports the library from src/ directly, so the page and Node run the same code.
export default defineConfig({
  root: 'web',
  build: {
    outDir: '../dist/web',
    emptyOutDir: true,
    target: 'es2022',
    // The page is one peer: libp2p with WebRTC, WebSockets, relay, noise, yamux and gossipsub is ~200 KB
    // gzipped in one chunk, by design (it all loads before the tab can join).
    chunkSizeWarningLimit: 1024
  },
  server: { host: '127.0.0.1' },
  preview: { host: '127.0.0.1' }
})

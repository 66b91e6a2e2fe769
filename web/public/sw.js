/**
 * The dashboard's service worker: keeps the page (index.html and its /assets/) so that a tab reloads, and
 * rejoins the mesh through another Node peer, when the peer that served it is gone. The page itself is
 * network first: a reachable server always wins and refreshes the copy; the cache answers only when the
 * server cannot be reached. Its /assets/ are cache first: their names change with their content, so a kept
 * one is never stale. Only the page itself is kept, never API answers (/api/info, /kv/...). At most SHELL_ENTRIES_MAX
 * entries: the oldest assets of earlier builds go first.
 */
const CACHE = 'meshkv-shell-v1'
const SHELL_ENTRIES_MAX = 16

async function precache () {
  const cache = await caches.open(CACHE)
  const res = await fetch('/', { cache: 'no-store' })
  if (!res.ok) return
  const html = await res.clone().text()
  await cache.put('/', res)
  const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map(m => m[1])
  await Promise.all(assets.map(async url => {
    const asset = await fetch(url)
    if (asset.ok) await cache.put(url, asset)
  }))
}

async function prune (cache) {
  const keys = await cache.keys()
  for (const request of keys.slice(0, Math.max(0, keys.length - SHELL_ENTRIES_MAX))) {
    if (new URL(request.url).pathname !== '/') await cache.delete(request)
  }
}

self.addEventListener('install', event => {
  event.waitUntil(precache().catch(() => {}).then(() => self.skipWaiting()))
})

self.addEventListener('activate', event => {
  event.waitUntil(self.clients.claim())
})

self.addEventListener('fetch', event => {
  const request = event.request
  if (request.method !== 'GET') return
  const url = new URL(request.url)
  if (url.origin !== self.location.origin) return
  const navigation = request.mode === 'navigate'
  if (!navigation && !url.pathname.startsWith('/assets/')) return
  // Every navigation (with any query) is the one page.
  const key = navigation ? '/' : url.pathname
  event.respondWith((async () => {
    const cache = await caches.open(CACHE)
    // A built asset's name carries a hash of its content (Vite), so a kept copy is that very file: it is
    // served without asking the server. A tab then opens without fetching and storing the script again, and
    // Chromium reuses the code it compiled from it last time.
    if (!navigation) {
      const kept = await cache.match(key)
      if (kept !== undefined) return kept
    }
    try {
      const res = await fetch(request)
      if (res.ok) {
        await cache.put(key, res.clone())
        await prune(cache)
      }
      return res
    } catch (error) {
      const kept = await cache.match(key)
      if (kept !== undefined) return kept
      throw error
    }
  })())
})

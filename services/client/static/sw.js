// sw.js — the device shell's service worker (docs/devices.md, Offline): a device that was
// online once opens the shell, and the plugin screens it has opened, with no network.
// The client service serves this file with VERSION set to a hash of the shell's files and
// SHELL listing them, so a changed shell installs a new worker and a new cache. A plugin's files have versioned URLs
// (/plugins/<name>/@<hash>/...): an upgraded plugin's are new URLs, and the page tells the
// worker which versions its catalog still lists, so the old ones are dropped.

const VERSION = "__VERSION__";
const CACHE = `mesh-shell-${VERSION}`;
const SHELL = ["/", "__SHELL_FILES__"]; // the client service lists every file of the shell
const VERSIONED = /^\/plugins\/[^/]+\/@[^/]+\//;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL))
    .then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((name) => name.startsWith("mesh-shell-") && name !== CACHE)
      .map((name) => caches.delete(name))))
    .then(() => self.clients.claim()));
});

self.addEventListener("message", (event) => {
  // {type: "plugins", keep: ["/plugins/tutorial/@3f9c.../", ...]}: what the catalog lists now
  const {type, keep} = event.data ?? {};
  if (type !== "plugins" || !Array.isArray(keep)) return;
  event.waitUntil(caches.open(CACHE).then(async (cache) => {
    for (const request of await cache.keys()) {
      const path = new URL(request.url).pathname;
      if (VERSIONED.test(path) && !keep.some((prefix) => path.startsWith(prefix))) {
        await cache.delete(request);
      }
    }
  }));
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (VERSIONED.test(url.pathname)) {
    event.respondWith(cacheFirst(event.request));
  } else if (event.request.mode === "navigate" || SHELL.includes(url.pathname)) {
    event.respondWith(networkFirst(event.request, event.request.mode === "navigate" ? "/" : url.pathname));
  }
  // anything else (/ws, /catalog, /healthz, unversioned plugin files) goes to the network
});

async function cacheFirst(request) {
  const cache = await caches.open(CACHE);
  const kept = await cache.match(request);
  if (kept) return kept;
  const response = await fetch(request);
  if (response.ok) await cache.put(request, response.clone());
  return response;
}

async function networkFirst(request, key) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(key, response.clone());
    return response;
  } catch (error) {
    const kept = await cache.match(key);
    if (kept) return kept;
    throw error;
  }
}

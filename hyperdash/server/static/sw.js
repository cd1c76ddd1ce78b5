// The dashboard's service worker. It caches nothing (the dashboard is live data); it exists so
// that phones, which let only service workers show notifications, can show a run's end, so that
// the server's Web Push messages are shown with the dashboard closed, and so that tapping a
// notification opens that run.

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

// A push from the server: JSON with title, body, url (the run's page), tag (the run) and kind.
self.addEventListener('push', (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = { body: event.data ? event.data.text() : '' };
  }
  const title = typeof data.title === 'string' && data.title ? data.title : 'Hyperdash';
  event.waitUntil(self.registration.showNotification(title, {
    body: typeof data.body === 'string' ? data.body : '',
    tag: typeof data.tag === 'string' && data.tag ? 'run-' + data.tag : undefined,
    renotify: true,
    icon: '/static/icons/icon-192.png',
    badge: '/static/icons/icon-192.png',
    data: { url: typeof data.url === 'string' ? data.url : '/' },
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const given = (event.notification.data && event.notification.data.url) || '/';
  // A link under another address (the server's public one) still opens this dashboard's page.
  const url = new URL(given, self.location.origin);
  const path = url.origin === self.location.origin ? url.pathname + url.search : url.href;
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const client of windows) {
      if (new URL(client.url).pathname === url.pathname && 'focus' in client) return client.focus();
    }
    return self.clients.openWindow(path);
  })());
});

// The dashboard's service worker. It caches nothing (the dashboard is live data); it exists so
// that phones, which let only service workers show notifications, can show a run's end, and so
// that tapping the notification opens that run.

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const path = (event.notification.data && event.notification.data.url) || '/';
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const client of windows) {
      if (new URL(client.url).pathname === path && 'focus' in client) return client.focus();
    }
    return self.clients.openWindow(path);
  })());
});

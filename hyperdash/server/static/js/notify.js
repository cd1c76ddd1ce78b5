// @ts-check
// Browser notifications for a run that ends while its page is open, once the user allowed them.

const supported = 'Notification' in window;

if ('serviceWorker' in navigator && window.isSecureContext) {
  // Phones show notifications only through a service worker.
  navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch(() => {});
}

/** @type {WeakMap<HTMLElement, any>} a "Notify me" button -> the run it is for, once wired */
const buttonRuns = new WeakMap();

/**
 * Show or hide the "Notify me" button of a run, by its status and the permission asked.
 * @param {HTMLElement} button
 * @param {any} run
 */
export function setUpNotifyButton(button, run) {
  const permission = supported ? Notification.permission : 'denied';
  button.hidden = !supported || run.status !== 'running' || permission === 'denied';
  button.setAttribute('aria-pressed', String(permission === 'granted'));
  /** @type {HTMLElement} */ (button.querySelector('.label')).textContent = permission === 'granted'
    ? 'Notifications on' : 'Notify me';
  button.title = permission === 'granted'
    ? 'This page shows a notification when the run ends'
    : 'Show a notification when this run ends';
  const wired = buttonRuns.has(button);
  buttonRuns.set(button, run);
  if (!wired) {
    button.addEventListener('click', async () => {
      if (Notification.permission === 'default') await Notification.requestPermission();
      setUpNotifyButton(button, buttonRuns.get(button));
    });
  }
}

/**
 * Tell the user that `run` ended, if notifications are allowed.
 * @param {any} run
 * @param {string} statusLabel
 * @param {string} duration
 */
export async function notifyRunEnded(run, statusLabel, duration) {
  if (!supported || Notification.permission !== 'granted') return;
  const title = `${run.name || 'Unnamed run'}: ${statusLabel}`;
  const details = [`Ran ${duration}`];
  if (run.signal) details.push(`signal ${run.signal}`);
  else if (run.exit_code !== null && run.exit_code !== undefined) details.push(`exit code ${run.exit_code}`);
  const options = {
    body: details.join(' · '),
    tag: 'run-' + run.uuid,
    icon: '/static/icons/icon-192.png',
    badge: '/static/icons/icon-192.png',
    data: { url: '/runs/' + run.uuid },
  };
  try {
    const note = new Notification(title, options);
    note.addEventListener('click', () => { window.focus(); note.close(); });
  } catch {
    // Where pages may not construct notifications (Android), the service worker shows it.
    const registration = await navigator.serviceWorker?.ready;
    if (registration) await registration.showNotification(title, options);
  }
}

// @ts-check
// Talking to the server's JSON API from the dashboard: the session cookie authenticates every
// call, and calls that change something carry the page's CSRF token.

const csrfMeta = /** @type {HTMLMetaElement | null} */ (document.querySelector('meta[name="csrf-token"]'));
// A shared run's page reads its run through the link's own read-only API.
const baseMeta = /** @type {HTMLMetaElement | null} */ (document.querySelector('meta[name="api-base"]'));
const apiBase = baseMeta ? baseMeta.content : '/api/v1';
/** Whether this page shows a shared run, read-only, to someone who may not be signed in. */
export const sharedView = baseMeta !== null;

/** An API call that did not succeed; `status` is the HTTP status (0 when the network failed). */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string | null | undefined} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** @typedef {Record<string, string | number | boolean | null | undefined>} Params */

/**
 * Build "/api/v1/…?a=1&b=2" (on a shared run's page, under the link's API), leaving out parameters that are null, undefined or "".
 * @param {string} path
 * @param {Params} [params]
 */
export function apiUrl(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') query.set(key, String(value));
  }
  const qs = query.toString();
  return apiBase + path + (qs ? '?' + qs : '');
}

/**
 * Fetch JSON from the API. Throws ApiError; a 401 sends the browser to the sign-in page.
 * @param {string} path
 * @param {{params?: Params, method?: string, body?: unknown, signal?: AbortSignal}} [options]
 * @returns {Promise<any>}
 */
export async function api(path, { params, method = 'GET', body, signal } = {}) {
  /** @type {Record<string, string>} */
  const headers = { accept: 'application/json' };
  if (method !== 'GET' && csrfMeta) headers['x-csrf-token'] = csrfMeta.content;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(apiUrl(path, params), {
      method, headers, signal, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', 'The server could not be reached.');
  }
  if (resp.status === 401) {
    window.location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
    throw new ApiError(401, 'unauthenticated', 'Signed out.');
  }
  let data = null;
  try { data = await resp.json(); } catch { /* an empty or non-JSON body */ }
  if (!resp.ok) {
    throw new ApiError(resp.status, data && data.code, (data && data.message) || resp.statusText);
  }
  return data;
}

/**
 * A server-sent events stream. `handlers` maps event names to functions of the parsed JSON data;
 * `onOpen` is called on each (re)connection. The browser reconnects by itself after a network
 * error, sending Last-Event-ID; when it gives up (the server refused the stream, or restarted),
 * this reconnects after a pause, resuming after the last event id seen (`after=`), and a lost
 * session sends the user to the sign-in page. Before each reconnection it reads `check` (an API
 * path: what the stream is about); when that is gone (404 or 410: a run deleted, a link
 * revoked), it stops and calls `onGone` with the server's answer. While the stream is down, the
 * page's connection note says so (see `streamDown`).
 * @param {string} path
 * @param {Record<string, (data: any, event: MessageEvent) => void>} handlers
 * @param {{params?: Params, onOpen?: () => void, check?: string, onGone?: (err: ApiError) => void}} [options]
 */
export function subscribe(path, handlers, { params = {}, onOpen, check = '/me', onGone } = {}) {
  let lastId = null;
  let source = null;
  let closed = false;
  let failures = 0;
  const token = {};
  liveStreams.add(token);
  // A first connection's moment before it opens is no news; one that takes longer is.
  let slow = setTimeout(() => streamDown(token, true), CONNECT_GRACE_MS);

  function connect() {
    const query = lastId === null ? params : { ...params, after: lastId };
    source = new EventSource(apiUrl(path, query), { withCredentials: true });
    for (const [name, handle] of Object.entries(handlers)) {
      source.addEventListener(name, (event) => {
        if (event.lastEventId) lastId = event.lastEventId;
        let data;
        try { data = JSON.parse(event.data); } catch { return; }
        handle(data, event);
      });
    }
    source.addEventListener('open', () => {
      failures = 0;
      clearTimeout(slow);
      streamDown(token, false);
      if (onOpen) onOpen();
    });
    source.addEventListener('error', () => {
      if (closed) return;
      if (source.readyState !== EventSource.OPEN) streamDown(token, true);
      if (source.readyState !== EventSource.CLOSED) return;
      // Wait longer after each failure, up to half a minute.
      const pause = Math.min(30000, 1000 * 2 ** failures++);
      setTimeout(async () => {
        try {
          await api(check);
        } catch (err) {
          // (signed out: api() moved on to the sign-in page)
          if (err instanceof ApiError && (err.status === 404 || err.status === 410)) {
            stop();
            if (onGone) onGone(err);
            return;
          }
        }
        if (!closed) connect();
      }, pause);
    });
  }

  /** Follow no more: the stream is not "down" then, only ended. */
  function stop() {
    closed = true;
    clearTimeout(slow);
    liveStreams.delete(token);
    streamDown(token, false);
  }

  connect();
  return { close() { stop(); source.close(); } };
}

// --- the connection note -------------------------------------------------------------------------

/** How long a first connection may take before the page says it is not connected. */
const CONNECT_GRACE_MS = 1500;
/** The streams this page follows, and those of them that are down now (by their own token). */
const liveStreams = new Set();
const downStreams = new Set();
// A page being left closes its streams: that is no lost connection to speak of.
let leaving = false;
window.addEventListener('pagehide', () => { leaving = true; });
window.addEventListener('pageshow', () => { leaving = false; });
// A device offline hears nothing, though its streams may learn of it only at their next news.
window.addEventListener('offline', () => streamDown(null, false));
window.addEventListener('online', () => streamDown(null, false));

/**
 * Mark one stream down or up (no stream: only look again), and show the page's connection note
 * (a polite status region in the base template) while any is down or the device is offline:
 * live data that stopped coming must not look live.
 * @param {object | null} token
 * @param {boolean} down
 */
function streamDown(token, down) {
  if (down && !leaving) downStreams.add(token); else downStreams.delete(token);
  const note = document.getElementById('stream-note');
  if (!note) return;
  const offline = liveStreams.size > 0 && !navigator.onLine;
  const text = downStreams.size || offline ? 'Reconnecting…' : '';
  // Only a change of text: a screen reader hears the note once, not at each retry.
  if (note.textContent !== text) note.textContent = text;
}

// @ts-check
// Small DOM and formatting helpers. Untrusted strings only ever become text nodes here.

/**
 * Create an element: h('a', {class: 'x', href: '/y'}, 'text', child). Strings become text
 * nodes (never HTML); attributes are set one by one with setAttribute.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const STATUS_LABELS = {
  running: 'Running',
  success: 'Success',
  failure: 'Failure',
  user_canceled: 'Canceled',
  killed: 'Killed',
  lost: 'Lost',
};

/** A status badge; the label is readable, the raw status stays in data-status for machines. */
export function badge(status) {
  const known = Object.prototype.hasOwnProperty.call(STATUS_LABELS, status);
  return h('span', {
    class: 'badge status-' + (known ? status : 'unknown'),
    'data-status': status,
  }, known ? STATUS_LABELS[status] : String(status));
}

/**
 * Whether a run is running but its job makes no progress (no output, metric or param for its
 * stall window).
 * @param {{status: string, stalled_since?: string | null}} run
 */
export function isStalled(run) {
  return run.status === 'running' && Boolean(run.stalled_since);
}

/**
 * "Stalled" beside a running run's status while it is stalled (isStalled); null otherwise.
 * @param {{status: string, stalled_since?: string | null}} run
 */
export function stalledBadge(run) {
  if (!isStalled(run)) return null;
  const since = parseTime(run.stalled_since);
  return h('span', {
    class: 'badge stalled',
    'data-stalled-since': run.stalled_since,
    title: 'Alive, but no output, metric or param since ' + formatFull(since),
  }, 'Stalled');
}

export function parseTime(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

const sameYear = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});
const otherYear = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});
const clock = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
});
const full = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

/** "Today, 14:03", "Yesterday, 09:12", or a date. */
export function formatStart(ms) {
  if (ms === null) return '—';
  const date = new Date(ms);
  const now = new Date();
  const day = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  const diffDays = Math.round((day(now) - day(date)) / 86400000);
  const time = date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  if (diffDays === 0) return 'Today, ' + time;
  if (diffDays === 1) return 'Yesterday, ' + time;
  return (date.getFullYear() === now.getFullYear() ? sameYear : otherYear).format(date);
}

export function formatFull(ms) {
  return ms === null ? '' : full.format(new Date(ms));
}

export function formatClock(ms) {
  return ms === null || ms === undefined ? '' : clock.format(new Date(ms));
}

/** "4s", "3m 12s", "2h 05m", "3d 4h". */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return s + 's';
  const m = Math.floor(s / 60);
  if (m < 60) return m + 'm ' + String(s % 60).padStart(2, '0') + 's';
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return hrs + 'h ' + String(m % 60).padStart(2, '0') + 'm';
  return Math.floor(hrs / 24) + 'd ' + (hrs % 24) + 'h';
}

/** How long a run has run: to its end, to its last sign of life when lost, else until now. */
export function runDuration(run, now = Date.now()) {
  const start = parseTime(run.started_at);
  if (start === null) return null;
  let end = parseTime(run.ended_at);
  if (end === null && run.status === 'lost') end = parseTime(run.last_seen_at);
  if (end === null && run.status !== 'running') end = parseTime(run.last_seen_at);
  return (end === null ? now : end) - start;
}

/** A number as a person reads it: up to 6 significant digits, no float noise. */
export function formatNumber(value) {
  if (typeof value !== 'number') return String(value);
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e15) return value.toLocaleString('en-US').replace(/,/g, '\u2009');
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-4 || abs >= 1e9)) return value.toExponential(4);
  return String(Number(value.toPrecision(6)));
}

/** Run `fn` at most once an animation frame, however often `schedule()` is called. */
export function coalesce(fn) {
  let queued = false;
  return function schedule() {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; fn(); });
  };
}

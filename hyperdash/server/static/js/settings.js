// @ts-check
// The notification settings page: this device's Web Push subscription, the account's channels
// (add, test, edit, remove, which events each gets), and how recent notifications went.
// Everything the server or a receiver says is shown as text, never as HTML.

import { api, ApiError } from './api.js';
import { h } from './dom.js';

/** @type {Record<string, string>} */
const EVENT_LABELS = {
  success: 'Finished', failure: 'Failed', killed: 'Killed', user_canceled: 'Cancelled',
  lost: 'Went silent', back: 'Came back', stalled: 'Stalled', rule: 'A rule fired',
};
/** @type {Record<string, string>} */
const KIND_LABELS = {
  webhook: 'Webhook', slack: 'Slack', discord: 'Discord', ntfy: 'ntfy', telegram: 'Telegram',
  email: 'Email', webpush: 'Push to a browser',
};
/** @type {Record<string, string>} */
const STATE_LABELS = {
  pending: 'waiting', sending: 'sending', delivered: 'sent', failed: 'failed', coalesced: 'grouped',
};

/** What the server says a channel may ask for (filled from GET /notify/channels). */
const meta = { events: /** @type {string[]} */ ([]), defaults: /** @type {string[]} */ ([]), longRunS: 300 };

const errorBox = /** @type {HTMLElement} */ (document.getElementById('settings-error'));
const channelList = /** @type {HTMLElement} */ (document.getElementById('channels'));
const addForm = /** @type {HTMLFormElement} */ (document.getElementById('add-channel'));
const addError = /** @type {HTMLElement} */ (document.getElementById('add-error'));

/** @param {unknown} err */
function message(err) {
  return err instanceof ApiError || err instanceof Error ? err.message : String(err);
}

/** @param {HTMLElement} box @param {string | null} text */
function show(box, text) {
  box.textContent = text || '';
  box.hidden = !text;
}

/** A duration in seconds as people say it: "5 min", "90 s". */
function minutes(seconds) {
  return seconds >= 60 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds)} s`;
}

/**
 * The events part of a form: "the defaults" or a choice of events.
 * @param {string} prefix unique among the page's forms, for ids
 * @param {string[] | null} chosen null for the defaults
 */
function eventChoice(prefix, chosen) {
  const useDefaults = /** @type {HTMLInputElement} */ (h('input', {
    type: 'checkbox', name: 'defaults', id: `${prefix}-defaults`, checked: chosen === null,
  }));
  const defaultsText = meta.defaults.map((e) => EVENT_LABELS[e] || e).join(', ').toLowerCase();
  const boxes = meta.events.map((event) => h('label', {},
    h('input', {
      type: 'checkbox', name: 'event', value: event, 'data-event': event,
      checked: (chosen || meta.defaults).includes(event), disabled: chosen === null,
    }),
    EVENT_LABELS[event] || event));
  const sync = () => {
    for (const box of /** @type {NodeListOf<HTMLInputElement>} */ (wrap.querySelectorAll('input[name=event]'))) {
      box.disabled = useDefaults.checked;
    }
  };
  useDefaults.addEventListener('change', sync);
  const wrap = h('div', { class: 'event-choice', role: 'group', 'aria-label': 'Events' },
    h('label', { for: `${prefix}-defaults` }, useDefaults,
      `Default events (${defaultsText}; finished runs longer than ${minutes(meta.longRunS)})`),
    h('div', { class: 'events' }, boxes));
  return wrap;
}

/** @param {Element} container @returns {string[] | null} */
function readEvents(container) {
  const useDefaults = /** @type {HTMLInputElement | null} */ (container.querySelector('input[name=defaults]'));
  if (!useDefaults || useDefaults.checked) return null;
  return [...container.querySelectorAll('input[name=event]')]
    .filter((box) => /** @type {HTMLInputElement} */ (box).checked)
    .map((box) => /** @type {HTMLInputElement} */ (box).value);
}

/**
 * The settings of each kind that a person may replace from the page: its address and secrets,
 * as [setting, label, whether it is a secret]. The fields start empty (the server never sends a
 * secret back) and an empty one keeps what the channel has.
 * @type {Record<string, [string, string, boolean][]>}
 */
const REPLACEABLE = {
  webhook: [['url', 'New address', true], ['secret', 'New signing secret', true]],
  slack: [['url', 'New webhook address', true]],
  discord: [['url', 'New webhook address', true]],
  ntfy: [['url', 'New topic address', true], ['token', 'New token', true]],
  telegram: [['token', 'New bot token', true], ['chat_id', 'New chat id', false]],
  email: [['username', 'New user name', false], ['password', 'New password', true]],
};

/**
 * What a new address needs with it, for the kinds whose secrets go to their address: the
 * server never sends the stored secret to a new address, and refuses a new one without it.
 * @type {Record<string, string>}
 */
const MOVING = {
  webhook: ' A new address needs the signing secret with it.',
  ntfy: ' A new topic address needs the token with it, if the channel has one.',
};

/**
 * The part of a channel's form that replaces its address or secrets, or null for a kind
 * without any (a browser's push subscription is renewed by subscribing again).
 * @param {any} channel
 */
function replaceFields(channel) {
  const fields = REPLACEABLE[channel.kind];
  if (!fields) return null;
  return h('details', { class: 'replace' },
    h('summary', {}, 'Change address or token'),
    h('p', { class: 'hint' },
      'The current ones are never shown. Leave a field empty to keep it.' + (MOVING[channel.kind] || '')),
    fields.map(([setting, label, secret]) => h('label', {}, label, h('input', {
      type: secret ? 'password' : 'text', 'data-setting': setting, autocomplete: 'new-password',
      placeholder: 'unchanged', spellcheck: 'false',
    }))));
}

/** The settings filled in a channel's form, or null when none is. @param {Element} form */
function readReplaced(form) {
  /** @type {Record<string, string>} */
  const found = {};
  for (const input of /** @type {NodeListOf<HTMLInputElement>} */ (form.querySelectorAll('input[data-setting]'))) {
    if (input.value.trim()) found[/** @type {string} */ (input.dataset.setting)] = input.value.trim();
  }
  return Object.keys(found).length ? found : null;
}

/** The masked address a channel sends to, for recognising it. @param {any} channel */
function target(channel) {
  const s = channel.settings || {};
  if (channel.kind === 'email') return (s.to || []).join(', ');
  if (channel.kind === 'telegram') return `chat ${s.chat_id}`;
  return s.url || s.endpoint || '';
}

/** @param {any} result */
function resultLine(result) {
  if (!result) return h('p', { class: 'result' }, 'Not used yet.');
  const good = result.outcome === 'delivered';
  return h('p', { class: 'result ' + (good ? 'good' : 'bad') },
    `${good ? 'Last: sent' : 'Last: ' + result.outcome}${result.detail ? ' · ' + result.detail : ''}`);
}

/** One channel's row: what it is, its events and filter, and its buttons. @param {any} channel */
function channelItem(channel) {
  const prefix = `ch-${channel.id}`;
  const targetText = h('span', { class: 'target' }, target(channel));
  const enabled = h('input', { type: 'checkbox', name: 'enabled', checked: channel.enabled });
  const filter = h('input', {
    type: 'text', name: 'name_filter', maxlength: 600, value: channel.name_filter || '',
    placeholder: 'all runs (or train-*, or a part of the name)',
  });
  let result = resultLine(channel.last_result);
  const save = h('button', { type: 'submit', class: 'primary', 'data-action': 'save' }, 'Save');
  const test = h('button', { type: 'button', 'data-action': 'test' }, 'Test');
  const remove = h('button', { type: 'button', class: 'quiet', 'data-action': 'remove' }, 'Remove');
  const form = /** @type {HTMLFormElement} */ (h('form', { class: 'channel-form' },
    h('label', { class: 'check' }, enabled, 'On'),
    eventChoice(prefix, channel.events),
    h('label', {}, 'Only runs named', filter),
    replaceFields(channel),
    h('div', { class: 'actions' }, save, test, remove),
    result));
  const setResult = (/** @type {Element} */ line) => { result.replaceWith(line); result = line; };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const replaced = readReplaced(form);
    try {
      const saved = await api(`/notify/channels/${channel.id}`, {
        method: 'PATCH',
        body: {
          enabled: /** @type {HTMLInputElement} */ (enabled).checked,
          events: readEvents(form),
          name_filter: /** @type {HTMLInputElement} */ (filter).value.trim() || null,
          ...(replaced ? { settings_update: replaced } : {}),
        },
      });
      // What was typed is not kept in the page once the server has it.
      for (const input of /** @type {NodeListOf<HTMLInputElement>} */ (form.querySelectorAll('input[data-setting]'))) {
        input.value = '';
      }
      targetText.textContent = target(saved);
      setResult(h('p', { class: 'result good' }, 'Saved.'));
    } catch (err) {
      setResult(h('p', { class: 'result bad' }, message(err)));
    }
  });
  test.addEventListener('click', async () => {
    setResult(h('p', { class: 'result' }, 'Sending a test…'));
    try {
      const answer = await api(`/notify/channels/${channel.id}/test`, { method: 'POST' });
      const good = answer.outcome === 'delivered';
      setResult(h('p', { class: 'result ' + (good ? 'good' : 'bad') },
        `${good ? 'Test sent' : 'Test not delivered (' + answer.outcome + ')'}: ${answer.detail || 'no answer'}`));
    } catch (err) {
      setResult(h('p', { class: 'result bad' }, message(err)));
    }
  });
  remove.addEventListener('click', async () => {
    if (!window.confirm(`Remove ${channel.name}?`)) return;
    try {
      await api(`/notify/channels/${channel.id}`, { method: 'DELETE' });
      await refresh();
    } catch (err) {
      setResult(h('p', { class: 'result bad' }, message(err)));
    }
  });
  return h('li', { 'data-id': channel.id, 'data-kind': channel.kind },
    h('div', { class: 'channel-title' },
      h('strong', {}, channel.name), h('span', { class: 'kind' }, KIND_LABELS[channel.kind] || channel.kind),
      targetText),
    form);
}

/** @param {any} d one delivery */
function deliveryItem(d) {
  const when = new Date(d.created_at).toLocaleString();
  const retry = d.state === 'pending' && d.attempts > 0 && d.next_attempt_at
    ? ` · retrying at ${new Date(d.next_attempt_at).toLocaleTimeString()}` : '';
  return h('li', { class: d.state, 'data-state': d.state },
    h('div', { class: 'what' },
      h('span', { class: 'state' }, STATE_LABELS[d.state] || d.state),
      h('a', { href: d.url }, d.title),
      h('span', { class: 'hint' }, `to ${d.channel_name} · ${when}${retry}`)),
    d.detail && d.state !== 'delivered' ? h('p', { class: 'detail' }, d.detail) : null);
}

async function loadDeliveries() {
  const list = /** @type {HTMLElement} */ (document.getElementById('deliveries'));
  const { deliveries } = await api('/notify/deliveries', { params: { limit: 30 } });
  list.replaceChildren(...deliveries.map(deliveryItem));
  /** @type {HTMLElement} */ (document.getElementById('deliveries-empty')).hidden = deliveries.length > 0;
}

async function refresh() {
  try {
    const data = await api('/notify/channels');
    meta.events = data.events;
    meta.defaults = data.default_events;
    meta.longRunS = data.long_run_s;
    channelList.replaceChildren(...data.channels.map(channelItem));
    /** @type {HTMLElement} */ (document.getElementById('channels-empty')).hidden = data.channels.length > 0;
    const slot = /** @type {HTMLElement} */ (addForm.querySelector('[data-events]'));
    if (!slot.firstChild) slot.append(eventChoice('add', null));
    await loadDeliveries();
    show(errorBox, null);
  } catch (err) {
    show(errorBox, message(err));
  }
}

// --- adding a channel ---------------------------------------------------------------------------

/** base64url of random bytes: a webhook's signing secret, made here so the person can copy it. */
function newSecret() {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return 'whsec_' + btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function showKindFields() {
  const kind = /** @type {HTMLSelectElement} */ (addForm.elements.namedItem('kind')).value;
  for (const label of /** @type {NodeListOf<HTMLElement>} */ (addForm.querySelectorAll('[data-kinds]'))) {
    label.hidden = !(label.dataset.kinds || '').split(' ').includes(kind);
  }
  const secret = /** @type {HTMLInputElement} */ (addForm.elements.namedItem('secret'));
  if (kind === 'webhook' && !secret.value) secret.value = newSecret();
}

addForm.addEventListener('change', (event) => {
  if (/** @type {HTMLElement} */ (event.target).getAttribute('name') === 'kind') showKindFields();
});

addForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const kind = /** @type {HTMLSelectElement} */ (addForm.elements.namedItem('kind')).value;
  /** @type {Record<string, string>} */
  const settings = {};
  for (const label of /** @type {NodeListOf<HTMLElement>} */ (addForm.querySelectorAll('[data-kinds]'))) {
    if (label.hidden) continue;
    const field = /** @type {HTMLInputElement | null} */ (label.querySelector('input, select'));
    if (field && field.value.trim()) settings[field.name] = field.value.trim();
  }
  const text = (/** @type {string} */ name) => /** @type {HTMLInputElement} */ (addForm.elements.namedItem(name)).value.trim();
  try {
    await api('/notify/channels', {
      method: 'POST',
      body: { kind, name: text('name') || null, settings, events: readEvents(addForm),
              name_filter: text('name_filter') || null },
    });
    show(addError, null);
    addForm.reset();
    showKindFields();
    await refresh();
  } catch (err) {
    show(addError, message(err));
  }
});

// --- this device: Web Push ----------------------------------------------------------------------

/** @param {string} text base64url */
function fromBase64Url(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function deviceName() {
  const ua = navigator.userAgent;
  const os = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Mac OS/.test(ua) ? 'Mac'
    : /Windows/.test(ua) ? 'Windows' : /Linux/.test(ua) ? 'Linux' : 'a device';
  return `Browser on ${os}`;
}

async function setUpPush() {
  const state = /** @type {HTMLElement} */ (document.getElementById('push-state'));
  const button = /** @type {HTMLButtonElement} */ (document.getElementById('push-subscribe'));
  if (!window.isSecureContext || !('serviceWorker' in navigator) || !('PushManager' in window)) {
    state.textContent = 'This browser cannot get push notifications from this address: it needs HTTPS '
      + '(on an iPhone, add the dashboard to the home screen first). Use ntfy, Telegram, Slack or email below.';
    return;
  }
  const registration = await navigator.serviceWorker.register('/sw.js', { scope: '/' });
  const existing = await registration.pushManager.getSubscription();
  state.textContent = existing
    ? 'This device is subscribed. Subscribe again if it stopped getting notifications.'
    : 'Get a notification on this device, even with the dashboard closed.';
  button.hidden = false;
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const permission = await Notification.requestPermission();
      if (permission !== 'granted') {
        state.textContent = 'Notifications are blocked for this site: allow them in the browser\'s settings.';
        return;
      }
      const { public_key: key } = await api('/notify/webpush_key');
      const subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true, applicationServerKey: fromBase64Url(key),
      });
      await api('/notify/channels', {
        method: 'POST', body: { kind: 'webpush', name: deviceName(), settings: subscription.toJSON() },
      });
      state.textContent = 'This device is subscribed.';
      await refresh();
    } catch (err) {
      state.textContent = `Could not subscribe this device: ${message(err)}`;
    } finally {
      button.disabled = false;
    }
  });
}

showKindFields();
refresh();
setUpPush().catch((err) => {
  /** @type {HTMLElement} */ (document.getElementById('push-state')).textContent =
    `Push notifications are not available here: ${message(err)}`;
});

// @ts-check
// The text of log lines, apart from the page: escape codes, \r redraws, search matches, and
// colours as HTML. Pure functions of strings; nothing here touches the DOM.
//
// Log text is untrusted. ansiToHtml goes through ansi_up, which escapes the text (& < > " ')
// before it wraps it in colour spans, and whose hyperlinks are switched off.

import { AnsiUp } from '../vendor/ansi_up/ansi_up.js';

// Operating-system commands (window titles, OSC 8 hyperlinks): dropped, their text kept.
const OSC_PATTERN = /\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?/g;
// CSI, OSC and two-byte escape sequences.
const ANSI_PATTERN = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])/g;

/**
 * The text of a line as plain characters, its escape codes removed.
 * @param {string} text
 * @returns {string}
 */
export function stripAnsi(text) {
  return text.replace(ANSI_PATTERN, '');
}

/**
 * What a terminal would show of a line drawn over with \r: the part after the last one.
 * @param {string} text
 * @returns {string}
 */
export function visible(text) {
  const trimmed = text.endsWith('\r') ? text.replace(/\r+$/, '') : text;
  const cr = trimmed.lastIndexOf('\r');
  return cr === -1 ? trimmed : trimmed.slice(cr + 1);
}

/**
 * A line's text as HTML, coloured: its text escaped, its SGR codes as ansi-* class spans, other
 * escape codes dropped. Each line starts from plain text, as it may be shown alone: a fresh
 * converter per line, since ansi_up keeps colours (and an unfinished escape code) from one call
 * to the next and has no public way to forget them.
 * @param {string} text
 * @returns {string}
 */
export function ansiToHtml(text) {
  const ansi = new AnsiUp();
  ansi.use_classes = true;
  ansi.url_allowlist = {};
  return ansi.ansi_to_html(text.replace(OSC_PATTERN, ''));
}

/**
 * `text` cut into pieces, those that are case-insensitive occurrences of `term` marked as hits.
 * An empty term is one piece, not a hit.
 * @param {string} text
 * @param {string} term
 * @returns {{text: string, hit: boolean}[]}
 */
export function splitMatches(text, term) {
  const lower = text.toLowerCase();
  const needle = term.toLowerCase();
  /** @type {{text: string, hit: boolean}[]} */
  const pieces = [];
  let at = 0;
  // Lowering keeps the length of almost every string; where it does not, marks would be off.
  if (needle && lower.length === text.length) {
    for (let hit = lower.indexOf(needle); hit !== -1; hit = lower.indexOf(needle, at)) {
      if (hit > at) pieces.push({ text: text.slice(at, hit), hit: false });
      pieces.push({ text: text.slice(hit, hit + needle.length), hit: true });
      at = hit + needle.length;
    }
  }
  if (at < text.length) pieces.push({ text: text.slice(at), hit: false });
  return pieces;
}

/**
 * Whether a line's plain text holds `term`, in any case.
 * @param {string} text
 * @param {string} term
 * @returns {boolean}
 */
export function holds(text, term) {
  return stripAnsi(text).toLowerCase().includes(term.toLowerCase());
}

// tqdm's " 42%|", a run of bar blocks (tqdm, rich, pip), or Keras' "[=====>....]".
const BAR_PATTERN = /\d%\||[█▏▎▍▌▋▊▉━]{4}|\[[=#]{3,}>?[ .]*\]/;

/**
 * Whether a line's text looks like a progress bar (drawn for the width of a terminal: shown
 * on one line, never wrapped, even once finished).
 * @param {string} text
 * @returns {boolean}
 */
export function looksLikeProgress(text) {
  return BAR_PATTERN.test(text);
}

// tqdm's times and rate ("[00:05<00:07, 8.21it/s]", or "[00:05, 8.21it/s]" without a total)
// with more text after them
const TEXT_AFTER_BAR = /\[(?:\d+:)?\d\d:\d\d[<,][^\]]*\]\s*\S/;

/**
 * Whether a line's text goes on after a progress bar's state: what was printed right after the
 * bar (a print inside a tqdm loop), which a terminal shows on the rows the line wraps onto.
 * @param {string} text
 * @returns {boolean}
 */
export function goesOnAfterBar(text) {
  return TEXT_AFTER_BAR.test(text);
}

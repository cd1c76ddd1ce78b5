// The log of a run: the tail first, older lines fetched on scroll, live lines from the run's
// event stream, search, and at most MAX_ROWS lines in the page however long the log is.
//
// Log text is untrusted. A line without escape codes becomes a text node; a line with them goes
// through ansi_up, which escapes the text (& < > " ') before it wraps it in colour spans, and
// whose hyperlinks are switched off.

import { AnsiUp } from '../vendor/ansi_up/ansi_up.js';
import { api } from './api.js';
import { formatClock, parseTime } from './dom.js';

const FIRST_PAGE = 200; // lines fetched to open a log
const PAGE = 500; // lines fetched per scroll step
const MAX_ROWS = 5000; // rows kept in the page; lines farther away are dropped, fetched again
const MAX_QUEUE = 5000; // live lines held while the view is away from the tail
const NEAR_EDGE_PX = 400;
const AT_BOTTOM_PX = 24;

const ansi = new AnsiUp();
ansi.use_classes = true;
ansi.url_allowlist = {};

// Operating-system commands (window titles, OSC 8 hyperlinks): dropped, their text kept.
const OSC_PATTERN = /\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?/g;
// CSI, OSC and two-byte escape sequences.
const ANSI_PATTERN = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])/g;

/** The text of a line as plain characters, its escape codes removed. */
export function stripAnsi(text) {
  return text.replace(ANSI_PATTERN, '');
}

/** What a terminal would show of a line drawn over with \r: the part after the last one. */
function visible(text) {
  const trimmed = text.endsWith('\r') ? text.replace(/\r+$/, '') : text;
  const cr = trimmed.lastIndexOf('\r');
  return cr === -1 ? trimmed : trimmed.slice(cr + 1);
}

function paintAnsi(el, text) {
  if (!text.includes('\x1b')) {
    el.textContent = text;
    return;
  }
  // Each line is painted on its own: start from plain text, as the line may be shown alone.
  ansi.bold = ansi.faint = ansi.italic = ansi.underline = false;
  ansi.fg = ansi.bg = null;
  ansi._buffer = '';
  el.innerHTML = ansi.ansi_to_html(text.replace(OSC_PATTERN, ''));
}

/** Plain text with each case-insensitive occurrence of `term` wrapped in <mark>. */
function paintMatches(el, text, term) {
  const plain = stripAnsi(text);
  const lower = plain.toLowerCase();
  const needle = term.toLowerCase();
  el.replaceChildren();
  let at = 0;
  for (let hit = lower.indexOf(needle); hit !== -1 && needle; hit = lower.indexOf(needle, at)) {
    if (hit > at) el.append(plain.slice(at, hit));
    const mark = document.createElement('mark');
    mark.textContent = plain.slice(hit, hit + needle.length);
    el.append(mark);
    at = hit + needle.length;
  }
  if (at < plain.length) el.append(plain.slice(at));
}

export class LogView {
  /**
   * @param {object} o
   * @param {string} o.runUuid
   * @param {HTMLElement} o.scroller  the scrolling box
   * @param {HTMLElement} o.rows      where line rows go, inside the scroller
   * @param {HTMLElement} o.topEdge   a note above the rows ("Beginning of log", "Loading…")
   * @param {HTMLElement} o.bottomEdge a note below them ("No output yet")
   * @param {HTMLElement} o.jumpButton "Jump to latest"
   * @param {HTMLElement} o.searchStatus the bar saying what is searched, with a clear button
   */
  constructor(o) {
    Object.assign(this, o);
    this.mode = 'tail'; // or 'search': only lines matching this.query
    this.query = '';
    this.highlight = ''; // a term to mark, in search results and the context they open
    this.minSeq = Infinity; // seq range of the rows in the page
    this.maxSeq = 0;
    this.hasOlder = false;
    this.atTail = false; // the rows reach the newest line known
    this.following = true; // scrolled to the bottom at the tail: new lines scroll into view
    this.busy = 0; // a reload in flight: live lines wait in the queue
    this.loadingOlder = false;
    this.loadingNewer = false;
    this.queue = []; // live lines not yet shown
    this.queueOverflowed = false;
    this.unseen = 0; // live lines that came while the view was not following
    this.openRows = {}; // stream -> row the next line of that stream continues or redraws
    this.shownFirstLine = false;
    this.flushScheduled = false;
    this.view = 0;

    this.scroller.addEventListener('scroll', () => this.onScroll(), { passive: true });
    this.jumpButton.addEventListener('click', () => this.jumpToLatest());
    this.rows.addEventListener('click', (event) => {
      const row = event.target.closest('.line');
      if (row && this.mode === 'search' && !window.getSelection().toString()) {
        this.openAt(Number(row.dataset.seq));
      }
    });
    this.searchStatus.querySelector('button').addEventListener('click', () => this.search(''));
  }

  url() {
    return '/runs/' + encodeURIComponent(this.runUuid) + '/logs';
  }

  async fetchLines(params) {
    const query = this.mode === 'search' ? { ...params, q: this.query } : params;
    const data = await api(this.url(), { params: query });
    return data.lines || [];
  }

  // --- rows ------------------------------------------------------------------------------------

  makeRow(line) {
    const row = document.createElement('div');
    const ts = document.createElement('span');
    ts.className = 'ts';
    ts.textContent = formatClock(parseTime(line.timestamp));
    const text = document.createElement('span');
    text.className = 'text';
    row.append(ts, text);
    row.dataset.stream = line.stream;
    row.firstSeq = line.seq; // of its first piece (data-seq: of its last)
    row.lineText = line.text;
    this.setLineState(row, line);
    this.paint(row);
    return row;
  }

  setLineState(row, line) {
    row.dataset.seq = line.seq;
    row.partial = Boolean(line.partial);
    row.progress = Boolean(line.progress);
    row.className = 'line' + (line.stream === 'stderr' ? ' stderr' : '')
      + (row.progress ? ' progress' : '') + (this.mode === 'search' ? ' hit' : '');
    row.title = line.timestamp || '';
  }

  paint(row) {
    const el = row.lastChild;
    if (this.highlight) paintMatches(el, visible(row.lineText), this.highlight);
    else paintAnsi(el, visible(row.lineText));
  }

  /**
   * Rows for lines in order. A line continues the open row of its stream (in `open`, stream ->
   * row, which it updates): a progress line redraws it, the next piece of a long line extends it.
   */
  build(lines, open = {}) {
    const fragment = document.createDocumentFragment();
    for (const line of lines) {
      const row = this.mode === 'search' ? null : open[line.stream];
      if (row && (row.partial || row.progress)) {
        row.lineText = row.partial ? row.lineText + line.text : line.text;
        this.setLineState(row, line);
        this.paint(row);
      } else {
        const fresh = this.makeRow(line);
        fragment.append(fresh);
        open[line.stream] = fresh;
      }
      if (!(line.partial || line.progress)) open[line.stream] = null;
    }
    return fragment;
  }

  get rowCount() {
    return this.rows.childElementCount;
  }

  clear() {
    this.view++; // a page fetched for the rows shown before is no longer wanted
    this.rows.replaceChildren();
    this.minSeq = Infinity;
    this.maxSeq = 0;
    this.openRows = {};
    this.unseen = 0;
  }

  /** Per stream, its last row when the next line continues it (a long line's piece) or
   * redraws it (a progress line). */
  unfinishedRows() {
    const found = {};
    for (let row = this.rows.lastElementChild; row; row = row.previousElementSibling) {
      const stream = row.dataset.stream;
      if (!(stream in found)) found[stream] = row.partial || row.progress ? row : null;
      if ('stdout' in found && 'stderr' in found) break;
    }
    return found;
  }

  append(lines) {
    const fresh = lines.filter((line) => line.seq > this.maxSeq);
    if (!fresh.length) return 0;
    const open = this.atTail ? this.openRows : this.mode === 'search' ? {} : this.unfinishedRows();
    this.rows.append(this.build(fresh, open));
    this.maxSeq = fresh[fresh.length - 1].seq;
    if (this.minSeq === Infinity) this.minSeq = fresh[0].seq;
    this.markShown();
    return fresh.length;
  }

  prepend(lines) {
    if (!lines.length) return;
    const height = this.scroller.scrollHeight;
    const older = this.build(lines);
    if (this.mode !== 'search') this.joinOlderPieces(older);
    this.rows.prepend(older);
    this.minSeq = Math.min(this.minSeq, lines[0].seq);
    this.maxSeq = Math.max(this.maxSeq, lines[lines.length - 1].seq);
    this.scroller.scrollTop += this.scroller.scrollHeight - height;
    this.markShown();
  }

  /**
   * A long line cut by the page boundary: its pieces among the older rows go to the front of
   * the row shown for the rest of it.
   */
  joinOlderPieces(older) {
    for (const stream of ['stdout', 'stderr']) {
      let last = older.lastElementChild;
      while (last && last.dataset.stream !== stream) last = last.previousElementSibling;
      if (!last || !last.partial) continue;
      let next = this.rows.firstElementChild;
      while (next && next.dataset.stream !== stream) next = next.nextElementSibling;
      if (!next) continue;
      next.lineText = last.lineText + next.lineText;
      next.firstSeq = last.firstSeq;
      this.paint(next);
      last.remove();
    }
  }

  /**
   * Drop rows beyond MAX_ROWS from the top (keeping the view still) or from the bottom. A row
   * whose pieces interleave with a dropped row's goes too, so that the rows left hold every line
   * from minSeq to maxSeq, and the lines dropped come back whole when fetched again.
   */
  trim(fromTop) {
    let excess = this.rowCount - MAX_ROWS;
    if (excess <= 0) return;
    if (fromTop) {
      const height = this.scroller.scrollHeight;
      let highest = 0; // the highest seq dropped
      for (let row = this.rows.firstElementChild; row && (excess > 0 || row.firstSeq < highest);
        row = this.rows.firstElementChild, excess--) {
        highest = Math.max(highest, Number(row.dataset.seq));
        row.remove();
      }
      this.scroller.scrollTop -= height - this.scroller.scrollHeight;
      this.minSeq = this.rows.firstElementChild ? this.rows.firstElementChild.firstSeq : highest + 1;
      this.hasOlder = true;
      // A line still open at the tail whose row was dropped starts a new row when it goes on.
      for (const stream of Object.keys(this.openRows)) {
        if (this.openRows[stream] && !this.openRows[stream].isConnected) this.openRows[stream] = null;
      }
    } else {
      let lowest = Infinity; // the lowest seq dropped
      for (let row = this.rows.lastElementChild; row && (excess > 0 || Number(row.dataset.seq) > lowest);
        row = this.rows.lastElementChild, excess--) {
        lowest = Math.min(lowest, row.firstSeq);
        row.remove();
      }
      this.maxSeq = this.rows.lastElementChild ? Number(this.rows.lastElementChild.dataset.seq) : lowest - 1;
      this.leaveTail();
    }
  }

  leaveTail() {
    this.atTail = false;
    this.following = false;
    this.openRows = {};
  }

  markShown() {
    if (this.shownFirstLine || !this.rowCount) return;
    this.shownFirstLine = true;
    performance.mark('hyperdash:first-log-line');
  }

  // --- loading ---------------------------------------------------------------------------------

  /** Show the newest lines (of the search, in search mode) and follow them. */
  async loadTail() {
    this.busy++;
    this.queueOverflowed = false;
    this.setEdges('loading');
    const request = this.tailRequest = (this.tailRequest || 0) + 1;
    let lines;
    try {
      lines = await this.fetchLines({ tail: FIRST_PAGE });
    } finally {
      this.busy--;
    }
    if (request === this.tailRequest) this.showTail(lines, FIRST_PAGE);
  }

  /** Show `lines`, the last `limit` lines of the log (or all of them, if fewer), at the tail. */
  showTail(lines, limit) {
    this.clear();
    this.atTail = true;
    this.following = true;
    this.hasOlder = lines.length >= limit;
    this.append(lines);
    this.scrollToBottom();
    this.setEdges();
    this.scheduleFlush();
  }

  /** Open the log around one line (a search hit), marking the searched term. */
  async openAt(seq) {
    const term = this.query;
    this.mode = 'tail';
    this.query = '';
    this.highlight = term;
    this.showSearchStatus();
    this.busy++;
    this.setEdges('loading');
    let target = null;
    try {
      const [before, after] = await Promise.all([
        this.fetchLines({ before: seq + 1, limit: 100 }),
        this.fetchLines({ after: seq, limit: 150 }),
      ]);
      this.clear();
      this.atTail = after.length < 150;
      this.following = false;
      this.hasOlder = before.length >= 100;
      this.append(before.concat(after));
      target = this.rows.querySelector(`.line[data-seq="${seq}"]`);
    } finally {
      this.busy--;
    }
    this.setEdges();
    if (target) {
      target.classList.add('target');
      target.scrollIntoView({ block: 'center' });
    }
    this.onScroll();
    this.scheduleFlush();
  }

  async loadOlder() {
    if (this.loadingOlder || !this.hasOlder || this.busy || this.minSeq === Infinity) return;
    this.loadingOlder = true;
    this.setEdges();
    const view = this.view;
    try {
      const lines = await this.fetchLines({ before: this.minSeq, limit: PAGE });
      if (view !== this.view) return;
      this.hasOlder = lines.length >= PAGE;
      this.prepend(lines.filter((line) => line.seq < this.minSeq));
      this.trim(false);
    } catch (err) {
      this.onError(err);
    } finally {
      this.loadingOlder = false;
    }
    this.setEdges();
    this.onScroll();
  }

  async loadNewer() {
    if (this.loadingNewer || this.atTail || this.busy) return;
    this.loadingNewer = true;
    this.queueOverflowed = false;
    const view = this.view;
    try {
      const lines = await this.fetchLines({ after: this.maxSeq, limit: PAGE });
      if (view !== this.view) return;
      this.append(lines);
      if (lines.length < PAGE && !this.queueOverflowed) {
        this.atTail = true;
        this.openRows = this.unfinishedRows(); // live lines continue them from now on
        this.unseen = 0;
      }
      this.trim(true);
    } catch (err) {
      this.onError(err);
    } finally {
      this.loadingNewer = false;
    }
    this.setEdges();
    this.scheduleFlush();
    this.onScroll();
  }

  // --- live lines ------------------------------------------------------------------------------

  /** A line from the event stream. */
  push(line) {
    if (this.mode === 'search' && !stripAnsi(line.text).toLowerCase().includes(this.query.toLowerCase())) {
      return;
    }
    this.queue.push(line);
    if (this.queue.length > MAX_QUEUE) {
      this.queue.splice(0, this.queue.length - MAX_QUEUE);
      this.queueOverflowed = true;
    }
    this.scheduleFlush();
  }

  scheduleFlush() {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // A hidden tab gets no animation frames; a timer still runs there, if more slowly.
    const run = () => {
      if (!this.flushScheduled) return;
      this.flushScheduled = false;
      this.flush();
    };
    requestAnimationFrame(run);
    setTimeout(run, 250);
  }

  flush() {
    if (this.busy || !this.queue.length) return;
    if (this.queueOverflowed && this.atTail) {
      // More lines came than are held: the ones between are fetched again.
      this.queue = [];
      this.queueOverflowed = false;
      if (this.following) {
        this.loadTail().catch((err) => this.onError(err));
        return;
      }
      this.leaveTail();
    }
    if (!this.atTail) {
      this.unseen = this.queue.filter((line) => line.seq > this.maxSeq).length;
      this.updateJump();
      return;
    }
    if (!this.following && this.rowCount >= MAX_ROWS) {
      this.leaveTail();
      this.unseen = this.queue.length;
      this.updateJump();
      return;
    }
    const lines = this.queue;
    this.queue = [];
    const added = this.append(lines);
    if (this.following) {
      this.trim(true);
      this.scrollToBottom();
    } else {
      this.unseen += added;
    }
    this.setEdges();
    this.updateJump();
  }

  // --- scrolling -------------------------------------------------------------------------------

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.following = this.atTail;
    if (this.following) this.unseen = 0;
    this.updateJump();
  }

  onScroll() {
    const el = this.scroller;
    const fromBottom = el.scrollHeight - el.scrollTop - el.clientHeight;
    const wasFollowing = this.following;
    this.following = this.atTail && fromBottom <= AT_BOTTOM_PX;
    if (this.following && !wasFollowing) {
      this.unseen = 0;
      this.scheduleFlush();
    }
    this.updateJump();
    if (el.scrollTop < NEAR_EDGE_PX) this.loadOlder();
    if (fromBottom < NEAR_EDGE_PX && !this.atTail) this.loadNewer();
  }

  async jumpToLatest() {
    if (this.atTail && this.mode === 'tail' && !this.highlight) {
      this.scrollToBottom();
      this.scheduleFlush();
      return;
    }
    this.highlight = this.mode === 'search' ? this.query : '';
    this.showSearchStatus();
    await this.loadTail().catch((err) => this.onError(err));
  }

  updateJump() {
    const show = !this.following && this.rowCount > 0;
    this.jumpButton.hidden = !show;
    const count = this.jumpButton.querySelector('.count');
    count.textContent = this.unseen > 0 ? ` · ${this.unseen.toLocaleString()} new` : '';
  }

  setEdges(state) {
    if (state === 'loading' && !this.rowCount) {
      this.topEdge.textContent = 'Loading…';
    } else if (this.loadingOlder) {
      this.topEdge.textContent = 'Loading earlier lines…';
    } else if (!this.hasOlder && this.rowCount) {
      this.topEdge.textContent = this.mode === 'search' ? 'No earlier matches' : 'Beginning of log';
    } else {
      this.topEdge.textContent = '';
    }
    this.bottomEdge.hidden = this.rowCount > 0 || state === 'loading';
    this.bottomEdge.textContent = this.mode === 'search' ? 'No lines match.' : 'No output yet.';
  }

  // --- search ----------------------------------------------------------------------------------

  /** Show only lines holding `term` (case-insensitive); an empty term shows the whole log. */
  async search(term) {
    this.query = term;
    this.mode = term ? 'search' : 'tail';
    this.highlight = term;
    this.queue = [];
    this.showSearchStatus();
    await this.loadTail().catch((err) => this.onError(err));
  }

  showSearchStatus() {
    const label = this.searchStatus.querySelector('span');
    if (this.mode === 'search') {
      label.textContent = `Lines matching “${this.query}” · tap one to see it in context`;
    } else if (this.highlight) {
      label.textContent = `Around a line matching “${this.highlight}”`;
    } else {
      this.searchStatus.hidden = true;
      return;
    }
    this.searchStatus.hidden = false;
  }
}

// @ts-check
// The log of a run: the tail first, older lines fetched on scroll, live lines from the run's
// event stream, search, and at most MAX_ROWS lines in the page however long the log is.
//
// Log text is untrusted. A line without escape codes becomes a text node; a line with them goes
// through ansiToHtml (logtext.js), which escapes the text before it wraps it in colour spans.
// What the page knows of each row (its lines' seqs, stream, text) lives in a WeakMap beside
// the row, never on the element.

import { api } from './api.js';
import { formatClock, parseTime } from './dom.js';
import {
  ansiToHtml, goesOnAfterBar, holds, looksLikeProgress, splitMatches, stripAnsi, visible,
} from './logtext.js';

const FIRST_PAGE = 200; // lines fetched to open a log
const PAGE = 500; // lines fetched per scroll step
const MAX_ROWS = 5000; // rows kept in the page; lines farther away are dropped, fetched again
const MAX_QUEUE = 5000; // live lines held while the view is away from the tail
const NEAR_EDGE_PX = 400;
const AT_BOTTOM_PX = 24;

/**
 * A log line as the API and the event stream give it.
 * @typedef {{seq: number, stream: string, text: string, timestamp?: string,
 *   partial?: boolean, progress?: boolean}} Line
 */

/**
 * What a row shows: a line, or the pieces of a long line joined, or a progress bar's latest
 * state.
 * @typedef {object} RowState
 * @property {number} firstSeq  seq of its first piece
 * @property {number} seq       seq of its last piece (or latest state)
 * @property {string} stream
 * @property {string} text      the whole text, escape codes included
 * @property {boolean} partial  the next line of its stream continues it
 * @property {boolean} progress the next line of its stream redraws it
 * @property {boolean} bar      a progress bar, drawing or done: never wrapped
 */

/** @typedef {Map<string, HTMLElement | null>} OpenRows stream -> its row still open */

/**
 * A class given to the rows of some lines: 'failure', the lines that show where the run failed
 * (failure.js); 'target', the line a search hit opened.
 * @typedef {'failure' | 'target'} RowMark
 */

/**
 * The lines a mark is for: seqs `first` to `last`, of one stream if it names one.
 * @typedef {{first: number, last: number, stream?: string}} MarkedLines
 */

/**
 * Paint a line's text into `el`: coloured, or as plain text with `term` marked.
 * @param {HTMLElement} el
 * @param {string} text
 * @param {string} term
 */
function paintText(el, text, term) {
  if (term) {
    el.replaceChildren(...splitMatches(stripAnsi(text), term).map((piece) => {
      if (!piece.hit) return piece.text;
      const mark = document.createElement('mark');
      mark.textContent = piece.text;
      return mark;
    }));
  } else if (text.includes('\x1b')) {
    el.innerHTML = ansiToHtml(text);
  } else {
    el.textContent = text;
  }
}

/**
 * Whether `line` erases its stream's progress bar (an empty progress line, as tqdm's
 * leave=False ends): it removes the bar's row and is no row itself.
 * @param {Line} line
 */
function erases(line) {
  return Boolean(line.progress) && !line.text;
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
   * @param {(err: unknown) => void} o.onError
   */
  constructor(o) {
    this.runUuid = o.runUuid;
    this.scroller = o.scroller;
    this.rows = o.rows;
    this.topEdge = o.topEdge;
    this.bottomEdge = o.bottomEdge;
    this.jumpButton = o.jumpButton;
    this.searchStatus = o.searchStatus;
    this.onError = o.onError;
    /** @type {WeakMap<Element, RowState>} */
    this.states = new WeakMap();
    /** @type {'tail' | 'search'} */
    this.mode = 'tail'; // 'search': only lines matching this.query
    this.query = '';
    this.highlight = ''; // a term to mark, in search results and the context they open
    /** @type {Map<RowMark, MarkedLines>} */
    this.marks = new Map(); // given by setLineState to every row it makes or remakes for them
    this.minSeq = Infinity; // seq range of the rows in the page
    this.maxSeq = 0;
    this.hasOlder = false;
    this.atTail = false; // the rows reach the newest line known
    this.following = true; // scrolled to the bottom at the tail: new lines scroll into view
    this.busy = 0; // a reload in flight: live lines wait in the queue
    this.loadingOlder = false;
    this.loadingNewer = false;
    /** @type {Line[]} */
    this.queue = []; // live lines not yet shown
    this.queueOverflowed = false;
    this.unseen = 0; // live lines that came while the view was not following
    /** @type {OpenRows} */
    this.openRows = new Map(); // the row the next line of a stream continues or redraws
    this.shownFirstLine = false;
    this.flushScheduled = false;
    this.view = 0;
    this.tailRequest = 0;

    this.scroller.addEventListener('scroll', () => this.onScroll(), { passive: true });
    this.jumpButton.addEventListener('click', () => this.jumpToLatest());
    this.rows.addEventListener('click', (event) => {
      const row = event.target instanceof Element ? event.target.closest('.line') : null;
      const selected = window.getSelection()?.toString();
      if (row && this.mode === 'search' && !selected) this.openAt(this.state(row).seq);
    });
    this.clearButton().addEventListener('click', () => this.search(''));
  }

  /** @returns {HTMLButtonElement} */
  clearButton() {
    return /** @type {HTMLButtonElement} */ (this.searchStatus.querySelector('button'));
  }

  url() {
    return '/runs/' + encodeURIComponent(this.runUuid) + '/logs';
  }

  /**
   * @param {Record<string, number | string>} params
   * @returns {Promise<Line[]>}
   */
  async fetchLines(params) {
    const query = this.mode === 'search' ? { ...params, q: this.query } : params;
    const data = await api(this.url(), { params: query });
    return data.lines || [];
  }

  // --- rows ------------------------------------------------------------------------------------

  /**
   * @param {Element} row
   * @returns {RowState}
   */
  state(row) {
    const found = this.states.get(row);
    if (!found) throw new Error('a log row without its state');
    return found;
  }

  /** @param {Line} line */
  makeRow(line) {
    const row = document.createElement('div');
    const ts = document.createElement('span');
    ts.className = 'ts';
    ts.textContent = formatClock(parseTime(line.timestamp));
    const text = document.createElement('span');
    text.className = 'text';
    row.append(ts, text);
    this.states.set(row, {
      firstSeq: line.seq, seq: line.seq, stream: line.stream, text: line.text,
      partial: false, progress: false, bar: false,
    });
    this.setLineState(row, line);
    this.paint(row);
    return row;
  }

  /**
   * The row now ends with `line`, its latest piece or state.
   * @param {HTMLElement} row
   * @param {Line} line
   */
  setLineState(row, line) {
    const state = this.state(row);
    state.seq = line.seq;
    state.partial = Boolean(line.partial);
    state.progress = Boolean(line.progress);
    const shown = visible(state.text);
    // (a line printed right after a bar goes on its row: the row wraps, as on the terminal, so
    // the line is not cut off with the bar)
    state.bar = (state.bar || state.progress || looksLikeProgress(shown)) && !goesOnAfterBar(shown);
    let classes = 'line' + (line.stream === 'stderr' ? ' stderr' : '')
      + (state.progress ? ' progress' : '') + (state.bar ? ' bar' : '')
      + (this.mode === 'search' ? ' hit' : '');
    for (const name of this.marks.keys()) {
      if (this.shows(name, state)) classes += ' ' + name;
    }
    row.className = classes;
    row.title = line.timestamp || '';
  }

  /**
   * Whether the row holds one of the lines marked `name`.
   * @param {RowMark} name
   * @param {RowState} state
   */
  shows(name, state) {
    const lines = this.marks.get(name);
    return lines !== undefined && state.seq >= lines.first && state.firstSeq <= lines.last
      && (lines.stream === undefined || lines.stream === state.stream);
  }

  /**
   * Give the class `name` to the rows of `lines`, those in the page and every one made or
   * remade for them later (fetched again, joined, redrawn); with null, to no row.
   * @param {RowMark} name
   * @param {MarkedLines | null} lines
   * @returns {HTMLElement[]} the rows in the page marked
   */
  mark(name, lines) {
    if (lines) this.marks.set(name, lines);
    else this.marks.delete(name);
    const marked = [];
    for (const row of /** @type {HTMLCollectionOf<HTMLElement>} */ (this.rows.children)) {
      const shows = this.shows(name, this.state(row));
      row.classList.toggle(name, shows);
      if (shows) marked.push(row);
    }
    return marked;
  }

  /** @param {HTMLElement} row */
  paint(row) {
    paintText(/** @type {HTMLElement} */ (row.lastChild), visible(this.state(row).text), this.highlight);
  }

  /**
   * Rows for lines in order. A line continues the open row of its stream (in `open`, which it
   * updates): a progress line redraws it, the next piece of a long line extends it, and an
   * empty progress line removes it.
   * @param {Line[]} lines
   * @param {OpenRows} open
   */
  build(lines, open = new Map()) {
    const fragment = document.createDocumentFragment();
    for (const line of lines) {
      const row = this.mode === 'search' ? null : open.get(line.stream);
      const state = row ? this.state(row) : null;
      if (erases(line)) {
        // The bar erased itself (tqdm's leave=False): its row goes, as it does from the stored log.
        if (row && state && state.progress) {
          row.remove();
          open.set(line.stream, null);
        }
        continue;
      }
      if (row && state && (state.partial || state.progress)) {
        state.text = state.partial ? state.text + line.text : line.text;
        this.setLineState(row, line);
        this.paint(row);
      } else {
        const fresh = this.makeRow(line);
        fragment.append(fresh);
        open.set(line.stream, fresh);
      }
      if (!(line.partial || line.progress)) open.set(line.stream, null);
    }
    return fragment;
  }

  get rowCount() {
    return this.rows.childElementCount;
  }

  /** @returns {HTMLElement | null} */
  get firstRow() {
    return /** @type {HTMLElement | null} */ (this.rows.firstElementChild);
  }

  /** @returns {HTMLElement | null} */
  get lastRow() {
    return /** @type {HTMLElement | null} */ (this.rows.lastElementChild);
  }

  clear() {
    this.view++; // a page fetched for the rows shown before is no longer wanted
    this.rows.replaceChildren();
    this.minSeq = Infinity;
    this.maxSeq = 0;
    this.openRows = new Map();
    this.unseen = 0;
  }

  /** Per stream, its last row when the next line continues it (a long line's piece) or
   * redraws it (a progress line).
   * @returns {OpenRows} */
  unfinishedRows() {
    /** @type {OpenRows} */
    const found = new Map();
    for (let row = this.lastRow; row; row = /** @type {HTMLElement | null} */ (row.previousElementSibling)) {
      const state = this.state(row);
      if (!found.has(state.stream)) found.set(state.stream, state.partial || state.progress ? row : null);
      if (found.has('stdout') && found.has('stderr')) break;
    }
    return found;
  }

  /** @param {Line[]} lines */
  append(lines) {
    const fresh = lines.filter((line) => line.seq > this.maxSeq);
    if (!fresh.length) return 0;
    const open = this.atTail ? this.openRows : this.mode === 'search' ? new Map() : this.unfinishedRows();
    this.rows.append(this.build(fresh, open));
    this.maxSeq = fresh[fresh.length - 1].seq;
    if (this.minSeq === Infinity) this.minSeq = fresh[0].seq;
    this.markShown();
    return fresh.filter((line) => !erases(line)).length;
  }

  /**
   * Lines at or below maxSeq that came late (an older batch stored after a newer one, or stored
   * while the stream was connecting), each as a row of its own in its seq place. A line a row of
   * its stream already holds is a copy, and lines above the rows are fetched on scroll.
   * @param {Line[]} lines in seq order
   */
  placeLate(lines) {
    let placed = 0;
    // Newest first: a late piece of a long line joins the row of the pieces after it, once
    // those late too are placed.
    for (const line of [...lines].reverse()) {
      if (erases(line) || (line.seq < this.minSeq && this.hasOlder) || this.holds(line)) continue;
      let at = this.rowsUpTo(line.seq);
      // A bar redrawn past it shows its state after the line: the line goes before it.
      if (at > 0 && this.spans(this.state(this.rows.children[at - 1]), line)) at--;
      this.rows.insertBefore(this.build([line]), this.rows.children[at] || null);
      if (this.mode !== 'search') this.joinPieces(/** @type {HTMLElement} */ (this.rows.children[at]));
      this.minSeq = Math.min(this.minSeq, line.seq);
      placed++;
    }
    // Followed, the tail trims the top; otherwise the rows below the one being read go.
    if (placed && !this.following) this.trim(false);
  }

  /**
   * A row placed late among the rows, joined as a reload joins it: to the row of its stream
   * before it when that one is a long line's piece the row goes on, and the row of its stream
   * after it to it when it is such a piece itself.
   * @param {HTMLElement} row
   */
  joinPieces(row) {
    const stream = this.state(row).stream;
    /** @param {Element | null} from @param {'previousElementSibling' | 'nextElementSibling'} way */
    const nearest = (from, way) => {
      let found = from;
      while (found && this.state(found).stream !== stream) found = found[way];
      return /** @type {HTMLElement | null} */ (found);
    };
    const before = nearest(row.previousElementSibling, 'previousElementSibling');
    const head = before && this.state(before).partial ? this.join(before, row) : row;
    const next = this.state(head).partial ? nearest(head.nextElementSibling, 'nextElementSibling') : null;
    if (next) this.join(head, next);
  }

  /**
   * Join row `later` of a long line's pieces to the end of row `row`, where the line began.
   * @param {HTMLElement} row
   * @param {HTMLElement} later
   */
  join(row, later) {
    const state = this.state(row);
    const rest = this.state(later);
    state.text += rest.text;
    state.bar = state.bar || rest.bar;
    this.setLineState(row, { ...rest, timestamp: later.title });
    this.paint(row);
    later.remove();
    // (the row the tail's next line continues, when it was the later one)
    if (this.openRows.get(rest.stream) === later) this.openRows.set(rest.stream, row);
    return row;
  }

  /**
   * How many rows begin at or before `seq` (rows are in seq order of their first lines).
   * @param {number} seq
   */
  rowsUpTo(seq) {
    let low = 0;
    let high = this.rowCount;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (this.state(this.rows.children[mid]).firstSeq <= seq) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  /**
   * Whether the line is shown: the last row of its stream that begins at or before it reaches
   * it (a row holds consecutive lines of one stream, so it is one of them).
   * @param {Line} line
   */
  holds(line) {
    for (let i = this.rowsUpTo(line.seq) - 1; i >= 0; i--) {
      const state = this.state(this.rows.children[i]);
      if (state.stream === line.stream) return state.seq >= line.seq && !this.spans(state, line);
    }
    return false;
  }

  /**
   * Whether the row is a progress bar whose redraws went on past `line`, a plain line stored
   * between two of its states: the bar's row holds its states, not the line.
   * @param {RowState} state
   * @param {Line} line
   */
  spans(state, line) {
    return state.bar && !line.progress && state.firstSeq < line.seq && line.seq < state.seq;
  }

  /** @param {Line[]} lines */
  prepend(lines) {
    if (!lines.length) return;
    const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
    const older = this.build(lines);
    if (this.mode !== 'search') this.joinOlderPieces(older);
    this.rows.prepend(older);
    this.minSeq = Math.min(this.minSeq, lines[0].seq);
    this.maxSeq = Math.max(this.maxSeq, lines[lines.length - 1].seq);
    // The line being read stays where it was. Set from the bottom, not moved by the height
    // added: a browser that anchors scrolling (overflow-anchor) has moved it already.
    this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom;
    this.markShown();
  }

  /**
   * A long line cut by the page boundary: the row shown for the rest of it joins its pieces
   * among the older rows.
   * @param {DocumentFragment} older
   */
  joinOlderPieces(older) {
    for (const stream of ['stdout', 'stderr']) {
      let last = older.lastElementChild;
      while (last && this.state(last).stream !== stream) last = last.previousElementSibling;
      if (!last || !this.state(last).partial) continue;
      let next = this.firstRow;
      while (next && this.state(next).stream !== stream) {
        next = /** @type {HTMLElement | null} */ (next.nextElementSibling);
      }
      if (next) this.join(/** @type {HTMLElement} */ (last), next);
    }
  }

  /**
   * Drop rows beyond MAX_ROWS from the top (keeping the view still) or from the bottom. A row
   * whose pieces interleave with a dropped row's goes too, so that the rows left hold every line
   * from minSeq to maxSeq, and the lines dropped come back whole when fetched again.
   * @param {boolean} fromTop
   */
  trim(fromTop) {
    let excess = this.rowCount - MAX_ROWS;
    if (excess <= 0) return;
    if (fromTop) {
      const height = this.scroller.scrollHeight;
      let highest = 0; // the highest seq dropped
      for (let row = this.firstRow; row && (excess > 0 || this.state(row).firstSeq < highest);
        row = this.firstRow, excess--) {
        highest = Math.max(highest, this.state(row).seq);
        row.remove();
      }
      this.scroller.scrollTop -= height - this.scroller.scrollHeight;
      const first = this.firstRow;
      this.minSeq = first ? this.state(first).firstSeq : highest + 1;
      this.hasOlder = true;
      // A line still open at the tail whose row was dropped starts a new row when it goes on.
      for (const [stream, row] of this.openRows) {
        if (row && !row.isConnected) this.openRows.set(stream, null);
      }
    } else {
      let lowest = Infinity; // the lowest seq dropped
      for (let row = this.lastRow; row && (excess > 0 || this.state(row).seq > lowest);
        row = this.lastRow, excess--) {
        lowest = Math.min(lowest, this.state(row).firstSeq);
        row.remove();
      }
      const last = this.lastRow;
      this.maxSeq = last ? this.state(last).seq : lowest - 1;
      this.leaveTail();
    }
  }

  leaveTail() {
    this.atTail = false;
    this.following = false;
    this.openRows = new Map();
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
    const request = ++this.tailRequest;
    let lines;
    try {
      lines = await this.fetchLines({ tail: FIRST_PAGE });
    } finally {
      this.busy--;
    }
    if (request === this.tailRequest) this.showTail(lines, FIRST_PAGE);
  }

  /**
   * Show `lines`, the last `limit` lines of the log (or all of them, if fewer), at the tail.
   * @param {Line[]} lines
   * @param {number} limit
   */
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

  /**
   * Open the log around one line (a search hit), marking the searched term.
   * @param {number} seq
   */
  async openAt(seq) {
    const term = this.query;
    this.mode = 'tail';
    this.query = '';
    this.highlight = term;
    this.showSearchStatus();
    this.busy++;
    this.setEdges('loading');
    // The view is this line's now: a search or tail still loading shows nothing when it comes.
    const request = ++this.tailRequest;
    /** @type {HTMLElement | null} */
    let target = null;
    try {
      const [before, after] = await Promise.all([
        this.fetchLines({ before: seq + 1, limit: 100 }),
        this.fetchLines({ after: seq, limit: 150 }),
      ]);
      if (request !== this.tailRequest) return; // a newer search or tail took the view meanwhile
      this.clear();
      this.atTail = after.length < 150;
      this.following = false;
      this.hasOlder = before.length >= 100;
      this.append(before.concat(after));
      // (of its stream: a progress bar's row on the other may begin before it and be redrawn after)
      const stream = before.find((line) => line.seq === seq)?.stream;
      target = this.mark('target', { first: seq, last: seq, stream })[0] ?? null;
    } finally {
      this.busy--;
    }
    this.setEdges();
    if (target) target.scrollIntoView({ block: 'center' });
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

  /**
   * A line from the event stream.
   * @param {Line} line
   */
  push(line) {
    if (this.mode === 'search' && !holds(line.text, this.query)) return;
    this.queue.push(line);
    if (this.queue.length > MAX_QUEUE) {
      this.queue.splice(0, this.queue.length - MAX_QUEUE);
      this.queueOverflowed = true;
    }
    this.scheduleFlush();
  }

  /**
   * Read again the lines the page may lack once the stream follows the run (at each
   * connection): one stored late, below the seq the stream resumed after (`resumedAfter`),
   * while it was not following would come no other way. That is every line from the page's
   * first row up to its last, or, at the tail, up to where the stream resumed, a page at a time;
   * they merge like live lines, copies dropped. (So much the page had before: what is read
   * is bounded by the rows it keeps, never the whole log.)
   * @param {number} resumedAfter
   */
  async catchUp(resumedAfter) {
    if (this.mode !== 'tail') return;
    const view = this.view;
    const until = this.atTail ? Math.max(this.maxSeq, resumedAfter) : this.maxSeq;
    // (rows that begin with the log's first line: a late line may go before them)
    let after = this.hasOlder ? this.minSeq - 1 : 0;
    try {
      for (let read = 0; after < until && read <= MAX_ROWS; read += PAGE) {
        const lines = await this.fetchLines({ after, limit: PAGE });
        if (view !== this.view || this.mode !== 'tail') return;
        // (those below the rows' last go in place now, not through a queue they could flood)
        this.placeLate(lines.filter((line) => line.seq <= this.maxSeq));
        lines.filter((line) => line.seq > this.maxSeq).forEach((line) => this.push(line));
        if (lines.length < PAGE) return;
        after = lines[lines.length - 1].seq;
      }
    } catch (err) {
      this.onError(err);
    }
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
    // Lines come in the order they were stored, which is not always seq order; each copy (the
    // stream may repeat what the page fetched) is dropped here or by placeLate.
    const lines = this.queue.sort((a, b) => a.seq - b.seq)
      .filter((line, i, all) => i === 0 || line.seq !== all[i - 1].seq);
    this.queue = lines.filter((line) => line.seq > this.maxSeq);
    this.placeLate(lines.filter((line) => line.seq <= this.maxSeq));
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
      this.unseen = this.queue.filter((line) => line.seq > this.maxSeq && !erases(line)).length;
      this.updateJump();
      return;
    }
    if (!this.following && this.rowCount >= MAX_ROWS) {
      this.leaveTail();
      this.unseen = this.queue.length;
      this.updateJump();
      return;
    }
    const added = this.append(this.queue);
    this.queue = [];
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
    this.mark('target', null); // (the view leaves the line opened, if it was at one)
    this.showSearchStatus();
    await this.loadTail().catch((err) => this.onError(err));
  }

  updateJump() {
    const show = !this.following && this.rowCount > 0;
    this.jumpButton.hidden = !show;
    const count = /** @type {HTMLElement} */ (this.jumpButton.querySelector('.count'));
    count.textContent = this.unseen > 0 ? ` · ${this.unseen.toLocaleString()} new` : '';
  }

  /** @param {'loading'} [state] */
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

  /**
   * Show only lines holding `term` (case-insensitive); an empty term shows the whole log.
   * @param {string} term
   */
  async search(term) {
    this.query = term;
    this.mode = term ? 'search' : 'tail';
    this.highlight = term;
    this.mark('target', null);
    this.queue = [];
    this.showSearchStatus();
    await this.loadTail().catch((err) => this.onError(err));
  }

  showSearchStatus() {
    const label = /** @type {HTMLElement} */ (this.searchStatus.querySelector('span'));
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

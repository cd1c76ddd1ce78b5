// @ts-check
// Where a failed run went wrong: its one-line summary, and the log lines that show it (a
// traceback, or the last lines of stderr) highlighted, the page opened at them.

/**
 * A failed run's summary as the API gives it.
 * @typedef {{summary: string, first_seq: number | null, last_seq: number | null}} Failure
 */

/**
 * Mark the rows of `failure`'s lines; with `open`, bring them into view first (fetching them
 * when the page does not hold them) and scroll the first to the top of the log.
 * @param {import('./logview.js').LogView} log
 * @param {Failure} failure
 * @param {{open?: boolean}} [options]
 */
export async function highlightFailure(log, failure, { open = false } = {}) {
  const first = failure.first_seq;
  const last = failure.last_seq ?? first;
  if (first === null || first === undefined || last === null) return;
  let marked = log.mark('failure', { first, last });
  if (!marked.length && open) {
    await log.openAt(first);
    marked = log.mark('failure', { first, last });
  }
  if (open && marked.length) {
    // Scroll the log alone (scrollIntoView would scroll the page too, hiding its header).
    const scroller = log.scroller;
    const offset = marked[0].getBoundingClientRect().top - scroller.getBoundingClientRect().top;
    scroller.scrollTop += offset - 8;
    log.onScroll();
  }
}

// @ts-check
// The dashboard's choices remembered in this browser (localStorage), under "hyperdash.<name>".
// Where storage is refused (a private window, a full quota), a choice lasts as long as the page.

/**
 * The remembered value of `name`, or `fallback`.
 * @param {string} name
 * @param {string} fallback
 * @returns {string}
 */
export function remembered(name, fallback) {
  try {
    return localStorage.getItem('hyperdash.' + name) ?? fallback;
  } catch {
    return fallback;
  }
}

/**
 * Remember `value` for `name`.
 * @param {string} name
 * @param {string} value
 */
export function remember(name, value) {
  try {
    localStorage.setItem('hyperdash.' + name, value);
  } catch {
    // Not remembered: nothing else to do.
  }
}

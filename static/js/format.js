// Number formats of live values: the same as the server's template filters
// (apps/dashboard/templatetags/dashboard.py), so a live update never changes a value's look.

export const DASH = "—";
const grouped = (digits) =>
  new Intl.NumberFormat("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const two = grouped(2);
const whole = grouped(0);

const known = (v) => v !== null && v !== undefined && Number.isFinite(v);

export const price = (v) => (known(v) ? two.format(v) : DASH);
export const signed = (v) => (known(v) ? (v >= 0 ? "+" : "−") + two.format(Math.abs(v)) : DASH);
export const percent = (v) =>
  known(v) ? `${v >= 0 ? "+" : "−"}${Math.abs(v).toFixed(2)}%` : DASH;
export const volume = (v) => (known(v) ? whole.format(v) : DASH);
export const number = (v, digits = 2) => {
  if (typeof v === "boolean") return v ? "yes" : "no";
  return known(v) ? grouped(digits).format(v) : DASH;
};
export const direction = (v) => (!known(v) || v === 0 ? "flat" : v > 0 ? "up" : "down");

/** Every element showing `field` of `symbol` (a value may appear in several places). */
export function cells(symbol, field, root = document) {
  return root.querySelectorAll(`[data-symbol="${CSS.escape(symbol)}"][data-field="${field}"]`);
}

/** Set the text of each element showing a value; mark its direction when it has one. */
export function show(symbol, field, text, { dir, value } = {}) {
  for (const el of cells(symbol, field)) {
    if (el.textContent !== text) el.textContent = text;
    if (dir !== undefined) el.dataset.dir = dir;
    if (value !== undefined && "value" in el.dataset) el.dataset.value = value ?? "";
  }
}

/** Briefly flash a price that moved: colour plus an arrow, for readers who cannot tell the colours apart. */
export function flash(symbol, up) {
  for (const el of cells(symbol, "price")) {
    el.classList.remove("flash-up", "flash-down");
    void el.offsetWidth; // restart the animation
    el.classList.add(up ? "flash-up" : "flash-down");
    el.dataset.move = up ? "up" : "down";
  }
}

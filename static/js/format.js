// Number formats of live values: the same as the server's template filters
// (apps/dashboard/templatetags/dashboard.py, apps/market/display.py), so a live update never
// changes a value's look. The one price formatter of the browser: `price`.

export const DASH = "—";
const formats = {}; // made once: making one costs far more than using it
const grouped = (digits) => (formats[digits] ??=
  new Intl.NumberFormat("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }));
const two = grouped(2);
const four = grouped(4);
const whole = grouped(0);

const known = (v) => v !== null && v !== undefined && Number.isFinite(v);

/** Decimals of a price at its tick size: $0.01 at or above $1.00, $0.0001 below (Reg NMS 612). */
export const priceDecimals = (v) => (Math.abs(v) >= 1 ? 2 : 4);
export const price = (v) => (known(v) ? (priceDecimals(v) === 2 ? two : four).format(v) : DASH);
// A sign for a value that reads as non-zero; `0.00`, never `−0.00`.
const withSign = (v, magnitude) =>
  Number(magnitude.replace(/,/g, "")) === 0 ? magnitude : (v > 0 ? "+" : "−") + magnitude;
export const signed = (v) => (known(v) ? withSign(v, two.format(Math.abs(v))) : DASH);
export const percent = (v) => (known(v) ? `${withSign(v, Math.abs(v).toFixed(2))}%` : DASH);
export const volume = (v) => (known(v) ? whole.format(v) : DASH);
export const number = (v, digits = 2) => {
  if (typeof v === "boolean") return v ? "yes" : "no";
  return known(v) ? grouped(digits).format(v) : DASH;
};
/** up / down / flat, as the value reads at 2 decimals (a shown 0.00 is flat). */
export const direction = (v) =>
  !known(v) || Math.abs(v).toFixed(2) === "0.00" ? "flat" : v > 0 ? "up" : "down";

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

/** Flash a price that moved: colour plus an arrow, for readers who cannot tell colours
 * apart. A twin animation restarts it without forcing a layout. */
export function flashCell(el, up) {
  const name = up ? "flash-up" : "flash-down";
  const again = el.classList.contains(name) ? `${name}-2` : name;
  el.classList.remove("flash-up", "flash-down", "flash-up-2", "flash-down-2");
  el.classList.add(again);
  el.dataset.move = up ? "up" : "down";
}

/** Flash every element showing the price of `symbol`. */
export function flash(symbol, up) {
  for (const el of cells(symbol, "price")) flashCell(el, up);
}

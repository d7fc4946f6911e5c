// Alert toasts: `alert` messages of /ws/market, shown in the page's aria-live region.

import * as fmt from "./format.js";

const SHOW_MS = 10_000;
const MAX_TOASTS = 5;

/** Show one alert ({type: "alert", id, rule, symbol, ts, condition, price, value, message}). */
export function showAlert(alert) {
  const region = document.querySelector("[data-toasts]");
  if (!region) return;
  const toast = document.createElement("div");
  toast.className = "toast";
  toast.setAttribute("role", "status");
  toast.dataset.alertId = String(alert.id ?? "");
  toast.dataset.symbol = alert.symbol ?? "";

  const title = document.createElement("a");
  title.className = "toast-title";
  title.href = `/stocks/${encodeURIComponent(alert.symbol ?? "")}/`;
  title.textContent = `Alert: ${alert.symbol ?? ""}`;
  const body = document.createElement("p");
  body.textContent = alert.message || `${alert.condition} ${alert.value}`;
  const when = document.createElement("time");
  when.dateTime = alert.ts ?? "";
  when.textContent = alert.ts ? `${alert.ts.slice(11, 19)} UTC` : "";
  const price = document.createElement("span");
  price.className = "toast-price";
  price.textContent = typeof alert.price === "number" ? ` at ${fmt.price(alert.price)}` : "";
  const close = document.createElement("button");
  close.type = "button";
  close.className = "toast-close";
  close.setAttribute("aria-label", "Dismiss alert");
  close.textContent = "×";
  close.addEventListener("click", () => toast.remove());

  toast.append(title, body, when, price, close);
  region.prepend(toast);
  while (region.children.length > MAX_TOASTS) region.lastElementChild.remove();
  setTimeout(() => toast.remove(), SHOW_MS);
}

// The alerts page: new events appear in the events table as their `alert` messages arrive
// on /ws/market (the same ones the toasts show), and the rule form shows only the fields the
// chosen condition uses. Without JavaScript the page still works: every field shows and the
// server's validation decides (apps/alerts/conditions.rule_errors).

import { marketFeed } from "./feed.js";
import * as fmt from "./format.js";

const RECENT_EVENTS = 100; // as apps/alerts/views.RECENT_EVENTS
const conditions = JSON.parse(document.getElementById("condition-fields").textContent);

/** An alert's value as its condition means it: a price at its tick size, else 2 decimals. */
function valueText(condition, value) {
  return conditions[condition]?.value_is_price ? fmt.price(value) : fmt.number(value, 2);
}

// --- Live events ----------------------------------------------------------------------------

const events = document.querySelector("table[data-events] tbody");
const csrf = document.querySelector('input[name="csrfmiddlewaretoken"]')?.value ?? "";

function td(text, { num = false, field } = {}) {
  const el = document.createElement("td");
  if (num) el.className = "num";
  if (field) el.dataset.field = field;
  el.textContent = text;
  return el;
}

function eventRow(alert) {
  const row = document.createElement("tr");
  row.dataset.alertId = String(alert.id);
  row.dataset.acknowledged = String(Boolean(alert.acknowledged));
  const when = document.createElement("time");
  when.dateTime = alert.ts;
  when.textContent = `${alert.ts.slice(0, 10)} ${alert.ts.slice(11, 19)}`;
  const time = document.createElement("td");
  time.append(when);
  const symbol = document.createElement("th");
  symbol.scope = "row";
  symbol.textContent = alert.symbol;
  const ack = document.createElement("td");
  if (alert.acknowledged) ack.textContent = "yes";
  else {
    const form = document.createElement("form");
    form.method = "post";
    form.action = `/alerts/events/${encodeURIComponent(alert.id)}/acknowledge`;
    const token = document.createElement("input");
    Object.assign(token, { type: "hidden", name: "csrfmiddlewaretoken", value: csrf });
    const button = document.createElement("button");
    button.type = "submit";
    button.setAttribute("aria-label", `Acknowledge alert ${alert.id}`);
    button.textContent = "Acknowledge";
    form.append(token, button);
    ack.append(form);
  }
  row.append(time, symbol, td(alert.message), td(fmt.price(alert.price), { num: true, field: "price" }),
    td(valueText(alert.condition, alert.value), { num: true, field: "value" }), ack);
  return row;
}

function addEvent(alert) {
  if (!events || events.querySelector(`tr[data-alert-id="${CSS.escape(String(alert.id))}"]`)) {
    return;
  }
  events.querySelector("tr[data-empty]")?.remove();
  events.prepend(eventRow(alert));
  while (events.rows.length > RECENT_EVENTS) events.lastElementChild.remove();
  // The rule that fired: its last-fired time.
  const fired = document.querySelector(
    `tr[data-rule-id="${CSS.escape(String(alert.rule))}"] [data-field="last_fired_at"]`);
  if (fired) {
    const when = document.createElement("time");
    when.dateTime = alert.ts;
    when.textContent = `${alert.ts.slice(0, 10)} ${alert.ts.slice(11, 19)} UTC`;
    fired.replaceChildren(when);
  }
}

marketFeed().on("message", (message) => {
  if (message.type === "alert") addEvent(message);
});

// --- The rule form: only the chosen condition's fields ------------------------------------

const form = document.querySelector("form[data-rule-form]");
const part = (name) => form?.querySelector(`[data-form-field="${name}"]`);

function showPart(name, shown) {
  const p = part(name);
  if (!p) return;
  p.hidden = !shown;
  // A hidden field is not sent: a threshold typed for another condition is no error.
  for (const control of p.querySelectorAll("input, select, textarea")) control.disabled = !shown;
}

function applyCondition() {
  const spec = conditions[form.elements.condition.value];
  showPart("threshold", Boolean(spec?.threshold));
  showPart("window_seconds", Boolean(spec?.window));
  const help = part("threshold")?.querySelector("small");
  if (help) help.textContent = spec?.threshold_help ?? "";
  showPart("cooldown_seconds", form.elements.frequency.value === "every_time");
}

if (form) {
  form.elements.condition.addEventListener("change", applyCondition);
  form.elements.frequency.addEventListener("change", applyCondition);
  applyCondition();
}

window.marketflux = { ...(window.marketflux ?? {}), page: "alerts", feed: marketFeed() };

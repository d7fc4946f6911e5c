// The header's symbol search: suggestions that match a ticker's start or any part of the
// company's name ("micro" finds MSFT), from the known symbols the page lists in its
// <datalist> (or, on the market page, in its data). Enter (or a click) on a suggestion opens it; anything else is submitted to
// /stocks/?q=, which resolves a ticker or a name the same way (apps/dashboard/views.search).

const MAX_SUGGESTIONS = 8;

/** Known symbols whose ticker starts with `query` or whose name contains it, tickers first. */
export function matchSymbols(known, query) {
  const q = query.trim();
  if (!q) return [];
  const upper = q.toUpperCase();
  const lower = q.toLowerCase();
  const byTicker = known.filter((s) => s.ticker.startsWith(upper));
  const byName = known.filter((s) => !s.ticker.startsWith(upper)
    && s.name.toLowerCase().includes(lower));
  return [...byTicker, ...byName].slice(0, MAX_SUGGESTIONS);
}

const go = (ticker) => location.assign(`/stocks/${encodeURIComponent(ticker)}/`);
const known = [];

/** More symbols to suggest ({ticker, name}): the market page lists them in its data. */
export function addKnownSymbols(symbols) {
  known.push(...symbols);
}

export function initSearch(form) {
  const input = form.elements.q;
  const list = document.getElementById(input.getAttribute("list") ?? "");
  addKnownSymbols([...(list?.options ?? [])].map((o) => ({ ticker: o.value, name: o.label })));
  input.removeAttribute("list"); // our suggestions replace the browser's

  const box = document.createElement("ul");
  box.id = `${input.id}-suggestions`;
  box.className = "suggestions";
  box.setAttribute("role", "listbox");
  box.setAttribute("aria-label", "Matching symbols");
  box.hidden = true;
  form.append(box);
  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-controls", box.id);
  input.setAttribute("aria-expanded", "false");

  let matches = [];
  let active = -1;

  function render() {
    box.replaceChildren(...matches.map((s, i) => {
      const item = document.createElement("li");
      item.id = `${box.id}-${i}`;
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", String(i === active));
      item.dataset.ticker = s.ticker;
      const ticker = document.createElement("strong");
      ticker.textContent = s.ticker;
      const name = document.createElement("span");
      name.className = "muted";
      name.textContent = s.name;
      item.append(ticker, " ", name);
      item.addEventListener("mousedown", (event) => {
        event.preventDefault(); // keep the focus in the input
        go(s.ticker);
      });
      return item;
    }));
    box.hidden = !matches.length;
    input.setAttribute("aria-expanded", String(!box.hidden));
    if (active >= 0) input.setAttribute("aria-activedescendant", `${box.id}-${active}`);
    else input.removeAttribute("aria-activedescendant");
  }

  function close() {
    matches = [];
    active = -1;
    render();
  }

  input.addEventListener("input", () => {
    matches = matchSymbols(known, input.value);
    active = -1;
    render();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (!matches.length) return;
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      active = (active + step + matches.length) % matches.length;
      render();
    } else if (event.key === "Escape") close();
  });
  input.addEventListener("blur", close);

  form.addEventListener("submit", (event) => {
    const query = input.value.trim();
    if (!query) return;
    const exact = known.find((s) => s.ticker === query.toUpperCase());
    const pick = active >= 0 ? matches[active] : exact ?? (matches.length === 1 ? matches[0] : null);
    if (!pick) return; // the server lists several matches, or says there is none
    event.preventDefault();
    go(pick.ticker);
  });
}

// What every page of the site layout does: the theme toggle, the symbol search, and, for a
// signed-in reader, alert toasts from /ws/market (opened without subscribing to ticks).

import { marketFeed } from "./feed.js";
import { initThemeToggle } from "./theme.js";
import { showAlert } from "./toasts.js";

initThemeToggle();

for (const form of document.querySelectorAll("form[data-search]")) {
  form.addEventListener("submit", (event) => {
    const ticker = form.elements.q.value.trim().toUpperCase();
    if (!ticker) return;
    event.preventDefault();
    location.assign(`/stocks/${encodeURIComponent(ticker)}/`);
  });
}

if (document.body.dataset.signedIn === "true" || document.body.dataset.livePage === "overview") {
  marketFeed().on("message", (message) => {
    if (message.type === "alert") showAlert(message);
  });
}

// What every page of the site layout does: the theme toggle, the symbol search, and, for a
// signed-in reader, alert toasts from /ws/market (opened without subscribing to ticks).

import { marketFeed } from "./feed.js";
import { initSearch } from "./search.js";
import { initThemeToggle } from "./theme.js";
import { showAlert } from "./toasts.js";

initThemeToggle();

for (const form of document.querySelectorAll("form[data-search]")) initSearch(form);

if (document.body.dataset.signedIn === "true" || document.body.dataset.livePage === "overview") {
  marketFeed().on("message", (message) => {
    if (message.type === "alert") showAlert(message);
  });
}

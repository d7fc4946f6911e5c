// Dark by default, light on request, remembered in localStorage. theme-init.js, in the
// <head> of base.html, applies the saved choice before the first paint; this module wires
// the toggle.

const KEY = "mf-theme";

export function currentTheme() {
  return document.documentElement.dataset.theme === "light" ? "light" : "dark";
}

// The button says what pressing it does ("Switch to light theme"); the stylesheet shows the
// half of its label that fits the current theme, so it is right before any script runs.
export function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  try {
    localStorage.setItem(KEY, theme);
  } catch {
    // private mode without storage: the choice lasts for this page only
  }
  document.dispatchEvent(new CustomEvent("mf:theme", { detail: { theme } }));
}

export function initThemeToggle() {
  for (const button of document.querySelectorAll("[data-theme-toggle]")) {
    button.addEventListener("click", () => setTheme(currentTheme() === "light" ? "dark" : "light"));
  }
}

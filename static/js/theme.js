// Dark by default, light on request, remembered in localStorage. The <head> of base.html
// applies the saved choice before the first paint; this module wires the toggle.

const KEY = "mf-theme";

export function currentTheme() {
  return document.documentElement.dataset.theme === "light" ? "light" : "dark";
}

// One name ("Light theme"), its state in aria-pressed: how a toggle button reads aloud.
function label(button) {
  button.setAttribute("aria-pressed", String(currentTheme() === "light"));
}

export function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  try {
    localStorage.setItem(KEY, theme);
  } catch {
    // private mode without storage: the choice lasts for this page only
  }
  for (const button of document.querySelectorAll("[data-theme-toggle]")) label(button);
  document.dispatchEvent(new CustomEvent("mf:theme", { detail: { theme } }));
}

export function initThemeToggle() {
  for (const button of document.querySelectorAll("[data-theme-toggle]")) {
    label(button);
    button.addEventListener("click", () => setTheme(currentTheme() === "light" ? "dark" : "light"));
  }
}

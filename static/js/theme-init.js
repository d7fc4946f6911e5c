// The saved theme, applied in <head> before the first paint so a light page never flashes
// dark. A classic (blocking) script of its own: the content security policy runs no inline
// script (docs/security.md#headers-and-the-content-security-policy). theme.js wires the
// toggle once the page has loaded.
try {
  const saved = localStorage.getItem("mf-theme");
  if (saved === "light" || saved === "dark") document.documentElement.dataset.theme = saved;
} catch {
  // private mode without storage: the default theme
}

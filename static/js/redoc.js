// ReDoc's page (templates/api/redoc.html), loaded in <head> before ReDoc's bundle, as a file
// since the content security policy runs no inline script
// (docs/security.md#headers-and-the-content-security-policy).
(() => {
  // The bundle shows Redocly's logo from cdn.redoc.ly, with no option to turn it off: that
  // one image gets an empty local picture before the browser can fetch it, so the docs load
  // nothing from another host. The link stays.
  const outside = "https://cdn.redoc.ly/redoc/logo-mini.svg";
  const local = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E";
  const setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    const swap = this instanceof HTMLImageElement && name === "src" && value === outside;
    return setAttribute.call(this, name, swap ? local : value);
  };
  const src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, "src");
  Object.defineProperty(HTMLImageElement.prototype, "src", {
    ...src,
    set(value) {
      src.set.call(this, value === outside ? local : value);
    },
  });

  // ReDoc writes its styles into <style> elements at run time; the policy lets them in only
  // with the request's nonce, the one on this script's own tag, which ReDoc copies onto them.
  const nonce = document.currentScript.nonce;
  document.addEventListener("DOMContentLoaded", () => {
    const container = document.getElementById("redoc-container");
    const settings = JSON.parse(container.dataset.settings || "{}");
    window.Redoc.init(container.dataset.schemaUrl, { ...settings, nonce }, container);
  });
})();

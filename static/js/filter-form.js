// The browsable API's filter form (templates/api/filter_form.html): fields left empty are
// not sent, since an empty query parameter is a 400 (docs/contracts.md#bad-parameters).
// A file of its own, not an inline onsubmit: the content security policy runs none.
for (const form of document.querySelectorAll("form[data-drop-empty]")) {
  form.addEventListener("submit", () => {
    for (const field of form.elements) {
      if (field.name && field.value === "") field.disabled = true;
    }
  });
}

// Small progressive enhancements; the pages work without them.
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el && el.matches && el.matches("select[data-navigate]")) {
      window.location.href = el.value;
    }
  });
})();

// Filter bar: picking a preset period clears typed dates; typing a date makes the period custom.
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (!el || !el.form || !el.form.classList.contains("filters")) { return; }
    var form = el.form;
    if (el.name === "preset" && el.value !== "custom") {
      ["start", "end"].forEach(function (name) { if (form.elements[name]) { form.elements[name].value = ""; } });
    } else if ((el.name === "start" || el.name === "end") && form.elements.preset) {
      form.elements.preset.value = "custom";
    }
  });
})();

// Copy buttons: <button data-copy="#id"> copies that element's text (a secret shown once). Delegated
// from document so buttons swapped in by htmx work too; without clipboard access the text stays selectable.
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var button = event.target && event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (!button) { return; }
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) { return; }
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.textContent = "Copied";
    }, function () {
      button.textContent = "Select and copy by hand";
    });
  });
})();

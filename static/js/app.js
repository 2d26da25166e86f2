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

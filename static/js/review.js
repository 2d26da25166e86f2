// Month review: the Print button (the page's @media print rules in app.css do the layout).
(function () {
  "use strict";
  document.addEventListener("click", function (event) {
    var el = event.target;
    if (el && el.closest && el.closest("[data-print]")) {
      window.print();
    }
  });
})();

// Draws every <div data-figure="id"> from the JSON in <script id="id" type="application/json">.
// htmx.onLoad runs for the first page and for every swapped-in panel, so lazy panels draw too.
(function () {
  "use strict";
  var config = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  function draw(root) {
    var nodes = root.querySelectorAll ? root.querySelectorAll("[data-figure]") : [];
    if (root.matches && root.matches("[data-figure]")) { nodes = [root].concat(Array.prototype.slice.call(nodes)); }
    Array.prototype.forEach.call(nodes, function (el) {
      var source = document.getElementById(el.getAttribute("data-figure"));
      if (!source || !window.Plotly) { return; }
      var figure = JSON.parse(source.textContent);
      window.Plotly.react(el, figure.data, figure.layout, config);
      el.setAttribute("data-drawn", "true");
    });
  }

  function start() {
    if (window.htmx) { window.htmx.onLoad(draw); } else { draw(document); }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();

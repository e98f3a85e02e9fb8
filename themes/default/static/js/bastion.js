// Progressive enhancements of the default theme. No inline script anywhere: the CSP
// allows scripts from Bastion's own origin only.
(function () {
  "use strict";

  function initNavToggle(root) {
    root.querySelectorAll("[data-nav-toggle]").forEach(function (button) {
      if (button.dataset.bound) return;
      button.dataset.bound = "1";
      var header = button.closest(".site-header");
      button.addEventListener("click", function () {
        var open = header.classList.toggle("is-open");
        button.setAttribute("aria-expanded", open ? "true" : "false");
      });
    });
  }

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var header = document.querySelector(".site-header.is-open");
    if (!header) return;
    header.classList.remove("is-open");
    var button = header.querySelector("[data-nav-toggle]");
    if (button) {
      button.setAttribute("aria-expanded", "false");
      button.focus();
    }
  });

  document.addEventListener("DOMContentLoaded", function () { initNavToggle(document); });
  document.addEventListener("htmx:load", function (event) { initNavToggle(event.target); });
})();


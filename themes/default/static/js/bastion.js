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

  // A plugin's record action with a confirm question (RecordAction.confirm): the form
  // or link carries it as data-confirm, and nothing is sent unless the user agrees.
  // Delegated from the document, so content htmx swaps in is covered too.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-confirm")) return;
    if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
  });
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[data-confirm]") : null;
    if (link && !window.confirm(link.getAttribute("data-confirm"))) event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", function () { initNavToggle(document); });
  document.addEventListener("htmx:load", function (event) { initNavToggle(event.target); });
})();


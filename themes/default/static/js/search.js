// The header search box's live results (rendered by htmx into #site-search-results):
// Escape or a click elsewhere closes them; the form itself works without any script.
(function () {
  "use strict";

  function close(form) {
    var results = form.querySelector(".site-search__results");
    if (results) results.innerHTML = "";
  }

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var form = event.target.closest && event.target.closest("[data-site-search]");
    if (!form) return;
    var results = form.querySelector(".site-search__results");
    if (results && results.innerHTML.trim()) {
      close(form);
      var input = form.querySelector("input[name=q]");
      if (input) input.focus();
    }
  });

  document.addEventListener("click", function (event) {
    document.querySelectorAll("[data-site-search]").forEach(function (form) {
      if (!form.contains(event.target)) close(form);
    });
  });
})();

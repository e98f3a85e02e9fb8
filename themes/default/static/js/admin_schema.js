// Data-model administration (objects and fields): suggest an API name from a label.
// An input with data-api-name-from="<id>" follows that input's text as snake_case until
// the administrator types in it themselves. The server makes the same suggestion when
// the input is left empty, so this is a convenience only.
(function () {
  "use strict";

  function apiName(text, limit) {
    var name = text
      .normalize("NFKD")
      .replace(/[\u0300-\u036f]/g, "")
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "_")
      .replace(/^_+|_+$/g, "");
    if (name && !/^[a-z]/.test(name)) name = "x_" + name;
    return name.slice(0, limit).replace(/_+$/, "");
  }

  function bind(root) {
    root.querySelectorAll("[data-api-name-from]").forEach(function (target) {
      if (target.dataset.apiNameBound) return;
      var source = document.getElementById(target.dataset.apiNameFrom);
      if (!source) return;
      target.dataset.apiNameBound = "1";
      var limit = parseInt(target.getAttribute("maxlength"), 10) || 50;
      // A name already there (typed, or kept after an error) is the administrator's.
      var following = target.value === "" || target.value === apiName(source.value, limit);
      target.addEventListener("input", function () { following = target.value === ""; });
      source.addEventListener("input", function () {
        if (following) target.value = apiName(source.value, limit);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { bind(document); });
  document.addEventListener("htmx:load", function (event) { bind(event.target); });
})();

// Record pages (lists, detail pages, forms): the lookup type-ahead, "select all" for
// bulk actions, saved views that open when chosen. Everything works without this file:
// lookups are then record numbers, and every form has a submit button.
(function () {
  "use strict";

  var DELAY = 200;

  function initLookup(box) {
    if (box.dataset.bound || !box.dataset.lookup) return;
    box.dataset.bound = "1";
    var url = box.dataset.lookup;
    var many = box.classList.contains("lookup--many");
    var idInput = box.querySelector(".lookup__id");
    if (!idInput) return;
    var current = box.querySelector("[data-lookup-current]");
    var chosenList = box.querySelector("[data-lookup-chosen]");
    var find = box.querySelector(".lookup__find");
    if (find) find.hidden = true;

    // The label now points at the search box; the id travels in a hidden input.
    var inputId = idInput.id;
    var search = document.createElement("input");
    search.type = "search";
    search.id = inputId;
    search.className = "lookup__search";
    search.autocomplete = "off";
    search.setAttribute("role", "combobox");
    search.setAttribute("aria-autocomplete", "list");
    search.setAttribute("aria-expanded", "false");
    ["aria-describedby", "aria-invalid"].forEach(function (name) {
      if (idInput.hasAttribute(name)) search.setAttribute(name, idInput.getAttribute(name));
    });
    idInput.id = inputId + "-value";
    idInput.type = "hidden";
    var list = document.createElement("ul");
    list.id = inputId + "-options";
    list.className = "lookup__options";
    list.setAttribute("role", "listbox");
    list.hidden = true;
    search.setAttribute("aria-controls", list.id);

    var chosen = { id: idInput.value, name: current ? current.textContent.trim() : "" };
    if (many) {
      search.placeholder = "Type to search and add";
      var fallback = box.querySelector(".lookup__fallback-label");
      if (fallback) fallback.textContent = "Add";
    } else {
      search.value = chosen.name;
      if (current) current.hidden = true;
    }
    idInput.insertAdjacentElement("afterend", search);
    search.insertAdjacentElement("afterend", list);

    var timer = null;
    var sequence = 0;
    var active = -1;

    function options() { return list.querySelectorAll("[role=option]"); }

    function close() {
      list.hidden = true;
      search.setAttribute("aria-expanded", "false");
      search.removeAttribute("aria-activedescendant");
      active = -1;
    }

    function highlight(index) {
      var items = options();
      if (!items.length) return;
      active = (index + items.length) % items.length;
      items.forEach(function (item, i) { item.setAttribute("aria-selected", i === active ? "true" : "false"); });
      search.setAttribute("aria-activedescendant", items[active].id);
      items[active].scrollIntoView({ block: "nearest" });
    }

    function choose(item) {
      if (many) {
        if (!chosenList.querySelector("input[value='" + item.id + "']")) {
          var li = document.createElement("li");
          li.className = "choice";
          var checkbox = document.createElement("input");
          checkbox.type = "checkbox";
          checkbox.name = idInput.name;
          checkbox.value = String(item.id);
          checkbox.checked = true;
          checkbox.id = inputId + "-" + item.id;
          var label = document.createElement("label");
          label.htmlFor = checkbox.id;
          label.textContent = item.name;
          li.appendChild(checkbox);
          li.appendChild(label);
          chosenList.appendChild(li);
        }
        search.value = "";
      } else {
        chosen = { id: String(item.id), name: item.name };
        idInput.value = chosen.id;
        search.value = chosen.name;
      }
      close();
      idInput.dispatchEvent(new Event("change", { bubbles: true }));
    }

    function render(items) {
      list.textContent = "";
      items.forEach(function (item, i) {
        var li = document.createElement("li");
        li.id = list.id + "-" + i;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        li.dataset.id = item.id;
        li.textContent = item.name;
        li.addEventListener("mousedown", function (event) {
          event.preventDefault(); // keep the focus in the search box
          choose(item);
        });
        list.appendChild(li);
      });
      if (!items.length) {
        var none = document.createElement("li");
        none.className = "lookup__none";
        none.textContent = "No matches";
        list.appendChild(none);
      }
      list.hidden = false;
      search.setAttribute("aria-expanded", "true");
      active = -1;
      list._items = items;
    }

    function load() {
      var mine = ++sequence;
      var query = search.value.trim();
      fetch(url + "?format=json&q=" + encodeURIComponent(query), {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      })
        .then(function (response) { return response.ok ? response.json() : { data: [] }; })
        .then(function (body) { if (mine === sequence) render(body.data || []); })
        .catch(function () { if (mine === sequence) render([]); });
    }

    search.addEventListener("input", function () {
      if (!many) idInput.value = "";
      clearTimeout(timer);
      timer = setTimeout(load, DELAY);
    });
    search.addEventListener("keydown", function (event) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        if (list.hidden) { load(); return; }
        highlight(active + (event.key === "ArrowDown" ? 1 : -1));
      } else if (event.key === "Enter" && !list.hidden && active >= 0) {
        event.preventDefault();
        choose(list._items[active]);
      } else if (event.key === "Escape" && !list.hidden) {
        event.preventDefault();
        close();
      }
    });
    search.addEventListener("blur", function () {
      close();
      // Typed without choosing: an empty box clears the link, anything else keeps the last choice.
      if (!many && idInput.value === "") {
        if (search.value.trim() === "") {
          chosen = { id: "", name: "" };
        } else {
          idInput.value = chosen.id;
          search.value = chosen.name;
        }
      }
    });
  }

  function initSelectAll(root) {
    root.querySelectorAll("[data-select-all]").forEach(function (toggle) {
      if (toggle.dataset.bound) return;
      toggle.dataset.bound = "1";
      toggle.addEventListener("change", function () {
        document.querySelectorAll("input[name=ids][form=bulk-form]").forEach(function (box) {
          box.checked = toggle.checked;
        });
      });
    });
  }

  function initAutosubmit(root) {
    root.querySelectorAll("form[data-autosubmit] select").forEach(function (select) {
      if (select.dataset.bound) return;
      select.dataset.bound = "1";
      select.addEventListener("change", function () { select.form.requestSubmit(); });
    });
  }

  function initBulk(root) {
    root.querySelectorAll("#bulk-action").forEach(function (select) {
      if (select.dataset.bound) return;
      select.dataset.bound = "1";
      var owner = document.querySelector("[data-bulk-owner]");
      function sync() { if (owner) owner.hidden = select.value !== "owner"; }
      select.addEventListener("change", sync);
      sync();
    });
  }

  function init(root) {
    root.querySelectorAll("[data-lookup]").forEach(initLookup);
    initSelectAll(root);
    initAutosubmit(root);
    initBulk(root);
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.target); });
})();


/* === pipelines === */
/* The board's drag and drop, with a mouse, a pen or a finger (Pointer Events: HTML5
   drag and drop never fires on touch screens). A mouse drags a card from anywhere but its
   controls; touch and pen drag from the card's handle, so a swipe elsewhere still
   scrolls the board. Dropping on another column submits the card's own "Move to" form
   (htmx swaps the board with the answer; without htmx it is a plain POST). */
(function () {
  "use strict";

  var THRESHOLD = 6;
  var EDGE = 40;
  var drag = null;
  var swallowClick = false;
  var busy = false; // a move is on its way to the server: no new drag until it answers

  function columnAt(board, x, y) {
    var element = document.elementFromPoint(x, y);
    var column = element && element.closest ? element.closest("[data-stage-id]") : null;
    return column && board.contains(column) ? column : null;
  }

  function highlight(column) {
    if (drag.over === column) return;
    if (drag.over) drag.over.classList.remove("board__column--drop");
    drag.over = column;
    if (column && column !== drag.source) column.classList.add("board__column--drop");
  }

  // The status line lives outside #board (a live region that is not replaced).
  function announce(board, text, kind) {
    var status = document.getElementById("board-status");
    if (!status) return;
    status.textContent = text;
    status.className = "board-status" + (kind ? " board-status--" + kind : "");
  }

  function start() {
    var rect = drag.card.getBoundingClientRect();
    var ghost = drag.card.cloneNode(true);
    ghost.querySelectorAll("[id]").forEach(function (el) { el.removeAttribute("id"); });
    ghost.querySelectorAll("form").forEach(function (el) { el.remove(); });
    ghost.classList.add("board-card--ghost");
    ghost.setAttribute("aria-hidden", "true");
    ghost.style.left = rect.left + "px";
    ghost.style.top = rect.top + "px";
    ghost.style.width = rect.width + "px";
    document.body.appendChild(ghost);
    drag.card.classList.add("board-card--dragging");
    drag.ghost = ghost;
    drag.active = true;
    // Keep receiving the pointer even when it leaves the window; losing it cancels.
    // (Taking it from the handle's implicit touch capture fires lostpointercapture on
    // the handle: only the card's own loss counts.)
    try { drag.card.setPointerCapture(drag.pointer); } catch (ignored) { /* gone */ }
  }

  function finish() {
    if (drag.ghost) drag.ghost.remove();
    if (drag.over) drag.over.classList.remove("board__column--drop");
    drag.card.classList.remove("board-card--dragging");
  }

  // Abandon a drag in progress (focus lost, capture lost, the board replaced).
  function cancel() {
    if (!drag) return;
    var current = drag;
    finish();
    drag = null;
    if (current.active) announce(current.board, "Not moved.");
  }

  function autoscroll(x) {
    var strip = drag.board.querySelector("[data-board-columns]");
    if (!strip) return;
    var rect = strip.getBoundingClientRect();
    if (x < rect.left + EDGE) strip.scrollLeft -= 16;
    else if (x > rect.right - EDGE) strip.scrollLeft += 16;
  }

  function submitMove(card, column) {
    var form = card.querySelector("[data-move-form]");
    var select = form && form.querySelector("select[name=stage]");
    if (!select) return;
    select.value = column.getAttribute("data-stage-id");
    var list = column.querySelector(".board__cards");
    if (list) list.appendChild(card); // shown where it was dropped while the server answers
    card.classList.add("board-card--pending");
    if (form.requestSubmit) form.requestSubmit();
    else form.submit();
  }

  document.addEventListener("pointerdown", function (event) {
    if (drag || busy || !event.isPrimary) return;
    if (event.pointerType === "mouse" && event.button !== 0) return;
    var target = event.target;
    var card = target.closest ? target.closest("[data-card]") : null;
    var board = card && card.closest("[data-board]");
    if (!board || !card.querySelector("[data-move-form]")) return;
    var handle = target.closest("[data-drag-handle]");
    if (event.pointerType !== "mouse" && !handle) return;
    if (!handle && target.closest("a, button, select, input, textarea, label")) return;
    drag = {
      card: card,
      board: board,
      source: card.closest("[data-stage-id]"),
      pointer: event.pointerId,
      x: event.clientX,
      y: event.clientY,
      active: false,
      ghost: null,
      over: null
    };
    event.preventDefault();
  });

  document.addEventListener("pointermove", function (event) {
    if (!drag || event.pointerId !== drag.pointer) return;
    var dx = event.clientX - drag.x;
    var dy = event.clientY - drag.y;
    if (!drag.active) {
      if (Math.abs(dx) + Math.abs(dy) < THRESHOLD) return;
      start();
    }
    event.preventDefault();
    drag.ghost.style.transform = "translate(" + dx + "px, " + dy + "px)";
    highlight(columnAt(drag.board, event.clientX, event.clientY));
    autoscroll(event.clientX);
  });

  function end(event, cancelled) {
    if (!drag || event.pointerId !== drag.pointer) return;
    var current = drag;
    var column = cancelled ? null : columnAt(current.board, event.clientX, event.clientY);
    finish();
    drag = null;
    if (!current.active) return;
    swallowClick = true;
    window.setTimeout(function () { swallowClick = false; }, 0);
    if (!column || column === current.source) {
      announce(current.board, "Not moved.");
      return;
    }
    submitMove(current.card, column);
  }

  document.addEventListener("pointerup", function (event) { end(event, false); });
  document.addEventListener("pointercancel", function (event) { end(event, true); });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && drag) cancel();
  });
  document.addEventListener("lostpointercapture", function (event) {
    if (drag && drag.active && event.pointerId === drag.pointer && event.target === drag.card) {
      cancel();
    }
  });
  window.addEventListener("blur", cancel);
  document.addEventListener("click", function (event) {
    if (swallowClick) {
      event.preventDefault();
      event.stopPropagation();
      swallowClick = false;
    }
  }, true);

  function forBoard(event) {
    var target = event.detail && event.detail.target;
    return !!(target && target.id === "board");
  }
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (forBoard(event)) busy = true;
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (forBoard(event)) busy = false;
  });
  // Only a board answer (header X-Board) replaces the board; its refusals (400, 403,
  // 404) carry the board and a message, so they are shown too. Anything else (the login
  // page after an expired session, a CSRF refusal, a disabled plugin's 404) is not a
  // board: a success reloads the page, an error says to reload it.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (!forBoard(event)) return;
    var xhr = event.detail.xhr;
    var status = xhr ? xhr.status : 0;
    if (!xhr || xhr.getResponseHeader("X-Board") !== "1") {
      event.detail.shouldSwap = false;
      event.detail.isError = false;
      cancel();
      if (status >= 200 && status < 300) {
        window.location.reload();
      } else {
        announce(event.detail.target, "Nothing was moved: reload the page and try again.",
          "error");
      }
      return;
    }
    cancel();
    if (status === 400 || status === 403 || status === 404) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("htmx:sendError", function () {
    var board = document.getElementById("board");
    if (board) announce(board, "The server could not be reached; nothing was moved.", "error");
  });
  // After a move by menu, keep the keyboard where it was: on the moved card's menu.
  document.addEventListener("htmx:afterSettle", function () {
    var board = document.getElementById("board");
    if (!board) return;
    var next = board.querySelector("#board-close-reason") ||
      board.querySelector("[data-focus-after-swap]");
    if (next && document.activeElement === document.body) next.focus();
  });
})();

/* === leads === */
// Rule forms (scoring, assignment): show only the fields of the chosen kind/method.
// The form names its switch (data-rule-switch="kind"); a field says which kinds it is
// for (data-show-for="field_value activity"). Without JS every field shows. A field the
// server marked invalid stays visible so its message is never hidden.
(function () {
  "use strict";
  function apply(form) {
    var name = form.getAttribute("data-rule-switch");
    var select = form.querySelector("[name='" + name + "']");
    if (!select) return;
    var chosen = select.value;
    form.querySelectorAll("[data-show-for]").forEach(function (field) {
      var kinds = field.getAttribute("data-show-for").split(" ");
      var invalid = field.classList.contains("record-field--invalid");
      field.hidden = kinds.indexOf(chosen) === -1 && !invalid;
    });
  }
  function init() {
    document.querySelectorAll("form[data-rule-switch]").forEach(function (form) {
      apply(form);
      form.addEventListener("change", function (event) {
        if (event.target && event.target.name === form.getAttribute("data-rule-switch")) {
          apply(form);
        }
      });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();

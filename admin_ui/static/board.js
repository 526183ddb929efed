/* The deal board: drag a card to another column to move the deal.

   The drop submits the card's own "Move" form with the new stage, so the server checks,
   audits and answers exactly as it does for the form without JavaScript (a lost stage
   asks for the reason, a refusal is a page that says why). */
(function () {
  "use strict";
  var board = document.querySelector("[data-board]");
  if (!board) {
    return;
  }
  var dragged = null;

  function clearTargets() {
    board.querySelectorAll(".drop-target").forEach(function (column) {
      column.classList.remove("drop-target");
    });
  }

  board.querySelectorAll(".card").forEach(function (card) {
    if (!card.querySelector("form.move-form")) {
      return;
    }
    card.draggable = true;
    card.addEventListener("dragstart", function (event) {
      dragged = card;
      card.classList.add("dragging");
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", card.dataset.deal || "");
    });
    card.addEventListener("dragend", function () {
      card.classList.remove("dragging");
      dragged = null;
      clearTargets();
    });
  });

  board.querySelectorAll(".board-column").forEach(function (column) {
    column.addEventListener("dragover", function (event) {
      if (!dragged) {
        return;
      }
      event.preventDefault();
      event.dataTransfer.dropEffect = "move";
      column.classList.add("drop-target");
    });
    column.addEventListener("dragleave", function (event) {
      if (!column.contains(event.relatedTarget)) {
        column.classList.remove("drop-target");
      }
    });
    column.addEventListener("drop", function (event) {
      event.preventDefault();
      clearTargets();
      var card = dragged;
      if (!card || card.closest(".board-column") === column) {
        return;
      }
      var form = card.querySelector("form.move-form");
      form.querySelector("select[name=stage]").value = column.dataset.stage;
      // Shown in its new column while the server answers (the page then reloads).
      column.querySelector(".cards").appendChild(card);
      card.classList.add("moving");
      if (form.requestSubmit) {
        form.requestSubmit();
      } else {
        form.submit();
      }
    });
  });
})();

/* Consentry admin: the header search box's keyboard (admin_ui/templates/_search_box.html).

   htmx fills the list as you type (POST /search/suggest). This file makes it a combobox:
   Down and Up move through the suggestions (aria-activedescendant), Enter opens the one
   chosen or, with none chosen, submits the form (the full results page), Escape closes
   the list. Without JavaScript the form still posts to the results page. */
(function () {
  "use strict";

  function wire(box) {
    var input = box.querySelector("input[role=combobox]");
    var list = box.querySelector("[role=listbox]");
    if (!input || !list) { return; }
    var active = -1;

    function options() { return list.querySelectorAll("[role=option]"); }
    function open(shown) {
      list.hidden = !shown;
      input.setAttribute("aria-expanded", shown ? "true" : "false");
      if (!shown) { choose(-1); }
    }
    function choose(index) {
      var all = options();
      for (var i = 0; i < all.length; i++) {
        all[i].setAttribute("aria-selected", i === index ? "true" : "false");
        all[i].classList.toggle("active", i === index);
      }
      active = index >= 0 && index < all.length ? index : -1;
      if (active >= 0) {
        input.setAttribute("aria-activedescendant", all[active].id);
        all[active].scrollIntoView({ block: "nearest" });
      } else {
        input.removeAttribute("aria-activedescendant");
      }
    }

    function swapped() {
      active = -1;
      open(list.textContent.trim() !== "" && input.value.trim() !== "");
      choose(-1);
    }
    // htmx fires this on the element that asked (the input) once the list is filled.
    input.addEventListener("htmx:after:swap", swapped);
    input.addEventListener("keydown", function (event) {
      var count = options().length;
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        if (list.hidden || !count) { return; }
        event.preventDefault();
        var step = event.key === "ArrowDown" ? 1 : -1;
        choose(active < 0 ? (step > 0 ? 0 : count - 1) : (active + step + count) % count);
      } else if (event.key === "Enter" && active >= 0 && !list.hidden) {
        event.preventDefault();
        window.location.assign(options()[active].getAttribute("href"));
      } else if (event.key === "Escape" && !list.hidden) {
        event.preventDefault();
        open(false);
      }
    });
    input.addEventListener("input", function () {
      if (!input.value.trim()) { open(false); }
    });
    document.addEventListener("click", function (event) {
      if (!box.contains(event.target)) { open(false); }
    });
  }

  function start() {
    var boxes = document.querySelectorAll("[data-site-search]");
    for (var i = 0; i < boxes.length; i++) { wire(boxes[i]); }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

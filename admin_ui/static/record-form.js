/* Consentry admin: record forms whose select options depend on another field.

   Markup (admin_ui/templates/records/_grouped.html):
     <select name="pipeline_id">...</select>
     <select name="stage" data-depends-on="pipeline_id" data-default-group="ID">
       <option value="">Not set</option>
       <optgroup label="Sales" data-group="ID"><option value="won">Won</option>...</optgroup>
     </select>

   Without this file every group is listed (the form still works, and the server checks
   that the stage belongs to the pipeline). With it, only the group of the value chosen in
   the named field is shown (the default group while that field is empty), and a choice
   from a group that no longer applies is cleared rather than sent. */
(function () {
  "use strict";

  function wire(select) {
    var form = select.form;
    var parent = form && form.elements.namedItem(select.getAttribute("data-depends-on"));
    if (!parent || !parent.tagName) { return; }
    function apply() {
      var key = parent.value || select.getAttribute("data-default-group") || "";
      var groups = select.querySelectorAll("optgroup[data-group]");
      for (var i = 0; i < groups.length; i++) {
        var shown = groups[i].getAttribute("data-group") === key;
        groups[i].hidden = !shown;
        groups[i].disabled = !shown;
      }
      var chosen = select.options[select.selectedIndex];
      if (chosen && chosen.parentNode.disabled) { select.value = ""; }
    }
    parent.addEventListener("change", apply);
    apply();
  }

  function start() {
    var selects = document.querySelectorAll("select[data-depends-on]");
    for (var i = 0; i < selects.length; i++) { wire(selects[i]); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

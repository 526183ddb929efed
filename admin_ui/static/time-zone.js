// The browser's time zone, for the staff user's default (sign-in) and as the suggested
// choice in My account. Without JavaScript the field stays empty and nothing changes.
(function () {
  "use strict";
  var zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (e) {
    return;
  }
  document.querySelectorAll("input[data-browser-time-zone]").forEach(function (input) {
    input.value = zone;
  });
  document.querySelectorAll("select[data-browser-time-zone]").forEach(function (select) {
    if (select.dataset.chosen) return; // the user picked one already: keep it
    var option = Array.prototype.find.call(select.options, function (o) { return o.value === zone; });
    if (option) option.selected = true;
    var note = document.getElementById(select.id + "-browser");
    if (note && option) note.textContent = "Your browser is set to " + zone + ": save to use it.";
  });
})();

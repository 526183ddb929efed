/* Consentry admin: draws the compliance console's and the reports' charts with Chart.js
   (from npm, served under /static/vendor/chartjs/).

   Markup, for each chart:
     <div class="chart" data-chart-box hidden>
       <canvas data-chart="outcomes" data-chart-data="ID" role="img" aria-label="..."></canvas>
     </div>
     <script type="application/json" id="ID">{"labels": [...], "series": [{"key", "label", "data"}]}</script>
     (optional "stacked": false draws the series side by side, for numbers that do not add up)
     <details open data-chart-table> ...the same numbers as a table... </details>

   The numbers travel in a JSON block because the Content-Security-Policy allows no inline
   script. The page is complete without this file: the chart box stays hidden and the
   table stays open. Once a chart is drawn, its box is shown and the table is folded into
   its disclosure: one click away for anyone who prefers numbers, screen readers included
   (the canvas itself has a text label that points to it). */
(function () {
  "use strict";

  // Outcome colours, chosen to differ in lightness too (not only in hue).
  var COLOURS = {
    allowed: "#2f7d4f", denied: "#b42318", error: "#e0a100",  // audit outcomes
    granted: "#2f7d4f", withdrawn: "#e0a100", objected: "#b42318", expired: "#64748b",  // consent
    lifted: "#2563eb",  // an objection lifted
    won: "#2f7d4f", lost: "#b42318", within_sla: "#2563eb", breached: "#b42318",  // CRM reports
    interactions: "#2563eb",
    commit: "#2f7d4f", best_case: "#2563eb", pipeline: "#94a3b8", quota: "#64748b",  // forecast
    audience: "#94a3b8", sent: "#2563eb", leads: "#e0a100", qualified: "#7c3aed",  // funnel
    deals: "#0e7490"
  };
  // Series without a colour of their own (currencies in the pipeline report), in turn.
  var PALETTE = ["#2563eb", "#e0a100", "#2f7d4f", "#7c3aed", "#b42318", "#0e7490", "#64748b"];

  function seriesOf(data) {
    return (data.series || []).map(function (s, i) {
      var colour = COLOURS[s.key] || PALETTE[i % PALETTE.length];
      return { label: s.label, data: s.data, backgroundColor: colour, borderColor: colour };
    });
  }

  function draw(canvas) {
    var source = document.getElementById(canvas.getAttribute("data-chart-data") || "");
    if (!source) return;
    var data;
    try {
      data = JSON.parse(source.textContent || "{}");
    } catch (e) {
      return; // the table still shows the numbers
    }
    var box = canvas.closest("[data-chart-box]");
    if (box) box.hidden = false; // Chart.js measures its container: show it first
    var still = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    var stacked = data.stacked !== false; // series that do not add up (currencies) stand side by side
    new window.Chart(canvas, {
      type: "bar",
      data: { labels: data.labels || [], datasets: seriesOf(data) },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: still ? false : { duration: 300 },
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: stacked },
          y: { stacked: stacked, beginAtZero: true, ticks: { precision: stacked ? 0 : 2 } }
        },
        plugins: { legend: { position: "bottom" } }
      }
    });
    var section = canvas.closest("section") || document;
    var table = section.querySelector("details[data-chart-table]");
    if (table) table.open = false;
  }

  function drawAll() {
    if (typeof window.Chart !== "function") return; // assets not installed: tables only
    var canvases = document.querySelectorAll("canvas[data-chart]");
    for (var i = 0; i < canvases.length; i += 1) draw(canvases[i]);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();

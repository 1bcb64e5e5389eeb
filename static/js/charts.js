/* Draws every <canvas data-chart="ID"> from the json_script ID (aladdin/lib/charts.py).
 * Without Chart.js (or JavaScript) the canvas stays hidden and the table beside it
 * (data-table) stays open; once drawn, the table folds away. */
(function () {
  "use strict";
  function draw(canvas) {
    var source = document.getElementById(canvas.dataset.chart);
    if (!source) { return; }
    var chart = JSON.parse(source.textContent);
    if (!chart.labels.length) { return; }
    var scales = {};
    Object.keys(chart.axes).forEach(function (id) {
      var axis = chart.axes[id];
      scales[id] = {
        stacked: chart.stacked,
        beginAtZero: true,
        position: axis.position,
        title: { display: true, text: axis.title },
        grid: { drawOnChartArea: axis.position !== "right" }
      };
    });
    scales.x = { stacked: chart.stacked };
    canvas.hidden = false;
    canvas.parentNode.classList.add("drawn");
    new window.Chart(canvas, {
      data: {
        labels: chart.labels,
        datasets: chart.series.map(function (s) {
          // Values are exact decimal strings; numbers only to draw.
          var set = { type: s.type, label: s.label, data: s.values.map(Number), yAxisID: s.axis };
          set[s.type === "line" ? "borderColor" : "backgroundColor"] = s.color;
          return set;
        })
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        plugins: { legend: { display: chart.series.length > 1 } },
        scales: scales
      }
    });
    var table = canvas.dataset.table && document.getElementById(canvas.dataset.table);
    if (table) { table.removeAttribute("open"); }
  }
  if (!window.Chart) { return; }
  document.querySelectorAll("canvas[data-chart]").forEach(draw);
})();

/* The Monitor (issue 18): live charts of a workload's CPU, memory and GPU use.
 *
 * Markup: templates/workloads/_monitor.html (section#monitor, with the
 * metrics API's URL and the labels in the page's language). The first
 * request takes every kept sample; later ones ask only for samples after
 * the last one seen (?since=), every interval the cluster samples at.
 * Chart.js is vendored (static/vendor/chart.js), loaded before this file.
 */
(function () {
  "use strict";

  var root = document.getElementById("monitor");
  if (!root || !window.Chart) { return; }
  var url = root.getAttribute("data-metrics-url");
  var note = document.getElementById("monitor-note");
  var gpuNote = document.getElementById("monitor-gpu-note");
  var lang = document.documentElement.lang || undefined;
  var MIB = 1024 * 1024;
  var MAX_POINTS = 720;
  var COLORS = ["#4f46e5", "#059669", "#d97706", "#dc2626", "#0891b2", "#7c3aed", "#65a30d", "#db2777"];
  var last = null;
  var charts = null;

  function text(name) { return root.getAttribute("data-text-" + name) || ""; }
  function label(name, index) {
    return (root.getAttribute("data-label-" + name) || name).replace("{index}", index);
  }
  function say(message) { note.textContent = message; note.hidden = !message; }

  function makeChart(canvas, yTitle, max) {
    canvas.hidden = false;
    canvas.parentNode.classList.add("drawn");
    return new window.Chart(canvas, {
      type: "line",
      data: { labels: [], datasets: [] },
      options: {
        animation: false,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        elements: { point: { radius: 0 }, line: { borderWidth: 2, tension: 0.2 } },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        scales: {
          x: { ticks: { maxTicksLimit: 6, maxRotation: 0 } },
          y: { beginAtZero: true, suggestedMax: max, title: { display: true, text: yTitle } }
        }
      }
    });
  }

  function series(chart, key, title) {
    var found = chart.data.datasets.filter(function (d) { return d.key === key; })[0];
    if (!found) {
      var color = COLORS[chart.data.datasets.length % COLORS.length];
      found = { key: key, label: title, data: [], borderColor: color, backgroundColor: color, spanGaps: true };
      // A series that appears later (a card's first figures) starts with gaps.
      for (var i = 0; i < chart.data.labels.length; i++) { found.data.push(null); }
      chart.data.datasets.push(found);
    }
    return found;
  }

  function add(samples) {
    if (!charts) {
      charts = {
        usage: makeChart(document.getElementById("monitor-usage"), "%", 100),
        memory: makeChart(document.getElementById("monitor-memory"), "MiB", undefined)
      };
    }
    samples.forEach(function (s) {
      var at = new Date(s.at).toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
      var values = { usage: {}, memory: {} };
      values.usage.cpu = [label("cpu"), s.cpu_percent];
      values.memory.memory = [label("memory"), s.memory_bytes === null ? null : Math.round(s.memory_bytes / MIB)];
      (s.gpus || []).forEach(function (g) {
        values.usage["gpu" + g.index] = [label("gpu", g.index), g.utilization_percent];
        values.memory["gpumem" + g.index] = [label("gpu-memory", g.index), g.memory_used_mib];
      });
      ["usage", "memory"].forEach(function (which) {
        var chart = charts[which];
        chart.data.labels.push(at);
        Object.keys(values[which]).forEach(function (key) { series(chart, key, values[which][key][0]); });
        chart.data.datasets.forEach(function (d) {
          var v = values[which][d.key];
          d.data.push(v ? v[1] : null);
        });
        if (chart.data.labels.length > MAX_POINTS) {
          chart.data.labels.shift();
          chart.data.datasets.forEach(function (d) { d.data.shift(); });
        }
      });
    });
    charts.usage.update();
    charts.memory.update();
  }

  function poll() {
    var ask = url + (last ? "?since=" + encodeURIComponent(last) : "");
    fetch(ask, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.json();
      })
      .then(function (data) {
        var wait = Math.max(2, data.interval_seconds || 5);
        if (data.samples.length) {
          last = data.samples[data.samples.length - 1].at;
          add(data.samples);
        }
        if (!data.available) {
          if (!charts) { say(text("none")); }
          wait = 15;
        } else {
          say(charts ? "" : text("waiting"));
        }
        var noGpu = data.available && !data.gpu_metrics && root.hasAttribute("data-has-gpus");
        gpuNote.textContent = noGpu ? text("no-gpu") : "";
        gpuNote.hidden = !noGpu;
        setTimeout(poll, wait * 1000);
      })
      .catch(function () {
        say(text("error"));
        setTimeout(poll, 15000);
      });
  }

  say(text("waiting"));
  poll();
})();

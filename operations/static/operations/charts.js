/* Charts of the operations pages, drawn with the vendored uPlot (no CDN: the product runs air-gapped).
   - Overview tiles: a sparkline of duration and rows per tile, drawn when the tile scrolls into view,
     so a page of a hundred tiles costs only what is on screen.
   - Loader page: duration and rows over 30 days from the chart JSON endpoint, with the approved
     expected range as a band and version approvals as dashed lines.
   Each drawn chart records its series count in data-series (tests and people can read it). */
(function () {
  "use strict";

  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function drawSpark(el) {
    var source = document.getElementById(el.dataset.spark);
    if (!source || el.dataset.drawn) return;
    var spark = JSON.parse(source.textContent);
    var width = Math.max(el.clientWidth, 60);
    var opts = {
      width: width, height: 40, legend: { show: false }, cursor: { show: false }, select: { show: false },
      axes: [{ show: false }, { show: false, scale: "s" }, { show: false, scale: "rows" }],
      scales: { x: { time: true }, s: {}, rows: {} },
      series: [{}, { label: "Duration (s)", scale: "s", stroke: "#1d4ed8", width: 1.5, points: { show: false } },
               { label: "Rows written", scale: "rows", stroke: "#a16207", width: 1, dash: [3, 2], points: { show: false } }],
    };
    var chart = new uPlot(opts, [spark.t, spark.duration, spark.rows], el);
    el.dataset.drawn = "1";
    el.dataset.series = String(chart.series.length - 1);
    el.uplot = chart;
    window.opsLastDrawMs = performance.now();  // when the page was last drawn (bench/bench_overview.py reads it)
  }

  function approvalsPlugin(approvals) {
    return { hooks: { draw: [function (u) {
      var ctx = u.ctx;
      ctx.save();
      ctx.strokeStyle = cssVar("--body-quiet-color", "#666");
      ctx.fillStyle = ctx.strokeStyle;
      ctx.setLineDash([5, 4]);
      ctx.font = Math.round(11 * devicePixelRatio) + "px sans-serif";
      approvals.forEach(function (a) {
        var x = Math.round(u.valToPos(a.t, "x", true));
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
        ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
        ctx.fillText(a.label, x + 3, u.bbox.top + 12 * devicePixelRatio);
      });
      ctx.restore();
    }] } };
  }

  function constant(times, value) { return times.map(function () { return value; }); }

  function drawLoaderChart(el, data) {
    var which = el.dataset.chart;
    var t = data.t;
    var values = which === "duration" ? data.duration_seconds : data.rows_written;
    var label = which === "duration" ? "Duration (s)" : "Rows written";
    var series = [{}, { label: label, stroke: which === "duration" ? "#1d4ed8" : "#a16207", width: 2,
                        points: { show: t.length < 200 } }];
    // Failed runs as red dots on the same scale, so a failure reads at a glance (and in the legend).
    series.push({ label: "Failed run", stroke: "#b91c1c", fill: "#b91c1c", paths: function () { return null; },
                  points: { show: true, size: 9, fill: "#b91c1c" } });
    var columns = [t, values, values.map(function (v, i) { return data.failed[i] ? (v === null ? 0 : v) : null; })];
    var bands = [];
    var low = which === "duration" ? 0 : data.expected.rows_min;
    var high = which === "duration" ? data.expected.duration_max_seconds : data.expected.rows_max;
    if (high !== null && high !== undefined) {
      // The approved range as a band between two flat series (the expected maximum and minimum).
      series.push({ label: "Expected max", stroke: "rgba(21,128,61,0.7)", width: 1, dash: [4, 4], points: { show: false } });
      series.push({ label: "Expected min", stroke: "rgba(21,128,61,0.7)", width: 1, dash: [4, 4], points: { show: false } });
      columns.push(constant(t, high), constant(t, low === null || low === undefined ? 0 : low));
      bands.push({ series: [3, 4], fill: "rgba(21,128,61,0.12)" });
    } else if (low !== null && low !== undefined) {
      series.push({ label: "Expected min", stroke: "rgba(21,128,61,0.7)", width: 1, dash: [4, 4], points: { show: false } });
      columns.push(constant(t, low));
    }
    var opts = {
      width: Math.max(el.clientWidth, 280), height: 220, series: series, bands: bands,
      scales: { x: { time: true, range: [data.from, data.to] } },
      axes: [{ stroke: cssVar("--body-fg", "#333") }, { stroke: cssVar("--body-fg", "#333"), size: 60 }],
      plugins: [approvalsPlugin(data.approvals)],
    };
    var chart = new uPlot(opts, columns, el);
    el.dataset.series = String(chart.series.length - 1);
    el.dataset.points = String(t.length);
    el.dataset.approvals = String(data.approvals.length);
    el.uplot = chart;
  }

  function loaderCharts() {
    var charts = document.querySelectorAll(".ops-chart[data-src]");
    if (!charts.length) return;
    fetch(charts[0].dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (data) {
        charts.forEach(function (el) {
          if (!data.t.length) { el.textContent = "No finished runs in the last 30 days."; el.dataset.series = "0"; return; }
          drawLoaderChart(el, data);
        });
      })
      .catch(function (err) { charts.forEach(function (el) { el.textContent = "Chart data could not be loaded (" + err.message + ")."; }); });
  }

  function sparks() {
    var els = document.querySelectorAll(".ops-spark[data-spark]:not([data-spark=''])");
    if (!("IntersectionObserver" in window)) { els.forEach(drawSpark); return; }
    var seen = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) { if (e.isIntersecting) { drawSpark(e.target); seen.unobserve(e.target); } });
    }, { rootMargin: "200px" });
    els.forEach(function (el) { seen.observe(el); });
  }

  function copyButtons() {
    document.querySelectorAll(".ops-copy").forEach(function (button) {
      button.addEventListener("click", function () {
        var text = button.parentNode.querySelector("pre").textContent;
        var done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 1500); };
        if (navigator.clipboard) { navigator.clipboard.writeText(text).then(done); } else { done(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { sparks(); loaderCharts(); copyButtons(); });
})();

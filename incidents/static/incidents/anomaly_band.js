/* Anomaly series with their expected band (uPlot, vendored), on the incident page's Evidence panel
   and the loader page: the series as a line, the range its own history expected at each point
   shaded, anomalous points as red dots, the incident's opening and version approvals as dashed
   lines. Each element with data-band="<url>" fetches its JSON (incidents.anomaly.band.Band.as_json)
   and records what it drew in data-drawn, data-points and data-anomalies (tests and people read them). */
(function () {
  "use strict";

  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function format(v) { return v == null ? "" : (Math.abs(v) >= 100 ? Math.round(v) : Math.round(v * 100) / 100).toLocaleString(); }

  function marks(data) {
    // Approvals labelled on the first line of the plot, left of their line (what came before), the
    // incident's opening on the second, right of its line unless near the right edge: an anomaly soon
    // after an approval keeps both labels readable.
    return function (u) {
      var ctx = u.ctx, box = u.bbox, px = devicePixelRatio;
      var lines = (data.approvals || []).map(function (a) { return { t: a.t, label: a.label, row: 1, before: true }; });
      if (data.opened_at != null) lines.push({ t: data.opened_at, label: "opened", colour: "#a16207", row: 2 });
      ctx.save();
      ctx.lineWidth = 2;
      ctx.font = Math.round(11 * px) + "px sans-serif";
      lines.forEach(function (line) {
        var x = Math.round(u.valToPos(line.t, "x", true));
        if (x < box.left || x > box.left + box.width) return;
        ctx.strokeStyle = ctx.fillStyle = line.colour || cssVar("--body-quiet-color", "#666");
        ctx.setLineDash([6, 4]);
        ctx.beginPath(); ctx.moveTo(x, box.top); ctx.lineTo(x, box.top + box.height); ctx.stroke();
        var width = ctx.measureText(line.label).width;
        var left = line.before || x + 4 * px + width > box.left + box.width ? x - 4 * px - width : x + 4 * px;
        ctx.fillText(line.label, left, box.top + 13 * px * line.row);
      });
      ctx.restore();
    };
  }

  function draw(el, data) {
    if (!data.t.length) {
      el.textContent = "No values of this series in these days.";
      el.style.minHeight = "0";
      el.dataset.drawn = "true";
      el.dataset.points = "0";
      return;
    }
    var anomalies = data.value.map(function (v, i) { return data.anomaly[i] ? v : null; });
    var band = "rgba(21, 128, 61, 0.16)", edge = "rgba(21, 128, 61, 0.55)";
    var opts = {
      width: Math.max(280, el.clientWidth), height: 260,
      // A little room after the last point, so a point (or an approval) at the very end is not cut.
      scales: { x: { time: true, range: [data.from, data.to + (data.to - data.from) * 0.015] } },
      series: [
        {},
        { label: data.series, stroke: "#1d4ed8", width: 1.5, points: { show: data.t.length < 150 }, value: function (u, v) { return format(v); } },
        { label: "Expected", stroke: edge, width: 1, dash: [4, 4], points: { show: false }, value: function (u, v) { return format(v); } },
        { label: "Expected high", stroke: edge, width: 1, points: { show: false }, value: function (u, v) { return format(v); } },
        { label: "Expected low", stroke: edge, width: 1, points: { show: false }, value: function (u, v) { return format(v); } },
        { label: "Anomaly", stroke: "#b91c1c", fill: "#b91c1c", paths: function () { return null; },
          points: { show: true, size: 9, fill: "#b91c1c" }, value: function (u, v) { return format(v); } }
      ],
      bands: [{ series: [3, 4], fill: band }],
      axes: [{ stroke: cssVar("--body-fg", "#333") },
             { stroke: cssVar("--body-fg", "#333"), size: 70, values: function (u, ticks) { return ticks.map(format); } }],
      hooks: { draw: [marks(data)] }
    };
    var chart = new uPlot(opts, [data.t, data.value, data.expected, data.high, data.low, anomalies], el);
    el.dataset.drawn = "true";
    el.dataset.points = String(data.t.length);
    el.dataset.anomalies = String(anomalies.filter(function (v) { return v !== null; }).length);
    el.uplot = chart;
    window.addEventListener("resize", function () { chart.setSize({ width: Math.max(280, el.clientWidth), height: 260 }); });
  }

  function start() {
    if (typeof uPlot === "undefined") return;
    document.querySelectorAll("[data-band]").forEach(function (el) {
      fetch(el.dataset.band, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
        .then(function (data) { draw(el, data); })
        .catch(function (err) { el.textContent = "The chart could not be loaded (" + err.message + ")."; });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

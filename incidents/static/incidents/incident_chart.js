/* The incident page's chart: the measured series around the moment the incident opened (uPlot,
   vendored), with the threshold as a red line, the expected range shaded and the opening moment
   dashed. Data comes from the page's own JSON endpoint (data-url). */
(function () {
  "use strict";

  function durationWords(seconds) {
    if (seconds == null) return "";
    seconds = Math.round(seconds);
    if (seconds < 60) return seconds + " s";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min";
    var hours = Math.floor(minutes / 60);
    return hours + " h" + (minutes % 60 ? " " + (minutes % 60) + " min" : "");
  }

  function formatter(unit) {
    if (unit === "s") return durationWords;
    if (unit === "%") return function (v) { return v == null ? "" : v + " %"; };
    return function (v) { return v == null ? "" : v.toLocaleString(); };
  }

  function marks(data) {
    // Draws the band, the threshold and the moment it opened over the plot area.
    return function (u) {
      var ctx = u.ctx, box = u.bbox;
      ctx.save();
      if (data.band) {
        var lo = data.band[0] == null ? u.scales.y.min : data.band[0];
        var hi = data.band[1] == null ? u.scales.y.max : data.band[1];
        var top = u.valToPos(hi, "y", true), bottom = u.valToPos(lo, "y", true);
        ctx.fillStyle = "rgba(21, 128, 61, 0.12)";
        ctx.fillRect(box.left, Math.min(top, bottom), box.width, Math.abs(bottom - top));
      }
      if (data.threshold != null) {
        var y = u.valToPos(data.threshold, "y", true);
        ctx.strokeStyle = "#b91c1c";
        ctx.lineWidth = 2;
        ctx.beginPath(); ctx.moveTo(box.left, y); ctx.lineTo(box.left + box.width, y); ctx.stroke();
      }
      var x = u.valToPos(data.opened_at, "x", true);
      ctx.strokeStyle = "#a16207";
      ctx.setLineDash([6, 4]);
      ctx.lineWidth = 2;
      ctx.beginPath(); ctx.moveTo(x, box.top); ctx.lineTo(x, box.top + box.height); ctx.stroke();
      ctx.restore();
    };
  }

  function draw(el, data) {
    var note = document.getElementById("incident-chart-note");
    if (!data.x.length) {
      el.textContent = "No measurements of this loader in those hours.";
      el.style.minHeight = "0";
      return;
    }
    var fmt = formatter(data.unit);
    var colours = ["#1d4ed8", "#b91c1c", "#15803d"];
    var series = [{}].concat(data.series.map(function (s, i) {
      return {
        label: s.label, stroke: colours[i % colours.length], width: 2,
        points: { show: true, size: i ? 8 : 5, fill: colours[i % colours.length] },
        paths: i ? function () { return null; } : undefined,
        value: function (u, v) { return fmt(v); }
      };
    }));
    var values = [];
    data.series.forEach(function (s) { s.values.forEach(function (v) { if (v != null) values.push(v); }); });
    if (data.threshold != null) values.push(data.threshold);
    if (data.band) data.band.forEach(function (v) { if (v != null) values.push(v); });
    var max = Math.max.apply(null, values.concat([0]));
    var opts = {
      width: Math.max(200, el.clientWidth),
      height: 240,
      series: series,
      scales: { x: { time: true, range: [data.from, data.to] }, y: { range: [0, max * 1.1 || 1] } },
      axes: [{}, { values: function (u, ticks) { return ticks.map(fmt); }, size: 70 }],
      hooks: { draw: [marks(data)] }
    };
    var chart = new uPlot(opts, [data.x].concat(data.series.map(function (s) { return s.values; })), el);
    el.dataset.drawn = "true";
    el.dataset.series = String(data.series.length);
    window.addEventListener("resize", function () { chart.setSize({ width: Math.max(200, el.clientWidth), height: 240 }); });
    if (note && data.threshold == null && !data.band) note.textContent = note.textContent.replace("; red line: the threshold; shaded: the expected range", "");
  }

  function start() {
    var el = document.getElementById("incident-chart");
    if (!el || typeof uPlot === "undefined") return;
    fetch(el.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (data) { draw(el, data); })
      .catch(function () { el.textContent = "The chart could not be loaded."; });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

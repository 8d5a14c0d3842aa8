// edgeproof report: draws every chart of the inline data with uPlot (zoom by dragging, values on
// hover, double-click to reset) over the static SVG it replaces, then records on <body> what it
// rendered, any script error and any blocked fetch, so a browser test (or a reader) can tell a
// broken report from a good one. It never fetches anything: the page's CSP forbids it.
(function () {
  "use strict";
  var probe = window.__edgeproof || { errors: [], blocked: [] };
  var body = document.body;
  var data = JSON.parse(document.getElementById("edgeproof-data").textContent);
  var plots = [];

  function percentile(inverse) {
    var v = Math.max(inverse, 1);
    var digits = Math.max(0, Math.round(Math.log10(v)) - 2);
    return (100 * (1 - 1 / v)).toFixed(digits) + "%";
  }

  // One tick per decade of 1 / (1 - q): 0%, 90%, 99%, 99.9%, ...
  function decades(u, axisIndex, min, max) {
    var ticks = [];
    for (var v = 1; v <= max * 1.0001; v *= 10) if (v >= min / 1.0001) ticks.push(v);
    return ticks;
  }

  function shade(spans) {
    return {
      hooks: {
        drawClear: [function (u) {
          var ctx = u.ctx;
          ctx.save();
          spans.forEach(function (span) {
            var from = u.valToPos(span.from, "x", true);
            var to = u.valToPos(span.to, "x", true);
            if (to - from < 2) {
              ctx.fillStyle = "rgba(220,50,32,0.7)";
              ctx.fillRect(from - 1, u.bbox.top, 2, u.bbox.height);
            } else {
              ctx.fillStyle = "rgba(220,50,32,0.12)";
              ctx.fillRect(from, u.bbox.top, to - from, u.bbox.height);
            }
          });
          ctx.restore();
        }]
      }
    };
  }

  function draw(chart) {
    var figure = document.querySelector('figure[data-chart="' + chart.id + '"]');
    var mount = figure.querySelector(".plot");
    var width = Math.max(320, Math.min(mount.clientWidth || 760, 1100));
    var series = [{
      label: chart.x_label,
      value: chart.x_axis === "percentile"
        ? function (u, v) { return v == null ? "-" : percentile(v); }
        : function (u, v) { return v == null ? "-" : String(+v.toFixed(3)); }
    }];
    chart.lines.forEach(function (line) {
      var options = { label: line.label, stroke: line.color, width: 2, spanGaps: false };
      if (line.dashed) options.dash = [6, 4];
      if (chart.points) {
        options.paths = function () { return null; };
        options.points = { show: true, size: 7, fill: line.color, stroke: line.color };
      } else {
        // Lines without markers, unless a line is too short to draw (a single interval).
        var present = line.values.filter(function (v) { return v != null; }).length;
        options.points = { show: present < 3, size: 7 };
      }
      series.push(options);
    });
    var opts = {
      width: width,
      height: 300,
      series: series,
      scales: {
        x: { time: false, distr: chart.x_axis === "linear" ? 1 : 3 },
        y: { distr: chart.y_axis === "linear" ? 1 : 3 }
      },
      axes: [
        chart.x_axis === "percentile"
          ? { label: chart.x_label, splits: decades, values: function (u, splits) { return splits.map(percentile); } }
          : chart.points
            ? { label: chart.x_label, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 1e5, 1e6, 1e7, 1e8, 1e9] }
            : { label: chart.x_label },
        { label: chart.y_label, size: 60 }
      ],
      plugins: chart.spans.length ? [shade(chart.spans)] : []
    };
    var columns = [chart.x].concat(chart.lines.map(function (line) { return line.values; }));
    var plot = new uPlot(opts, columns, mount);
    figure.classList.add("live");
    plots.push({ chart: chart, plot: plot, figure: figure });
  }

  // Counts pixels of a line's colour inside the plotting area: a chart whose lines drew nothing
  // is as broken as one that threw.
  function inked(entry) {
    var u = entry.plot;
    var ctx = u.ctx;
    var box = u.bbox;
    if (box.width < 1 || box.height < 1) return 0;
    var pixels = ctx.getImageData(box.left, box.top, box.width, box.height).data;
    var colors = entry.chart.lines.map(function (line) {
      var hex = line.color.replace("#", "");
      return [parseInt(hex.slice(0, 2), 16), parseInt(hex.slice(2, 4), 16), parseInt(hex.slice(4, 6), 16)];
    });
    var count = 0;
    for (var i = 0; i < pixels.length; i += 4) {
      if (pixels[i + 3] < 128) continue;
      for (var c = 0; c < colors.length; c++) {
        var d = Math.abs(pixels[i] - colors[c][0]) + Math.abs(pixels[i + 1] - colors[c][1]) + Math.abs(pixels[i + 2] - colors[c][2]);
        if (d < 60) { count++; break; }
      }
    }
    return count;
  }

  function finish() {
    var drawn = 0;
    plots.forEach(function (entry) {
      var ink = inked(entry);
      entry.figure.setAttribute("data-ink", String(ink));
      if (ink > 20) drawn++;
    });
    var verdict = document.getElementById("verdict");
    var box = verdict ? verdict.getBoundingClientRect() : null;
    body.setAttribute("data-charts-expected", String(data.charts.length));
    body.setAttribute("data-charts-rendered", String(plots.length));
    body.setAttribute("data-charts-drawn", String(drawn));
    body.setAttribute("data-verdict-visible", String(!!box && box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight));
    body.setAttribute("data-resources", String(performance.getEntriesByType("resource").length));
    body.setAttribute("data-blocked", JSON.stringify(probe.blocked));
    body.setAttribute("data-errors", JSON.stringify(probe.errors));
    body.setAttribute("data-render", probe.errors.length ? "error" : "interactive");
  }

  data.charts.forEach(function (chart) {
    try {
      draw(chart);
    } catch (error) {
      // The static SVG stays in place; the error is recorded.
      probe.errors.push("chart " + chart.id + ": " + error);
    }
  });
  setTimeout(finish, 50);
})();

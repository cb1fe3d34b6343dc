"use strict";
// Draws each chart of the embedded data as an SVG line chart. When it is done the body
// carries data-ready="true", and each chart its datapoint count (data-points), so a
// headless browser can tell a drawn page from a broken one without reading pixels.
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 600;
  const HEIGHT = 230;
  const MARGIN = { top: 10, bottom: 26, left: 52, right: 16, rightWithAxis: 52 };
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const body = document.body;
  let errors = 0;
  window.addEventListener("error", function () {
    errors += 1;
    body.dataset.errors = String(errors);
  });

  function node(name, attributes, text) {
    const element = name.startsWith("svg:") ? document.createElementNS(SVG, name.slice(4)) : document.createElement(name);
    for (const [key, value] of Object.entries(attributes || {})) {
      element.setAttribute(key, String(value));
    }
    if (text !== undefined) {
      element.textContent = text;
    }
    return element;
  }

  // Whole numbers (counts, tokens) are shown in full; fractions keep six significant digits,
  // which drops float noise such as 0.30000000000000004.
  function exact(value) {
    return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(6)));
  }

  // Axis ticks must fit the margin: 1.5k rather than 1500, 2G rather than 2000000000.
  function compact(value) {
    const size = Math.abs(value);
    for (const [scale, suffix] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e4, "k"]]) {
      if (size >= scale) return String(Number((value / scale).toPrecision(3))) + suffix;
    }
    return exact(value);
  }

  function clock(ms) {
    const at = new Date(ms);
    return String(at.getHours()).padStart(2, "0") + ":" + String(at.getMinutes()).padStart(2, "0");
  }

  // A step of 1, 2 or 5 times a power of ten, giving about `count` intervals.
  function niceStep(span, count) {
    const raw = span / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const multiple = [1, 2, 5, 10].find((m) => m * power >= raw) || 10;
    return multiple * power;
  }

  // The value range of one axis: the widget's fixed bounds if it has them, else the data's
  // range from zero, widened to whole steps.
  function scaleFor(series, fixedMin, fixedMax) {
    const values = series.flatMap((s) => s.points.map((p) => p[1]));
    let min = fixedMin !== null && fixedMin !== undefined ? fixedMin : Math.min(0, ...values);
    let max = fixedMax !== null && fixedMax !== undefined ? fixedMax : Math.max(...values);
    if (!(max > min)) max = min + 1;
    const step = niceStep(max - min, 4);
    if (fixedMax === null || fixedMax === undefined) max = Math.ceil(max / step) * step;
    if (fixedMin === null || fixedMin === undefined) min = Math.floor(min / step) * step;
    // Counted, not accumulated: far from zero, adding a tiny step may not change the sum.
    const ticks = [];
    for (let i = 0; i <= 12 && min + i * step <= max + step / 1e6; i++) ticks.push(min + i * step);
    return { min: min, max: max, ticks: ticks };
  }

  function timeTicks(start, end) {
    const minutes = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440];
    const span = (end - start) / 60000;
    const step = (minutes.find((m) => span / m <= 7) || 1440) * 60000;
    const ticks = [];
    for (let tick = Math.ceil(start / step) * step; tick <= end; tick += step) ticks.push(tick);
    return ticks;
  }

  function drawChart(chart, start, end) {
    const right = chart.series.filter((s) => s.axis === "right");
    const left = chart.series.filter((s) => s.axis !== "right");
    const plot = {
      left: MARGIN.left,
      right: WIDTH - (right.length ? MARGIN.rightWithAxis : MARGIN.right),
      top: MARGIN.top,
      bottom: HEIGHT - MARGIN.bottom,
    };
    const scales = {
      left: scaleFor(left.length ? left : right, chart.yMin, chart.yMax),
      right: right.length ? scaleFor(right, null, null) : null,
    };
    const x = (ms) => plot.left + ((ms - start) / (end - start)) * (plot.right - plot.left);
    const y = (value, scale) => plot.bottom - ((value - scale.min) / (scale.max - scale.min)) * (plot.bottom - plot.top);
    const svg = node("svg:svg", { viewBox: "0 0 " + WIDTH + " " + HEIGHT, role: "img", "aria-label": chart.title });

    for (const tick of scales.left.ticks) {
      svg.appendChild(node("svg:line", { class: "grid", x1: plot.left, x2: plot.right, y1: y(tick, scales.left), y2: y(tick, scales.left) }));
      svg.appendChild(node("svg:text", { class: "tick", x: plot.left - 6, y: y(tick, scales.left) + 4, "text-anchor": "end" }, compact(tick)));
    }
    if (scales.right) {
      for (const tick of scales.right.ticks) {
        svg.appendChild(node("svg:text", { class: "tick", x: plot.right + 6, y: y(tick, scales.right) + 4, "text-anchor": "start" }, compact(tick)));
      }
      svg.appendChild(node("svg:line", { class: "axis", x1: plot.right, x2: plot.right, y1: plot.top, y2: plot.bottom }));
    }
    for (const tick of timeTicks(start, end)) {
      svg.appendChild(node("svg:line", { class: "axis", x1: x(tick), x2: x(tick), y1: plot.bottom, y2: plot.bottom + 4 }));
      svg.appendChild(node("svg:text", { class: "tick", x: x(tick), y: HEIGHT - 8, "text-anchor": "middle" }, clock(tick)));
    }
    svg.appendChild(node("svg:line", { class: "axis", x1: plot.left, x2: plot.left, y1: plot.top, y2: plot.bottom }));
    svg.appendChild(node("svg:line", { class: "axis", x1: plot.left, x2: plot.right, y1: plot.bottom, y2: plot.bottom }));

    chart.series.forEach(function (series, index) {
      if (!series.points.length) return;
      const color = COLORS[index % COLORS.length];
      const scale = series.axis === "right" ? scales.right : scales.left;
      // A gap longer than one and a half periods is missing data, not a straight line.
      const gap = series.period * 1500;
      let path = "";
      series.points.forEach(function (point, i) {
        const jump = i === 0 || point[0] - series.points[i - 1][0] > gap;
        path += (jump ? "M" : "L") + x(point[0]).toFixed(1) + " " + y(point[1], scale).toFixed(1) + " ";
      });
      svg.appendChild(node("svg:path", { class: "line", d: path.trim(), stroke: color }));
      for (const point of series.points) {
        const dot = node("svg:circle", { cx: x(point[0]).toFixed(1), cy: y(point[1], scale).toFixed(1), r: 2.5, fill: color });
        dot.appendChild(node("svg:title", {}, series.label + " at " + clock(point[0]) + ": " + exact(point[1])));
        svg.appendChild(dot);
      }
    });
    return svg;
  }

  function legend(chart) {
    const list = node("ul", { class: "legend" });
    chart.series.forEach(function (series, index) {
      const values = series.points.map((p) => p[1]);
      const item = node("li", { class: "series", "data-label": series.label, "data-stat": series.stat });
      item.appendChild(node("span", { class: "swatch", style: "background:" + COLORS[index % COLORS.length] }));
      item.appendChild(node("span", { class: "name" }, series.label + (series.axis === "right" ? " (right axis)" : "")));
      let figures = "no data";
      if (values.length) {
        const latest = values[values.length - 1];
        const total = values.reduce((a, b) => a + b, 0);
        const max = Math.max(...values);
        item.dataset.latest = String(latest);
        item.dataset.total = String(total);
        item.dataset.max = String(max);
        // A sum adds up over the window; other statistics do not, so their peak is shown.
        figures = "latest " + exact(latest) + (series.stat === "Sum" ? " · total " + exact(total) : " · max " + exact(max));
      }
      item.appendChild(node("span", { class: "figures" }, figures));
      list.appendChild(item);
    });
    return list;
  }

  function renderChart(chart, start, end) {
    const points = chart.series.reduce((sum, s) => sum + s.points.length, 0);
    const section = node("section", {
      class: "chart",
      "data-title": chart.title,
      "data-points": points,
      "data-series": chart.series.length,
      "data-aws-only": chart.awsOnly,
    });
    section.style.gridColumn = chart.x + 1 + " / span " + chart.width;
    section.appendChild(node("h2", {}, chart.title));
    if (points === 0) {
      const empty = node("div", { class: "empty" });
      empty.appendChild(node("strong", {}, "No data in this window"));
      for (const note of chart.notes) empty.appendChild(node("small", {}, note));
      section.appendChild(empty);
    } else {
      section.appendChild(drawChart(chart, start, end));
    }
    if (chart.series.length) section.appendChild(legend(chart));
    return section;
  }

  const data = JSON.parse(document.getElementById("dashboard-data").textContent);
  const main = document.getElementById("charts");
  for (const chart of data.charts) main.appendChild(renderChart(chart, data.startMs, data.endMs));
  const minutes = Math.round((data.endMs - data.startMs) / 60000);
  document.getElementById("window").prepend(
    document.createTextNode(minutes + " minutes, " + clock(data.startMs) + " to " + clock(data.endMs) + " (" + data.region + "). ")
  );
  body.dataset.charts = String(data.charts.length);
  body.dataset.errors = String(errors);
  body.dataset.ready = "true";
})();

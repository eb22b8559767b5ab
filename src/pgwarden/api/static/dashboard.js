// Draw each <canvas data-chart="..."> with Chart.js (bundled, see chart.js.LICENSE.md).
// The charts drawn are kept in window.pgwardenCharts, for tests and the curious.
(function () {
  "use strict";
  var palette = ["#3566c9", "#d9822b", "#2f9e6e", "#b23a48", "#7d5ba6", "#4a8fb0"];
  window.pgwardenCharts = [];
  function draw(canvas) {
    var spec = JSON.parse(canvas.getAttribute("data-chart"));
    var round = spec.type === "doughnut";
    var datasets = spec.series.map(function (serie, i) {
      return {
        label: serie.name,
        data: serie.data,
        backgroundColor: round ? palette : palette[i % palette.length],
        borderColor: round ? "#fff" : palette[i % palette.length],
        fill: false,
        tension: 0.2,
        maxBarThickness: 48
      };
    });
    var scales = round ? {} : {
      x: { stacked: spec.stacked, ticks: { autoSkip: true, maxRotation: 45 } },
      y: { stacked: spec.stacked, beginAtZero: true }
    };
    var chart = new Chart(canvas, {
      type: spec.type,
      data: { labels: spec.labels, datasets: datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: {
          legend: { display: round || spec.series.length > 1 },
          title: { display: Boolean(spec.title), text: spec.title }
        },
        scales: scales
      }
    });
    window.pgwardenCharts.push(chart);
  }
  document.querySelectorAll("canvas[data-chart]").forEach(draw);
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
})();

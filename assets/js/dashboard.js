// llm-proxy dashboard: charts from JSON endpoints, the live request stream, copy buttons.
// Loaded once per full page; everything re-initialises on htmx swaps (htmx:afterSettle).
(function () {
  "use strict";

  var COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed"];

  function draw(canvas, type, labels, datasets, options) {
    var old = window.Chart && Chart.getChart(canvas);
    if (old) old.destroy();
    if (!window.Chart) return null;
    return new Chart(canvas, {
      type: type,
      data: {
        labels: labels,
        datasets: datasets.map(function (d, i) {
          return Object.assign({
            borderColor: COLORS[i % COLORS.length],
            backgroundColor: COLORS[i % COLORS.length] + "55",
            pointRadius: 0,
            borderWidth: 2,
            spanGaps: true,
            tension: 0.2,
          }, d);
        }),
      },
      options: Object.assign({
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: { x: { ticks: { maxTicksLimit: 8, maxRotation: 0 } }, y: { beginAtZero: true } },
      }, options || {}),
    });
  }

  // Analytics: <div data-src="/dashboard/analytics/data?..."> holding canvases [data-chart].
  function drawSeries(box) {
    var src = box.getAttribute("data-src");
    fetch(src, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (s) {
        box.querySelectorAll("canvas[data-chart]").forEach(function (c) {
          var kind = c.getAttribute("data-chart");
          if (kind === "requests") draw(c, "line", s.labels, [
            { label: "requests", data: s.requests }, { label: "errors", data: s.errors }]);
          else if (kind === "tokens") draw(c, "bar", s.labels, [{ label: "tokens", data: s.tokens }]);
          else if (kind === "latency") draw(c, "line", s.labels, [
            { label: "p50", data: s.p50, pointRadius: 2 }, { label: "p95", data: s.p95, pointRadius: 2 }]);
          else if (kind === "cost") draw(c, "bar", s.labels, [{ label: "USD", data: s.cost }]);
        });
        box.setAttribute("data-points", String(s.labels.length));
        box.setAttribute("data-total", String(s.requests.reduce(function (a, b) { return a + b; }, 0)));
        box.setAttribute("data-drawn", String(Number(box.getAttribute("data-drawn") || 0) + 1));
      })
      .catch(function (e) { box.setAttribute("data-error", String(e)); });
  }

  // Monitoring: the WebSocket stream, pause/filter, and live charts of the last hour.
  function pct(values, q) {
    if (!values.length) return null;
    var s = values.slice().sort(function (a, b) { return a - b; });
    return s[Math.min(s.length - 1, Math.floor(q * s.length))];
  }

  function minuteLabel(ts) {
    var d = new Date(ts * 1000);
    function p(n) { return String(n).padStart(2, "0"); }
    return p(d.getUTCMonth() + 1) + "-" + p(d.getUTCDate()) + " " + p(d.getUTCHours()) + ":" + p(d.getUTCMinutes());
  }

  function cell(text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function monitor(box) {
    if (box._ws) return;
    var rows = box.querySelector("[data-rows]");
    var state = box.querySelector("[data-state]");
    var buffered = box.querySelector("[data-buffered]");
    var filter = box.querySelector("[data-filter]");
    var pauseBtn = box.querySelector("[data-action=pause]");
    var paused = false, queue = [], closed = false;
    var lat = null, err = null, live = {};

    function matches(tr) {
      var q = (filter.value || "").trim().toLowerCase();
      return !q || tr.textContent.toLowerCase().indexOf(q) >= 0;
    }
    function applyFilter() {
      rows.querySelectorAll("tr").forEach(function (tr) { tr.hidden = !matches(tr); });
    }
    function addRow(e) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-request", e.request_id);
      tr.appendChild(cell(new Date(e.ts * 1000).toISOString().slice(0, 19).replace("T", " ")));
      tr.appendChild(cell(e.client || "–"));
      tr.appendChild(cell(e.model || "–"));
      tr.appendChild(cell(String(e.status), e.status >= 400 ? "bad" : ""));
      tr.appendChild(cell(Math.round(e.latency_ms) + " ms", "n"));
      tr.appendChild(cell(String(e.prompt_tokens + e.completion_tokens), "n"));
      tr.appendChild(cell(e.cost_usd == null ? "?" : "$" + e.cost_usd.toFixed(6), "n"));
      tr.hidden = !matches(tr);
      rows.insertBefore(tr, rows.firstChild);
      while (rows.children.length > 200) rows.removeChild(rows.lastChild);
    }
    function chartPoint(e) {
      if (!lat || !err) return;
      var label = minuteLabel(e.ts);
      var m = live[label] || (live[label] = { lat: [], n: 0, errors: 0 });
      m.lat.push(e.latency_ms); m.n += 1; if (e.status >= 400) m.errors += 1;
      [lat, err].forEach(function (c) {
        if (c.data.labels[c.data.labels.length - 1] !== label) {
          c.data.labels.push(label);
          c.data.datasets.forEach(function (d) { d.data.push(null); });
          if (c.data.labels.length > 60) {
            c.data.labels.shift();
            c.data.datasets.forEach(function (d) { d.data.shift(); });
          }
        }
      });
      var i = lat.data.labels.length - 1;
      lat.data.datasets[0].data[i] = pct(m.lat, 0.5);
      lat.data.datasets[1].data[i] = pct(m.lat, 0.95);
      err.data.datasets[0].data[err.data.labels.length - 1] = 100 * m.errors / m.n;
      lat.update("none"); err.update("none");
    }
    function handle(e) { addRow(e); chartPoint(e); }

    fetch(box.getAttribute("data-series"), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        lat = draw(box.querySelector("[data-live=latency]"), "line", s.labels,
          [{ label: "p50", data: s.p50, pointRadius: 2 }, { label: "p95", data: s.p95, pointRadius: 2 }]);
        err = draw(box.querySelector("[data-live=errors]"), "line", s.labels, [{
          label: "errors %",
          pointRadius: 2,
          data: s.requests.map(function (n, i) { return n ? 100 * s.errors[i] / n : null; }),
        }]);
      });

    pauseBtn.addEventListener("click", function () {
      paused = !paused;
      pauseBtn.setAttribute("aria-pressed", String(paused));
      pauseBtn.textContent = paused ? "Resume" : "Pause";
      if (!paused) { queue.forEach(handle); queue = []; }
      buffered.textContent = "";
    });
    filter.addEventListener("input", applyFilter);

    function connect() {
      var proto = location.protocol === "https:" ? "wss://" : "ws://";
      var ws = new WebSocket(proto + location.host + box.getAttribute("data-ws"));
      box._ws = ws;
      ws.onopen = function () { state.textContent = "live"; box.setAttribute("data-live-state", "open"); };
      ws.onmessage = function (m) {
        var e = JSON.parse(m.data);
        if (paused) {
          queue.push(e);
          if (queue.length > 1000) queue.shift();
          buffered.textContent = queue.length + " waiting";
        } else handle(e);
      };
      ws.onclose = function () {
        box.setAttribute("data-live-state", "closed");
        if (closed || !document.body.contains(box)) return;
        state.textContent = "reconnecting…";
        setTimeout(connect, 2000);
      };
    }
    connect();
    box.addEventListener("htmx:beforeCleanupElement", function () {
      closed = true;
      if (box._ws) box._ws.close();
    });
  }

  function copyButtons(root) {
    root.querySelectorAll("[data-copy]").forEach(function (btn) {
      if (btn._bound) return;
      btn._bound = true;
      btn.addEventListener("click", function () {
        var text = document.querySelector(btn.getAttribute("data-copy")).textContent.trim();
        var done = function () { btn.textContent = "Copied"; };
        if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).then(done);
        else {
          var r = document.createRange();
          r.selectNodeContents(document.querySelector(btn.getAttribute("data-copy")));
          var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(r);
          try { document.execCommand("copy"); done(); } catch (e) { /* selected for manual copy */ }
        }
      });
    });
  }

  function currentNav() {
    var path = location.pathname.replace(/\/$/, "") || "/dashboard";
    document.querySelectorAll("#nav a").forEach(function (a) {
      var href = a.getAttribute("href").replace(/\/$/, "");
      if (href === path) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
  }

  function init(root) {
    if (root.matches && root.matches("[data-src]")) drawSeries(root);
    root.querySelectorAll("[data-src]").forEach(drawSeries);
    root.querySelectorAll("[data-ws]").forEach(monitor);
    copyButtons(root);
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:afterSettle", function (ev) {
    if (ev.detail && ev.detail.elt && ev.detail.elt.id === "counters") return;
    init(ev.detail.elt || document);
    currentNav();
  });
  document.addEventListener("htmx:historyRestore", function () { init(document); currentNav(); });
})();

// smart-rerun dashboard: draws the page from the JSON in #dashboard-data. Every text that comes from
// the data (test names, messages, branches) is set with textContent or as an attribute value, never
// parsed as markup. Charts are SVG drawn here, no library.
(function () {
  "use strict";
  // The SVG namespace, from an inline <svg> the HTML parser placed in it (no URL in the page's text).
  var SVG = document.getElementById("svg-ns").namespaceURI;
  var data = JSON.parse(document.getElementById("dashboard-data").textContent);
  var runById = {};
  data.runs.forEach(function (r) { runById[r.id] = r; });
  var state = { branch: "", job: "", search: "", selected: null };
  var MAX_ROWS = 200;

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) { Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); }); }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }
  function day(ms) { return new Date(ms).toISOString().slice(0, 10); }
  function when(ms) { return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 16) : "–"; }
  function pct(n, d) { return d ? (100 * n / d).toFixed(1) + "%" : "–"; }
  function matches(branch, job) {
    return (!state.branch || branch === state.branch) && (!state.job || job === state.job);
  }
  function runMatches(r) { return matches(r.branch || "", r.job || ""); }

  // Filters: the branches and jobs the runs have.
  function fillSelect(id, values) {
    var select = document.getElementById(id);
    values.forEach(function (v) { select.appendChild(el("option", { value: v }, v || "(none)")); });
    return select;
  }
  function distinct(key) {
    var seen = {};
    data.runs.forEach(function (r) { seen[r[key] || ""] = true; });
    return Object.keys(seen).sort();
  }

  // Flake rate per day: flaky test results over all test results of the day's runs.
  function drawRate() {
    var box = document.getElementById("rate-chart");
    clear(box);
    // Per day; per run while the runs shown span less than two days.
    var shown = data.runs.filter(runMatches);
    var perRun = shown.length > 0 && day(shown[0].started_at) === day(shown[shown.length - 1].started_at);
    var days = {};
    shown.forEach(function (r, i) {
      var d = perRun ? when(r.started_at) + " #" + ("0000" + i).slice(-5) : day(r.started_at);
      var b = days[d] || (days[d] = { tests: 0, flaky: 0, failed: 0, runs: 0 });
      b.tests += r.tests; b.flaky += r.flaky; b.failed += r.failed; b.runs += 1;
    });
    var keys = Object.keys(days).sort();
    var W = 1000, H = 220, L = 52, R = 12, T = 12, B = 28;
    var chart = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": perRun ? "Flake rate per run" : "Flake rate per day", "class": "rate" });
    chart.appendChild(svg("rect", { x: 0, y: 0, width: W, height: H, fill: "#ffffff" }));
    var rates = keys.map(function (k) { var b = days[k]; return b.tests ? 100 * b.flaky / b.tests : 0; });
    var max = Math.max.apply(null, rates.concat([0.1]));
    var ymax = niceMax(max);
    var x = function (i) { return keys.length < 2 ? L + (W - L - R) / 2 : L + i * (W - L - R) / (keys.length - 1); };
    var y = function (v) { return T + (H - T - B) * (1 - v / ymax); };
    for (var g = 0; g <= 4; g++) {
      var v = ymax * g / 4;
      chart.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#d0d7de", "stroke-width": 1 }));
      var label = svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#656d76" });
      label.textContent = v.toFixed(ymax < 1 ? 2 : 1) + "%";
      chart.appendChild(label);
    }
    if (!keys.length) {
      var none = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#656d76" });
      none.textContent = "no run in this selection";
      chart.appendChild(none);
      box.appendChild(chart);
      return;
    }
    var step = Math.max(1, Math.ceil(keys.length / 8));
    keys.forEach(function (k, i) {
      if (i % step === 0 || (i === keys.length - 1 && i % step > step / 2)) {
        var t = svg("text", { x: x(i), y: H - 8, "text-anchor": "middle", "font-size": 11, fill: "#656d76" });
        t.textContent = perRun ? k.slice(11, 16) : k;
        chart.appendChild(t);
      }
    });
    var points = rates.map(function (v, i) { return x(i).toFixed(1) + "," + y(v).toFixed(1); });
    var area = "M" + x(0).toFixed(1) + "," + y(0) + " L" + points.join(" L") + " L" + x(keys.length - 1).toFixed(1) + "," + y(0) + " Z";
    chart.appendChild(svg("path", { d: area, fill: "#d4a72c", "fill-opacity": 0.25, stroke: "none" }));
    chart.appendChild(svg("polyline", { points: points.join(" "), fill: "none", stroke: "#bf8700", "stroke-width": 2.5, "class": "rate-line" }));
    rates.forEach(function (v, i) {
      var dot = svg("circle", { cx: x(i), cy: y(v), r: 3, fill: "#bf8700" });
      var tip = svg("title", {});
      var b = days[keys[i]];
      tip.textContent = keys[i] + ": " + v.toFixed(2) + "% flaky (" + b.flaky + " of " + b.tests + " test results, " + b.runs + " runs)";
      dot.appendChild(tip);
      chart.appendChild(dot);
    });
    box.appendChild(chart);
  }
  function niceMax(v) {
    var steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 25, 50, 100];
    for (var i = 0; i < steps.length; i++) { if (v <= steps[i]) { return steps[i]; } }
    return 100;
  }

  // A test's counts under the filters.
  // Under a branch or job filter, a test's runs are the filter's runs (at most its runs in all).
  function totals(t, selectedRuns) {
    var filtered = state.branch || state.job;
    var s = { runs: filtered ? Math.min(t.runs, selectedRuns) : t.runs, flaky: 0, failed: 0, lastFlaky: 0 };
    t.groups.forEach(function (g) {
      if (!matches(g.branch || "", g.job || "")) { return; }
      s.flaky += g.flaky; s.failed += g.failed;
      if (g.last_flaky && g.last_flaky > s.lastFlaky) { s.lastFlaky = g.last_flaky; }
    });
    return s;
  }
  function sparkline(t) {
    var runs = t.timeline.filter(function (e) { var r = runById[e.run]; return !r || runMatches(r); }).slice().reverse();
    var W = 120, H = 18;
    var s = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, "class": "spark", role: "img", "aria-label": "last runs" });
    var w = W / Math.max(runs.length, 1);
    runs.forEach(function (e, i) {
      var color = e.outcome === "flaky" ? "#d4a72c" : (e.outcome === "failed" || e.outcome === "error") ? "#cf222e" : "#2da44e";
      var h = e.outcome === "passed" ? 6 : H;
      s.appendChild(svg("rect", { x: (i * w).toFixed(2), y: H - h, width: Math.max(w - 1, 1).toFixed(2), height: h, fill: color }));
    });
    return s;
  }

  // A test's quarantine: its state and expiry, then the entry's reason, owner and issue (file text,
  // set as text only).
  var Q_STATES = { active: "quarantined until ", expiring: "expires ", expired: "expired on " };
  function quarantineCell(q) {
    var td = el("td", { "class": "quarantine" });
    if (!q || typeof q !== "object") { return td; }
    var state = Q_STATES.hasOwnProperty(q.state) ? q.state : "active";
    td.setAttribute("data-state", state);
    td.appendChild(el("span", { "class": "q-" + state, title: q.entry + " (" + q.at + ")" }, Q_STATES[state] + q.expires));
    td.appendChild(el("div", { "class": "q-reason" }, q.reason));
    var who = [];
    if (q.owner) { who.push("owner: " + q.owner); }
    if (q.issue) { who.push("issue: " + q.issue); }
    if (who.length) { td.appendChild(el("div", { "class": "muted q-owner" }, who.join("; "))); }
    return td;
  }

  function drawTests() {
    var box = document.getElementById("tests");
    clear(box);
    var q = state.search.toLowerCase();
    var rows = [];
    var selectedRuns = data.runs.filter(runMatches).length;
    data.tests.forEach(function (t) {
      if (q && t.nodeid.toLowerCase().indexOf(q) < 0) { return; }
      var s = totals(t, selectedRuns);
      if (!s.flaky && !s.failed) { return; }
      rows.push({ t: t, s: s });
    });
    rows.sort(function (a, b) { return (b.s.flaky - a.s.flaky) || (b.s.lastFlaky - a.s.lastFlaky) || (b.s.failed - a.s.failed); });
    var quarantine = data.quarantine && typeof data.quarantine === "object" ? data.quarantine : null;
    var table = el("table", { id: "tests-table" });
    var head = el("tr");
    ["Test", "Last runs", "Flake rate", "Flaky", "Failed", "Runs", "Last flaky"].forEach(function (h, i) {
      head.appendChild(el("th", i >= 2 && i <= 5 ? { "class": "num" } : null, h));
    });
    if (quarantine) { head.appendChild(el("th", null, "Quarantine")); }
    table.appendChild(el("thead")).appendChild(head);
    var body = table.appendChild(el("tbody"));
    rows.slice(0, MAX_ROWS).forEach(function (row) {
      var t = row.t, s = row.s;
      var tr = el("tr", { "class": "test" + (state.selected === t ? " selected" : ""), "data-nodeid": t.nodeid, tabindex: 0 });
      tr.appendChild(el("td", { "class": "nodeid" }, t.nodeid));
      var spark = el("td");
      if (t.timeline.length) { spark.appendChild(sparkline(t)); } else { spark.textContent = "–"; }
      tr.appendChild(spark);
      tr.appendChild(el("td", { "class": "num" }, pct(s.flaky, s.runs)));
      tr.appendChild(el("td", { "class": "num" }, s.flaky));
      tr.appendChild(el("td", { "class": "num" }, s.failed));
      tr.appendChild(el("td", { "class": "num" }, s.runs));
      tr.appendChild(el("td", null, s.lastFlaky ? when(s.lastFlaky) : "–"));
      if (quarantine) {
        tr.appendChild(quarantineCell(quarantine[t.nodeid]));
      }
      var open = function () {
        state.selected = t;
        if (history.replaceState) { history.replaceState(null, "", "#test=" + encodeURIComponent(t.nodeid)); }
        drawDetail(); drawTests();
      };
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", function (e) { if (e.key === "Enter") { open(); } });
      body.appendChild(tr);
    });
    box.appendChild(table);
    var note = rows.length > MAX_ROWS ? "showing " + MAX_ROWS + " of " + rows.length + " tests; search to narrow" : rows.length + " tests flaky or failing in this selection";
    box.appendChild(el("p", { "class": "muted" }, note));
  }

  function drawDetail() {
    var t = state.selected;
    var panel = document.getElementById("detail");
    var body = document.getElementById("detail-body");
    clear(body);
    if (!t) { panel.hidden = true; return; }
    panel.hidden = false;
    document.getElementById("detail-title").textContent = t.nodeid;
    if (!t.timeline.length) {
      body.appendChild(el("p", { "class": "muted" }, "No timeline kept for this test: only the " + data.tests.filter(function (x) { return x.timeline.length; }).length + " most flaky tests have one."));
      return;
    }
    var table = el("table", { "class": "timeline" });
    var head = el("tr");
    ["Run started", "Branch", "Job", "Commit", "Outcome", "Attempts", "Classification", "Failed attempts"].forEach(function (h) { head.appendChild(el("th", null, h)); });
    table.appendChild(el("thead")).appendChild(head);
    var tbody = table.appendChild(el("tbody"));
    t.timeline.forEach(function (e) {
      var r = runById[e.run] || {};
      if (r.id !== undefined && !runMatches(r)) { return; }
      var tr = el("tr");
      tr.appendChild(el("td", null, when(r.started_at)));
      tr.appendChild(el("td", null, r.branch || ""));
      tr.appendChild(el("td", null, r.job || ""));
      tr.appendChild(el("td", { "class": "nodeid" }, (r.commit || "").slice(0, 10)));
      tr.appendChild(el("td", { "class": "o-" + e.outcome }, e.outcome));
      tr.appendChild(el("td", { "class": "num" }, e.attempts));
      tr.appendChild(el("td", null, e.category || ""));
      var f = el("td");
      e.failures.forEach(function (a) {
        var line = el("div");
        line.appendChild(el("span", null, "#" + a.number + " "));
        line.appendChild(el("span", null, (a.exception || a.outcome).replace(/^builtins\./, "") + ": " + (a.message || "")));
        if (a.fingerprint) { line.appendChild(el("code", { title: "failure fingerprint" }, " [" + a.fingerprint + "]")); }
        if (a.category) { line.appendChild(el("span", { "class": "muted" }, " " + a.category)); }
        f.appendChild(line);
      });
      tr.appendChild(f);
      tbody.appendChild(tr);
    });
    body.appendChild(table);
  }

  function drawFingerprints() {
    var box = document.getElementById("fingerprints");
    clear(box);
    var q = state.search.toLowerCase();
    var list = data.fingerprints.filter(function (g) {
      return !q || g.nodeids.some(function (n) { return n.toLowerCase().indexOf(q) >= 0; });
    });
    if (!list.length) { box.appendChild(el("p", { "class": "muted" }, "No failure fingerprint in this selection.")); return; }
    var table = el("table", { id: "fingerprints-table" });
    var head = el("tr");
    ["Failure", "Tests", "Occurrences", "Last seen"].forEach(function (h, i) { head.appendChild(el("th", i === 1 || i === 2 ? { "class": "num" } : null, h)); });
    table.appendChild(el("thead")).appendChild(head);
    var tbody = table.appendChild(el("tbody"));
    list.forEach(function (g) {
      var tr = el("tr");
      var cell = el("td");
      cell.appendChild(el("div", null, (g.exception || "failure").replace(/^builtins\./, "") + ": " + (g.message || "")));
      cell.appendChild(el("code", { "class": "muted" }, g.fingerprint));
      var details = el("details");
      details.appendChild(el("summary", null, "the same failure in " + g.test_count + (g.test_count === 1 ? " test" : " tests")));
      var ul = el("ul", { "class": "nodeids" });
      g.nodeids.forEach(function (n) { ul.appendChild(el("li", { "class": "nodeid" }, n)); });
      if (g.test_count > g.nodeids.length) { ul.appendChild(el("li", { "class": "muted" }, "and " + (g.test_count - g.nodeids.length) + " more")); }
      details.appendChild(ul);
      cell.appendChild(details);
      tr.appendChild(cell);
      tr.appendChild(el("td", { "class": "num" }, g.test_count));
      tr.appendChild(el("td", { "class": "num" }, g.occurrences));
      tr.appendChild(el("td", null, when(g.last_seen)));
      tbody.appendChild(tr);
    });
    box.appendChild(table);
  }

  function drawAll() { drawRate(); drawTests(); drawDetail(); drawFingerprints(); }

  var period = data.since ? "since " + day(data.since) : "all of history";
  document.getElementById("subtitle").textContent = data.runs.length + " runs, " + period + (data.branch ? ", branch " + data.branch : "");
  document.getElementById("footer").textContent = "Generated by smart-rerun on " + when(data.generated_at) + " UTC.";
  fillSelect("f-branch", distinct("branch")).addEventListener("change", function (e) { state.branch = e.target.value; drawAll(); });
  fillSelect("f-job", distinct("job")).addEventListener("change", function (e) { state.job = e.target.value; drawAll(); });
  var timer = null;
  document.getElementById("f-search").addEventListener("input", function (e) {
    clearTimeout(timer);
    timer = setTimeout(function () { state.search = e.target.value; drawTests(); drawFingerprints(); }, 120);
  });
  // A link to one test's panel: index.html#test=NODEID.
  if (location.hash.indexOf("#test=") === 0) {
    var wanted = decodeURIComponent(location.hash.slice(6));
    data.tests.forEach(function (t) { if (t.nodeid === wanted) { state.selected = t; } });
  }
  drawAll();
  document.documentElement.setAttribute("data-ready", "true");
  // Milliseconds from navigation to the page drawn (the benchmark reads it).
  document.documentElement.setAttribute("data-ready-ms", String(Math.round(performance.now())));
})();

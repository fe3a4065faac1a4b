// polyhost's dashboard: reads the admin listener's JSON API and draws it.
//
// Cost stays flat with many containers: the table of every container is one request every
// few seconds whose rows are updated in place; only the selected container gets charts (five
// uPlot charts, created once, fed with setData) and a log tail. Polling pauses while the tab
// is hidden, and one request of a kind is in flight at a time.
//
// Everything from the server goes into the page as text (textContent), never as HTML: a
// FailureReason or a log line may hold anything a container printed.
(function () {
  "use strict";

  var TABLE_EVERY_MS = 3000;
  var LOG_EVERY_MS = 3000;
  var CHART_EVERY_MS = { "1h": 5000, "3h": 10000, "24h": 30000, "7d": 60000 };
  var LOG_LINES = 200;
  var TOKEN_COOKIE = "polyhost_admin_token";

  // One chart per entry: which metrics it draws and how each value is read from a datapoint.
  var CHARTS = [
    { id: "invocations", title: "Invocations (per period)", bars: true,
      series: [{ label: "invocations", metric: "Invocations", value: sum, zero: true, color: "#2f6fdb" }] },
    { id: "errors", title: "Errors (per period)", bars: true,
      series: [
        { label: "4xx", metric: "Invocation4XXErrors", value: sum, zero: true, color: "#dd6b20" },
        { label: "5xx", metric: "Invocation5XXErrors", value: sum, zero: true, color: "#c53030" },
      ] },
    { id: "latency", title: "Container latency (ms)",
      series: [
        { label: "p50", metric: "ContainerLatency", value: percentile("p50"), color: "#2f6fdb" },
        { label: "p99", metric: "ContainerLatency", value: percentile("p99"), color: "#805ad5" },
      ] },
    { id: "cpu", title: "CPU (%, 100 = one core)",
      series: [
        { label: "average", metric: "CPUUtilization", value: average, color: "#1f8a4c" },
        { label: "max", metric: "CPUUtilization", value: maximum, color: "#9ae6b4" },
      ] },
    { id: "memory", title: "Memory (RSS, MiB)",
      series: [{ label: "RSS", metric: "MemoryRSS", value: mebibytes, color: "#b7791f" }] },
  ];

  function sum(p) { return p.sum; }
  function average(p) { return p.average; }
  function maximum(p) { return p.maximum; }
  function mebibytes(p) { return p.maximum == null ? null : p.maximum / 1048576; }
  function percentile(key) {
    return function (p) { return p[key] == null ? null : p[key] / 1000; };
  }

  var state = {
    endpoints: [],
    containers: [],
    history: true,
    selected: null, // {endpoint, variant, instance, container}
    range: "1h",
    filter: "",
    charts: {},
    rows: new Map(),
    timers: {},
    generations: {},
  };

  // -- the API ----------------------------------------------------------------------------
  function token() {
    var parts = document.cookie ? document.cookie.split(";") : [];
    for (var i = 0; i < parts.length; i++) {
      var kv = parts[i].trim();
      if (kv.indexOf(TOKEN_COOKIE + "=") === 0) {
        return decodeURIComponent(kv.slice(TOKEN_COOKIE.length + 1));
      }
    }
    return null;
  }

  function api(path, params) {
    var query = params ? "?" + new URLSearchParams(params).toString() : "";
    var headers = {};
    var t = token();
    if (t) headers.Authorization = "Bearer " + t;
    return fetch("/api/" + path + query, { headers: headers, cache: "no-store" }).then(
      function (answer) {
        if (answer.status === 401) throw { refused: true };
        return answer.json().then(function (body) {
          if (!answer.ok) throw { status: answer.status, message: body.message || answer.statusText };
          return body;
        });
      }
    );
  }

  function setConnection(kind, text) {
    var el = document.getElementById("connection");
    el.dataset.state = kind;
    el.textContent = text;
    if (kind === "refused") {
      var link = document.createElement("a");
      link.href = "#";
      link.textContent = "enter the token";
      link.addEventListener("click", function (event) {
        event.preventDefault();
        document.cookie = TOKEN_COOKIE + "=; Path=/ui; Max-Age=0; SameSite=Strict";
        location.reload();
      });
      el.appendChild(document.createTextNode(" "));
      el.appendChild(link);
    }
  }

  function failed(error) {
    if (error && error.refused) setConnection("refused", "the admin token was refused;");
    else setConnection("lost", "cannot reach the server; retrying…");
  }

  // -- polling ------------------------------------------------------------------------------
  // `every(name, ms, fn)`: run fn (returning a promise) now and again ms after it settles.
  // Calling it again for the same name replaces the loop: the old one stops at its next turn,
  // even when its request is still in flight.
  function every(name, ms, fn) {
    clearTimeout(state.timers[name]);
    var generation = (state.generations[name] || 0) + 1;
    state.generations[name] = generation;
    var later = function () {
      if (state.generations[name] !== generation) return;
      state.timers[name] = setTimeout(run, typeof ms === "function" ? ms() : ms);
    };
    var run = function () {
      if (state.generations[name] !== generation) return;
      if (document.hidden) return later();
      Promise.resolve().then(fn).catch(failed).then(later);
    };
    run();
  }

  function stop(name) {
    clearTimeout(state.timers[name]);
    state.generations[name] = (state.generations[name] || 0) + 1;
  }

  function refreshTables() {
    return Promise.all([api("endpoints"), api("containers")]).then(function (answers) {
      state.endpoints = answers[0].endpoints;
      state.shadowCopies = answers[0].shadow_copies;
      state.containers = answers[1].containers;
      state.history = answers[1].history;
      renderEndpoints();
      renderDeployments();
      renderShadows();
      renderServerless();
      renderContainers();
      setConnection("live", "live · updated " + new Date().toLocaleTimeString());
    });
  }

  // -- endpoints ----------------------------------------------------------------------------
  function tone(status) {
    if (status === "InService" || status === "up" || status === "Successful") return "ok";
    if (status === "Failed" || status === "down" || status === "OutOfService") return "bad";
    if (status === "RollingBack") return "bad";
    if (status === "warm") return "ok";
    if (status === "cold") return "idle";
    return "warn";
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text == null ? "" : String(text);
    row.appendChild(td);
    return td;
  }

  function statusCell(row, status) {
    var td = cell(row, "");
    var span = document.createElement("span");
    span.className = "status";
    span.dataset.tone = tone(status);
    span.textContent = status || "?";
    td.appendChild(span);
    return td;
  }

  function renderEndpoints() {
    var empty = state.endpoints.length === 0;
    document.getElementById("empty-state").hidden = !empty;
    document.getElementById("endpoints-panel").hidden = empty;
    document.getElementById("containers-panel").hidden = empty;
    document.getElementById("endpoint-count").textContent = "(" + state.endpoints.length + ")";
    var body = document.querySelector("#endpoints tbody");
    var rows = document.createDocumentFragment();
    state.endpoints.forEach(function (e) {
      var tr = document.createElement("tr");
      tr.dataset.endpoint = e.name;
      cell(tr, e.name, "name");
      statusCell(tr, e.status);
      cell(tr, e.variants.map(function (v) {
        var count = v.current_instance_count == null ? "?" : v.current_instance_count;
        var desired = v.desired_instance_count;
        var text = v.name + " (" + count + (desired != null && desired !== count ? "/" + desired : "") + ")";
        if (v.shadow) text += " shadow";
        if (v.serverless) text += " serverless" + (v.serverless.state ? " " + v.serverless.state : "");
        var statuses = (v.status || []).filter(Boolean);
        return statuses.length ? text + " " + statuses.join(", ") : text;
      }).join("; "), "variants");
      cell(tr, componentsText(e.components), "components");
      cell(tr, backlogText(e.backlog), "backlog");
      cell(tr, e.failure_reason || "", "reason");
      rows.appendChild(tr);
    });
    body.replaceChildren(rows);
    renderFilter();
  }

  // -- how endpoints are hosted: deployments, shadow variants, serverless variants ------------
  // Each panel shows only when it has a row; its rows are rebuilt at every refresh (a few per
  // endpoint at most), every value set as text.

  function seconds(value) {
    if (value == null) return "-";
    if (value >= 3600) return (value / 3600).toFixed(1) + " h";
    if (value >= 60) return Math.round(value / 60) + " min";
    return value >= 10 ? Math.round(value) + " s" : value.toFixed(1) + " s";
  }

  function badge(td, kind) {
    var span = document.createElement("span");
    span.className = "badge";
    span.dataset.kind = kind;
    span.textContent = kind;
    td.appendChild(span);
  }

  function showPanel(id, countId, rows) {
    document.getElementById(id).hidden = rows.length === 0;
    document.getElementById(countId).textContent = "(" + rows.length + ")";
  }

  // A deployment under way: "1 of 2 taking traffic", "ends 12:03:04 (in 35 s)".
  function renderDeployments() {
    var moving = state.endpoints.filter(function (e) { return e.deployment; });
    showPanel("deployments-panel", "deployment-count", moving);
    var rows = document.createDocumentFragment();
    moving.forEach(function (e) {
      var d = e.deployment;
      var tr = document.createElement("tr");
      tr.dataset.endpoint = e.name;
      cell(tr, e.name, "name");
      cell(tr, d.policy, "policy");
      statusCell(tr, d.phase).classList.add("phase");
      cell(tr, d.new_instances + " of " + d.wanted_instances + " taking traffic", "new-fleet");
      cell(tr, d.old_instances + " taking traffic", "old-fleet");
      cell(tr, d.phase_ends_at == null ? "-"
        : new Date(d.phase_ends_at * 1000).toLocaleTimeString() +
          " (in " + seconds(d.phase_remaining_s) + ")", "phase-ends");
      cell(tr, d.from_config + " → " + d.to_config, "configs");
      cell(tr, d.reason || "", "reason");
      rows.appendChild(tr);
    });
    document.querySelector("#deployments tbody").replaceChildren(rows);
  }

  // Every variant of each endpoint that has a shadow: production first, then the shadows.
  function renderShadows() {
    var shadowed = state.endpoints.filter(function (e) {
      return e.variants.some(function (v) { return v.shadow; });
    });
    var shadows = 0;
    var rows = document.createDocumentFragment();
    shadowed.forEach(function (e) {
      e.variants.forEach(function (v) {
        if (v.shadow) shadows++;
        var tr = document.createElement("tr");
        tr.dataset.endpoint = e.name;
        tr.dataset.variant = v.name;
        tr.dataset.role = v.shadow ? "shadow" : "production";
        cell(tr, e.name, "name");
        cell(tr, v.name, "variant");
        badge(cell(tr, "", "role"), v.shadow ? "shadow" : "production");
        cell(tr, v.current_instance_count == null ? "?" : v.current_instance_count, "instances");
        statusCell(tr, (v.status || []).filter(Boolean).join(", ") || e.status);
        var t = v.traffic;
        cell(tr, t ? String(t.invocations) : "-", "invocations");
        cell(tr, t ? String(t.errors_4xx) : "-", "errors-4xx");
        cell(tr, t ? String(t.errors_5xx) : "-", "errors-5xx");
        cell(tr, t ? fixed(t.mean_latency_ms, 1) : "-", "latency");
        rows.appendChild(tr);
      });
    });
    document.getElementById("shadows-panel").hidden = shadows === 0;
    document.getElementById("shadow-count").textContent = "(" + shadows + ")";
    document.querySelector("#shadows tbody").replaceChildren(rows);
    var copies = state.shadowCopies;
    document.getElementById("shadow-copies").textContent = !copies ? ""
      : "Copies on this server: " + copies.sent + " sent, " + copies.dropped +
        " dropped past the bounds, " + copies.in_flight + " in flight.";
  }

  // Every serverless variant: its ServerlessConfig and whether a container runs.
  function renderServerless() {
    var found = [];
    state.endpoints.forEach(function (e) {
      e.variants.forEach(function (v) { if (v.serverless) found.push([e, v]); });
    });
    showPanel("serverless-panel", "serverless-count", found);
    var rows = document.createDocumentFragment();
    found.forEach(function (pair) {
      var e = pair[0], v = pair[1], s = v.serverless;
      var tr = document.createElement("tr");
      tr.dataset.endpoint = e.name;
      tr.dataset.variant = v.name;
      cell(tr, e.name, "name");
      cell(tr, v.name, "variant");
      badge(cell(tr, "", "kind"), "serverless");
      cell(tr, s.memory_mb == null ? "-" : s.memory_mb + " MB", "memory");
      var td = statusCell(tr, s.state || "unknown");
      td.classList.add("state");
      if (s.provisioned_concurrency != null) {
        td.appendChild(document.createTextNode(" (provisioned " + s.provisioned_concurrency + ")"));
      }
      cell(tr, s.max_concurrency, "max-concurrency");
      cell(tr, s.in_flight == null ? "-" : s.in_flight, "in-flight");
      cell(tr, s.cold_starts == null ? "-" : s.cold_starts, "cold-starts");
      cell(tr, seconds(s.last_cold_start_s), "last-cold-start");
      cell(tr, s.throttled == null ? "-" : s.throttled, "throttled");
      rows.appendChild(tr);
    });
    document.querySelector("#serverless tbody").replaceChildren(rows);
  }

  // The inference components an endpoint hosts: "digits 2/2, text 0/1 Failed".
  function componentsText(components) {
    return (components || []).map(function (c) {
      var copies = c.current_copies + "/" + c.desired_copies;
      return c.name + " " + copies + (c.status === "InService" ? "" : " " + c.status);
    }).join(", ");
  }

  // An asynchronous endpoint's queue: "3 waiting, oldest 12 s"; empty for a real-time one.
  function backlogText(backlog) {
    if (!backlog) return "";
    if (backlog.size === 0) return "0 waiting";
    var age = backlog.oldest_age_s;
    var shown = age >= 3600 ? (age / 3600).toFixed(1) + " h"
      : age >= 60 ? Math.round(age / 60) + " min" : Math.round(age) + " s";
    return backlog.size + " waiting, oldest " + shown +
      (backlog.instances === 0 ? " (no instance)" : "");
  }

  function renderFilter() {
    var select = document.getElementById("endpoint-filter");
    var names = state.endpoints.map(function (e) { return e.name; });
    var current = Array.prototype.map.call(select.options, function (o) { return o.value; }).slice(1);
    if (current.join("\n") === names.join("\n")) return;
    var keep = state.filter;
    select.replaceChildren();
    select.appendChild(new Option("all", ""));
    names.forEach(function (n) { select.appendChild(new Option(n, n)); });
    state.filter = names.indexOf(keep) >= 0 ? keep : "";
    select.value = state.filter;
  }

  // -- containers ---------------------------------------------------------------------------
  function keyOf(c) {
    return [c.endpoint, c.variant, c.instance, c.hostname].join("\u0000");
  }

  function fixed(value, digits, scale) {
    if (value == null) return "-";
    return (value * (scale || 1)).toFixed(digits);
  }

  function rate(value) {
    if (value == null) return "-";
    return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
  }

  function memory(c) {
    if (c.rss_bytes == null) return "-";
    var mib = c.rss_bytes / 1048576;
    var text = (mib >= 1024 ? (mib / 1024).toFixed(2) + " GiB" : mib.toFixed(0) + " MiB");
    return c.memory_percent == null ? text : text + " (" + c.memory_percent.toFixed(1) + " %)";
  }

  var COLUMNS = [
    ["endpoint", function (c) { return c.endpoint; }],
    ["variant", function (c) { return c.shadow ? c.variant + " (shadow)" : c.variant; }],
    // On a cluster (Ray backend) each instance runs on a node of its own: shown beside it.
    ["instance", function (c) {
      var text = c.node ? c.instance + " @ " + c.node : c.instance;
      // A component's copy: its own id, and the endpoint instance it was placed on.
      return c.placed_on == null ? text : text + " on instance " + c.placed_on;
    }],
    // A MultiModel container: how many models it holds now.
    ["container", function (c) {
      return c.loaded_models == null ? c.hostname
        : c.hostname + " (" + c.loaded_models + " model" + (c.loaded_models === 1 ? "" : "s") + ")";
    }],
    ["status", null],
    ["restarts", function (c) { return String(c.restarts); }],
    ["rps", function (c) { return rate(c.requests_per_s); }],
    ["errors", function (c) { return c.error_rate == null ? "-" : fixed(c.error_rate, 1, 100) + " %"; }],
    ["p50", function (c) { return fixed(c.p50_ms, 1); }],
    ["p99", function (c) { return fixed(c.p99_ms, 1); }],
    ["cpu", function (c) { return fixed(c.cpu_percent, 1); }],
    ["memory", memory],
  ];

  function renderContainers() {
    var shown = state.containers.filter(function (c) {
      return !state.filter || c.endpoint === state.filter;
    });
    document.getElementById("container-count").textContent = "(" + state.containers.length + ")";
    document.getElementById("no-containers").hidden = shown.length > 0;
    var body = document.querySelector("#containers tbody");
    var seen = new Set();
    var ordered = [];
    shown.forEach(function (c) {
      var key = keyOf(c);
      seen.add(key);
      var tr = state.rows.get(key);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.key = key;
        tr.dataset.endpoint = c.endpoint;
        tr.dataset.container = c.hostname;
        COLUMNS.forEach(function (column) { cell(tr, "", column[0]); });
        tr.addEventListener("click", function () { select(c); });
        state.rows.set(key, tr);
      }
      COLUMNS.forEach(function (column, i) {
        var td = tr.children[i];
        if (column[1] === null) {
          var span = td.firstChild || td.appendChild(document.createElement("span"));
          span.className = "status";
          span.dataset.tone = tone(c.status);
          span.textContent = c.status;
        } else {
          var text = column[1](c);
          if (td.textContent !== text) td.textContent = text;
        }
      });
      ordered.push(tr);
    });
    state.rows.forEach(function (tr, key) { if (!seen.has(key)) state.rows.delete(key); });
    var changed = ordered.length !== body.children.length ||
      ordered.some(function (tr, i) { return body.children[i] !== tr; });
    if (changed) body.replaceChildren.apply(body, ordered);

    var selectedKey = state.selected && keyOf(state.selected);
    if (!state.selected || !seen.has(selectedKey)) {
      var fromHash = readHash();
      var pick = shown.find(function (c) { return fromHash && keyOf(c) === fromHash; }) || shown[0];
      if (pick) select(pick);
      else unselect();
    } else {
      markSelected();
    }
  }

  // -- selection, charts and log -------------------------------------------------------------
  function readHash() {
    var match = /^#c=(.*)$/.exec(location.hash);
    if (!match) return null;
    try { return decodeURIComponent(match[1]); } catch (e) { return null; }
  }

  function markSelected() {
    var key = state.selected && keyOf(state.selected);
    state.rows.forEach(function (tr, k) { tr.classList.toggle("selected", k === key); });
  }

  function unselect() {
    state.selected = null;
    document.getElementById("detail-panel").hidden = true;
    stop("charts");
    stop("log");
  }

  function select(c) {
    if (state.selected && keyOf(state.selected) === keyOf(c)) return markSelected();
    state.selected = { endpoint: c.endpoint, variant: c.variant, instance: c.instance, hostname: c.hostname };
    history.replaceState(null, "", "#c=" + encodeURIComponent(keyOf(c)));
    markSelected();
    document.getElementById("detail-panel").hidden = false;
    document.getElementById("detail-title").textContent =
      c.endpoint + " / " + c.variant + " / " + c.hostname;
    document.getElementById("log-text").textContent = "";
    startCharts();
    every("log", LOG_EVERY_MS, refreshLog);
  }

  function startCharts() {
    var off = !state.history;
    document.getElementById("history-off").hidden = !off;
    document.getElementById("charts").hidden = off;
    if (off) return;
    ensureCharts();
    every("charts", function () { return CHART_EVERY_MS[state.range]; }, refreshCharts);
  }

  function ensureCharts() {
    var holder = document.getElementById("charts");
    if (holder.children.length) return;
    CHARTS.forEach(function (spec) {
      var box = document.createElement("div");
      box.className = "chart";
      box.dataset.chart = spec.id;
      var title = document.createElement("div");
      title.className = "title";
      title.textContent = spec.title;
      box.appendChild(title);
      holder.appendChild(box);
      var series = [{}].concat(spec.series.map(function (s) {
        var line = { label: s.label, stroke: s.color, width: 1.5, spanGaps: false };
        if (spec.bars) {
          line.fill = s.color + "55";
          line.paths = uPlot.paths.bars({ size: [0.8, 40] });
        } else {
          line.points = { show: true, size: 4 }; // a lone minute of data is a point, not nothing
        }
        return line;
      }));
      var empty = [[]].concat(spec.series.map(function () { return []; }));
      state.charts[spec.id] = new uPlot(
        { width: chartWidth(box), height: 170, series: series,
          scales: { y: { range: function (u, min, max) { return [Math.min(0, min || 0), Math.max((max || 0) * 1.1, 1)]; } } },
          axes: [{}, { size: 50 }], legend: { live: true } },
        empty, box
      );
    });
  }

  function chartWidth(box) {
    return Math.max(300, Math.floor(box.getBoundingClientRect().width || 420));
  }

  window.addEventListener("resize", function () {
    Object.keys(state.charts).forEach(function (id) {
      var box = document.querySelector('.chart[data-chart="' + id + '"]');
      if (box) state.charts[id].setSize({ width: chartWidth(box), height: 170 });
    });
  });

  function refreshCharts() {
    var chosen = state.selected;
    if (!chosen) return null;
    var range = state.range;
    var metrics = [];
    CHARTS.forEach(function (spec) {
      spec.series.forEach(function (s) { if (metrics.indexOf(s.metric) < 0) metrics.push(s.metric); });
    });
    return Promise.all(metrics.map(function (metric) {
      return api("series", { endpoint: chosen.endpoint, variant: chosen.variant,
                             container: chosen.hostname, metric: metric, range: range });
    })).then(function (answers) {
      if (state.selected !== chosen || state.range !== range) return; // a newer choice won
      var byMetric = {};
      answers.forEach(function (a, i) { byMetric[metrics[i]] = a; });
      var period = answers[0].period;
      var now = Date.now() / 1000;
      var spans = { "1h": 3600, "3h": 10800, "24h": 86400, "7d": 604800 };
      var first = Math.floor((now - spans[range]) / period) * period;
      var xs = [];
      for (var t = first; t <= now; t += period) xs.push(t);
      CHARTS.forEach(function (spec) {
        var data = [xs].concat(spec.series.map(function (s) {
          var values = xs.map(function () { return s.zero ? 0 : null; });
          (byMetric[s.metric].series || []).forEach(function (one) {
            one.datapoints.forEach(function (p) {
              var i = Math.round((p.timestamp - first) / period);
              if (i >= 0 && i < values.length) {
                var v = s.value(p);
                values[i] = s.zero ? values[i] + (v || 0) : v;
              }
            });
          });
          return values;
        }));
        state.charts[spec.id].setData(data);
      });
    });
  }

  function refreshLog() {
    var chosen = state.selected;
    if (!chosen) return null;
    return api("logs", { endpoint: chosen.endpoint, variant: chosen.variant,
                         instance: chosen.instance, container: chosen.hostname, lines: LOG_LINES })
      .then(function (answer) {
        if (state.selected !== chosen) return;
        var pre = document.getElementById("log-text");
        var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        var text = answer.streams.map(function (s) { return s.text; }).join("\n") ||
          "(nothing written yet)";
        document.getElementById("log-name").textContent =
          answer.streams.map(function (s) { return s.name; }).join(", ");
        if (pre.textContent !== text) {
          pre.textContent = text;
          if (atEnd) pre.scrollTop = pre.scrollHeight;
        }
      }, function (error) {
        if (error && error.status) {
          document.getElementById("log-text").textContent = error.message;
          return;
        }
        throw error;
      });
  }

  // -- controls -----------------------------------------------------------------------------
  document.querySelectorAll(".ranges button").forEach(function (button) {
    button.addEventListener("click", function () {
      state.range = button.dataset.range;
      document.querySelectorAll(".ranges button").forEach(function (b) {
        b.classList.toggle("active", b === button);
      });
      if (state.selected) startCharts();
    });
  });

  document.getElementById("endpoint-filter").addEventListener("change", function (event) {
    state.filter = event.target.value;
    renderContainers();
  });

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) every("tables", TABLE_EVERY_MS, refreshTables);
  });

  // -- auto scaling ---------------------------------------------------------------------------
  // One card per scalable target (/api/scaling): capacity as recorded (a line, left axis)
  // beside invocations (bars, right axis), Min/Max and policies, and the activities table.

  var SCALING_EVERY_MS = 5000;
  var scalingCharts = {};

  function refreshScaling() {
    var range = state.range;
    return api("scaling", { range: range }).then(function (answer) {
      if (state.range !== range) return;
      renderScaling(answer);
    });
  }

  function renderScaling(answer) {
    var panel = document.getElementById("scaling-panel");
    panel.hidden = !answer.targets.length;
    document.getElementById("scaling-count").textContent =
      "(" + answer.targets.length + (answer.truncated ? "+" : "") + ")";
    var holder = document.getElementById("scaling-targets");
    var seen = {};
    answer.targets.forEach(function (t) {
      seen[t.resource_id] = true;
      var card = scalingCard(holder, t);
      card.querySelector(".scaling-range").textContent = rangeText(t);
      card.querySelector(".scaling-policies").textContent = "Policies: " + (t.policies.map(function (p) {
        return p.name + " (" + p.type + (p.metric ? ", " + p.metric : "") +
          (p.target_value != null ? " → " + p.target_value : "") + ")";
      }).join(", ") || "none");
      scalingCharts[t.resource_id].setData(scalingData(answer, t));
      renderActivities(card.querySelector(".activities tbody"), t.activities);
    });
    Array.prototype.slice.call(holder.children).forEach(function (card) {
      if (!seen[card.dataset.resource]) {
        scalingCharts[card.dataset.resource].destroy();
        delete scalingCharts[card.dataset.resource];
        holder.removeChild(card);
      }
    });
  }

  function rangeText(t) {
    var now = t.capacity_now;
    var unit = t.kind === "component" ? "copies" : "instances";
    var running = now ? " · now " + now.current + " of " + now.desired + " " + unit : " · resource gone";
    return t.dimension + " · Min " + t.min + " · Max " + t.max + running;
  }

  function scalingCard(holder, t) {
    var found = holder.querySelector('.scaling-target[data-resource="' + CSS.escape(t.resource_id) + '"]');
    if (found) return found;
    var card = document.createElement("div");
    card.className = "scaling-target";
    card.dataset.resource = t.resource_id;
    var title = document.createElement("h3");
    title.textContent = t.resource_id;
    card.appendChild(title);
    ["scaling-range", "scaling-policies"].forEach(function (name) {
      var line = document.createElement("p");
      line.className = "hint " + name;
      card.appendChild(line);
    });
    var box = document.createElement("div");
    box.className = "chart";
    box.dataset.chart = "scaling:" + t.resource_id;
    card.appendChild(box);
    var table = document.createElement("table");
    table.className = "grid activities";
    table.innerHTML = "<thead><tr><th>time</th><th>status</th><th>description</th><th>cause</th></tr></thead><tbody></tbody>";
    card.appendChild(table);
    holder.appendChild(card);
    var capacity = t.kind === "component" ? "copies" : "instances";
    scalingCharts[t.resource_id] = new uPlot(
      { width: chartWidth(box), height: 170,
        series: [{},
          { label: capacity, stroke: "#1f8a4c", width: 2, scale: "capacity", paths: uPlot.paths.stepped({ align: 1 }),
            points: { show: true, size: 4 } },
          { label: "invocations", stroke: "#2f6fdb", fill: "#2f6fdb55", scale: "calls",
            paths: uPlot.paths.bars({ size: [0.8, 40] }) }],
        scales: { capacity: { range: function (u, min, max) { return [0, Math.max((max || 0) + 1, t.max || 1)]; } },
                  calls: { range: function (u, min, max) { return [0, Math.max((max || 0) * 1.1, 1)]; } } },
        axes: [{}, { scale: "capacity", size: 40 }, { scale: "calls", side: 1, size: 50, grid: { show: false } }],
        legend: { live: true } },
      [[], [], []], box
    );
    return card;
  }

  function scalingData(answer, t) {
    var period = answer.period;
    var spans = { "1h": 3600, "3h": 10800, "24h": 86400, "7d": 604800 };
    var now = Date.now() / 1000;
    var first = Math.floor((now - spans[answer.range]) / period) * period;
    var xs = [];
    for (var x = first; x <= now; x += period) xs.push(x);
    var capacity = xs.map(function () { return null; });
    var calls = xs.map(function () { return 0; });
    [[t.series.capacity, capacity], [t.series.invocations, calls]].forEach(function (pair) {
      pair[0].forEach(function (point) {
        var i = Math.round((point[0] - first) / period);
        if (i >= 0 && i < xs.length) pair[1][i] = point[1];
      });
    });
    return [xs, capacity, calls];
  }

  function renderActivities(body, activities) {
    body.textContent = "";
    if (!activities.length) {
      var none = document.createElement("tr");
      cell(none, "no scaling activity yet").colSpan = 4;
      body.appendChild(none);
      return;
    }
    activities.forEach(function (a) {
      var tr = document.createElement("tr");
      cell(tr, new Date(a.start * 1000).toLocaleString());
      statusCell(tr, a.status);
      cell(tr, a.description || "-");
      cell(tr, a.cause || "-");
      tr.title = a.status_message || "";
      body.appendChild(tr);
    });
  }

  document.querySelectorAll(".ranges button").forEach(function (button) {
    button.addEventListener("click", function () { every("scaling", SCALING_EVERY_MS, refreshScaling); });
  });

  every("tables", TABLE_EVERY_MS, refreshTables);
  every("scaling", SCALING_EVERY_MS, refreshScaling);
})();

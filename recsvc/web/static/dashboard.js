// recsvc dashboard: reads /dashboard/api/* and the Admin RPCs over HTTP/JSON with the admin
// token kept in sessionStorage (never in a URL, never in a cookie). Data is put into the page
// with textContent only.
"use strict";

const TOKEN_KEY = "recsvc.adminToken";
const TRAFFIC_EVERY_MS = 5000;
const OTHERS_EVERY_MS = 30000;
const COLORS = ["#2f6fde", "#e08a1e", "#2a9d62", "#c2362b", "#7d4fc4", "#1c9aaa", "#b5478f",
  "#6b7a8f", "#9a8a1a", "#3d5a80"];
const charts = {};
let timers = [];

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function request(url, init) {
  const response = await fetch(url, {
    ...init,
    headers: { ...(init && init.headers), authorization: `Bearer ${token()}` },
    cache: "no-store",
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(response.status, body.code || String(response.status),
      body.message || response.statusText);
  }
  return body;
}

const api = (part) => request(`/dashboard/api/${part}`);
const rpc = (method, message) => request(`/${method}`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify(message || {}),
});

// -- formatting --------------------------------------------------------------------------------

function num(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString("en", {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  });
}
const pct = (value) => (value === null || value === undefined ? "–" : `${num(value * 100, 1)}%`);
const ms = (value) => (value === null || value === undefined ? "–" : num(value, value < 10 ? 2 : 1));
const shortMethod = (m) => m.replace(/^recsvc\.v1\./, "").replace(/^grpc\.health\.v1\./, "");
const clock = (t) => new Date(t * 1000).toLocaleTimeString("en-GB");

function table(id, headers, rows, rowClass) {
  const el = $(id);
  el.replaceChildren();
  const head = el.createTHead().insertRow();
  for (const h of headers) {
    const th = document.createElement("th");
    th.textContent = h;
    head.appendChild(th);
  }
  const body = el.createTBody();
  rows.forEach((row, i) => {
    const tr = body.insertRow();
    if (rowClass) tr.className = rowClass(i) || "";
    for (const cell of row) {
      const td = tr.insertCell();
      if (cell instanceof Node) td.appendChild(cell);
      else td.textContent = cell;
    }
  });
}

function meter(value) {
  const m = document.createElement("meter");
  m.min = 0;
  m.max = 1;
  m.value = Math.min(value || 0, 1);
  const wrap = document.createElement("span");
  wrap.append(m, ` ${pct(value)}`);
  return wrap;
}

function empty(id, reason) {
  const el = $(id);
  el.hidden = !reason;
  el.textContent = reason || "";
}

// One Chart per canvas, updated in place; no animation (a dashboard, not a show).
function chart(id, type, labels, datasets, options) {
  const data = { labels, datasets };
  if (charts[id]) {
    charts[id].data = data;
    charts[id].update("none");
    return;
  }
  charts[id] = new Chart($(id), {
    type,
    data,
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      ...options,
    },
  });
}

const color = (i) => COLORS[i % COLORS.length];

// -- sections -----------------------------------------------------------------------------------

async function loadModel() {
  const [info, models] = await Promise.all([rpc("recsvc.v1.Admin/GetModelInfo"), api("models")]);
  $("model-version").textContent = info.version;
  $("model-loaded").textContent = `${info.loadedAt} (trained ${info.createdAt})`;
  $("model-index").textContent = `${info.indexKind}, recall ${num(info.indexRecall, 3)}`;
  $("model-size").textContent = `${num(Number(info.customers))} customers, `
    + `${num(Number(info.products))} products, ${num(Number(info.interactions))} interactions`;

  const versions = models.versions.filter((v) => !v.error).slice().reverse(); // oldest first
  const names = [...new Set(versions.flatMap((v) => Object.keys(v.metrics)))]
    .filter((k) => !k.startsWith("coverage")).sort();
  chart("chart-versions", "bar", versions.map((v) => v.version),
    [
      ...names.map((k, i) => ({
        label: k, data: versions.map((v) => v.metrics[k] ?? null), backgroundColor: color(i),
      })),
      {
        label: "index recall", type: "line", data: versions.map((v) => v.index_recall),
        borderColor: "#1d2433", backgroundColor: "#1d2433",
      },
    ],
    { scales: { y: { min: 0, max: 1 } } });

  table("versions-table",
    ["version", "created", "model", ...names, "index", "recall", "customers", "products",
      "published", "state"],
    models.versions.map((v) => [
      v.version, v.created_at, v.model, ...names.map((k) => num(v.metrics[k], 3)),
      v.index_kind, num(v.index_recall, 3), num(v.customers), num(v.products),
      v.published_order === null ? "never" : `#${v.published_order + 1}`,
      v.error ? `unreadable: ${v.error}` : [v.serving && "serving", v.current && "CURRENT"]
        .filter(Boolean).join(", "),
    ]),
    (i) => (models.versions[i].serving ? "serving" : ""));
}

async function loadTraffic() {
  const t = await api("traffic");
  $("traffic-window").textContent = t.window_s
    ? `(rates over the last ${num(t.window_s)} s; charts every ${num(t.interval_s)} s)` : "";
  const labels = t.series.t.map(clock);
  const methods = Object.keys(t.series.rpc || {});
  chart("chart-calls", "line", labels, methods.map((m, i) => ({
    label: shortMethod(m), data: t.series.rpc[m].map((p) => p.calls_per_s),
    borderColor: color(i), backgroundColor: color(i), pointRadius: 2,
  })), { scales: { y: { beginAtZero: true } } });
  chart("chart-latency", "line", labels, methods.map((m, i) => ({
    label: shortMethod(m), data: t.series.rpc[m].map((p) => p.p99_ms),
    borderColor: color(i), backgroundColor: color(i), pointRadius: 2, spanGaps: true,
  })), { scales: { y: { beginAtZero: true } } });

  table("traffic-table",
    ["RPC", "calls/s", "p50 ms", "p99 ms", "errors/s", "calls since start", "errors since start"],
    t.table.map((r) => [shortMethod(r.method), num(r.calls_per_s, 2), ms(r.p50_ms), ms(r.p99_ms),
      num(r.errors_per_s, 2), num(r.calls), num(r.errors)]));
  const fb = t.fallbacks || { per_s: {}, total: {} };
  const deg = t.degraded || {};
  $("traffic-notes").textContent = `Fallbacks: cold start ${num(fb.total.cold_start || 0)} `
    + `(${num(fb.per_s.cold_start || 0, 2)}/s), fill ${num(fb.total.fill || 0)} `
    + `(${num(fb.per_s.fill || 0, 2)}/s). Degraded (feature store down or slow): `
    + `${num(deg.total || 0)} calls, ${num(deg.per_s || 0, 2)}/s, `
    + `${pct(deg.share_of_calls)} of Recommender calls in the window.`;
}

async function loadCustomers() {
  const c = await api("customers");
  empty("customers-empty", c.available ? "" : c.reason);
  if (!c.available) return;
  const segments = Object.keys(c.segments).sort();
  const stages = Object.keys(c.lifecycle_stages || {}).sort();
  chart("chart-segments", "bar", segments, [{
    label: "customers", data: segments.map((s) => c.segments[s]), backgroundColor: color(0),
  }], { plugins: { legend: { display: false } } });
  chart("chart-stages", "bar", stages, [{
    label: "customers", data: stages.map((s) => c.lifecycle_stages[s]), backgroundColor: color(2),
  }], { plugins: { legend: { display: false } } });
  const cross = c.segment_by_stage || {};
  table("customers-table", ["segment", ...stages, "all"], segments.map((s) => [
    s, ...stages.map((st) => num((cross[s] || {})[st] || 0)), num(c.segments[s]),
  ]));
  $("customers-notes").textContent = `${num(c.customers)} customers in features generation `
    + `${c.generation}, loaded ${c.loaded_at}${c.model_version ? ` for model ${c.model_version}` : ""}.`;
}

async function loadOffers() {
  const o = await api("offers");
  empty("offers-empty", o.available ? "" : o.reason);
  if (!o.available) return;
  const ids = o.offers.map((r) => r.offer_id);
  chart("chart-offers", "bar", ids, [
    { label: "impressions", data: o.offers.map((r) => r.impressions), backgroundColor: color(0) },
    { label: "clicks", data: o.offers.map((r) => r.clicks), backgroundColor: color(1) },
    { label: "redemptions", data: o.offers.map((r) => r.redemptions), backgroundColor: color(2) },
  ], { scales: { y: { beginAtZero: true } } });
  table("offers-table",
    ["offer", "title", "impressions", "clicks", "redemptions", "click rate", "redemption rate",
      "spent", "budget", "budget used"],
    o.offers.map((r) => [r.offer_id, r.title, num(r.impressions), num(r.clicks),
      num(r.redemptions), pct(r.click_rate), pct(r.redemption_rate), num(r.spent, 2),
      r.budget === null ? "none" : num(r.budget, 2),
      r.budget_used === null ? "–" : meter(r.budget_used)]));
}

async function loadExperiments() {
  const e = await api("experiments");
  empty("experiments-empty", e.available ? "" : e.reason);
  table("experiments-table", e.arms.length ? ["arm", "metric", "labels", "value"] : [],
    e.arms.map((a) => [a.arm, a.metric,
      Object.entries(a.labels).map(([k, v]) => `${k}=${v}`).join(", "), num(a.value, 2)]));
}

// -- flow -----------------------------------------------------------------------------------------

function showLogin(message) {
  for (const t of timers) clearInterval(t);
  timers = [];
  sessionStorage.removeItem(TOKEN_KEY);
  $("board").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("status").textContent = "";
}

async function refresh(loaders) {
  try {
    await Promise.all(loaders.map((load) => load()));
    $("status").textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      showLogin(`${err.message} (HTTP ${err.status})`);
    } else {
      $("status").textContent = `could not refresh: ${err.message}`;
    }
  }
}

async function open() {
  $("login").hidden = true;
  $("board").hidden = false;
  $("logout").hidden = false;
  const others = [loadModel, loadCustomers, loadOffers, loadExperiments];
  await refresh([...others, loadTraffic]);
  if (!token()) return; // refused: back at the login form
  timers = [
    setInterval(() => refresh([loadTraffic]), TRAFFIC_EVERY_MS),
    setInterval(() => refresh(others), OTHERS_EVERY_MS),
  ];
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  open();
});
$("logout").addEventListener("click", () => showLogin(""));
if (token()) open();

// The Switchyard console: one page, no framework. Every change goes through the admin
// API with the session cookie and its CSRF token; text from the server is set with
// textContent, never as HTML.
"use strict";

let csrf = null;
let timer = null;

const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const headers = { "content-type": "application/json" };
  if (method !== "GET" && csrf) headers["x-csrf-token"] = csrf;
  const r = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!r.ok) {
    const message = data && data.error ? data.error.message : `${r.status}`;
    throw new Error(message);
  }
  return data;
}

function cell(tr, value, cls) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined ? "" : String(value);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function rows(table, items, fill) {
  const body = table.querySelector("tbody");
  body.replaceChildren();
  for (const item of items) {
    const tr = document.createElement("tr");
    fill(tr, item);
    body.appendChild(tr);
  }
}

// --- sign-in --------------------------------------------------------------------------

let role = null;

function signedIn(session) {
  csrf = session.csrf;
  role = session.role;
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  $("who").textContent = session.team ? `${session.who} (${role}, team ${session.team})` : `${session.who} (${role})`;
  // what a role may not do is not offered (the admin API refuses it anyway)
  for (const admin of ["cache", "config", "audit"]) document.querySelector(`a[data-page=${admin}]`).hidden = role !== "admin";
  $("new-key").hidden = role === "viewer";
  route();
}

function signedOut() {
  csrf = null;
  clearInterval(timer);
  for (const p of document.querySelectorAll(".page")) p.hidden = true;
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
}

$("sign-in-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("sign-in-error").textContent = "";
  try {
    const secret = $("admin-key").value.trim();
    // a single sign-on token (a JWT: three dot-separated parts), else the admin key
    const form = /^[\w-]+\.[\w-]+\.[\w-]*$/.test(secret) ? { token: secret } : { key: secret };
    signedIn(await api("POST", "/ui/api/session", form));
    $("admin-key").value = "";
  } catch (err) {
    $("sign-in-error").textContent = err.message;
  }
});

$("sign-out").addEventListener("click", async () => {
  await api("DELETE", "/ui/api/session").catch(() => {});
  signedOut();
});

// --- pages ------------------------------------------------------------------------------

const pages = { overview, keys, usage, guardrails, config, audit, cache: () => {} };

async function audit() {
  const page = await api("GET", "/admin/audit?limit=200");
  rows($("audit-table"), page.data, (tr, e) => {
    tr.dataset.action = e.action;
    cell(tr, new Date(e.ts_ms).toLocaleString());
    cell(tr, e.who);
    cell(tr, e.action);
    cell(tr, e.target);
    cell(tr, JSON.stringify(e.detail));
  });
}

async function guardrails() {
  const m = parseMetrics(await (await fetch("/metrics", { credentials: "same-origin" })).text());
  const events = m.filter((s) => s.name === "switchyard_guardrail_actions_total").sort((a, b) => b.value - a.value);
  rows($("guard-events"), events, (tr, s) => {
    cell(tr, s.labels.guardrail);
    cell(tr, s.labels.category);
    cell(tr, s.labels.action);
    cell(tr, s.value);
  });
}

async function config() {
  const c = await api("GET", "/admin/config");
  $("config-path").textContent = c.path;
  $("config-text").textContent = c.toml;
}

function route() {
  const name = (location.hash || "#overview").slice(1);
  const page = pages[name] ? name : "overview";
  clearInterval(timer);
  for (const p of document.querySelectorAll(".page")) p.hidden = p.id !== page;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  pages[page]();
}
window.addEventListener("hashchange", () => { if (csrf) route(); });

// Prometheus text: [{name, labels, value}]
function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/);
    if (!m) continue;
    const labels = {};
    for (const kv of (m[3] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[kv[1]] = kv[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

function sum(metrics, name, keep) {
  return metrics.filter((s) => s.name === name && (!keep || keep(s.labels))).reduce((a, s) => a + s.value, 0);
}

function quantile(metrics, name, q) {
  const buckets = metrics.filter((s) => s.name === `${name}_bucket`)
    .map((s) => ({ le: s.labels.le === "+Inf" ? Infinity : Number(s.labels.le), n: s.value }))
    .sort((a, b) => a.le - b.le);
  const total = buckets.length ? buckets[buckets.length - 1].n : 0;
  if (!total) return null;
  const found = buckets.find((b) => b.n >= q * total);
  return found ? found.le : null;
}

function ms(seconds) {
  if (seconds === null) return "–";
  return seconds === Infinity ? "> 120 s" : `≤ ${(seconds * 1000).toFixed(seconds < 0.01 ? 2 : 0)} ms`;
}

async function overview() {
  const draw = async () => {
    const r = await fetch("/metrics", { credentials: "same-origin" });
    const m = parseMetrics(await r.text());
    const status = (l) => Number(l.status) >= 400;
    const tiles = [
      ["Requests", sum(m, "switchyard_requests_total")],
      ["Errors", sum(m, "switchyard_requests_total", status)],
      ["Rate limited (429)", sum(m, "switchyard_rate_limited_total")],
      ["Cache hits", sum(m, "switchyard_requests_total", (l) => l.provider === "cache")],
      ["In flight", sum(m, "switchyard_inflight_requests")],
      ["Input tokens", sum(m, "switchyard_tokens_total", (l) => l.direction === "input")],
      ["Output tokens", sum(m, "switchyard_tokens_total", (l) => l.direction === "output")],
      ["Spend (USD)", sum(m, "switchyard_cost_usd_total").toFixed(4)],
      ["Latency p50", ms(quantile(m, "switchyard_request_duration_seconds", 0.5))],
      ["Latency p90", ms(quantile(m, "switchyard_request_duration_seconds", 0.9))],
      ["Time to first token p50", ms(quantile(m, "switchyard_time_to_first_token_seconds", 0.5))],
      ["Guardrail actions", sum(m, "switchyard_guardrail_actions_total")],
    ];
    const box = $("tiles");
    box.replaceChildren();
    for (const [label, value] of tiles) {
      const t = document.createElement("div");
      t.className = "tile";
      t.dataset.tile = label;
      const v = document.createElement("div"); v.className = "value"; v.textContent = String(value);
      const l = document.createElement("div"); l.className = "label"; l.textContent = label;
      t.append(v, l);
      box.appendChild(t);
    }
    const latency = {};
    for (const s of m.filter((s) => s.name === "switchyard_target_latency_ewma_seconds")) {
      latency[`${s.labels.provider}/${s.labels.model}`] = s.value;
    }
    const queue = {};
    for (const s of m.filter((s) => s.name === "switchyard_queue_depth")) queue[s.labels.provider] = s.value;
    rows($("targets"), m.filter((s) => s.name === "switchyard_target_up"), (tr, s) => {
      cell(tr, s.labels.provider);
      cell(tr, s.labels.model);
      cell(tr, s.value === 1 ? "up" : "down (breaker open)", s.value === 1 ? "" : "down");
      const l = latency[`${s.labels.provider}/${s.labels.model}`];
      cell(tr, l === undefined ? "–" : `${(l * 1000).toFixed(1)} ms`);
      cell(tr, queue[s.labels.provider] ?? 0);
    });
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  };
  await draw();
  timer = setInterval(draw, 5000);
}

async function keys() {
  $("keys-error").textContent = "";
  const list = await api("GET", "/admin/keys");
  const all = list.data.concat(list.config_keys.map((k) => ({ ...k, config: true })));
  rows($("key-list"), all, (tr, k) => {
    tr.dataset.key = k.id;
    cell(tr, k.id);
    cell(tr, k.team);
    cell(tr, k.models ? k.models.join(", ") : "all");
    cell(tr, k.rpm);
    cell(tr, k.budget_usd === undefined || k.budget_usd === null ? "" : `$${k.budget_usd}`);
    cell(tr, k.config ? "config file" : (k.revoked ? "revoked" : "active"));
    const actions = cell(tr, "");
    if (!k.config && !k.revoked && role !== "viewer") {
      const limit = document.createElement("button");
      limit.textContent = "Edit";
      limit.className = "edit";
      limit.addEventListener("click", () => edit(k));
      const revoke = document.createElement("button");
      revoke.textContent = "Revoke";
      revoke.className = "revoke";
      revoke.addEventListener("click", async () => {
        if (!confirm(`Revoke ${k.id}? Its requests are refused at once.`)) return;
        await change(() => api("DELETE", `/admin/keys/${encodeURIComponent(k.id)}`));
      });
      actions.append(limit, " ", revoke);
    }
  });
}

// the edit form: limits, budget and allowed models of one key (an empty field removes it)
function edit(k) {
  const f = $("edit-key");
  f.dataset.id = k.id;
  $("edit-id").textContent = k.id;
  f.models.value = k.models ? k.models.join(", ") : "";
  f.rpm.value = k.rpm ?? "";
  f.tpm.value = k.tpm ?? "";
  f.budget_usd.value = k.budget_usd ?? "";
  f.hidden = false;
}

$("edit-cancel").addEventListener("click", () => { $("edit-key").hidden = true; });

$("edit-key").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target;
  const number = (v) => (v === "" ? null : Number(v));
  const models = f.models.value.split(",").map((s) => s.trim()).filter(Boolean);
  const patch = {
    models: models.length ? models : null,
    rpm: number(f.rpm.value),
    tpm: number(f.tpm.value),
    budget_usd: number(f.budget_usd.value),
  };
  await change(async () => {
    await api("PATCH", `/admin/keys/${encodeURIComponent(f.dataset.id)}`, patch);
    f.hidden = true;
  });
});

async function change(action) {
  try {
    await action();
    await keys();
  } catch (err) {
    $("keys-error").textContent = err.message;
  }
}

$("new-key").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const body = { id: f.get("id") };
  if (f.get("team")) body.team = f.get("team");
  if (f.get("models")) body.models = f.get("models").split(",").map((s) => s.trim()).filter(Boolean);
  if (f.get("rpm")) body.rpm = Number(f.get("rpm"));
  if (f.get("budget_usd")) body.budget_usd = Number(f.get("budget_usd"));
  await change(async () => {
    const created = await api("POST", "/admin/keys", body);
    $("secret").textContent = created.key;
    $("new-secret").hidden = false;
    e.target.reset();
  });
});

let usageRows = [];

async function usage() {
  const f = new FormData($("usage-form"));
  const params = new URLSearchParams({ by: f.get("by") });
  if (f.get("since")) params.set("since", f.get("since"));
  const answer = await api("GET", `/admin/usage?${params}`);
  usageRows = answer.data;
  rows($("usage-table"), usageRows, (tr, r) => {
    tr.dataset.group = r.group;
    cell(tr, r.group);
    cell(tr, r.requests);
    cell(tr, r.errors);
    cell(tr, r.cache_hits);
    cell(tr, r.input_tokens);
    cell(tr, r.output_tokens);
    cell(tr, r.cost_usd.toFixed(6));
    cell(tr, (r.saved_usd ?? 0).toFixed(6));
  });
}

$("usage-form").addEventListener("submit", (e) => { e.preventDefault(); usage(); });

$("csv").addEventListener("click", () => {
  const head = ["group", "requests", "errors", "cache_hits", "input_tokens", "output_tokens", "cost_usd", "saved_usd"];
  const quote = (v) => `"${String(v ?? "").replaceAll('"', '""')}"`;
  const lines = [head.join(",")].concat(usageRows.map((r) => head.map((h) => quote(r[h])).join(",")));
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
  a.download = "switchyard-usage.csv";
  a.click();
});

$("cache-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const params = new URLSearchParams();
  for (const k of ["alias", "scope"]) if (f.get(k)) params.set(k, f.get(k));
  try {
    const r = await api("DELETE", `/admin/cache?${params}`);
    $("cache-result").textContent = `Removed ${r.exact} exact and ${r.semantic} semantic entries.`;
  } catch (err) {
    $("cache-result").textContent = err.message;
  }
});

// --- start ----------------------------------------------------------------------------------

api("GET", "/ui/api/session").then(signedIn, signedOut);

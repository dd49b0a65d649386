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

// a table's rows, one per item; `append` adds an older page below the rows shown
// a cell holding a link that runs `open` (the page stays where it is)
function linkCell(tr, text, cls, open) {
  const a = document.createElement("a");
  a.href = location.hash || "#"; a.textContent = text; a.className = cls;
  a.addEventListener("click", (e) => { e.preventDefault(); open(); });
  cell(tr, "").appendChild(a);
}

function rows(table, items, fill, append) {
  const body = table.querySelector("tbody");
  if (!append) body.replaceChildren();
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
  traceUrl = session.trace_url || null;
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
  fetch("/ui/api/sso", { credentials: "same-origin" }).then((r) => r.json())
    .then((s) => { $("sso").hidden = !s.enabled; }, () => {});
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

const pages = { overview, keys, usage, requests, batches, prompts, guardrails, config, audit, cache: () => {} };

// --- charts: bars in an SVG, the largest value and the first and last labels written --------

const SVG = "http://www.w3.org/2000/svg";

function bars(svg, points, format) {
  const [, , width, height] = svg.getAttribute("viewBox").split(" ").map(Number);
  svg.replaceChildren();
  const max = Math.max(0, ...points.map((p) => p.value));
  const top = 14, bottom = 14, step = width / Math.max(points.length, 1);
  const text = (x, y, s, anchor) => {
    const t = document.createElementNS(SVG, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("text-anchor", anchor || "start");
    t.textContent = s;
    svg.appendChild(t);
  };
  points.forEach((p, i) => {
    const h = max > 0 ? (p.value / max) * (height - top - bottom) : 0;
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", i * step + 1); r.setAttribute("width", Math.max(step - 2, 1));
    r.setAttribute("y", height - bottom - h); r.setAttribute("height", h);
    r.dataset.label = p.label; r.dataset.value = p.value;
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${p.label}: ${format(p.value)}`;
    r.appendChild(title);
    svg.appendChild(r);
  });
  text(0, 10, `max ${format(max)}`);
  if (points.length) {
    text(0, height - 2, points[0].label);
    text(width, height - 2, points[points.length - 1].label, "end");
  }
}

// the last n UTC hours as the usage API names them (YYYY-MM-DDTHH), oldest first
function lastHours(n) {
  const now = Math.floor(Date.now() / 3600000);
  const out = [];
  for (let h = now - n + 1; h <= now; h++) out.push(new Date(h * 3600000).toISOString().slice(0, 13));
  return out;
}

async function charts() {
  const answer = await api("GET", "/admin/usage?by=hour&since=24h&limit=1000");
  const by = new Map(answer.data.map((r) => [r.group, r]));
  const hours = lastHours(24);
  const series = (f) => hours.map((h) => ({ label: `${h.slice(11)}:00`, value: by.has(h) ? f(by.get(h)) : 0 }));
  bars($("chart-requests"), series((r) => r.requests), String);
  bars($("chart-tokens"), series((r) => r.input_tokens + r.output_tokens), String);
  bars($("chart-spend"), series((r) => r.cost_usd), (v) => `$${v.toFixed(4)}`);
}

// --- request logs ------------------------------------------------------------------------------

let logsBefore = null;
let traceUrl = null;

function traceLink(td, traceId) {
  if (!traceId) return;
  if (!traceUrl) { td.textContent = traceId; return; }
  const a = document.createElement("a");
  a.href = traceUrl.replace("{trace_id}", encodeURIComponent(traceId));
  a.textContent = traceId.slice(0, 12) + "…"; a.target = "_blank"; a.rel = "noopener"; a.className = "trace";
  td.appendChild(a);
}

async function requests(more) {
  $("requests-error").textContent = "";
  const params = new URLSearchParams({ limit: "50" });
  const key = $("requests-form").key.value.trim();
  if (key) params.set("key", key);
  if (more === true && logsBefore) params.set("before", logsBefore);
  try {
    const page = await api("GET", `/admin/logs?${params}`);
    $("requests-off").hidden = page.enabled;
    rows($("request-list"), page.data, (tr, e) => {
      const r = e.record || {};
      tr.dataset.request = e.request_id;
      cell(tr, new Date(r.ts_ms).toLocaleString());
      linkCell(tr, e.request_id, "open-request", () => request(e.request_id));
      cell(tr, r.key_id);
      cell(tr, r.alias);
      cell(tr, r.status, r.status >= 400 ? "down" : "");
      cell(tr, `${r.input_tokens} / ${r.output_tokens}`);
      cell(tr, (r.latency_us / 1000).toFixed(1));
      traceLink(cell(tr, ""), e.trace_id);
    }, more === true);
    logsBefore = page.next_before;
    $("requests-more").hidden = !page.next_before;
  } catch (err) {
    $("requests-error").textContent = err.message;
  }
}

async function request(id) {
  try {
    const e = await api("GET", `/admin/logs/${encodeURIComponent(id)}`);
    $("request-title").textContent = `${e.request_id} (${e.record.alias}, ${e.record.status})`;
    $("request-sent").textContent = JSON.stringify(e.request, null, 2);
    $("request-answer").textContent = e.response_withheld
      ? "(withheld: it held pseudonymized values)" : JSON.stringify(e.response, null, 2);
    $("request-detail").hidden = false;
  } catch (err) {
    $("requests-error").textContent = err.message;
  }
}

$("requests-form").addEventListener("submit", (e) => { e.preventDefault(); requests(); });
$("requests-more").addEventListener("click", () => requests(true));

// --- batches and jobs -------------------------------------------------------------------------

let batchesAfter = null;

async function batches(more) {
  $("batches-error").textContent = "";
  const m = parseMetrics(await (await fetch("/metrics", { credentials: "same-origin" })).text());
  const jobs = (lane, outcome) => sum(m, "switchyard_jobs_total", (l) => l.lane === lane && l.outcome === outcome);
  try {
    const lanes = await api("GET", "/admin/jobs");
    rows($("lanes"), lanes.data, (tr, l) => {
      tr.dataset.lane = l.priority;
      cell(tr, l.priority);
      cell(tr, l.pending ?? "no consumer yet");
      cell(tr, l.in_progress);
      cell(tr, l.redelivered);
      cell(tr, jobs(l.priority, "completed"));
      cell(tr, jobs(l.priority, "failed"));
      cell(tr, jobs(l.priority, "retried"));
    });
    const params = new URLSearchParams({ limit: "20" });
    if (more === true && batchesAfter) params.set("after", batchesAfter);
    const page = await api("GET", `/admin/batches?${params}`);
    rows($("batch-list"), page.data, (tr, b) => {
      tr.dataset.batch = b.id;
      const c = b.request_counts;
      cell(tr, b.id);
      cell(tr, b.owner);
      cell(tr, b.priority);
      cell(tr, b.endpoint);
      cell(tr, b.status);
      const progress = cell(tr, "");
      const bar = document.createElement("span"); bar.className = "bar";
      const fill = document.createElement("span");
      fill.style.width = `${c.total ? Math.round((100 * (c.completed + c.failed)) / c.total) : 0}%`;
      bar.appendChild(fill);
      progress.append(bar, `${c.completed + c.failed} / ${c.total}`);
      cell(tr, c.failed);
      cell(tr, new Date(b.created_at * 1000).toLocaleString());
    }, more === true);
    batchesAfter = page.last_id;
    $("batches-more").hidden = !page.has_more;
  } catch (err) {
    $("batches-error").textContent = err.message;
  }
}

$("batches-more").addEventListener("click", () => batches(true));

// --- prompts and experiments -------------------------------------------------------------------

async function prompts() {
  $("prompts-error").textContent = "";
  try {
    const list = await api("GET", "/admin/prompts");
    rows($("prompt-list"), list.data, (tr, p) => {
      tr.dataset.prompt = p.id;
      linkCell(tr, p.id, "open-prompt", () => prompt(p.id));
      cell(tr, p.description);
      cell(tr, p.team ?? "");
      cell(tr, p.latest_version);
      cell(tr, Object.entries(p.labels || {}).map(([l, v]) => `${l} → ${v}`).join(", "));
      cell(tr, p.source);
    });
    // experiments are the admins'; a viewer reads prompts and changes nothing
    $("experiments-part").hidden = role !== "admin";
    $("prompt-label").hidden = role === "viewer";
    if (role !== "admin") return;
    const experiments = await api("GET", "/admin/experiments");
    rows($("experiment-list"), experiments.data, (tr, x) => {
      tr.dataset.experiment = x.id;
      cell(tr, x.id);
      cell(tr, x.prompt ?? x.model);
      cell(tr, x.status);
      cell(tr, x.variants.map((v) => `${v.name} (${v.weight})`).join(", "));
      const open = document.createElement("button");
      open.textContent = "Report"; open.className = "report";
      open.addEventListener("click", () => experiment(x.id));
      cell(tr, "").appendChild(open);
    });
  } catch (err) {
    $("prompts-error").textContent = err.message;
  }
}

let shownPrompt = null;

async function prompt(id) {
  const p = await api("GET", `/admin/prompts/${encodeURIComponent(id)}`);
  shownPrompt = p;
  $("prompt-detail").hidden = false;
  $("prompt-title").textContent = `${p.id} (${p.source})`;
  const labelsOf = (n) => Object.entries(p.labels || {}).filter(([, v]) => v === n).map(([l]) => l).join(", ");
  rows($("prompt-versions"), p.versions.map((v, i) => ({ ...v, n: i + 1 })), (tr, v) => {
    tr.dataset.version = v.n;
    cell(tr, v.n);
    cell(tr, v.model);
    cell(tr, v.messages.map((m) => `[${m.role}] ${m.content}`).join("\n"));
    cell(tr, labelsOf(v.n));
  });
  const f = $("prompt-diff");
  f.from.value = Math.max(1, p.versions.length - 1);
  f.to.value = p.versions.length;
  $("prompt-label").version.value = p.versions.length;
  $("diff-text").hidden = true;
}

$("prompt-diff").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target;
  try {
    const id = encodeURIComponent(shownPrompt.id);
    const d = await api("GET", `/admin/prompts/${id}/diff?from=${Number(f.from.value)}&to=${Number(f.to.value)}`);
    $("diff-text").textContent = d.diff || "(no difference)";
    $("diff-text").hidden = false;
  } catch (err) {
    $("prompts-error").textContent = err.message;
  }
});

$("prompt-label").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = e.target;
  try {
    const path = `/admin/prompts/${encodeURIComponent(shownPrompt.id)}/labels/${encodeURIComponent(f.label.value.trim())}`;
    await api("PUT", path, { version: Number(f.version.value) });
    await prompts();
    await prompt(shownPrompt.id);
  } catch (err) {
    $("prompts-error").textContent = err.message;
  }
});

async function experiment(id) {
  const x = await api("GET", `/admin/experiments/${encodeURIComponent(id)}`);
  $("experiment-detail").hidden = false;
  $("experiment-title").textContent = `${x.id}: ${x.status}`;
  const num = (v, digits) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
  rows($("experiment-report"), x.report.variants, (tr, v) => {
    tr.dataset.variant = v.name;
    cell(tr, v.control ? `${v.name} (control)` : v.name);
    cell(tr, v.prompt_version ? `version ${v.prompt_version}` : v.prompt_label ? `label ${v.prompt_label}` : v.model);
    cell(tr, v.requests);
    cell(tr, num(v.error_rate.value, 3));
    cell(tr, v.latency_ms.p50 ? num(v.latency_ms.p50.value, 1) : "–");
    cell(tr, num(v.cost_per_request_usd && v.cost_per_request_usd.mean, 6));
    cell(tr, v.feedback.count ? `${num(v.feedback.mean, 2)} (${v.feedback.count})` : "–");
    const actions = cell(tr, "");
    if (x.status !== "stopped" && v.prompt_version) {
      const promote = document.createElement("button");
      promote.textContent = "Promote"; promote.className = "promote";
      promote.addEventListener("click", async () => {
        if (!confirm(`Point production at ${v.name}'s version and stop ${x.id}?`)) return;
        try {
          await api("POST", `/admin/experiments/${encodeURIComponent(x.id)}/promote`, { variant: v.name });
          await prompts();
          await experiment(x.id);
        } catch (err) {
          $("prompts-error").textContent = err.message;
        }
      });
      actions.appendChild(promote);
    }
  });
}


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

let flaggedBefore = null;

async function flagged(more) {
  const params = new URLSearchParams({ limit: "50" });
  if (more === true && flaggedBefore) params.set("before", flaggedBefore);
  const page = await api("GET", `/admin/guardrails/flagged?${params}`);
  rows($("flagged"), page.data, (tr, f) => {
    tr.dataset.request = f.request_id;
    cell(tr, new Date(f.ts_ms).toLocaleString());
    cell(tr, f.request_id);
    cell(tr, f.key_id);
    cell(tr, f.alias);
    cell(tr, f.blocked ? `${f.status} blocked` : f.status, f.blocked ? "down" : "");
    cell(tr, f.actions.join(", ") + (f.message ? ` — ${f.message}` : ""));
  }, more === true);
  flaggedBefore = page.next_before;
  $("flagged-more").hidden = !page.next_before;
}

$("flagged-more").addEventListener("click", () => flagged(true));

async function guardrails() {
  await flagged();

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
  let tick = 0;
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
    const queue = (provider, priority) =>
      sum(m, "switchyard_queue_depth", (l) => l.provider === provider && l.priority === priority);
    const served = (provider, bad) =>
      sum(m, "switchyard_requests_total", (l) => l.provider === provider && (!bad || Number(l.status) >= 500));
    rows($("targets"), m.filter((s) => s.name === "switchyard_target_up"), (tr, s) => {
      const p = s.labels.provider;
      tr.dataset.target = `${p}/${s.labels.model}`;
      cell(tr, p);
      cell(tr, s.labels.model);
      cell(tr, s.value === 1 ? "up" : "down (breaker open)", s.value === 1 ? "" : "down");
      const l = latency[`${p}/${s.labels.model}`];
      cell(tr, l === undefined ? "–" : `${(l * 1000).toFixed(1)} ms`);
      const n = served(p, false);
      cell(tr, n);
      cell(tr, n ? (served(p, true) / n).toFixed(3) : "–");
      cell(tr, ["high", "normal", "low"].map((q) => queue(p, q)).join(" / "));
      const health = m.find((h) => h.name === "switchyard_provider_up" && h.labels.provider === p);
      cell(tr, health === undefined || health.value === 1 ? "ok" : "failing (health checks)",
        health && health.value !== 1 ? "down" : "");
    });
    // the hourly charts change slowly and cost a read of the day's totals: every minute
    if (tick++ % 12 === 0) await charts().catch(() => {});
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
  bars($("usage-chart"), usageRows.map((r) => ({ label: r.group, value: r.cost_usd })), (v) => `$${v.toFixed(4)}`);
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

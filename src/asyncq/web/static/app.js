// The asyncq dashboard: polls the REST API (relative URLs, so it works under any mount prefix) and renders.
"use strict";
(() => {
  const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
  const $ = (sel) => document.querySelector(sel);
  const COLORS = ["#16a34a", "#dc2626", "#2563eb", "#d97706", "#7c3aed"];
  let csrf = "";
  let queueNames = [];

  const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const when = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "-");
  const age = (s) => (s == null ? "-" : s < 60 ? s.toFixed(1) + "s" : s < 3600 ? (s / 60).toFixed(1) + "m" : (s / 3600).toFixed(1) + "h");
  const rate = (r) => (r == null ? "-" : r.toFixed(r < 10 ? 1 : 0));
  const state = (s) => `<span class="state ${esc(s)}">${esc(s)}</span>`;
  const jobLink = (id) => `<a class="job" data-job="${esc(id)}">${esc(id)}</a>`;

  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    if (options.method && options.method !== "GET") headers["X-CSRF-Token"] = csrf;
    const resp = await fetch(new URL(path, location.origin + base), { ...options, headers, credentials: "same-origin" });
    const body = resp.headers.get("content-type")?.includes("json") ? await resp.json() : await resp.text();
    if (!resp.ok) throw new Error((body && body.detail) || resp.statusText);
    return body;
  }

  function flash(message, isError = false) {
    const el = $("#flash");
    el.textContent = message;
    el.className = isError ? "error" : "";
    el.hidden = false;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => (el.hidden = true), 4000);
  }

  function rows(tbody, html, cols, empty) {
    $(tbody).innerHTML = html.length ? html.join("") : `<tr><td colspan="${cols}" class="empty">${empty}</td></tr>`;
  }

  function renderOverview(o) {
    $("#redis").textContent = o.redis;
    queueNames = o.queues.map((q) => q.queue);
    rows("#queues tbody", o.queues.map((q) => `<tr data-queue="${esc(q.queue)}">
      <td>${esc(q.queue)}</td><td class="num length">${q.length}</td><td class="num">${age(q.oldest_age)}</td>
      <td class="num inflight">${q.in_flight}</td><td class="num">${q.scheduled}</td><td class="num">${rate(q.rate_in)}</td>
      <td class="num">${rate(q.rate_out)}</td><td class="num">${q.dead_letters}</td>
      <td>${state(q.paused ? "paused" : "running")}</td>
      <td><button class="small" data-action="${q.paused ? "resume" : "pause"}" data-queue="${esc(q.queue)}">${q.paused ? "resume" : "pause"}</button></td>
      </tr>`), 10, "no queues yet: nothing was enqueued to this Redis");
    rows("#workers tbody", o.workers.map((w) => `<tr data-worker="${esc(w.worker_id)}">
      <td>${esc(w.worker_id)}</td><td>${state(w.alive ? (w.state || "alive") : "gone")}</td><td>${esc(w.queues.join(", "))}</td>
      <td class="num">${w.in_flight ?? "-"}</td><td class="num">${w.concurrency ?? "-"}</td>
      <td class="num">${w.stats.complete || 0} / ${w.stats.failed || 0} / ${w.stats.retried || 0}</td>
      <td>${when(w.last_beat)}</td></tr>`), 7, "no worker has sent a heartbeat recently");
    const select = $("#filter-queue");
    const chosen = select.value;
    select.innerHTML = `<option value="">any queue</option>` + queueNames.map((q) => `<option>${esc(q)}</option>`).join("");
    select.value = chosen;
  }

  async function refreshJobs() {
    const params = new URLSearchParams({ limit: "20" });
    for (const [key, sel] of [["task", "#filter-task"], ["state", "#filter-state"], ["queue", "#filter-queue"]]) {
      const value = $(sel).value.trim();
      if (value) params.set(key, value);
    }
    const jobs = await api("api/jobs?" + params);
    rows("#jobs tbody", jobs.map((j) => `<tr><td>${jobLink(j.job_id)}</td><td>${esc(j.task)}</td><td>${esc(j.queue)}</td>
      <td>${state(j.status)}</td><td class="num">${j.tries}</td><td>${when(j.enqueued_at)}</td><td>${when(j.started_at)}</td>
      <td>${when(j.finished_at)}</td><td class="err">${esc(j.error)}</td></tr>`), 9, "no jobs match");
  }

  async function refreshDeadLetters() {
    const page = await api("api/dead-letters?limit=50");
    $("#dlq-total").textContent = `(${page.total})`;
    rows("#dead-letters tbody", page.items.map((d) => `<tr data-dead="${esc(d.job_id)}">
      <td>${jobLink(d.job_id)}</td><td>${esc(d.task)}</td><td>${esc(d.queue)}</td><td>${esc(d.reason)}</td>
      <td class="err">${esc(d.error)}</td><td class="num" title="worker lost ${d.recoveries} time(s)">${d.tries}${d.recoveries ? " +" + d.recoveries + " lost" : ""}</td><td>${when(d.failed_at)}</td>
      <td><button class="small" data-action="retry" data-id="${esc(d.job_id)}">retry</button>
          <button class="small danger" data-action="purge" data-id="${esc(d.job_id)}">purge</button></td></tr>`),
      8, "no dead letters");
  }

  async function refreshPeriodic() {
    const entries = await api("api/periodic");
    rows("#periodic tbody", entries.map((p) => `<tr><td>${esc(p.name)}</td><td>${esc(p.task)}</td><td>${esc(p.schedule)}</td>
      <td>${when(p.next_run)}</td><td>${when(p.last_run)}</td><td>${p.last_status ? state(p.last_status) : "-"}</td></tr>`),
      6, "no periodic tasks known (start the dashboard with --app module:app to see them)");
  }

  function chart(title, points, series, unit) {
    const w = 420, h = 140, pad = 4;
    const max = Math.max(1e-9, ...series.flatMap((s) => points.map((p) => p[s] || 0)));
    const x = (i) => pad + (i * (w - 2 * pad)) / Math.max(1, points.length - 1);
    const y = (v) => h - pad - ((v || 0) * (h - 2 * pad)) / max;
    const lines = series.map((s, k) => `<polyline fill="none" stroke="${COLORS[k]}" stroke-width="1.8"
      points="${points.map((p, i) => `${x(i).toFixed(1)},${y(p[s]).toFixed(1)}`).join(" ")}"/>`).join("");
    const legend = series.map((s, k) => `<span><i class="sw c${k}"></i>${esc(s)}</span>`).join("");
    const top = unit === "s" ? age(max) : Math.round(max) + " jobs/min";
    return `<div class="chart"><h3>${esc(title)} <span class="muted">max ${top}</span></h3>
      <svg viewBox="0 0 ${w} ${h}" preserveAspectRatio="none">${lines}</svg><div class="legend">${legend}</div></div>`;
  }

  async function refreshCharts() {
    const history = await api("api/history?minutes=60");
    const html = [];
    for (const [queue, points] of Object.entries(history)) {
      html.push(chart(`${queue}: throughput`, points, ["succeeded", "failed", "started", "retried"], "jobs"));
      html.push(chart(`${queue}: queue wait`, points, ["wait_p50", "wait_p95", "wait_p99"], "s"));
    }
    $("#charts").innerHTML = html.join("") || `<p class="empty">no statistics yet: workers flush them every few seconds</p>`;
  }

  async function showJob(id) {
    const box = $("#job-detail");
    try {
      const j = await api("api/jobs/" + encodeURIComponent(id));
      const field = (k, v) => `<dt>${k}</dt><dd>${v}</dd>`;
      box.innerHTML = `<dl>${field("job", esc(j.job_id))}${field("state", state(j.status))}${field("task", esc(j.task))}
        ${field("queue", esc(j.queue))}${field("args", esc(JSON.stringify(j.args)))}${field("kwargs", esc(JSON.stringify(j.kwargs)))}
        ${field("tries", j.tries)}${field("worker lost", j.recoveries)}${field("enqueued", when(j.enqueued_at))}${field("scheduled", when(j.scheduled_for))}
        ${field("started", when(j.started_at))}${field("finished", when(j.finished_at))}${field("worker", esc(j.worker))}
        ${j.status === "complete" ? field("result", esc(JSON.stringify(j.result))) : ""}
        ${j.error ? field("error", `<span class="err">${esc(j.error)}</span>`) : ""}
        ${j.dead_letter_reason ? field("dead letter", esc(j.dead_letter_reason)) : ""}</dl>
        ${j.traceback ? `<pre>${esc(j.traceback)}</pre>` : ""}
        ${["queued", "deferred", "in_progress"].includes(j.status) ? `<button data-action="abort" data-id="${esc(j.job_id)}">abort</button>` : ""}`;
    } catch (err) {
      box.textContent = String(err.message);
    }
    box.hidden = false;
  }

  async function act(button) {
    const { action, queue, id } = button.dataset;
    const calls = {
      pause: () => api(`api/queues/${encodeURIComponent(queue)}/pause`, { method: "POST" }),
      resume: () => api(`api/queues/${encodeURIComponent(queue)}/resume`, { method: "POST" }),
      retry: () => api(`api/dead-letters/${encodeURIComponent(id)}/retry`, { method: "POST" }),
      purge: () => api(`api/dead-letters/${encodeURIComponent(id)}`, { method: "DELETE" }),
      abort: () => api(`api/jobs/${encodeURIComponent(id)}/abort`, { method: "POST" }),
    };
    try {
      flash((await calls[action]()).detail);
    } catch (err) {
      flash(err.message, true);
    }
    await tick();
  }

  document.addEventListener("click", async (event) => {
    const target = event.target.closest("[data-action], [data-job]");
    if (!target) return;
    if (target.dataset.job) return showJob(target.dataset.job);
    await act(target);
  });
  $("#job-lookup").addEventListener("click", () => $("#job-id").value.trim() && showJob($("#job-id").value.trim()));
  $("#job-filter").addEventListener("change", () => refreshJobs().catch(() => {}));
  $("#job-filter").addEventListener("submit", (e) => e.preventDefault());
  $("#dlq-retry-all").addEventListener("click", async () => {
    if (!confirm("Retry every dead letter?")) return;
    try { flash((await api("api/dead-letters/retry", { method: "POST" })).detail); } catch (e) { flash(e.message, true); }
    await tick();
  });
  $("#dlq-purge-all").addEventListener("click", async () => {
    if (!confirm("Delete every dead letter for good?")) return;
    try { flash((await api("api/dead-letters", { method: "DELETE" })).detail); } catch (e) { flash(e.message, true); }
    await tick();
  });

  async function refreshTenants() {
    const queues = await api("api/tenants?top=5");
    $("#tenants-section").hidden = !queues.length;
    rows("#tenants tbody", queues.flatMap((q) => q.tenants.map((t) => `<tr>
      <td>${esc(q.queue)}</td><td>${esc(t.tenant)}</td><td class="num">${t.ready}</td>
      <td class="num">${t.waiting}</td><td class="num">${t.weight}</td></tr>`)), 5, "no tenants");
    $("#limited").textContent = queues.flatMap((q) => Object.entries(q.limited).map(([task, l]) =>
      `${q.queue}: ${task} ${l.ready} ready, ${l.in_flight} holding a slot` +
      (l.next_start_in ? `, next start in ${l.next_start_in.toFixed(2)}s` : ""))).join("; ");
  }

  async function tick() {
    const live = $("#live");
    try {
      renderOverview(await api("api/overview"));
      await Promise.all([refreshJobs(), refreshDeadLetters(), refreshTenants()]);
      live.textContent = "live";
      live.className = "pill ok";
      $("#updated").textContent = new Date().toLocaleTimeString();
    } catch (err) {
      live.textContent = "error: " + err.message;
      live.className = "pill bad";
    }
  }

  async function start() {
    try {
      csrf = (await api("api/session")).csrf_token;
    } catch (err) {
      $("#live").textContent = "error: " + err.message;
      return;
    }
    await tick();
    refreshPeriodic().catch(() => {});
    refreshCharts().catch(() => {});
    setInterval(tick, 1000);
    setInterval(() => refreshPeriodic().catch(() => {}), 5000);
    setInterval(() => refreshCharts().catch(() => {}), 10000);
  }
  start();
})();

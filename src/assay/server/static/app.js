/* assay UI: small helpers + one init function per page (body[data-page]). Calls the /v1 API. */
"use strict";
const $ = (sel, el = document) => el.querySelector(sel);
const $$ = (sel, el = document) => Array.from(el.querySelectorAll(sel));
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const fmt = (x, d = 3) => (typeof x === "number" ? x.toFixed(d) : "–");

async function api(method, url, body) {
  const opts = {method, headers: {Accept: "application/json"}, credentials: "same-origin"};
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  const resp = await fetch(url, opts);
  const data = await resp.json().catch(() => ({error: {code: `http_${resp.status}`, message: resp.statusText}}));
  if (!resp.ok) { const e = data.error || {code: `http_${resp.status}`, message: JSON.stringify(data)}; e.status = resp.status; throw e; }
  return data;
}

function showError(el, err) {
  let html = `<div class="error"><strong>${esc(err.code)}</strong> ${esc(err.message)}</div>`;
  if (err.rows && err.rows.length) {
    html += `<p>${err.rows_total} rows with problems${err.rows_total > err.rows.length ? ` (first ${err.rows.length})` : ""}:</p>`;
    html += `<table class="list row-errors"><thead><tr><th>Row</th><th>Id</th><th>Field</th><th>Problem</th></tr></thead><tbody>` +
      err.rows.map((r) => `<tr><td>${r.row + 1}</td><td>${esc(r.id)}</td><td>${esc(r.field)}</td><td>${esc(r.problem)}</td></tr>`).join("") +
      `</tbody></table>`;
  }
  el.innerHTML = html;
}

function datasetSummary(d) {
  const counts = Object.entries(d.label_counts || {}).map(([k, v]) => `${esc(k)}: ${v}`).join(", ");
  const split = d.split ? ` · split: <strong class="split">${d.split.seeds} seeds / ${d.split.held_out} held out</strong>` : "";
  const warn = (d.warnings || []).map((w) => `<div class="muted">⚠ ${esc(w)}</div>`).join("");
  const errs = (d.errors || []).length ? "" : "";
  return `<div class="ok dataset-ok"><strong>${d.rows} rows</strong> (${counts})${split}` +
    `${d.dropped_duplicates ? ` · ${d.dropped_duplicates} duplicates dropped` : ""}</div>${warn}${errs}`;
}

/* ---------------------------------------------------------------- new run, step 3: the review sample
   Each row shows the decision the API recorded (undecided until decided); accept and relabel are saved at
   once, reject and regenerate wait for a reason. ``current()`` is the training set under review
   ({id, generate, judge}); ``state.review`` keeps the items as the API last returned them. */
function reviewTable(state, current) {
  const lineage = (it) => ((it.row || {}).meta || {}).lineage || {};
  const replacedIds = (items) => new Set(items.map((it) => lineage(it).replaces).filter(Boolean));
  const recordedText = (it, replaced) => {
    if (!it.decision) return "undecided";
    const what = it.decision === "relabel" ? `relabel → ${it.label}` : (replaced ? "reject (regenerated)" : it.decision);
    return it.note ? `${what}: ${it.note}` : what;
  };
  const ordered = (items) => {  // each regenerated row right after the row it replaced
    const next = {}, out = [], seen = new Set();
    items.forEach((it) => { if (lineage(it).replaces) next[lineage(it).replaces] = it; });
    const add = (it) => { if (seen.has(it.id)) return; seen.add(it.id); out.push(it); if (next[it.id]) add(next[it.id]); };
    items.filter((it) => !lineage(it).replaces).forEach(add);
    items.forEach(add);
    return out;
  };
  const rowHtml = (it, n, replaced, saved) => {
    const labels = state.spec.labels || ["true", "false"];
    const field = (state.spec.shape === "message" || !state.spec.shape) ? "input" : "output";
    const chosen = replaced ? "regenerate" : it.decision === "relabel" ? `relabel:${it.label}` : (it.decision || "");
    const opts = [["", "undecided"], ["accept", "accept"], ["reject", "reject"]];
    if (current() && current().generate) opts.push(["regenerate", "regenerate"]);
    labels.filter((l) => l !== it.proposed_label).forEach((l) => opts.push([`relabel:${l}`, `relabel → ${l}`]));
    const off = replaced ? " disabled" : "";
    const kind = lineage(it).replaces ? " replacement" : "";
    return `<tr data-item="${esc(it.id)}" data-decision="${esc(it.decision || "undecided")}" class="${replaced ? "replaced" : ""}${kind}">
      <td>${n}</td><td class="rowtext">${esc(String(it.row[field] ?? it.row.input ?? "").slice(0, 400))}</td>
      <td>${esc(it.proposed_label)}</td><td class="recorded">${esc(recordedText(it, replaced))}</td>
      <td><select class="decision${saved ? " saved" : ""}"${off}>${opts.map(([v, t]) =>
        `<option value="${esc(v)}"${v === chosen ? " selected" : ""}${v === "" ? " disabled" : ""}>${esc(t)}</option>`).join("")}</select></td>
      <td><input class="reason" maxlength="2000" placeholder="reason" value="${esc(it.note || "")}"${off}></td>
      <td><button type="button" class="save secondary" hidden>Save</button></td></tr>`;
  };
  const showProgress = () => {
    const items = state.review || [], gone = replacedIds(items);
    const live = items.filter((it) => !gone.has(it.id));
    const undecided = live.filter((it) => !it.decision).length;
    $("#review-progress").textContent = `${live.length - undecided} of ${live.length} rows decided` +
      (gone.size ? ` · ${gone.size} regenerated` : "") + (undecided ? ` · ${undecided} undecided` : "");
    $("#review-progress").dataset.undecided = String(undecided);
  };
  const renderReview = (items, savedId) => {
    state.review = items;
    const gone = replacedIds(items);
    $("#review-table tbody").innerHTML = ordered(items).map((it, i) => rowHtml(it, i + 1, gone.has(it.id), it.id === savedId)).join("");
    showProgress();
    $("#review").hidden = false;
  };
  const loadReview = async (savedId) => {
    const set = current();
    const items = await api("POST", `/v1/datasets/${set.id}/review`, {n: 50});  // the same 50 rows each time
    renderReview(items, savedId);
  };
  const save = async (tr) => {
    const sel = $("select.decision", tr), reason = $("input.reason", tr).value.trim(), button = $("button.save", tr);
    const cut = sel.value.indexOf(":");  // relabel:<label> (a label may hold a colon)
    const decision = cut < 0 ? sel.value : sel.value.slice(0, cut), label = cut < 0 ? null : sel.value.slice(cut + 1);
    const fb = $("#train-feedback");
    fb.innerHTML = "";
    if ((decision === "reject" || decision === "regenerate") && !reason) {
      tr.classList.add("needs-reason");
      fb.innerHTML = `<div class="error" id="reason-needed">Give a reason to ${esc(decision)} row ${esc(tr.cells[0].textContent)}.</div>`;
      $("input.reason", tr).focus();
      return;
    }
    button.disabled = true;
    try {
      if (decision === "regenerate") {
        button.textContent = "Regenerating…";
        const set = current();
        await api("POST", `/v1/review/${tr.dataset.item}/regenerate`, {reason, test_set: state.testId, generate: set.generate,
          judge: set.judge, seed_fraction: Number($("#seed-fraction").value), split_seed: Number($("#split-seed").value)});
        await loadReview(tr.dataset.item);
        return;
      }
      const it = await api("POST", `/v1/review/${tr.dataset.item}`, {decision, label, note: reason});
      state.review = state.review.map((x) => (x.id === it.id ? it : x));
      tr.outerHTML = rowHtml(it, Number(tr.cells[0].textContent), false, true);
      showProgress();
    } catch (e) { showError(fb, e); button.disabled = false; button.textContent = "Save"; }
  };
  const tbody = $("#review-table tbody");
  tbody.addEventListener("change", (ev) => {
    if (!ev.target.matches("select.decision")) return;
    const tr = ev.target.closest("tr"), v = ev.target.value, button = $("button.save", tr);
    if (v === "reject" || v === "regenerate") {  // these wait for a reason
      button.hidden = false;
      button.textContent = v === "regenerate" ? "Regenerate" : "Reject";
      $("input.reason", tr).placeholder = "reason (required)";
      $("input.reason", tr).focus();
    } else { button.hidden = true; save(tr); }
  });
  tbody.addEventListener("click", (ev) => { if (ev.target.matches("button.save")) save(ev.target.closest("tr")); });
  tbody.addEventListener("keydown", (ev) => {
    const tr = ev.target.closest("tr");
    if (ev.key === "Enter" && ev.target.matches("input.reason") && !$("button.save", tr).hidden) save(tr);
  });
  return {load: loadReview, replacedIds};
}

/* ---------------------------------------------------------------- new run: the four steps */
function initNewRun() {
  const flow = $("#flow");
  const project = flow.dataset.project;
  const presets = JSON.parse($("#preset-specs").textContent);
  const state = {metric: null, spec: null, testId: null, mode: "upload", review: []};

  const go = (n) => {
    $$(".step").forEach((s) => (s.hidden = s.id !== `step-${n}`));
    $$("#steps li").forEach((li) => {
      const k = Number(li.dataset.step);
      li.className = k === n ? "current" : k < n ? "done" : "";
    });
    if (n === 4) {
      $("#config-preview").textContent = JSON.stringify(buildConfig(), null, 2);
      $("#launch-summary").textContent = launchSummary();
    }
    window.scrollTo(0, 0);
  };
  $$("#steps li").forEach((li) => li.addEventListener("click", () => { if (li.classList.contains("done")) go(Number(li.dataset.step)); }));

  // step 1
  const preview = () => {
    const v = $("#metric-preset").value;
    $("#custom-metric").hidden = v !== "__custom__";
    $("#metric-preview").hidden = v === "__custom__";
    if (v !== "__custom__") $("#metric-preview").textContent = presets[v].prompt;
  };
  $("#metric-preset").addEventListener("change", preview);
  $("#metric-output").addEventListener("change", () => { $("#labels-row").hidden = $("#metric-output").value !== "categorical"; });
  preview();
  $("#metric-next").addEventListener("click", async () => {
    const v = $("#metric-preset").value;
    const fb = $("#metric-feedback");
    fb.innerHTML = "";
    if (v !== "__custom__") { state.metric = v; state.spec = presets[v]; go(2); return; }
    const spec = {name: $("#metric-name").value.trim(), output: $("#metric-output").value, shape: $("#metric-shape").value,
      prompt: $("#metric-prompt").value};
    if (spec.output === "categorical") spec.labels = $("#metric-labels").value.split(",").map((s) => s.trim()).filter(Boolean);
    try { state.spec = await api("POST", "/ui/metric-check", spec); state.metric = state.spec; go(2); }
    catch (e) { showError(fb, e); }
  });
  const metricField = () => (typeof state.metric === "string" ? state.metric : JSON.stringify(state.metric));

  // step 2
  const uploadForm = (file, kind, extra = {}) => {
    const fd = new FormData();
    fd.append("file", file);
    fd.append("metric", metricField());
    fd.append("kind", kind);
    for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== null && v !== "") fd.append(k, v);
    return fd;
  };
  const testExtra = () => {
    const cols = {};
    if ($("#test-col-input").value.trim()) cols.input = $("#test-col-input").value.trim();
    if ($("#test-col-label").value.trim()) cols.label = $("#test-col-label").value.trim();
    return {columns: Object.keys(cols).length ? JSON.stringify(cols) : "", label_map: $("#test-label-map").value.trim(),
      seed_fraction: $("#seed-fraction").value, split_seed: $("#split-seed").value};
  };
  const sendTest = async (validateOnly) => {
    const fb = $("#test-feedback");
    const file = $("#test-file").files[0];
    if (!file) { fb.innerHTML = `<div class="error">Choose a file first.</div>`; return; }
    fb.innerHTML = `<p class="muted">Checking ${esc(file.name)}…</p>`;
    try {
      const d = await api("POST", `/v1/projects/${project}/datasets`, uploadForm(file, "test", {...testExtra(), validate_only: validateOnly ? "true" : ""}));
      if (validateOnly) {
        if (d.ok) fb.innerHTML = datasetSummary(d) + `<p class="muted">Looks good: upload it to continue.</p>`;
        else showError(fb, {code: "invalid_rows", message: `${d.errors.length} rows have problems`, rows: d.errors, rows_total: d.errors.length});
        return;
      }
      state.testId = d.id;
      fb.innerHTML = datasetSummary(d) + `<p class="muted">Stored as dataset ${esc(d.id)}.</p>`;
      $("#test-next").disabled = false;
    } catch (e) { showError(fb, e); }
  };
  $("#test-check").addEventListener("click", () => sendTest(true));
  $("#test-upload").addEventListener("click", () => sendTest(false));
  $("#test-next").addEventListener("click", () => go(3));

  // step 3: the training rows (uploaded, generated or judge-labeled), then their review sample
  const sets = {};  // mode -> {id, judge, generate}: the training set each way gave
  const current = () => sets[state.mode];
  $$("input[name=train-mode]").forEach((r) => r.addEventListener("change", () => {
    state.mode = r.value;
    for (const m of ["upload", "generate", "label"]) $(`#mode-${m}`).hidden = m !== r.value;
    $("#train-next").disabled = !current();
    $("#train-feedback").innerHTML = "";
    if (current()) loadReview().catch((e) => showError($("#train-feedback"), e)); else $("#review").hidden = true;
  }));
  const sameJudge = () => { $("#gen-same-judge").hidden = $("#gen-model").value !== $("#gen-judge").value; };
  $("#gen-model").addEventListener("change", sameJudge);
  $("#gen-judge").addEventListener("change", sameJudge);
  sameJudge();

  const review = reviewTable(state, current);
  const loadReview = review.load, replacedIds = review.replacedIds;
  const useSet = async (d, extra = {}) => {
    sets[state.mode] = {id: d.id, ...extra};
    $("#train-feedback").innerHTML = datasetSummary(d);
    $("#train-next").disabled = false;
    await loadReview();
  };
  $("#train-upload").addEventListener("click", async () => {
    const fb = $("#train-feedback");
    const file = $("#train-file").files[0];
    if (!file) { fb.innerHTML = `<div class="error">Choose a file first.</div>`; return; }
    fb.innerHTML = `<p class="muted">Uploading ${esc(file.name)}…</p>`;
    try { await useSet(await api("POST", `/v1/projects/${project}/datasets`, uploadForm(file, "train", testExtra()))); }
    catch (e) { showError(fb, e); }
  });
  $("#gen-run").addEventListener("click", async () => {
    const fb = $("#train-feedback"), generate = $("#gen-model").value, judge = $("#gen-judge").value;
    fb.innerHTML = `<p class="muted" id="gen-busy">Generating ${esc($("#gen-size").value)} rows with ${esc(generate)}, judged by ${esc(judge)}…</p>`;
    $("#gen-run").disabled = true;
    try {
      const d = await api("POST", `/v1/datasets/${state.testId}/generate`, {generate, judge, target_size: Number($("#gen-size").value),
        seed_fraction: Number($("#seed-fraction").value), split_seed: Number($("#split-seed").value)});
      await useSet(d, {generate, judge});
    } catch (e) { showError(fb, e); }
    $("#gen-run").disabled = false;
  });
  $("#label-run").addEventListener("click", async () => {
    const fb = $("#train-feedback");
    const file = $("#unlabeled-file").files[0], judge = $("#judge-model").value;
    if (!file) { fb.innerHTML = `<div class="error">Choose a file first.</div>`; return; }
    fb.innerHTML = `<p class="muted">Uploading and labeling with ${esc(judge)}…</p>`;
    try {
      const u = await api("POST", `/v1/projects/${project}/datasets`, uploadForm(file, "unlabeled", testExtra()));
      await useSet(await api("POST", `/v1/datasets/${u.id}/label`, {judge}), {judge});
    } catch (e) { showError(fb, e); }
  });
  $("#train-next").addEventListener("click", () => go(4));

  // step 4
  const buildConfig = () => {
    const data = {test_set: `dataset:${state.testId}`, seed_fraction: Number($("#seed-fraction").value),
      split_seed: Number($("#split-seed").value)};
    const cfg = {metric: state.metric, data, model: {family: $("#model-family").value}, train: {epochs: Number($("#epochs").value), budget: $("#budget").value}};
    const set = current();
    if (set) data.train_set = `dataset:${set.id}`;
    if (set && set.judge) cfg.judge = set.judge;  // measured against the held-out rows in the report
    if ($("#max-steps").value) cfg.train.max_steps = Number($("#max-steps").value);
    return cfg;
  };
  const launchSummary = () => {
    const set = current();
    if (!set) return "Training rows: the seed rows only.";
    const items = state.review || [], gone = replacedIds(items);
    const count = (d) => items.filter((it) => !gone.has(it.id) && (it.decision || "undecided") === d).length;
    return `Training rows: dataset ${set.id}` + (set.generate ? `, generated by ${set.generate}` : "") +
      (set.judge ? `, labeled by the judge ${set.judge}` : "") + `. Review: ${count("accept")} accepted, ` +
      `${count("reject")} rejected, ${count("relabel")} relabelled, ${gone.size} regenerated, ${count("undecided")} undecided.`;
  };
  ["#model-family", "#budget", "#epochs", "#max-steps"].forEach((s) => $(s).addEventListener("input", () => {
    $("#config-preview").textContent = JSON.stringify(buildConfig(), null, 2);
  }));
  $("#launch").addEventListener("click", async () => {
    const fb = $("#launch-feedback");
    $("#launch").disabled = true;
    try {
      const run = await api("POST", "/v1/runs", {project, config: buildConfig(), name: $("#run-name").value.trim() || null});
      window.location.href = `/runs/${run.id}`;
    } catch (e) { showError(fb, e); $("#launch").disabled = false; }
  });
}

/* ---------------------------------------------------------------- run page: live status */
function initRun() {
  const id = $("#run").dataset.run;
  let lastEvent = 0, reportShown = $("#report-frame").hasAttribute("src");
  const active = new Set(["queued", "generating_data", "data_ready", "training"]);
  const tick = async () => {
    let run;
    try { run = await api("GET", `/v1/runs/${id}`); } catch (e) { setTimeout(tick, 3000); return; }
    const st = $("#run-status");
    st.textContent = run.status_title;
    st.className = `status s-${run.status}`;
    st.dataset.status = run.status;
    $("#run-progress").style.width = `${Math.round(run.progress * 100)}%`;
    $("#run-message").textContent = run.message;
    $("#run-failure").hidden = !run.failure_reason;
    $("#run-failure").textContent = run.failure_reason || "";
    $("#run-history").innerHTML = (run.history || []).map((h) => `<li>${esc(h.at.slice(11, 19))} · ${esc(h.message)}</li>`).join("");
    $("#run-cancel").hidden = !active.has(run.status);
    const staleAfter = Number($("#run-stale").dataset.staleAfter || 60);
    let warning = "";
    if (run.status === "queued" && !run.worker_id) {
      try {
        const q = await api("GET", `/v1/runs/${id}/queue`);
        $("#run-queue").hidden = !q.position;
        $("#run-queue-position").textContent = q.position ? `${q.position} of ${q.queue_depth}` : "";
        if (!q.workers_alive) warning = "No live worker: queued runs wait until a worker (assay worker) is running.";
      } catch (e) { /* best effort */ }
    } else {
      $("#run-queue").hidden = true;
      const beat = run.heartbeat_at ? (Date.now() - Date.parse(run.heartbeat_at)) / 1000 : 0;
      if (active.has(run.status) && run.worker_id && beat > staleAfter / 2) {
        warning = `The worker has not reported for ${Math.round(beat)} s; the run is failed after ${staleAfter} s without a heartbeat.`;
      }
    }
    $("#run-stale").hidden = !warning;
    $("#run-stale").textContent = warning;
    $("#register").hidden = run.status !== "fine_tuned";
    if (run.registered_as) $("#run-registered").innerHTML = `as <a href="/metrics/${esc(run.registered_as)}">${esc(run.registered_as)}</a>`;
    if ((run.status === "fine_tuned" || run.status === "registered") && !reportShown) {
      $("#report").hidden = false;
      $("#report-frame").src = `/v1/runs/${id}/report?format=html`;
      reportShown = true;
      try {  // the kappa-gap warning, when the training rows scored far above the held-out rows
        const g = (await api("GET", `/ui/runs/${id}/gap`)).gap;
        if (g) { $("#run-gap").innerHTML = `<strong>Warning: kappa gap.</strong> ${esc(g.text)}`; $("#run-gap").hidden = false; }
      } catch (e) { /* best effort: the page shows it when reloaded */ }
    }
    try {
      const events = await api("GET", `/v1/runs/${id}/logs?after=${lastEvent}`);
      for (const e of events) {
        $("#run-log").textContent += `${e.at.slice(11, 19)} [${e.kind}] ${e.message}\n`;
        lastEvent = e.id;
      }
    } catch (e) { /* the log is best effort */ }
    if (active.has(run.status)) setTimeout(tick, 1500);
  };
  tick();
  $("#run-cancel").addEventListener("click", async () => {
    try { await api("POST", `/v1/runs/${id}/cancel`); } catch (e) { showError($("#run-message"), e); }
  });
  const register = async (confirm) => {
    const fb = $("#register-feedback");
    const name = $("#register-name").value.trim();
    const t = $("#register-threshold").value;
    try {
      const m = await api("POST", `/v1/runs/${id}/register`, {name, threshold: t ? Number(t) : null, confirm});
      fb.innerHTML = `<div class="ok">Registered as <a href="/metrics/${esc(m.full_name)}">${esc(m.full_name)}</a></div>`;
      window.location.href = `/metrics/${encodeURIComponent(m.full_name)}`;
    } catch (e) {
      if (e.code !== "needs_confirmation") { showError(fb, e); return; }
      // the report shows the evaluator below a baseline: say so, and register only when asked again
      fb.innerHTML = `<div class="error" id="register-warning"><strong>Warning</strong> ${esc(e.found || e.message)}.
        ${esc(e.fix || "")}</div><button type="button" id="register-anyway" class="secondary">Register anyway</button>`;
      $("#register-anyway").addEventListener("click", () => register(true));
    }
  };
  $("#register-button").addEventListener("click", () => register(false));
}

/* ---------------------------------------------------------------- metric page: try it */
function initMetric() {
  const box = $("#try-it");
  $("#try-score").addEventListener("click", async () => {
    const row = {};
    $$(".try-field", box).forEach((t) => { if (t.value.trim()) row[t.dataset.field] = t.value; });
    const out = $("#try-result");
    try {
      const res = await api("POST", `/v1/metrics/${encodeURIComponent(box.dataset.metric)}/score`, {rows: [row]});
      const r = res.results[0];
      const bars = Object.entries(r.probabilities).map(([k, p]) =>
        `<div class="bar"><span style="width:7rem">${esc(k)}</span><span class="fill" style="width:${Math.round(p * 300)}px"></span><span>${fmt(p)}</span></div>`).join("");
      out.innerHTML = `<p class="verdict">Label: <span id="try-label">${esc(r.label)}</span></p>
        <p>score ${fmt(r.score)} · confidence <span id="try-confidence">${fmt(r.confidence)}</span> · ${r.tokens ?? "?"} tokens${r.truncated ? " (truncated)" : ""}</p>
        ${bars}<p class="muted">scored by ${esc(res.metric)}; batch of ${res.batch.requests} request(s), ${res.batch.rows} row(s)</p>`;
    } catch (e) { showError(out, e); }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "new-run") initNewRun();
  else if (page === "run") initRun();
  else if (page === "metric") initMetric();
});

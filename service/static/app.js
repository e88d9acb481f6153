// The mmd-serve page: submit a job, follow GET /jobs/{id}/events, play the signed result link.
// Plain browser JavaScript, no build step. The API key (when the service needs one) stays in
// this tab (sessionStorage) and travels only in the Authorization header: EventSource cannot
// send headers, so the event stream is read with fetch() and parsed here.
"use strict";

const $ = (id) => document.getElementById(id);
const RECENT_KEY = "mmd.recent";
const KEY_KEY = "mmd.apiKey";
const RECENT_MAX = 20;
let config = { auth: "open", max_upload_bytes: 0 };
let chosenFile = null;
let watching = null; // AbortController of the event stream being read

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = $("api-key").value.trim();
  if (config.auth === "api_key" && key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function errorMessage(resp) {
  let body = null;
  try { body = await resp.json(); } catch (e) { /* not JSON */ }
  if (body && body.error && body.error.message) return body.error.message;
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => (d.loc || []).join(".") + ": " + d.msg).join("\n");
  }
  return "HTTP " + resp.status + " " + resp.statusText;
}

function mode() { return document.querySelector("input[name=mode]:checked").value; }

function params() {
  const p = {};
  const int = (id) => { const v = $(id).value.trim(); return v === "" ? null : parseInt(v, 10); };
  if (int("seed") !== null) p.seed = int("seed");
  if ($("preset").value) p.preset = $("preset").value;
  if (int("steps") !== null) p.sampler = { steps: int("steps") };
  p.super_resolution = { enabled: $("sr-enabled").checked };
  if (int("sr-steps") !== null) p.super_resolution.steps = int("sr-steps");
  if ($("prompt").value.trim()) p.prompt = $("prompt").value.trim();
  return p;
}

function showFileSection() {
  const m = mode();
  $("file-section").hidden = m === "joint";
  $("file-input").accept = m === "video-to-audio" ? "video/*" : "audio/*,video/*";
  $("drop-text").textContent = (m === "video-to-audio" ? "Drop a video" : "Drop an audio file")
    + " here, or";
}

function setFile(file) {
  chosenFile = file || null;
  $("drop-text").textContent = file ? "Chosen: " + file.name : "Drop a file here, or";
}

async function submit(ev) {
  ev.preventDefault();
  const m = mode();
  if (config.auth === "api_key" && !$("api-key").value.trim()) {
    showError("This service needs an API key: enter it above.");
    return;
  }
  let resp;
  $("generate").disabled = true;
  try {
    if (m === "joint") {
      resp = await fetch("/generate", {
        method: "POST", headers: headers({ "Content-Type": "application/json" }),
        body: JSON.stringify(Object.assign({ mode: "joint" }, params())),
      });
    } else {
      if (!chosenFile) { showError("Choose or drop a file first."); return; }
      if (config.max_upload_bytes && chosenFile.size > config.max_upload_bytes) {
        showError("The file is larger than the service accepts ("
          + config.max_upload_bytes + " bytes).");
        return;
      }
      const form = new FormData();
      form.append("file", chosenFile, chosenFile.name);
      form.append("params", JSON.stringify(params()));
      resp = await fetch("/" + m, { method: "POST", headers: headers(), body: form });
    }
    if (!resp.ok) { showError(await errorMessage(resp)); return; }
    const job = await resp.json();
    remember(job.id, m);
    watch(job.id);
  } catch (e) {
    showError("Could not reach the service: " + e);
  } finally {
    $("generate").disabled = false;
  }
}

function resetJobView(id) {
  $("job").hidden = false;
  $("job-id").textContent = id;
  $("job-status").textContent = "connecting";
  $("progress").value = 0;
  $("job-error").hidden = true;
  $("result").hidden = true;
  $("result-video").removeAttribute("src");
}

function showError(message) {
  $("job").hidden = false;
  $("job-error").textContent = message;
  $("job-error").hidden = false;
}

function showProgress(e) {
  let text = e.status;
  if (e.status === "queued" && e.queue_position !== null && e.queue_position !== undefined) {
    text += " (position " + (e.queue_position + 1) + ")";
  } else if (e.stage) {
    text += ": " + e.stage + (e.total ? " " + e.step + "/" + e.total : "");
  }
  $("job-status").textContent = text;
  $("progress").value = e.fraction || 0;
}

function showDone(job) {
  $("job-status").textContent = job.status;
  markRecent(job.id, job.status);
  if (job.status === "succeeded" && job.result) {
    $("progress").value = 1;
    const url = job.result.signed_url || job.result.url;
    $("result-video").src = url;
    $("download").href = url;
    $("download").setAttribute("download", job.id + ".mp4");
    $("result").hidden = false;
  } else if (job.error) {
    showError(job.error.code + ": " + job.error.message);
  }
}

// Reads GET /jobs/{id}/events until the done event; reconnects with Last-Event-ID.
async function watch(id) {
  if (watching) watching.abort();
  const ctl = new AbortController();
  watching = ctl;
  resetJobView(id);
  let lastId = null;
  for (let attempt = 0; attempt < 30 && !ctl.signal.aborted; attempt++) {
    try {
      const h = headers({ Accept: "text/event-stream" });
      if (lastId) h["Last-Event-ID"] = lastId;
      const resp = await fetch("/jobs/" + encodeURIComponent(id) + "/events",
                               { headers: h, signal: ctl.signal });
      if (!resp.ok) { showError(await errorMessage(resp)); return; }
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const ev = { event: "message", data: [], id: null };
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) continue; // keep-alive comment
            const i = line.indexOf(":");
            const field = i < 0 ? line : line.slice(0, i);
            const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
            if (field === "data") ev.data.push(val);
            else if (field === "event") ev.event = val;
            else if (field === "id") ev.id = val;
          }
          if (ev.id) lastId = ev.id;
          if (!ev.data.length) continue;
          const data = JSON.parse(ev.data.join("\n"));
          if (ev.event === "progress") showProgress(data);
          else if (ev.event === "done") { showDone(data); return; }
          else if (ev.event === "error") { showError(data.message); return; }
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    await new Promise((r) => setTimeout(r, 1000)); // dropped: resume after the last id
  }
}

function recent() {
  try { return JSON.parse(localStorage.getItem(RECENT_KEY) || "[]"); } catch (e) { return []; }
}

function saveRecent(list) {
  localStorage.setItem(RECENT_KEY, JSON.stringify(list.slice(0, RECENT_MAX)));
  renderRecent();
}

function remember(id, m) {
  saveRecent([{ id: id, mode: m, at: new Date().toISOString(), status: "queued" }]
    .concat(recent().filter((j) => j.id !== id)));
}

function markRecent(id, status) {
  saveRecent(recent().map((j) => (j.id === id ? Object.assign({}, j, { status: status }) : j)));
}

function renderRecent() {
  const ul = $("recent");
  ul.textContent = "";
  for (const j of recent()) {
    const li = document.createElement("li");
    const btn = document.createElement("button");
    btn.type = "button";
    btn.textContent = "show";
    btn.addEventListener("click", () => watch(j.id));
    li.append(new Date(j.at).toLocaleString() + " · " + j.mode + " · " + (j.status || "?")
      + " · ", Object.assign(document.createElement("code"), { textContent: j.id }), " ", btn);
    ul.append(li);
  }
  $("recent-section").hidden = recent().length === 0;
}

async function init() {
  try {
    const resp = await fetch("/ui/config");
    if (resp.ok) config = await resp.json();
  } catch (e) { /* keep the defaults */ }
  $("key-section").hidden = config.auth !== "api_key";
  $("api-key").value = sessionStorage.getItem(KEY_KEY) || "";
  $("api-key").addEventListener("input", () => sessionStorage.setItem(KEY_KEY, $("api-key").value));
  for (const r of document.querySelectorAll("input[name=mode]")) {
    r.addEventListener("change", showFileSection);
  }
  $("file-input").addEventListener("change", () => setFile($("file-input").files[0]));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) setFile(e.dataTransfer.files[0]);
  });
  $("job-form").addEventListener("submit", submit);
  showFileSection();
  renderRecent();
}

init();

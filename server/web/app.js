// The PriMaPs Serve web page: sends an image to the HTTP API and draws the
// answer; the status tab reads /metrics and /v1/model. No libraries, no
// network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
let chosenFile = null;

// --- Tabs -----------------------------------------------------------------

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll(".tab")) {
      other.classList.toggle("active", other === tab);
      $(other.dataset.panel).hidden = other !== tab;
    }
  });
}

// --- Choosing an image ----------------------------------------------------

function choose(file) {
  if (!file) return;
  chosenFile = file;
  $("drop-text").textContent = `${file.name} (${Math.round(file.size / 1024)} KiB)`;
  $("run").disabled = false;
}

$("file").addEventListener("change", () => choose($("file").files[0]));
const zone = $("drop-zone");
zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", (e) => {
  e.preventDefault();
  zone.classList.remove("over");
  choose(e.dataTransfer.files[0]);
});
$("threshold").addEventListener("input", () => {
  $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
});

// --- Colours --------------------------------------------------------------

// A distinct colour per label: hues a golden angle apart.
function colour(label) {
  const hue = (label * 137.508) % 360;
  const s = 0.75, l = label === 0 ? 0.35 : 0.55;
  const k = (n) => (n + hue / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  return [Math.round(255 * f(0)), Math.round(255 * f(8)), Math.round(255 * f(4))];
}

// --- Running a request ----------------------------------------------------

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

async function decodePng(base64) {
  const img = new Image();
  img.src = "data:image/png;base64," + base64;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(img, 0, 0);
  const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const labels = new Uint8Array(canvas.width * canvas.height);
  for (let i = 0; i < labels.length; i++) labels[i] = rgba[4 * i];
  return { width: canvas.width, height: canvas.height, labels };
}

function drawImage(bitmap, width, height) {
  const canvas = $("image");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0, width, height);
  return ctx.getImageData(0, 0, width, height);
}

function drawOverlay(pixels, map) {
  const canvas = $("overlay");
  canvas.width = map.width;
  canvas.height = map.height;
  const ctx = canvas.getContext("2d");
  const out = ctx.createImageData(map.width, map.height);
  const alpha = 0.55;
  const palette = new Map();
  for (let i = 0; i < map.labels.length; i++) {
    const label = map.labels[i];
    let r = pixels.data[4 * i], g = pixels.data[4 * i + 1], b = pixels.data[4 * i + 2];
    if (label !== 255) {
      if (!palette.has(label)) palette.set(label, colour(label));
      const c = palette.get(label);
      r = (1 - alpha) * r + alpha * c[0];
      g = (1 - alpha) * g + alpha * c[1];
      b = (1 - alpha) * b + alpha * c[2];
    }
    out.data[4 * i] = r;
    out.data[4 * i + 1] = g;
    out.data[4 * i + 2] = b;
    out.data[4 * i + 3] = 255;
  }
  ctx.putImageData(out, 0, 0);
}

function listMasks(map, method) {
  const counts = new Map();
  for (const label of map.labels) counts.set(label, (counts.get(label) || 0) + 1);
  const list = $("mask-list");
  list.replaceChildren();
  const total = map.labels.length;
  const name = (label) => {
    if (label === 255) return "ignore";
    if (method === "propose") return label === 0 ? "background" : `mask ${label}`;
    return method === "segment" ? `class ${label}` : `label ${label}`;
  };
  for (const [label, count] of [...counts.entries()].sort((a, b) => b[1] - a[1])) {
    const item = document.createElement("li");
    item.dataset.label = label;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = label === 255 ? "transparent" : `rgb(${colour(label).join(",")})`;
    const text = document.createElement("span");
    text.textContent = name(label);
    const area = document.createElement("span");
    area.className = "area";
    area.textContent = `${count.toLocaleString()} px (${(100 * count / total).toFixed(1)}%)`;
    item.append(swatch, text, area);
    list.append(item);
  }
}

async function run(event) {
  event.preventDefault();
  if (!chosenFile) return;
  const method = $("method").value;
  const params = new URLSearchParams({
    threshold: $("threshold").value,
    crf: $("crf").checked ? "true" : "false",
    // Label maps at the image's own size, so the overlay covers all of it.
    output_size: "original",
  });
  if (Number($("resize").value) > 0) params.set("resize", $("resize").value);
  showError("");
  $("busy").hidden = false;
  $("run").disabled = true;
  $("overlay").removeAttribute("data-ready");
  const started = performance.now();
  try {
    const response = await fetch(`/v1/${method}?${params}`, {
      method: "POST",
      headers: { "Content-Type": chosenFile.type || "application/octet-stream" },
      body: chosenFile,
    });
    const roundTrip = performance.now() - started;
    const body = await response.json();
    if (!response.ok) {
      const e = body.error || {};
      showError(`HTTP ${response.status} ${e.code || ""}: ${e.message || JSON.stringify(body)}`);
      return;
    }
    const labelMap = method === "propose" ? body.masks : body.labels;
    const map = await decodePng(labelMap.png);
    const bitmap = await createImageBitmap(chosenFile);
    const pixels = drawImage(bitmap, map.width, map.height);
    drawOverlay(pixels, map);
    listMasks(map, method);
    const serverMs = Number(response.headers.get("X-PriMaPs-Time-Ms"));
    const model = body.model;
    $("summary").textContent =
      `${map.width}×${map.height}, ${body.mask_count ?? "–"} masks; ` +
      `head version ${model.head_version} (${model.backbone}, ${model.precision}); ` +
      `${serverMs.toFixed(0)} ms in the server, ${roundTrip.toFixed(0)} ms in all`;
    $("overlay").dataset.ready = "true";
  } catch (e) {
    showError(`The request failed: ${e}`);
  } finally {
    $("busy").hidden = true;
    $("run").disabled = false;
  }
}

$("request-form").addEventListener("submit", run);

// --- Status tab -----------------------------------------------------------

// Prometheus text format: {name: [{labels, value}]}.
function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const pair of (m[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    (out[m[1]] ||= []).push({ labels, value: Number(m[4]) });
  }
  return out;
}

const sum = (series) => (series || []).reduce((a, s) => a + s.value, 0);
let previous = null;

async function refreshStatus() {
  try {
    const [metricsText, model, ready] = await Promise.all([
      fetch("/metrics").then((r) => r.text()),
      fetch("/v1/model").then((r) => r.json()),
      fetch("/readyz").then((r) => r.ok),
    ]);
    const m = parseMetrics(metricsText);
    const info = (m.primaps_backbone_info || [{ labels: {} }])[0].labels;
    const served = sum(m.primaps_requests_total);
    const now = performance.now();
    let throughput = "…";
    if (previous) {
      const rate = (served - previous.served) / ((now - previous.time) / 1000);
      throughput = `${rate.toFixed(2)} requests/s`;
    }
    previous = { served, time: now };
    $("st-ready").textContent = ready ? "yes" : "no";
    $("st-backbone").textContent = model.backbone;
    $("st-precision").textContent = model.precision || info.precision || "";
    $("st-version").textContent = model.head_version;
    $("st-source").textContent = model.source || "(no head)";
    $("st-classes").textContent = model.classes;
    $("st-queue").textContent = sum(m.primaps_queue_depth);
    $("st-active").textContent = sum(m.primaps_active_calls);
    $("st-requests").textContent = served;
    $("st-throughput").textContent = throughput;
    $("st-memory").textContent = `${(sum(m.primaps_process_resident_memory_bytes) / 2 ** 20).toFixed(0)} MiB`;
    $("model-line").textContent =
      `${model.backbone} · head version ${model.head_version}` + (ready ? "" : " · not ready");
  } catch (e) {
    $("model-line").textContent = `server unreachable (${e})`;
  }
}

refreshStatus();
setInterval(refreshStatus, 2000);

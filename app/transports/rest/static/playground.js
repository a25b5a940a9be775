// Dendrite playground: plain browser JavaScript talking to this server's own routes
// (POST predict/<task>, GET status). Paths are relative so the page works behind a path prefix.
"use strict";

const STATUS_POLL_MS = 3000;

// ---------------------------------------------------------------- helpers
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function percent(p) {
  return (100 * p).toFixed(p >= 0.1 ? 1 : 2) + "%";
}

function bar(label, probability) {
  return el("div", { class: "bar-row" },
    el("span", { class: "bar-label", title: label }, label),
    el("span", { class: "bar" }, el("span", { class: "bar-fill", style: `width:${(100 * probability).toFixed(1)}%` })),
    el("span", { class: "bar-value" }, percent(probability)));
}

// Calls a route; resolves with the JSON body, or throws an Error carrying the API's own message
// ({"error": "..."}), or the HTTP status when the body is not JSON.
// The API key field (DENDRITE_API_KEYS): kept in sessionStorage, sent as X-API-Key.
const apiKeyInput = document.getElementById("api-key");
apiKeyInput.value = sessionStorage.getItem("dendrite-api-key") || "";
apiKeyInput.addEventListener("change", () => {
  sessionStorage.setItem("dendrite-api-key", apiKeyInput.value.trim());
  refreshStatus();
});

async function api(path, options = {}) {
  const key = apiKeyInput.value.trim();
  const headers = { ...(options.headers || {}), ...(key ? { "X-API-Key": key } : {}) };
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (err) {
    throw new Error(`cannot reach the server: ${err.message}`);
  }
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const message = body && typeof body.error === "string" ? body.error : `${response.status} ${response.statusText}: ${text.slice(0, 200)}`;
    throw new Error(message);
  }
  return body;
}

function postJSON(path, payload) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
}

function lines(textarea) {
  return textarea.value.split("\n").map((s) => s.trim()).filter((s) => s.length > 0);
}

function selectedModel(section) {
  const value = section.querySelector(".model-select").value;
  return value ? { model: value } : {};
}

// Empties a task's result area (results and note), so an error never sits above an older answer.
function clearResults(section) {
  for (const node of section.querySelectorAll(".results, .note")) {
    node.replaceChildren();
    if (node.classList.contains("note")) node.hidden = true;
  }
}

// A number field's value as the API should see it: empty -> undefined (the model's default). The
// forms skip the browser's own range check (it refused k > 100 without a visible message), so an
// out-of-range number reaches the API, whose error names the field and its range.
function numberOrDefault(input) {
  return input.value.trim() === "" ? undefined : Number(input.value);
}

// Wires a task form: shows a busy state, clears the old error, and on failure shows the API's
// message in place of the previous result.
function onSubmit(sectionId, run) {
  const section = document.getElementById(sectionId);
  const form = section.querySelector("form");
  const error = section.querySelector(".error");
  const button = form.querySelector("button");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    error.textContent = "";
    button.disabled = true;
    section.classList.add("busy");
    try {
      await run(section);
    } catch (err) {
      clearResults(section);
      error.textContent = err.message;
      error.hidden = false;
    } finally {
      button.disabled = false;
      section.classList.remove("busy");
      refreshStatus();
    }
  });
}

function modelLine(body) {
  return el("p", { class: "model-line" }, `${body.model} v${body.version}`);
}

// ---------------------------------------------------------------- tasks
onSubmit("image", async (section) => {
  const files = Array.from(document.getElementById("image-files").files);
  if (files.length === 0) throw new Error("choose one or more photos first");
  const form = new FormData();
  for (const file of files) form.append("images", file, file.name);
  const topK = numberOrDefault(document.getElementById("image-top-k"));
  if (topK !== undefined) form.append("top_k", String(topK));
  const model = selectedModel(section).model;
  if (model) form.append("model", model);
  const body = await api("predict/image", { method: "POST", body: form });
  const results = document.getElementById("image-results");
  results.replaceChildren(modelLine(body));
  body.predictions.forEach((prediction, i) => {
    const card = el("div", { class: "image-card" },
      el("img", { src: URL.createObjectURL(files[i]), alt: files[i].name }),
      el("div", { class: "labels" }, el("p", { class: "file-name" }, files[i].name),
        ...prediction.labels.map((p) => bar(p.label, p.probability))));
    results.append(card);
  });
});

onSubmit("sentiment", async (section) => {
  const texts = lines(document.getElementById("sentiment-texts"));
  const body = await postJSON("predict/sentiment", { texts, ...selectedModel(section) });
  const results = document.getElementById("sentiment-results");
  results.replaceChildren(modelLine(body));
  body.predictions.forEach((prediction, i) => {
    const probabilities = Object.entries(prediction.probabilities).sort((a, b) => b[1] - a[1]);
    results.append(el("div", { class: "sentiment-card" },
      el("p", {}, el("span", { class: `sentiment-label ${prediction.label}` }, prediction.label), " ",
        el("q", {}, texts[i]), prediction.truncated ? el("em", {}, " (truncated)") : ""),
      ...probabilities.map(([label, p]) => bar(label, p))));
  });
});

onSubmit("translation", async (section) => {
  const texts = lines(document.getElementById("translation-texts"));
  const beam = Number(document.getElementById("translation-beam").value);
  const body = await postJSON("predict/translation", { texts, beam_size: beam, ...selectedModel(section) });
  const list = el("ol", {}, ...body.translations.map((translation, i) =>
    el("li", {}, el("span", { class: "source", lang: "de" }, texts[i]), " → ",
      el("span", { class: "target", lang: "en" }, translation.text))));
  document.getElementById("translation-results").replaceChildren(modelLine(body), list);
});

onSubmit("recommendation", async (section) => {
  const userId = document.getElementById("recommendation-user").value.trim();
  const k = numberOrDefault(document.getElementById("recommendation-k"));
  const body = await postJSON("predict/recommendation", { user_id: userId, k, ...selectedModel(section) });
  const note = document.getElementById("recommendation-note");
  note.textContent = body.cold_start
    ? `user ${body.user_id} is not in the training data: the most popular movies (${body.model} v${body.version})`
    : `for user ${body.user_id} (${body.model} v${body.version})`;
  note.hidden = false;
  const results = document.getElementById("recommendation-results");
  results.replaceChildren(...body.items.map((item) =>
    el("li", {}, el("span", { class: "title" }, item.title), " ",
      el("span", { class: "score", title: "model score" }, item.score.toFixed(3)))));
});

// ---------------------------------------------------------------- status panel
function formatRate(rps) {
  return rps === 0 ? "0" : rps < 0.1 ? rps.toFixed(3) : rps.toFixed(1);
}

function formatSeconds(s) {
  if (s === null || s === undefined) return "–";
  return s < 1 ? `${(1000 * s).toFixed(s < 0.01 ? 1 : 0)} ms` : `${s.toFixed(2)} s`;
}

// READY -> ready, LOADING -> loading, PENDING -> pending (a trainer is producing its version; the
// reason says how far it is); UNAVAILABLE is "failed" (with its reason) unless the model simply is
// not loaded (explicit model control).
function stateName(m) {
  if (m.state === "UNAVAILABLE") return m.reason === "not loaded" ? "not loaded" : "failed";
  return m.state.toLowerCase();
}

function fillModelSelects(models) {
  for (const select of document.querySelectorAll(".model-select")) {
    const names = [...new Set(models.filter((m) => m.task === select.dataset.task).map((m) => m.name))];
    const have = [...select.options].map((o) => o.value).filter((v) => v);
    if (names.join() === have.join()) continue;
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "" }, "default"), ...names.map((n) => el("option", { value: n }, n)));
    select.value = names.includes(chosen) ? chosen : "";
  }
}

async function refreshStatus() {
  const section = document.getElementById("status");
  const error = section.querySelector(".error");
  let body;
  try {
    body = await api("status");
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
    return;
  }
  error.hidden = true;
  document.getElementById("status-window").textContent = `rates over the last ${Math.round(body.window_seconds)} s`;
  const rows = body.models.map((m) => {
    const state = stateName(m);
    const stateCell = el("td", {}, el("span", { class: `state ${state}` }, state));
    if (m.reason) stateCell.append(el("div", { class: `reason ${state}` }, m.reason));
    return el("tr", { "data-model": m.name, "data-state": m.state },
      el("td", {}, m.name), el("td", {}, m.version ?? "–"), el("td", {}, m.task ?? "–"), stateCell,
      el("td", {}, (m.providers || []).join(", ") || "–"),
      el("td", { class: "num" }, formatRate(m.requests_per_second)),
      el("td", { class: "num" }, formatSeconds(m.p99_seconds)),
      el("td", { class: "num" }, m.client_error_ratio === null ? "–" : percent(m.client_error_ratio)),
      el("td", { class: "num" }, m.server_error_ratio === null ? "–" : percent(m.server_error_ratio)));
  });
  section.querySelector("tbody").replaceChildren(...rows);
  fillModelSelects(body.models);
}

refreshStatus();
setInterval(refreshStatus, STATUS_POLL_MS);

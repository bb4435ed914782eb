// The page's only script: sends the form as an OpenAI completions request with stream: true
// and logprobs: 5, reads the server-sent events as they arrive, and appends each piece of
// text as a span whose tooltip lists the token's probability and the alternatives.
"use strict";

const $ = (id) => document.getElementById(id);
let modelId = null;
let controller = null;

function authHeaders() {
  const key = $("api_key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

async function loadModel() {
  try {
    const res = await fetch("/v1/models", { headers: authHeaders() });
    if (!res.ok) return;
    const j = await res.json();
    modelId = j.data[0].id;
    $("model").textContent = modelId;
  } catch (e) { /* the request will report it */ }
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

const pct = (lp) => (Math.exp(lp) * 100).toFixed(lp > Math.log(0.001) ? 1 : 3) + "%";
const show = (s) => JSON.stringify(s).slice(1, -1);  // visible spaces and newlines

// Tokens whose text is not out yet (held back while a character or stop sequence completes).
let pending = [];

function tipFor(tokens) {
  return tokens.map((t) => {
    let s = `"${show(t.token)}"  ${pct(t.logprob)}`;
    for (const [alt, lp] of Object.entries(t.top || {}).sort((a, b) => b[1] - a[1])) s += `\n   ${alt === t.token ? "*" : " "} "${show(alt)}"  ${pct(lp)}`;
    return s;
  }).join("\n");
}

function append(choice) {
  const lp = choice.logprobs;
  if (lp) lp.tokens.forEach((tok, i) => pending.push({ token: tok, logprob: lp.token_logprobs[i], top: lp.top_logprobs ? lp.top_logprobs[i] : null }));
  if (!choice.text) return;
  const span = document.createElement("span");
  span.className = "tok";
  span.textContent = choice.text;
  if (pending.length) span.dataset.tip = tipFor(pending);
  pending = [];
  $("output").appendChild(span);
}

function handleEvent(data) {
  const out = $("output");
  if (data === "[DONE]") return true;
  const j = JSON.parse(data);
  if (j.error) throw new Error(j.error.message);
  out.dataset.chunks = String(Number(out.dataset.chunks) + 1);
  for (const c of j.choices) {
    append(c);
    if (c.finish_reason) setStatus(`done (${c.finish_reason})`);
  }
  return false;
}

async function generate(ev) {
  ev.preventDefault();
  const out = $("output");
  const prompt = $("prompt").value.replace(/\r\n?/g, "\n");
  out.textContent = "";
  out.dataset.chunks = "0";
  out.dataset.state = "running";
  pending = [];
  const p = document.createElement("span");
  p.className = "prompt";
  p.textContent = prompt;
  out.appendChild(p);
  if (!modelId) await loadModel();
  const body = {
    model: modelId, prompt, stream: true, logprobs: 5,
    max_tokens: Number($("max_tokens").value) || 64,
    temperature: Number($("temperature").value),
    top_p: Number($("top_p").value),
  };
  const stop = $("stop").value.replace(/\\n/g, "\n");
  if (stop) body.stop = [stop];
  if ($("seed").value !== "") body.seed = Number($("seed").value);

  $("generate").disabled = true;
  $("stop_button").disabled = false;
  setStatus("generating…");
  controller = new AbortController();
  const t0 = performance.now();
  try {
    const res = await fetch("/v1/completions", {
      method: "POST", signal: controller.signal,
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify(body),
    });
    if (!res.ok) {
      const j = await res.json().catch(() => null);
      throw new Error(j && j.error ? j.error.message : `HTTP ${res.status}`);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "", done = false;
    while (!done) {
      const { value, done: end } = await reader.read();
      if (end) break;
      buf += decoder.decode(value, { stream: true });
      let i;
      while (!done && (i = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, i);
        buf = buf.slice(i + 2);
        for (const line of event.split("\n"))
          if (line.startsWith("data: ")) done = handleEvent(line.slice(6)) || done;
      }
    }
    const secs = (performance.now() - t0) / 1000;
    setStatus(`${$("status").textContent || "done"} in ${secs.toFixed(2)} s`);
    out.dataset.state = "done";
  } catch (e) {
    const err = document.createElement("div");
    err.className = "error";
    err.textContent = e.name === "AbortError" ? "stopped" : "Error: " + e.message;
    out.appendChild(err);
    setStatus(e.name === "AbortError" ? "stopped" : "error", e.name !== "AbortError");
    out.dataset.state = e.name === "AbortError" ? "stopped" : "error";
  } finally {
    $("generate").disabled = false;
    $("stop_button").disabled = true;
    controller = null;
  }
}

$("form").addEventListener("submit", generate);
$("stop_button").addEventListener("click", () => controller && controller.abort());
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("form").requestSubmit();
});
loadModel();

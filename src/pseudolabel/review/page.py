"""The review page: plain HTML, CSS and JavaScript, served from these strings (no build step,
no CDN, nothing fetched from outside 127.0.0.1)."""

INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pseudolabel review</title>
<link rel="stylesheet" href="/static/review.css">
</head>
<body>
<header>
  <h1>pseudolabel review</h1>
  <label>Queue
    <select id="queue">
      <option value="suspects">Suspects (cleaning)</option>
      <option value="audit">Pseudo-label audit</option>
      <option value="active">Active learning</option>
      <option value="all">All items</option>
    </select>
  </label>
  <label>Class <select id="cls"><option value="">all</option></select></label>
  <span id="progress" aria-live="polite"></span>
  <span id="reviewer">reviewer <b id="who">&mdash;</b> <button id="change-who" type="button">change</button></span>
  <span id="status" role="status" aria-live="polite"></span>
</header>
<p id="help">
  <kbd>0</kbd>&ndash;<kbd>9</kbd> set label &middot; <kbd>a</kbd> accept suggestion &middot;
  <kbd>k</kbd> keep label &middot; <kbd>&larr;</kbd><kbd>&uarr;</kbd><kbd>&rarr;</kbd><kbd>&darr;</kbd> move &middot;
  <kbd>u</kbd> undo &middot; click an image to select it
</p>
<div id="banner" hidden></div>
<form id="who-form" hidden>
  <label for="who-input">Your name, kept with every decision you record here</label>
  <input id="who-input" name="who" maxlength="40" autocomplete="nickname" placeholder="e.g. ana">
  <button type="submit">Start reviewing</button>
  <span id="who-error" role="alert"></span>
</form>
<div id="layout">
  <main id="grid" aria-label="items"></main>
  <aside id="side">
    <section id="detail" aria-label="history of the selected item"></section>
    <section id="reviewers" aria-label="reviewers"></section>
  </aside>
</div>
<p id="footer"><button id="more" hidden>Show more</button></p>
<script src="/static/review.js"></script>
</body>
</html>
"""

REVIEW_CSS = """
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d232a; background: #f4f5f7; }
header { display: flex; flex-wrap: wrap; gap: 1.2em; align-items: center; padding: .6em 1em;
         background: #1d2b3a; color: #fff; position: sticky; top: 0; z-index: 2; }
header h1 { font-size: 1.1em; margin: 0 1em 0 0; }
header select { font: inherit; padding: .15em .3em; }
#progress { font-weight: 600; }
#status { margin-left: auto; min-height: 1.4em; }
#status.error { color: #ffb4a9; font-weight: 600; }
#help { margin: .5em 1em; color: #46515c; }
kbd { border: 1px solid #9aa5b1; border-radius: 3px; padding: 0 .3em; background: #fff; font: 12px monospace; }
#banner { margin: .5em 1em; padding: .6em 1em; background: #fff3cd; border: 1px solid #e0c36a; border-radius: 4px; }
#layout { display: flex; gap: 1em; padding: 0 1em; align-items: flex-start; }
#grid { flex: 1; display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: .6em; }
#side { width: 330px; position: sticky; top: 3.5em; max-height: 85vh; overflow: auto; }
#detail, #reviewers { background: #fff; border: 1px solid #d5d9de; border-radius: 6px; padding: .6em .8em;
          font-size: 12.5px; margin-bottom: .6em; }
#detail:empty, #reviewers:empty { display: none; }
#detail h2, #reviewers h2 { font-size: 1em; margin: 0 0 .4em; word-break: break-all; }
#detail table, #reviewers table { border-collapse: collapse; width: 100%; }
#detail th, #reviewers th { padding: .15em .3em; font-weight: 600; color: #46515c; text-align: left; }
#detail td, #reviewers td { padding: .15em .25em; border-top: 1px solid #eceef1; vertical-align: top; }
#detail dl { display: grid; grid-template-columns: auto 1fr; gap: .1em .6em; margin: 0 0 .5em; }
#detail dt { color: #5f6b76; } #detail dd { margin: 0; font-weight: 600; }
#reviewers p { margin: .3em 0 0; }
#reviewer button { font: inherit; font-size: .85em; padding: 0 .4em; }
#who-form { margin: .5em 1em; padding: .7em 1em; background: #e8f0fe; border: 1px solid #8ab4f8; border-radius: 4px;
            display: flex; gap: .6em; align-items: center; flex-wrap: wrap; }
#who-form[hidden] { display: none; }
#who-form input { font: inherit; padding: .2em .4em; width: 14em; }
#who-error { color: #b3261e; font-weight: 600; }
#detail tr.gone td { color: #99a1a9; text-decoration: line-through; }
#detail tr.current td { font-weight: 600; }
.card { margin: 0; background: #fff; border: 2px solid #d5d9de; border-radius: 6px; padding: 6px;
        cursor: pointer; text-align: center; position: relative; }
.card img { width: 112px; height: 112px; image-rendering: pixelated; background: #000; display: block;
            margin: 0 auto 4px; object-fit: contain; }
.card .noimg { width: 112px; height: 112px; margin: 0 auto 4px; padding: 6px; font-size: 11px;
              color: #8a1c12; background: #fdecea; overflow: hidden; word-break: break-word; }
.card .key { color: #5f6b76; font-size: 11.5px; word-break: break-all; }
.card .row { display: flex; justify-content: space-between; align-items: baseline; gap: .3em; font-size: 12px;
             text-align: left; }
.card .row .what { color: #5f6b76; min-width: 4.6em; }
.card .row b { font-size: 1.15em; flex: 1; }
.card .idx { color: #8a949e; font-size: 10.5px; font-weight: 400; }
.card .conf { color: #5f6b76; font-variant-numeric: tabular-nums; }
.card .sug { color: #7a4b00; }
.card .mark { font-size: 11px; margin: 2px 0; border-radius: 3px; padding: 0 .3em; }
.card .mark.differs { color: #fff; background: #b3261e; font-weight: 600; }
.card .mark.agrees { color: #2e5b3a; background: #e3f1e6; }
.card.differs { border-style: dashed; border-color: #d9837b; }
.card.differs .sug b { color: #b3261e; }
.card.reviewed { border-color: #7fbf8e; border-style: solid; background: #f1faf3; }
.card.reviewed .key::after { content: " \\2713 reviewed"; color: #2e7d4a; font-weight: 600; }
.card.selected { border-color: #1a73e8; border-style: solid; box-shadow: 0 0 0 3px rgba(26, 115, 232, .35); }
.src { font-size: 11px; padding: 0 .35em; border-radius: 3px; background: #e8eaed; }
.src.human { background: #d3f0da; } .src.pseudo { background: #fde7c8; }
.src.corrected { background: #e6dcf7; } .src.given { background: #dde8f6; }
#footer { text-align: center; }
#more { font: inherit; padding: .4em 1.2em; margin: 1em; }
.empty { grid-column: 1 / -1; padding: 2em; text-align: center; color: #5f6b76; }
"""

REVIEW_JS = r"""
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const state = { items: [], total: 0, reviewed: 0, sel: 0, classes: [], queue: "suspects",
                cls: "", offset: 0, limit: 120, busy: false, who: "" };
const WHO_KEY = "pseudolabel.reviewer";
const $ = (id) => document.getElementById(id);

function setStatus(text, error) {
  const el = $("status");
  el.textContent = text || "";
  el.className = error ? "error" : "";
}
function className(label) {
  if (label === null || label === undefined || label < 0) return "none";
  const name = state.classes[label];
  return name !== undefined && name !== String(label) ? label + " \u00b7 " + name : String(label);
}
// A class as the store names it, in bold, with its key (the index) small beside it when they differ.
function classBold(label) {
  const b = document.createElement("b");
  if (label === null || label === undefined || label < 0) { b.textContent = "none"; return b; }
  const name = state.classes[label];
  b.textContent = name !== undefined ? name : String(label);
  if (name !== undefined && name !== String(label)) {
    const idx = document.createElement("span");
    idx.className = "idx";
    idx.textContent = " [" + label + "]";
    b.append(idx);
  }
  return b;
}
// One confidence format everywhere (card, panel).
function fmtConf(c) { return c === null || c === undefined ? "" : Number(c).toFixed(2); }
function sourceText(item) {
  if (!item.source) return "";
  if (item.source === "pseudo") return item.round === null || item.round === undefined ? "pseudo" : "pseudo round " + item.round;
  if (item.source === "human") return item.who ? "human \u00b7 " + item.who : "human";
  return item.source;
}
function differs(item) { return item.given >= 0 && item.suggestion >= 0 && item.given !== item.suggestion; }
// Reviewer names: what the server accepts (1-40 printable characters, no markup).
function whoProblem(v) {
  if (v.length < 1 || v.length > 40) return "a name is 1 to 40 characters";
  if (/[<>&"'`\\]/.test(v)) return "a name cannot hold < > & \" ' ` or \\";
  if (/[\p{C}\p{Zl}\p{Zp}]/u.test(v)) return "a name holds printable characters only";
  return "";
}
function showWho() { $("who").textContent = state.who || "\u2014"; }
function askWho(message) {
  const form = $("who-form");
  form.hidden = false;
  $("who-input").value = state.who;
  $("who-error").textContent = message || "";
  $("who-input").focus();
}
async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-Review-Token": token } };
  const res = await fetch(path, opts);
  let data = null;
  try { data = await res.json(); } catch (e) { data = { error: res.statusText }; }
  if (!res.ok) throw new Error(data && data.error ? data.error : res.status + " " + res.statusText);
  return data;
}
function progress() {
  $("progress").textContent = state.reviewed + " / " + state.total + " reviewed";
}
function isReviewed(item) {
  return item.human_event !== null && item.human_event > item.baseline;
}
function card(item, i) {
  const fig = document.createElement("figure");
  fig.className = "card";
  fig.dataset.i = i;
  fig.dataset.itemId = item.item_id;
  const img = document.createElement("img");
  img.src = "/image/" + item.item_id;
  img.alt = item.key;
  img.loading = "lazy";
  img.addEventListener("error", async () => {
    // Say why (missing file, no --images) instead of a broken-image icon.
    let why = "image unavailable";
    try { why = (await (await fetch(img.src)).text()) || why; } catch (e) { /* keep the default */ }
    const box = document.createElement("div");
    box.className = "noimg";
    box.textContent = why;
    img.replaceWith(box);
  }, { once: true });
  const cap = document.createElement("figcaption");
  fig.append(img, cap);
  fig.addEventListener("click", () => select(i));
  fill(fig, item);
  return fig;
}
function row(cls, what, label, extra) {
  const div = document.createElement("div");
  div.className = "row " + cls;
  const w = document.createElement("span");
  w.className = "what";
  w.textContent = what;
  div.append(w, classBold(label));
  if (extra) div.append(extra);
  return div;
}
function fill(fig, item) {
  const cap = fig.querySelector("figcaption");
  cap.textContent = "";
  const key = document.createElement("div");
  key.className = "key";
  key.textContent = item.key;
  cap.append(key, row("given", "given", item.given));
  if (item.suggestion >= 0) {
    const conf = document.createElement("span");
    conf.className = "conf";
    conf.textContent = fmtConf(item.confidence);
    cap.append(row("sug", "suggested", item.suggestion, conf));
    if (item.given >= 0) {
      const mark = document.createElement("div");
      mark.className = "mark " + (differs(item) ? "differs" : "agrees");
      mark.textContent = differs(item) ? "\u2260 differs from given" : "= agrees with given";
      cap.append(mark);
    }
  }
  const src = document.createElement("span");
  src.className = "src " + (item.source || "none");
  src.textContent = sourceText(item);
  cap.append(row("lab", "current", item.label, item.source ? src : null));
  fig.classList.toggle("differs", differs(item));
  fig.classList.toggle("reviewed", isReviewed(item));
}
function render(append) {
  const grid = $("grid");
  if (!append) grid.textContent = "";
  const start = append ? grid.querySelectorAll(".card").length : 0;
  state.items.slice(start).forEach((item, j) => grid.append(card(item, start + j)));
  if (!state.items.length) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = state.hint || "This queue is empty.";
    grid.append(p);
  }
  $("more").hidden = state.items.length >= state.total;
  progress();
  select(Math.min(state.sel, Math.max(0, state.items.length - 1)), true);
}
async function load(append) {
  const q = new URLSearchParams({ queue: state.queue, offset: append ? state.items.length : 0,
                                  limit: state.limit });
  if (state.cls !== "") q.set("cls", state.cls);
  setStatus("loading\u2026");
  try {
    const data = await api("/api/queue?" + q);
    state.items = append ? state.items.concat(data.items) : data.items;
    state.total = data.total;
    state.reviewed = data.reviewed;
    state.hint = data.hint;
    if (!append) state.sel = 0;
    render(append);
    setStatus("");
  } catch (e) { setStatus(e.message, true); }
}
function cards() { return document.querySelectorAll("#grid .card"); }
function select(i, quiet) {
  const all = cards();
  if (!all.length) { $("detail").textContent = ""; return; }
  i = Math.max(0, Math.min(i, all.length - 1));
  all.forEach((c) => c.classList.remove("selected"));
  state.sel = i;
  all[i].classList.add("selected");
  if (!quiet) all[i].scrollIntoView({ block: "nearest" });
  showHistory(state.items[i]);
}
let historyTimer = null;
function showHistory(item) {
  clearTimeout(historyTimer);
  historyTimer = setTimeout(async () => {
    try {
      const data = await api("/api/history/" + item.item_id);
      const box = $("detail");
      box.textContent = "";
      const h = document.createElement("h2");
      h.textContent = item.key;
      // The same three facts as the card, from the same fields: given, suggested (one confidence), current.
      const dl = document.createElement("dl");
      const facts = [["given", className(item.given)]];
      if (item.suggestion >= 0) facts.push(["suggested", className(item.suggestion) +
        (item.confidence === null ? "" : " (" + fmtConf(item.confidence) + ")") + (differs(item) ? " \u2260 given" : "")]);
      facts.push(["current", className(item.label) + (item.source ? " \u00b7 " + sourceText(item) : "")]);
      facts.forEach(([k, v]) => {
        const dt = document.createElement("dt"); dt.textContent = k;
        const dd = document.createElement("dd"); dd.textContent = v;
        dl.append(dt, dd);
      });
      const table = document.createElement("table");
      const head = document.createElement("tr");
      ["source", "label", "conf.", "round", "who", "status"].forEach((text) => {
        const th = document.createElement("th"); th.textContent = text; head.append(th); });
      table.append(head);
      data.events.forEach((ev) => {
        const tr = document.createElement("tr");
        tr.className = ev.status === "current" ? "current" : (ev.status === "undone" || ev.status === "discarded" ? "gone" : "");
        // A machine event that applied this suggestion shows the suggestion's confidence, as the card does.
        const applied = item.suggestion_run && ev.run_id === item.suggestion_run && ev.label === item.suggestion &&
                        (ev.source === "corrected" || ev.source === "pseudo") && item.confidence !== null;
        const cells = [ev.source === "undo" ? "undo #" + ev.undoes : ev.source,
                       ev.source === "undo" ? "" : className(ev.label),
                       applied ? fmtConf(item.confidence) : fmtConf(ev.confidence),
                       ev.round === null ? "" : "r" + ev.round, ev.who || "", ev.status];
        cells.forEach((text) => { const td = document.createElement("td"); td.textContent = text; tr.append(td); });
        tr.title = ev.created_at + (ev.run_id ? " run " + ev.run_id : "") + (ev.note ? " \u2014 " + ev.note : "") +
                   (applied && ev.confidence !== null ? " \u2014 suggestion's confidence; the event stored " + fmtConf(ev.confidence) : "");
        table.append(tr);
      });
      box.append(h, dl, data.events.length ? table : document.createTextNode("no label events yet"));
    } catch (e) { /* the history panel is a convenience; the grid keeps working */ }
  }, 120);
}
function columns() {
  const all = cards();
  if (!all.length) return 1;
  const top = all[0].offsetTop;
  let n = 0;
  while (n < all.length && all[n].offsetTop === top) n++;
  return Math.max(1, n);
}
function update(item) {
  state.items.forEach((it, i) => {
    if (it.item_id !== item.item_id) return;
    const was = isReviewed(it);
    Object.assign(it, { label: item.label, source: item.source, human_event: item.human_event,
                        round: item.round, who: item.who, given: item.given });
    state.reviewed += (isReviewed(it) ? 1 : 0) - (was ? 1 : 0);
    fill(cards()[i], it);
  });
  progress();
  showHistory(state.items[state.sel]);
  loadReviewers();
}
let reviewersTimer = null;
function loadReviewers() {
  clearTimeout(reviewersTimer);
  reviewersTimer = setTimeout(async () => {
    let data;
    try { data = await api("/api/reviewers"); } catch (e) { return; }
    const box = $("reviewers");
    box.textContent = "";
    if (!data.reviewers.length) return;
    const h = document.createElement("h2");
    h.textContent = "Reviewers";
    const table = document.createElement("table");
    const head = document.createElement("tr");
    ["who", "decisions", "items were"].forEach((text) => {
      const th = document.createElement("th"); th.textContent = text; head.append(th); });
    table.append(head);
    data.reviewers.forEach((r) => {
      const tr = document.createElement("tr");
      tr.className = "reviewer" + (r.who === state.who ? " me" : "");
      const parts = Object.entries(r.by_source).map(([k, v]) => k + " " + v).join(", ");
      [r.who || "(unnamed)", String(r.decisions), parts].forEach((text) => {
        const td = document.createElement("td"); td.textContent = text; tr.append(td); });
      table.append(tr);
    });
    box.append(h, table);
    data.pairs.forEach((p) => {
      const line = document.createElement("p");
      line.className = "pair";
      line.textContent = (p.a || "(unnamed)") + " & " + (p.b || "(unnamed)") + ": " + p.shared + " shared, " +
                         Math.round(100 * p.agreement) + "% agree (" + p.agree + ")";
      box.append(line);
    });
  }, 200);
}
async function decide(action, label) {
  const item = state.items[state.sel];
  if (!item || state.busy) return;
  if (!token) { setStatus("read-only: open the address with ?token= printed in the terminal", true); return; }
  if (!state.who) { askWho("enter your name first"); return; }
  if (action === "accept") label = item.suggestion;
  if (action === "keep") label = item.label;
  if (label === null || label === undefined || label < 0) {
    setStatus(action === "accept" ? "no suggestion to accept here" : "no label to keep here; press a digit", true);
    return;
  }
  if (state.classes.length && label >= state.classes.length) {
    setStatus("label " + label + " is not a class (0\u2013" + (state.classes.length - 1) + ")", true);
    return;
  }
  state.busy = true;
  try {
    const data = await api("/api/decide", { item_id: item.item_id, label: label, action: action, who: state.who });
    update(data.item);
    setStatus(item.key + ": " + className(label) + " (" + action + ")");
    select(state.sel + 1);
  } catch (e) { setStatus(e.message, true); }
  state.busy = false;
}
async function undo() {
  if (!token) { setStatus("read-only: open the address with ?token= printed in the terminal", true); return; }
  if (!state.who) { askWho("enter your name first"); return; }
  try {
    const data = await api("/api/undo", { who: state.who });
    if (!data.undone) { setStatus("nothing of yours to undo, " + state.who); return; }
    update(data.item);
    const i = state.items.findIndex((it) => it.item_id === data.item.item_id);
    if (i >= 0) select(i);
    setStatus("undid " + className(data.undone.label) + " on " + data.undone.key);
  } catch (e) { setStatus(e.message, true); }
}
document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.target && ["SELECT", "INPUT", "TEXTAREA", "BUTTON"].includes(ev.target.tagName)) return;
  const k = ev.key;
  let handled = true;
  if (/^[0-9]$/.test(k)) decide("set", Number(k));
  else if (k === "a") decide("accept");
  else if (k === "k") decide("keep");
  else if (k === "u") undo();
  else if (k === "ArrowRight") select(state.sel + 1);
  else if (k === "ArrowLeft") select(state.sel - 1);
  else if (k === "ArrowDown") select(state.sel + columns());
  else if (k === "ArrowUp") select(state.sel - columns());
  else handled = false;
  if (handled) ev.preventDefault();
});
function pick(id, key) {
  $(id).addEventListener("change", (ev) => { state[key] = ev.target.value; ev.target.blur(); load(false); });
}
function setupWho() {
  let saved = "";
  try { saved = localStorage.getItem(WHO_KEY) || ""; } catch (e) { /* storage off: ask every time */ }
  state.who = whoProblem(saved) ? "" : saved;
  showWho();
  $("change-who").addEventListener("click", (ev) => { ev.target.blur(); askWho(); });
  $("who-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("who-input").value.trim();
    const problem = whoProblem(v);
    if (problem) { $("who-error").textContent = problem; return; }
    state.who = v;
    try { localStorage.setItem(WHO_KEY, v); } catch (e) { /* kept for this page only */ }
    $("who-form").hidden = true;
    $("who-input").blur();
    showWho();
    setStatus("reviewing as " + v);
    loadReviewers();
  });
  if (token && !state.who) askWho();
}
async function start() {
  setupWho();
  if (!token) {
    const b = $("banner");
    b.hidden = false;
    b.textContent = "Read-only: open the address printed in the terminal (it carries the access token) to record decisions.";
  }
  try {
    const info = await api("/api/summary");
    state.classes = info.classes;
    const cls = $("cls");
    info.classes.forEach((name, i) => {
      const o = document.createElement("option");
      o.value = String(i);
      o.textContent = className(i);
      cls.append(o);
    });
    Object.entries(info.queues).forEach(([name, n]) => {
      const o = $("queue").querySelector('option[value="' + name + '"]');
      if (o && n !== null) o.textContent += " \u2014 " + n;
    });
    const wanted = new URLSearchParams(location.search).get("queue");
    state.queue = wanted || info.default_queue;
    $("queue").value = state.queue;
  } catch (e) { setStatus(e.message, true); }
  pick("queue", "queue");
  pick("cls", "cls");
  $("more").addEventListener("click", (ev) => { ev.target.blur(); load(true); });
  load(false);
  loadReviewers();
}
start();
"""

"""The review page's JavaScript, part 1: state, the grid of cards, selection, decisions, keys.
Part 2 (:mod:`pseudolabel.review.tools`): the class picker, bulk decisions, filters, the queue
panel and the zoomed view. Served as one file; the page writes data with textContent only."""

CORE_JS = r"""
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const state = { items: [], total: 0, reviewed: 0, sel: 0, classes: [], queue: "suspects",
                cls: "", offset: 0, limit: 120, busy: false, who: "",
                // filters and order (server side), ticked cards (item ids), what an item is
                source: "", decided: "", sort: "queue", diverse: false,
                ticked: new Set(), anchor: null, content: "image", maxBulk: 500 };
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
  const check = document.createElement("input");
  check.type = "checkbox";
  check.className = "check";
  check.title = "tick (space); shift-click a card ticks a range";
  check.checked = state.ticked.has(item.item_id);
  check.addEventListener("click", (ev) => { ev.stopPropagation(); toggleTick(i, ev.shiftKey); check.blur(); });
  const zoomit = document.createElement("button");
  zoomit.type = "button";
  zoomit.className = "zoomit";
  zoomit.title = "zoom (z)";
  zoomit.textContent = "\u2922";
  zoomit.addEventListener("click", (ev) => { ev.stopPropagation(); select(i, true); zoom(); });
  fig.classList.toggle("ticked", state.ticked.has(item.item_id));
  const cap = document.createElement("figcaption");
  if (state.content === "row") {
    const box = document.createElement("div");
    box.className = "rowview";
    box.textContent = "\u2026";
    rowContent(item.item_id).then((data) => renderRow(box, data)).catch((e) => { box.textContent = e.message; });
    fig.append(check, zoomit, box, cap);
  } else {
    fig.append(check, zoomit, imageOf(item), cap);
  }
  fig.addEventListener("click", (ev) => {
    if (ev.shiftKey || ev.ctrlKey || ev.metaKey) toggleTick(i, ev.shiftKey);
    select(i);
  });
  fig.addEventListener("dblclick", () => zoom());
  fill(fig, item);
  return fig;
}
function imageOf(item, large) {
  const img = document.createElement("img");
  img.src = "/image/" + item.item_id + (large ? "?size=large" : "");
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
  return img;
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
  const cur = row("lab", "current", item.label, item.source ? src : null);
  if (item.source === "human" && item.label < 0) {  // a person's "none of these"
    const b = cur.querySelector("b");
    b.textContent = "none of these";
    b.className = "rejected";
  }
  cap.append(cur);
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
  const q = queueParams();
  q.set("offset", append ? state.items.length : 0);
  q.set("limit", state.limit);
  setStatus("loading\u2026");
  try {
    const data = await api("/api/queue?" + q);
    state.items = append ? state.items.concat(data.items) : data.items;
    state.total = data.total;
    state.reviewed = data.reviewed;
    state.hint = data.hint;
    if (!append) { state.sel = 0; state.ticked.clear(); state.anchor = null; }
    render(append);
    showTicks();
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
  applyState(item);
  afterUpdate();
}
function afterUpdate() {
  progress();
  showHistory(state.items[state.sel]);
  loadReviewers();
  loadQueues();
}
function applyState(item) {
  state.items.forEach((it, i) => {
    if (it.item_id !== item.item_id) return;
    const was = isReviewed(it);
    Object.assign(it, { label: item.label, source: item.source, human_event: item.human_event,
                        round: item.round, who: item.who, given: item.given });
    state.reviewed += (isReviewed(it) ? 1 : 0) - (was ? 1 : 0);
    fill(cards()[i], it);
  });
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
  if (state.ticked.size) return bulkDecide(action, label, Array.from(state.ticked));
  if (action === "accept") label = item.suggestion;
  if (action === "keep") label = item.label;
  if (action === "reject") label = -1;
  else if (label === null || label === undefined || label < 0) {
    setStatus(action === "accept" ? "no suggestion to accept here" : "no label to keep here; press a digit", true);
    return;
  }
  if (state.classes.length && label >= state.classes.length) {
    setStatus("label " + label + " is not a class (0\u2013" + (state.classes.length - 1) + ")", true);
    return;
  }
  state.busy = true;
  try {
    const body = { item_id: item.item_id, action: action, who: state.who };
    if (action !== "reject") body.label = label;
    const data = await api("/api/decide", body);
    update(data.item);
    setStatus(item.key + ": " + (action === "reject" ? "none of these" : className(label)) + " (" + action + ")");
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
  if (zoomKey(k)) { ev.preventDefault(); return; }
  let handled = true;
  if (/^[0-9]$/.test(k)) decide("set", Number(k));
  else if (k === "a") decide("accept");
  else if (k === "k") decide("keep");
  else if (k === "x") decide("reject");
  else if (k === "z") zoom();
  else if (k === "/") $("pick").focus();
  else if (k === " ") toggleTick(state.sel, false);
  else if (k === "Escape") untickAll();
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
    state.content = info.content;
    state.maxBulk = info.max_bulk;
    document.body.classList.toggle("rows", info.content === "row");
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
    showQueues(info);
  } catch (e) { setStatus(e.message, true); }
  setupTools();
  pick("queue", "queue");
  pick("cls", "cls");
  $("more").addEventListener("click", (ev) => { ev.target.blur(); load(true); });
  load(false);
  loadReviewers();
}
"""

"""The review page's JavaScript, part 2 (after :mod:`pseudolabel.review.script`, in one file):
the type-ahead class picker, ticked cards and bulk decisions, filters and sort, the queue panel
(progress, and the decisions the last run took in), the zoomed view and table rows."""

TOOLS_JS = r"""
// ---- table rows (text items): every column as name / value, long strings as paragraphs
const rowCache = new Map();
function rowContent(itemId) {
  if (!rowCache.has(itemId)) {
    const p = api("/api/item/" + itemId);
    p.catch(() => rowCache.delete(itemId));  // a failed read is tried again next time
    rowCache.set(itemId, p);
  }
  return rowCache.get(itemId);
}
function renderRow(box, data) {
  box.textContent = "";
  const dl = document.createElement("dl");
  data.columns.forEach((c) => {
    if (c.text) {
      const name = document.createElement("div");
      name.className = "text-name";
      name.textContent = c.name;
      const p = document.createElement("p");
      p.className = "text";
      p.textContent = c.value;
      box.append(name, p);
      return;
    }
    const dt = document.createElement("dt"); dt.textContent = c.name; dt.title = c.name;
    const dd = document.createElement("dd"); dd.textContent = c.value === null ? "\u2014" : String(c.value);
    dl.append(dt, dd);
  });
  box.append(dl);
}

// ---- the type-ahead class picker: keys 0-9 reach ten classes, this one reaches all
const PICK_SHOWN = 60;
function matchClasses(text) {
  const t = text.trim().toLowerCase();
  const all = state.classes.map((name, i) => ({ i: i, name: String(name).toLowerCase() }));
  if (!t) return all.map((c) => c.i);
  const rank = (c) => (String(c.i) === t || c.name === t ? 0 : c.name.startsWith(t) ? 1 :
                       c.name.split(/[\s_\-\/]+/).some((w) => w.startsWith(t)) ? 2 : c.name.includes(t) ? 3 : 9);
  return all.map((c) => [rank(c), c.i]).filter((r) => r[0] < 9).sort((a, b) => a[0] - b[0] || a[1] - b[1])
            .map((r) => r[1]);
}
function showPicks() {
  const list = $("pick-list");
  list.textContent = "";
  const text = $("pick").value;
  const found = matchClasses(text);
  found.slice(0, PICK_SHOWN).forEach((i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = text.trim() ? "match" : "";
    b.dataset.cls = i;
    b.title = "set class " + className(i) + (i < 10 ? " (key " + i + ")" : "");
    b.append(classBold(i).textContent.replace(/ \[\d+\]$/, ""));
    const idx = document.createElement("span");
    idx.className = "idx";
    idx.textContent = " " + i;
    b.append(idx);
    b.addEventListener("click", () => { b.blur(); decide("set", i); });
    list.append(b);
  });
  if (found.length > PICK_SHOWN || !found.length) {
    const more = document.createElement("span");
    more.className = "more";
    more.textContent = found.length ? "+" + (found.length - PICK_SHOWN) + " more: type to narrow" : "no class matches";
    list.append(more);
  }
}
function setupPicker() {
  const input = $("pick");
  input.addEventListener("input", showPicks);
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault();
      const found = matchClasses(input.value);
      if (!input.value.trim() || !found.length) { setStatus("no class matches " + JSON.stringify(input.value), true); return; }
      input.value = "";
      showPicks();
      input.blur();
      decide("set", found[0]);
    } else if (ev.key === "Escape") {
      input.value = "";
      showPicks();
      input.blur();
    }
  });
  showPicks();
}

// ---- ticked cards and bulk decisions
function showTicks() {
  cards().forEach((c, i) => {
    const on = state.items[i] !== undefined && state.ticked.has(state.items[i].item_id);
    c.classList.toggle("ticked", on);
    const box = c.querySelector(".check");
    if (box) box.checked = on;
  });
  $("ticked").textContent = state.ticked.size + " ticked";
}
function toggleTick(i, range) {
  const item = state.items[i];
  if (!item) return;
  if (range && state.anchor !== null) {
    const [a, b] = [Math.min(state.anchor, i), Math.max(state.anchor, i)];
    for (let j = a; j <= b; j++) state.ticked.add(state.items[j].item_id);
  } else if (state.ticked.has(item.item_id)) {
    state.ticked.delete(item.item_id);
  } else {
    state.ticked.add(item.item_id);
  }
  state.anchor = i;
  showTicks();
}
function untickAll() { state.ticked.clear(); state.anchor = null; showTicks(); }
function tickAll() { state.items.forEach((it) => state.ticked.add(it.item_id)); showTicks(); }
// One request per maxBulk items (the server writes each in one transaction).
async function bulkDecide(action, label, ids) {
  if (!token) { setStatus("read-only: open the address with ?token= printed in the terminal", true); return; }
  if (!state.who) { askWho("enter your name first"); return; }
  if (action === "set" && state.classes.length && (label < 0 || label >= state.classes.length)) {
    setStatus("label " + label + " is not a class (0\u2013" + (state.classes.length - 1) + ")", true);
    return;
  }
  if (state.busy || !ids.length) return;
  state.busy = true;
  let done = 0;
  try {
    for (let k = 0; k < ids.length; k += state.maxBulk) {
      const body = { action: action, item_ids: ids.slice(k, k + state.maxBulk), who: state.who };
      if (action === "set") body.label = label;
      if (action === "accept") body.queue = state.queue;
      const data = await api("/api/bulk", body);
      data.items.forEach(applyState);
      done += data.written;
    }
    untickAll();
    afterUpdate();
    const what = action === "set" ? className(label) : action === "reject" ? "none of these" : action;
    setStatus(done + " items: " + what);
  } catch (e) {
    setStatus((done ? done + " written, then: " : "") + e.message, true);
    afterUpdate();
  }
  state.busy = false;
}
function queueParams() {
  const q = new URLSearchParams({ queue: state.queue });
  if (state.cls !== "") q.set("cls", state.cls);
  if (state.source) q.set("source", state.source);
  if (state.decided) q.set("decided", state.decided);
  if (state.sort !== "queue") q.set("sort", state.sort);
  if (state.diverse && state.queue === "active") q.set("diverse", "1");
  return q;
}
// Every undecided item of the queue (with the filters shown) whose suggestion is at least this sure.
async function acceptAbove() {
  const text = $("min-conf").value.trim();
  if (!/^(0(\.\d{1,6})?|1(\.0{1,6})?|\.\d{1,6})$/.test(text)) {
    setStatus("type a confidence from 0 to 1, e.g. 0.95", true);
    return;
  }
  const q = queueParams();
  q.set("decided", "undecided");
  q.set("min_confidence", text);
  q.set("limit", state.maxBulk);
  let data;
  try { data = await api("/api/queue?" + q); } catch (e) { setStatus(e.message, true); return; }
  const ids = data.items.map((it) => it.item_id);
  if (!ids.length) { setStatus("no undecided item here has a suggestion with confidence \u2265 " + text); return; }
  state.ticked.clear();
  await bulkDecide("accept", null, ids);
  if (data.total > ids.length) setStatus(ids.length + " accepted; " + (data.total - ids.length) + " more: press accept again");
  load(false);
}

// ---- the queue panel: decided / total per queue, and what the last run took in
let queuesTimer = null;
function loadQueues() {
  clearTimeout(queuesTimer);
  queuesTimer = setTimeout(async () => {
    try { showQueues(await api("/api/summary")); } catch (e) { /* a convenience; the grid keeps working */ }
  }, 250);
}
const QUEUE_NAMES = { suspects: "Suspects", audit: "Pseudo-label audit", active: "Active learning", all: "All items" };
function showQueues(info) {
  const box = $("queues");
  box.textContent = "";
  const h = document.createElement("h2");
  h.textContent = "Queues";
  box.append(h);
  Object.entries(info.progress).forEach(([name, p]) => {
    const div = document.createElement("div");
    div.className = "q" + (name === state.queue ? " on" : "");
    div.dataset.queue = name;
    const top = document.createElement("div");
    top.className = "top";
    const n = document.createElement("b"); n.textContent = QUEUE_NAMES[name] || name;
    const c = document.createElement("span"); c.className = "count"; c.textContent = p.decided + " / " + p.total + " decided";
    top.append(n, c);
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", String(p.total));
    bar.setAttribute("aria-valuenow", String(p.decided));
    const fillBar = document.createElement("span");
    fillBar.style.width = (p.total ? (100 * p.decided / p.total).toFixed(1) : 0) + "%";
    bar.append(fillBar);
    const fb = document.createElement("div");
    fb.className = "fb";
    const f = p.feedback;
    if (f.run_id) {
      fb.append("last " + f.job + " run (" + f.run_at.slice(0, 16).replace("T", " ") + ") took in " + f.used +
                " decision" + (f.used === 1 ? "" : "s") + " \u00b7 ");
      const since = document.createElement(f.since ? "b" : "span");  // bold: decisions waiting for a run
      since.textContent = f.since + " since \u2014 not yet used";
      fb.append(since);
    } else {
      fb.textContent = f.since + " decision" + (f.since === 1 ? "" : "s") + " \u2014 no run has used them yet";
    }
    div.append(top, bar, fb);
    div.addEventListener("click", () => { if (name !== state.queue) switchQueue(name); });
    box.append(div);
  });
}
function switchQueue(name) {
  state.queue = name;
  $("queue").value = name;
  queueChanged();
  load(false);
}
function queueChanged() {
  state.queue = $("queue").value;  // this listener may run before the one that loads the queue
  $("diverse-box").hidden = state.queue !== "active";
  document.querySelectorAll("#queues .q").forEach((d) => d.classList.toggle("on", d.dataset.queue === state.queue));
}

// ---- the zoomed view: a large image, or the whole row
function zoom() {
  const item = state.items[state.sel];
  if (!item) return;
  const box = $("zoom-box");
  box.textContent = "";
  const h = document.createElement("h2");
  h.textContent = item.key + " \u00b7 current " + className(item.label) +
                  (item.suggestion >= 0 ? " \u00b7 suggested " + className(item.suggestion) + " (" + fmtConf(item.confidence) + ")" : "");
  box.append(h);
  if (state.content === "row") {
    const rv = document.createElement("div");
    rv.className = "rowview";
    rv.textContent = "\u2026";
    rowContent(item.item_id).then((data) => renderRow(rv, data)).catch((e) => { rv.textContent = e.message; });
    box.append(rv);
  } else {
    box.append(imageOf(item, true));
  }
  $("zoom").hidden = false;
}
function zoomKey(k) {
  if ($("zoom").hidden) return false;
  if (k === "Escape" || k === "z") $("zoom").hidden = true;
  else if (k === "ArrowRight" || k === "ArrowLeft") { select(state.sel + (k === "ArrowRight" ? 1 : -1)); zoom(); }
  else return false;  // digits and the other keys still decide while zoomed
  return true;
}

function setupTools() {
  setupPicker();
  $("reject").addEventListener("click", (ev) => { ev.target.blur(); decide("reject"); });
  $("tick-all").addEventListener("click", (ev) => { ev.target.blur(); tickAll(); });
  $("untick").addEventListener("click", (ev) => { ev.target.blur(); untickAll(); });
  $("accept-ticked").addEventListener("click", (ev) => {
    ev.target.blur();
    if (!state.ticked.size) { setStatus("tick cards first (click their box, shift-click for a range)", true); return; }
    decide("accept");
  });
  $("accept-above").addEventListener("click", (ev) => { ev.target.blur(); acceptAbove(); });
  $("min-conf").addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); acceptAbove(); } });
  [["f-source", "source"], ["f-decided", "decided"], ["sort", "sort"]].forEach(([id, key]) => {
    $(id).addEventListener("change", (ev) => { state[key] = ev.target.value; ev.target.blur(); load(false); });
  });
  $("diverse").addEventListener("change", (ev) => { state.diverse = ev.target.checked; ev.target.blur(); load(false); });
  $("queue").addEventListener("change", queueChanged);
  $("zoom").addEventListener("click", () => { $("zoom").hidden = true; });
  queueChanged();
}
start();
"""

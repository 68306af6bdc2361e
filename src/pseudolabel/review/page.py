"""The review page: plain HTML, CSS and JavaScript, served from these strings (no build step,
no CDN, nothing fetched from outside 127.0.0.1)."""
from pseudolabel.review.script import CORE_JS
from pseudolabel.review.tools import TOOLS_JS

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
  <label>Source <select id="f-source"><option value="">all</option><option>given</option><option>human</option>
    <option>pseudo</option><option>corrected</option><option value="none">unlabeled</option></select></label>
  <label>Decided <select id="f-decided"><option value="">all</option><option value="undecided">undecided</option>
    <option value="decided">decided</option></select></label>
  <label>Sort <select id="sort"><option value="queue">queue order</option>
    <option value="confidence">confidence &uarr;</option><option value="-confidence">confidence &darr;</option>
    <option value="-score">score &darr;</option><option value="score">score &uarr;</option></select></label>
  <label id="diverse-box" title="uncertain and spread over the data: k-center over the model's probabilities">
    <input type="checkbox" id="diverse"> diverse</label>
  <span id="progress" aria-live="polite"></span>
  <span id="reviewer">reviewer <b id="who">&mdash;</b> <button id="change-who" type="button">change</button></span>
  <span id="status" role="status" aria-live="polite"></span>
</header>
<p id="help">
  <kbd>0</kbd>&ndash;<kbd>9</kbd> first ten classes &middot; <kbd>/</kbd> type a class &middot;
  <kbd>a</kbd> accept suggestion &middot; <kbd>k</kbd> keep label &middot; <kbd>x</kbd> none of these &middot;
  <kbd>z</kbd> zoom &middot; <kbd>space</kbd> tick &middot; <kbd>&larr;</kbd><kbd>&uarr;</kbd><kbd>&rarr;</kbd><kbd>&darr;</kbd> move &middot;
  <kbd>u</kbd> undo &middot; shift-click ticks a range; a decision applies to the ticked cards, else the selected one
</p>
<div id="tools">
  <div id="picker">
    <input id="pick" type="search" autocomplete="off" placeholder="type a class, Enter sets it" aria-label="class">
    <div id="pick-list" role="listbox" aria-label="classes"></div>
  </div>
  <div id="bulk">
    <button id="reject" type="button" title="x: no class fits (recorded as label -1 by a person)">none of these</button>
    <span id="ticked">0 ticked</span>
    <button id="tick-all" type="button">tick all shown</button>
    <button id="untick" type="button">clear</button>
    <button id="accept-ticked" type="button">accept ticked suggestions</button>
    <label>accept all with confidence &ge; <input id="min-conf" inputmode="decimal" value="0.95" size="4"></label>
    <button id="accept-above" type="button">accept</button>
  </div>
</div>
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
    <section id="queues" aria-label="queues"></section>
    <section id="detail" aria-label="history of the selected item"></section>
    <section id="reviewers" aria-label="reviewers"></section>
  </aside>
</div>
<p id="footer"><button id="more" hidden>Show more</button></p>
<div id="zoom" hidden role="dialog" aria-label="zoomed item"><div id="zoom-box"></div>
  <p id="zoom-help">Esc or click to close &middot; &larr; &rarr; previous / next</p></div>
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
#grid { flex: 1; min-width: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(172px, 1fr)); gap: .6em; }
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
header label { white-space: nowrap; }
.card .row { flex-wrap: wrap; }
.card .row b { flex: 1 1 auto; min-width: 0; overflow-wrap: break-word; }  /* the source badge wraps below */
.card .row .src { margin-left: auto; }
#diverse-box[hidden] { display: none; }
#tools { margin: 0 1em .6em; display: flex; flex-direction: column; gap: .4em; }
#picker { display: flex; gap: .5em; align-items: flex-start; }
#pick { font: inherit; padding: .25em .5em; width: 16em; flex: none; }
#pick-list { display: flex; flex-wrap: wrap; gap: .3em; }
#pick-list button { font: inherit; font-size: 12.5px; padding: .1em .5em; border: 1px solid #b8c0c8; border-radius: 4px;
                    background: #fff; cursor: pointer; }
#pick-list button:first-child.match { border-color: #1a73e8; background: #e8f0fe; }
#pick-list button .idx { color: #8a949e; font-size: 10.5px; }
#pick-list .more { color: #5f6b76; font-size: 12px; align-self: center; }
#bulk { display: flex; flex-wrap: wrap; gap: .5em; align-items: center; }
#bulk button, #bulk input { font: inherit; font-size: 13px; }
#reject { border: 1px solid #b3261e; color: #b3261e; background: #fff; border-radius: 4px; }
#ticked { font-weight: 600; min-width: 5.5em; }
.card .check { position: absolute; top: 4px; left: 4px; width: 16px; height: 16px; margin: 0; }
.card.ticked { border-color: #e37400; border-style: solid; background: #fff7e6; }
.card .zoomit { position: absolute; top: 2px; right: 2px; border: 0; background: transparent; cursor: zoom-in;
                font-size: 14px; padding: 0 .2em; color: #5f6b76; }
.card .rowview { text-align: left; font-size: 12px; margin: 14px 0 4px; max-height: 14em; overflow: hidden; }
.rowview dl { display: grid; grid-template-columns: minmax(3em, max-content) 1fr; gap: .05em .5em; margin: 0; }
.rowview dt { color: #5f6b76; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; max-width: 9em; }
.rowview dd { margin: 0; overflow-wrap: anywhere; }
.rowview .text { margin: .3em 0; padding: .3em .5em; background: #f7f8fa; border-left: 3px solid #8ab4f8;
                 white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.45; }
.rowview .text-name { color: #5f6b76; font-size: 11px; margin-top: .3em; }
.card .rowview .text { display: -webkit-box; -webkit-line-clamp: 5; -webkit-box-orient: vertical; overflow: hidden; }
body.rows #grid { grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); }
.rejected { color: #b3261e; }
#queues { background: #fff; border: 1px solid #d5d9de; border-radius: 6px; padding: .5em .8em; font-size: 12.5px;
          margin-bottom: .6em; }
#queues:empty { display: none; }
#queues h2 { font-size: 1em; margin: 0 0 .3em; }
#queues .q { padding: .25em .3em; border-radius: 4px; cursor: pointer; }
#queues .q.on { background: #e8f0fe; }
#queues .q .top { display: flex; justify-content: space-between; }
#queues .bar { height: 7px; background: #e3e6ea; border-radius: 4px; overflow: hidden; margin: .15em 0; }
#queues .bar span { display: block; height: 100%; background: #2e7d4a; }
#queues .fb { color: #5f6b76; font-size: 11.5px; }
#queues .fb b { color: #7a4b00; }
#zoom { position: fixed; inset: 0; background: rgba(20, 25, 30, .82); z-index: 10; display: flex;
        flex-direction: column; align-items: center; justify-content: center; }
#zoom[hidden] { display: none; }
#zoom-box { background: #fff; border-radius: 6px; padding: 1em; max-width: min(900px, 92vw); max-height: 84vh;
            overflow: auto; }
#zoom-box img { width: min(560px, 80vw, 72vh); height: auto; image-rendering: pixelated; display: block; }
#zoom-box .rowview { font-size: 14px; min-width: min(600px, 80vw); }
#zoom-box .rowview dt { max-width: 16em; }
#zoom-box h2 { font-size: 1em; margin: 0 0 .5em; }
#zoom-help { color: #fff; margin: .6em 0 0; }
"""

#: The page's script: the grid and decisions (script.py), then the tools (tools.py), one file.
REVIEW_JS = CORE_JS + TOOLS_JS

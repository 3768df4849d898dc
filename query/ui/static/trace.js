// The trace waterfall. It reads the trace from the page's JSON and renders
// only the rows in view (plus a margin), so traces of 10,000 spans scroll
// smoothly. Every value from the spans is set with textContent: nothing from
// the data is parsed as HTML.
(function () {
  "use strict";
  var dataEl = document.getElementById("trace-data");
  if (!dataEl) return;
  var T = JSON.parse(dataEl.textContent);
  var S = T.spans, n = S.length, total = T.du > 0 ? T.du : 1;
  var ROW = 24, MARGIN = 30;
  var vp = document.getElementById("wf-viewport");
  var spacer = document.getElementById("wf-spacer");
  var rowsEl = document.getElementById("wf-rows");

  // end[i]: the row after i's subtree (rows are in depth-first order).
  var end = new Int32Array(n), kids = new Int32Array(n), stack = [];
  for (var i = 0; i < n; i++) {
    while (stack.length && S[stack[stack.length - 1]].d >= S[i].d) end[stack.pop()] = i;
    if (S[i].p >= 0) kids[S[i].p]++;
    stack.push(i);
  }
  while (stack.length) end[stack.pop()] = n;
  var sections = {};
  T.cps.forEach(function (c) { (sections[c[0]] = sections[c[0]] || []).push(c); });
  var rowOf = {};
  for (i = 0; i < n; i++) if (!(S[i].id in rowOf)) rowOf[S[i].id] = i;

  var collapsed = new Uint8Array(n), visible = [], selected = -1;

  function fmt(ns) {
    if (ns === 0) return "0";
    var a = Math.abs(ns), s = ns < 0 ? "-" : "";
    function sig(f) { return f >= 100 ? f.toFixed(0) : f >= 10 ? f.toFixed(1) : f.toFixed(2); }
    if (a < 1e3) return s + a + " ns";
    if (a < 1e6) return s + sig(a / 1e3) + " µs";
    if (a < 1e9) return s + sig(a / 1e6) + " ms";
    return s + sig(a / 1e9) + " s";
  }
  function pct(ns) { return Math.max(0, Math.min(100, ns / total * 100)); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function rebuild() {
    visible = [];
    for (var i = 0; i < n;) {
      visible.push(i);
      i = collapsed[i] ? end[i] : i + 1;
    }
    spacer.style.height = (visible.length * ROW) + "px";
    // Small traces get a viewport that fits them; large ones scroll in 62% of the window.
    vp.style.height = Math.max(120, Math.min(visible.length * ROW + 2, Math.round(window.innerHeight * 0.62))) + "px";
    render();
  }

  function makeRow(i) {
    var s = S[i];
    var r = el("div", "row" + (s.c ? " crit" : "") + (s.e ? " err" : "") + (i === selected ? " sel" : ""));
    r.dataset.row = i;
    r.dataset.spanId = s.id;
    var name = el("div", "c-name");
    name.style.paddingLeft = (4 + s.d * 14) + "px";
    if (kids[i] > 0) {
      var t = el("button", "toggle", collapsed[i] ? "▸" : "▾");
      t.type = "button";
      t.title = (collapsed[i] ? "Expand" : "Collapse") + " " + (end[i] - i - 1) + " descendant spans";
      t.dataset.toggle = i;
      name.appendChild(t);
    } else {
      name.appendChild(el("span", "toggle-pad"));
    }
    name.appendChild(el("span", "svc", s.s));
    name.appendChild(document.createTextNode(" "));
    name.appendChild(el("span", "opname", s.o));
    if (s.w) name.appendChild(el("span", "warnicon", " ⚠"));
    if (collapsed[i]) name.appendChild(el("span", "muted", " +" + (end[i] - i - 1)));
    name.title = s.s + " " + s.o;
    r.appendChild(name);
    r.appendChild(el("div", "c-num", fmt(s.sf)));
    r.appendChild(el("div", "c-num" + (s.cp ? " cpnum" : ""), s.cp ? fmt(s.cp) : "–"));
    r.appendChild(el("div", "c-num", fmt(s.du)));
    var barCell = el("div", "c-bar");
    var bar = el("div", "bar");
    bar.style.left = pct(s.t) + "%";
    bar.style.width = Math.max(0.15, pct(s.du)) + "%";
    barCell.appendChild(bar);
    (sections[i] || []).forEach(function (c) {
      var seg = el("div", "cpseg");
      seg.style.left = pct(c[1]) + "%";
      seg.style.width = Math.max(0.15, pct(c[2])) + "%";
      barCell.appendChild(seg);
    });
    r.appendChild(barCell);
    return r;
  }

  var pending = false;
  function render() {
    pending = false;
    var top = vp.scrollTop, h = vp.clientHeight || 600;
    var first = Math.max(0, Math.floor(top / ROW) - MARGIN);
    var last = Math.min(visible.length, Math.ceil((top + h) / ROW) + MARGIN);
    var frag = document.createDocumentFragment();
    for (var k = first; k < last; k++) frag.appendChild(makeRow(visible[k]));
    rowsEl.textContent = "";
    rowsEl.style.transform = "translateY(" + (first * ROW) + "px)";
    rowsEl.appendChild(frag);
  }
  vp.addEventListener("scroll", function () {
    if (!pending) { pending = true; requestAnimationFrame(render); }
  });
  window.addEventListener("resize", function () { render(); });

  function fillKV(table, pairs) {
    table.textContent = "";
    if (!pairs || !pairs.length) { var tr0 = el("tr"); tr0.appendChild(el("td", "muted", "none")); table.appendChild(tr0); return; }
    pairs.forEach(function (kv) {
      var tr = el("tr");
      tr.appendChild(el("th", null, kv[0]));
      tr.appendChild(el("td", null, kv[1]));
      table.appendChild(tr);
    });
  }

  var details = document.getElementById("details");
  var body = document.getElementById("trace-body");
  function select(i) {
    selected = i;
    var s = S[i];
    document.getElementById("d-title").textContent = s.s + " " + s.o;
    var dl = document.getElementById("d-times");
    dl.textContent = "";
    [["Span ID", s.id], ["Kind", s.k || "—"], ["Start", s.st + " UTC (+" + fmt(s.t) + ")"], ["Duration", fmt(s.du)],
     ["Self time", fmt(s.sf)], ["Critical path", s.cp ? fmt(s.cp) + (s.c ? "" : "") : "not on the critical path"],
     ["Status", s.e ? "error" : "ok"]].forEach(function (p) {
      dl.appendChild(el("dt", null, p[0]));
      dl.appendChild(el("dd", null, p[1]));
    });
    var w = document.getElementById("d-warn");
    w.textContent = "";
    (s.w || []).forEach(function (m) { w.appendChild(el("p", "warnline", "⚠ " + m)); });
    fillKV(document.getElementById("d-tags"), s.tg);
    fillKV(document.getElementById("d-process"), s.pt);
    var logs = document.getElementById("d-logs");
    logs.textContent = "";
    if (!s.l || !s.l.length) logs.appendChild(el("p", "muted", "none"));
    (s.l || []).forEach(function (l) {
      logs.appendChild(el("div", "logtime", "+" + fmt(l.t)));
      var t = el("table", "kv");
      fillKV(t, l.f);
      logs.appendChild(t);
    });
    details.hidden = false;
    body.classList.add("with-details");
    render();
  }

  rowsEl.addEventListener("click", function (ev) {
    var t = ev.target.closest("[data-toggle]");
    if (t) {
      var i = +t.dataset.toggle;
      collapsed[i] = collapsed[i] ? 0 : 1;
      rebuild();
      return;
    }
    var r = ev.target.closest(".row");
    if (r) select(+r.dataset.row);
  });
  document.getElementById("details-close").addEventListener("click", function () {
    details.hidden = true;
    body.classList.remove("with-details");
    selected = -1;
    render();
  });
  document.getElementById("expand-all").addEventListener("click", function () { collapsed.fill(0); rebuild(); });
  document.getElementById("collapse-all").addEventListener("click", function () {
    for (var i = 0; i < n; i++) collapsed[i] = (S[i].d === 0 && kids[i] > 0) ? 1 : 0;
    rebuild();
  });

  // #span-<id>: expand its ancestors, scroll to it and select it.
  function goToHash() {
    var m = /^#span-([0-9a-f]+)$/.exec(location.hash);
    if (!m || !(m[1] in rowOf)) return;
    var i = rowOf[m[1]];
    for (var p = S[i].p; p >= 0; p = S[p].p) collapsed[p] = 0;
    rebuild();
    var k = visible.indexOf(i);
    vp.scrollTop = Math.max(0, k * ROW - vp.clientHeight / 3);
    select(i);
  }
  window.addEventListener("hashchange", goToHash);

  // Everything starts expanded: rendering only the rows in view keeps even
  // large traces fast, and a person collapses what is in the way.
  rebuild();
  goToHash();
  document.body.dataset.waterfall = "ready";
})();

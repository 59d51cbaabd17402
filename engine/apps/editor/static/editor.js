// p2phd edit: paint a label map, add, erase and restyle instances, and see it rendered live.
// State is the label map (uint8 class ids), the instance map (int32, Cityscapes: class*1000+k),
// the image seed and the clusters chosen per instance. Every edit is one undo step; every
// change asks for a render (debounced, one in flight, latest wins by sequence number).
"use strict";

const $ = (id) => document.getElementById(id);
const THING_BASE = 1000;  // instance ids >= 1000 are thing instances (class*1000+k)
const RENDER_DELAY_MS = 40;
const UNDO_LIMIT = 100;

const editor = {
  model: null,
  classById: new Map(),
  state: null,            // {width, height, label, instance, seed, clusters: {id: k}}
  undo: [],
  redo: [],
  cls: 0,                 // the brush class
  selected: null,         // the instance the style tool picked
  renders: [],            // [{seq, ms}] round trips, for the page's status and the benchmark
  shownSeq: 0,
  lastImage: null,        // Blob of the latest rendered image
};
window.p2phdEditor = editor;

// -- messages -------------------------------------------------------------------------------

function say(text, kind = "info") {
  const m = $("message");
  m.textContent = text;
  m.className = text ? kind : "";
}

async function fetchJson(url, options) {
  const resp = await fetch(url, options);
  const body = await resp.json().catch(() => ({ error: `${resp.status} ${resp.statusText}` }));
  if (!resp.ok) throw new Error(body.error || `${resp.status} ${resp.statusText}`);
  return body;
}

function decodeMaps(d) {
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const inst = bytes(d.instance);
  return {
    width: d.width,
    height: d.height,
    label: bytes(d.label),
    instance: new Int32Array(inst.buffer, 0, d.width * d.height),  // little-endian, as sent
  };
}

// -- state and history ----------------------------------------------------------------------

function snapshot() {
  const s = editor.state;
  return { ...s, label: s.label.slice(), instance: s.instance.slice(), clusters: { ...s.clusters } };
}

function pushUndo() {
  editor.undo.push(snapshot());
  if (editor.undo.length > UNDO_LIMIT) editor.undo.shift();
  editor.redo = [];
  updateHistoryButtons();
}

function restore(from, to) {
  if (!from.length) return;
  to.push(snapshot());
  editor.state = from.pop();
  editor.selected = null;
  afterChange();
}

function updateHistoryButtons() {
  $("undo").disabled = !editor.undo.length;
  $("redo").disabled = !editor.redo.length;
}

function setMaps(maps, keepHistory) {
  if (editor.state && keepHistory) pushUndo();
  const seed = editor.state ? editor.state.seed : 0;
  editor.state = { ...maps, seed, clusters: {} };
  editor.selected = null;
  afterChange();
}

function afterChange() {
  updateHistoryButtons();
  $("seed").value = editor.state.seed;
  drawLabels();
  showInstanceStyle();
  scheduleRender();
}

// -- drawing the label map ------------------------------------------------------------------

function drawLabels(preview) {
  const { width: w, height: h, label, instance } = editor.state;
  const canvas = $("labels");
  if (canvas.width !== w || canvas.height !== h) [canvas.width, canvas.height] = [w, h];
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  const px = img.data;
  const sel = editor.selected;
  for (let i = 0; i < w * h; i++) {
    const c = editor.classById.get(label[i]);
    const col = c ? c.color : [255, 0, 255];
    const id = instance[i];
    // Instance outlines (right or lower neighbour differs) are drawn darker, the selected white.
    const edge = (i % w < w - 1 && instance[i + 1] !== id) || (i + w < w * h && instance[i + w] !== id);
    const k = 4 * i;
    if (sel !== null && id === sel && edge) {
      px[k] = px[k + 1] = px[k + 2] = 255;
    } else {
      const f = edge ? 0.45 : 1;
      px[k] = col[0] * f;
      px[k + 1] = col[1] * f;
      px[k + 2] = col[2] * f;
    }
    px[k + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  if (preview) {
    ctx.strokeStyle = "#fff";
    ctx.setLineDash([4, 3]);
    ctx.strokeRect(preview.x0 + 0.5, preview.y0 + 0.5, preview.x1 - preview.x0, preview.y1 - preview.y0);
  }
  $("label-caption").textContent = `${w}x${h} label map · ${countInstances()} instances`;
}

function countInstances() {
  const ids = new Set();
  for (const id of editor.state.instance) if (id >= THING_BASE) ids.add(id);
  return ids.size;
}

// -- palette --------------------------------------------------------------------------------

function buildPalette() {
  const pal = $("palette");
  pal.innerHTML = "";
  for (const c of editor.model.classes) {
    const b = document.createElement("button");
    b.dataset.class = c.name;
    b.dataset.id = c.id;
    b.title = `class ${c.id}${c.is_thing ? " (thing: has instances)" : ""}`;
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = `rgb(${c.color.join(",")})`;
    b.append(sw, `${c.id} ${c.name}`);
    if (c.is_thing || c.clusters) {
      const t = document.createElement("span");
      t.className = "thing";
      t.textContent = [c.is_thing ? "thing" : "", c.clusters ? `${c.clusters} styles` : ""]
        .filter(Boolean).join(" · ");
      b.append(t);
    }
    b.onclick = () => selectClass(c.id);
    pal.append(b);
  }
  const road = editor.model.classes.find((c) => c.name === "road");
  selectClass(road ? road.id : editor.model.classes[0].id);
}

function selectClass(id) {
  editor.cls = id;
  for (const b of $("palette").children) b.classList.toggle("selected", Number(b.dataset.id) === id);
}

const isThing = (cls) => Boolean(editor.classById.get(cls)?.is_thing);
const className = (cls) => editor.classById.get(cls)?.name ?? `class ${cls}`;

// -- editing operations ---------------------------------------------------------------------

function newInstanceId(cls) {
  let top = -1;
  const lo = cls * THING_BASE, hi = lo + THING_BASE;
  for (const id of editor.state.instance) if (id >= lo && id < hi) top = Math.max(top, id - lo);
  if (top + 1 >= THING_BASE || lo + top + 1 > 65535) {
    throw new Error(`no free instance id for ${className(cls)} (16-bit PNG ids end at 65535)`);
  }
  return lo + top + 1;
}

function paintDisc(cx, cy, r, cls, id) {
  const { width: w, height: h, label, instance } = editor.state;
  const r2 = r * r;
  for (let y = Math.max(0, Math.floor(cy - r)); y <= Math.min(h - 1, Math.ceil(cy + r)); y++) {
    for (let x = Math.max(0, Math.floor(cx - r)); x <= Math.min(w - 1, Math.ceil(cx + r)); x++) {
      if ((x - cx) ** 2 + (y - cy) ** 2 <= r2) {
        label[y * w + x] = cls;
        instance[y * w + x] = id;
      }
    }
  }
}

function paintLine(a, b, cls, id) {
  const r = Number($("brush-size").value) / 2;
  const steps = Math.max(1, Math.ceil(Math.hypot(b.x - a.x, b.y - a.y) / Math.max(1, r / 2)));
  for (let s = 0; s <= steps; s++) {
    paintDisc(a.x + ((b.x - a.x) * s) / steps, a.y + ((b.y - a.y) * s) / steps, r, cls, id);
  }
}

function fillBox(box, cls, id) {
  const { width: w, label, instance } = editor.state;
  for (let y = box.y0; y <= box.y1; y++) {
    for (let x = box.x0; x <= box.x1; x++) {
      label[y * w + x] = cls;
      instance[y * w + x] = id;
    }
  }
}

// The most common class among the pixels just outside instance `id` (stuff pixels first).
function surroundingClass(id) {
  const { width: w, height: h, label, instance } = editor.state;
  const stuff = new Map(), any = new Map();
  const vote = (m, c) => m.set(c, (m.get(c) || 0) + 1);
  for (let i = 0; i < w * h; i++) {
    if (instance[i] !== id) continue;
    const x = i % w;
    for (const j of [x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1, i - w, i + w]) {
      if (j < 0 || j >= w * h || instance[j] === id) continue;
      vote(any, label[j]);
      if (instance[j] < THING_BASE && !isThing(label[j])) vote(stuff, label[j]);
    }
  }
  const best = (m) => [...m.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
  return best(stuff) ?? best(any) ?? 0;
}

function eraseInstance(p) {
  const s = editor.state;
  const id = s.instance[p.y * s.width + p.x];
  if (id < THING_BASE) {
    say(`that is ${className(s.label[p.y * s.width + p.x])}, not an instance: click a car, person, ...`);
    return;
  }
  const fill = $("erase-fill").value === "brush" ? editor.cls : surroundingClass(id);
  pushUndo();
  for (let i = 0; i < s.width * s.height; i++) {
    if (s.instance[i] === id) {
      s.label[i] = fill;
      s.instance[i] = fill;
    }
  }
  delete s.clusters[id];
  if (editor.selected === id) editor.selected = null;
  say(`erased instance ${id}; filled with ${className(fill)}`);
  afterChange();
}

function clustersOf(cls) {
  return editor.classById.get(cls)?.clusters ?? 0;
}

// Style tool: select the clicked instance and step its cluster (seed's choice, 0, 1, ..., k-1).
function styleClick(p) {
  const s = editor.state;
  const i = p.y * s.width + p.x;
  const id = s.instance[i], cls = s.label[i];
  const k = clustersOf(cls);
  if (!k) {
    editor.selected = null;
    showInstanceStyle();
    say(`${className(cls)} has no feature clusters in this model: its look follows the map only`);
    return;
  }
  if (editor.selected !== id) {
    editor.selected = id;
    drawLabels();
    showInstanceStyle();
    return;
  }
  const cur = s.clusters[id];
  setCluster(id, cur === undefined ? 0 : cur + 1 < k ? cur + 1 : undefined);
}

function setCluster(id, cluster) {
  pushUndo();
  const s = editor.state;
  if (cluster === undefined) delete s.clusters[id];
  else s.clusters[id] = cluster;
  afterChange();
}

function instanceClass(id) {
  const s = editor.state;
  const i = s.instance.indexOf(id);
  return i < 0 ? null : s.label[i];
}

function showInstanceStyle() {
  const box = $("instance-style");
  const id = editor.selected;
  const cls = id === null ? null : instanceClass(id);
  if (cls === null) {
    editor.selected = null;
    box.innerHTML = "<em>Style tool: click a car, person, ... to cycle its look.</em>";
    return;
  }
  box.innerHTML = "";
  const cur = editor.state.clusters[id];
  const title = document.createElement("div");
  title.textContent = `${className(cls)} instance ${id}: ${cur === undefined ? "seed's choice" : `cluster ${cur}`}`;
  box.append(title);
  const add = (text, value) => {
    const b = document.createElement("button");
    b.textContent = text;
    b.dataset.cluster = value === undefined ? "seed" : value;
    b.classList.toggle("selected", cur === value);
    b.onclick = () => setCluster(id, value);
    box.append(b);
  };
  add("seed", undefined);
  for (let c = 0; c < clustersOf(cls); c++) add(String(c), c);
}

// -- pointer input --------------------------------------------------------------------------

function pixelAt(ev) {
  const c = $("labels");
  const r = c.getBoundingClientRect();
  return {
    x: Math.min(c.width - 1, Math.max(0, Math.floor(((ev.clientX - r.left) / r.width) * c.width))),
    y: Math.min(c.height - 1, Math.max(0, Math.floor(((ev.clientY - r.top) / r.height) * c.height))),
  };
}

const tool = () => document.querySelector("input[name=tool]:checked").value;
let drag = null;  // {kind, start, last, cls, id}

function onDown(ev) {
  if (!editor.state || ev.button !== 0) return;
  const p = pixelAt(ev);
  const s = editor.state;
  const cls = editor.cls;
  try {
    switch (tool()) {
      case "brush": {
        // A thing stroke continues the instance it starts on, or else starts a new one.
        const under = s.instance[p.y * s.width + p.x];
        let id = cls;
        if (isThing(cls)) {
          id = s.label[p.y * s.width + p.x] === cls && under >= THING_BASE ? under : newInstanceId(cls);
        }
        pushUndo();
        drag = { kind: "brush", last: p, cls, id };
        paintLine(p, p, cls, id);
        drawLabels();
        scheduleRender();
        break;
      }
      case "add":
        if (!isThing(cls)) {
          say(`${className(cls)} is stuff: pick a thing class (car, person, ...) to add an instance`);
          return;
        }
        drag = { kind: "add", start: p, last: p, cls };
        break;
      case "erase":
        eraseInstance(p);
        return;
      case "style":
        styleClick(p);
        return;
    }
  } catch (e) {
    say(e.message, "error");
    return;
  }
  $("labels").setPointerCapture(ev.pointerId);
}

function box(a, b) {
  return { x0: Math.min(a.x, b.x), y0: Math.min(a.y, b.y), x1: Math.max(a.x, b.x), y1: Math.max(a.y, b.y) };
}

function onMove(ev) {
  if (!drag) return;
  const p = pixelAt(ev);
  if (drag.kind === "brush") {
    paintLine(drag.last, p, drag.cls, drag.id);
    drawLabels();
    scheduleRender();
  } else {
    drawLabels(box(drag.start, p));
  }
  drag.last = p;
}

function onUp(ev) {
  if (!drag) return;
  const d = drag;
  drag = null;
  if (d.kind === "add") {
    const b = box(d.start, pixelAt(ev));
    if (b.x1 === b.x0 || b.y1 === b.y0) {
      say("drag a box to add an instance");
      drawLabels();
      return;
    }
    try {
      const id = newInstanceId(d.cls);
      pushUndo();
      fillBox(b, d.cls, id);
      say(`added ${className(d.cls)} instance ${id}`);
    } catch (e) {
      say(e.message, "error");
    }
  }
  drawLabels();
  scheduleRender(0);
}

// -- rendering: debounced, one request in flight, the newest result wins --------------------

let seqCounter = 0, inFlight = false, pending = false, timer = null;

function scheduleRender(delay = RENDER_DELAY_MS) {
  clearTimeout(timer);
  timer = setTimeout(() => {
    timer = null;
    sendRender();
  }, delay);
}

// True when every edit so far has been rendered (or failed): nothing scheduled or in flight.
editor.settled = () => timer === null && !inFlight && !pending;

async function renderForm(s) {
  const form = new FormData();
  form.append("label", await PNG.encodeGrey(s.label, s.width, s.height, 8), "label.png");
  form.append("instance", await PNG.encodeGrey(s.instance, s.width, s.height, 16), "instance.png");
  form.append("style", JSON.stringify({ seed: s.seed, instances: s.clusters }));
  return form;
}

async function sendRender() {
  if (inFlight) {
    pending = true;
    return;
  }
  inFlight = true;
  pending = false;
  const seq = ++seqCounter;
  const t0 = performance.now();
  try {
    const resp = await fetch("/api/render", { method: "POST", body: await renderForm(editor.state) });
    if (!resp.ok) {
      const body = await resp.json().catch(() => ({ error: `${resp.status} ${resp.statusText}` }));
      if (seq > editor.shownSeq) say(`render failed: ${body.error}`, "error");
    } else {
      const blob = await resp.blob();
      if (seq > editor.shownSeq) await showImage(blob, seq, t0);
    }
  } catch (e) {
    say(`render failed: ${e.message}`, "error");
  } finally {
    inFlight = false;
    if (pending) sendRender();
  }
}

function showImage(blob, seq, t0) {
  const img = $("photo");
  const url = URL.createObjectURL(blob);
  return new Promise((resolve) => {
    img.onload = () => {
      if (seq > editor.shownSeq) {
        const old = img.dataset.url;
        editor.shownSeq = seq;
        editor.lastImage = blob;
        img.dataset.seq = seq;
        img.dataset.url = url;
        if (old) URL.revokeObjectURL(old);
        const ms = performance.now() - t0;
        editor.renders.push({ seq, ms });
        const d = editor.model.renderer;
        $("render-status").textContent =
          `render #${seq}: ${ms.toFixed(0)} ms round trip · ${d.backend} ${d.precision || ""}`;
        if ($("message").className === "error" && $("message").textContent.startsWith("render failed")) say("");
      }
      resolve();
    };
    img.onerror = () => resolve();
    img.src = url;
  });
}

// -- open, new scene, download --------------------------------------------------------------

async function newScene() {
  const [w, h] = $("scene-size").value.split("x").map(Number);
  try {
    const d = await fetchJson(`/api/scene?seed=${Number($("scene-seed").value) || 0}&width=${w}&height=${h}`);
    setMaps(decodeMaps(d), true);
    say(`synthetic scene ${$("scene-seed").value} (${w}x${h})`);
  } catch (e) {
    say(`new scene: ${e.message}`, "error");
  }
}

async function openFiles() {
  const files = [...$("open-files").files];
  if (!files.length) {
    say("choose a label map PNG first (with its instance map, or a Cityscapes frame's files)", "error");
    return;
  }
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  try {
    const d = await fetchJson("/api/decode", { method: "POST", body: form });
    setMaps(decodeMaps(d), true);
    const { label, instance } = d.opened;
    say(`opened ${label}${instance ? ` + ${instance}` : " (no instance map: one instance per class region)"}`);
  } catch (e) {
    say(`cannot open: ${e.message} (the current map is unchanged)`, "error");
  }
}

function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// -- start ----------------------------------------------------------------------------------

async function main() {
  try {
    editor.model = await fetchJson("/api/model");
  } catch (e) {
    say(`cannot load the model info: ${e.message}`, "error");
    return;
  }
  for (const c of editor.model.classes) editor.classById.set(c.id, c);
  for (const [w, h] of editor.model.scene_sizes) {
    const o = new Option(`${w}x${h}`, `${w}x${h}`, false, w === 512);
    $("scene-size").append(o);
  }
  buildPalette();
  const canvas = $("labels");
  canvas.addEventListener("pointerdown", onDown);
  canvas.addEventListener("pointermove", onMove);
  canvas.addEventListener("pointerup", onUp);
  canvas.addEventListener("pointercancel", onUp);
  $("new-scene").onclick = newScene;
  $("open").onclick = openFiles;
  $("undo").onclick = () => restore(editor.undo, editor.redo);
  $("redo").onclick = () => restore(editor.redo, editor.undo);
  $("seed").onchange = () => {
    const v = Math.max(0, Math.floor(Number($("seed").value) || 0));
    if (v === editor.state.seed) return;
    pushUndo();
    editor.state.seed = v;
    afterChange();
  };
  $("seed-random").onclick = () => {
    pushUndo();
    editor.state.seed = Math.floor(Math.random() * 1e9);
    afterChange();
  };
  $("download-label").onclick = async () => {
    const s = editor.state;
    download(await PNG.encodeGrey(s.label, s.width, s.height, 8), "edited_labelIds.png");
  };
  $("download-instance").onclick = async () => {
    const s = editor.state;
    download(await PNG.encodeGrey(s.instance, s.width, s.height, 16), "edited_instanceIds.png");
  };
  $("download-image").onclick = () => {
    if (editor.lastImage) download(editor.lastImage, "edited.png");
    else say("nothing rendered yet", "error");
  };
  document.addEventListener("keydown", (ev) => {
    const typing = ev.target.tagName === "INPUT" && ["text", "number"].includes(ev.target.type);
    if (!(ev.ctrlKey || ev.metaKey) || typing) return;
    const key = ev.key.toLowerCase();
    if (key === "z" && !ev.shiftKey) restore(editor.undo, editor.redo);
    else if (key === "y" || (key === "z" && ev.shiftKey)) restore(editor.redo, editor.undo);
    else return;
    ev.preventDefault();
  });
  await newScene();
  editor.undo = [];
  updateHistoryButtons();
}

main();

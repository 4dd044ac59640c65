// The page's core: API helpers, text-only DOM building, the tab registry and the run's side panel.
//
// Adding a view (a tab): write views/NAME.js exporting
//     export default { id: "name", title: "Name", available: (ctx) => true, render(root, ctx) { ... } };
// and add it to the list in views/index.js. render() is called once, the first time the tab is shown,
// with an empty <section>; build its content with ctx.el (strings always become text, never HTML).
// ctx: { api(path) -> JSON, postImage(file, k, params) -> JSON, el(tag, attrs, ...children), card(match),
//        swatch(colour family, hex),
//        show(viewId), showNeighbors(itemId), run (GET /api/run), labels (GET /api/labels) }.
import views from "./views/index.js";

const status = document.getElementById("status");

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.detail) || `${response.status} ${response.statusText}`);
  return body;
}

function postImage(file, k, params) {  // params: URLSearchParams of filter= and text= (facets.js)
  const form = new FormData();
  form.append("image", file);
  if (k) form.append("k", String(k));
  const query = params && String(params) ? `?${params}` : "";
  return api(`/api/search${query}`, { method: "POST", body: form });
}

// el("div", {class: "x", onclick: fn}, "text", child...): data only ever reaches the page as text.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A colour swatch: the item's colour (#rrggbb, set through the CSSOM: the page's CSP forbids style
// attributes, not this) and its family as text; nothing where the run has no colour.
function swatch(colour, hex) {
  if (!colour) return null;
  const node = el("span", { class: "swatch", "data-colour": colour, title: hex ? `${colour} ${hex}` : colour });
  if (/^#[0-9a-f]{6}$/i.test(hex || "")) node.style.backgroundColor = hex;
  else node.classList.add(`family-${colour}`);
  return el("span", { class: "colour" }, node, ` ${colour}`);
}

// One result tile: thumbnail, rank + label, colour swatch, distance, file name; click (or Enter) shows its
// neighbours.
function card(match, queryLabel) {
  const same = queryLabel !== undefined && queryLabel !== null && match.label === queryLabel;
  const open = () => ctx.showNeighbors(match.id);
  return el("div", { class: "card", tabindex: 0, "data-id": match.id, title: match.relpath, onclick: open,
                     onkeydown: (e) => { if (e.key === "Enter") open(); } },
    el("img", { src: `/thumbs/${match.id}`, alt: match.relpath, loading: "lazy" }),
    el("div", { class: "label" + (same ? " same" : "") }, match.rank ? `#${match.rank} ` : "", match.label),
    swatch(match.colour, match.colour_hex),
    match.distance !== undefined ? el("div", { class: "distance" }, `distance ${match.distance.toFixed(4)}`) : null,
    el("div", { class: "path" }, match.relpath));
}

const ctx = { api, postImage, el, card, swatch, run: null, labels: [], show, showNeighbors, setStatus };
const sections = new Map();

function setStatus(text, isError) {
  status.textContent = text || "";
  status.className = isError ? "error" : "";
}

function show(id) {
  for (const [viewId, entry] of sections) {
    const active = viewId === id;
    entry.section.hidden = !active;
    entry.button.setAttribute("aria-selected", String(active));
    if (active && !entry.rendered) { entry.rendered = true; entry.view.render(entry.section, ctx); }
  }
  return sections.get(id);
}

function showNeighbors(itemId) {
  const entry = show("search");
  if (entry && entry.view.neighbors) entry.view.neighbors(itemId, ctx);
}

function panel(run, labels) {
  const root = document.getElementById("panel");
  const rows = (pairs) => el("table", {}, pairs.map(([k, v]) =>
    el("tr", {}, el("td", {}, k), el("td", { class: "num" }, v))));
  const fmt = (v) => (typeof v === "number" && !Number.isInteger(v) ? v.toFixed(4) : String(v));
  root.replaceChildren(
    el("h2", {}, `Run ${run.path}`),
    el("ul", { class: "headline" }, run.headline.map((line) => el("li", {}, line))),
    el("p", { class: "muted" }, `model ${run.model}, ${run.layer} features, index ${run.index} (${run.metric})`),
    el("h2", {}, "Precision per label"),
    el("table", { id: "label-precision" },
      el("tr", {}, el("th", {}, "label"), el("th", {}, "items"), el("th", {}, "P@k")),
      labels.map((l) => el("tr", {}, el("td", {}, l.label), el("td", { class: "num" }, l.count),
        el("td", { class: "num" }, l.precision === null ? "–" : l.precision.toFixed(3))))),
    el("h2", {}, `Skipped files (${run.skipped.length})`),
    run.skipped.length ? el("ul", { id: "skipped" }, run.skipped.map((s) => el("li", {}, `${s.path}: ${s.reason}`)))
                       : el("p", { class: "muted" }, "none"),
    el("h2", {}, "Raw metrics"),
    rows(Object.entries(run.metrics).map(([k, v]) => [k, fmt(v)])));
}

async function main() {
  try {
    [ctx.run, ctx.labels] = await Promise.all([api("/api/run"), api("/api/labels").then((b) => b.labels)]);
  } catch (e) {
    setStatus(`cannot reach the service: ${e.message}`, true);
    return;
  }
  panel(ctx.run, ctx.labels);
  const nav = document.getElementById("tabs");
  const main = document.getElementById("views");
  for (const view of views) {
    if (view.available && !view.available(ctx)) continue;
    const section = el("section", { id: `view-${view.id}`, hidden: true });
    const button = el("button", { type: "button", role: "tab", id: `tab-${view.id}`, onclick: () => show(view.id) },
      view.title);
    nav.append(button);
    main.append(section);
    sections.set(view.id, { view, section, button, rendered: false });
  }
  show(views[0].id);
  setStatus(`${ctx.run.items} items`);
}

main();

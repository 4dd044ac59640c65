// Search by photo (drop or pick one), by words, and the neighbours of any item (click a result); the
// facets and the words limit each of them to the items they keep (facets.js); the colour control sets the
// photo and neighbour searches' colour mode: the query's colour first, colour-invariant, or "this, but in
// <family>" (the API's colour=, fashion.service.colourmode).
import facets from "../facets.js";

let results, query, heading, filters, colourMode;
let again = null;  // the last search, rerun when a facet or the words change

async function runSearch(file, ctx, k) {
  again = () => runSearch(file, ctx, kValue());
  ctx.setStatus("searching…");
  query.replaceChildren(ctx.el("img", { src: URL.createObjectURL(file), alt: "your photo" }),
    ctx.el("div", {}, ctx.el("div", {}, file.name), ctx.el("div", { class: "prediction" })));
  try {
    const body = await ctx.postImage(file, k, withColour(filters.params(new URLSearchParams())));
    filters.shown(body);
    query.querySelector(".prediction").after(queryColour(ctx, body));
    const prediction = query.querySelector(".prediction");
    if (body.prediction) {
      prediction.textContent = `predicted: ${body.prediction.label} (${(100 * body.prediction.probability).toFixed(0)} %)`;
    }
    heading.textContent = `${body.results.length} most similar items`;
    results.replaceChildren(...body.results.map((m) => ctx.card(m, body.prediction && body.prediction.label)));
    ctx.setStatus("");
  } catch (e) {
    heading.textContent = "";
    results.replaceChildren(ctx.el("p", { class: "error" }, e.message));
    ctx.setStatus("search failed", true);
  }
}

async function searchWords(ctx) {
  again = () => searchWords(ctx);
  if (!filters.text()) return;
  ctx.setStatus("searching…");
  try {
    const body = await ctx.api(`/api/search?${filters.params(new URLSearchParams({ k: 60 }))}`);
    filters.shown(body);
    query.replaceChildren(ctx.el("div", { class: "prediction" }, `“${filters.text()}”`));
    heading.textContent = `${body.total} items match` + (body.total > body.items.length ? `, the first ${body.items.length}` : "");
    results.replaceChildren(...body.items.map((item) => ctx.card(item)));
    ctx.setStatus("");
  } catch (e) {
    heading.textContent = "";
    results.replaceChildren(ctx.el("p", { class: "error" }, e.message));
    ctx.setStatus("search failed", true);
  }
}

async function neighbors(itemId, ctx) {
  again = () => neighbors(itemId, ctx);
  ctx.setStatus("loading neighbours…");
  try {
    const params = withColour(filters.params(new URLSearchParams({ k: kValue() })));
    const [item, body] = await Promise.all([ctx.api(`/api/items/${itemId}`),
                                            ctx.api(`/api/items/${itemId}/neighbors?${params}`)]);
    filters.shown(body);
    query.replaceChildren(ctx.el("img", { src: `/thumbs/${item.id}`, alt: item.relpath }),
      ctx.el("div", {}, ctx.el("div", { class: "label" }, item.label), ctx.swatch(item.colour, item.colour_hex),
        ctx.el("div", { class: "path" }, item.relpath), queryColour(ctx, body)));
    heading.textContent = `Neighbours of ${item.relpath}`;
    results.replaceChildren(...body.results.map((m) => ctx.card(m, item.label)));
    ctx.setStatus("");
  } catch (e) {
    results.replaceChildren(ctx.el("p", { class: "error" }, e.message));
    ctx.setStatus("failed", true);
  }
}

let kSelect;
const kValue = () => (kSelect ? Number(kSelect.value) : 10);

function withColour(params) {  // the colour control's mode, when one is chosen
  if (colourMode && colourMode.value) params.set("colour", colourMode.value);
  return params;
}

function queryColour(ctx, body) {  // what the colour mode did, as text
  if (!body.colour) return ctx.el("span");
  const mode = body.colour === "same" ? "its colour first" : body.colour === "any" ? "in any colour"
    : `this, but in ${body.colour}`;
  return ctx.el("div", { class: "muted", id: "colour-applied" },
    `colour: ${mode} (the query's colour: ${body.query_colour || "not found"})`);
}

function colourControl(ctx, onChange) {  // a <select>: no colour mode, same, any, then each family of the run
  colourMode = ctx.el("select", { id: "colour-mode", "aria-label": "colour", onchange: onChange },
    ctx.el("option", { value: "" }, "colour: as it looks"),
    ctx.el("option", { value: "same" }, "its colour first"),
    ctx.el("option", { value: "any" }, "any colour (shape only)"));
  ctx.api("/api/facets").then((body) => {
    const facet = body.facets.find((f) => f.column === "colour");
    if (!facet) { colourMode.hidden = true; return; }
    colourMode.append(...facet.values.map((v) => ctx.el("option", { value: v.value }, `this, but in ${v.value}`)));
  }).catch(() => { colourMode.hidden = true; });
  return colourMode;
}

function render(root, ctx) {
  const input = ctx.el("input", { type: "file", accept: "image/*", id: "photo",
    onchange: () => input.files[0] && runSearch(input.files[0], ctx, kValue()) });
  kSelect = ctx.el("select", { id: "k" }, [5, 10, 20, 50].map((n) => ctx.el("option", { value: n }, n)));
  kSelect.value = "10";
  const drop = ctx.el("div", { class: "drop", id: "drop" }, "Drop a photo here, or ", input);
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) runSearch(e.dataTransfer.files[0], ctx, kValue());
  });
  filters = facets(ctx, "search", () => (again ? again() : searchWords(ctx)));
  const words = ctx.el("button", { type: "button", id: "search-words", onclick: () => searchWords(ctx) },
    "search words");
  query = ctx.el("div", { class: "query", id: "query" });
  heading = ctx.el("h2", { id: "results-heading" });
  results = ctx.el("div", { class: "grid", id: "results" });
  const colour = colourControl(ctx, () => again && again());
  root.append(drop, ctx.el("div", { class: "controls" }, ctx.el("label", { for: "k" }, "matches "), kSelect, colour,
    ctx.el("span", { class: "muted" }, "click any result to see its own neighbours"), words), filters.node, query,
    heading, results);
}

export default { id: "search", title: "Search", render, neighbors };

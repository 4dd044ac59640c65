// Search by photo (drop or pick one), and the neighbours of any item (click a result).
let results, query, heading;

async function runSearch(file, ctx, k) {
  ctx.setStatus("searching…");
  query.replaceChildren(ctx.el("img", { src: URL.createObjectURL(file), alt: "your photo" }),
    ctx.el("div", {}, ctx.el("div", {}, file.name), ctx.el("div", { class: "prediction" })));
  try {
    const body = await ctx.postImage(file, k);
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

async function neighbors(itemId, ctx) {
  ctx.setStatus("loading neighbours…");
  try {
    const [item, body] = await Promise.all([ctx.api(`/api/items/${itemId}`),
                                            ctx.api(`/api/items/${itemId}/neighbors?k=${kValue()}`)]);
    query.replaceChildren(ctx.el("img", { src: `/thumbs/${item.id}`, alt: item.relpath }),
      ctx.el("div", {}, ctx.el("div", { class: "label" }, item.label), ctx.el("div", { class: "path" }, item.relpath)));
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
  query = ctx.el("div", { class: "query", id: "query" });
  heading = ctx.el("h2", { id: "results-heading" });
  results = ctx.el("div", { class: "grid", id: "results" });
  root.append(drop, ctx.el("div", { class: "controls" }, ctx.el("label", { for: "k" }, "matches "), kSelect,
    ctx.el("span", { class: "muted" }, "click any result to see its own neighbours")), query, heading, results);
}

export default { id: "search", title: "Search", render, neighbors };

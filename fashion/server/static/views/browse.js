// Every item of the run, page by page, filtered by label, by file name, by facets and by words.
import facets from "../facets.js";

const PAGE = 60;

function render(root, ctx) {
  let offset = 0;
  const label = ctx.el("select", { id: "browse-label" }, ctx.el("option", { value: "" }, "all labels"),
    ctx.labels.map((l) => ctx.el("option", { value: l.label }, `${l.label} (${l.count})`)));
  const q = ctx.el("input", { type: "search", id: "browse-q", placeholder: "file name contains…" });
  const grid = ctx.el("div", { class: "grid", id: "browse-grid" });
  const info = ctx.el("span", { id: "browse-info" });
  const prev = ctx.el("button", { type: "button", id: "browse-prev", onclick: () => load(offset - PAGE) }, "previous");
  const next = ctx.el("button", { type: "button", id: "browse-next", onclick: () => load(offset + PAGE) }, "next");
  const filters = facets(ctx, "browse", () => load(0));

  async function load(start) {
    offset = Math.max(0, start);
    const params = new URLSearchParams({ offset, limit: PAGE });
    if (label.value) params.set("label", label.value);
    if (q.value) params.set("q", q.value);
    filters.params(params);
    try {
      const page = await ctx.api(`/api/items?${params}`);
      filters.shown(page);
      grid.replaceChildren(...page.items.map((item) => ctx.card(item)));
      const last = Math.min(page.total, offset + page.items.length);
      info.textContent = page.total ? `${offset + 1}–${last} of ${page.total}` : "no items match";
      prev.disabled = offset === 0;
      next.disabled = last >= page.total;
    } catch (e) {
      grid.replaceChildren(ctx.el("p", { class: "error" }, e.message));
    }
  }
  let timer;
  label.addEventListener("change", () => load(0));
  q.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => load(0), 250); });
  root.append(ctx.el("div", { class: "controls" }, label, q), filters.node, grid, ctx.el("div", { class: "pager" }, prev, info, next));
  load(0);
}

export default { id: "browse", title: "Browse", render };

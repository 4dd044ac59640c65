// Duplicate clusters of the run (its duplicates.csv), side by side, the leaking ones (spanning splits) first.
const PAGE = 20;

function render(root, ctx) {
  let offset = 0;
  const info = ctx.el("p", { id: "dups-info" });
  const list = ctx.el("div", { id: "dups-list" });
  const prev = ctx.el("button", { type: "button", id: "dups-prev", onclick: () => load(offset - PAGE) }, "previous");
  const next = ctx.el("button", { type: "button", id: "dups-next", onclick: () => load(offset + PAGE) }, "next");

  async function load(start) {
    offset = Math.max(0, start);
    try {
      const body = await ctx.api(`/api/duplicates?offset=${offset}&limit=${PAGE}`);
      const s = body.summary;
      info.textContent = s
        ? `${s.n_pairs} pairs in ${s.n_clusters} clusters; ${s.cross_split_pairs} pairs cross splits, ` +
          `${s.label_disagreeing_pairs} have different labels; test photos with a copy in train: ` +
          `${s.leaks.test_in_train}, in valid: ${s.leaks.test_in_valid}. Leaks first; click a photo for its neighbours.`
        : "This run has no duplicates table (made with --no-insight?).";
      list.replaceChildren(...body.clusters.map((c) => ctx.el("div", { class: "cluster", "data-cluster": c.cluster },
        ctx.el("h3", {}, `cluster ${c.cluster}: ${c.items.length} photos`,
          c.leak ? ctx.el("span", { class: "error" }, ` — leak across ${c.splits.join(" / ")}`) : "",
          c.labels.length > 1 ? ctx.el("span", { class: "error" }, ` — labels differ: ${c.labels.join(", ")}`) : ""),
        ctx.el("div", { class: "grid" }, c.items.map((item) => {
          const tile = ctx.card(item);
          tile.append(ctx.el("div", { class: "muted" }, item.split));
          return tile;
        })))));
      prev.disabled = offset === 0;
      next.disabled = offset + body.clusters.length >= body.total;
    } catch (e) {
      list.replaceChildren(ctx.el("p", { class: "error" }, e.message));
    }
  }
  root.append(info, list, ctx.el("div", { class: "pager" }, prev, next));
  load(0);
}

export default { id: "duplicates", title: "Duplicates", available: () => true, render };

// Photos whose nearest neighbours mostly carry one other label (the run's suspects.csv): no classifier needed.
function render(root, ctx) {
  const grid = ctx.el("div", { class: "grid", id: "knn-suspects-grid" });
  root.append(ctx.el("p", {}, "Photos whose neighbours mostly have one other label — mislabelled, or a photo " +
    "showing several garments. Click one for its neighbours."), grid);
  ctx.api("/api/knn-suspects").then((body) => {
    if (!body.suspects.length) { grid.replaceChildren(ctx.el("p", { class: "muted" }, "none")); return; }
    grid.replaceChildren(...body.suspects.map((s) => {
      const tile = ctx.card({ id: s.id, label: s.label, relpath: s.relpath });
      tile.append(ctx.el("div", { class: "error" },
        `neighbours: ${(100 * s.neighbor_share).toFixed(0)} % ${s.neighbor_label}, ${(100 * s.own_share).toFixed(0)} % ${s.label}`));
      return tile;
    }));
  }, (e) => grid.replaceChildren(ctx.el("p", { class: "error" }, e.message)));
}

export default { id: "knn-suspects", title: "Neighbour suspects", available: () => true, render };

// Images whose label the trained model disputes (the training's suspect_labels.csv), most suspect first.
function render(root, ctx) {
  const grid = ctx.el("div", { class: "grid", id: "suspects-grid" });
  const trust = ctx.el("p", { id: "suspects-trust" });
  root.append(ctx.el("p", {}, "Photos whose given label the trained classifier strongly disputes (cleanlab)."), trust, grid);
  ctx.api("/api/suspects").then((body) => {
    // a weak model disputes many correct labels: say so above the list (metrics.json's suspect_labels block)
    if (body.trust && body.trust.caveat) {
      trust.className = "error";
      trust.textContent = `Caveat: ${body.trust.caveat}.`;
    } else if (body.trust) {
      trust.textContent = `The model is right on ${(100 * body.trust.model_accuracy).toFixed(0)} % of the photos it judged.`;
    }
    grid.replaceChildren(...body.suspects.map((s) => {
      const tile = ctx.card({ id: s.id, label: s.label, relpath: s.relpath });
      tile.append(ctx.el("div", { class: "error" },
        `model says ${s.predicted} (${(100 * s.predicted_prob).toFixed(0)} %), label ${(100 * s.label_prob).toFixed(0)} %`));
      return tile;
    }));
  }, (e) => grid.replaceChildren(ctx.el("p", { class: "error" }, e.message)));
}

export default { id: "suspects", title: "Suspect labels", available: (ctx) => ctx.run.n_suspects > 0, render };

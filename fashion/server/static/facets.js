// Facets and the search box's words, shared by the search and browse tabs (the API's filter= and text=).
//
// facets(ctx, prefix, onChange) → { node, params(URLSearchParams) }: a text box for words ("red summer
// dress, not black": parsed by the server, words it did not understand shown back as ignored), then one
// group per facet of GET /api/facets: a checkbox per value (label, and each metadata column with few
// values; checked values of a group are ORed, groups ANDed) and a min / max pair for a number or date.
// params() adds the current text= and filter= to a request's parameters. Everything is text (ctx.el).

function quote(value) {  // a value holding a comma or a quote is quoted (fashion.filters' grammar)
  return /[,"]/.test(value) ? `"${value.replaceAll('"', "")}"` : value;
}

export default function facets(ctx, prefix, onChange) {
  const changed = () => onChange();
  let timer;
  const text = ctx.el("input", { type: "search", id: `${prefix}-text`, size: 32,
    placeholder: "words: red summer dress, not black…", "aria-label": "search words",
    onkeydown: (e) => { if (e.key === "Enter") { clearTimeout(timer); changed(); } } });
  text.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(changed, 400); });
  const ignored = ctx.el("span", { class: "muted", id: `${prefix}-ignored` });
  const groups = ctx.el("div", { class: "facets", id: `${prefix}-facets` });
  const readers = [];  // one function per group: its clauses

  function valueGroup(facet) {
    const boxes = facet.values.map((v) => {
      const box = ctx.el("input", { type: "checkbox", value: v.value, "data-column": facet.column, onchange: changed });
      const colour = facet.column === "colour" || facet.column === "colour_2";  // a swatch of the family
      return ctx.el("label", { class: "facet-value" }, box,
        colour ? ctx.el("span", { class: `swatch family-${v.value}` }) : null, ` ${v.value} (${v.count})`);
    });
    readers.push(() => {
      const on = boxes.map((b) => b.querySelector("input")).filter((b) => b.checked).map((b) => quote(b.value));
      return on.length ? [`${facet.column} in ${on.join(",")}`] : [];
    });
    return boxes;
  }

  function rangeGroup(facet) {
    const type = facet.kind === "date" ? "date" : "number";
    const hint = (v) => (v === null ? "" : type === "date" ? v.slice(0, 10) : String(v));
    const low = ctx.el("input", { type, id: `${prefix}-${facet.column}-min`, placeholder: `min ${hint(facet.min)}`,
      "aria-label": `${facet.column} at least`, step: "any", onchange: changed });
    const high = ctx.el("input", { type, id: `${prefix}-${facet.column}-max`, placeholder: `max ${hint(facet.max)}`,
      "aria-label": `${facet.column} at most`, step: "any", onchange: changed });
    readers.push(() => [low.value ? `${facet.column}>=${low.value}` : null,
                        high.value ? `${facet.column}<=${high.value}` : null].filter(Boolean));
    return [low, " – ", high];
  }

  ctx.api("/api/facets").then((body) => {
    groups.replaceChildren(...body.facets.map((facet) => ctx.el("fieldset", { class: "facet", "data-facet": facet.column },
      ctx.el("legend", {}, facet.column),
      facet.values ? valueGroup(facet) : rangeGroup(facet))));
  }).catch((e) => groups.replaceChildren(ctx.el("p", { class: "error" }, e.message)));

  return {
    node: ctx.el("div", { class: "filters" }, ctx.el("div", { class: "controls" }, text, ignored), groups),
    text: () => text.value.trim(),
    params(params) {
      if (text.value.trim()) params.set("text", text.value.trim());
      for (const read of readers) for (const clause of read()) params.append("filter", clause);
      return params;
    },
    shown(body) {  // what the server applied and ignored, as text
      const words = body.ignored && body.ignored.length ? `ignored: ${body.ignored.join(", ")}` : "";
      const applied = body.filters && body.filters.length ? `only ${body.filters.join(" and ")}` : "";
      ignored.textContent = [applied, words].filter(Boolean).join("; ");
    },
  };
}

// The embedding map (the run's map.csv): points coloured by label, duplicates ringed red, neighbour
// suspects crossed. Wheel zooms at the pointer, drag pans, a click opens the nearest photo's neighbours.
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf"];

function render(root, ctx) {
  const canvas = ctx.el("canvas", { id: "map-canvas", width: 900, height: 640, tabindex: 0 });
  const info = ctx.el("p", { id: "map-info", class: "muted" }, "loading…");
  const legend = ctx.el("div", { class: "controls", id: "map-legend" });
  root.append(info, legend, canvas);
  let points = [];
  let view = { scale: 1, dx: 0, dy: 0 };
  let box = null;
  const colour = new Map();

  function project(p) {
    const s = Math.min(canvas.width / (box.x1 - box.x0 || 1), canvas.height / (box.y1 - box.y0 || 1)) * 0.92;
    const x = (p.x - (box.x0 + box.x1) / 2) * s + canvas.width / 2;
    const y = canvas.height / 2 - (p.y - (box.y0 + box.y1) / 2) * s;
    return [x * view.scale + view.dx, y * view.scale + view.dy];
  }

  function draw() {
    const g = canvas.getContext("2d");
    g.clearRect(0, 0, canvas.width, canvas.height);
    const r = Math.max(2, Math.min(6, 3 * Math.sqrt(view.scale)));
    for (const p of points) {
      const [x, y] = project(p);
      if (x < -10 || y < -10 || x > canvas.width + 10 || y > canvas.height + 10) continue;
      g.fillStyle = colour.get(p.label);
      g.beginPath(); g.arc(x, y, r, 0, 2 * Math.PI); g.fill();
      if (p.duplicate) { g.strokeStyle = "#d00"; g.lineWidth = 1.5; g.beginPath(); g.arc(x, y, r + 3, 0, 2 * Math.PI); g.stroke(); }
      if (p.suspect) { g.strokeStyle = "#000"; g.lineWidth = 1.2; g.beginPath();
        g.moveTo(x - r - 2, y - r - 2); g.lineTo(x + r + 2, y + r + 2); g.moveTo(x + r + 2, y - r - 2); g.lineTo(x - r - 2, y + r + 2); g.stroke(); }
    }
  }

  function at(event) {
    const rect = canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) * canvas.width / rect.width, (event.clientY - rect.top) * canvas.height / rect.height];
  }

  function nearest(x, y) {
    let best = null, bestD = Infinity;
    for (const p of points) {
      const [px, py] = project(p);
      const d = (px - x) ** 2 + (py - y) ** 2;
      if (d < bestD) { bestD = d; best = p; }
    }
    return bestD <= 144 ? best : null;
  }

  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const [x, y] = at(e);
    const f = e.deltaY < 0 ? 1.25 : 0.8;
    view = { scale: view.scale * f, dx: x - (x - view.dx) * f, dy: y - (y - view.dy) * f };
    draw();
  }, { passive: false });
  let drag = null;
  canvas.addEventListener("mousedown", (e) => { drag = { start: at(e), view: { ...view }, moved: false }; });
  canvas.addEventListener("mousemove", (e) => {
    if (!drag) {
      const p = nearest(...at(e));
      canvas.title = p ? `${p.label}: item ${p.id}` : "";
      return;
    }
    const [x, y] = at(e);
    if (Math.abs(x - drag.start[0]) + Math.abs(y - drag.start[1]) > 3) drag.moved = true;
    view = { ...drag.view, dx: drag.view.dx + x - drag.start[0], dy: drag.view.dy + y - drag.start[1] };
    draw();
  });
  canvas.addEventListener("mouseup", (e) => {
    const click = drag && !drag.moved;
    drag = null;
    if (!click) return;
    const p = nearest(...at(e));
    if (p) ctx.showNeighbors(p.id);
  });

  ctx.api("/api/map").then((body) => {
    points = body.points;
    if (!points.length) { info.textContent = "This run has no map (made with --no-insight?)."; return; }
    box = { x0: Math.min(...points.map((p) => p.x)), x1: Math.max(...points.map((p) => p.x)),
            y0: Math.min(...points.map((p) => p.y)), y1: Math.max(...points.map((p) => p.y)) };
    [...new Set(points.map((p) => p.label))].sort().forEach((label, i) => colour.set(label, COLORS[i % COLORS.length]));
    legend.replaceChildren(...[...colour].map(([label, c]) => {
      const swatch = ctx.el("canvas", { width: 10, height: 10 });
      const g = swatch.getContext("2d"); g.fillStyle = c; g.fillRect(0, 0, 10, 10);
      return ctx.el("span", {}, swatch, ` ${label}`);
    }));
    const nd = points.filter((p) => p.duplicate).length, ns = points.filter((p) => p.suspect).length;
    info.textContent = `${points.length} photos laid out by ${body.method}; ${nd} duplicates (red ring), ` +
      `${ns} suspect labels (cross). Wheel: zoom; drag: pan; click a point: its photo and neighbours.`;
    draw();
  }, (e) => { info.textContent = e.message; info.className = "error"; });
}

export default { id: "map", title: "Map", available: () => true, render };

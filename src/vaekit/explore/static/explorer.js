// vaekit explore: one Panel per run. Every decode goes to the server (model.decode, the run's one likelihood
// path); this script only draws the map, sends codes and shows what comes back.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
const MAP_SIZE = 420;
const PICK_RADIUS = 6;  // pixels: a press or hover this close to a point means that point

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children || []) node.appendChild(child);
  return node;
}

async function api(path, body) {
  const init = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify(body)};
  const response = await fetch(path, init);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function renderOutput(output) {
  // One decoded output as the run's view sent it: an image (PNG) or a table row in the data's units.
  if (output.kind === "image") return el("img", {class: "out", src: output.png, alt: "decoded output"});
  if (output.kind === "items") {  // a recommender: the top items of a decoded point, or a user's items
    const rows = output.items.map((it) => el("li", {text: `${it.title} (${it.id}) ${Number(it.score).toPrecision(3)}`}));
    return el("div", {class: "out items"}, [el("small", {text: output.what}), el("ol", {}, rows)]);
  }
  if (output.kind === "table") {
    const head = el("tr", {}, output.columns.map((c) => el("th", {text: c})));
    const row = el("tr", {}, output.values.map((v) => el("td", {text: Number(v).toPrecision(4)})));
    return el("table", {class: "out"}, [head, row]);
  }
  return el("pre", {text: JSON.stringify(output)});
}

class Panel {
  constructor(index, info) {
    this.index = index;
    this.info = info;
    this.base = `/api/runs/${index}`;
    this.z = new Array(info.latent_dim).fill(0);
    this.points = [];
    this.labels = null;
    this.method = Object.keys(info.methods)[0];
    this.marker = null;       // map coordinate of the last decode made on the map
    this.selected = null;     // map point whose code the sliders started from
    this.hovered = null;
    this.dragging = false;
    this.inFlight = false;
    this.pending = null;
    this.decodes = 0;
    this.ends = {A: null, B: null};
    this.build();
  }

  build() {
    const info = this.info;
    const d = info.latent_dim;
    this.root = el("section", {class: "panel", id: `run-${this.index}`, "data-decodes": "0"});
    const what = `${info.kind.toUpperCase()}, d = ${d}, ${info.likelihood}, ${info.n_points} ${info.split} points`;
    this.root.appendChild(el("h2", {}, [document.createTextNode(info.name + " "), el("small", {text: what})]));

    const controls = el("div", {class: "controls"});
    this.methodSelect = el("select", {class: "method", "aria-label": "map"});
    for (const [name, why] of Object.entries(info.methods)) {
      const option = el("option", {value: name, text: why ? `${name} (unavailable)` : name});
      if (why) { option.disabled = true; option.title = why; }
      this.methodSelect.appendChild(option);
    }
    this.methodSelect.addEventListener("change", () => this.loadMap(this.methodSelect.value));
    controls.appendChild(el("label", {}, [document.createTextNode("map "), this.methodSelect]));
    if (info.condition === "label") {
      this.labelSelect = el("select", {class: "label", "aria-label": "label"});
      for (let k = 0; k < info.n_classes; k++) {
        this.labelSelect.appendChild(el("option", {value: String(k), text: info.class_names[k] || String(k)}));
      }
      this.labelSelect.addEventListener("change", () => this.decodeCode(this.z));
      controls.appendChild(el("label", {}, [document.createTextNode("label "), this.labelSelect]));
    }
    this.legend = el("div", {class: "legend"});
    controls.appendChild(this.legend);
    this.root.appendChild(controls);

    this.canvas = el("canvas", {class: "map", width: String(MAP_SIZE), height: String(MAP_SIZE)});
    this.output = el("div", {class: "output decoded"});
    this.zline = el("div", {class: "zline"});
    this.hoverIn = el("div", {class: "hover-input"});
    this.hoverOut = el("div", {class: "hover-reconstruction"});
    this.hoverText = el("div", {class: "zline"});
    const side = el("div", {class: "side"}, [
      el("div", {}, [el("h3", {text: "decoded"}), this.output, this.zline]),
      el("div", {class: "hover"}, [el("h3", {text: "hovered point"}),
        el("div", {class: "pair"}, [el("figure", {}, [this.hoverIn, el("figcaption", {text: "input"})]),
                                    el("figure", {}, [this.hoverOut, el("figcaption", {text: "reconstruction"})])]),
        this.hoverText])]);
    this.root.appendChild(el("div", {class: "row"}, [this.canvas, side]));

    this.sliders = el("div", {class: "sliders"});
    this.sliderInputs = new Array(d);
    for (const dim of info.dims) {
      const input = el("input", {type: "range", min: String(dim.min), max: String(dim.max), step: "0.01",
                                 value: "0", "data-dim": String(dim.dim), "aria-label": `z${dim.dim}`});
      input.addEventListener("input", () => {
        this.z[dim.dim] = Number(input.value);
        this.marker = null;
        this.decodeCode(this.z.slice());
      });
      this.sliderInputs[dim.dim] = input;
      const kl = dim.kl === null ? "" : ` · KL ${dim.kl.toFixed(2)}`;
      this.sliders.appendChild(el("label", {}, [el("span", {text: `z${dim.dim}${kl}`}), input]));
    }
    this.root.appendChild(el("h3", {text: "latent dimensions (most used first)"}));
    this.root.appendChild(this.sliders);

    this.strip = el("div", {class: "strip"});
    this.steps = el("input", {type: "number", min: "2", max: "32", value: "8", class: "steps", "aria-label": "steps"});
    const setA = el("button", {class: "set-a", text: "A = current code"});
    const setB = el("button", {class: "set-b", text: "B = current code"});
    const go = el("button", {class: "interpolate", text: "interpolate A → B"});
    setA.addEventListener("click", () => { this.ends.A = this.z.slice(); this.drawMap(); });
    setB.addEventListener("click", () => { this.ends.B = this.z.slice(); this.drawMap(); });
    go.addEventListener("click", () => this.interpolate());
    this.root.appendChild(el("div", {class: "interp"}, [setA, setB, document.createTextNode("steps "), this.steps, go]));
    this.root.appendChild(this.strip);
    if (info.prior) this.buildPrior(info.prior);
    this.error = el("p", {class: "error"});
    this.root.appendChild(this.error);

    this.canvas.addEventListener("mousedown", (e) => { this.dragging = true; this.press(e, true); });
    this.canvas.addEventListener("mousemove", (e) => this.dragging ? this.press(e, false) : this.hover(e));
    window.addEventListener("mouseup", () => { this.dragging = false; });
    this.canvas.addEventListener("mouseleave", () => { this.dragging = false; });
  }

  buildPrior(name) {
    // Draws z ~ p(z) from the run's own prior (a learned one's, not N(0, I)), decoded by the server; each
    // press draws new ones (the next seed); a click on a draw loads its code into the sliders.
    this.priorSeed = 0;
    this.priorCount = el("input", {type: "number", min: "1", max: "32", value: "8", class: "prior-n",
                                   "aria-label": "draws"});
    const draw = el("button", {class: "draw-prior", text: "draw from p(z)"});
    draw.addEventListener("click", () => this.drawPrior());
    this.priorStrip = el("div", {class: "strip prior-strip"});
    this.root.appendChild(el("h3", {text: `samples from the prior: ${name}`}));
    this.root.appendChild(el("div", {class: "interp"}, [document.createTextNode("draws "), this.priorCount, draw]));
    this.root.appendChild(this.priorStrip);
  }

  async drawPrior() {
    const seed = this.priorSeed++;
    try {
      const data = await api(`${this.base}/prior`, {n: Number(this.priorCount.value), seed: seed,
                                                    ...this.condition()});
      this.priorCodes = data.z;
      this.priorStrip.replaceChildren(...data.outputs.map((output, i) => {
        const shown = renderOutput(output);
        shown.classList.add("prior-draw");
        shown.title = "z = [" + data.z[i].map((v) => v.toFixed(2)).join(", ") + "]: click to explore it";
        shown.addEventListener("click", () => { this.marker = null; this.decodeCode(data.z[i].slice()); });
        return shown;
      }));
      this.root.dataset.priorSeed = String(seed);
      this.root.dataset.priorDraws = String(data.outputs.length);
      this.error.textContent = "";
    } catch (err) { this.fail(err); }
  }

  condition() {
    const extra = {};
    if (this.labelSelect) extra.label = Number(this.labelSelect.value);
    if (this.info.condition === "covariates" && this.selected !== null) extra.point = this.selected;
    return extra;
  }

  async loadMap(method) {
    this.method = method;
    this.root.dataset.ready = "0";
    const data = await api(`${this.base}/map?method=${encodeURIComponent(method)}`);
    this.points = data.points;
    this.labels = data.labels;
    let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
    for (const [u, v] of this.points) {
      x0 = Math.min(x0, u); x1 = Math.max(x1, u); y0 = Math.min(y0, v); y1 = Math.max(y1, v);
    }
    const padX = 0.08 * (x1 - x0 || 1), padY = 0.08 * (y1 - y0 || 1);
    this.bounds = [x0 - padX, x1 + padX, y0 - padY, y1 + padY];
    this.marker = null;
    this.drawLegend();
    this.drawMap();
    this.root.dataset.ready = "1";
  }

  toCanvas(u, v) {
    const [x0, x1, y0, y1] = this.bounds;
    return [(u - x0) / (x1 - x0) * MAP_SIZE, (1 - (v - y0) / (y1 - y0)) * MAP_SIZE];
  }

  fromCanvas(px, py) {
    const [x0, x1, y0, y1] = this.bounds;
    return [x0 + px / MAP_SIZE * (x1 - x0), y0 + (1 - py / MAP_SIZE) * (y1 - y0)];
  }

  // The most isolated map point: the one farthest (in canvas pixels) from its nearest neighbour.
  isolatedPoint() {
    const px = this.points.map(([u, v]) => this.toCanvas(u, v));
    let best = 0, bestGap = -1;
    px.forEach(([x, y], j) => {
      let gap = Infinity;
      px.forEach(([x2, y2], k) => { if (k !== j) gap = Math.min(gap, Math.hypot(x - x2, y - y2)); });
      if (gap > bestGap) { best = j; bestGap = gap; }
    });
    return best;
  }

  // Client coordinates of map point j (for tests and tools).
  clientPosition(j) {
    const rect = this.canvas.getBoundingClientRect();
    const [px, py] = this.toCanvas(this.points[j][0], this.points[j][1]);
    return [rect.left + this.canvas.clientLeft + px, rect.top + this.canvas.clientTop + py];
  }

  drawLegend() {
    this.legend.replaceChildren();
    if (!this.labels) return;
    const n = Math.max(...this.labels) + 1;
    for (let k = 0; k < Math.min(n, PALETTE.length); k++) {
      const swatch = el("i"); swatch.style.background = PALETTE[k];
      this.legend.appendChild(el("span", {}, [swatch, document.createTextNode(this.info.class_names[k] || String(k))]));
    }
  }

  drawMap() {
    const ctx = this.canvas.getContext("2d");
    ctx.clearRect(0, 0, MAP_SIZE, MAP_SIZE);
    if (!this.bounds) return;
    ctx.globalAlpha = 0.75;
    this.points.forEach(([u, v], j) => {
      const [px, py] = this.toCanvas(u, v);
      ctx.fillStyle = this.labels ? PALETTE[this.labels[j] % PALETTE.length] : "#1f77b4";
      ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
    });
    ctx.globalAlpha = 1;
    if (this.hovered !== null) this.ring(this.points[this.hovered], "#000", 5);
    if (this.selected !== null) this.ring(this.points[this.selected], "#d00", 6);
    if (this.marker) {
      const [px, py] = this.toCanvas(this.marker[0], this.marker[1]);
      ctx.strokeStyle = "#000"; ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.moveTo(px - 8, py); ctx.lineTo(px + 8, py); ctx.moveTo(px, py - 8); ctx.lineTo(px, py + 8);
      ctx.stroke();
    }
  }

  ring(point, colour, radius) {
    const ctx = this.canvas.getContext("2d");
    const [px, py] = this.toCanvas(point[0], point[1]);
    ctx.strokeStyle = colour; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(px, py, radius, 0, 2 * Math.PI); ctx.stroke();
  }

  nearest(e) {
    const rect = this.canvas.getBoundingClientRect();  // the drawing starts inside the canvas's border
    const px = e.clientX - rect.left - this.canvas.clientLeft, py = e.clientY - rect.top - this.canvas.clientTop;
    let best = null, bestDist = PICK_RADIUS + 1e-9;
    this.points.forEach(([u, v], j) => {
      const [qx, qy] = this.toCanvas(u, v);
      const dist = Math.hypot(qx - px, qy - py);
      if (dist < bestDist) { best = j; bestDist = dist; }
    });
    return {j: best, uv: this.fromCanvas(px, py)};
  }

  async press(e, start) {
    // A press on a point starts from that point's own code (sliders included); anywhere else, and while
    // dragging, the map's code of that place is decoded.
    const {j, uv} = this.nearest(e);
    if (start && j !== null) {
      this.selected = j;
      this.marker = null;
      try {
        const point = await this.pointData(j);
        this.decode({z: point.z});
      } catch (err) { this.fail(err); }
      return;
    }
    this.marker = uv;
    this.decode({map: uv, method: this.method});
  }

  async pointData(j) {
    if (!this.cache) this.cache = new Map();
    if (!this.cache.has(j)) this.cache.set(j, await api(`${this.base}/points/${j}`));
    return this.cache.get(j);
  }

  async hover(e) {
    const {j} = this.nearest(e);
    if (j === this.hovered) return;
    this.hovered = j;
    this.drawMap();
    if (j === null) return;
    try {
      const point = await this.pointData(j);
      if (this.hovered !== j) return;
      this.hoverIn.replaceChildren(renderOutput(point.input));
      this.hoverOut.replaceChildren(renderOutput(point.reconstruction));
      const label = point.label === null ? "" : `label ${point.label}, `;
      this.hoverText.textContent = `point ${j} (${label}row ${point.row})`;
      this.root.dataset.hoverPoint = String(j);
    } catch (err) { this.fail(err); }
  }

  decodeCode(z) { this.decode({z: z}); }

  async decode(body) {
    // Latest wins: while one request is in flight, only the newest waiting one is kept.
    this.pending = {...body, ...this.condition()};
    if (this.inFlight) return;
    this.inFlight = true;
    try {
      while (this.pending) {
        const request = this.pending;
        this.pending = null;
        const data = await api(`${this.base}/decode`, request);
        this.show(data);
      }
      this.error.textContent = "";
    } catch (err) {
      this.pending = null;
      this.fail(err);
    } finally {
      this.inFlight = false;
    }
  }

  show(data) {
    this.z = data.z;
    this.output.replaceChildren(renderOutput(data.output));
    this.zline.textContent = "z = [" + data.z.map((v) => v.toFixed(2)).join(", ") + "]";
    for (let i = 0; i < this.z.length; i++) this.sliderInputs[i].value = String(this.z[i]);
    this.decodes += 1;
    this.root.dataset.decodes = String(this.decodes);
    this.drawMap();
  }

  async interpolate() {
    const a = this.ends.A, b = this.ends.B;
    if (!a || !b) { this.error.textContent = "set A and B first (decode a place, then press A or B)"; return; }
    try {
      const data = await api(`${this.base}/interpolate`, {from: a, to: b, steps: Number(this.steps.value),
                                                          ...this.condition()});
      this.strip.replaceChildren(...data.outputs.map(renderOutput));
      this.root.dataset.interpolated = String(data.outputs.length);
      this.error.textContent = "";
    } catch (err) { this.fail(err); }
  }

  fail(err) { this.error.textContent = String(err.message || err); }
}

async function main() {
  const status = document.getElementById("status");
  try {
    const {runs} = await api("/api/runs");
    const host = document.getElementById("panels");
    window.explorer = {panels: runs.map((info, i) => new Panel(i, info))};
    for (const panel of window.explorer.panels) host.appendChild(panel.root);
    await Promise.all(window.explorer.panels.map((p) => p.loadMap(p.method)));
    window.explorer.panels.forEach((p) => { p.cache = new Map(); });
    await Promise.all(window.explorer.panels.map((p) => p.decode({z: p.z})));
    document.body.dataset.ready = "1";
  } catch (err) {
    status.textContent = `error: ${err.message || err}`;
    status.className = "error";
  }
}

main();

//! A small node-and-edge diagram and its two renderings: hand-written SVG (laid out here, no
//! graphviz needed) and DOT text for those who prefer graphviz's own layout.
//!
//! Positions are given by the space-specific builders in grid units (column, row); this module
//! turns them into pixels, routes the edges as cubic curves, places edge labels where they do
//! not overlap other labels or nodes, and fits the view box to what was drawn.

use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Input,
    Inner,
    Output,
}

impl Kind {
    /// The fill colours of the DARTS paper's figures (graphviz colour names in the DOT text).
    fn colours(self) -> (&'static str, &'static str) {
        match self {
            Kind::Input => ("#b4eeb4", "darkseagreen2"),
            Kind::Inner => ("#add8e6", "lightblue"),
            Kind::Output => ("#eee8aa", "palegoldenrod"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    /// Unique within the diagram: the DOT node name and the SVG `data-node`.
    pub id: String,
    pub text: String,
    /// Subscript after `text` (c_{k-2} is text "c", sub "k-2").
    pub sub: Option<String>,
    /// A small line under the box (the macro chain's layer numbers).
    pub caption: Option<String>,
    pub kind: Kind,
    pub col: f64,
    pub row: f64,
}

impl Node {
    pub fn new(id: impl Into<String>, text: impl Into<String>, kind: Kind, col: f64, row: f64) -> Node {
        Node { id: id.into(), text: text.into(), sub: None, caption: None, kind, col, row }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Right side of the source to the left side of the target.
    Flow,
    /// Top of the source to the top of the target, bowed above the row (skip connections).
    Above,
    /// The same below the row.
    Below,
}

#[derive(Clone, Debug)]
pub struct Link {
    pub from: usize,
    pub to: usize,
    /// The op on the edge; `None` for plain connections (concatenation, the chain).
    pub op: Option<String>,
    pub route: Route,
    /// Drawn dashed and grey (an NB201 `none` edge: no connection).
    pub faint: bool,
}

/// A dashed vertical line between columns with a word at its top (the macro reductions).
#[derive(Clone, Debug)]
pub struct Mark {
    pub col: f64,
    pub text: String,
}

#[derive(Clone, Debug)]
pub struct Diagram {
    /// The space ("darts", "nb201", "macro"), the SVG's `data-space`.
    pub space: &'static str,
    /// File stem and DOT graph name ("normal", "reduce", "cell", "network").
    pub name: String,
    pub title: String,
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
    pub marks: Vec<Mark>,
    /// Pixels per column and per row.
    pub col_w: f64,
    pub row_h: f64,
}

const FONT: f64 = 12.0;
const CHAR_W: f64 = 7.0;
const NODE_H: f64 = 28.0;
const LABEL_FONT: f64 = 11.0;
const LABEL_CHAR_W: f64 = 6.4;
const LABEL_H: f64 = 15.0;
const MARGIN: f64 = 12.0;

#[derive(Clone, Copy, Debug)]
struct Rect {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Rect {
    fn centred(x: f64, y: f64, w: f64, h: f64) -> Rect {
        Rect { x0: x - w / 2.0, y0: y - h / 2.0, x1: x + w / 2.0, y1: y + h / 2.0 }
    }
    fn overlaps(&self, o: &Rect) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }
}

/// A point on the cubic Bezier `p` at `t`.
fn cubic(p: &[(f64, f64); 4], t: f64) -> (f64, f64) {
    let u = 1.0 - t;
    let (a, b, c, d) = (u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t);
    (a * p[0].0 + b * p[1].0 + c * p[2].0 + d * p[3].0, a * p[0].1 + b * p[1].1 + c * p[2].1 + d * p[3].1)
}

/// Text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A DOT quoted string.
fn dot_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Diagram {
    fn node_w(n: &Node) -> f64 {
        let chars = n.text.chars().count() + n.sub.as_ref().map_or(0, |s| s.chars().count());
        (chars as f64 * CHAR_W + 18.0).max(34.0)
    }

    fn centre(&self, n: &Node) -> (f64, f64) {
        (n.col * self.col_w, n.row * self.row_h)
    }

    /// Where each link leaves and enters its boxes: Flow links on the right and left sides,
    /// arcs on the top or bottom; several links on one side are spread along it, ordered by
    /// where their other ends are, so they do not meet in one point.
    fn ports(&self, boxes: &[Rect]) -> Vec<((f64, f64), (f64, f64))> {
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        enum Side {
            Left,
            Right,
            Top,
            Bottom,
        }
        let centre = |i: usize| ((boxes[i].x0 + boxes[i].x1) / 2.0, (boxes[i].y0 + boxes[i].y1) / 2.0);
        let side = |l: &Link, out: bool| match (l.route, out) {
            (Route::Flow, true) => Side::Right,
            (Route::Flow, false) => Side::Left,
            (Route::Above, _) => Side::Top,
            (Route::Below, _) => Side::Bottom,
        };
        // (node, side) -> [(sort key, link, is the link's start)]
        let mut groups: std::collections::HashMap<(usize, Side), Vec<((f64, f64), usize, bool)>> = Default::default();
        for (k, l) in self.links.iter().enumerate() {
            let (a, b) = (centre(l.from), centre(l.to));
            let key = |other: (f64, f64), s: Side| if matches!(s, Side::Left | Side::Right) { (other.1, other.0) } else { (other.0, -other.1) };
            groups.entry((l.from, side(l, true))).or_default().push((key(b, side(l, true)), k, true));
            groups.entry((l.to, side(l, false))).or_default().push((key(a, side(l, false)), k, false));
        }
        let mut ends = vec![((0.0, 0.0), (0.0, 0.0)); self.links.len()];
        for ((node, s), mut items) in groups {
            items.sort_by(|a, b| a.0 .0.total_cmp(&b.0 .0).then(a.0 .1.total_cmp(&b.0 .1)));
            let r = boxes[node];
            let n = items.len();
            let (len, gap): (f64, f64) = match s {
                Side::Left | Side::Right => (r.y1 - r.y0, 8.0),
                Side::Top | Side::Bottom => (r.x1 - r.x0, 14.0),
            };
            let step = if n > 1 { gap.min((len - 10.0) / (n - 1) as f64) } else { 0.0 };
            for (j, (_, k, start)) in items.into_iter().enumerate() {
                let off = (j as f64 - (n - 1) as f64 / 2.0) * step;
                // Arrow tips stop 2 px short of the box so the head stays visible.
                let pad = if start { 0.0 } else { 2.0 };
                let (cx, cy) = centre(node);
                let at = match s {
                    Side::Left => (r.x0 - pad, cy + off),
                    Side::Right => (r.x1 + pad, cy + off),
                    Side::Top => (cx + off, r.y0 - pad),
                    Side::Bottom => (cx + off, r.y1 + pad),
                };
                if start {
                    ends[k].0 = at;
                } else {
                    ends[k].1 = at;
                }
            }
        }
        ends
    }

    /// The SVG, its ids prefixed with `id_prefix` so that several drawings can share one HTML
    /// page (ids are global to a document).
    pub fn svg(&self, id_prefix: &str) -> String {
        let boxes: Vec<Rect> = self.nodes.iter().map(|n| {
            let (x, y) = self.centre(n);
            Rect::centred(x, y, Self::node_w(n), NODE_H)
        }).collect();
        let mut bounds = boxes.iter().fold(Rect { x0: f64::MAX, y0: f64::MAX, x1: f64::MIN, y1: f64::MIN }, |b, r| Rect {
            x0: b.x0.min(r.x0),
            y0: b.y0.min(r.y0),
            x1: b.x1.max(r.x1),
            y1: b.y1.max(r.y1 + if self.nodes.iter().any(|n| n.caption.is_some()) { 14.0 } else { 0.0 }),
        });
        let grow = |b: &mut Rect, r: &Rect| {
            b.x0 = b.x0.min(r.x0);
            b.y0 = b.y0.min(r.y0);
            b.x1 = b.x1.max(r.x1);
            b.y1 = b.y1.max(r.y1);
        };
        let arrow = format!("{id_prefix}-arrow");
        let ends = self.ports(&boxes);
        let mid_y = (bounds.y0 + bounds.y1) / 2.0;
        let mut edges = String::new();
        let mut labels = String::new();
        let mut placed: Vec<Rect> = Vec::new();
        for (l, &(s, e)) in self.links.iter().zip(&ends) {
            let p = match l.route {
                Route::Flow => {
                    let k = ((e.0 - s.0) * 0.5).max(24.0);
                    // An edge past a column of nodes bows away from the middle, around them.
                    let span = ((e.0 - s.0) / self.col_w).round();
                    let bow = if span > 1.0 { (14.0 + 0.45 * self.row_h) * (span - 1.0).min(2.0) } else { 0.0 };
                    let bow = if (s.1 + e.1) / 2.0 <= mid_y { -bow } else { bow };
                    [s, (s.0 + k, s.1 + bow), (e.0 - k, e.1 + bow), e]
                }
                Route::Above | Route::Below => {
                    let span = ((e.0 - s.0) / self.col_w).abs();
                    let lift = (16.0 + 14.0 * span) * if l.route == Route::Above { -1.0 } else { 1.0 };
                    [s, (s.0 + 8.0, s.1 + lift), (e.0 - 8.0, e.1 + lift), e]
                }
            };
            for q in &p {
                grow(&mut bounds, &Rect { x0: q.0, y0: q.1, x1: q.0, y1: q.1 });
            }
            let (from, to) = (&self.nodes[l.from].id, &self.nodes[l.to].id);
            let class = match (&l.op, l.route, l.faint) {
                (_, _, true) => "edge faint",
                (Some(_), _, _) => "edge op",
                (None, Route::Flow, _) => "edge plain",
                (None, _, _) => "edge skip",
            };
            let _ = write!(
                edges,
                "<path class=\"{class}\" data-from=\"{}\" data-to=\"{}\"{} d=\"M{:.1},{:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.4\"{} marker-end=\"url(#{arrow})\"/>\n",
                esc(from),
                esc(to),
                l.op.as_ref().map(|o| format!(" data-op=\"{}\"", esc(o))).unwrap_or_default(),
                p[0].0, p[0].1, p[1].0, p[1].1, p[2].0, p[2].1, p[3].0, p[3].1,
                if l.faint { "#999" } else { "#333" },
                if l.faint { " stroke-dasharray=\"4 3\"" } else { "" },
            );
            let Some(op) = &l.op else { continue };
            // The first spot along the curve whose label box hits no node and no other label.
            let (w, h) = (op.chars().count() as f64 * LABEL_CHAR_W + 6.0, LABEL_H);
            let spots = [0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78, 0.45, 0.55, 0.35, 0.65];
            let free = |r: &Rect| !placed.iter().chain(boxes.iter()).any(|o| o.overlaps(r));
            let at = spots.iter().map(|&t| cubic(&p, t)).find(|&(x, y)| free(&Rect::centred(x, y, w, h))).unwrap_or_else(|| cubic(&p, 0.5));
            let r = Rect::centred(at.0, at.1, w, h);
            grow(&mut bounds, &r);
            placed.push(r);
            let _ = write!(
                labels,
                "<g class=\"label\" data-from=\"{}\" data-to=\"{}\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"3\" fill=\"#fff\" fill-opacity=\"0.85\"/><text class=\"op\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"{LABEL_FONT}\" text-anchor=\"middle\" dominant-baseline=\"central\" fill=\"{}\">{}</text></g>\n",
                esc(from),
                esc(to),
                r.x0, r.y0, at.0, at.1,
                if l.faint { "#777" } else { "#222" },
                esc(op)
            );
        }
        let mut marks = String::new();
        for m in &self.marks {
            let x = m.col * self.col_w;
            let (y0, y1) = (bounds.y0 - 4.0, bounds.y1 + 4.0);
            let _ = write!(
                marks,
                "<g class=\"mark\"><line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{y1:.1}\" stroke=\"#b55\" stroke-dasharray=\"3 3\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#b55\">{}</text></g>\n",
                y0 + 10.0,
                y0 + 6.0,
                esc(&m.text)
            );
        }
        if !self.marks.is_empty() {
            bounds.y0 -= 8.0;
            bounds.y1 += 4.0;
        }
        let mut nodes = String::new();
        for (n, r) in self.nodes.iter().zip(&boxes) {
            let (x, y) = self.centre(n);
            let sub = n.sub.as_ref().map(|s| format!("<tspan dy=\"4\" font-size=\"{:.0}\">{}</tspan>", FONT * 0.75, esc(s))).unwrap_or_default();
            let caption = n.caption.as_ref().map(|c| format!("<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\" fill=\"#555\">{}</text>", r.y1 + 11.0, esc(c))).unwrap_or_default();
            let _ = write!(
                nodes,
                "<g class=\"node\" data-node=\"{}\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{NODE_H}\" rx=\"5\" fill=\"{}\" stroke=\"#333\" stroke-width=\"1.5\"/><text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{FONT}\" text-anchor=\"middle\" dominant-baseline=\"central\">{}{sub}</text>{caption}</g>\n",
                esc(&n.id),
                r.x0,
                r.y0,
                r.x1 - r.x0,
                n.kind.colours().0,
                esc(&n.text)
            );
        }
        let (x, y) = (bounds.x0 - MARGIN, bounds.y0 - MARGIN);
        let (w, h) = (bounds.x1 - bounds.x0 + 2.0 * MARGIN, bounds.y1 - bounds.y0 + 2.0 * MARGIN);
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"cellnas-drawing\" data-space=\"{}\" data-cell=\"{}\" viewBox=\"{x:.1} {y:.1} {w:.1} {h:.1}\" width=\"{w:.0}\" height=\"{h:.0}\" font-family=\"Helvetica, Arial, sans-serif\" role=\"img\">\n<title>{}</title>\n<defs><marker id=\"{arrow}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#333\"/></marker></defs>\n<g class=\"marks\">\n{marks}</g>\n<g class=\"edges\">\n{edges}</g>\n<g class=\"nodes\">\n{nodes}</g>\n<g class=\"labels\">\n{labels}</g>\n</svg>\n",
            self.space,
            esc(&self.name),
            esc(&self.title)
        )
    }

    /// Graphviz DOT text in the style of the DARTS paper's figures (`dot -Tsvg` draws it).
    pub fn dot(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "digraph {} {{", dot_str(&self.name));
        let _ = writeln!(s, "  label={}; labelloc=t;", dot_str(&self.title));
        let _ = writeln!(s, "  rankdir=LR;");
        let _ = writeln!(s, "  node [style=\"rounded,filled\", shape=rect, align=center, fontname=helvetica, penwidth=2];");
        let _ = writeln!(s, "  edge [fontname=helvetica, fontsize=20];");
        for n in &self.nodes {
            let mut label = n.text.clone();
            if let Some(sub) = &n.sub {
                label = format!("{label}_{{{sub}}}");
            }
            if let Some(c) = &n.caption {
                label = format!("{c}\\n{label}");
            }
            let _ = writeln!(s, "  {} [label=\"{}\", fillcolor={}];", dot_str(&n.id), label.replace('"', "\\\""), n.kind.colours().1);
        }
        for l in &self.links {
            let mut attrs = vec![];
            if let Some(op) = &l.op {
                attrs.push(format!("label={}", dot_str(op)));
            }
            if l.faint {
                attrs.push("style=dashed, color=gray".into());
            }
            if l.route != Route::Flow && l.op.is_none() {
                attrs.push("style=dashed, constraint=false".into());
            }
            let attrs = if attrs.is_empty() { String::new() } else { format!(" [{}]", attrs.join(", ")) };
            let _ = writeln!(s, "  {} -> {}{attrs};", dot_str(&self.nodes[l.from].id), dot_str(&self.nodes[l.to].id));
        }
        s.push_str("}\n");
        s
    }
}

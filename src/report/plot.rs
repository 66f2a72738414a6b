//! Line and scatter plots as inline SVG. Every plotted value is also a circle carrying its
//! exact data (`data-x`, `data-y` in Rust's shortest round-trip form, plus the caller's
//! attributes such as `data-id`), so a test can check each point against the run's files and
//! the page can link points to table rows. Accuracies stay fractions in the data; only the
//! tick labels show percent.

use crate::draw::esc;
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Circles only.
    Points,
    /// Circles joined by straight lines.
    Line,
    /// Circles joined by a staircase (best so far).
    Step,
}

#[derive(Clone, Debug)]
pub struct Pt {
    pub x: f64,
    pub y: f64,
    /// Extra attributes of the point's circle (name without `data-`, value).
    pub attrs: Vec<(&'static str, String)>,
    /// Hover text (an SVG `<title>`: a native tooltip, no script needed).
    pub tip: String,
}

impl Pt {
    pub fn new(x: f64, y: f64) -> Pt {
        Pt { x, y, attrs: Vec::new(), tip: String::new() }
    }
}

#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub style: Style,
    pub colour: &'static str,
    pub points: Vec<Pt>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Number,
    Percent,
}

#[derive(Clone, Debug)]
pub struct Plot {
    /// Unique on the page: the SVG's `data-plot`.
    pub id: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_format: Format,
    pub y_format: Format,
    /// Log when the values span more than a factor 20 and are all positive (`Scale` of `auto`).
    pub x_scale: Scale,
    pub series: Vec<Series>,
}

pub const COLOURS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

const W: f64 = 480.0;
const H: f64 = 300.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 44.0;

/// Log scale for positive values spanning more than a factor 20, else linear.
pub fn auto_scale(xs: impl Iterator<Item = f64>) -> Scale {
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for x in xs {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if lo > 0.0 && hi / lo > 20.0 {
        Scale::Log
    } else {
        Scale::Linear
    }
}

/// Tick labels with as many decimals as the step between ticks needs (2.315, 2.32 rather
/// than 2.32, 2.32).
fn tick_labels(ts: &[f64], f: Format) -> Vec<String> {
    let k = if f == Format::Percent { 100.0 } else { 1.0 };
    let step = ts.windows(2).map(|w| (w[1] - w[0]).abs() * k).fold(f64::MAX, f64::min);
    let big = ts.iter().any(|t| t.abs() * k >= 1e4);
    if f == Format::Number && big || !step.is_finite() || step >= 1.0 || step == f64::MAX {
        return ts.iter().map(|&t| fmt(t, f)).collect();
    }
    let d = (-step.log10().floor()).clamp(0.0, 9.0) as usize;
    ts.iter().map(|&t| format!("{:.d$}{}", t * k, if f == Format::Percent { "%" } else { "" })).collect()
}

/// Tick positions: 1-2-5 steps for a linear axis (whole numbers only for counts such as
/// epochs), decades (with 2 and 5 when few) for a log one.
fn ticks(lo: f64, hi: f64, scale: Scale, whole: bool) -> Vec<f64> {
    match scale {
        Scale::Linear => {
            let span = (hi - lo).max(f64::MIN_POSITIVE);
            let raw = if whole { (span / 5.0).max(1.0) } else { span / 5.0 };
            let mag = 10f64.powf(raw.log10().floor());
            let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|&s| s >= raw).unwrap_or(10.0 * mag);
            let first = (lo / step).ceil() as i64;
            let last = (hi / step).floor() as i64;
            (first..=last).map(|i| i as f64 * step).collect()
        }
        Scale::Log => {
            let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
            let mults: &[f64] = if b - a <= 2 { &[1.0, 2.0, 5.0] } else { &[1.0] };
            (a..=b).flat_map(|e| mults.iter().map(move |m| m * 10f64.powi(e))).filter(|&t| t >= lo * 0.999 && t <= hi * 1.001).collect()
        }
    }
}

/// A number for a tick or a table: percent, or with k/M/G for large magnitudes.
pub fn fmt(v: f64, f: Format) -> String {
    match f {
        Format::Percent => {
            let p = 100.0 * v;
            if (p - p.round()).abs() < 1e-9 { format!("{p:.0}%") } else { format!("{p:.1}%") }
        }
        Format::Number => {
            let a = v.abs();
            let (d, s) = if a >= 1e9 { (1e9, "G") } else if a >= 1e6 { (1e6, "M") } else if a >= 1e4 { (1e3, "k") } else { (1.0, "") };
            let x = v / d;
            let t = if (x - x.round()).abs() < 1e-9 { format!("{x:.0}") } else if x.abs() >= 10.0 { format!("{x:.1}") } else { format!("{x:.2}") };
            let t = if t.contains('.') { t.trim_end_matches('0').trim_end_matches('.').to_string() } else { t };
            format!("{t}{s}")
        }
    }
}

struct Axis {
    lo: f64,
    hi: f64,
    scale: Scale,
    px0: f64,
    px1: f64,
}

impl Axis {
    fn new(values: &[f64], scale: Scale, px0: f64, px1: f64) -> Axis {
        let (mut lo, mut hi) = values.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        if scale == Scale::Linear {
            if hi - lo < 1e-12 {
                let pad = if lo.abs() > 0.0 { lo.abs() * 0.1 } else { 1.0 };
                (lo, hi) = (lo - pad, hi + pad);
            } else {
                let pad = (hi - lo) * 0.06;
                (lo, hi) = (lo - pad, hi + pad);
            }
        } else {
            (lo, hi) = (lo / 1.25, hi * 1.25);
        }
        Axis { lo, hi, scale, px0, px1 }
    }
    fn t(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Linear => v,
            Scale::Log => v.log10(),
        }
    }
    fn px(&self, v: f64) -> f64 {
        let (a, b) = (self.t(self.lo), self.t(self.hi));
        self.px0 + (self.t(v) - a) / (b - a) * (self.px1 - self.px0)
    }
}

impl Plot {
    /// The plot as an `<svg>` element (scales with its container's width).
    pub fn svg(&self) -> String {
        let usable = |p: &Pt| p.x.is_finite() && p.y.is_finite() && (self.x_scale == Scale::Linear || p.x > 0.0);
        let xs: Vec<f64> = self.series.iter().flat_map(|s| s.points.iter().filter(|p| usable(p)).map(|p| p.x)).collect();
        let ys: Vec<f64> = self.series.iter().flat_map(|s| s.points.iter().filter(|p| usable(p)).map(|p| p.y)).collect();
        let mut o = String::new();
        let _ = write!(
            o,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" data-plot=\"{}\" viewBox=\"0 0 {W} {H}\" role=\"img\" font-family=\"Helvetica, Arial, sans-serif\">\n<title>{}</title>\n<text x=\"{}\" y=\"17\" font-size=\"13\" font-weight=\"bold\" text-anchor=\"middle\">{}</text>\n",
            esc(&self.id),
            esc(&self.title),
            LEFT + (W - LEFT - RIGHT) / 2.0,
            esc(&self.title)
        );
        if xs.is_empty() {
            let _ = write!(o, "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\" fill=\"#777\">no data</text>\n</svg>\n", W / 2.0, H / 2.0);
            return o;
        }
        let xa = Axis::new(&xs, self.x_scale, LEFT, W - RIGHT);
        let ya = Axis::new(&ys, Scale::Linear, H - BOTTOM, TOP);
        // Frame, grid and ticks.
        let _ = writeln!(o, "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"#fcfcfc\" stroke=\"#999\"/>", W - LEFT - RIGHT, H - TOP - BOTTOM);
        let whole = xs.iter().all(|x| x.fract() == 0.0);
        let xt = ticks(xa.lo, xa.hi, xa.scale, whole);
        for (&t, label) in xt.iter().zip(tick_labels(&xt, self.x_format)) {
            let x = xa.px(t);
            let _ = writeln!(o, "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#e4e4e4\"/><text x=\"{x:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#444\">{}</text>", H - BOTTOM, H - BOTTOM + 13.0, esc(&label));
        }
        let yt = ticks(ya.lo, ya.hi, Scale::Linear, false);
        for (&t, label) in yt.iter().zip(tick_labels(&yt, self.y_format)) {
            let y = ya.px(t);
            let _ = writeln!(o, "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#e4e4e4\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#444\">{}</text>", W - RIGHT, LEFT - 4.0, y + 3.5, esc(&label));
        }
        let log = if self.x_scale == Scale::Log { " (log scale)" } else { "" };
        let _ = writeln!(o, "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}{log}</text>", LEFT + (W - LEFT - RIGHT) / 2.0, H - 10.0, esc(&self.x_label));
        let _ = writeln!(o, "<text transform=\"translate(13 {}) rotate(-90)\" font-size=\"11\" text-anchor=\"middle\">{}</text>", TOP + (H - TOP - BOTTOM) / 2.0, esc(&self.y_label));
        // Lines first, then every series' points on top.
        for s in &self.series {
            let pts: Vec<(f64, f64)> = s.points.iter().filter(|p| usable(p)).map(|p| (xa.px(p.x), ya.px(p.y))).collect();
            if s.style == Style::Points || pts.len() < 2 {
                continue;
            }
            let mut d = String::new();
            for (i, &(x, y)) in pts.iter().enumerate() {
                if i == 0 {
                    let _ = write!(d, "M{x:.1},{y:.1}");
                } else if s.style == Style::Step {
                    let _ = write!(d, " H{x:.1} V{y:.1}");
                } else {
                    let _ = write!(d, " L{x:.1},{y:.1}");
                }
            }
            let _ = writeln!(o, "<path class=\"line\" data-series=\"{}\" d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\"/>", esc(&s.name), s.colour);
        }
        for s in &self.series {
            let r = if s.style == Style::Points { 3.6 } else { 2.4 };
            let _ = writeln!(o, "<g class=\"series\" data-series=\"{}\">", esc(&s.name));
            for p in s.points.iter().filter(|p| usable(p)) {
                let mut attrs = String::new();
                for (k, v) in &p.attrs {
                    let _ = write!(attrs, " data-{k}=\"{}\"", esc(v));
                }
                let tip = if p.tip.is_empty() { format!("{}: {}, {}", s.name, fmt(p.x, self.x_format), fmt(p.y, self.y_format)) } else { p.tip.clone() };
                let _ = writeln!(
                    o,
                    "<circle class=\"pt\" data-x=\"{}\" data-y=\"{}\"{attrs} cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r}\" fill=\"{}\" fill-opacity=\"0.8\"><title>{}</title></circle>",
                    p.x,
                    p.y,
                    xa.px(p.x),
                    ya.px(p.y),
                    s.colour,
                    esc(&tip)
                );
            }
            o.push_str("</g>\n");
        }
        // Legend in one line between the title and the frame, when there is more than one
        // series (inside the frame it would hide points).
        if self.series.len() > 1 {
            let mut x = LEFT;
            for s in self.series.iter().take(8) {
                let w = 16.0 + 5.6 * s.name.chars().count() as f64 + 10.0;
                if x + w > W - RIGHT {
                    break;
                }
                let _ = writeln!(o, "<rect x=\"{x:.1}\" y=\"{}\" width=\"9\" height=\"9\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{}\" font-size=\"10\">{}</text>", TOP - 13.0, s.colour, x + 13.0, TOP - 5.0, esc(&s.name));
                x += w;
            }
        }
        o.push_str("</svg>\n");
        o
    }
}

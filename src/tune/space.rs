//! The hyperparameter file, in Keras Tuner's vocabulary (Int, Float, Choice, Boolean, Fixed,
//! conditional scopes), and what a drawn set of values does to a stand-alone training config.
//!
//! ```json
//! {"hyperparameters": [
//!   {"name": "lr", "type": "Float", "min_value": 0.01, "max_value": 0.3, "sampling": "log"},
//!   {"name": "batch_size", "type": "Choice", "values": [32, 64]},
//!   {"name": "use_cutout", "type": "Boolean"},
//!   {"name": "cutout", "type": "Int", "min_value": 4, "max_value": 12, "step": 4,
//!    "parent_name": "use_cutout", "parent_values": [true]}
//! ]}
//! ```
//!
//! The same file in TOML (chosen by the extension `.toml`; any other name is read as JSON):
//!
//! ```toml
//! [[hyperparameters]]
//! name = "lr"
//! type = "Float"
//! min_value = 0.01
//! max_value = 0.3
//! sampling = "log"
//! ```
//!
//! Every parameter sits at a point `u` of [0, 1] (numbers: linear or log position, a grid of
//! `step` when given; Choice and Boolean: an index), which is what the tuners draw and model.

use crate::error::{Error, Result};
use crate::pipeline::standalone::StandaloneConfig;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// One drawn value per active parameter, by name.
pub type Assignment = BTreeMap<String, Value>;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type")]
pub enum Kind {
    Int { min: i64, max: i64, step: Option<i64>, log: bool },
    Float { min: f64, max: f64, step: Option<f64>, log: bool },
    Choice { values: Vec<Value> },
    Boolean,
    Fixed { value: Value },
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hp {
    pub name: String,
    #[serde(flatten)]
    pub kind: Kind,
    /// Active only when this parent (defined earlier) is active and took one of these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<(String, Vec<Value>)>,
}

/// The parameters of a file, parents before children.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HpSpace {
    pub params: Vec<Hp>,
}

/// What a known setting holds.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Setting {
    Float,
    Int,
    Bool,
}

/// The settings a parameter may name. `epochs` is the trial's budget (random and Bayesian
/// tuners; Hyperband sets budgets itself).
const SETTINGS: &[(&str, Setting)] = &[
    ("lr", Setting::Float),
    ("lr_min", Setting::Float),
    ("momentum", Setting::Float),
    ("weight_decay", Setting::Float),
    ("grad_clip", Setting::Float),
    ("warmup_epochs", Setting::Float),
    ("batch_size", Setting::Int),
    ("epochs", Setting::Int),
    ("channels", Setting::Int),
    ("layers", Setting::Int),
    ("crop", Setting::Int),
    ("cutout", Setting::Int),
    ("flip", Setting::Bool),
];

fn setting(name: &str) -> Option<Setting> {
    SETTINGS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

impl Hp {
    /// Grid points (ints, floats with a step, choices, booleans), or None for a continuum.
    pub fn grid(&self) -> Option<Vec<Value>> {
        match &self.kind {
            // Log-uniform over every integer: a continuum, rounded.
            Kind::Int { step: None, log: true, .. } => None,
            Kind::Int { min, max, step, log } => {
                let step = step.unwrap_or(1);
                let mut v = vec![];
                let mut x = *min;
                while x <= *max && v.len() < 100_000 {
                    v.push(Value::from(x));
                    x = if *log { x.saturating_mul(step) } else { x.saturating_add(step) };
                }
                Some(v)
            }
            Kind::Float { min, max, step: Some(step), log } => {
                let mut v = vec![];
                let mut k = 0i32;
                loop {
                    let x = if *log { min * step.powi(k) } else { min + step * k as f64 };
                    // 0.8 + 3 * 0.05 is 0.9500000000000001: keep 12 significant digits.
                    let x: f64 = format!("{x:.12e}").parse().unwrap_or(x);
                    if x > max * (1.0 + 1e-12) || v.len() >= 100_000 {
                        break;
                    }
                    v.push(Value::from(x));
                    k += 1;
                }
                Some(v)
            }
            Kind::Float { step: None, .. } => None,
            Kind::Choice { values } => Some(values.clone()),
            Kind::Boolean => Some(vec![Value::Bool(false), Value::Bool(true)]),
            Kind::Fixed { value } => Some(vec![value.clone()]),
        }
    }

    /// Whether the model should treat the parameter as unordered categories.
    pub fn categorical(&self) -> bool {
        matches!(self.kind, Kind::Choice { .. } | Kind::Boolean | Kind::Fixed { .. })
    }

    /// The value at position `u` of [0, 1].
    pub fn value_at(&self, u: f64) -> Value {
        let u = u.clamp(0.0, 1.0);
        if let Kind::Float { min, max, step: None, log } = self.kind {
            let x = if log { (min.ln() + u * (max.ln() - min.ln())).exp() } else { min + u * (max - min) };
            return Value::from(x.clamp(min, max));
        }
        if let Kind::Int { min, max, step: None, log: true } = self.kind {
            let (a, b) = (min as f64, max as f64);
            return Value::from(((a.ln() + u * (b.ln() - a.ln())).exp().round() as i64).clamp(min, max));
        }
        let grid = self.grid().expect("gridded");
        grid[((u * grid.len() as f64) as usize).min(grid.len() - 1)].clone()
    }

    /// Inverse of `value_at`: the centre of the value's cell (None: not a value of this parameter).
    pub fn position(&self, v: &Value) -> Option<f64> {
        if let Kind::Float { min, max, step: None, log } = self.kind {
            let x = v.as_f64()?;
            return Some(if log { (x.ln() - min.ln()) / (max.ln() - min.ln()) } else { (x - min) / (max - min) });
        }
        if let Kind::Int { min, max, step: None, log: true } = self.kind {
            let x = v.as_f64()?;
            return Some((x.ln() - (min as f64).ln()) / ((max as f64).ln() - (min as f64).ln()));
        }
        let grid = self.grid()?;
        let i = grid.iter().position(|g| same(g, v))?;
        Some((i as f64 + 0.5) / grid.len() as f64)
    }
}

/// A TOML value as the JSON value the checker reads. Non-finite floats (TOML has inf and nan)
/// and dates become strings, so the checker's "must be a finite number, got ..." names them.
fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::from(s.as_str()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) if f.is_finite() => Value::from(*f),
        toml::Value::Float(f) => Value::from(f.to_string()),
        toml::Value::Boolean(b) => Value::from(*b),
        toml::Value::Datetime(d) => Value::from(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect()),
    }
}

/// JSON values equal as numbers (3 == 3.0) or exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

impl HpSpace {
    /// Reads a hyperparameter file, TOML if its name ends in `.toml`, else JSON; every problem
    /// is one line naming the file and the parameter (or the line of a syntax error).
    pub fn read(path: &Path) -> Result<HpSpace> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let toml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        let parsed = if toml { HpSpace::parse_toml(&text) } else { HpSpace::parse(&text) };
        parsed.map_err(|message| Error::Config { path: path.to_path_buf(), message })
    }

    /// A JSON file: `{"hyperparameters": [...]}` or the bare list.
    pub fn parse(text: &str) -> std::result::Result<HpSpace, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
        let list = match &v {
            Value::Object(o) => o.get("hyperparameters").and_then(Value::as_array).ok_or("expected {\"hyperparameters\": [...]}")?,
            Value::Array(a) => a,
            _ => return Err("expected {\"hyperparameters\": [...]}".into()),
        };
        HpSpace::from_list(list)
    }

    /// A TOML file: one `[[hyperparameters]]` table per parameter, the same fields as JSON.
    /// Its values become JSON values, so both formats share one checker and one set of errors.
    pub fn parse_toml(text: &str) -> std::result::Result<HpSpace, String> {
        let v: toml::Table = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| {
                let before = &text[..s.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!("line {line}, column {column}: ")
            });
            // toml's messages may span lines; errors here are one line.
            let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            format!("not valid TOML: {}{message}", at.unwrap_or_default())
        })?;
        let expected = "expected [[hyperparameters]] tables (name = ..., type = ...)";
        let list = match v.get("hyperparameters") {
            Some(toml::Value::Array(a)) => a.iter().map(toml_to_json).collect::<Vec<_>>(),
            _ => return Err(expected.into()),
        };
        HpSpace::from_list(&list)
    }

    fn from_list(list: &[Value]) -> std::result::Result<HpSpace, String> {
        let mut space = HpSpace::default();
        for (i, item) in list.iter().enumerate() {
            let hp = parse_one(item, i, &space)?;
            space.params.push(hp);
        }
        // A name that is no setting is allowed only as a switch other parameters depend on.
        for hp in &space.params {
            if setting(&hp.name).is_none() && !space.params.iter().any(|c| c.parent.as_ref().is_some_and(|(p, _)| p == &hp.name)) {
                let known: Vec<&str> = SETTINGS.iter().map(|(n, _)| *n).collect();
                return Err(format!("parameter \"{}\": unknown hyperparameter name (known: {}; any other name must be the parent of a conditional parameter)", hp.name, known.join(", ")));
            }
        }
        if space.params.is_empty() {
            return Err("no hyperparameters".into());
        }
        Ok(space)
    }

    pub fn get(&self, name: &str) -> Option<&Hp> {
        self.params.iter().find(|h| h.name == name)
    }

    /// Whether `hp` is active given the values drawn so far (parents come first).
    pub fn active(&self, hp: &Hp, drawn: &Assignment) -> bool {
        match &hp.parent {
            None => true,
            Some((p, values)) => drawn.get(p).is_some_and(|v| values.iter().any(|w| same(v, w))),
        }
    }

    /// Values from a position per parameter (`u(i)` for parameter i), inactive ones left out.
    pub fn assign(&self, mut u: impl FnMut(usize) -> f64) -> Assignment {
        let mut a = Assignment::new();
        for (i, hp) in self.params.iter().enumerate() {
            let x = u(i);
            if self.active(hp, &a) {
                a.insert(hp.name.clone(), hp.value_at(x));
            }
        }
        a
    }

    /// `base` with the assignment's settings applied (switches set nothing themselves).
    pub fn apply(&self, base: &StandaloneConfig, a: &Assignment) -> StandaloneConfig {
        let mut c = base.clone();
        for (name, v) in a {
            let (f, n, b) = (v.as_f64().unwrap_or(0.0), v.as_f64().unwrap_or(0.0).max(0.0) as usize, v.as_bool().unwrap_or(false));
            match name.as_str() {
                "lr" => c.train.lr = f as f32,
                "lr_min" => c.train.lr_min = f as f32,
                "momentum" => c.train.momentum = f as f32,
                "weight_decay" => c.train.weight_decay = f as f32,
                "grad_clip" => c.train.grad_clip = f as f32,
                "warmup_epochs" => c.train.warmup_epochs = f as f32,
                "batch_size" => c.train.batch_size = n,
                "epochs" => c.train.epochs = n,
                "channels" => c.net.channels = n,
                "layers" => c.net.layers = n,
                "crop" => c.train.augment.crop_padding = n.min(u32::MAX as usize) as u32,
                "cutout" => c.train.augment.cutout = n.min(u32::MAX as usize) as u32,
                "flip" => c.train.augment.flip = b,
                _ => {}
            }
        }
        c
    }
}

fn parse_one(item: &Value, i: usize, earlier: &HpSpace) -> std::result::Result<Hp, String> {
    let obj = item.as_object().ok_or_else(|| format!("hyperparameter {i}: expected an object"))?;
    let name = obj.get("name").and_then(Value::as_str).ok_or_else(|| format!("hyperparameter {i}: no \"name\""))?.to_string();
    let err = |m: String| format!("parameter \"{name}\": {m}");
    if earlier.get(&name).is_some() {
        return Err(err("defined twice".into()));
    }
    const FIELDS: &[&str] = &["name", "type", "min_value", "max_value", "min", "max", "step", "sampling", "values", "value", "default", "parent_name", "parent_values", "ordered"];
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(err(format!("unknown field \"{k}\" (expected some of {})", FIELDS.join(", "))));
    }
    let ty = obj.get("type").and_then(Value::as_str).ok_or_else(|| err("no \"type\" (Int, Float, Choice, Boolean or Fixed)".into()))?;
    let num = |keys: [&str; 2]| -> std::result::Result<Option<f64>, String> {
        match keys.iter().find_map(|k| obj.get(*k)) {
            None => Ok(None),
            Some(v) => v.as_f64().filter(|x| x.is_finite()).map(Some).ok_or_else(|| err(format!("{} must be a finite number, got {v}", keys[0]))),
        }
    };
    let log = match obj.get("sampling").map(|s| s.as_str().unwrap_or("?")) {
        None | Some("linear") => false,
        Some("log") => true,
        Some(_) => return Err(err(format!("sampling must be \"linear\" or \"log\", got {}", obj["sampling"]))),
    };
    let range = || -> std::result::Result<(f64, f64), String> {
        let min = num(["min_value", "min"])?.ok_or_else(|| err("no min_value".into()))?;
        let max = num(["max_value", "max"])?.ok_or_else(|| err("no max_value".into()))?;
        if min > max {
            return Err(err(format!("inverted range: min_value {min} > max_value {max}")));
        }
        if min == max {
            return Err(err(format!("empty range: min_value = max_value = {min} (use Fixed for one value)")));
        }
        if log && min <= 0.0 {
            return Err(err(format!("log sampling needs a range above zero, got [{min}, {max}]")));
        }
        Ok((min, max))
    };
    let step = num(["step", "step"])?;
    if let Some(s) = step {
        if s <= 0.0 || (log && s <= 1.0) {
            return Err(err(format!("step must be {}, got {s}", if log { "above 1 with log sampling (a factor)" } else { "positive" })));
        }
    }
    let kind = match ty.to_ascii_lowercase().as_str() {
        "int" => {
            let (min, max) = range()?;
            let int = |x: f64| (x.fract() == 0.0 && x.abs() < 1e15).then_some(x as i64);
            let (Some(min), Some(max)) = (int(min), int(max)) else { return Err(err(format!("Int bounds must be integers, got [{min}, {max}]"))) };
            let step = match step {
                Some(s) => Some(int(s).ok_or_else(|| err(format!("Int step must be an integer, got {s}")))?),
                None => None,
            };
            Kind::Int { min, max, step, log }
        }
        "float" => {
            let (min, max) = range()?;
            Kind::Float { min, max, step, log }
        }
        "choice" => {
            let values = obj.get("values").and_then(Value::as_array).cloned().ok_or_else(|| err("Choice needs \"values\": [...]".into()))?;
            if values.is_empty() {
                return Err(err("empty Choice: \"values\" has nothing to choose from".into()));
            }
            if let Some(v) = values.iter().find(|v| !(v.is_number() || v.is_boolean() || v.is_string())) {
                return Err(err(format!("Choice values must be numbers, booleans or strings, got {v}")));
            }
            if values.iter().enumerate().any(|(i, v)| values[..i].iter().any(|w| same(v, w))) {
                return Err(err("Choice values repeat".into()));
            }
            Kind::Choice { values }
        }
        "boolean" | "bool" => Kind::Boolean,
        "fixed" => Kind::Fixed { value: obj.get("value").cloned().ok_or_else(|| err("Fixed needs \"value\"".into()))? },
        _ => return Err(err(format!("unknown type \"{ty}\" (expected Int, Float, Choice, Boolean or Fixed)"))),
    };
    let parent = match obj.get("parent_name") {
        None => None,
        Some(p) => {
            let p = p.as_str().ok_or_else(|| err("parent_name must be a string".into()))?;
            let parent = earlier.get(p).ok_or_else(|| err(format!("conditional on an unknown parent \"{p}\" (the parent must be defined before it)")))?;
            if !matches!(parent.kind, Kind::Choice { .. } | Kind::Boolean) {
                return Err(err(format!("parent \"{p}\" must be a Choice or Boolean")));
            }
            let values = obj.get("parent_values").and_then(Value::as_array).cloned().filter(|v| !v.is_empty()).ok_or_else(|| err("parent_values must be a non-empty list".into()))?;
            let grid = parent.grid().unwrap_or_default();
            if let Some(v) = values.iter().find(|v| !grid.iter().any(|g| same(g, v))) {
                return Err(err(format!("parent_values holds {v}, which \"{p}\" never takes")));
            }
            Some((p.to_string(), values))
        }
    };
    if obj.contains_key("parent_values") && parent.is_none() {
        return Err(err("parent_values without parent_name".into()));
    }
    let hp = Hp { name: name.clone(), kind, parent };
    check_setting(&hp).map_err(err)?;
    Ok(hp)
}

/// The values a parameter can take must suit the setting it names.
fn check_setting(hp: &Hp) -> std::result::Result<(), String> {
    let Some(s) = setting(&hp.name) else { return Ok(()) };
    let values = match &hp.kind {
        Kind::Float { .. } if s != Setting::Float => return Err(format!("{} takes {}: use Int, Choice or Fixed", hp.name, if s == Setting::Int { "integers" } else { "true or false" })),
        Kind::Int { .. } if s == Setting::Bool => return Err(format!("{} takes true or false: use Boolean, Choice or Fixed", hp.name)),
        Kind::Boolean if s != Setting::Bool => return Err(format!("{} takes numbers, not true or false", hp.name)),
        Kind::Int { min, .. } => vec![Value::from(*min)],
        Kind::Float { min, .. } => vec![Value::from(*min)],
        _ => hp.grid().unwrap_or_default(),
    };
    for v in values {
        let ok = match s {
            Setting::Float => v.as_f64().is_some_and(|x| x >= 0.0),
            Setting::Int => v.as_f64().is_some_and(|x| x >= 0.0 && x.fract() == 0.0),
            Setting::Bool => v.is_boolean(),
        };
        if !ok {
            let what = match s {
                Setting::Float => "a number >= 0",
                Setting::Int => "an integer >= 0",
                Setting::Bool => "true or false",
            };
            return Err(format!("{} must be {what}, got {v}", hp.name));
        }
    }
    Ok(())
}

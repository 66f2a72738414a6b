//! The DARTS genotype text, as Python prints the `Genotype` namedtuple of quark0/darts
//! (cnn/genotypes.py), both ways.
//!
//! Written form (one line, single quotes, lists for concat), e.g.
//! `Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])`.
//! Read form is looser, as genotypes get pasted from logs and source files: any whitespace and
//! newlines, single or double quotes, trailing commas, fields in any order, and concat written
//! `range(2, 6)` or `list(range(2, 6))` as the DARTS search code produces it. Edges stay in text
//! order, two per node, so `to_darts(from_darts(t)) == t` for text in the written form.

use super::genotype::{Cell, Edge, Genotype};
use super::op::Op;
use crate::error::{Error, Result};
use std::fmt::Write;

/// The most nodes a concat may list (cells have a handful).
const MAX_CONCAT: usize = 1024;

const FIELDS: [&str; 4] = ["normal", "normal_concat", "reduce", "reduce_concat"];

impl Genotype {
    /// Parses DARTS genotype text and validates the result (see `Genotype::validate`).
    /// Errors give the line, column and field, and what was expected there.
    pub fn from_darts(text: &str) -> Result<Genotype> {
        let g = Parser { text, pos: 0, ctx: String::new() }.genotype()?;
        g.validate()?;
        Ok(g)
    }

    /// The text Python prints for this genotype: edges in stored order, concat as a list.
    pub fn to_darts(&self) -> String {
        let mut s = String::from("Genotype(");
        for (k, (name, cell)) in self.cells().into_iter().enumerate() {
            if k > 0 {
                s.push_str(", ");
            }
            let edges: Vec<String> = cell.edges().map(|(_, e)| format!("('{}', {})", e.op.name(), e.input)).collect();
            let concat: Vec<String> = cell.concat.iter().map(|c| c.to_string()).collect();
            write!(s, "{name}=[{}], {name}_concat=[{}]", edges.join(", "), concat.join(", ")).unwrap();
        }
        s.push(')');
        s
    }
}

/// Hand-written recursive descent over the text. `ctx` names the field/edge being read, for
/// error messages.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
    ctx: String,
}

impl Parser<'_> {
    fn genotype(mut self) -> Result<Genotype> {
        self.ctx = "start".into();
        self.word("Genotype")?;
        self.punct('(')?;
        let mut cells: [Option<Vec<Edge>>; 2] = [None, None];
        let mut concats: [Option<Vec<usize>>; 2] = [None, None];
        let mut seen = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(')') {
                break;
            }
            self.ctx = "field name".into();
            let field_at = self.pos;
            let field = self.ident()?;
            if !FIELDS.contains(&field.as_str()) {
                self.pos = field_at;
                return Err(self.error(&format!("unknown field '{field}'; expected one of {}", FIELDS.join(", "))));
            }
            if seen.contains(&field) {
                self.pos = field_at;
                return Err(self.error(&format!("field '{field}' given twice")));
            }
            self.ctx = field.clone();
            self.punct('=')?;
            let which = if field.starts_with("normal") { 0 } else { 1 };
            if field.ends_with("_concat") {
                concats[which] = Some(self.concat(0)?);
            } else {
                cells[which] = Some(self.edges(&field)?);
            }
            seen.push(field);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(')') => break,
                _ => return Err(self.expected("',' or ')' after the field")),
            }
        }
        self.ctx = "end".into();
        self.punct(')')?;
        self.skip_ws();
        if self.pos < self.text.len() {
            return Err(self.expected("end of text after the closing ')'"));
        }
        if let Some(missing) = FIELDS.iter().find(|f| !seen.iter().any(|s| s == *f)) {
            return Err(Error::Spec(format!("DARTS text: missing field '{missing}'")));
        }
        let mut cells = cells.into_iter().zip(concats).zip(["normal", "reduce"]).map(|((edges, concat), name)| {
            let edges = edges.expect("checked above");
            if edges.len() % 2 != 0 {
                return Err(Error::Spec(format!(
                    "DARTS text: {name} has {} edges; expected an even number (two per intermediate node)",
                    edges.len()
                )));
            }
            let nodes = edges.chunks(2).map(|p| [p[0], p[1]]).collect();
            Ok(Cell { nodes, concat: concat.expect("checked above") })
        });
        let normal = cells.next().expect("two cells")?;
        let reduce = cells.next().expect("two cells")?;
        Ok(Genotype { normal, reduce })
    }

    /// `[('op', input), ...]`
    fn edges(&mut self, field: &str) -> Result<Vec<Edge>> {
        self.punct('[')?;
        let mut edges = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(']') {
                self.pos += 1;
                return Ok(edges);
            }
            self.ctx = format!("{field}, edge {}", edges.len());
            self.punct('(')?;
            let op_at = self.pos;
            let name = self.string()?;
            let op = Op::from_name(&name).map_err(|e| {
                self.pos = op_at;
                match e {
                    Error::Spec(m) => self.error(&m),
                    other => other,
                }
            })?;
            self.punct(',')?;
            let input = self.uint()?;
            self.skip_ws();
            if self.peek() == Some(',') {
                self.pos += 1;
            }
            self.punct(')')?;
            edges.push(Edge { op, input });
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(']') => {}
                _ => return Err(self.expected("',' or ']' after an edge")),
            }
        }
    }

    /// `[2, 3, 4, 5]`, `range(2, 6)` or `list(range(2, 6))`; `depth` counts the `list(`s
    /// around it. Bounded, so hostile text cannot exhaust memory or the stack: a concat lists
    /// node indices, and no cell has anywhere near `MAX_CONCAT` nodes.
    fn concat(&mut self, depth: usize) -> Result<Vec<usize>> {
        self.skip_ws();
        if self.peek() == Some('[') {
            self.pos += 1;
            let mut out = Vec::new();
            loop {
                self.skip_ws();
                if self.peek() == Some(']') {
                    self.pos += 1;
                    return Ok(out);
                }
                if out.len() == MAX_CONCAT {
                    return Err(self.error(&format!("a concat list of more than {MAX_CONCAT} nodes")));
                }
                out.push(self.uint()?);
                self.skip_ws();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(']') => {}
                    _ => return Err(self.expected("',' or ']' in the concat list")),
                }
            }
        }
        let at = self.pos;
        let word = self.ident().map_err(|_| self.expected("a list like [2, 3, 4, 5] or range(2, 6)"))?;
        match word.as_str() {
            "range" => {
                self.punct('(')?;
                let start = self.uint()?;
                self.punct(',')?;
                let end = self.uint()?;
                self.punct(')')?;
                if end.saturating_sub(start) > MAX_CONCAT {
                    return Err(self.error(&format!("range({start}, {end}) lists more than {MAX_CONCAT} nodes")));
                }
                Ok((start..end).collect())
            }
            "list" => {
                if depth == 2 {
                    return Err(self.error("list( nested more than twice"));
                }
                self.punct('(')?;
                let out = self.concat(depth + 1)?;
                self.punct(')')?;
                Ok(out)
            }
            _ => {
                self.pos = at;
                Err(self.error(&format!("expected a list like [2, 3, 4, 5] or range(2, 6), found '{word}'")))
            }
        }
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if !c.is_whitespace() {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn punct(&mut self, c: char) -> Result<()> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.expected(&format!("'{c}'")))
        }
    }

    fn word(&mut self, w: &str) -> Result<()> {
        self.skip_ws();
        let at = self.pos;
        match self.ident() {
            Ok(got) if got == w => Ok(()),
            _ => {
                self.pos = at;
                Err(self.expected(&format!("'{w}'")))
            }
        }
    }

    fn ident(&mut self) -> Result<String> {
        self.skip_ws();
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !(c.is_ascii_alphanumeric() || c == '_') || (self.pos == start && c.is_ascii_digit()) {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.expected("a name"));
        }
        Ok(self.text[start..self.pos].to_string())
    }

    fn string(&mut self) -> Result<String> {
        self.skip_ws();
        let quote = match self.peek() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(self.expected("a quoted op name like 'sep_conv_3x3'")),
        };
        let start = self.pos + 1;
        match self.text[start..].find(quote) {
            Some(len) => {
                self.pos = start + len + 1;
                Ok(self.text[start..start + len].to_string())
            }
            None => Err(self.error(&format!("unterminated string: no closing {quote}"))),
        }
    }

    fn uint(&mut self) -> Result<usize> {
        self.skip_ws();
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.expected("a non-negative integer"));
        }
        self.text[start..self.pos].parse().map_err(|_| {
            self.pos = start;
            self.error("integer too large")
        })
    }

    fn expected(&self, what: &str) -> Error {
        let found = match self.peek() {
            Some(c) => format!("'{c}'"),
            None => "end of text".into(),
        };
        self.error(&format!("expected {what}, found {found}"))
    }

    /// "DARTS text, line L, column C (ctx): msg", columns counted in characters from 1.
    fn error(&self, msg: &str) -> Error {
        let before = &self.text[..self.pos];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        Error::Spec(format!("DARTS text, line {line}, column {col} (in {}): {msg}", self.ctx))
    }
}

//! Where each field is written: field path to line and column, from yaml-rust2's event
//! stream (which also bounds nesting and the number of documents before serde_yaml runs).

use super::error::{ConfigError, ConfigErrors, FieldPath};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Deepest nesting of mappings and sequences accepted (the schema needs 6).
pub const MAX_DEPTH: usize = 64;

/// Field path to the 1-based line and column where it is written.
#[derive(Debug, Default)]
pub struct Positions {
    map: HashMap<String, (usize, usize)>,
}

impl Positions {
    /// Indexes a YAML document. A syntax error comes back as a located error, and so do a
    /// second document and nesting deeper than [`MAX_DEPTH`] (checked here, event by event,
    /// before any recursive parser sees the text).
    pub fn index(text: &str) -> Result<Self, ConfigError> {
        let located = |mark: Marker, message: String| ConfigError {
            path: String::new(),
            location: Some((mark.line(), mark.col() + 1)),
            message,
        };
        let mut recv = Indexer::default();
        let mut parser = Parser::new_from_str(text);
        let mut documents = 0;
        loop {
            let (ev, mark) = parser
                .next_token()
                .map_err(|e| located(*e.marker(), format!("invalid YAML: {}", e.info())))?;
            match ev {
                Event::StreamEnd => break,
                Event::DocumentStart => {
                    documents += 1;
                    if documents > 1 {
                        return Err(located(
                            mark,
                            "a second YAML document starts here; the config file holds one".into(),
                        ));
                    }
                }
                _ => {}
            }
            recv.on_event(ev, mark);
            if recv.stack.len() > MAX_DEPTH {
                return Err(located(
                    mark,
                    format!("invalid YAML: nested more than {MAX_DEPTH} levels deep"),
                ));
            }
        }
        Ok(Self { map: recv.map })
    }

    /// Where `path` is written, or its nearest written ancestor.
    pub fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.map.get(&p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p.truncate(cut);
        }
    }

    /// Fills in the location of every error that has none, then orders them by position.
    pub fn locate(&self, errs: &mut ConfigErrors) {
        for e in errs.0.iter_mut() {
            if e.location.is_none() {
                e.location = self.find(&e.path);
            }
        }
        errs.sort_by_location();
    }
}

enum Frame {
    Map {
        path: FieldPath,
        key: Option<String>,
    },
    Seq {
        path: FieldPath,
        next: usize,
    },
}

#[derive(Default)]
struct Indexer {
    stack: Vec<Frame>,
    map: HashMap<String, (usize, usize)>,
}

impl Indexer {
    /// The path of the value that starts now, or `None` when the event is a mapping key.
    fn value_path(&mut self, scalar: Option<&str>, mark: Marker) -> Option<FieldPath> {
        let pos = (mark.line(), mark.col() + 1);
        match self.stack.last_mut() {
            None => {
                // The document's root: where errors about the whole file point.
                self.map.entry(String::new()).or_insert(pos);
                Some(FieldPath::root())
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(path.key(&k)),
                None => {
                    let k = scalar.unwrap_or("?").to_string();
                    self.map.insert(path.key(&k).as_str().to_string(), pos);
                    *key = Some(k);
                    None
                }
            },
            Some(Frame::Seq { path, next }) => {
                let p = path.index(*next);
                *next += 1;
                self.map.insert(p.as_str().to_string(), pos);
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(s, ..) => {
                let _ = self.value_path(Some(&s), mark);
            }
            Event::Alias(_) => {
                let _ = self.value_path(Some("*alias"), mark);
            }
            Event::MappingStart(..) => {
                if let Some(path) = self.value_path(None, mark) {
                    self.stack.push(Frame::Map { path, key: None });
                } else {
                    // A complex key: track it as an anonymous mapping.
                    self.stack.push(Frame::Map {
                        path: FieldPath::root().key("?"),
                        key: None,
                    });
                }
            }
            Event::SequenceStart(..) => {
                let path = self
                    .value_path(None, mark)
                    .unwrap_or_else(|| FieldPath::root().key("?"));
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

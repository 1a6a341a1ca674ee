//! LLM wire types. Every struct keeps the fields it does not name in `extra`, so a body parsed
//! and written back loses nothing.

pub mod answer;
pub mod anthropic;
pub mod openai;
pub mod responses;
pub mod stream;

use serde_json::{Map, Value};

/// Fields a type does not name, kept verbatim.
pub type Extra = Map<String, Value>;

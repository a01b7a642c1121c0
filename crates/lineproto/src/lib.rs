//! Parser and encoder for the InfluxDB/QuestDB line protocol.
//!
//! A line looks like `measurement[,tag=value...] field=value[,field=value...] [timestamp]`.
//! This crate turns batches of such lines into borrowed [`Line`] values
//! (escaped tokens are the only thing that allocates), reports every malformed
//! line as its own [`LineError`] while keeping the good ones, and writes
//! [`Line`]s back out with correct escaping. It is pure and synchronous: no
//! I/O, no clocks, no panics on any input.
//!
//! The accepted syntax follows the upstream line-protocol conformance corpus
//! (see `tests/corpus.rs`); `README.md` lists the grammar decisions.
//!
//! ```
//! use tradestack_lineproto::{parse_batch, FieldValue, ParseOptions, Precision};
//!
//! let input = b"trades,symbol=BTC-USDT price=42000.5,id=7i 1582329600\nbad line\n";
//! let mut prices = Vec::new();
//! let errors = parse_batch(input, &ParseOptions::new(Precision::Seconds), |line| {
//!     if let Some(FieldValue::Float(p)) = line.field("price") {
//!         prices.push((*p, line.timestamp));
//!     }
//! });
//! assert_eq!(prices, vec![(42000.5, Some(1_582_329_600_000_000_000))]);
//! assert_eq!(errors.len(), 1);
//! assert_eq!(errors[0].line, 2);
//! ```

#![warn(missing_docs)]

mod encode;
mod error;
mod float;
mod line;
mod parse;
mod precision;

pub use encode::{EncodeError, Encoder, NameKind, encode_line};
pub use error::{ErrorKind, LineError, Section, ValueType};
pub use line::{FieldValue, Line};
pub use parse::{ParseOptions, Parser, parse_batch};
pub use precision::{ParsePrecisionError, Precision};

//! Which route a request takes, and the path it leaves with.

// Request path: no index may panic on hostile input.
#![deny(clippy::indexing_slicing)]

pub mod path;
pub mod table;

pub use path::{normalize_request_path, PathError, RequestPath};
pub use table::RouteTable;

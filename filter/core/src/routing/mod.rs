//! Which route a request takes, and the path it leaves with.

pub mod path;
pub mod table;

pub use path::{normalize_request_path, PathError, RequestPath};
pub use table::RouteTable;

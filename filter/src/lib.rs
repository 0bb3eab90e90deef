//! see glue

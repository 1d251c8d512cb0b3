//! Host CLI (being written).
fn main() {}

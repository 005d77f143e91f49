//! Project chores (man pages, completions, packages): `cargo xtask --help`.
fn main() {}

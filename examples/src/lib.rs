//! Examples of the Tern crates live in `examples/`; run one with `cargo run -p tern-examples --example NAME`.

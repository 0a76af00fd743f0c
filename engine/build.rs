//! The dashboard's files are embedded by `include_dir!`, which cannot tell Cargo to watch
//! them on stable Rust: this does, so an edited page is rebuilt into the binary.

fn main() {
    println!("cargo:rerun-if-changed=../dashboard");
}

//! Links the `cc-ci-run` binary as a position-dependent executable.
//!
//! Why: a position-independent executable of this size carries about
//! 22,000 relative relocations that the dynamic loader applies at every
//! start, touching (and copying) every page of `.data.rel.ro` before
//! `main`. Every guarded command starts the binary (`exec`, SPEC section
//! 8's wrapper overhead), and on a host whose page faults are dear that was
//! a third of the start. Linked `-no-pie`, the addresses are fixed at link
//! time and about 180 relocations remain. The price is that the
//! executable's own code is not placed at a random address (its libraries,
//! stack and heap still are); README "Building" says so.
//!
//! Only the binary is linked this way (`rustc-link-arg-bins`): the library
//! and the test programs keep the toolchain's default.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}

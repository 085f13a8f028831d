# The development shell: the toolchain and everything the test suite and
# scripts/lint.sh start (the same list .ci/run installs on Debian).
{
  mkShell,
  cc-ci-run,
  cargo-nextest,
  clippy,
  rustfmt,
  rust-analyzer,
  git,
  nix,
  python3,
  util-linux,
}:

mkShell {
  # cargo, rustc and the build inputs of the package.
  inputsFrom = [ cc-ci-run ];
  packages = [
    cargo-nextest
    clippy
    rustfmt
    rust-analyzer
    git
    nix
    python3
    util-linux
  ];
}

# The cc-ci-run package: the binary, its shell completions and man pages.
#
# The version is Cargo.toml's, so a release is one edit. The test suite is
# not run on every build (it starts hundreds of real processes); the flake's
# `checks.<system>.tests` turns it on.
{
  lib,
  stdenv,
  rustPlatform,
  installShellFiles,
  bash,
  git,
  nix,
  python3,
  util-linux,
}:

let
  cargoToml = builtins.fromTOML (builtins.readFile ../Cargo.toml);
in
rustPlatform.buildRustPackage {
  pname = cargoToml.package.name;
  version = cargoToml.package.version;

  # Only what the build and the tests read: never a local target/ directory.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../build.rs
      ../src
      ../tests
      ../examples
      ../scripts
      ../docs
      ../nix
      ../flake.nix
      ../.config
      ../.drone.yml
      ../README.md
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [ installShellFiles ];

  doCheck = false;
  useNextest = true;
  # What the concurrency tests start: the stand-ins (python3), the example
  # recipe's repositories (git), util-linux flock(1) as a foreign lock
  # holder, nix-instantiate for the .nix parse check.
  nativeCheckInputs = [
    bash
    git
    nix
    python3
    util-linux
  ];
  # The stand-ins and scripts start with `#!/usr/bin/env`, absent in the sandbox.
  postPatch = ''
    patchShebangs tests/fake scripts
  '';
  preCheck = ''
    export HOME=$TMPDIR NIX_STATE_DIR=$TMPDIR/nix-state
  '';
  # The README test runs scripts/demo.sh, which builds a second release
  # binary with cargo; .ci/run covers it.
  checkFlags = [
    "--skip"
    "readme"
  ];

  # Completions and man pages come from the binary itself (clap_complete,
  # clap_mangen), so they cannot drift from its flags. The main page names
  # each subcommand's page as cc-ci-run-COMMAND(1); one page each.
  postInstall = lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    installShellCompletion --cmd cc-ci-run \
      --bash <($out/bin/cc-ci-run completions bash) \
      --zsh <($out/bin/cc-ci-run completions zsh) \
      --fish <($out/bin/cc-ci-run completions fish)
    $out/bin/cc-ci-run man > cc-ci-run.1
    for c in $($out/bin/cc-ci-run man | sed -n 's/^cc\\-ci\\-run\\-\([a-z]*\)(1)$/\1/p'); do
      $out/bin/cc-ci-run man "$c" > "cc-ci-run-$c.1"
    done
    installManPage cc-ci-run*.1
  '';

  meta = {
    description = cargoToml.package.description;
    license = lib.licenses.agpl3Plus;
    mainProgram = "cc-ci-run";
    platforms = lib.platforms.linux;
  };
}

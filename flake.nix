# cc-ci-run as a flake: the package, the NixOS module of the CI host, a
# development shell, and the test suite as a check.
#
#   nix build                 # ./result/bin/cc-ci-run, completions, man pages
#   nix develop               # toolchain, cargo-nextest, python3, git, flock
#   nix flake check           # runs the test suite in the build sandbox
{
  description = "cc-ci-run: the harness wrapper of a Co-op Cloud recipe CI";

  # clap 4.6 needs rustc 1.85 or newer.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs =
    { self, nixpkgs }:
    let
      # The harness is Linux only (prctl, /proc, flock semantics).
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      packageOf = pkgs: self.packages.${pkgs.stdenv.hostPlatform.system}.default;
    in
    {
      packages = forAllSystems (pkgs: {
        default = pkgs.callPackage ./nix/package.nix { };
      });

      overlays.default = final: _prev: {
        cc-ci-run = final.callPackage ./nix/package.nix { };
      };

      # The module defaults its package to this flake's.
      nixosModules.default =
        { pkgs, lib, ... }:
        {
          imports = [ ./nix/module.nix ];
          services.cc-ci-run.package = lib.mkDefault (packageOf pkgs);
        };

      devShells = forAllSystems (pkgs: {
        default = pkgs.callPackage ./nix/shell.nix { cc-ci-run = packageOf pkgs; };
      });

      checks = forAllSystems (pkgs: {
        # The package with its test suite turned on (cargo nextest run).
        tests = (packageOf pkgs).overrideAttrs { doCheck = true; };
      });
    };
}

# cc-ci-run as a flake: the NixOS module of the CI host, an overlay, and
# functions that build the package, the development shell and the test
# suite with a given nixpkgs.
#
# The flake has no inputs. It builds with the nixpkgs of whoever uses it:
# the module and the overlay with the host's own `pkgs`, so a CI host has
# one nixpkgs, not a second one pinned here to keep in step. It also keeps
# flake.lock complete and honest: there is nothing to fetch, so the
# committed lock is the one `nix flake metadata` computes offline (a
# nixpkgs input could not be locked without network access to GitHub, and
# a lock copied from elsewhere could not be checked).
#
#   nixosModules.default      services.cc-ci-run (nix/module.nix, with the overlay)
#   overlays.default          pkgs.cc-ci-run
#   lib.package pkgs          the package (binary, completions, man pages)
#   lib.devShell pkgs         toolchain, cargo-nextest, python3, git, flock
#   lib.tests pkgs            the package with its test suite turned on
{
  description = "cc-ci-run: the harness wrapper of a Co-op Cloud recipe CI";

  outputs =
    { self }:
    {
      lib = {
        package = pkgs: pkgs.callPackage ./nix/package.nix { };
        devShell = pkgs: pkgs.callPackage ./nix/shell.nix { cc-ci-run = self.lib.package pkgs; };
        tests = pkgs: (self.lib.package pkgs).overrideAttrs { doCheck = true; };
      };

      overlays.default = final: _prev: {
        cc-ci-run = final.callPackage ./nix/package.nix { };
      };

      # The module's package defaults to pkgs.cc-ci-run: nix/package.nix
      # built with the host's pkgs, through the overlay.
      nixosModules.default = {
        imports = [ ./nix/module.nix ];
        nixpkgs.overlays = [ self.overlays.default ];
      };
    };
}

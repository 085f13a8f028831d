# Evaluates nix/module.nix without nixpkgs (none can be fetched here):
# a minimal stub of `lib` (the functions the module uses, option types
# that check their values) and of `pkgs` (packages as store-path stubs),
# and a tiny module system that gives every option its value (the host's
# setting, checked against the option's type, else its default) and
# resolves `mkIf`. What comes out is plain data for tests/nix/main.rs.
#
#   nix-instantiate --eval --strict --json tests/nix/eval-module.nix \
#     --arg host 'import ./ci-host.nix'
#
# host: a NixOS module as the README shows it (a function of pkgs, lib,
# config, or an attribute set); its services.cc-ci-run is the user's
# setting, the rest (virtualisation, services.prometheus, networking) is
# the rest of the host's configuration.
{ host, module ? ../../nix/module.nix }:
let
  b = builtins;

  package = name: {
    type = "derivation";
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    inherit name;
    meta.mainProgram = name;
  };

  pkgs = {
    # A package named after its file (`./abra.nix` is abra).
    callPackage = fn: _args: package (b.replaceStrings [ ".nix" ] [ "" ] (b.baseNameOf (toString fn)));
    writeText = name: text: package name // { inherit text; };
    bash = package "bash";
    coreutils = package "coreutils";
    git = package "git";
    curl = package "curl";
    util-linux = package "util-linux";
    docker = package "docker";
    # As the flake's overlay (nixosModules.default) provides it.
    cc-ci-run = package "cc-ci-run";
    drone-runner-exec = package "drone-runner-exec";
  };

  type = name: check: { inherit name check; };

  lib = rec {
    inherit (b) all;
    concatStrings = b.concatStringsSep "";
    concatStringsSep = b.concatStringsSep;
    filterAttrs = pred: set: b.listToAttrs (b.filter (kv: pred kv.name kv.value) (b.map (name: { inherit name; value = set.${name}; }) (b.attrNames set)));
    mapAttrsToList = f: set: b.map (n: f n set.${n}) (b.attrNames set);
    hasPrefix = p: s: b.substring 0 (b.stringLength p) s == p;
    hasInfix = infix: s: b.length (b.split (escapeRegex infix) s) > 1;
    escapeRegex = s: b.replaceStrings [ "\\" "[" "]" "(" ")" "{" "}" "." "*" "+" "?" "^" "$" "|" ] [ "\\\\" "\\[" "\\]" "\\(" "\\)" "\\{" "\\}" "\\." "\\*" "\\+" "\\?" "\\^" "\\$" "\\|" ] s;
    optional = cond: x: if cond then [ x ] else [ ];
    optionalString = cond: s: if cond then s else "";
    optionalAttrs = cond: set: if cond then set else { };
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    getExe = p: "${p}/bin/${p.meta.mainProgram}";
    getExe' = p: name: "${p}/bin/${name}";
    mkDefault = x: x;
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkOption = attrs: attrs // { _type = "option"; };
    mkPackageOption = pkgs: name: _args: mkOption { type = types.package; default = pkgs.${name}; defaultText = literalExpression "pkgs.${name}"; description = "The ${name} package to use."; };
    toIntBase10 = s: b.fromJSON (b.head (b.match "0*([0-9]+)" s));
    mkEnableOption = what: mkOption { type = types.bool; default = false; description = "Whether to enable ${what}."; };
    types = {
      str = type "str" b.isString;
      bool = type "bool" b.isBool;
      path = type "path" (v: (b.isString v && hasPrefix "/" v) || b.isPath v);
      package = type "package" (v: b.isAttrs v && v ? outPath);
      strMatching = re: type "strMatching ${re}" (v: b.isString v && b.match re v != null);
      enum = values: type "one of ${b.toJSON values}" (v: b.elem v values);
      nullOr = t: type "null or ${t.name}" (v: v == null || t.check v);
      listOf = t: type "list of ${t.name}" (v: b.isList v && b.all t.check v);
      attrsOf = t: type "attrs of ${t.name}" (v: b.isAttrs v && b.all (n: t.check v.${n}) (b.attrNames v));
      ints.positive = type "positive integer" (v: b.isInt v && v > 0);
    };
  };

  isOption = x: b.isAttrs x && (x._type or null) == "option";

  # Every option's value: the host's (type-checked) or the default; a host
  # setting no option declares is an error, as in NixOS.
  resolve = path: options: given:
    let
      unknown = b.filter (n: !(options ? ${n})) (b.attrNames given);
    in
    if unknown != [ ] then
      throw "${path}.${b.head unknown}: no such option"
    else
      b.mapAttrs (
        name: opt:
        let
          p = "${path}.${name}";
        in
        if isOption opt then
          # What a nixpkgs reviewer asks of every option.
          if !(opt ? type) then throw "${p}: declares no type"
          else if !(opt ? description) || opt.description == "" then throw "${p}: has no description"
          else if given ? ${name} then
            (if opt.type.check given.${name} then given.${name} else throw "${p}: not a ${opt.type.name}")
          else if opt ? default then
            (if opt.type.check opt.default then opt.default else throw "${p}: its default is not a ${opt.type.name}")
          else
            throw "${p}: has no default and is not set"
        else
          resolve p opt (given.${name} or { })
      ) options;

  # mkIf resolved all the way down (a false condition leaves null).
  realize = x:
    if b.isAttrs x && (x._type or null) == "if" then
      (if x.condition then realize x.content else null)
    else if b.isAttrs x && !(x ? outPath) then
      b.mapAttrs (_: realize) x
    else if b.isList x then
      b.map realize x
    else
      x;

  hostModule = if b.isFunction host then host { inherit pkgs lib config; } else host;
  rest = b.removeAttrs hostModule [ "imports" ];
  defaults = {
    networking.hostName = "ci1";
    virtualisation.docker = { enable = false; package = pkgs.docker; };
    services.prometheus.exporters.node = { enable = false; extraFlags = [ ]; };
  };
  merge = a: c: a // b.mapAttrs (n: v: if b.isAttrs v && b.isAttrs (a.${n} or null) && !(v ? outPath) then merge a.${n} v else v) c;
  given = (rest.services or { }).cc-ci-run or { };
  config = merge defaults (b.removeAttrs rest [ "services" ]) // {
    services = merge defaults.services (b.removeAttrs (rest.services or { }) [ "cc-ci-run" ]) // {
      cc-ci-run = cfg;
    };
  };

  moduleValue = import module { inherit config lib pkgs; };
  cfg = resolve "services.cc-ci-run" moduleValue.options.services.cc-ci-run given;
  out = realize moduleValue.config;
  services = out.systemd.services;
  # The runner's environment file: the one store file its environment names.
  envFiles = if out == null || services.drone-runner-exec == null then [ ] else b.filter (v: b.isAttrs v && v ? text) (b.attrValues services.drone-runner-exec.environment);
  envFile = if envFiles == [ ] then null else b.head envFiles;
in
{
  # Forcing every option's value type-checks the host's settings and every default.
  options = b.attrNames cfg;
  values = b.mapAttrs (_: v: if b.isAttrs v && v ? outPath then "${v}" else v) (b.removeAttrs cfg [ "package" "runner" "janitor" "metrics" ]) // {
    janitor = cfg.janitor;
    metrics = cfg.metrics;
    runner = b.removeAttrs cfg.runner [ "package" ];
  };
  enabled = out != null;
  failedAssertions = if out == null then [ ] else b.map (a: a.message) (b.filter (a: !a.assertion) out.assertions);
  systemEnvironment = if out == null then { } else out.environment.variables;
  janitor = if out == null then null else services.cc-ci-run-janitor;
  runnerUnit = if out == null then null else services.drone-runner-exec;
  runnerEnvironment = if out == null || services.drone-runner-exec == null then null else services.drone-runner-exec.environment;
  runnerEnvFile = if envFile == null then null else envFile.text;
  hostFile = if out == null then null else out.environment.etc."cc-ci-run/host.env".text;
  meta = moduleValue.meta or null;
  users = if out == null then null else { users = out.users.users; groups = out.users.groups; };
  tmpfiles = if out == null then [ ] else out.systemd.tmpfiles.rules;
  nodeExporterFlags = if out == null then null else out.services.prometheus.exporters.node.extraFlags;
}

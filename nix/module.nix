# NixOS module for a cc-ci-run CI host: the state directory, the CCCI_*
# settings, the janitor, and the Drone exec runner whose steps call
# `cc-ci-run run`.
#
#   services.cc-ci-run = {
#     enable = true;
#     abraHome = "/var/lib/cc-ci-run/abra";
#     abraPackage = abra;
#     runner = {
#       enable = true;
#       rpcHost = "drone.example.org";
#       environmentFile = "/run/secrets/drone-runner"; # DRONE_RPC_SECRET=...
#       limitRepos = [ "recipes/*" ];
#       capacity = 4;
#     };
#   };
#   virtualisation.docker.enable = true;   # asserted
#
# The README's "Operator quick start (NixOS)" shows a whole host; tests/nix
# evaluates that example and this module's assertions.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.cc-ci-run;
  inherit (lib)
    concatStrings
    concatStringsSep
    filterAttrs
    hasPrefix
    literalExpression
    mapAttrsToList
    mkEnableOption
    mkIf
    mkOption
    mkPackageOption
    optional
    types
    ;

  # What cc-ci-run accepts as a duration (`500ms`, `10s`, `5m`, `1h`, `7d`,
  # whole seconds: src/units.rs), and the same in whole seconds.
  duration = types.strMatching "[0-9]+(ms|s|m|h|d)?";
  seconds =
    d:
    let
      m = builtins.match "([0-9]+)(ms|s|m|h|d)?" d;
      n = lib.toIntBase10 (builtins.head m);
      unit = builtins.elemAt m 1;
    in
    if unit == "ms" then
      n / 1000
    else if unit == "m" then
      n * 60
    else if unit == "h" then
      n * 3600
    else if unit == "d" then
      n * 86400
    else
      n;

  # An absolute path kept as a string: a `types.path` option given a Nix
  # path literal (`./secret`) copies the file into the world-readable store.
  absolutePath = types.strMatching "/.*";

  # Every CCCI_* setting, exactly as the runs (through the runner) and the
  # janitor see it: both must agree on the state directory, the abra home,
  # the app domains and what the janitor may reap.
  typedSettings = {
    CCCI_STATE_DIR = cfg.stateDir;
    CCCI_ABRA_HOME = cfg.abraHome;
    # The programs by their store paths: what runs is the host's choice.
    CCCI_ABRA = lib.getExe' cfg.abraPackage "abra";
    CCCI_DOCKER = lib.getExe' cfg.dockerPackage "docker";
    # `cc-ci-run comment` posts the verdict to the pull request through it.
    CCCI_CURL = lib.getExe' pkgs.curl "curl";
    CCCI_SERVER = cfg.server;
    CCCI_DOMAIN_SUFFIX = cfg.domainSuffix;
    CCCI_RUN_APP_RE = cfg.runAppRe;
    CCCI_PROTECTED_APPS =
      if cfg.protectedApps == [ ] then null else concatStringsSep "," cfg.protectedApps;
    CCCI_TEARDOWN_TIMEOUT = cfg.teardownTimeout;
    CCCI_LOCK_MAX_AGE = cfg.lockMaxAge;
    CCCI_RECORD_RETENTION = cfg.recordRetention;
    CCCI_LOCK_BACKEND = cfg.lockBackend;
    CCCI_HOST_ID = cfg.hostId;
    CCCI_METRICS_FILE = if metricsOn then "${cfg.metrics.textfileDirectory}/cc-ci-run.prom" else null;
    CCCI_TIMELINE_FILE = cfg.timelineFile;
    DOCKER_CONFIG = cfg.dockerConfig;
  };
  settings = filterAttrs (_: v: v != null) (typedSettings // cfg.extraSettings);
  # extraSettings naming what a typed option sets would override it unseen.
  shadowed = builtins.filter (n: typedSettings ? ${n}) (builtins.attrNames cfg.extraSettings);

  # Where the units may write (ProtectSystem=strict makes the rest
  # read-only): the state, the abra home (abra writes app env files under
  # servers/), the metrics and timeline outputs, the registry credentials.
  writable =
    [
      cfg.stateDir
      cfg.abraHome
    ]
    ++ optional metricsOn cfg.metrics.textfileDirectory
    ++ optional (cfg.timelineFile != null) (dirOf cfg.timelineFile)
    ++ optional (cfg.dockerConfig != null) cfg.dockerConfig;

  # The hardening a reviewer asks of every service; what cc-ci-run needs
  # stays: the Docker socket (connecting is not writing), /proc, its own
  # process groups and rlimits. sudo and setuid helpers do not work in a step.
  hardening = {
    NoNewPrivileges = true;
    PrivateTmp = true;
    ProtectSystem = "strict";
    ProtectHome = "read-only";
    ReadWritePaths = writable;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectControlGroups = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
  };

  # The unit's dependencies on the engine: without Docker no run can work,
  # and a restart of Docker restarts them.
  onDocker = [ "docker.service" ];

  # node_exporter's textfile collector reads the metrics file when that
  # exporter is on (unless metrics.enable says otherwise).
  nodeExporter = config.services.prometheus.exporters.node;
  metricsOn = cfg.metrics.enable;

  # The runner's steps get the settings from an environment file
  # (DRONE_RUNNER_ENVFILE, read with godotenv: drone-runner-exec's
  # daemon/config.go), not DRONE_RUNNER_ENVIRON:
  # that one is parsed as `K:V,K:V` and cannot carry a value with `,` or
  # `:` (a URL, a list). In the file each value is single-quoted, which
  # godotenv takes literally (no escapes, no `$` expansion); a value with a
  # `'` or a newline cannot be written so and is refused by an assertion.
  settingsText = concatStrings (mapAttrsToList (k: v: "${k}='${v}'\n") settings);
  runnerEnvFile = pkgs.writeText "cc-ci-run-runner.env" settingsText;
  unquotable = filterAttrs (k: v: lib.hasInfix "'" v || lib.hasInfix "\n" v) settings;

  # What a step finds on PATH (the exec runner passes its own PATH to the
  # steps' `/bin/sh`, and the steps call `cc-ci-run` by name), and the
  # janitor's PATH: both call abra, docker and git.
  stepPath = [
    cfg.package
    cfg.abraPackage
    cfg.dockerPackage
    pkgs.bash
    pkgs.coreutils
    pkgs.git
    pkgs.util-linux
  ] ++ cfg.path;
in
{
  options.services.cc-ci-run = {
    enable = mkEnableOption "the cc-ci-run CI host (state directory and settings)";

    # pkgs.cc-ci-run: the flake's nixosModules.default adds its overlay.
    package = mkPackageOption pkgs "cc-ci-run" { };

    abraPackage = mkOption {
      type = types.package;
      example = literalExpression "pkgs.callPackage ./abra.nix { }";
      description = ''
        abra, Co-op Cloud's command line (its bin/abra): CCCI_ABRA and the
        PATH of steps and janitor. Required: runs deploy with it.
      '';
    };

    dockerPackage = mkOption {
      type = types.package;
      default = config.virtualisation.docker.package;
      defaultText = literalExpression "config.virtualisation.docker.package";
      description = "The docker client (its bin/docker): CCCI_DOCKER and the PATH of steps and janitor.";
    };

    user = mkOption {
      type = types.str;
      default = "cc-ci-run";
      description = ''
        User of the runner's steps and of the janitor; owns the state
        directory and the abra home. The module creates `cc-ci-run`; a
        user named otherwise is the host's to define (in the docker group).
      '';
    };

    group = mkOption {
      type = types.str;
      default = "cc-ci-run";
      description = "Group of the state directory (created when it is `cc-ci-run`).";
    };

    extraGroups = mkOption {
      type = types.listOf types.str;
      default = [ "docker" ];
      description = "Supplementary groups of the user (abra and docker need the Docker socket).";
    };

    stateDir = mkOption {
      type = absolutePath;
      default = "/var/lib/cc-ci-run";
      description = "CCCI_STATE_DIR: locks, run trees, run records, logs (never inside a Drone workspace).";
    };

    stateDirMode = mkOption {
      type = types.strMatching "0[0-7]{3}";
      default = "0750";
      description = "Mode of the state directory (run logs may name hosts and apps).";
    };

    abraHome = mkOption {
      type = absolutePath;
      example = "/var/lib/cc-ci-run/abra";
      description = ''
        CCCI_ABRA_HOME: the host's canonical abra directory (servers/,
        catalogue/, recipes/), created owned by the user (git refuses a
        repository another user owns). Required: under Drone, HOME is a
        fresh directory per build, so runs cannot find `~/.abra`.
      '';
    };

    server = mkOption {
      type = types.str;
      default = "default";
      description = "CCCI_SERVER: the abra server runs deploy to and the janitor sweeps.";
    };

    domainSuffix = mkOption {
      type = types.str;
      default = "ci.localhost";
      description = "CCCI_DOMAIN_SUFFIX: app domains are `{recipe}-{lane}.{suffix}`; use one per runner host.";
    };

    runAppRe = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "CCCI_RUN_APP_RE: which apps the janitor may reap (default: exactly the domain template's names).";
    };

    protectedApps = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "traefik.example.org" ];
      description = "CCCI_PROTECTED_APPS: apps no RUN_APP_RE may match (the janitor refuses to start otherwise).";
    };

    teardownTimeout = mkOption {
      type = duration;
      default = "5m";
      description = "CCCI_TEARDOWN_TIMEOUT: bound of a run's and of a reap's teardown.";
    };

    lockMaxAge = mkOption {
      type = duration;
      default = "2h";
      description = "CCCI_LOCK_MAX_AGE: locks held longer are flagged (never stolen).";
    };

    lockBackend = mkOption {
      type = types.enum [
        "flock"
        "swarm"
      ];
      default = "flock";
      description = ''
        CCCI_LOCK_BACKEND: who arbitrates app-domain locks. `flock` when this
        host is the only runner host of its swarm; `swarm` when several
        runner hosts feed one swarm (the lock is then a lease in the swarm's
        raft store; set a distinct hostId on every host).
      '';
    };

    hostId = mkOption {
      type = types.nullOr (types.strMatching "[A-Za-z0-9][A-Za-z0-9._-]{0,62}");
      default = null;
      description = "CCCI_HOST_ID: this runner host's name in swarm lock labels (default: the host name).";
    };

    recordRetention = mkOption {
      type = duration;
      default = "336h";
      description = "CCCI_RECORD_RETENTION: finished run records older than this are pruned.";
    };

    metrics = {
      enable = mkOption {
        type = types.bool;
        default = nodeExporter.enable;
        defaultText = literalExpression "config.services.prometheus.exporters.node.enable";
        description = ''
          Write CCCI_METRICS_FILE (Prometheus text format, rewritten after
          every run and janitor sweep) into textfileDirectory, and point
          node_exporter's textfile collector at that directory.
        '';
      };
      textfileDirectory = mkOption {
        type = absolutePath;
        default = "/var/lib/cc-ci-run-metrics";
        description = ''
          The textfile collector's directory (created, owned by the user,
          readable by node_exporter). If node_exporter already has a
          --collector.textfile.directory, set this to it.
        '';
      };
    };

    timelineFile = mkOption {
      type = types.nullOr absolutePath;
      default = null;
      example = "/var/www/ci/timeline.html";
      description = ''
        CCCI_TIMELINE_FILE: the HTML timeline page every run rewrites (an
        absolute path in an existing directory the user may write), for a
        static web server to serve.
      '';
    };

    dockerConfig = mkOption {
      type = types.nullOr absolutePath;
      default = null;
      example = "/var/lib/cc-ci-run/docker";
      description = ''
        DOCKER_CONFIG for runs and janitor: a directory outside the Nix
        store holding the registry credentials (`config.json`, as
        `docker login` writes it) the image pulls use. Under Drone every
        build has a fresh HOME, so without it every pull is anonymous
        (and rate-limited). Keep it readable by the user only.
      '';
    };

    extraSettings = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = {
        CCCI_CONVERGE_TIMEOUT = "10m";
      };
      description = ''
        Further CCCI_* settings (the README's Settings table), for runs and
        janitor alike. A name a typed option sets is refused (an assertion):
        set that option instead.
      '';
    };

    path = mkOption {
      type = types.listOf types.package;
      default = [ ];
      example = literalExpression "[ pkgs.jq ]";
      description = ''
        Further programs on the PATH of steps and janitor, besides
        cc-ci-run, abra, docker, bash, coreutils, git and util-linux.
      '';
    };

    janitor = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Run `cc-ci-run janitor --watch` as a service.";
      };
      interval = mkOption {
        type = duration;
        default = "5m";
        description = "Time between sweeps.";
      };
      stopTimeout = mkOption {
        type = duration;
        default = "6m";
        description = ''
          TimeoutStopSec of the janitor: a stop lets a reap that has begun
          finish under its lock, so this must exceed teardownTimeout (an
          assertion).
        '';
      };
    };

    runner = {
      enable = mkEnableOption "the Drone exec runner whose steps call cc-ci-run";
      # Under the Polyform licence: nixpkgs needs allowUnfree (or an
      # allowUnfreePredicate naming it).
      package = mkPackageOption pkgs "drone-runner-exec" { };
      capacity = mkOption {
        type = types.ints.positive;
        default = 2;
        description = ''
          DRONE_RUNNER_CAPACITY: how many builds run at once on this host,
          the one concurrency knob (locks keep concurrent runs apart).
        '';
      };
      name = mkOption {
        type = types.str;
        default = config.networking.hostName;
        defaultText = literalExpression "config.networking.hostName";
        description = "DRONE_RUNNER_NAME.";
      };
      rpcProto = mkOption {
        type = types.enum [
          "http"
          "https"
        ];
        default = "https";
        description = "DRONE_RPC_PROTO.";
      };
      rpcHost = mkOption {
        type = types.str;
        example = "drone.example.org";
        description = "DRONE_RPC_HOST: the Drone server.";
      };
      environmentFile = mkOption {
        type = absolutePath;
        example = "/run/secrets/drone-runner";
        description = ''
          A file with DRONE_RPC_SECRET=..., read by systemd; an absolute
          path as a string, outside the Nix store (an assertion), so the
          secret never lands in the world-readable store.
        '';
      };
      limitRepos = mkOption {
        type = types.listOf (types.strMatching "[^,[:space:]]+");
        default = [ ];
        example = [
          "recipes/*"
          "recipes/cc-ci"
        ];
        description = ''
          DRONE_LIMIT_REPOS: the repositories (`owner/name`, globs allowed)
          whose exec pipelines this runner accepts: the host's first line of
          defence. Without it, any repository on the Drone server with an
          exec pipeline runs its commands on this host, next to the Docker
          socket; so it is required (an assertion) when the runner is on.
          List the enrolled recipe repositories and the CI repository.
        '';
      };
      limitEvents = mkOption {
        type = types.listOf (
          types.enum [
            "push"
            "pull_request"
            "tag"
            "promote"
            "rollback"
            "cron"
            "custom"
          ]
        );
        default = [ ];
        example = [
          "push"
          "pull_request"
          "tag"
          "custom"
        ];
        description = "DRONE_LIMIT_EVENTS: the build events this runner accepts (empty: all).";
      };
      limitTrusted = mkOption {
        type = types.bool;
        default = false;
        description = "DRONE_LIMIT_TRUSTED: accept only builds of repositories marked Trusted in Drone.";
      };
      extraEnvironment = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = "Further DRONE_* settings of the runner (DRONE_RUNNER_LABELS, ...).";
      };
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = config.virtualisation.docker.enable;
        message = "services.cc-ci-run needs Docker: set virtualisation.docker.enable = true (and initialise the swarm: docker swarm init).";
      }
      {
        assertion = !cfg.runner.enable || cfg.runner.limitRepos != [ ];
        message = "services.cc-ci-run.runner.limitRepos is empty: every repository on the Drone server with an exec pipeline would run on this host, next to the Docker socket. List the enrolled repositories (DRONE_LIMIT_REPOS).";
      }
      {
        assertion = cfg.dockerConfig == null || !hasPrefix builtins.storeDir cfg.dockerConfig;
        message = "services.cc-ci-run.dockerConfig: registry credentials must stay out of the world-readable Nix store; name a directory such as /var/lib/cc-ci-run/docker.";
      }
      {
        assertion = !cfg.runner.enable || !hasPrefix builtins.storeDir cfg.runner.environmentFile;
        message = "services.cc-ci-run.runner.environmentFile is in the Nix store, which every user can read: it holds DRONE_RPC_SECRET. Name a file outside it (/run/secrets/..., /var/lib/...).";
      }
      {
        assertion = seconds cfg.janitor.stopTimeout > seconds cfg.teardownTimeout;
        message = "services.cc-ci-run.janitor.stopTimeout (${cfg.janitor.stopTimeout}) must exceed teardownTimeout (${cfg.teardownTimeout}): a stop lets a reap already begun finish its teardown.";
      }
      {
        assertion = shadowed == [ ];
        message = "services.cc-ci-run.extraSettings sets what a typed option sets: ${concatStringsSep ", " shadowed}; set the option instead.";
      }
      {
        assertion = lib.all (hasPrefix "CCCI_") (builtins.attrNames cfg.extraSettings);
        message = "services.cc-ci-run.extraSettings: every name must start with CCCI_.";
      }
      {
        assertion = unquotable == { };
        message =
          "services.cc-ci-run: a setting's value cannot hold a single quote or a newline (the runner's environment file quotes them): "
          + concatStringsSep ", " (builtins.attrNames unquotable);
      }
    ];

    # Only the default user and group are the module's: one the host names
    # is the host's to define (nixpkgs modules never redefine a user).
    users.users = mkIf (cfg.user == "cc-ci-run") {
      cc-ci-run = {
        isSystemUser = true;
        group = cfg.group;
        extraGroups = cfg.extraGroups;
        home = cfg.stateDir;
      };
    };
    users.groups = mkIf (cfg.group == "cc-ci-run") { cc-ci-run = { }; };

    # The state directory outlives every build; the runs create locks/,
    # runs/ and the rest inside it. The abra home belongs to the user too:
    # runs clone its recipes, and git refuses a repository another user
    # owns ("dubious ownership") under a build's fresh HOME.
    systemd.tmpfiles.rules = [
      "d ${cfg.stateDir} ${cfg.stateDirMode} ${cfg.user} ${cfg.group} -"
      "d ${cfg.abraHome} 0750 ${cfg.user} ${cfg.group} -"
    ]
    ++ optional metricsOn "d ${cfg.metrics.textfileDirectory} 0755 ${cfg.user} ${cfg.group} -"
    # Registry credentials: the user's alone.
    ++ optional (cfg.dockerConfig != null) "d ${cfg.dockerConfig} 0700 ${cfg.user} ${cfg.group} -";

    services.prometheus.exporters.node.extraFlags = mkIf (metricsOn && nodeExporter.enable) [
      "--collector.textfile.directory=${cfg.metrics.textfileDirectory}"
    ];

    # The host-owned settings (README "Host-owned settings"): cc-ci-run
    # reads this file itself, at a path no build parameter can move, and
    # refuses (exit 2) a step environment that changes one of them. The
    # steps' environment file repeats the same values, which is no change.
    # Root-owned and read-only (a link into the store): no secret goes here.
    environment.etc."cc-ci-run/host.env".text = settingsText;

    # Operators' commands (`cc-ci-run status`, `locks`, `unlock`) see the
    # same settings as the services.
    environment.systemPackages = [ cfg.package ];
    # Not DOCKER_CONFIG: every user's docker would read the runner's
    # credentials directory (0700) and warn. cc-ci-run takes it from the
    # host settings file instead.
    environment.variables = builtins.removeAttrs settings [ "DOCKER_CONFIG" ];

    systemd.services.cc-ci-run-janitor = mkIf cfg.janitor.enable {
      description = "cc-ci-run janitor: reaps apps of dead CI runs";
      wantedBy = [ "multi-user.target" ];
      requires = onDocker;
      after = onDocker;
      environment = settings;
      path = stepPath;
      serviceConfig = {
        ExecStart = "${lib.getExe cfg.package} janitor --watch --interval ${cfg.janitor.interval}";
        User = cfg.user;
        Group = cfg.group;
        Restart = "on-failure";
        RestartSec = "30s";
        # Exit 2 is a configuration error (a bad setting): restarting cannot
        # fix it, so the unit stays failed and says so.
        RestartPreventExitStatus = "2";
        # A stop is SIGTERM: `--watch` finishes a reap it has begun and
        # exits 0; a SIGTERM that lands before its handlers are installed
        # ends it by the signal; a SIGTERM during a single sweep is 143.
        SuccessExitStatus = "143 SIGTERM";
        # SIGTERM to the janitor alone: the abra children of a reap in
        # progress must finish under the app lock, not die with it.
        KillMode = "mixed";
        TimeoutStopSec = "${toString (seconds cfg.janitor.stopTimeout)}s";
      } // hardening;
    };

    systemd.services.drone-runner-exec = mkIf cfg.runner.enable {
      description = "Drone exec runner for cc-ci-run pipelines";
      wantedBy = [ "multi-user.target" ];
      requires = onDocker;
      after = [ "network-online.target" ] ++ onDocker;
      wants = [ "network-online.target" ];
      path = stepPath;
      environment = {
        DRONE_RPC_PROTO = cfg.runner.rpcProto;
        DRONE_RPC_HOST = cfg.runner.rpcHost;
        DRONE_RUNNER_NAME = cfg.runner.name;
        DRONE_RUNNER_CAPACITY = toString cfg.runner.capacity;
        # Every step gets the settings from this file: drone-runner-exec
        # hands a step only its own PATH and USER besides this file and
        # DRONE_RUNNER_ENVIRON (engine/compiler/vars.go), so the unit's
        # environment never reaches a step.
        DRONE_RUNNER_ENVFILE = runnerEnvFile;
        # The runner's own web page (default admin/admin on :3000) is off.
        DRONE_UI_DISABLE = "true";
      }
      // lib.optionalAttrs (cfg.runner.limitRepos != [ ]) {
        DRONE_LIMIT_REPOS = concatStringsSep "," cfg.runner.limitRepos;
      }
      // lib.optionalAttrs (cfg.runner.limitEvents != [ ]) {
        DRONE_LIMIT_EVENTS = concatStringsSep "," cfg.runner.limitEvents;
      }
      // lib.optionalAttrs cfg.runner.limitTrusted { DRONE_LIMIT_TRUSTED = "true"; }
      // cfg.runner.extraEnvironment;
      serviceConfig = {
        ExecStart = "${lib.getExe' cfg.runner.package "drone-runner-exec"} daemon";
        EnvironmentFile = cfg.runner.environmentFile;
        User = cfg.user;
        Group = cfg.group;
        Restart = "always";
        RestartSec = "5s";
        # A stop cancels the running steps (SIGKILL of their sh, as a Drone
        # cancel): each cc-ci-run wrapper sees its parent die and its
        # harness tears the app down. Only the runner is signalled, so no
        # harness is killed mid-teardown by the unit's stop (the default
        # would SIGKILL the whole cgroup after TimeoutStopSec).
        KillMode = "process";
      } // hardening;
    };
  };

  # No nixpkgs maintainer handle yet: whoever proposes the module to
  # nixpkgs adds theirs.
  meta.maintainers = [ ];
}

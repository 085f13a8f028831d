"""Stand-in for Co-op Cloud's `abra`, for cc-ci-run's tests.

It follows the arguments, flags, exit codes and files of the real tool
closely enough that the harness cannot tell the difference (SPEC section
9), against a file-backed fake swarm shared with the stand-in `docker`
(the swarm state model is this package's, shared with it). Fault injection
and the call log are described in tests/fake/README.md.

Where each behaviour comes from (SPEC section 9 unless said otherwise;
abra file names as known, the upstream source was not at hand to re-read):

- `app new` (abra cli/app/new.go, pkg/recipe): needs servers/SERVER/, a
  git checkout at recipes/RECIPE, no existing env file; moves the checkout
  to VERSION or the latest release tag unless -C (refusing a dirty tree,
  like pkg/recipe's EnsureIsClean); writes the env file from .env.sample
  with DOMAIN and TYPE=RECIPE:VERSION; -S generates the compose files'
  secrets under their compose names (STACK_SECRET_VERSION, at most 64
  characters, a docker limit), honouring `# generate=false` and
  `# length=N`, and prints their values (secrets.py).
- Stack name (pkg/config StackName): domain with `.` → `_`, cut to 45
  characters; STACK_NAME in the env file wins.
- `app deploy` (cli/app/deploy.go, pkg/upstream/stack): refuses an already
  deployed app without -f or -C ("DOMAIN is already deployed"); non-chaos
  moves the checkout to VERSION, the env file's TYPE version, or the latest
  tag (-i: not the env file's); -C deploys the working tree as it is.
  Before anything is deployed: the compose files read as docker's loader
  reads them (a missing `${VAR:?msg}` refused), with the recipe's abra.sh
  exports merged over the env file, and every external secret present
  (else "secret not generated: ID"). Labels on the `app` service:
  coop-cloud.STACK.version, .chaos, .recipe and, on chaos deploys,
  .chaos-version = 8 characters of HEAD plus `+U` when dirty.
- `app undeploy` (cli/app/undeploy.go): returns once the services are
  removed; the containers and networks linger (`docker stack rm`
  behaviour measured in SPEC section 10).
- `app rm` (cli/app/remove.go): needs the env file and an undeployed app;
  fails on volume removal (`volume is in use`) while containers linger.
- `app ls -m` (cli/app/list.go): JSON keyed by server, string fields,
  status fields filled only with -S ("unknown" when not deployed), `{}`
  with no apps.

Two backends (tests/fake/README.md), chosen by CCCI_FAKE_BACKEND:
`file` (the default) keeps the swarm in files under CCCI_FAKE_STATE,
shared with the stand-in docker; `swarm` does to the real engine what the
real abra does (SPEC section 10), through the real docker CLI: `docker
stack deploy` / `stack rm`, real volumes and secrets, status from the
services' labels. Argument handling, env files, git checkouts, fault
injection and the call log are the same code in both.
"""

import json
import os
import re
import shutil
import time

from .appenv import (
    check_domain, find_env_file, parse_env, read_env, recipe_dir,
    servers_dir, stack_name,
)
from . import backupbot
from .compose import load_compose, read_compose, top_level
from .engine import (
    sw_backup, sw_create_secrets, sw_deploy, sw_is_deployed, sw_restore,
    sw_rm, sw_service_labels,
)
from .errors import Fail, default_signals, die, fatal
from .flags import parse_flags
from .knobs import knob, run_step
from .leftovers import containers_using_volumes, leave_behind, undeploy_leaves
from .ports import claim_port, release_port
from .realdocker import backend, dk, dk_ok
from .secrets import (
    app_secrets, generate, missing, print_table, read_abra_sh,
)
from .recipes import (
    checkout_version, ensure_recipe, head_sha, is_dirty, latest_tag,
    version_key,
)
from .store import (
    PROG_NAME, state_path, all_secrets, all_volumes, create_volume,
    delete_stack, env_ms, is_deployed, lingering, list_dir, load_stack,
    locked, new_id, remove_file, remove_tree, save_stack, secret_path,
    stack_labels, state_root, volume_data, volume_dir, write_json,
)
from .tasks import deploy_service


ABRA_VERSION = "0.10.0-ccci-fake"

PROG_NAME[0] = "abra"
ARGV = []


# ------------------------------------------------------------- commands --


def flags(argv, spec):
    """abra's flags may come in any order after the subcommand."""
    full = {}
    for names, key, takes in spec:
        for n in names:
            full[n] = (key, takes)
    full.setdefault("-n", ("noinput", False))
    full.setdefault("--no-input", ("noinput", False))
    # abra's -o/--offline (use the local recipe checkout, never the
    # network): the stand-in is always offline, so it only accepts it
    full.setdefault("-o", ("offline", False))
    full.setdefault("--offline", ("offline", False))
    opts, args = parse_flags(argv, full)
    return {k: (v[-1] if isinstance(v, list) else v)
            for k, v in opts.items()}, args


def need_noinput(opts, what):
    if not opts.get("noinput"):
        raise fatal("%s would prompt for input; pass -n/--no-input "
                    "(every mutating call of the harness must)" % what)


def app_new(argv):
    opts, args = flags(argv, [
        (("-s", "--server"), "server", True),
        (("-D", "--domain"), "domain", True),
        (("-S", "--secrets"), "secrets", False),
        (("-C", "--chaos"), "chaos", False),
    ])
    if not 1 <= len(args) <= 2:
        raise fatal("usage: abra app new RECIPE [VERSION] -s SERVER "
                    "-D DOMAIN [-S] [-C] -n")
    recipe = args[0]
    version = args[1] if len(args) == 2 else None
    domain = opts.get("domain", "")

    def body():
        need_noinput(opts, "app new")
        if not opts.get("server"):
            raise fatal("no server provided (-s/--server)")
        if not domain:
            raise fatal("no domain provided (-D/--domain)")
        check_domain(domain)
        server = opts["server"]
        sdir = os.path.join(servers_dir(), server)
        if not os.path.isdir(sdir):
            raise fatal("server %s doesn't exist? (no %s)" % (server, sdir))
        path = ensure_recipe(recipe)
        env_path = os.path.join(sdir, domain + ".env")
        if os.path.exists(env_path):
            raise fatal("%s already exists" % env_path)
        ver = version
        if not opts.get("chaos"):
            ver = version or latest_tag(path)
            if ver:
                checkout_version(recipe, path, ver)
        sample = os.path.join(path, ".env.sample")
        if not os.path.isfile(sample):
            raise fatal("%s does not exist" % sample)
        with open(sample, encoding="utf-8") as f:
            sample_lines = f.read().splitlines()
        type_value = "%s:%s" % (recipe, ver) if ver else recipe
        swarm_backend = backend() == "swarm"
        out, seen = [], set()
        for line in sample_lines:
            m = re.match(r"^(\s*)(DOMAIN|TYPE)=", line)
            if m:
                key = m.group(2)
                seen.add(key)
                line = "%s%s=%s" % (m.group(1), key,
                                    domain if key == "DOMAIN" else type_value)
            elif swarm_backend and re.match(r"^\s*#?\s*APP_PORT=", line):
                # the swarm backend gives each app a host port of its own
                # (claim_port), filled in below
                seen.add("APP_PORT")
                line = "APP_PORT={APP_PORT}"
            out.append(line)
        if "TYPE" not in seen:
            out.insert(0, "TYPE=%s" % type_value)
        if "DOMAIN" not in seen:
            out.append("DOMAIN=%s" % domain)
        text = "\n".join(out) + "\n"
        env = parse_env(text)
        stack = stack_name(domain, env)
        wanted = []  # (secret id, docker name, value)
        if opts.get("secrets"):
            # the compose files' `secrets:`, named as the deploy will
            # name them; `# generate=false` ones are left to the operator
            cenv = compose_env(path, env, stack)
            docs = load_compose(path, cenv)
            for sec in app_secrets(top_level(docs, "secrets"), text, stack):
                if sec["generate"]:
                    wanted.append((sec["id"], sec["name"],
                                   generate(sec["length"])))
        if swarm_backend:
            return sw_new(domain, recipe, ver, env_path, text, stack, wanted,
                          "APP_PORT" in seen)
        with locked():
            if os.path.exists(env_path):
                raise fatal("%s already exists" % env_path)
            for _, name, _ in wanted:
                if os.path.exists(secret_path(name)):
                    raise fatal("secret %s already exists" % name)
            for _, name, value in wanted:
                write_json(secret_path(name), {
                    "id": new_id(25), "name": name,
                    "labels": stack_labels(stack),
                    "created": time.time(),
                    "data": value})
            tmp = env_path + ".tmp.%d" % os.getpid()
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, env_path)
        print("%s created: %s (recipe %s, version %s)"
              % (domain, env_path, recipe, ver or "unversioned"))
        print_table([(sid, value) for sid, _, value in wanted])
        return failed_after_secrets(domain)

    return run_step("new", domain, ["abra"] + ARGV, body)


def sw_new(domain, recipe, ver, env_path, text, stack, secrets, want_port):
    """`app new` against the engine: the port claim, real secrets, then
    the env file; on failure, what was made is undone."""
    port = None
    with locked():
        if os.path.exists(env_path):
            raise fatal("%s already exists" % env_path)
        try:
            if want_port:
                port = claim_port(domain, env_path)
                text = text.replace("APP_PORT={APP_PORT}", "APP_PORT=%d" % port)
            sw_create_secrets([(name, value) for _, name, value in secrets])
            tmp = env_path + ".tmp.%d" % os.getpid()
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, env_path)
        except BaseException:
            if port is not None:
                release_port(port, env_path)
            raise
    print("%s created: %s (recipe %s, version %s%s)"
          % (domain, env_path, recipe, ver or "unversioned",
             ", port %d" % port if port else ""))
    print_table([(sid, value) for sid, _, value in secrets])
    return failed_after_secrets(domain)


def failed_after_secrets(domain):
    """`CCCI_FAKE_ABRA_FAIL=new-secrets`: `app new` fails once it has made
    the app and printed its generated secrets (what it made stays, as a
    late failure of abra's leaves it)."""
    if knob("CCCI_FAKE_ABRA_FAIL", "new-secrets", domain):
        raise fatal("app new failed after generating its secrets (injected "
                    "by CCCI_FAKE_ABRA_FAIL=new-secrets)")
    return 0


def compose_env(path, env, stack):
    """The environment abra reads the compose files with: the process's,
    the app's env file, the recipe's abra.sh exports over it (abra merges
    them after the env file: config and secret versions live there), and
    STACK_NAME."""
    cenv = dict(os.environ)
    cenv.update(env)
    cenv.update(read_abra_sh(os.path.join(path, "abra.sh")))
    cenv["STACK_NAME"] = stack
    return cenv


def secret_exists(name, swarm_backend):
    """Whether a secret of this exact name is on the (fake) swarm."""
    if swarm_backend:
        return name in dk_ok(["secret", "ls", "--filter", "name=" + name,
                              "--format", "{{.Name}}"]).stdout.split()
    return os.path.exists(secret_path(name))


def load_app(domain):
    server, env_path = find_env_file(domain)
    if env_path is None:
        raise fatal("app %s does not exist" % domain)
    env = read_env(env_path)
    return server, env_path, env


def app_deploy(argv):
    opts, args = flags(argv, [
        (("-C", "--chaos"), "chaos", False),
        (("-f", "--force"), "force", False),
        (("-D", "--no-domain-checks"), "nodomain", False),
        (("-c", "--no-converge-checks"), "noconverge", False),
        (("-i", "--ignore-env-version"), "ignoreenv", False),
    ])
    if not 1 <= len(args) <= 2:
        raise fatal("usage: abra app deploy DOMAIN [VERSION] [-C] [-f] [-D] "
                    "[-c] [-i] [-o] -n")
    domain = args[0]
    version = args[1] if len(args) == 2 else None
    chaos = bool(opts.get("chaos"))

    def body():
        need_noinput(opts, "app deploy")
        check_domain(domain)
        server, env_path, env = load_app(domain)
        recipe, _, type_version = env.get("TYPE", "").partition(":")
        if not recipe:
            raise fatal("%s: no TYPE in the env file" % domain)
        if opts.get("ignoreenv"):
            # -i: the env file's TYPE version is not the one to deploy
            type_version = ""
        stack = stack_name(domain, env)
        swarm_backend = backend() == "swarm"
        deployed = (sw_is_deployed(stack) if swarm_backend
                    else is_deployed(load_stack(stack)))
        if deployed and not chaos and not opts.get("force"):
            raise fatal("%s is already deployed" % domain)
        path = ensure_recipe(recipe)
        labels = {"coop-cloud.%s.chaos" % stack: "true" if chaos else "false",
                  "coop-cloud.%s.recipe" % stack: recipe}
        if chaos:
            deployed_version = version or type_version or ""
            sha = head_sha(path)[:8]
            labels["coop-cloud.%s.chaos-version" % stack] = (
                sha + ("+U" if is_dirty(path) else ""))
            # Fault injection for the harness's label check: a wrong or
            # dirty (`+U`) chaos-version, as a broken deploy would leave.
            forced = os.environ.get("CCCI_FAKE_ABRA_CHAOS_LABEL")
            if forced:
                labels["coop-cloud.%s.chaos-version" % stack] = forced
        else:
            deployed_version = version or type_version or latest_tag(path)
            if deployed_version:
                checkout_version(recipe, path, deployed_version)
            else:
                deployed_version = head_sha(path)[:8]  # a recipe with no tags
        labels["coop-cloud.%s.version" % stack] = deployed_version
        cenv = compose_env(path, env, stack)
        # read as docker's loader reads them, before anything is deployed:
        # a `${VAR:?msg}` without VAR is refused here
        docs = load_compose(path, cenv)
        with open(env_path, encoding="utf-8") as f:
            env_text = f.read()
        for sec in app_secrets(top_level(docs, "secrets"), env_text, stack):
            if sec["external"] and not secret_exists(sec["name"],
                                                     swarm_backend):
                raise missing(sec)
        # DOMAIN (every deploy of the app) or STEP@DOMAIN (only the
        # `deploy` or `deploy-chaos` step: a pull request that breaks)
        step = "deploy-chaos" if chaos else "deploy"
        crashloop = any(
            item.strip() in (domain, "%s@%s" % (step, domain))
            for item in os.environ.get("CCCI_FAKE_ABRA_CRASHLOOP",
                                       "").split(","))
        # FILE or STEP@FILE: the app's tasks of this deploy (of every
        # deploy, or of the `deploy`/`deploy-chaos` step only) exit 1 once
        # FILE exists (a recipe test touches it: no sleeps).
        die_on = None
        for item in os.environ.get("CCCI_FAKE_ABRA_DIE_ON", "").split(","):
            want, sep, file = item.strip().partition("@")
            if not sep:
                want, file = step, want
            if file and want == step:
                die_on = file
        if swarm_backend:
            sw_deploy(domain, stack, path, env, cenv, labels, crashloop,
                      docs)
            print("%s deployed (%s)" % (domain, ", ".join(
                x for x in (deployed_version, "chaos" if chaos else "")
                if x)))
            return 0
        services, volumes = read_compose(path, cenv, docs)
        configs = {}
        for cid, conf in top_level(docs, "configs").items():
            # docker reads a config's file at deploy: a missing one fails
            src = os.path.join(path, str(conf.get("file") or ""))
            if conf.get("file") and not os.path.isfile(src):
                raise fatal("open %s: no such file or directory" % src)
            configs[cid] = conf.get("name") or "%s_%s" % (stack, cid)
        now = time.time()
        converge = env_ms("CCCI_FAKE_ABRA_CONVERGE_MS", 150) / 1000.0
        with locked():
            rec = load_stack(stack)
            if rec is None:
                rec = {"stack": stack, "lingering": [],
                       "containers_until": 0}
            if (is_deployed(rec) and not chaos
                    and not opts.get("force")):
                raise fatal("%s is already deployed" % domain)
            old = rec.get("services", {})
            new = {}
            for svc, spec in services.items():
                name = "%s_%s" % (stack, svc)
                svc_labels = dict(spec["labels"])
                if svc == "app":
                    svc_labels.update(labels)
                new[name] = deploy_service(
                    old.get(name), stack, spec["image"], svc_labels,
                    crashloop, now, converge,
                    die_on if svc == "app" else None)
                new[name]["mounts"] = [
                    {"volume": "%s_%s" % (stack, v), "target": t}
                    for v, t in spec["mounts"]]
            rec.update({
                "domain": domain, "server": server, "recipe": recipe,
                "services": new, "deployed_at": now,
                "crashloop": crashloop,
                "chaos": chaos, "version": deployed_version,
                "configs": configs,
                "volumes": sorted(set(rec.get("volumes", []))
                                  | {"%s_%s" % (stack, v) for v in volumes}),
            })
            nets = rec.setdefault("networks", {})
            nets.setdefault("%s_default" % stack, new_id(25))
            for vol in rec["volumes"]:
                create_volume(vol, stack_labels(stack))
            save_stack(rec)
        print("%s deployed (%s)" % (domain, ", ".join(
            x for x in (deployed_version, "chaos" if chaos else "") if x)))
        return 0

    return run_step("deploy-chaos" if chaos else "deploy", domain,
                          ["abra"] + ARGV, body)


def app_undeploy(argv):
    opts, args = flags(argv, [(("-p", "--prune"), "prune", False)])
    if len(args) != 1:
        raise fatal("usage: abra app undeploy DOMAIN [-p] -n")
    domain = args[0]

    def body():
        need_noinput(opts, "app undeploy")
        check_domain(domain)
        _, _, env = load_app(domain)
        stack = stack_name(domain, env)
        if backend() == "swarm":
            if not sw_is_deployed(stack):
                raise fatal("%s is not deployed" % domain)
            # returns as soon as the services are removed; the containers,
            # networks (and so the volumes' users) go later
            p = dk(["stack", "rm", stack])
            if p.returncode != 0:
                raise fatal("undeploy of %s failed: %s" % (
                    domain, (p.stderr or p.stdout).strip()))
            print("%s undeployed" % domain)
            return 0
        linger = env_ms("CCCI_FAKE_ABRA_LINGER_MS", 300) / 1000.0
        with locked():
            rec = load_stack(stack)
            if not is_deployed(rec):
                raise fatal("%s is not deployed" % domain)
            now = time.time()
            # Like `docker stack rm`: the services go now, their containers
            # (and so the networks and volumes they use) only later.
            still = lingering(rec, now)
            for name, svc in rec["services"].items():
                still.append(dict(svc, service=name))
            rec["lingering"] = still
            rec["containers_until"] = now + linger
            rec["services"] = {}
            # CCCI_FAKE_UNDEPLOY_LEAVES: what the engine leaves for good
            failure = leave_behind(rec, undeploy_leaves(domain),
                                         now)
            save_stack(rec)
        if failure:
            # docker stack rm fails after removing the services
            raise fatal(failure)
        print("%s undeployed" % domain)
        return 0

    return run_step("undeploy", domain, ["abra"] + ARGV, body)


def app_rm(argv):
    opts, args = flags(argv, [(("-f", "--force"), "force", False)])
    if len(args) != 1:
        raise fatal("usage: abra app rm DOMAIN [-f] -n")
    domain = args[0]

    def body():
        need_noinput(opts, "app rm")
        check_domain(domain)
        _, env_path, env = load_app(domain)
        stack = stack_name(domain, env)
        if backend() == "swarm":
            sw_rm(domain, stack, env, env_path)
            print("file: %s removed" % env_path)
            return 0
        with locked():
            rec = load_stack(stack)
            if is_deployed(rec):
                raise fatal("%s is still deployed. Run \"abra app undeploy "
                            "%s\"" % (domain, domain))
            vols = [v["name"] for v in all_volumes()
                    if v["labels"].get("com.docker.stack.namespace") == stack]
            busy = [c["container_id"]
                    for c in lingering(rec, time.time())]
            busy += [c["id"] for c in containers_using_volumes(vols)]
            if busy and vols:
                ids = ", ".join(busy)
                raise fatal("removing volumes failed: Error response from "
                            "daemon: remove %s: volume is in use - [%s]"
                            % (vols[0], ids))
            for v in vols:
                remove_tree(volume_dir(v))
                print("volume %s removed" % v)
            for s in all_secrets():
                if s["labels"].get("com.docker.stack.namespace") == stack:
                    remove_file(secret_path(s["name"]))
                    print("secret %s removed" % s["name"])
            delete_stack(stack)
            remove_file(env_path)
        print("file: %s removed" % env_path)
        return 0

    return run_step("rm", domain, ["abra"] + ARGV, body)


def app_ls(argv):
    opts, args = flags(argv, [
        (("-s", "--server"), "server", True),
        (("-S", "--status"), "status", False),
        (("-m", "--machine"), "machine", False),
        (("-r", "--recipe"), "recipe", True),
    ])
    if args:
        raise fatal("usage: abra app ls [-s SERVER] [-S] [-m]")

    def body():
        result = {}
        live = None  # the engine's services, read once, with -S
        if opts.get("status") and backend() == "swarm":
            live = sw_service_labels()
        for server in list_dir(servers_dir()):
            sdir = os.path.join(servers_dir(), server)
            if not os.path.isdir(sdir):
                continue
            if opts.get("server") and server != opts["server"]:
                continue
            apps = []
            for fname in list_dir(sdir):
                # abra's apps: DOMAIN.env files, not dotfiles, not
                # directories (a symlink is followed); as cc-ci-run's
                # janitor lists them (ext/abra list_server_apps).
                if (not fname.endswith(".env") or fname.startswith(".")
                        or os.path.isdir(os.path.join(sdir, fname))):
                    continue
                domain = fname[:-len(".env")]
                try:
                    env = read_env(os.path.join(sdir, fname))
                except FileNotFoundError:
                    continue  # removed while we listed
                recipe, _, _ = env.get("TYPE", "").partition(":")
                if opts.get("recipe") and recipe != opts["recipe"]:
                    continue
                app = {"server": server, "recipe": recipe,
                       "appName": domain, "domain": domain, "status": "",
                       "chaos": "", "chaosVersion": "", "version": "",
                       "upgrade": ""}
                if opts.get("status"):
                    fill_status(app, stack_name(domain, env), live)
                apps.append(app)
            if not apps:
                continue
            versioned = [a for a in apps
                         if a["version"] not in ("", "unknown")]
            result[server] = {
                "apps": apps,
                "appCount": len(apps),
                "versionCount": len(versioned),
                "unversionedCount": len(apps) - len(versioned),
                "latestCount": sum(a["upgrade"] == "latest" for a in apps),
                "upgradeCount": sum(a["upgrade"] not in
                                    ("", "latest", "unknown") for a in apps),
            }
        if opts.get("machine"):
            print(json.dumps(result))
        else:
            for server, meta in result.items():
                print("SERVER: %s (%d apps)" % (server, meta["appCount"]))
                for a in meta["apps"]:
                    print("  %-40s %-12s %-10s %s" % (
                        a["domain"], a["recipe"], a["status"], a["version"]))
        return 0

    return run_step("ls", "", ["abra"] + ARGV, body, mutating=False)


def fill_status(app, stack, live=None):
    """Status fields from the stack's services: the fake swarm's record,
    or with `live` (the swarm backend) the engine's service labels."""
    app.update(status="unknown", chaos="unknown", chaosVersion="unknown",
               version="unknown", upgrade="unknown")
    if live is not None:
        if stack not in live:
            return
        label_sets = [live[stack]]
    else:
        rec = load_stack(stack)
        if not is_deployed(rec):
            return
        label_sets = [svc.get("labels", {})
                      for svc in rec["services"].values()]
    app["status"] = "deployed"
    for labels in label_sets:
        key = "coop-cloud.%s." % stack
        if key + "version" in labels:
            app["version"] = labels[key + "version"] or "unknown"
            app["chaos"] = labels.get(key + "chaos", "unknown")
            app["chaosVersion"] = labels.get(key + "chaos-version", "unknown")
    path = recipe_dir(app["recipe"])
    if os.path.isdir(path):
        latest = latest_tag(path)
        if latest and app["version"] == latest:
            app["upgrade"] = "latest"
        elif latest and app["version"] != "unknown" and \
                version_key(app["version"]) < version_key(latest):
            app["upgrade"] = latest


def file_backup_plan(stack, rec):
    """backupbot's plan (backupbot.py) over the file backend's services."""
    return backupbot.plan(stack, {
        name: (svc.get("labels") or {},
               [(m["volume"], m["target"]) for m in svc.get("mounts", [])])
        for name, svc in (rec.get("services") or {}).items()})


def copy_over(src, dest, item):
    """Copies the file or directory `src` to `dest`, over what is there."""
    if os.path.isdir(src):
        shutil.copytree(src, dest, dirs_exist_ok=True)
    elif os.path.isfile(src):
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(src, dest)
    else:
        raise fatal("service %s: backup path %s does not exist"
                    % (item.service, item.path))


def app_backup(argv):
    if not argv or argv[0] != "create":
        raise fatal("usage: abra app backup create DOMAIN -n")
    opts, args = flags(argv[1:], [])
    if len(args) != 1:
        raise fatal("usage: abra app backup create DOMAIN -n")
    domain = args[0]

    def body():
        need_noinput(opts, "app backup create")
        check_domain(domain)
        _, _, env = load_app(domain)
        stack = stack_name(domain, env)
        # CCCI_FAKE_ABRA_NOOP=backup: an empty backup (a service whose
        # data was never labelled for backupbot)
        noop = knob("CCCI_FAKE_ABRA_NOOP", "backup", domain)
        if backend() == "swarm":
            sw_backup(domain, stack, noop)
            print("backup of %s created" % domain)
            return 0
        with locked():
            rec = load_stack(stack)
            if not is_deployed(rec):
                raise fatal("%s is not deployed" % domain)
            items = [] if noop else file_backup_plan(stack, rec)
            dest = state_path("backups", domain)
            tmp = dest + ".tmp.%d" % os.getpid()
            remove_tree(tmp)
            os.makedirs(tmp)
            try:
                for it in items:
                    copy_over(os.path.join(volume_data(it.volume),
                                           it.inside()),
                              os.path.join(tmp, it.store), it)
                    print("%s: %s backed up" % (it.service, it.path))
                remove_tree(dest)
                os.replace(tmp, dest)
            finally:
                remove_tree(tmp)
        print("backup of %s created" % domain)
        return 0

    return run_step("backup", domain, ["abra"] + ARGV, body)


def app_restore(argv):
    opts, args = flags(argv, [])
    if len(args) != 1:
        raise fatal("usage: abra app restore DOMAIN -n")
    domain = args[0]

    def body():
        need_noinput(opts, "app restore")
        check_domain(domain)
        _, _, env = load_app(domain)
        stack = stack_name(domain, env)
        # CCCI_FAKE_ABRA_NOOP=restore: says it restored, copies nothing
        # (a restore that does not bring the data back)
        if knob("CCCI_FAKE_ABRA_NOOP", "restore", domain):
            print("%s restored" % domain)
            return 0
        if backend() == "swarm":
            sw_restore(domain, stack)
            print("%s restored" % domain)
            return 0
        with locked():
            rec = load_stack(stack)
            if not is_deployed(rec):
                raise fatal("%s is not deployed" % domain)
            src = state_path("backups", domain)
            if not os.path.isdir(src):
                raise fatal("no backup of %s to restore" % domain)
            for it in file_backup_plan(stack, rec):
                kept = os.path.join(src, it.store)
                if not os.path.exists(kept):
                    continue
                create_volume(it.volume, stack_labels(stack))
                # Like a restic restore: the backup's files are written
                # over the volume's; files the backup lacks stay.
                copy_over(kept, os.path.join(volume_data(it.volume),
                                             it.inside()), it)
                print("%s: %s restored" % (it.service, it.path))
        print("%s restored" % domain)
        return 0

    return run_step("restore", domain, ["abra"] + ARGV, body)


def recipe_fetch(argv):
    opts, args = flags(argv, [])
    if len(args) != 1:
        raise fatal("usage: abra recipe fetch RECIPE [-n]")
    recipe = args[0]

    def body():
        ensure_recipe(recipe)  # no network: the checkout must be there
        print("%s fetched (offline stand-in)" % recipe)
        return 0

    return run_step("fetch", "", ["abra"] + ARGV, body, scope=recipe)


APP_COMMANDS = {
    "new": app_new, "n": app_new,
    "deploy": app_deploy, "d": app_deploy,
    "undeploy": app_undeploy, "un": app_undeploy,
    "rm": app_rm, "remove": app_rm, "delete": app_rm,
    "ls": app_ls, "list": app_ls,
    "backup": app_backup, "b": app_backup,
    "restore": app_restore,
}


def main(argv):
    default_signals()
    ARGV[:] = argv
    if argv[:1] in (["--version"], ["-v"], ["version"]):
        print("abra version %s (cc-ci-run test stand-in)" % ABRA_VERSION)
        return 0
    state_root()
    try:
        backend()  # an unknown backend is a usage error, before any log line
        if len(argv) >= 2 and argv[0] in ("app", "a") \
                and argv[1] in APP_COMMANDS:
            return APP_COMMANDS[argv[1]](argv[2:])
        if len(argv) >= 2 and argv[0] in ("recipe", "r") \
                and argv[1] in ("fetch", "f"):
            return recipe_fetch(argv[2:])
    except Fail as e:
        die(e.message, e.code)
    die("FATA unknown command: abra %s (stand-in supports app new/"
              "deploy/undeploy/rm/ls/backup create/restore, recipe fetch)"
              % " ".join(argv[:2]), 1)


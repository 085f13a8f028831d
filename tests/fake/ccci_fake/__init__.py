"""The stand-ins `abra` and `docker` of tests/fake, as one package.

tests/fake/abra and tests/fake/docker are thin entry points that call
abra_cmds.main and docker_cmds.main; both programs share one model of the
fake swarm. Imports flow one way, from the commands down to the store:

    abra_cmds    abra's commands (app new/deploy/undeploy/rm/ls/backup/
                 restore, recipe fetch) and its main
    docker_cmds  docker's commands and its main
    api          the stand-in engine: the Engine API on a unix socket
                 (tests/fake/engine), from the same state and knobs
    engine       abra's swarm backend: the real engine via the real CLI
    backupbot    what backup create and restore copy: the paths the
                 services' backupbot labels name, by volume (both backends)
    ports        APP_PORT claims of the swarm backend
    realdocker   the backend choice, the real docker CLI on PATH
    appenv       ABRA_DIR, servers, app env files, stack names
    recipes      recipe checkouts (git, tags, versions)
    secrets      abra.sh exports, the compose files' secrets and the env
                 file's modifiers, app new -S's values and table
    compose      compose files: the YAML subset (anchors, merge keys),
                 docker's interpolation (${VAR:?msg} refused)
    leftovers    what an undeploy leaves behind (CCCI_FAKE_UNDEPLOY_LEAVES)
    views        services, task containers, networks as docker shows them
    render       docker's --format templates and tables
    flags        docker's flags and --filter handling
    knobs        failure injection (CCCI_FAKE_ABRA_FAIL/HANG) and calls.log
    tasks        services and tasks: rolling updates, convergence, crashes
    store        the state under CCCI_FAKE_STATE: lock, records, objects
    errors       Fail, dying, signal dispositions, abra's FATA lines

Standard library only. No bytecode is written (the entry points set
sys.dont_write_bytecode before importing), so nothing lands in the tree.
"""

"""What abra reads beside the env file: the recipe's abra.sh exports and
the secrets of the compose files with the env file's modifiers, and how
`app new -S` generates and prints them.

Where this comes from (docs.coopcloud.tech, maintainers' handbook and
upgrade checklist; abra's pkg/secret and cli/app/new.go as far as they are
known, tests/fake/README.md lists what is not):

- abra.sh carries `export NAME_VERSION=vN` lines for config (and secret)
  versions; abra merges them into the app's environment at deploy, after
  the env file (an abra.sh value wins).
- A secret is a top-level compose `secrets:` entry; its docker name is
  its interpolated `name:` (`${STACK_NAME}_db_password_${SECRET_DB_
  PASSWORD_VERSION}`) and its version the text after the name's last `_`;
  a name ending in `_` (no version in the env file) is refused.
- `SECRET_<ID>_VERSION=v1  # length=48` and `# generate=false` are
  modifiers in a comment after the version: a password of that length; a
  secret the operator inserts by hand (never generated).
"""

import re
import secrets as _random
import string
import sys

from .errors import fatal


SECRET_MAX = 64
DEFAULT_LENGTH = 32
ALPHABET = string.ascii_letters + string.digits


def read_abra_sh(path):
    """`export KEY=VALUE` lines of a recipe's abra.sh (no shell is run:
    abra reads them with a pattern, functions and other lines are
    ignored). A missing abra.sh has no exports."""
    out = {}
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        m = re.match(r"^\s*export\s+([A-Za-z_][A-Za-z0-9_]*)=(\S*)", line)
        if not m:
            continue
        val = m.group(2)
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
            val = val[1:-1]
        out[m.group(1)] = val
    return out


def modifiers(env_text):
    """{"SECRET_X_VERSION": {"length": "48", "generate": "false"}}: the
    `key=value` words of the comment after each SECRET_*_VERSION line of
    the raw env text (the env reader drops comments, so they are read
    here, line by line)."""
    out = {}
    for line in env_text.splitlines():
        m = re.match(r"^\s*(?:export\s+)?(SECRET_[A-Za-z0-9_]+_VERSION)\s*="
                     r"[^#]*#(.*)$", line)
        if m:
            out[m.group(1)] = dict(re.findall(r"(\w+)=(\S+)", m.group(2)))
    return out


def app_secrets(compose_secrets, env_text, stack):
    """The app's secrets as abra reads them: [{id, name, version, length,
    generate, external}] from the compose files' top-level `secrets:`
    (already interpolated) and the env file's modifiers."""
    mods = modifiers(env_text)
    out = []
    for sid, conf in sorted(compose_secrets.items()):
        conf = conf or {}
        name = conf.get("name")
        if not name:
            # no `name:`: docker names it STACK_ID; abra has no version
            name = "%s_%s" % (stack, sid)
        if name.endswith("_"):
            raise fatal("missing version for secret? (%s)" % sid)
        if len(name) > SECRET_MAX:
            raise fatal(
                "%s: secret name %s is %d characters long which is more "
                "than %d (docker's secret name limit): choose a shorter "
                "domain" % (sid, name, len(name), SECRET_MAX))
        key = "SECRET_%s_VERSION" % sid.upper()
        mod = mods.get(key, {})
        try:
            length = int(mod.get("length", DEFAULT_LENGTH))
        except ValueError:
            raise fatal("%s: length=%s is not a number" % (key,
                                                          mod["length"]))
        out.append({
            "id": sid, "name": name,
            "version": name.rsplit("_", 1)[-1] if "_" in name else "",
            "length": length,
            "generate": mod.get("generate", "true") != "false",
            "external": str(conf.get("external", "")).lower() == "true",
        })
    return out


def generate(length):
    return "".join(_random.choice(ALPHABET) for _ in range(length))


def print_table(rows):
    """The generated secrets as a NAME/VALUE table on stdout (abra prints
    the values once, in a table, and warns on stderr that they are not
    shown again)."""
    if not rows:
        return
    w1 = max(len("NAME"), *(len(n) for n, _ in rows))
    w2 = max(len("VALUE"), *(len(v) for _, v in rows))
    b1, b2 = "─" * (w1 + 2), "─" * (w2 + 2)
    out = ["┌%s┬%s┐" % (b1, b2),
           "│ %-*s │ %-*s │" % (w1, "NAME", w2, "VALUE"),
           "├%s┼%s┤" % (b1, b2)]
    out += ["│ %-*s │ %-*s │" % (w1, n, w2, v) for n, v in rows]
    out.append("└%s┴%s┘" % (b1, b2))
    sys.stdout.flush()
    sys.stdout.buffer.write(("\n".join(out) + "\n").encode("utf-8"))
    sys.stdout.flush()
    sys.stderr.write("WARN generated secrets are not shown again, please "
                     "take note of them NOW\n")


def missing(secret):
    """abra's refusal of a deploy whose secret does not exist."""
    if not secret["generate"]:
        return fatal("secret not inserted (#generate=false): %s"
                     % secret["id"])
    return fatal("secret not generated: %s" % secret["id"])

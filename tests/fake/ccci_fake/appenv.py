"""abra's directory, recipes and servers, and its app env files.
"""

import os
import re

from .errors import fatal
from .store import list_dir


STACK_MAX = 45


# ------------------------------------------------------------- abra dir --


def abra_dir():
    d = os.environ.get("ABRA_DIR", "")
    if d:
        return d
    return os.path.join(os.path.expanduser("~"), ".abra")


def recipe_dir(recipe):
    return os.path.join(abra_dir(), "recipes", recipe)


def servers_dir():
    return os.path.join(abra_dir(), "servers")


def find_env_file(domain):
    """An app is its env file under any server directory."""
    for server in list_dir(servers_dir()):
        path = os.path.join(servers_dir(), server, domain + ".env")
        if os.path.isfile(path):
            return server, path
    return None, None


def read_env(path):
    with open(path, encoding="utf-8") as f:
        return parse_env(f.read())


def parse_env(text):
    """KEY=VALUE lines as abra's godotenv reads them (the values only)."""
    return parse_env_file(text)[0]


# The env-file reader is godotenv's (github.com/joho/godotenv, parser.go,
# v1.5), as abra uses it, rule for rule; cc-ci-run's reader
# (src/ext/abra/envfile.rs) follows the same rules and both run the table
# tests/data/envfile_cases.json, which cites the rule of each case.

def _is_space(c):
    # godotenv's isSpace: blanks that are not line breaks
    return c in "\t\v\f\r \x85\xa0"


_EXPAND = re.compile(r"(\\)?(\$)(\()?\{?([A-Z0-9_]+)?\}?")


def _expand(value, env):
    """expandVariables: $NAME, ${NAME} (NAME upper case) from earlier keys;
    `\\$` is a literal `$`; an unknown name is empty (SPEC 3a)."""
    def repl(m):
        if m.group(1) == "\\":
            return m.group(0)[1:]
        if m.group(4):
            return env.get(m.group(4), "")
        return m.group(0)
    return _EXPAND.sub(repl, value)


def _unescape(value):
    """expandEscapes: \\n, \\r; a backslash before another character but
    `$` is dropped."""
    def esc(m):
        return {"n": "\n", "r": "\r"}.get(m.group(0)[1], m.group(0))
    value = re.sub(r"\\.", esc, value)  # `.`: not a newline, as in Go
    return re.sub(r"\\([^$])", r"\1", value, flags=re.S)


def _modifiers(comment):
    out = {}
    for word in comment.split():
        k, eq, v = word.partition("=")
        if eq and k:
            out[k] = v
    return out


class EnvError(Exception):
    pass


def parse_env_file(text):
    """(values, modifiers) of env-file text; EnvError as godotenv refuses."""
    src = text.replace("---\n", "\n").replace("\r\n", "\n")
    env, mods = {}, {}
    pos, n = 0, len(src)
    while True:
        while pos < n and src[pos].isspace():
            pos += 1
        if pos >= n:
            break
        if src[pos] == "#":
            nl = src.find("\n", pos)
            if nl < 0:
                break
            pos = nl
            continue
        line = src.count("\n", 0, pos) + 1
        # locateKeyName
        if src.startswith("export", pos) and pos + 6 < n and \
                _is_space(src[pos + 6]):
            pos += 6
            while pos < n and _is_space(src[pos]):
                pos += 1
        start = i = pos
        while True:
            if i >= n:
                raise EnvError("line %d: no `=` after the variable name "
                               "near %r" % (line, src[start:]))
            c = src[i]
            if _is_space(c) or c in "_." or c.isalnum():
                i += 1
                continue
            if c in "=:":
                break
            raise EnvError("line %d: unexpected character %r in variable "
                           "name near %r"
                           % (line, c, src[start:].split("\n")[0]))
        key = src[start:i].rstrip("".join(
            ch for ch in "\t\v\f\r \x85\xa0"))
        pos = i + 1
        while pos < n and _is_space(src[pos]):
            pos += 1
        # extractVarValue
        comment = ""
        if pos < n and src[pos] in "'\"":
            q = src[pos]
            j = pos + 1
            while j < n and not (src[j] == q and src[j - 1] != "\\"):
                j += 1
            if j >= n:
                raise EnvError("line %d: unterminated quoted value %s"
                               % (line, src[pos:].split("\n")[0]))
            value = src[pos:j].strip(q)
            if q == '"':
                value = _expand(_unescape(value), env)
            nl = src.find("\n", j + 1)
            tail = src[j + 1:nl if nl >= 0 else n].lstrip(
                "\t\v\f\r \x85\xa0")
            if tail.startswith("#"):
                comment = tail[1:]
            pos = j + 1
        else:
            ends = [k for k in (src.find("\n", pos), src.find("\r", pos))
                    if k >= 0]
            end = min(ends) if ends else n
            text_ = src[pos:end]
            cut = None
            for k in range(len(text_) - 1, 0, -1):
                if text_[k] == "#" and _is_space(text_[k - 1]):
                    cut = k
                    break
            if cut is not None:
                comment = text_[cut + 1:]
                text_ = text_[:cut]
            value = _expand(text_.strip("\t\v\f\r \x85\xa0"), env)
            pos = end
        m = _modifiers(comment)
        if m:
            mods[key] = m
        else:
            mods.pop(key, None)
        env[key] = value
    return env, mods


def stack_name(domain, env):
    if env.get("STACK_NAME"):
        return env["STACK_NAME"]
    return domain.replace(".", "_")[:STACK_MAX]


def check_domain(domain):
    if not domain or "/" in domain or domain.startswith("."):
        raise fatal("invalid app domain %r" % domain)


def main(argv):
    """`python3 -m ccci_fake.appenv FILE...`: each file as this reader
    reads it, one JSON line per file (the env-file table's test runs it)."""
    import json
    for path in argv[1:]:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
        try:
            env, mods = parse_env_file(text)
            out = {"vars": env, "modifiers": mods}
        except EnvError as e:
            out = {"error": str(e)}
        print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main(sys.argv))

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
    """KEY=VALUE lines as abra's godotenv reads them (comments, quotes,
    `export`)."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, eq, val = line.partition("=")
        if not eq:
            continue
        val = val.strip()
        if val[:1] in ("'", '"'):
            q = val[0]
            end = val.find(q, 1)
            val = val[1:end] if end > 0 else val[1:]
        else:
            val = re.sub(r"\s+#.*$", "", val)
        env[key.strip()] = val
    return env


def stack_name(domain, env):
    if env.get("STACK_NAME"):
        return env["STACK_NAME"]
    return domain.replace(".", "_")[:STACK_MAX]


def check_domain(domain):
    if not domain or "/" in domain or domain.startswith("."):
        raise fatal("invalid app domain %r" % domain)

"""The recipe checkouts: git, release tags, versions, dirty trees.
"""

import os
import re
import subprocess

from .appenv import recipe_dir
from .errors import fatal


# ------------------------------------------------------------------ git --


def git(repo, *args, check=True):
    p = subprocess.run(["git", "-C", repo] + list(args), capture_output=True,
                       text=True)
    if check and p.returncode != 0:
        raise fatal("git %s in %s: %s" % (" ".join(args), repo,
                                          p.stderr.strip()))
    return p


def ensure_recipe(recipe):
    """The recipe is a git checkout of its own (not merely a directory
    inside some other repository)."""
    path = recipe_dir(recipe)
    top = None
    if os.path.isdir(path):
        p = git(path, "rev-parse", "--show-toplevel", check=False)
        top = p.stdout.strip() if p.returncode == 0 else None
    if top is None or os.path.realpath(top) != os.path.realpath(path):
        raise fatal("%s recipe does not exist? (no git checkout at %s)"
                    % (recipe, path))
    return path


def version_key(tag):
    """Release tags look like 1.2.3+4.5.6; order numerically, upstream
    version first, then the recipe's own part."""
    key = []
    for part in re.split(r"[+]", tag, maxsplit=1):
        nums = re.findall(r"[0-9]+", part)
        key.append(tuple(int(n) for n in nums))
    return tuple(key)


def release_tags(path):
    tags = git(path, "tag", "--list").stdout.split()
    return sorted((t for t in tags if re.match(r"^v?[0-9]", t)),
                  key=version_key)


def latest_tag(path):
    tags = release_tags(path)
    return tags[-1] if tags else None


def is_dirty(path):
    return git(path, "status", "--porcelain").stdout.strip() != ""


def checkout_version(recipe, path, version):
    if version not in git(path, "tag", "--list").stdout.split():
        raise fatal("%s: version %s does not exist (no such tag)"
                    % (recipe, version))
    if is_dirty(path):
        raise fatal("%s (%s) has locally unstaged changes? please commit/"
                    "remove your changes before proceeding" % (recipe, path))
    git(path, "checkout", "-q", "--detach", "refs/tags/" + version)


def head_sha(path):
    return git(path, "rev-parse", "HEAD").stdout.strip()

"""Compose files as docker's loader reads them: YAML (the block subset
recipes use, with anchors, aliases and merge keys), then interpolation of
the values of the services, networks, volumes, secrets and configs
sections (docker/cli cli/compose/loader and cli/compose/template).
"""

import copy
import json
import os
import re

from .errors import fatal


# --------------------------------------------------------- interpolation --

_VAR = (r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}"
        r"|\$([A-Za-z_][A-Za-z0-9_]*)")


class Required(Exception):
    """`${VAR:?msg}` of an unset or empty VAR, `${VAR?msg}` of an unset
    one: docker's template package refuses the file."""

    def __init__(self, name, message):
        Exception.__init__(self, name)
        self.name = name
        self.message = message


def substitute(text, env):
    """${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err},
    $VAR and $$, as docker's loader substitutes them (unset variables
    become empty; a required one raises Required)."""
    def repl(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        val = env.get(name)
        if op == ":-" and not val:
            return arg
        if op == "-" and val is None:
            return arg
        if op == ":?" and not val:
            raise Required(name, arg)
        if op == "?" and val is None:
            raise Required(name, arg)
        return val or ""
    return re.sub(_VAR, repl, text)


# Only these top-level sections are interpolated by docker's loader
# (loader.go interpolateConfig); `x-` extension fields are not, though
# what an alias copies out of them is, where it lands.
INTERPOLATED = ("services", "networks", "volumes", "secrets", "configs")


def interpolate(doc, env, where):
    def walk(node, path):
        if isinstance(node, dict):
            return {k: walk(v, path + [str(k)]) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, path + ["[]"]) for v in node]
        if isinstance(node, str):
            try:
                return substitute(node, env)
            except Required as e:
                # docker/cli interpolation.go wraps template errors so
                raise fatal(
                    'invalid interpolation format for %s: "required '
                    'variable %s is missing a value: %s". You may need to '
                    'escape any $ with another $. (%s)'
                    % (".".join(path), e.name, e.message, where))
        return node
    out = dict(doc)
    for section in INTERPOLATED:
        if section in out:
            out[section] = walk(out[section], [section])
    return out


# ---------------------------------------------------------- compose YAML --


def _strip_comment(s):
    out, quote = [], None
    for i, ch in enumerate(s):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or s[i - 1] in " \t"):
            break
        out.append(ch)
    return "".join(out).rstrip()


def _plain(s):
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    if s in ("", "~", "null"):
        return None
    return s


class _Flow:
    """One line of YAML flow style: `[a, *b]`, `{k: v, <<: *x}`."""

    def __init__(self, text, where, anchors):
        self.s, self.i, self.where, self.anchors = text, 0, where, anchors

    def fail(self, why):
        raise fatal("%s: cannot read YAML flow %r: %s" % (self.where, self.s,
                                                          why))

    def ws(self):
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def value(self, stops):
        self.ws()
        if self.i >= len(self.s):
            self.fail("unexpected end")
        c = self.s[self.i]
        if c == "[":
            self.i += 1
            out = []
            self.ws()
            if self.s[self.i:self.i + 1] == "]":
                self.i += 1
                return out
            while True:
                out.append(self.value(",]"))
                self.ws()
                c = self.s[self.i:self.i + 1]
                self.i += 1
                if c == "]":
                    return out
                if c != ",":
                    self.fail("expected , or ]")
        if c == "{":
            self.i += 1
            pairs = []
            self.ws()
            if self.s[self.i:self.i + 1] == "}":
                self.i += 1
                return {}
            while True:
                key = self.value(":,}")
                self.ws()
                if self.s[self.i:self.i + 1] != ":":
                    self.fail("expected :")
                self.i += 1
                pairs.append((key, self.value(",}")))
                self.ws()
                c = self.s[self.i:self.i + 1]
                self.i += 1
                if c == "}":
                    return _merged(pairs, self.where)
                if c != ",":
                    self.fail("expected , or }")
        if c == "*":
            m = re.compile(r"\*([^\s,\[\]{}]+)").match(self.s, self.i)
            self.i = m.end()
            return _alias(m.group(1), self.anchors, self.where)
        if c in "'\"":
            end = self.s.find(c, self.i + 1)
            if end < 0:
                self.fail("unclosed quote")
            val = self.s[self.i + 1:end]
            self.i = end + 1
            return val
        start = self.i
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == ":" and ":" in stops:
                # a key ends at `: ` (or `:` before `,`, `}` or the end)
                if self.i + 1 == len(self.s) or self.s[self.i + 1] in " ,}":
                    break
            elif c in stops:
                break
            self.i += 1
        return _plain(self.s[start:self.i])

    def parse(self):
        v = self.value("")
        self.ws()
        if self.i != len(self.s):
            self.fail("trailing text")
        return v


def _alias(name, anchors, where):
    if name not in anchors:
        # go-yaml's words
        raise fatal("%s: yaml: unknown anchor '%s' referenced" % (where, name))
    return copy.deepcopy(anchors[name])


def _merged(pairs, where):
    """A mapping from its (key, value) pairs, `<<` merge keys applied as
    YAML 1.1 merges them: the mapping's own keys win, then the merged
    mappings in order (the first that has a key wins)."""
    own, merges = {}, []
    for key, val in pairs:
        if key == "<<":
            items = val if isinstance(val, list) else [val]
            for item in items:
                if not isinstance(item, dict):
                    raise fatal("%s: yaml: map merge requires map or "
                                "sequence of maps as the value" % where)
                merges.append(item)
        else:
            own[key] = val
    out = {}
    for m in merges:
        for k, v in m.items():
            out.setdefault(k, v)
    for k, v in own.items():
        out[k] = v  # YAML keeps insertion order of first sight; values win
    return out


def parse_yaml(text, where):
    """A block-YAML reader, enough for compose files of the shape recipes
    use: nested mappings, lists of scalars or of mappings, one-line flow
    lists and mappings, quotes, comments, `|`/`>` blocks, anchors (`&a`),
    aliases (`*a`) and merge keys (`<<: *a`, `<<: [*a, *b]`). Flow
    collections over several lines are refused rather than misread."""
    lines = []
    raw = text.splitlines()
    i = 0
    while i < len(raw):
        line = raw[i]
        i += 1
        if "\t" in line[:len(line) - len(line.lstrip())]:
            raise fatal("%s: tabs in indentation" % where)
        body = _strip_comment(line)
        if not body.strip() or body.strip() in ("---", "..."):
            continue
        indent = len(body) - len(body.lstrip(" "))
        content = body.strip()
        if re.search(r":\s*[|>][-+]?$", content):
            block = []
            while i < len(raw) and (not raw[i].strip() or
                                    len(raw[i]) - len(raw[i].lstrip(" "))
                                    > indent):
                block.append(raw[i].strip())
                i += 1
            content = re.sub(r"[|>][-+]?$", json.dumps("\n".join(block)),
                             content)
        lines.append((indent, content))
    anchors = {}

    def scalar_or_flow(rest):
        rest = rest.strip()
        if rest[:1] in ("[", "{"):
            return _Flow(rest, where, anchors).parse()
        if rest.startswith("*"):
            return _alias(rest[1:].strip(), anchors, where)
        return _plain(rest)

    def node(rest, pos, indent):
        """The value after `key:` or `-`: an optional anchor, then an
        inline value or a block below."""
        anchor = None
        m = re.match(r"^&(\S+)\s*(.*)$", rest or "")
        if m:
            anchor, rest = m.group(1), m.group(2)
        if not rest:
            val, pos = block(pos, indent + 1)
        else:
            val = scalar_or_flow(rest)
        if anchor:
            anchors[anchor] = val
        return val, pos

    def block(pos, indent):
        if pos >= len(lines) or lines[pos][0] < indent:
            return None, pos
        indent = lines[pos][0]
        if lines[pos][1].startswith("- ") or lines[pos][1] == "-":
            return seq(pos, indent)
        return mapping(pos, indent)

    def mapping(pos, indent):
        pairs = []
        while pos < len(lines) and lines[pos][0] == indent:
            content = lines[pos][1]
            m = re.match(r'^("[^"]*"|\'[^\']*\'|[^:]+?)\s*:(?:\s+(.*))?$',
                         content)
            if not m or content.startswith("- "):
                raise fatal("%s: cannot read YAML line %r" % (where, content))
            key, rest = _plain(m.group(1)), m.group(2)
            val, pos = node(rest, pos + 1, indent)
            pairs.append((key, val))
        if pos < len(lines) and lines[pos][0] > indent:
            raise fatal("%s: bad indentation at %r" % (where, lines[pos][1]))
        return _merged(pairs, where), pos

    def seq(pos, indent):
        out = []
        while (pos < len(lines) and lines[pos][0] == indent
               and (lines[pos][1].startswith("- ") or lines[pos][1] == "-")):
            item = lines[pos][1][1:].strip()
            if re.match(r'^("[^"]*"|\'[^\']*\'|[^:\s"\'\[{*&][^:]*?)\s*:'
                        r'(\s|$)', item):
                # `- key: value` opens a mapping indented past the dash
                lines[pos] = (indent + 2, item)
                val, pos = mapping(pos, indent + 2)
            else:
                val, pos = node(item, pos + 1, indent)
            out.append(val)
        return out, pos

    doc, pos = block(0, 0)
    if pos != len(lines):
        raise fatal("%s: cannot read YAML near %r" % (where, lines[pos][1]))
    return doc or {}


def labels_of(value):
    """Compose labels are a list of K=V or a mapping."""
    if isinstance(value, dict):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    out = {}
    for item in value or []:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def compose_files(env):
    return (env.get("COMPOSE_FILE") or "compose.yml").split(":")


def load_compose(path, env):
    """The recipe's compose files (COMPOSE_FILE, colon-separated), each
    read and interpolated as docker's loader does: [(file, document)]."""
    docs = []
    for name in compose_files(env):
        f = os.path.join(path, name)
        if not os.path.isfile(f):
            raise fatal("%s does not exist" % f)
        with open(f, encoding="utf-8") as fh:
            docs.append((f, interpolate(parse_yaml(fh.read(), f), env, f)))
    return docs


def top_level(docs, section):
    """A top-level section (secrets, configs) merged over the files, a
    later file's entry over an earlier one's keys."""
    out = {}
    for _, doc in docs:
        for key, val in (doc.get(section) or {}).items():
            cur = out.setdefault(key, {})
            cur.update(val or {})
    return out


def volume_mounts(value, named):
    """The named-volume mounts of a service's `volumes:` as [(volume key,
    target)]: short syntax `VOL:/target[:mode]` or long syntax with
    `type: volume`; bind mounts (a source that is no top-level volume) and
    anonymous volumes are left out."""
    out = []
    for item in value or []:
        if isinstance(item, dict):
            if (item.get("type") or "volume") != "volume":
                continue
            source, target = item.get("source"), item.get("target")
        else:
            parts = str(item).split(":")
            if len(parts) < 2:
                continue
            source, target = parts[0], parts[1]
        if source and target and str(source) in named:
            out.append((str(source), str(target)))
    return out


def read_compose(path, env, docs=None):
    """Services (name → image, deploy labels, named-volume mounts) and
    volume names of the recipe's compose files."""
    services, volumes = {}, []
    if docs is None:
        docs = load_compose(path, env)
    named = set()
    for _, doc in docs:
        named |= set(doc.get("volumes") or {})
    for _, doc in docs:
        for svc, spec in (doc.get("services") or {}).items():
            spec = spec or {}
            cur = services.setdefault(svc, {"image": "", "labels": {},
                                            "mounts": []})
            if spec.get("image"):
                cur["image"] = spec["image"]
            deploy = spec.get("deploy") or {}
            cur["labels"].update(labels_of(deploy.get("labels")))
            if "volumes" in spec:
                # a later file's list replaces the service's (by target,
                # as docker's merge does)
                mounts = dict((t, v) for v, t in cur["mounts"])
                mounts.update((t, v) for v, t in
                              volume_mounts(spec.get("volumes"), named))
                cur["mounts"] = [(v, t) for t, v in mounts.items()]
        for vol in (doc.get("volumes") or {}):
            if vol not in volumes:
                volumes.append(vol)
    if not services:
        raise fatal("%s: no services in %s" % (path, ":".join(
            compose_files(env))))
    return services, volumes

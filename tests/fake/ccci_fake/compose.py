"""Compose files: ${VAR} interpolation and the small YAML subset the
example recipe uses.
"""

import json
import os
import re

from .errors import fatal


# ---------------------------------------------------------- compose YAML --


def substitute(text, env):
    """${VAR}, ${VAR:-default}, ${VAR-default}, $VAR and $$, as docker stack
    deploy substitutes them (unset variables become empty)."""
    def repl(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, default = m.group(2), m.group(3) or ""
        val = env.get(name)
        if op == ":-" and not val:
            return default
        if op == "-" and val is None:
            return default
        return val or ""
    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}"
                  r"|\$([A-Za-z_][A-Za-z0-9_]*)", repl, text)


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


def _scalar(s):
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    if s.startswith("[") and s.endswith("]"):
        return [_scalar(x) for x in s[1:-1].split(",") if x.strip()]
    if s in ("", "~", "null"):
        return None
    return s


def parse_yaml(text, where):
    """A minimal block-YAML reader, enough for compose files of the simple
    shape recipes use: nested mappings, lists of scalars or of mappings,
    flow lists of scalars, quotes, comments, `|`/`>` blocks. Anchors and
    flow mappings are refused with a message rather than misread."""
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
        if re.search(r"(^|\s)[&*][A-Za-z]", content) or content.startswith(
                "{"):
            raise fatal("%s: YAML anchors/flow mappings are not supported "
                        "by the stand-in" % where)
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

    def block(pos, indent):
        if pos >= len(lines) or lines[pos][0] < indent:
            return None, pos
        indent = lines[pos][0]
        if lines[pos][1].startswith("- ") or lines[pos][1] == "-":
            return seq(pos, indent)
        return mapping(pos, indent)

    def mapping(pos, indent):
        out = {}
        while pos < len(lines) and lines[pos][0] == indent:
            content = lines[pos][1]
            m = re.match(r'^("[^"]*"|\'[^\']*\'|[^:]+?)\s*:(?:\s+(.*))?$',
                         content)
            if not m or content.startswith("- "):
                raise fatal("%s: cannot read YAML line %r" % (where, content))
            key, rest = _scalar(m.group(1)), m.group(2)
            pos += 1
            if rest is None or rest == "":
                val, pos = block(pos, indent + 1)
            else:
                val = _scalar(rest)
            out[key] = val
        if pos < len(lines) and lines[pos][0] > indent:
            raise fatal("%s: bad indentation at %r" % (where, lines[pos][1]))
        return out, pos

    def seq(pos, indent):
        out = []
        while (pos < len(lines) and lines[pos][0] == indent
               and (lines[pos][1].startswith("- ") or lines[pos][1] == "-")):
            item = lines[pos][1][1:].strip()
            if re.match(r'^("[^"]*"|\'[^\']*\'|[^:\s"\'][^:]*?)\s*:(\s|$)',
                        item) and not item.startswith(('"', "'")):
                # `- key: value` opens a mapping indented past the dash
                lines[pos] = (indent + 2, item)
                val, pos = mapping(pos, indent + 2)
            elif item == "":
                val, pos = block(pos + 1, indent + 1)
            else:
                val, pos = _scalar(item), pos + 1
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


def read_compose(path, env):
    """Services (name → image, deploy labels) and volume names of the
    recipe's compose files (COMPOSE_FILE, colon-separated)."""
    services, volumes = {}, []
    files = env.get("COMPOSE_FILE") or "compose.yml"
    for name in files.split(":"):
        f = os.path.join(path, name)
        if not os.path.isfile(f):
            raise fatal("%s does not exist" % f)
        with open(f, encoding="utf-8") as fh:
            doc = parse_yaml(substitute(fh.read(), env), f)
        for svc, spec in (doc.get("services") or {}).items():
            spec = spec or {}
            cur = services.setdefault(svc, {"image": "", "labels": {}})
            if spec.get("image"):
                cur["image"] = spec["image"]
            deploy = spec.get("deploy") or {}
            cur["labels"].update(labels_of(deploy.get("labels")))
        for vol in (doc.get("volumes") or {}):
            if vol not in volumes:
                volumes.append(vol)
    if not services:
        raise fatal("%s: no services in %s" % (path, files))
    return services, volumes

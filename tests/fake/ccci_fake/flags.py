"""docker's argument conventions: flags, --filter parsing and matching.
"""


from .errors import Fail


# --------------------------------------------------------- arg parsing --


def parse_flags(argv, spec, stop_at_positional=False):
    """Parses `argv` by `spec`: {"-q": ("quiet", False), "--filter":
    ("filter", True), ...}; value flags may repeat. Returns (opts, args);
    an unknown flag is an error."""
    opts, args = {}, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            args.extend(argv[i + 1:])
            break
        if a.startswith("-") and a != "-":
            name, eq, inline = a.partition("=")
            if name not in spec:
                # combined boolean short flags, like docker's `-aq`
                if (not eq and not a.startswith("--") and len(a) > 2
                        and all("-" + c in spec and not spec["-" + c][1]
                                for c in a[1:])):
                    for c in a[1:]:
                        opts[spec["-" + c][0]] = True
                    i += 1
                    continue
                raise Fail("unknown flag: %s" % name)
            key, takes = spec[name]
            if takes:
                if eq:
                    val = inline
                elif i + 1 < len(argv):
                    i += 1
                    val = argv[i]
                else:
                    raise Fail("flag needs an argument: %s" % name)
                opts.setdefault(key, []).append(val)
            else:
                if eq:
                    raise Fail("flag takes no argument: %s" % name)
                opts[key] = True
            i += 1
            continue
        if stop_at_positional:
            args.extend(argv[i:])
            break
        args.append(a)
        i += 1
    return opts, args


FILTER = {"--filter": ("filter", True), "-f": ("filter", True)}
LS_SPEC = dict(FILTER, **{"-q": ("quiet", False),
                          "--quiet": ("quiet", False),
                          "--format": ("format", True),
                          "--no-trunc": ("notrunc", False)})


def parse_filters(values, allowed):
    out = {}
    for v in values or []:
        key, eq, val = v.partition("=")
        if not eq:
            raise Fail('Error response from daemon: Invalid filter \'%s\'' % v)
        if key not in allowed:
            raise Fail("Error response from daemon: Invalid filter '%s'"
                       % key)
        out.setdefault(key, []).append(val)
    return out


def match_labels(labels, wanted):
    """Every `label=` filter must hold (`K` exists, or `K=V`)."""
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


def match_filters(obj, filters, name_mode, id_key="id"):
    if not match_labels(obj.get("labels", {}), filters.get("label", [])):
        return False
    names = filters.get("name", [])
    if names:
        name = obj["name"]
        if name_mode == "prefix":
            ok = any(name.startswith(n) for n in names)
        else:
            ok = any(n in name for n in names)
        if not ok:
            return False
    ids = filters.get("id", [])
    if ids and not any(obj[id_key].startswith(i) for i in ids):
        return False
    return True


def one_format(opts, default):
    fmts = opts.get("format")
    return fmts[-1] if fmts else default


def short(i, notrunc=False):
    return i if notrunc else i[:12]

#!/usr/bin/env python3
"""What is large in a wasm module: its sections, its biggest functions and data, and the code
per crate, read from the module's `name` section (build with names kept: see size-report.sh).

Usage: size_report.py MODULE.wasm [--top N] [--crates N]
No dependency beyond Python 3: it reads the binary format itself.
"""
import collections
import re
import sys

SECTION_NAMES = {
    0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory", 6: "global",
    7: "export", 8: "start", 9: "element", 10: "code", 11: "data", 12: "datacount",
}


def leb(buf, pos):
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, pos


def name_str(buf, pos):
    n, pos = leb(buf, pos)
    return buf[pos:pos + n].decode("utf-8", "replace"), pos + n


def sections(buf):
    if buf[:4] != b"\0asm":
        sys.exit("not a wasm module")
    pos = 8
    while pos < len(buf):
        sid = buf[pos]
        size, body = leb(buf, pos + 1)
        yield sid, body, body + size, body - pos + size
        pos = body + size


def imported_functions(buf, start):
    count, pos = leb(buf, start)
    funcs = 0
    for _ in range(count):
        _, pos = name_str(buf, pos)
        _, pos = name_str(buf, pos)
        kind = buf[pos]
        pos += 1
        if kind == 0:  # function: type index
            _, pos = leb(buf, pos)
            funcs += 1
        elif kind == 1:  # table: reftype + limits
            pos += 1
            flags, pos = leb(buf, pos + 0)
            _, pos = leb(buf, pos)
            if flags & 1:
                _, pos = leb(buf, pos)
        elif kind == 2:  # memory: limits
            flags, pos = leb(buf, pos)
            _, pos = leb(buf, pos)
            if flags & 1:
                _, pos = leb(buf, pos)
        elif kind == 3:  # global: valtype + mut
            pos += 2
        else:
            sys.exit(f"unknown import kind {kind}")
    return funcs


def name_map(buf, pos, end):
    names = {}
    count, pos = leb(buf, pos)
    for _ in range(count):
        idx, pos = leb(buf, pos)
        names[idx], pos = name_str(buf, pos)
    return names


def read_names(buf, start, end):
    """Function and data segment names of a `name` custom section (its payload after the name)."""
    funcs, data = {}, {}
    pos = start
    while pos < end:
        sub = buf[pos]
        size, body = leb(buf, pos + 1)
        if sub == 1:
            funcs = name_map(buf, body, body + size)
        elif sub == 9:
            data = name_map(buf, body, body + size)
        pos = body + size
    return funcs, data


ESCAPES = {"$SP$": "@", "$BP$": "*", "$RF$": "&", "$LT$": "<", "$GT$": ">", "$LP$": "(",
           "$RP$": ")", "$C$": ",", "..": "::"}


def demangle(name):
    """Rust's legacy mangling (`_ZN...E`) to a readable path; v0 names (`_R...`) to their crate
    and last identifier. Anything else is returned as it is."""
    if name.startswith("_ZN") and name.endswith("E"):
        pos, parts, body = 3, [], name[3:-1]
        pos = 0
        while pos < len(body):
            m = re.match(r"\d+", body[pos:])
            if not m:
                return name
            n = int(m.group(0))
            pos += len(m.group(0))
            part = body[pos:pos + n]
            pos += n
            if part.startswith("_$"):
                part = part[1:]
            part = re.sub(r"\$u([0-9a-f]+)\$", lambda x: chr(int(x.group(1), 16)), part)
            part = re.sub(r"\$[A-Z]+\$|\.\.", lambda x: ESCAPES.get(x.group(0), x.group(0)), part)
            parts.append(part)
        if parts and re.fullmatch(r"h[0-9a-f]{16}", parts[-1]):
            parts.pop()
        return "::".join(parts)
    if name.startswith("_R"):
        # v0 mangling (the standard library's): the first crate root `C[s<hash>_]<len><ident>`
        # and the last identifier, enough to attribute and recognise the function.
        roots = [(m.end(), int(m.group(1))) for m in re.finditer(r"C(?:s[0-9a-zA-Z]*_)?(\d+)", name)]
        idents = [(m.end(), int(m.group(1))) for m in re.finditer(r"[A-Za-z](\d+)_?", name)]
        if roots:
            end, n = roots[0]
            crate = name[end:end + n]
            end, n = idents[-1]
            return f"{crate}::..::{name[end:end + n]}"
    return name


def crate_of(name):
    """The crate a function is attributed to: the first path segment, after `<`, `&`, `mut`."""
    n = re.sub(r"\[[0-9a-f]+\]", "", name)
    n = re.sub(r"^(?:<|&|mut |dyn |\(|\[|impl )+", "", n)
    n = re.sub(r"^[A-Z][A-Za-z0-9]* as (?:<|&|mut |dyn )*", "", n)  # `<T as Trait>`: the trait's
    if n.startswith(("_ZN", "_R")):
        n = demangle(n)
    if n.startswith(("__imported_wasi", "proxy_on_", "proxy_abi")):
        return "(exports and imports)"
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)::", n)
    return m.group(1) if m else "(no crate: libc, dlmalloc, ...)"


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        sys.exit(__doc__)
    path = args[0]
    top = int(args[args.index("--top") + 1]) if "--top" in args else 40
    ncrates = int(args[args.index("--crates") + 1]) if "--crates" in args else 40
    buf = open(path, "rb").read()
    total = len(buf)
    per_section = collections.Counter()
    imports = 0
    bodies, segments = [], []
    funcs, data_names = {}, {}
    for sid, start, end, whole in sections(buf):
        if sid == 0:
            cname, payload = name_str(buf, start)
            per_section[f"custom {cname}"] += whole
            if cname == "name":
                funcs, data_names = read_names(buf, payload, end)
            continue
        per_section[SECTION_NAMES.get(sid, str(sid))] += whole
        if sid == 2:
            imports = imported_functions(buf, start)
        elif sid == 10:
            count, pos = leb(buf, start)
            for i in range(count):
                size, body = leb(buf, pos)
                bodies.append((imports + i, size + (body - pos)))
                pos = body + size
        elif sid == 11:
            count, pos = leb(buf, start)
            for i in range(count):
                flags, pos = leb(buf, pos)
                if flags == 2:
                    _, pos = leb(buf, pos)
                if flags in (0, 2):  # active: skip the offset expression up to `end`
                    while buf[pos] != 0x0B:
                        pos += 1
                    pos += 1
                size, body = leb(buf, pos)
                segments.append((i, size))
                pos = body + size
    stripped = total - sum(v for k, v in per_section.items() if k.startswith("custom"))
    print(f"module: {path}")
    print(f"  {total:>9} bytes in all, {stripped:>9} bytes without custom sections")
    print("\nsections:")
    for k, v in per_section.most_common():
        print(f"  {v:>9}  {k}")
    if not funcs:
        print("\n(no function names: build with filter/size-report.sh, which keeps them)")
        return
    funcs = {i: demangle(n) for i, n in funcs.items()}
    items = [(size, funcs.get(idx, f"func[{idx}]")) for idx, size in bodies]
    items += [(size, f"data: {data_names.get(i, f'segment {i}')}") for i, size in segments]
    items.sort(reverse=True)
    if top:
        print(f"\ntop {top} functions and data segments:")
    for size, name in items[:top]:
        print(f"  {size:>8}  {name[:150]}")
    per_crate, count = collections.Counter(), collections.Counter()
    for idx, size in bodies:
        c = crate_of(funcs.get(idx, ""))
        per_crate[c] += size
        count[c] += 1
    code = sum(per_crate.values())
    if not ncrates:
        return
    print(f"\ncode per crate (first path segment of each function; {code} bytes of code,"
          f" {sum(s for _, s in segments)} of data):")
    for c, size in per_crate.most_common(ncrates):
        print(f"  {size:>8} {100 * size / code:5.1f}%  {count[c]:>5} fns  {c}")


if __name__ == "__main__":
    main()

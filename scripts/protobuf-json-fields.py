# Reads Go API types (files named on the command line, as pkg=path pairs) and prints the fields
# whose JSON form is not the default mapping of their protobuf field:
#   <message> <field> name <json name>    JSON name differs (`-` = embedded, fields inlined)
#   <message> <field> keep                a scalar written in JSON even when zero (a Go pointer,
#                                         or no `omitempty`)
# Every other scalar has `omitempty` and is left out of JSON when zero, as Go's encoder does.
import re, sys
SCALARS = {"string", "bool", "int", "int32", "int64", "float64", "byte"}
named = set()
files = []
for arg in sys.argv[1:]:
    pkg, path = arg.split("=", 1)
    src = open(path).read()
    files.append((pkg, src))
    named |= {m.group(1) for m in re.finditer(r"^type (\w+) (string|bool|int32|int64|float64)\s*$", src, re.M)}
field = re.compile(r"^\s*(\w+)?\s*(\S+)\s+`([^`]*)`")
out = []
for pkg, src in files:
    struct = None
    for line in src.splitlines():
        m = re.match(r"^type (\w+) struct", line)
        if m:
            struct = m.group(1)
            continue
        m = re.match(r"^\s*(?:(\w+)\s+)?(\S+)\s+`([^`]*)`", line)
        if not m or struct is None:
            continue
        tag = m.group(3)
        j = re.search(r'json:"([^"]*)"', tag)
        p = re.search(r'protobuf:"[^"]*name=([^,"]+)', tag)
        if not j or not p:
            continue
        opts = j.group(1).split(",")
        jname, proto = opts[0], p.group(1)
        if jname == "-":
            continue
        msg = f"{pkg}.{struct}"
        if jname != proto:
            out.append(f"{msg} {proto} name {jname or '-'}")
        gotype = m.group(2)
        base = gotype.lstrip("*").split(".")[-1]
        if (base in SCALARS or base in named) and (gotype.startswith("*") or "omitempty" not in opts):
            out.append(f"{msg} {proto} keep")
print("\n".join(out))

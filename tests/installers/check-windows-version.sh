#!/usr/bin/env bash
# Check the version resource of Windows executables (what the Details tab
# of a file's Properties shows, and inventory and anti-virus tools read):
#   tests/installers/check-windows-version.sh VERSION EXE...
# Fails unless each EXE has one whose numeric file and product versions
# and FileVersion/ProductVersion strings are VERSION (Cargo.toml's), whose
# OriginalFilename is the file's own name, and which names persnap and
# says what the file is. wrestool (icoutils) takes the resource out of the
# file, independently of the MinGW tools that put it in; the small parser
# below reads its VS_VERSIONINFO structure.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 VERSION EXE..." >&2; exit 2; }
version=$1; shift
command -v wrestool >/dev/null || { echo "FAIL: wrestool is missing (apt install icoutils)" >&2; exit 1; }

read -r -d '' parser <<'PY' || true
import struct, sys

version, name = sys.argv[1], sys.argv[2]
data = sys.stdin.buffer.read()

def fail(why):
    sys.exit(f"FAIL: {name}: {why}")

def align(n):
    return (n + 3) & ~3

# One node: wLength, wValueLength, wType (1 text, 0 binary), a
# NUL-terminated UTF-16 key, the value and the children, each 32-bit aligned.
def node(off):
    if off + 6 > len(data):
        fail("the version resource is cut short")
    length, value_length, kind = struct.unpack_from("<HHH", data, off)
    end = off + length
    if length < 6 or end > len(data):
        fail("the version resource is malformed")
    k = off + 6
    while data[k:k + 2] != b"\0\0":
        k += 2
        if k >= end:
            fail("the version resource is malformed")
    key = data[off + 6:k].decode("utf-16-le")
    p = align(k + 2)
    size = value_length * 2 if kind == 1 else value_length
    value = data[p:p + size]
    p = align(p + size)
    children = []
    while p < end:
        child = node(p)
        children.append(child)
        p = align(p + child[3])
    return key, kind, value, length, children

if not data:
    fail("no version resource (VERSIONINFO)")
key, _, fixed, _, children = node(0)
if key != "VS_VERSION_INFO" or len(fixed) < 52:
    fail("the version resource has no fixed part")
signature, _, file_ms, file_ls, product_ms, product_ls = struct.unpack_from("<6I", fixed)
if signature != 0xFEEF04BD:
    fail("the version resource has no fixed part")
core = version.split("-")[0].split("+")[0].split(".")
want = [int(x) for x in core] + [0]
want_ms, want_ls = (want[0] << 16) | want[1], (want[2] << 16) | want[3]
shown = lambda ms, ls: f"{ms >> 16}.{ms & 0xffff}.{ls >> 16}.{ls & 0xffff}"
if (file_ms, file_ls) != (want_ms, want_ls):
    fail(f"numeric file version {shown(file_ms, file_ls)}, not {version}")
if (product_ms, product_ls) != (want_ms, want_ls):
    fail(f"numeric product version {shown(product_ms, product_ls)}, not {version}")

strings = {}
for key, _, _, _, tables in children:
    if key == "StringFileInfo":
        for _, _, _, _, entries in tables:
            for key, kind, value, _, _ in entries:
                strings[key] = value.decode("utf-16-le").rstrip("\0") if kind == 1 else ""
if "FileVersion" not in strings:
    fail("no FileVersion in the version resource")
for key, want in [("FileVersion", version), ("ProductVersion", version),
                  ("ProductName", "persnap"), ("CompanyName", "persnap")]:
    if strings.get(key) != want:
        fail(f"{key} is {strings.get(key)!r}, not {want!r}")
if strings.get("OriginalFilename", "").lower() != name.lower():
    fail(f"OriginalFilename is {strings.get('OriginalFilename')!r}, not {name!r}")
for key in ["FileDescription", "InternalName", "LegalCopyright"]:
    if not strings.get(key):
        fail(f"no {key} in the version resource")
print(f"{name}: version {strings['FileVersion']}, \"{strings['FileDescription']}\"")
PY

for exe in "$@"; do
  [ -f "$exe" ] || { echo "FAIL: $exe does not exist" >&2; exit 1; }
  # Resource type 16 is RT_VERSION; --raw keeps it as it is in the file.
  wrestool --extract --raw --type=16 "$exe" | python3 -c "$parser" "$version" "$(basename "$exe")"
done

#!/usr/bin/env python3
"""Finds references to files that do not exist in the repository.

Scans:
- every Markdown file of the repository (tracked, or new and not ignored:
  `git ls-files --cached --others --exclude-standard`): inline links and
  images `[text](target)`, reference definitions `[label]: target`,
  reference links `[text][label]` whose label is never defined, and plain
  mentions of `*.md` paths in the text (outside code blocks and links);
- every .rs, .sh, .toml, .py and .hex file (the test vectors' comments):
  mentions of `*.md` paths such as `docs/hierarchy.md` or `PERFORMANCE.md`,
  in comments and strings alike, so that a comment pointing at a page that
  was moved or never added is caught.

Link targets that are URLs (http, https, mailto, ...) or pure `#anchors`
are ignored; an anchor after a path is dropped before the path is looked
up. A Markdown link resolves against the directory of the file it is in
(a target starting with `/` against the repository root). A plain mention
resolves against the file's directory or, failing that, the repository
root; it dangles when neither holds it.

Prints each dangling reference as `file:line: target` and exits 1 when
there is any, 0 otherwise.

Usage: scripts/check-links.py [--root DIR]
"""

import argparse
import os
import re
import subprocess
import sys
from urllib.parse import unquote

CODE_SUFFIXES = (".rs", ".sh", ".toml", ".py", ".hex")

# A path ending in .md, not preceded by a character that would make it part
# of a longer word or path, and not followed by one that continues a name.
MD_PATH = re.compile(r"(?<![\w./\-])((?:\.{1,2}/)?(?:[\w.\-]+/)*[\w.\-]*\w[\w\-]*\.md)(?![\w\-])")
# URLs, removed from a line before looking for plain mentions.
URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s)>\]`'\"]+")
# Inline links and images: [text](target) or [text](<target> "title").
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
# Reference definitions: [label]: target "title".
REF_DEF = re.compile(r"^ {0,3}\[([^\]]+)\]:\s*(<[^>]*>|\S+)")
# Full reference links: [text][label] (collapsed [text][] uses the text).
REF_LINK = re.compile(r"(?<![\\\]])\[((?:[^\[\]]|\[[^\[\]]*\])+)\]\[([^\[\]]*)\]")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:")


def repo_files(root):
    """Tracked files, and new ones that are not ignored, that exist."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root, check=True, capture_output=True,
    ).stdout.decode("utf-8", "surrogateescape")
    seen = set()
    for path in out.split("\0"):
        if path and path not in seen and os.path.isfile(os.path.join(root, path)):
            seen.add(path)
            yield path


def is_external(target):
    return not target or target.startswith("#") or bool(SCHEME.match(target))


def clean_target(target):
    target = target.strip()
    if target.startswith("<") and target.endswith(">"):
        target = target[1:-1]
    target = target.split("#", 1)[0].split("?", 1)[0]
    return unquote(target)


def exists_from(root, base_dir, target):
    """Whether `target` names a file or directory: from the repository root
    when it starts with `/`, else from `base_dir` (relative to the root)."""
    if target.startswith("/"):
        path = os.path.join(root, target.lstrip("/"))
    else:
        path = os.path.join(root, base_dir, target)
    path = os.path.normpath(path)
    # A reference must stay inside the repository.
    if os.path.commonpath([path, os.path.normpath(root)]) != os.path.normpath(root):
        return False
    return os.path.exists(path)


def mention_exists(root, base_dir, target):
    return exists_from(root, base_dir, target) or exists_from(root, "", target)


def plain_mentions(text):
    """The .md paths mentioned in `text` (URLs left out)."""
    text = URL.sub(" ", text)
    return [m.group(1) for m in MD_PATH.finditer(text)]


def check_markdown(root, path, lines):
    base = os.path.dirname(path)
    problems = []
    definitions = set()
    fence = None
    body = []  # (line number, line, line without inline code): outside code blocks
    for number, line in enumerate(lines, 1):
        m = FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        if line.startswith("    ") and not line.strip().startswith(("-", "*", "|")) and \
                body and body[-1][1].strip() == "":
            continue  # an indented code block
        d = REF_DEF.match(line)
        if d:
            definitions.add(d.group(1).strip().lower())
            target = d.group(2)
            if not is_external(target.strip("<>")):
                t = clean_target(target)
                if t and not exists_from(root, base, t):
                    problems.append((number, target))
            body.append((number, "", ""))
            continue
        body.append((number, line, INLINE_CODE.sub(" ", line)))

    for number, line, text in body:
        for m in INLINE_LINK.finditer(text):
            raw = m.group(1)
            target = raw.strip("<>")
            if is_external(target):
                continue
            t = clean_target(raw)
            if t and not exists_from(root, base, t):
                problems.append((number, raw))
        for m in REF_LINK.finditer(INLINE_LINK.sub(" ", text)):
            label = (m.group(2) or m.group(1)).strip().lower()
            if label not in definitions:
                problems.append((number, f"[{m.group(1)}][{m.group(2)}] (no definition of the label)"))
        # Plain mentions, in inline code too, links left out.
        for target in plain_mentions(INLINE_LINK.sub(" ", line)):
            if not mention_exists(root, base, target):
                problems.append((number, target))
    return problems


def check_code(root, path, lines):
    base = os.path.dirname(path)
    problems = []
    for number, line in enumerate(lines, 1):
        for target in plain_mentions(line):
            if not mention_exists(root, base, target):
                problems.append((number, target))
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="repository root (default: the git top level)")
    args = parser.parse_args()
    root = args.root or subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], check=True, capture_output=True, text=True,
    ).stdout.strip()

    dangling = []
    for path in sorted(repo_files(root)):
        if path.endswith(".md"):
            check = check_markdown
        elif path.endswith(CODE_SUFFIXES):
            check = check_code
        else:
            continue
        try:
            with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError as e:
            print(f"{path}: cannot read: {e}", file=sys.stderr)
            continue
        for number, target in sorted(check(root, path, lines), key=lambda p: p[0]):
            dangling.append(f"{path}:{number}: {target}")

    for line in dangling:
        print(line)
    if dangling:
        print(f"{len(dangling)} dangling reference(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

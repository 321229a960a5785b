"""End-to-end: `benches/run.sh --quick`, the script behind the README's
performance table, runs against the real binary and prints that table in
Markdown. Only its shape is checked, and that the figures are there and
positive: no timing thresholds (the machine running the tests is shared)."""
import os
import re
import subprocess

from conftest import ROOT, idnode_bin

HEADER = "| what | command | figure | peer (same run) | ratio |"


def cells(line):
    """The cells of a Markdown table row (`\\|` is a `|` inside a cell)."""
    assert line.startswith("|") and line.endswith("|"), line
    parts = re.split(r"(?<!\\)\|", line[1:-1])
    return [p.strip().replace("\\|", "|") for p in parts]


def first_number(text):
    m = re.search(r"\d[\d,]*(?:\.\d+)?", text)
    assert m, f"no figure in {text!r}"
    return float(m.group(0).replace(",", ""))


def test_quick_report_is_a_table_with_figures():
    env = {**os.environ, "IDNODE_BIN": idnode_bin()}
    r = subprocess.run([str(ROOT / "benches/run.sh"), "--quick"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=110)
    assert r.returncode == 0, f"run.sh --quick exited {r.returncode}:\n{r.stderr[-4000:]}"
    lines = r.stdout.splitlines()
    assert HEADER in lines, r.stdout
    start = lines.index(HEADER)
    assert re.fullmatch(r"\|(?:-{3,}\|){5}", lines[start + 1]), lines[start + 1]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        row = cells(line)
        assert len(row) == 5, line
        rows.append(row)
    assert rows, r.stdout

    def row(pattern):
        found = [x for x in rows if re.search(pattern, x[0], re.I)]
        assert found, f"no row for {pattern!r} in:\n{r.stdout}"
        return found[0]

    echo = row(r"echo server")
    udp = row(r"^Handle over UDP")
    registration = row(r"registration")
    rss = row(r"resident memory")
    for what, figure, unit in [(echo, echo[2], "answers/s"), (udp, udp[2], "answers/s"),
                               (registration, registration[2], "identifiers/s"),
                               (rss, rss[2], "MiB")]:
        assert unit in figure, what
        assert first_number(figure) > 0, what
    # Handle over UDP is set against the echo server of the same run.
    assert "echo" in udp[3] and first_number(udp[3]) > 0, udp
    assert re.fullmatch(r"\d+ % of the echo server", udp[4]), udp
    # The web against nginx: a figure in requests/s beside nginx's, or why
    # not (wrk or nginx missing).
    for pattern in (r"^HTTP: `GET /api/handles", r"^HTTP: `GET /\{id\}`"):
        web = row(pattern)
        assert "requests/s" in web[2] or web[2].startswith("not measured"), web
        if "requests/s" in web[2] and "nginx" in web[3] and "requests/s" in web[3]:
            assert re.fullmatch(r"\d+ % of nginx", web[4]), web
    # Every other row has a figure or says why not.
    for x in rows:
        assert x[2] and (re.search(r"\d", x[2]) or x[2].startswith("not measured")), x

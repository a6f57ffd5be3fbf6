"""Go-template subset, tabwriter tables and human units of berth.cli.format."""

from __future__ import annotations

import pytest

from berth.cli.format import Template, ellipsis, go_str, human_duration, human_size, render, tabwrite
from berth.errors import InvalidArgument


@pytest.mark.parametrize("n,want", [
    (0, "0B"), (999, "999B"), (1000, "1kB"), (1234, "1.23kB"), (4261234, "4.26MB"), (1e9, "1GB"),
    (12345678901, "12.3GB"), (999_999, "1e+03kB"), (5.5e15, "5.5PB"),
])
def test_human_size(n, want):
    assert human_size(n) == want


def test_human_size_precision_4():
    assert human_size(4261234, 4) == "4.261MB"


@pytest.mark.parametrize("secs,want", [
    (0.5, "Less than a second"), (1, "1 second"), (2, "2 seconds"), (59, "59 seconds"),
    (60, "About a minute"),
    (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"), (3600, "About an hour"),
    (5399, "About an hour"), (5400, "2 hours"), (47 * 3600, "47 hours"), (48 * 3600, "2 days"),
    (13 * 86400, "13 days"), (14 * 86400, "2 weeks"), (60 * 86400, "2 months"), (800 * 86400, "2 years"),
])
def test_human_duration(secs, want):
    assert human_duration(secs) == want


def test_ellipsis():
    assert ellipsis("sleep 100", 20) == "sleep 100"
    assert ellipsis("a" * 25, 20) == "a" * 19 + "…"
    assert ellipsis("abc", 1) == "a" and ellipsis("abc", 0) == ""


def test_tabwriter_like_go():
    text = "CONTAINER ID\tIMAGE\tNAMES\nabc\tbusybox\tc1\nabcdef123456\tx\tlong-name"
    assert tabwrite(text).splitlines() == [
        "CONTAINER ID   IMAGE     NAMES",
        "abc            busybox   c1",
        "abcdef123456   x         long-name",
    ]
    # column blocks: a line without the column ends the block
    assert tabwrite("a\tb\nonly\nlonger-cell\tc").splitlines() == ["a         b", "only", "longer-cell   c"]


def test_template_fields_and_functions():
    data = {"Name": "/c1", "State": {"Running": True, "Pid": 42}, "Labels": {"com.x": "v", "b": "2"},
            "Args": ["-c", "echo"], "Config": {"Env": None}, "Size": 4.0}
    t = lambda s: Template(s).execute(data)  # noqa: E731
    assert t("{{.Name}} {{.State.Running}} {{.State.Pid}}") == "/c1 true 42"
    assert t('{{index .Labels "com.x"}}') == "v"
    assert t("{{json .State}}") == '{"Running":true,"Pid":42}'
    assert t("{{json .Config.Env}}") == "null"
    assert Template("{{json .}}").execute({"ID": "<missing>", "C": "a&b"}) == \
        '{"ID":"\\u003cmissing\\u003e","C":"a\\u0026b"}'   # Go's json.Marshal HTML escapes
    assert t("{{.Missing}}") == "<no value>"
    assert t("{{.Labels}}") == "map[b:2 com.x:v]"
    assert t("{{.Args}} {{len .Args}}") == "[-c echo] 2"
    assert t('{{join .Args ","}}') == "-c,echo"
    assert t("{{upper .Name}} {{.Name | upper}} {{lower \"ABC\"}}") == "/C1 /C1 abc"
    assert t("{{range .Args}}[{{.}}]{{end}}") == "[-c][echo]"
    assert t("{{range .Config.Env}}x{{else}}none{{end}}") == "none"
    assert t("{{if .State.Running}}up{{else}}down{{end}}") == "up"
    assert t("{{if not .State.Running}}up{{else if .Name}}named{{end}}") == "named"
    assert t("{{with .State}}{{.Pid}}{{end}}") == "42"
    assert t("{{.Size}}") == "4"
    assert t('{{printf "%s-%d" .Name .State.Pid}}') == "/c1-42"
    assert t("{{json .}}").startswith('{"Name":"/c1"')
    assert t("a\\tb {{- \"  x\"}}") == "a\\tb  x"
    assert go_str([None, 1]) == "[<nil> 1]"


def test_template_errors():
    with pytest.raises(InvalidArgument, match='function "nosuch" not defined'):
        Template("{{nosuch .X}}")
    with pytest.raises(InvalidArgument, match="unclosed"):
        Template("{{.X")
    with pytest.raises(InvalidArgument, match="missing"):
        Template("{{range .X}}")
    with pytest.raises(InvalidArgument):
        Template("{{end}}")


class Row:
    def __init__(self, i, n):
        self.ID, self.Names = i, n

    def as_dict(self):
        return {"ID": self.ID, "Names": self.Names}


def test_render_table_json_and_plain():
    rows = [Row("abc", "c1"), Row("def", "c2")]
    hdr = {"ID": "CONTAINER ID", "Names": "NAMES"}
    want = "CONTAINER ID   NAMES\nabc            c1\ndef            c2\n"
    assert render("table {{.ID}}\\t{{.Names}}", rows, hdr) == want
    assert render("{{.ID}}", rows, hdr) == "abc\ndef\n"
    assert render("json", rows) == '{"ID":"abc","Names":"c1"}\n{"ID":"def","Names":"c2"}\n'
    assert render("table {{.ID}}", [], hdr) == "CONTAINER ID\n"

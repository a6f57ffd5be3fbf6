"""Dockerfile parsing, variable substitution and .dockerignore matching (pure logic, no root)."""

from __future__ import annotations

import pytest

from berth.build.dockerignore import IgnoreMatcher
from berth.build.parser import name_values, parse, split_words
from berth.build.shell import expand_heredoc, process_word, process_words
from berth.errors import InvalidArgument


def test_comments_continuations_and_forms():
    df = parse(
        "# syntax=docker/dockerfile:1\n"
        "# escape=\\\n"
        "\n"
        "# a comment\n"
        "from busybox AS base\n"
        "RUN echo a \\\n"
        "  # a comment inside a continuation\n"
        "\n"
        "  && echo b\n"
        'CMD ["sh", "-c", "echo hi"]\n'
        "ENTRYPOINT echo not json [\n"
        "COPY --from=base --chown=1:2 a b /dst/\n"
    )
    assert df.directives == {"syntax": "docker/dockerfile:1", "escape": "\\"}
    cmds = [i.cmd for i in df.instructions]
    assert cmds == ["FROM", "RUN", "CMD", "ENTRYPOINT", "COPY"]
    run = df.instructions[1]
    assert run.args == "echo a   && echo b" and run.line == 6 and run.json_args is None
    assert df.instructions[2].json_args == ["sh", "-c", "echo hi"]
    assert df.instructions[3].json_args is None
    cp = df.instructions[4]
    assert cp.flags == {"from": ["base"], "chown": ["1:2"]} and cp.args == "a b /dst/"


def test_escape_directive_backtick():
    df = parse("# escape=`\nFROM busybox\nRUN dir c:\\ `\n  && echo x\n")
    assert df.escape == "`"
    assert df.instructions[1].args == "dir c:\\   && echo x"


def test_directives_only_at_the_top():
    df = parse("FROM busybox\n# escape=`\nRUN echo \\\n x\n")
    assert df.escape == "\\" and df.instructions[1].args == "echo  x"
    with pytest.raises(InvalidArgument):
        parse("# escape=x\nFROM busybox\n")
    with pytest.raises(InvalidArgument):
        parse("# escape=`\n# escape=\\\nFROM busybox\n")


def test_heredocs():
    df = parse(
        "FROM busybox\n"
        "RUN <<EOF\n"
        "echo one\n"
        "echo two\n"
        "EOF\n"
        "COPY <<-'A' <<B /dst/\n"
        "\tliteral $X\n"
        "\tA\n"
        "expanded $X\n"
        "B\n"
        "CMD [\"sh\"]\n"
    )
    run, cp = df.instructions[1], df.instructions[2]
    assert [(h.name, h.content, h.expand) for h in run.heredocs] == [("EOF", "echo one\necho two\n", True)]
    assert [(h.name, h.content, h.expand) for h in cp.heredocs] == [
        ("A", "literal $X\n", False), ("B", "expanded $X\n", True)]
    assert df.instructions[3].cmd == "CMD"
    with pytest.raises(InvalidArgument, match="unterminated heredoc"):
        parse("FROM busybox\nRUN <<EOF\necho\n")


def test_bad_input():
    with pytest.raises(InvalidArgument, match="unknown instruction: FOO"):
        parse("FROM busybox\nFOO bar\n")
    with pytest.raises(InvalidArgument, match="SHELL requires"):
        parse("FROM busybox\nSHELL /bin/bash\n")
    with pytest.raises(InvalidArgument, match="requires at least one argument"):
        parse("FROM busybox\nENV\n")
    with pytest.raises(InvalidArgument, match="UTF-8"):
        parse(b"FROM \xff\n")


def test_name_values_forms():
    df = parse('FROM x\nENV A=1 B="two words" C=a\\ b\nENV LEGACY some value here\nARG N\nARG M=3 K\n'
               "LABEL 'quoted key'=v\n")
    env1, env2, arg1, arg2, label = df.instructions[1:]
    assert name_values(env1) == [("A", "1"), ("B", '"two words"'), ("C", "a\\ b")]
    assert name_values(env2) == [("LEGACY", "some value here")]
    assert name_values(arg1) == [("N", "\0")]
    assert name_values(arg2) == [("M", "3"), ("K", "\0")]
    assert name_values(label) == [("'quoted key'", "v")]
    with pytest.raises(InvalidArgument, match="can't find ="):
        name_values(parse("FROM x\nENV A=1 B\n").instructions[1])
    assert split_words('a "b c" d\\ e') == ["a", '"b c"', "d\\ e"]


@pytest.mark.parametrize("word,expected", [
    ("$A", "1"), ("${A}", "1"), ("pre${A}post", "pre1post"), ("$UNSET", ""),
    ("${UNSET:-dflt}", "dflt"), ("${EMPTY:-dflt}", "dflt"), ("${EMPTY-dflt}", ""),
    ("${A:-dflt}", "1"), ("${A:+alt}", "alt"), ("${UNSET:+alt}", ""), ("${EMPTY+alt}", "alt"),
    ("'$A'", "$A"), ('"$A b"', "1 b"), ("\\$A", "$A"), ('"\\$A"', "$A"), ("a\\ b", "a b"),
    ("${UNSET:-${A}x}", "1x"), ("$", "$"), ("a$-b", "a$-b"),
])
def test_substitution(word, expected):
    env = {"A": "1", "EMPTY": ""}
    assert process_word(word, env) == expected


def test_substitution_errors_and_words():
    with pytest.raises(InvalidArgument):
        process_word("${UNSET:?must be set}", {})
    with pytest.raises(InvalidArgument):
        process_word("${A", {"A": "1"})
    with pytest.raises(InvalidArgument):
        process_word('"unterminated', {})
    assert process_words('80 "$P/udp"  x\\ y', {"P": "53"}) == ["80", "53/udp", "x y"]
    assert process_word("`$A", {"A": "1"}, escape="`") == "$A"
    assert expand_heredoc('echo "$A" \'$A\'\n', {"A": "1"}) == 'echo "1" \'1\'\n'


@pytest.mark.parametrize("patterns,path,excluded", [
    (["*.log"], "a.log", True),
    (["*.log"], "dir/a.log", False),
    (["**/*.log"], "dir/sub/a.log", True),
    (["**/*.log"], "a.log", True),
    (["build"], "build/out/x", True),
    (["/build/"], "build", True),
    (["dir/*/x"], "dir/a/x", True),
    (["dir/*/x"], "dir/a/b/x", False),
    (["dir/**/x"], "dir/a/b/x", True),
    (["secret*", "!secret-ok"], "secret-ok", False),
    (["secret*", "!secret-ok"], "secret1", True),
    (["!keep", "*"], "keep", True),          # last match wins
    (["*", "!keep"], "keep", False),
    (["a?c"], "abc", True),
    (["a?c"], "a/c", False),
    (["[a-c]x"], "bx", True),
    (["[!a-c]x"], "bx", False),
    (["# comment", ""], "# comment", False),
    (["./x/../y"], "y", True),
])
def test_dockerignore(patterns, path, excluded):
    assert IgnoreMatcher(patterns).excluded(path) is excluded


def test_dockerignore_exceptions_flag():
    assert IgnoreMatcher(["a", "!b"]).has_exceptions
    assert not IgnoreMatcher(["a"]).has_exceptions

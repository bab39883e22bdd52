"""Every command block of README.md a user may paste is run by a test as written, or marked as a
template whose placeholders are shell-safe: no <placeholder> or [--optional] syntax that bash would
take as a redirection or a literal argument, and valid bash."""
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUICK_PATH = "<!-- quick path: tests/test_quickpath.py runs the next block as written -->"
RUNS = "<!-- runs: tests/test_quickpath.py runs the next block as written"
TEMPLATE = "<!-- template:"


def blocks():
    """``[(line number, the line before the block, its text)]`` for every bash block."""
    text = (ROOT / "README.md").read_text()
    found = []
    for match in re.finditer(r"```bash\n(.*?)```", text, re.S):
        before = text[:match.start()].rstrip("\n").splitlines()
        found.append((len(before) + 1, before[-1] if before else "", match.group(1)))
    return found


def _commands(block):
    """The block's text outside comments."""
    return "\n".join(line.split(" #", 1)[0] for line in block.splitlines() if not line.lstrip().startswith("#"))


def test_every_block_is_run_by_a_test_or_marked_as_a_template():
    found = blocks()
    assert found[0][2].splitlines()[0].startswith("bash scripts/run-sample.sh")      # README's first commands
    for line, before, block in found[1:]:
        assert before.startswith((QUICK_PATH, RUNS, TEMPLATE)), "README.md line %d: a block with no marker" % line


def test_a_template_block_can_be_pasted_once_its_names_are_replaced():
    for line, before, block in blocks():
        if not before.startswith(TEMPLATE):
            continue
        commands = _commands(block)
        assert not re.search(r"<[A-Za-z][^>]*>", commands), "README.md line %d: a <placeholder> bash would " \
                                                           "take as a redirection" % line
        assert "[--" not in commands and "|wait|" not in commands, "README.md line %d: [--optional] syntax" % line
        checked = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert checked.returncode == 0, "README.md line %d: %s" % (line, checked.stderr)

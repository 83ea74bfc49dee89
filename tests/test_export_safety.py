"""Export safety (issue 12): the export never empties the journal it reads, never follows a link planted in
its target, never writes or chmods outside it, copies only the session's own artefacts, and is private."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rollback_tui import settings as user_settings
from rollback_tui.core.redact import Redactor
from rollback_tui.core.resume import resume_session
from rollback_tui.playbook.load import load_playbook
from rollback_tui.report.export import ExportError, export_session
from rollback_tui.session.engine import Engine
from test_cli import run

DATA = Path(__file__).parent / "data" / "export"
SECRET = "s3cr3t-fixture-value-42"
LOGS = sorted(p.name for p in (DATA / "session-artefacts").iterdir())
SESSION_LINES = (DATA / "session.jsonl").read_bytes().splitlines()
OUTSIDE_TEXT = b"outside the export: must stay as it is\n"


def copy_session(directory: Path, stem: str = "session") -> Path:
    """The recorded session (journal, playbook, artefacts) in `directory`, its journal `<stem>.jsonl`."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / "session.jsonl", directory / f"{stem}.jsonl")
    shutil.copy(DATA / "playbook.yaml", directory / "playbook.yaml")
    shutil.copytree(DATA / "session-artefacts", directory / f"{stem}-artefacts")
    return directory / f"{stem}.jsonl"


def export(journal: Path, out: Path) -> list[Path]:
    return export_session(journal, out, redactor=Redactor([SECRET]), svg="<svg/>")


def outside_tree(base: Path) -> Path:
    """A file and a directory outside every export target, for planted links to point at."""
    outside = base / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "file.txt").write_bytes(OUTSIDE_TEXT)
    (outside / "file.txt").chmod(0o644)
    (outside / "dir" / "inner.txt").write_bytes(OUTSIDE_TEXT)
    return outside


def tree_digest(*roots: Path) -> str:
    """Names, types, modes, contents and link targets under `roots`, without following any link."""
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted([root, *root.rglob("*")]):
            st_ = path.lstat()
            digest.update(f"{path}|{st_.st_mode:o}|".encode())
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.rglob(".*.tmp")]


def assert_private_export(out: Path, paths: list[Path], events: int = len(SESSION_LINES)) -> None:
    for path in paths:
        st_ = path.lstat()
        assert stat.S_ISREG(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o600, path
        assert path.parent in (out, out / "artefacts")
    assert not leftovers(out)
    bundle = json.loads((out / "bundle.json").read_text())
    assert len(bundle["events"]) == events  # the whole journal, not an emptied one


# --- item 1: an export into the journal's own directory --------------------------------------------------


@pytest.mark.integration
def test_export_into_the_journals_own_directory_is_refused_and_the_journal_kept(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    journal = d / "journal.jsonl"
    shutil.copy(DATA / "session.jsonl", journal)
    before = journal.read_bytes()
    result = run("export", str(journal), "--to", str(d), "--playbook", str(DATA / "playbook.yaml"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"refusing to export into {d}" in result.stderr and str(journal) in result.stderr
    assert journal.read_bytes() == before
    assert [p.name for p in d.iterdir()] == ["journal.jsonl"]


def test_the_journals_directory_is_recognised_through_links_and_as_the_artefacts_dir(tmp_path: Path) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(tmp_path / "src")
    for journal, out in [
        (copy_session(tmp_path / "src"), alias / "sub" / ".."),  # a link and a ".." lead to the journal's own
        (copy_session(tmp_path / "x" / "artefacts"), tmp_path / "x"),  # where the gate logs would be written
    ]:
        before = journal.read_bytes()
        with pytest.raises(ExportError, match=f"it contains the session journal {journal}"):
            export(journal, out)
        assert journal.read_bytes() == before
    # Deeper down, nothing the export writes can meet the journal: a home directory is a fine target.
    deep = copy_session(tmp_path / "home" / "a" / "b")
    (tmp_path / "home").chmod(0o755)  # whatever the umask: not writable by others
    assert_private_export(tmp_path / "home", export(deep, tmp_path / "home"))


@pytest.mark.integration
def test_rehearse_refuses_an_export_into_its_journals_directory_before_running(tmp_path: Path) -> None:
    d = tmp_path / "d"
    journal = d / "journal.jsonl"
    result = run(
        "rehearse",
        "playbooks/demo.yaml",
        "--headless",
        "--journal",
        str(journal),
        "--export",
        str(d),
        tmp=tmp_path,
        timeout=240,
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert f"refusing to export into {d}" in result.stderr and str(journal) in result.stderr
    assert not d.exists()  # refused before the lab started or the journal was opened


@pytest.mark.integration
def test_an_export_refused_at_the_end_of_a_rehearsal_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    # A link planted in the export directory while the rehearsal ran. No lab: the probes fail fast.
    outside = outside_tree(tmp_path)
    evidence, journal = tmp_path / "evidence", tmp_path / "rehearsal.jsonl"
    evidence.mkdir(mode=0o700)
    (evidence / "report.md").symlink_to(outside / "file.txt")
    before = tree_digest(outside)
    args = ["--headless", "--no-lab", "--watch", "0", "--journal", str(journal), "--export", str(evidence)]
    result = run("rehearse", str(DATA / "playbook.yaml"), *args, tmp=tmp_path, timeout=240)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert (
        f"error: export failed: refusing to write {evidence / 'report.md'}: it is a symlink" in result.stderr
    )
    assert tree_digest(outside) == before
    assert os.listdir(evidence) == ["report.md"]  # nothing half-written left behind
    notices = [json.loads(line) for line in journal.read_text().splitlines() if '"notice"' in line]
    assert any(n["source"] == "export" and n["level"] == "error" for n in notices)  # the journal says so


async def test_the_cockpits_automatic_export_of_a_journal_in_its_default_directory_loses_nothing(
    tmp_path: Path,
) -> None:
    # `--journal <data>/exports/journal/journal.jsonl`: the automatic export's default directory is the
    # journal's own. No one is there to choose another, so it goes to a fresh sibling.
    default = user_settings.export_dir() / "journal"
    path = copy_session(default, stem="journal")
    before = path.read_bytes()
    journal, state, _ = resume_session(path, operator="alice")  # as `rollback-tui resume` reopens it
    engine = Engine(load_playbook(DATA / "playbook.yaml"), journal, operator="alice", state=state)
    paths = await engine.export()
    engine.journal.close()
    out = default.with_name("journal-export")
    assert {p.parent for p in paths} <= {out, out / "artefacts"}
    assert path.read_bytes().startswith(before)
    kinds = [json.loads(line)["kind"] for line in path.read_bytes().splitlines()]
    assert_private_export(out, paths, events=kinds.index("export_written"))  # all journaled before it


# --- item 5: links planted in the target, artefacts named by a tampered journal --------------------------


@pytest.mark.parametrize(
    "name", ["report.md", "bundle.json", "journal.jsonl", "cockpit.svg", f"artefacts/{LOGS[0]}"]
)
@pytest.mark.parametrize("link_to", ["file", "dangling"])
def test_a_symlink_planted_at_an_output_name_is_refused_never_followed(
    tmp_path: Path, name: str, link_to: str
) -> None:
    journal = copy_session(tmp_path / "src")
    outside = outside_tree(tmp_path)
    out = tmp_path / "out"
    (out / "artefacts").mkdir(parents=True, mode=0o700)
    target = outside / ("file.txt" if link_to == "file" else "created-through-a-dangling-link")
    (out / name).symlink_to(target)
    before = tree_digest(outside, journal.parent)
    with pytest.raises(ExportError, match=f"refusing to write {out / name}: it is a symlink"):
        export(journal, out)
    assert tree_digest(outside, journal.parent) == before
    # Nothing else was written, not even a temp file.
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == sorted([Path("artefacts"), Path(name)])


@pytest.mark.parametrize("linked", ["artefacts", "target"])
def test_a_symlinked_directory_in_or_as_the_target_is_refused(tmp_path: Path, linked: str) -> None:
    journal = copy_session(tmp_path / "src")
    outside = outside_tree(tmp_path)
    out = tmp_path / "out"
    if linked == "target":
        out.symlink_to(outside / "dir")
    else:
        out.mkdir(mode=0o700)
        (out / "artefacts").symlink_to(outside / "dir")
    before = tree_digest(outside, journal.parent)
    with pytest.raises(ExportError, match="a symlink is never followed"):
        export(journal, out)
    assert tree_digest(outside, journal.parent) == before


def tamper(journal: Path, outside: Path, how: str) -> None:
    """Point the journal's first gate artefact somewhere else, or swap the artefact for a link."""
    artefacts = journal.with_name(f"{journal.stem}-artefacts")
    if how == "link-in-dir":
        (artefacts / LOGS[0]).unlink()
        (artefacts / LOGS[0]).symlink_to(outside / "file.txt")
        return
    if how == "linked-dir":
        shutil.rmtree(artefacts)
        (outside / "dir" / LOGS[0]).write_bytes(OUTSIDE_TEXT)
        artefacts.symlink_to(outside / "dir")
        return
    named = {"absolute": str(outside / "file.txt"), "dotdot": "../outside/file.txt"}[how]
    text = journal.read_text().replace(f"session-artefacts/{LOGS[0]}", named)
    journal.write_text(text)


@pytest.mark.parametrize("how", ["absolute", "dotdot", "link-in-dir", "linked-dir"])
def test_a_tampered_journal_cannot_make_the_export_copy_a_file_outside_its_artefacts(
    tmp_path: Path, how: str
) -> None:
    journal = copy_session(tmp_path / "src")
    outside = outside_tree(tmp_path)
    tamper(journal, outside, how)
    out = tmp_path / "out"
    paths = export(journal, out)
    for path in paths:
        assert OUTSIDE_TEXT not in path.read_bytes(), path
    warnings = json.loads((out / "bundle.json").read_text())["summary"]["warnings"]
    assert any("refused" in w for w in warnings), warnings
    report = (out / "report.md").read_text()
    assert "refused" in report.split("## Journal warnings", 1)[1]
    assert "(not copied; the journal warnings say why)" in report  # in its gate's section


# --- item 7: private exports; re-exports keep working --------------------------------------------------


def test_exports_are_private_files_in_private_directories(tmp_path: Path) -> None:
    journal = copy_session(tmp_path / "src")
    out = tmp_path / "new" / "evidence"
    umask = os.umask(0o022)
    try:
        paths = export(journal, out)
    finally:
        os.umask(umask)
    assert {p.name for p in paths} >= {"report.md", "bundle.json", "journal.jsonl", "cockpit.svg", *LOGS}
    assert_private_export(out, paths)
    for directory in (out.parent, out, out / "artefacts"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_re_exporting_into_the_same_directory_replaces_the_previous_export(tmp_path: Path) -> None:
    journal = copy_session(tmp_path / "src")
    out = tmp_path / "out"
    first = {p: p.read_bytes() for p in export(journal, out)}
    (out / "report.md").write_text("stale")
    second = export(journal, out)
    assert {p: p.read_bytes() for p in second} == first
    assert_private_export(out, second)


@pytest.mark.parametrize("mode", [0o775, 0o777])
def test_an_existing_directory_others_can_write_to_is_refused(tmp_path: Path, mode: int) -> None:
    journal = copy_session(tmp_path / "src")
    out = tmp_path / "shared"
    out.mkdir()
    out.chmod(mode)
    with pytest.raises(ExportError, match=f"refusing to export into {out}: it is writable by others"):
        export(journal, out)
    assert list(out.iterdir()) == [] and stat.S_IMODE(out.stat().st_mode) == mode


# --- fuzz: random targets with planted links -----------------------------------------------------------

PLANT_NAMES = [
    "report.md",
    "bundle.json",
    "journal.jsonl",
    "cockpit.svg",
    "artefacts",
    *(f"artefacts/{n}" for n in LOGS),
]
HARMFUL = ["outside-file", "outside-dir", "dangling", "journal", "hard-link-journal", "source-artefacts"]
PLANTS = [*HARMFUL, "file", "file", "dir", "dir"]  # a previous export's file, a directory
# Usable targets twice as often (and no plants as often as some), so that about half the examples export.
TARGETS = ["new", "new-nested", "existing-0700", "existing-0755"] * 2 + [
    "existing-0777",
    "journal-dir",
    "link-outside",
]


def plant(at: Path, kind: str, journal: Path, outside: Path) -> None:
    if at.parent.is_symlink() or not at.parent.is_dir() or os.path.lexists(at):
        return  # never plant through a link (that would change the outside tree itself)
    links = {
        "outside-file": outside / "file.txt",
        "outside-dir": outside / "dir",
        "dangling": outside / "nowhere",
        "journal": journal,
        "source-artefacts": journal.with_name(f"{journal.stem}-artefacts"),
    }
    if kind in links:
        at.symlink_to(links[kind])
    elif kind == "hard-link-journal":
        os.link(journal, at)
    elif kind == "file":
        at.write_bytes(b"a previous export\n")
    else:
        at.mkdir(mode=0o700)


def make_target(base: Path, kind: str, journal: Path, outside: Path) -> Path:
    if kind == "journal-dir":
        return journal.parent
    if kind == "link-outside":
        (base / "target").symlink_to(outside / "dir")
        return base / "target"
    out = base / "nested" / "target" if kind == "new-nested" else base / "target"
    if kind.startswith("existing-"):
        out.mkdir()
        out.chmod(int(kind.split("-")[1], 8))
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    target_kind=st.sampled_from(TARGETS),
    plants=st.one_of(
        st.just({}), st.dictionaries(st.sampled_from(PLANT_NAMES), st.sampled_from(PLANTS), max_size=3)
    ),
)
def test_fuzz_the_export_never_harms_its_source_or_anything_outside(
    target_kind: str, plants: dict[str, str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        journal = copy_session(base / "src")
        outside = outside_tree(base)
        out = make_target(base, target_kind, journal, outside)
        if plants and not out.exists():
            out.mkdir(parents=True, mode=0o700)
        for name in sorted(plants):  # "artefacts" before "artefacts/…"
            plant(out / name, plants[name], journal, outside)
        source, before = journal.read_bytes(), tree_digest(outside, journal.parent)
        created = not os.path.lexists(out)
        try:
            paths = export(journal, out)
        except ExportError as exc:
            event("refused")
            assert str(out) in str(exc) or str(journal) in str(exc), exc
            if out.is_dir() and not out.is_symlink():
                assert not leftovers(out)
        else:
            event("exported")
            assert not out.is_symlink() and not (out / "artefacts").is_symlink()
            assert_private_export(out, paths)
            for directory in (out, out / "artefacts"):
                mode = stat.S_IMODE(directory.stat().st_mode)
                assert mode == 0o700 if created else not mode & 0o022, (directory, oct(mode))
        assert journal.read_bytes() == source
        assert tree_digest(outside, journal.parent) == before

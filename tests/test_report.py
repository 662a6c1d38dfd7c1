"""`rtml report`: inputs, each section on small hand-written inputs, the verdict's numbers,
the written files, and every bad input at the CLI."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from rtml_cli.errors import DataError, InputMissing
from rtml_cli.report import Options, build_report, load_inputs, render_html, write_report
from rtml_cli.report.inputs import Inputs
from tests.report_fixtures import (
    BANDITS,
    OPE,
    check_claim,
    simulate_doc,
    tiny_frame,
    write_all,
    write_json,
    write_results,
)

FAST = Options(bootstrap=200, charts=False)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return write_all(tmp_path / "in")


def _report(paths, options: Options = FAST):
    inputs = load_inputs([str(p) for p in paths])
    return inputs, build_report(inputs, options)


def _section(report, section_id: str):
    return next(s for s in report.sections if s.id == section_id)


def _texts(section) -> str:
    out = []
    for block in section.blocks:
        for attr in ("text", "caption", "note", "alt"):
            if hasattr(block, attr):
                out.append(str(getattr(block, attr)))
        for row in getattr(block, "rows", []):
            out.append(" ".join(row))
    return "\n".join(out)


# ------------------------------------------------------------------------------- inputs
def test_a_directory_is_searched_and_each_file_recognised(files) -> None:
    inputs = load_inputs([files["results"].parent])
    kinds = sorted(d.kind for d in inputs.documents)
    assert kinds == sorted(
        [
            "simulate",
            "evaluate bandits",
            "evaluate ope",
            "evaluate contextual",
            "retrain",
            "drift popularity",
            "data validate",
        ]
    )
    assert inputs.results is not None and inputs.results.protocol == "next-unseen"
    assert all(len(f.sha256) == 64 and f.bytes > 0 for f in inputs.files)


def test_a_directory_skips_files_that_are_not_rtml_outputs(files) -> None:
    root = files["results"].parent
    (root / "notes.json").write_text('{"hello": 1}')
    write_results(root / "sub.parquet", tiny_frame()).rename(root / "x.txt")
    inputs = load_inputs([root])
    assert root / "notes.json" in inputs.skipped


def test_a_precompute_root_contributes_its_latest_run(tmp_path) -> None:
    from tests.online_fixtures import tiny_events, write_run  # a real published run

    root = tmp_path / "root"
    write_run(root, tiny_events())
    inputs = load_inputs([root])
    assert len(inputs.runs) == 1 and inputs.runs[0].manifest["run_id"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not a JSON document"),
        ('{"a": 1}', "is not an rtml document"),
        ('{"kind": "simulate", "schema": 99}', "of schema 99"),
        ('{"kind": "neighbors", "schema": 1}', "which the report does not use"),
        ('{"kind": "nonsense", "schema": 1}', "is not an rtml document"),
    ],
)
def test_a_named_file_that_is_not_a_usable_document_is_refused(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        load_inputs([path])
    assert str(path) in str(info.value)


def test_a_parquet_file_that_is_not_results_is_refused(tmp_path) -> None:
    import polars as pl

    path = tmp_path / "events.parquet"
    pl.DataFrame({"a": [1]}).write_parquet(path)
    with pytest.raises(DataError, match="not RESULTS"):
        load_inputs([path])


def test_missing_and_empty_inputs(tmp_path) -> None:
    with pytest.raises(InputMissing, match="does not exist"):
        load_inputs([tmp_path / "nope.json"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputMissing, match="holds no rtml output"):
        load_inputs([tmp_path / "empty"])
    with pytest.raises(InputMissing, match="no inputs"):
        load_inputs([])


def test_results_that_do_not_match_the_simulate_document_are_refused(files, tmp_path) -> None:
    other = tiny_frame().filter(tiny_frame()["strategy"] != "batch")
    write_results(tmp_path / "other.parquet", other)
    with pytest.raises(DataError, match="does not match the simulate document.*strategies"):
        load_inputs([files["simulate"], tmp_path / "other.parquet"])
    write_results(tmp_path / "k10.parquet", tiny_frame(), k=10, protocol="next-item")
    with pytest.raises(DataError, match="protocol next-item vs next-unseen; K 10 vs 20"):
        load_inputs([files["simulate"], tmp_path / "k10.parquet"])


def test_a_second_replay_is_refused(files, tmp_path) -> None:
    copy = write_json(tmp_path / "again.json", json.loads(files["simulate"].read_text()))
    with pytest.raises(DataError, match="second `simulate` document"):
        load_inputs([files["simulate"], copy])


# ------------------------------------------------------------------------------ sections
def test_verdict_on_every_kind_of_input(files) -> None:
    inputs, report = _report(files.values())
    topics = [c.topic for c in report.verdict]
    for topic in (
        "Stage 1 → 2",
        "Stage 2 → 3",
        "Latency",
        "Model evaluation",
        "Off-policy",
        "Contextual exploration",
        "Continual learning",
        "Drift",
    ):
        assert topic in topics
    for claim in report.verdict:
        check_claim(claim, inputs, FAST)


def test_stage_claims_state_protocol_denominators_and_intervals(files) -> None:
    _, report = _report([files["simulate"], files["results"]])
    stage2 = next(c for c in report.verdict if c.topic == "Stage 1 → 2").text
    assert "of the next unseen item" in stage2
    assert "requests with a truth (of 40)" in stage2  # 36 with a truth, of 40
    assert "over 36 requests" in stage2
    assert "95% CI" in stage2
    stages = _texts(_section(report, "stages"))
    assert "next-unseen" in stages and "with truth" in stages


def test_clicks_appear_only_as_the_users_stated_assumption(files) -> None:
    """--hit-to-click turns the best online strategy's extra hits into clicks per 1,000
    requests, saying it is an assumption; without it no claim speaks of clicks."""
    from dataclasses import replace

    _, plain = _report(files.values())
    replay = [c for c in plain.verdict if c.topic.startswith("Stage") or c.topic == "Latency"]
    assert replay and not any("click" in c.text.lower() for c in replay)
    assert "Business translation" not in [c.topic for c in plain.verdict]
    options = replace(FAST, hit_to_click=0.12)
    inputs, report = _report(files.values(), options)
    claim = next(c for c in report.verdict if c.topic == "Business translation")
    check_claim(claim, inputs, options)
    assert claim.text.startswith("Assuming 12% of hits@20 become clicks (your --hit-to-click")
    assert "more clicks per 1,000 requests with a truth than batch (95% CI" in claim.text
    extra = next(n for n in claim.numbers if n.origin[0] == "scale")
    assert extra.origin[2] == 120.0  # 1,000 requests x 12%


def test_next_item_protocol_is_named(tmp_path) -> None:
    frame = tiny_frame()
    results = write_results(tmp_path / "r.parquet", frame, protocol="next-item")
    sim = write_json(tmp_path / "s.json", simulate_doc(frame, results, protocol="next-item"))
    _, report = _report([sim, results])
    assert "of the next item" in report.verdict[0].text
    assert "unseen" not in report.verdict[0].text


def test_the_simulate_documents_own_intervals_are_used(tmp_path) -> None:
    frame = tiny_frame()
    results = write_results(tmp_path / "r.parquet", frame)
    doc = simulate_doc(frame, results, intervals=True)
    sim = write_json(tmp_path / "s.json", doc)
    for paths in ([sim], [sim, results]):
        inputs, report = _report(paths)
        stage2 = report.verdict[0]
        origins = [n.origin for n in stage2.numbers]
        assert "differences" in repr(origins), origins
        assert "no interval" not in stage2.text
        for claim in report.verdict:
            check_claim(claim, inputs, FAST)


def test_without_results_claims_say_there_is_no_interval(files) -> None:
    _, report = _report([files["simulate"]])
    stage2 = report.verdict[0].text
    assert "no interval" in stage2 and "95% CI" not in stage2


def test_results_alone_give_figures_and_intervals(files) -> None:
    inputs, report = _report([files["results"]])
    assert report.verdict and "95% CI" in report.verdict[0].text
    for claim in report.verdict:
        check_claim(claim, inputs, FAST)


def test_an_interval_including_zero_says_the_data_cannot_tell(files) -> None:
    _, report = _report([files["simulate"], files["results"]])
    streaming = next(c for c in report.verdict if c.text.startswith("Streaming features ("))
    # online-ranker and its no-streaming ablation differ on few requests here
    assert streaming.cannot_tell == ("cannot tell" in streaming.text)


def test_missing_sections_say_how_to_get_them(files) -> None:
    _, report = _report([files["bandits"]])
    missing = {
        s.id: b.text
        for s in report.sections
        for b in s.blocks
        if getattr(b, "kind", "") == "missing"
    }
    assert "rtml simulate" in missing["stages"]
    assert "rtml evaluate ope" in missing["ope"]
    assert "rtml retrain" in missing["continual"]
    assert "rtml drift popularity" in missing["drift"]
    assert "rtml evaluate contextual" in missing["contextual"]


def test_latency_section_against_the_budget(files) -> None:
    options = Options(bootstrap=50, charts=False, budget_ms=0.02)
    _, report = _report([files["simulate"], files["results"]], options)
    latency = _section(report, "latency")
    text = _texts(latency)
    assert "0.02 ms" in text and "NO" in text  # the ranker's ~40 µs p99 is over 0.02 ms
    claim = next(c for c in report.verdict if c.topic == "Latency")
    assert "over the budget" in claim.text and claim.weak


def test_bandit_claim_reads_the_document(files) -> None:
    _, report = _report([files["bandits"]])
    claim = report.verdict[0].text
    assert (
        "median 3,700 requests" in claim and "51,200" in claim and "between 400 and 48,250" in claim
    )
    assert "111.4 fewer clicks" in claim  # 128.1 - 16.7


def test_replayed_bandits_count_hits_never_clicks(tmp_path) -> None:
    doc = json.loads(json.dumps(BANDITS))
    doc.update(
        mode="results",
        reward="hit",
        protocol="next-unseen",
        dropped_requests=3,
        requests_in_results=37,
    )
    path = write_json(tmp_path / "b.json", doc)
    _, report = _report([path])
    assert "clicks" not in report.verdict[0].text
    assert "hits@K of the next item" in report.verdict[0].text
    assert "never a click" in _texts(_section(report, "bandits"))


def test_ope_flags_weak_overlap(files) -> None:
    _, report = _report([files["ope"]])
    claim = report.verdict[0]
    assert claim.weak and "effective sample size 229 of 10,000" in claim.text
    assert "largest weight 244.2" in claim.text
    assert "WEAK" in _texts(_section(report, "ope"))


def test_ope_interval_including_the_logged_value_cannot_tell(tmp_path) -> None:
    doc = json.loads(json.dumps(OPE))
    doc["estimates"][0].update(value=0.12, ci_low=0.10, ci_high=0.14)
    doc["diagnostics"].update(ess_share=0.5, max_weight=3.0)
    _, report = _report([write_json(tmp_path / "o.json", doc)])
    assert report.verdict[0].cannot_tell and not report.verdict[0].weak


def test_contextual_claim_has_wilson_intervals(files) -> None:
    inputs, report = _report([files["contextual"]])
    claim = report.verdict[0]
    assert claim.text.startswith("linucb reaches a click-through rate of 0.184 (95% CI")
    check_claim(claim, inputs, FAST)


def test_continual_claims(files) -> None:
    inputs, report = _report([files["retrain"]])
    texts = [c.text for c in report.verdict]
    assert any("keeps 101% of stateless" in t and "0.60x" in t for t in texts)
    assert any("Never retraining loses 43%" in t for t in texts)  # 1 - 0.3/0.525
    assert any("fired 24 h after the shift, with 0 false alarms" in t for t in texts)
    for claim in report.verdict:
        check_claim(claim, inputs, FAST)


def test_drift_claim(files) -> None:
    _, report = _report([files["drift"]])
    assert "PSI 0.3796 is above its threshold 0.2" in report.verdict[0].text


def test_data_section_and_appendix(files) -> None:
    inputs, report = _report(
        files.values(), Options(bootstrap=20, charts=False, command="rtml report x")
    )
    data = _texts(_section(report, "data"))
    assert "items unknown to the artifacts" in data and "events.parquet" in data
    appendix = _texts(_section(report, "appendix"))
    for item in inputs.files:
        assert item.sha256 in appendix and f"{item.bytes:,}" in appendix
    assert "rtml report x" in appendix and "polars" in appendix


def test_charts_are_svg_with_alt_text(files) -> None:
    pytest.importorskip("matplotlib")
    _, report = _report(
        [files["simulate"], files["results"], files["retrain"]], Options(bootstrap=50)
    )
    charts = [b for s in report.sections for b in s.blocks if hasattr(b, "svg")]
    assert charts and all(c.svg and c.svg.lstrip().startswith("<?xml") for c in charts)
    assert all(len(c.alt) > 20 for c in charts)


# ------------------------------------------------------------------------------- writing
def test_html_is_self_contained(files) -> None:
    pytest.importorskip("matplotlib")
    _, report = _report(files.values(), Options(bootstrap=50))
    page = render_html(report)
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")
    assert not re.search(r"(src|href)=\"(https?:|//)", page)
    assert page.count("data:image/svg+xml;base64,") >= 5
    assert all(re.search(r'alt="[^"]{20,}"', tag) for tag in re.findall(r"<img [^>]*>", page))


def test_markdown_writes_its_charts_beside_it(files, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    _, report = _report([files["simulate"], files["results"]], Options(bootstrap=20))
    out = tmp_path / "out" / "report.md"
    written = write_report(report, out, "md")
    folder = tmp_path / "out" / "report_files"
    assert written == [out, folder]
    text = out.read_text()
    assert text.startswith("<!-- rtml report -->")
    for name in re.findall(r"\]\(report_files/([^)]+)\)", text):
        assert (folder / name).is_file()
    # the same claims as the HTML
    assert report.verdict[0].text.replace("**", "") in text.replace("**", "").replace("`", "")


# ----------------------------------------------------------------------------------- CLI
def test_cli_writes_html(invoke, files, tmp_path) -> None:
    out = tmp_path / "report.html"
    result = invoke("report", files["results"].parent, "--out", out, "-b", "50", "--title", "Ours")
    assert result.exit_code == 0, result.stderr
    page = out.read_text()
    assert "<title>Ours</title>" in page
    assert "wrote" in result.stderr and result.stdout == ""
    assert "rtml report" in page  # its own command line in the appendix


def test_cli_markdown(invoke, files, tmp_path) -> None:
    out = tmp_path / "r.md"
    result = invoke("report", files["bandits"], "--out", out, "--format", "md")
    assert result.exit_code == 0, result.stderr
    assert "median" in out.read_text()


@pytest.mark.parametrize(
    ("make", "code", "message"),
    [
        (lambda d: [], 2, "Missing argument"),
        (lambda d: [d / "missing.json"], 66, "does not exist"),
        (lambda d: [(d / "x.json", "{")[0]], 65, "is not a JSON document"),
        (lambda d: [(d / "y.json")], 65, "is not an rtml document"),
    ],
)
def test_cli_bad_inputs_are_one_line(invoke, tmp_path, make, code, message) -> None:
    (tmp_path / "x.json").write_text("{")
    (tmp_path / "y.json").write_text("[1, 2]")
    out = tmp_path / "report.html"
    result = invoke("report", *make(tmp_path), "--out", out)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_cli_mismatched_results_exit_65_naming_the_file(invoke, files, tmp_path) -> None:
    other = tiny_frame().filter(tiny_frame()["strategy"] != "batch")
    bad = write_results(tmp_path / "other.parquet", other)
    result = invoke("report", files["simulate"], bad, "--out", tmp_path / "r.html")
    assert result.exit_code == 65 and str(bad) in result.stderr


def test_cli_out_that_cannot_be_written(invoke, files, tmp_path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("my notes\n")
    result = invoke("report", files["bandits"], "--out", notes, "--format", "md")
    assert result.exit_code == 73 and "notes.md" in result.stderr
    assert notes.read_text() == "my notes\n"
    data = tmp_path / "data.json"
    data.write_text("{}")
    result = invoke("report", files["bandits"], "--out", data)
    assert result.exit_code == 73 and notes.read_text() == "my notes\n"
    assert data.read_text() == "{}"
    (tmp_path / "dir").mkdir()
    result = invoke("report", files["bandits"], "--out", tmp_path / "dir")
    assert result.exit_code == 73


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
def test_cli_unwritable_directory(invoke, files, tmp_path) -> None:  # pragma: no cover
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = invoke("report", files["bandits"], "--out", locked / "r.html")
    assert result.exit_code == 73


def test_cli_out_under_a_file_is_refused(invoke, files, tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    result = invoke("report", files["bandits"], "--out", tmp_path / "file" / "r.html")
    assert result.exit_code == 73
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_replaces_its_own_reports(invoke, files, tmp_path) -> None:
    for fmt in ("html", "md"):
        out = tmp_path / f"r.{fmt}"
        for _ in range(2):
            result = invoke("report", files["bandits"], "--out", out, "--format", fmt)
            assert result.exit_code == 0, result.stderr


def test_cli_a_failure_leaves_the_previous_report(invoke, files, tmp_path, monkeypatch) -> None:
    out = tmp_path / "r.html"
    assert invoke("report", files["bandits"], "--out", out).exit_code == 0
    before = out.read_text()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("rtml_cli.report.render.render_html", boom)
    result = invoke("report", files["bandits"], "--out", out)
    assert result.exit_code == 73 and "no space left" in result.stderr
    assert out.read_text() == before and not list(tmp_path.glob(".tmp-*"))


def test_save_json_writes_the_document_and_keeps_the_table(invoke, tmp_path) -> None:
    out = tmp_path / "bandits.json"
    result = invoke(
        "--save-json",
        out,
        "evaluate",
        "--arm",
        "a=0.1",
        "--arm",
        "b=0.2",
        "--seeds",
        "3",
        "--policies",
        "ab,thompson",
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(out.read_text())
    assert doc["kind"] == "evaluate bandits" and doc["command"].startswith("rtml --save-json")
    assert "thompson" in result.stdout  # the table for people
    loaded = load_inputs([out])
    assert loaded.files[0].command == doc["command"]


def test_save_json_on_a_command_without_a_document_warns(invoke, tmp_path) -> None:
    out = tmp_path / "x.json"
    result = invoke("--save-json", out, "report", "--help")
    assert result.exit_code == 0 and not out.exists()


def test_inputs_type_is_exported() -> None:
    assert Inputs().results is None

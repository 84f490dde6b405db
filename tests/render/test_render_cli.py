"""``kfaas render``: writing, the drift check and the chart values block."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from _render_support import FIXTURE_FUNCTIONS, ROOT

from kfaas.cli import main
from kfaas.render.chart import BEGIN, END, VALUES_PATH, function_values, replace_block
from kfaas.spec import load_app


def test_committed_files_match_the_descriptions(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["render", "all", "--check", "--root", str(ROOT), "--functions", str(ROOT / "functions")])
    out, err = capsys.readouterr()
    assert code == 0, out + err


def test_drift_is_named_with_a_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--root", str(tmp_path), "--functions", str(FIXTURE_FUNCTIONS)]
    shutil.copytree(ROOT / "k8s", tmp_path / "k8s")
    assert main(["render", "all", *args]) == 0
    assert main(["render", "all", "--check", *args]) == 0
    capsys.readouterr()
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("mem_limit: 256m", "mem_limit: 512m", 1))
    (tmp_path / "k8s" / "base" / "800-sources.yaml").unlink()
    assert main(["render", "all", "--check", *args]) == 1
    out, err = capsys.readouterr()
    assert "docker-compose.yml" in err
    assert "k8s/base/800-sources.yaml" in err
    assert "-    mem_limit: 512m" in out
    assert "+    mem_limit: 256m" in out
    assert "(missing)" in out


def test_a_bad_description_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "functions" / "broken"
    bad.mkdir(parents=True)
    (bad / "main.py").write_text("")
    (bad / "function.yaml").write_text("kind: http\nmemory: lots\n")
    assert (
        main(["render", "compose", "--root", str(tmp_path), "--functions", str(tmp_path / "functions")]) == 2
    )
    assert "memory" in capsys.readouterr().err


def test_function_values_follow_the_contract() -> None:
    spec = load_app(FIXTURE_FUNCTIONS).get("process-order")
    values = function_values(spec)
    assert set(values) == {
        "name", "kind", "target", "source", "routes", "triggers", "sources", "scaling", "timeout",
        "memory", "cpu", "env", "secrets", "database", "publishes", "uses", "image",
    }  # fmt: skip
    assert values["image"] == {"repository": "kfaas/process-order", "tag": ""}
    assert values["triggers"][0]["delivery"]["backoffPolicy"] == "exponential"
    assert values["sources"][0]["kind"] == "queue"


def test_values_block_is_replaced_and_the_rest_kept() -> None:
    text = f"a: 1  # kept\n\n{BEGIN}\nfunctions: {{old: {{}}}}\n{END}\n# after\nb: 2\n"
    block = f"{BEGIN}\nfunctions: {{}}\n{END}\n"
    assert replace_block(text, block) == f"a: 1  # kept\n\n{block}# after\nb: 2\n"
    assert replace_block("a: 1\n", block) == f"a: 1\n\n{block}"
    with pytest.raises(ValueError, match="exactly one"):
        replace_block(text + BEGIN + "\n", block)


def test_committed_values_hold_every_function() -> None:
    values = yaml.safe_load((ROOT / VALUES_PATH).read_text())
    app = load_app(ROOT / "functions")
    assert values["functions"] == {fn.name: function_values(fn) for fn in app.functions}

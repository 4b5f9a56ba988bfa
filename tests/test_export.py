"""ONNX export (fp32, int8), agreement of every engine with fp32, the recorded `auto` choice, the CLI."""

from __future__ import annotations

import shutil
import sys
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest

import mlabel.engines as engines_mod
import mlabel.runtime as runtime_mod
from mlabel import folder
from mlabel.cli import main
from mlabel.data import load_examples
from mlabel.decision import decide
from mlabel.errors import ExtraMissing, ModelError
from mlabel.export import (
    AGREEMENT,
    agreement_f1,
    choose_engine,
    export_onnx,
    measure_engines,
    quantize_int8,
)
from mlabel.folder import EngineChoice, onnx_path
from mlabel.metrics import multilabel_metrics
from mlabel.predict import Predictor


@pytest.fixture(scope="module")
def exported(trained_tiny_encoder_only, tmp_path_factory):
    """A copy of the tiny encoder-only model (no TF-IDF blend to dilute the engines'
    differences) with both ONNX files."""
    model_dir = tmp_path_factory.mktemp("exported") / "model"
    shutil.copytree(trained_tiny_encoder_only, model_dir)
    export_onnx(model_dir, int8=True)
    return model_dir


@pytest.fixture(scope="module")
def held_out(small_csv, exported):
    return load_examples(small_csv, ["TITLE", "ABSTRACT"], labels=folder.read(exported).labels)


def test_export_writes_both_models(exported):
    assert onnx_path(exported, "onnx").is_file()
    assert onnx_path(exported, "onnx-int8").is_file()
    assert (
        onnx_path(exported, "onnx-int8").stat().st_size < onnx_path(exported, "onnx").stat().st_size
    )


def test_int8_is_quantized_from_a_pre_processed_graph(exported, tmp_path, caplog):
    """onnxruntime marks a graph its quant_pre_process prepared, and advises pre-processing (a
    root-logger warning users would see at every export) when the mark is missing."""
    import onnx

    dst = quantize_int8(onnx_path(exported, "onnx"), tmp_path / "model-int8.onnx")
    marks = {p.key: p.value for p in onnx.load(dst, load_external_data=False).metadata_props}
    assert "onnx.quant.pre_process" in marks
    assert not [r for r in caplog.records if "pre-processing" in r.getMessage()]
    assert list(tmp_path.iterdir()) == [dst]  # the prepared graph was not left beside it


@pytest.mark.parametrize(
    ("flags", "weights", "per_channel"),
    [({"avx2", "avx512_vnni"}, np.int8, False), ({"avx2"}, np.uint8, True)],
)
def test_int8_weights_suit_the_cpu(exported, tmp_path, monkeypatch, flags, weights, per_channel):
    """With VNNI, int8 weights; without it (AVX2's u8 x s8 products saturate in int16), uint8
    weights quantized per output channel. On both, the feed-forward output projections (37 -> 32
    features, one per layer of the tiny model) stay in fp32."""
    import onnx
    from onnx.numpy_helper import to_array

    monkeypatch.setattr(runtime_mod, "cpu_flags", lambda: frozenset(flags))
    dst = quantize_int8(onnx_path(exported, "onnx"), tmp_path / "model-int8.onnx")
    graph = onnx.load(dst).graph
    inits = {i.name: to_array(i) for i in graph.initializer}
    matmuls = [n.input[1] for n in graph.node if n.op_type == "MatMulInteger"]
    names = [n.removesuffix("_quantized") for n in matmuls]
    assert names and {inits[f"{n}_quantized"].dtype for n in names} == {np.dtype(weights)}
    assert all((inits[f"{n}_scale"].size > 1) == per_channel for n in names)
    float_inputs = [n.input[1] for n in graph.node if n.op_type == "MatMul"]
    kept = [inits[w].shape for w in float_inputs if w in inits]  # not attention's own products
    assert kept == [(37, 32)] * 2


@pytest.mark.parametrize("engine", ["onnx", "onnx-int8"])
def test_engines_agree_with_fp32(exported, held_out, engine):
    fp32 = Predictor(exported, "torch", device="cpu")
    other = Predictor(exported, engine)
    assert other.info.ensemble is None  # the encoder alone: nothing averages its errors away
    assert other.engine == engine and isinstance(other.scorer.logits, engines_mod.OnnxLogits)
    p32, p = fp32.predict_proba(held_out.texts), other.predict_proba(held_out.texts)
    np.testing.assert_allclose(p, p32, atol=1e-4 if engine == "onnx" else 0.05)
    d32, d = decide(p32, fp32.thresholds), decide(p, other.thresholds)
    f1_32 = multilabel_metrics(held_out.y, d32, held_out.labels)["micro_f1"]
    f1 = multilabel_metrics(held_out.y, d, held_out.labels)["micro_f1"]
    assert abs(f1 - f1_32) <= 0.005
    # int8's fidelity depends on the CPU (0.9935 on Zen 3 here, where VNNI is missing): whether
    # it is used is the export's measured guard; a misordered batch would agree far less
    assert agreement_f1(d32, d) >= (AGREEMENT if engine == "onnx" else 0.98)


class _RunSpy:
    """A session whose run() notes the thread it ran on and how many texts it ran."""

    def __init__(self, session):
        self.session, self.threads, self.rows = session, set(), []

    def run(self, output_names, inputs):
        self.threads.add(threading.get_ident())
        self.rows.append(len(inputs["input_ids"]))
        return self.session.run(output_names, inputs)


def test_onnx_batches_run_side_by_side_in_order(exported, held_out, monkeypatch):
    monkeypatch.setattr(engines_mod.torch, "get_num_threads", lambda: 1)
    alone = Predictor(exported, "onnx").predict_proba(held_out.texts)
    monkeypatch.setattr(engines_mod.torch, "get_num_threads", lambda: 2)
    two = Predictor(exported, "onnx")
    logits = two.scorer.logits
    logits.session = spy = _RunSpy(logits.session)
    # the same one-thread runs of the same batches, now two at a time: the same bits, in order
    np.testing.assert_array_equal(two.predict_proba(held_out.texts), alone)
    assert len(spy.threads) == 2 and logits.whole is None
    one_batch = two.predict_proba(held_out.texts[:1])  # a lone text gets both threads
    assert logits.whole.get_session_options().intra_op_num_threads == 2
    np.testing.assert_allclose(one_batch, alone[:1], atol=1e-5)


def test_int8_scores_a_text_the_same_whatever_its_batchmates(exported, held_out, monkeypatch):
    # dynamic int8 quantizes a run's activations with one scale: shared by a batch, it moved a
    # text's probabilities with the others in the call and their padding
    monkeypatch.setattr(engines_mod.torch, "get_num_threads", lambda: 1)
    one_thread = Predictor(exported, "onnx-int8")
    alone = np.vstack([one_thread.predict_proba([text]) for text in held_out.texts[:12]])
    monkeypatch.setattr(engines_mod.torch, "get_num_threads", lambda: 2)
    together = Predictor(exported, "onnx-int8").predict_proba(held_out.texts[:12])
    np.testing.assert_array_equal(together, alone)


@pytest.mark.parametrize(("engine", "batched"), [("onnx", True), ("onnx-int8", False)])
def test_fp32_onnx_batches_texts_and_int8_runs_one_per_run(
    exported, held_out, monkeypatch, engine, batched
):
    """int8 keeps one text per run (its scores may not depend on batchmates); fp32, which they
    move by rounding only, keeps length-sorted batches, 1.32x faster on tweets."""
    monkeypatch.setattr(engines_mod.torch, "get_num_threads", lambda: 2)  # the shared session
    predictor = Predictor(exported, engine)
    logits = predictor.scorer.logits
    logits.session = spy = _RunSpy(logits.session)
    predictor.predict_proba(held_out.texts[:40])
    assert sum(spy.rows) == 40
    assert (max(spy.rows) > 1) == batched and (len(spy.rows) < 40) == batched


def test_auto_uses_the_recorded_choice(exported, held_out):
    record = choose_engine(exported, held_out.texts[:24], "small.csv")
    assert set(record.measured) >= {"torch", "onnx", "onnx-int8"}
    assert record.measured[record.choice]["agreement_f1"] >= AGREEMENT
    assert folder.read(exported).engine.choice == record.choice
    assert Predictor(exported, "auto", device="cpu").engine == record.choice


def test_engines_take_turns_while_measured(exported, held_out, monkeypatch):
    """Each round times every engine once, so a machine slowing down during the measurement
    does not fall on the engines measured last."""
    calls = []
    original = Predictor.predict_proba

    def proba(self, batch):
        calls.append((self.engine, len(batch)))
        return original(self, batch)

    monkeypatch.setattr(Predictor, "predict_proba", proba)
    texts = held_out.texts[:12]
    measured = measure_engines(exported, texts, repeats=2)
    assert [e for e, n in calls if n == len(texts)] == list(measured) * 2
    assert len(measured) >= 3 and measured["torch"]["max_abs_diff"] == 0.0


def test_onnx_engine_needs_an_export(trained_tiny):
    with pytest.raises(ModelError, match="mlabel export"):
        Predictor(trained_tiny, "onnx-int8")


def test_cli_predict_with_onnx_engine(exported, small_csv, tmp_path, capsys):
    assert (
        main(
            [
                "predict",
                str(exported),
                str(small_csv),
                "-o",
                str(tmp_path / "o.csv"),
                "--engine",
                "onnx",
                "--proba",
            ]
        )
        == 0
    )
    assert "engine onnx" in capsys.readouterr().out
    assert (
        main(
            [
                "predict",
                str(exported),
                str(small_csv),
                "-o",
                str(tmp_path / "t.csv"),
                "--engine",
                "torch",
                "--proba",
            ]
        )
        == 0
    )
    onnx_out, torch_out = pd.read_csv(tmp_path / "o.csv"), pd.read_csv(tmp_path / "t.csv")
    pd.testing.assert_frame_equal(onnx_out, torch_out, atol=1e-4)


def test_cli_export(trained_tiny, small_csv, tmp_path, capsys):
    model_dir = tmp_path / "model"
    shutil.copytree(trained_tiny, model_dir)
    assert (
        main(
            ["export", str(model_dir), "--onnx", "--sample", str(small_csv), "--sample-rows", "16"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "engine auto ->" in out and onnx_path(model_dir, "onnx").is_file()
    assert not onnx_path(model_dir, "onnx-int8").exists()


@pytest.mark.parametrize("package", ["onnx", "onnxruntime"])
def test_missing_onnx_extra_is_a_clear_error(
    exported, trained_tiny, package, monkeypatch, capsys, tmp_path
):
    monkeypatch.setitem(sys.modules, package, None)  # `import package` now raises ImportError
    assert main(["export", str(trained_tiny), "--onnx"]) == 2
    assert f"needs the {package} package: pip install 'mlabel[onnx]'" in capsys.readouterr().err
    assert not onnx_path(trained_tiny, "onnx").exists()
    if package == "onnxruntime":  # running an exported model needs onnxruntime only
        with pytest.raises(ExtraMissing, match=r"model-int8.onnx needs the .*mlabel\[onnx\]"):
            Predictor(exported, "onnx-int8")
        copy = shutil.copytree(exported, tmp_path / "model")
        info = folder.read(copy)
        info.engine = EngineChoice(choice="onnx-int8")
        folder.write(info, copy)
        assert Predictor(copy, "auto").engine in ("torch", "bf16")  # the recorded choice skipped
    else:
        assert Predictor(exported, "onnx-int8").engine == "onnx-int8"


def test_a_choice_measured_on_another_cpu_is_dropped_with_a_warning(
    exported, tmp_path, monkeypatch
):
    copy = shutil.copytree(exported, tmp_path / "model")
    info = folder.read(copy)
    info.engine = EngineChoice(choice="onnx-int8", machine={"isa": ["avx2"]})
    folder.write(info, copy)
    monkeypatch.setattr(engines_mod, "matrix_isa", lambda: ["avx2", "avx512f", "amx_bf16"])
    with pytest.warns(UserWarning, match=r"measured on a CPU with \[avx2\], this one has"):
        predictor = Predictor(copy, "auto", device="cpu")
    assert predictor.engine in ("torch", "bf16")
    monkeypatch.setattr(engines_mod, "matrix_isa", lambda: ["avx2"])  # the same CPU kind
    assert Predictor(copy, "auto", device="cpu").engine == "onnx-int8"


def quantized_for(exported, dst, monkeypatch, flags: set[str]):
    """A copy of `exported` whose int8 graph was quantized on a CPU with `flags`, its engine
    record `onnx-int8` measured on this CPU kind."""
    copy = shutil.copytree(exported, dst)
    with monkeypatch.context() as m:
        m.setattr(runtime_mod, "cpu_flags", lambda: frozenset(flags))
        quantize_int8(onnx_path(copy, "onnx"), onnx_path(copy, "onnx-int8"))
    info = folder.read(copy)
    info.engine = EngineChoice(choice="onnx-int8", machine={"isa": runtime_mod.matrix_isa()})
    folder.write(info, copy)
    return copy


@pytest.mark.parametrize("flags", [{"avx2", "avx512_vnni"}, {"avx2", "avx_vnni"}])
def test_an_int8_graph_made_for_vnni_is_not_kept_on_a_cpu_without_it(
    exported, tmp_path, monkeypatch, flags
):
    """Read from the graph's weights, so AVX-VNNI (no flag in the engine record) counts too."""
    copy = quantized_for(exported, tmp_path / "model", monkeypatch, flags)
    monkeypatch.setattr(engines_mod, "cpu_has_int8_dot", lambda: False)
    with pytest.warns(UserWarning, match=r"quantized on a CPU with VNNI .*re-quantize here"):
        assert Predictor(copy, "onnx-int8", device="cpu").engine == "onnx-int8"  # still as asked
    with pytest.warns(UserWarning, match=r"can saturate .*; using the default engine"):
        assert Predictor(copy, "auto", device="cpu").engine in ("torch", "bf16")
    monkeypatch.setattr(engines_mod, "cpu_has_int8_dot", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Predictor(copy, "auto", device="cpu").engine == "onnx-int8"


def test_an_int8_graph_made_for_avx2_is_kept_without_a_word(exported, tmp_path, monkeypatch):
    copy = quantized_for(exported, tmp_path / "model", monkeypatch, {"avx2"})
    monkeypatch.setattr(engines_mod, "cpu_has_int8_dot", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # uint8 weights: nothing saturates, nothing to say
        assert Predictor(copy, "auto", device="cpu").engine == "onnx-int8"
        assert Predictor(copy, "onnx-int8", device="cpu").engine == "onnx-int8"


def test_export_records_the_cpu_it_measured_on(exported, held_out):
    from mlabel.runtime import matrix_isa

    assert choose_engine(exported, held_out.texts[:8], "small.csv").machine["isa"] == matrix_isa()


def test_an_engine_that_disagrees_with_fp32_is_never_chosen(
    exported, held_out, tmp_path, monkeypatch
):
    """The agreement guard: int8 made the fastest by far but its decisions flipped; auto must
    pick a faithful engine instead."""
    copy = shutil.copytree(exported, tmp_path / "model")
    texts = held_out.texts[:24]
    reference = Predictor(copy, "torch", device="cpu").predict_proba(texts)
    original = Predictor.predict_proba

    def proba(self, batch):
        if self.engine == "onnx-int8":
            return 1.0 - reference[: len(batch)]  # instant, and every 0.5-threshold decision flips
        time.sleep(0.05)  # every honest engine slower than the flipped one
        return original(self, batch)

    monkeypatch.setattr(Predictor, "predict_proba", proba)
    record = choose_engine(copy, texts, "small.csv")
    measured = record.measured
    assert max(measured, key=lambda e: measured[e]["docs_per_s"]) == "onnx-int8"
    assert measured["onnx-int8"]["agreement_f1"] < AGREEMENT
    assert record.choice != "onnx-int8" and measured[record.choice]["agreement_f1"] >= AGREEMENT
    assert folder.read(copy).engine.choice == record.choice


def test_openvino_engine_runs_the_fp32_export_and_agrees(exported, held_out, monkeypatch):
    pytest.importorskip("openvino")
    # many batches in flight on the streams at once: each lands in its own rows
    monkeypatch.setattr(engines_mod, "OPENVINO_MAX_TOKENS", 256)
    assert "openvino" in engines_mod.available_engines(exported)
    fp32 = Predictor(exported, "torch", device="cpu")
    other = Predictor(exported, "openvino", device="auto")
    assert other.engine == "openvino" and isinstance(
        other.scorer.logits, engines_mod.OpenVinoLogits
    )
    p32, p = fp32.predict_proba(held_out.texts), other.predict_proba(held_out.texts)
    np.testing.assert_allclose(p, p32, atol=0.02)  # bf16 where the CPU has it, else fp32
    assert agreement_f1(decide(p32, fp32.thresholds), decide(p, other.thresholds)) >= AGREEMENT
    assert other.scorer.logits.lone is None  # not compiled until a call of one row
    for few in (1, 3):  # small calls: batches sized from the call's own tokens, rows in order
        np.testing.assert_allclose(other.predict_proba(held_out.texts[:few]), p[:few], atol=0.02)
    assert other.scorer.logits.lone is not None  # the lone text ran on all threads
    from mlabel.serve import warm_up  # the serve extra

    served = Predictor(exported, "openvino", device="auto")
    assert (
        warm_up(served) > 0 and served.scorer.logits.lone is not None
    )  # serve's first call pays none


def test_missing_openvino_is_a_clear_error_and_never_recorded(exported, tmp_path, monkeypatch):
    copy = shutil.copytree(exported, tmp_path / "model")
    info = folder.read(copy)
    info.engine = EngineChoice(choice="openvino")
    folder.write(info, copy)
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    assert "openvino" not in engines_mod.available_engines(copy)
    with pytest.raises(ExtraMissing, match=r"needs the openvino package: .*mlabel\[openvino\]"):
        Predictor(copy, "openvino")
    assert Predictor(copy, "auto", device="cpu").engine in ("torch", "bf16")

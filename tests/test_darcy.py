"""The Darcy benchmark's pieces: the Galerkin Transformer baseline and a reduced run of benchmarks/darcy.py."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pddattn.galerkin import GalerkinAttention, GalerkinTransformer2D
from tolerances import rounding

ROOT = Path(__file__).resolve().parents[1]


def test_galerkin_attention_is_q_times_normalised_k_transpose_v_over_n():
    torch.manual_seed(0)
    layer = GalerkinAttention(8, heads=2, positions=2).double()
    x, pos = torch.randn(1, 5, 8, dtype=torch.float64), torch.rand(1, 5, 2, dtype=torch.float64)
    z = layer(x, pos)
    q = layer.q(x).reshape(1, 5, 2, 4).transpose(1, 2)
    k = layer.norm_k(layer.k(x).reshape(1, 5, 2, 4).transpose(1, 2))
    v = layer.norm_v(layer.v(x).reshape(1, 5, 2, 4).transpose(1, 2))
    p = pos[:, None].expand(1, 2, 5, 2)
    q, k, v = (torch.cat([t, p], -1) for t in (q, k, v))
    heads = torch.stack([q[0, h] @ (k[0, h].T @ v[0, h]) / 5 for h in range(2)])
    want = layer.out(heads.transpose(0, 1).reshape(1, 5, -1))
    # the same products in another grouping: a few dozen rounded terms per entry (factor 100)
    assert (z - want).abs().max() <= rounding(factor=100) * want.abs().max()


def test_the_galerkin_transformer_maps_fields_of_any_resolution():
    net = GalerkinTransformer2D(d=16, layers=2, heads=2, modes=4)
    for side in (9, 17):
        a = torch.rand(3, side, side)
        out = net(a)
        assert out.shape == (3, side, side) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_the_galerkin_transformer_packages_darcy_model_answers_on_its_grid_with_u_zero_on_the_boundary():
    pytest.importorskip("galerkin_transformer")
    from pddattn.galerkin import CaoGalerkinTransformer2D
    net = CaoGalerkinTransformer2D(85)  # the authors' 85 x 85 set-up, attention on 29 x 29
    assert sum(p.numel() for p in net.parameters()) > 2_000_000  # the authors' width 128, 6 layers
    out = net(torch.rand(2, 85, 85))
    assert out.shape == (2, 85, 85) and torch.isfinite(out).all()
    edges = torch.cat([out[:, 0], out[:, -1], out[:, :, 0], out[:, :, -1]], dim=1)
    assert edges.abs().max() == 0 and out[:, 1:-1, 1:-1].abs().max() > 0
    out.square().sum().backward()
    assert sum(p.grad is not None for p in net.parameters()) > 0.9 * len(list(net.parameters()))
    with pytest.raises(ValueError, match="85 x 85 grid only"):
        net(torch.rand(1, 141, 141))


def test_the_packages_darcy_model_at_dds_count_keeps_its_shape_and_is_near_that_count():
    pytest.importorskip("galerkin_transformer")
    from pddattn.galerkin import CaoDarcy, sized_cao
    config = sized_cao(31185, 85)
    net = CaoDarcy(85, **config)
    assert abs(net.num_parameters() - 31185) < 0.05 * 31185
    assert config["dim_feedforward"] == 2 * config["n_hidden"] and config["fourier_modes"] in (12, 8, 6, 4)
    assert len(net.net.net.encoder_layers) == 6  # the 2.2M model's depth
    assert net(torch.rand(2, 85, 85) * 9 + 3).shape == (2, 85, 85)
    shallow = sized_cao(31185, 85, layers=2, modes=12)
    assert shallow["fourier_modes"] == 12 and len(CaoDarcy(85, **shallow).net.net.encoder_layers) == 2


def test_the_packages_darcy_model_between_its_scripts_normalisers_is_that_model_shifted_and_scaled():
    pytest.importorskip("galerkin_transformer")
    from pddattn.galerkin import CaoDarcy, CaoGalerkinTransformer2D
    from pddattn.normalisers import EPS
    torch.manual_seed(0)
    a = torch.where(torch.rand(4, 85, 85) > 0.5, 12.0, 3.0)
    u = torch.nn.functional.pad(torch.rand(4, 83, 83), (1, 1, 1, 1))  # u = 0 on the boundary
    net, plain = CaoDarcy(85).fit(a, u).eval(), CaoGalerkinTransformer2D(85).eval()
    assert net.num_parameters() == sum(p.numel() for p in plain.parameters())
    # the script's ffn_dropout (0.1) overrides config.yml's (0.05): the only difference, and none when measured
    rates = [{m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} for model in (net, plain)]
    assert 0.1 in rates[0] and 0.1 not in rates[1]
    with torch.no_grad():
        # the package's attention drops half of K^T V even in eval mode (F.dropout with its defaults): the
        # same draws for both
        torch.manual_seed(1)
        out = net(a[:2])
        torch.manual_seed(1)
        want = plain((a[:2] - a.mean(0)) / (a.std(0) + EPS)) * (u.std(0) + EPS) + u.mean(0)
        other = net(a[:2])
    assert torch.equal(out, want) and out[:, 0].abs().max() == 0 and out[:, :, -1].abs().max() == 0
    assert not torch.equal(out, other)


def test_deterministic_attention_makes_the_packages_model_repeatable_and_is_undone_after():
    pytest.importorskip("galerkin_transformer")
    from pddattn.galerkin import CaoGalerkinTransformer2D, deterministic_attention
    net, a = CaoGalerkinTransformer2D(85).eval(), torch.rand(1, 85, 85)
    with torch.no_grad():
        with deterministic_attention():
            first, second = net(a), net(a)
        third, fourth = net(a), net(a)
    assert torch.equal(first, second) and not torch.equal(third, fourth)
    # the benchmark's report says so beside the model's row
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import darcy_report
    row = {"parameters": 9, "test": 0.02, "curve": [{"epoch": 1, "test": 0.02, "train": 0.03, "seconds": 1.0}],
           "test draws": [0.021, 0.019, 0.02], "test, attention dropout off": 0.015}
    table = darcy_report.markdown({"test": 200, "epochs": 1, "models": {"gt-cao": row}})
    assert "- gt-cao: its answer is random" in table and "0.0190-0.0210, with that dropout off 0.0150" in table


def test_a_model_random_at_test_time_still_training_is_measured_by_draws_at_its_epoch(tmp_path, monkeypatch):
    pytest.importorskip("galerkin_transformer")
    darcy = _darcy()
    monkeypatch.setattr(darcy, "RANDOM_AT_TEST", ("gt",))  # a small stand-in, deterministic: equal draws
    torch.manual_seed(0)
    a, u = torch.where(torch.rand(4, 13, 13) > 0.5, 12.0, 3.0), torch.rand(4, 13, 13) + 0.1
    model = darcy.FieldModel(darcy.field_net("gt", 13, 0), u.pow(2).mean().sqrt())
    state = darcy.TrainingState(tmp_path, {"epochs": 3})
    state.save("gt", model=model.state_dict(), curve=[{"epoch": 1, "train": 1.0, "test": 1.0, "seconds": 1.0}],
               parameters=darcy.count(model))
    spec = darcy.FamilySpec(grid=(11, 11), data="ones", generator_dtype="float32")
    progress = darcy.draws_in_progress(state.in_progress(), state, a, u, a[:2], u[:2], spec)
    with torch.no_grad():
        want = float(darcy.relative(model.eval()(a[:2]).double(), u[:2].double()).mean())
    close = rounding(factor=10, eps=float(torch.finfo(torch.float32).eps))  # the same float32 operations
    assert progress["gt"]["test draws"] == pytest.approx([want] * 5, rel=close)
    assert progress["gt"]["test, attention dropout off"] == pytest.approx(want, rel=close)


def test_a_reduced_darcy_benchmark_runs_every_model_and_reports_every_cell(tmp_path):
    pytest.importorskip("neuralop")
    command = [sys.executable, "benchmarks/darcy.py", "--quick", "--timed", "2", "--state", str(tmp_path / "state")]
    p = subprocess.run(command + ["--out", str(tmp_path / "again")], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    # run again on the same state: every model is read back (weights included, for the timed table), none trained
    p = subprocess.run(command + ["--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("not trained again") == 7 and " epoch " not in p.stdout
    assert (tmp_path / "darcy.md").read_text() == (tmp_path / "again" / "darcy.md").read_text()
    # the trained DD model serves a user's own triplets (another set of fields) through `pddattn apply`
    pddattn = [sys.executable, "-m", "pddattn.cli"]
    p = subprocess.run(pddattn + ["data", "darcy", "--grid", "21", "--resolution", "41", "--train", "2", "--test", "2",
                                  "--seed", "5", "--out", str(tmp_path / "mine.h5")], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    p = subprocess.run(pddattn + ["apply", "--model", str(tmp_path / "state" / "dd-checkpoint.pt"), "--data",
                                  str(tmp_path / "mine.h5"), "--split", "test", "--out", str(tmp_path / "u.npy"),
                                  "--refine", "40", "--rtol", "1e-9"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert np.load(tmp_path / "u.npy").shape == (2, 21, 21)
    result = json.loads((tmp_path / "darcy.json").read_text())
    assert set(result["models"]) == {"fno", "fno-small", "fno-paper", "gt", "gt-small", "dd", "dd-c2"}
    for name, r in result["models"].items():
        assert len(r["curve"]) == 2 and 0 < r["test"] < 10 and 0 < r["transfer"] < 10, name
    dd = result["models"]["dd"]
    assert 0 < dd["discrete solve (floor)"] < dd["AS once (exact local solves)"]
    assert 0 < result["transfer floor"] < dd["discrete solve (floor)"]  # second order: the finer grid's is lower
    assert "| dd |" in (tmp_path / "darcy.md").read_text()
    rows = result["time_to_accuracy"]["rows"]
    for name in ("dd + CG", "dd-c2 + CG", "dd, then CG + AS", "dd-c2, then CG + AS", "CG + AS", "RAS", "CG + GAMG",
                 "CG + hypre", "direct"):
        assert rows[name]["1e-08"] is not None and rows[name]["steps 0.0001"] >= 1, name  # every cell measured
        traces = rows[name]["traces"]  # each field's (seconds, error) per step: the table's cells follow from them
        assert len(traces) == 2 and all([s for s, _ in t] == sorted(s for s, _ in t) for t in traces), name
        first = [next(s for s, e in t if e <= 1e-8) for t in traces]
        assert rows[name]["1e-08"] == pytest.approx(np.mean(first), rel=1e-12), name
    assert (tmp_path / "darcy_time.png").stat().st_size > 0
    # in a batch of 64: the shared answer, then each field's refinement
    for name in ("dd + CG", "dd-c2 + CG", "dd, then CG + AS"):
        batched = rows[name]["batched"]
        assert 0 < batched["answer"] <= batched["0.01"] <= batched["0.0001"] <= batched["1e-08"], name
    assert set(rows) >= {"fno", "gt"} and rows["fno"]["1e-08"] is None and rows["fno"]["batched"]["answer"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: --device cuda is valid here")
@pytest.mark.parametrize("device, message", [("cuda", "sees no CUDA GPU"), ("meta", "use cpu or cuda"),
                                             ("gpu:x", "--device 'gpu:x'")])
def test_a_device_the_machine_lacks_is_refused_before_any_data_is_read(device, message):
    darcy = _darcy()
    with pytest.raises(SystemExit, match=message):
        darcy.main(["--data", "/nonexistent.h5", "--device", device])


def _darcy():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import darcy
    return darcy


class _Stop(Exception):
    pass


def _tiny_run(state, epochs=4, stop_at=None, until=None, recipe=None):
    """A linear a -> u model trained by darcy.train: the loop every Darcy model goes through."""
    darcy = _darcy()
    torch.manual_seed(0)
    a, u = torch.rand(60, 5, 5), torch.rand(60, 5, 5) + 0.5
    model = torch.nn.Sequential(torch.nn.Linear(25, 25), torch.nn.Dropout(0.2)).double()
    calls = []

    def forward(pick):
        calls.append(1)
        if stop_at is not None and len(calls) > stop_at:
            raise _Stop  # killed mid-epoch
        return model(a[pick].double().flatten(1)).reshape(-1, 5, 5)
    curve = darcy.train("tiny", forward, model, a, u, epochs, lambda: float(model[0].weight.detach().sum()),
                        lambda line: None, state, recipe=recipe or darcy.COMMON, until=until)
    return model, curve


def test_until_trains_the_first_epochs_of_the_budget_and_a_summed_loss_trains_otherwise():
    _, whole = _tiny_run(None)
    _, first = _tiny_run(None, until=2)
    assert len(first) == 2 and [c["test"] for c in first] == [c["test"] for c in whole[:2]]
    # Adam's step does not depend on the loss's scale, so a summed loss is the averaged one with weight
    # decay 1/BATCH as strong against it: other weights, but not another kind of training
    _, summed = _tiny_run(None, until=2, recipe=_darcy().FNO_PAPER)
    assert [c["test"] for c in summed] != [c["test"] for c in first]
    assert summed[0]["test"] == pytest.approx(first[0]["test"], rel=0.05)


def test_the_cao_recipe_steps_its_one_cycle_every_batch_down_to_its_floor(tmp_path):
    darcy = _darcy()
    state = darcy.TrainingState(tmp_path, {"epochs": 4})
    _, curve = _tiny_run(state, recipe=darcy.CAO)
    saved = state.load("tiny")
    # batches of 4: 15 an epoch, each a step of the one cycle the budget's batches make
    assert saved["schedule"]["total_steps"] == saved["schedule"]["last_epoch"] == 4 * 15
    group = saved["optimizer"]["param_groups"][0]
    # from lr / 1e4 up to lr, then down to lr / 1e8; no weight decay
    assert (group["initial_lr"], group["max_lr"], group["min_lr"], group["weight_decay"]) == pytest.approx(
        (darcy.LR / 1e4, darcy.LR, darcy.LR / 1e8, 0.0), rel=1e-12)
    assert len(curve) == 4 and all(np.isfinite(c["train"]) for c in curve)


def test_the_h1_term_is_the_galerkin_transformer_packages_regulariser():
    pytest.importorskip("galerkin_transformer")
    from galerkin_transformer.ft import DarcyDataset, WeightedL2Loss2d
    from darcy_recipe import h1_term
    torch.manual_seed(0)
    s = 13
    a = torch.where(torch.rand(3, s, s, dtype=torch.float64) > 0.5, 12.0, 3.0)
    x = torch.linspace(0, 1, s, dtype=torch.float64)
    u = (torch.sin(torch.pi * x)[:, None] * torch.sin(torch.pi * x)[None, :]) * torch.rand(3, 1, 1).double()
    pred = u + 0.1 * torch.rand(3, s, s, dtype=torch.float64)
    # the package's own: targets' central differences from its dataset, the loss's regulariser with K = a
    gx, gy = DarcyDataset.central_diff(u.numpy(), 1.0 / s)
    du = torch.as_tensor(np.stack([gx, gy], axis=-1))
    loss = WeightedL2Loss2d(regularizer=True, h=1.0 / s, gamma=0.5, eps=0.0)  # no guard: the formula alone
    _, theirs, _, _ = loss(pred, u, targets_prime=du, K=a[..., None])
    ours = h1_term(pred, u, a, 0.5)
    assert float(ours) == pytest.approx(float(theirs), rel=rounding(factor=100))  # a few hundred terms' sums
    assert float(h1_term(u, u, a, 0.5)) == 0


def test_the_fno_ablation_trains_every_variant_on_the_budgets_first_epochs(tmp_path):
    pytest.importorskip("neuralop")
    p = subprocess.run([sys.executable, "benchmarks/darcy_fno_ablation.py", "--quick", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads((tmp_path / "darcy_fno_ablation.json").read_text())
    variants = result["variants"]
    assert len(variants) == 5 and all(len(r["curve"]) == 2 for r in variants.values())
    assert all(0 < c["test"] < 10 for r in variants.values() for c in r["curve"])
    assert variants["paper"]["recipe"]["reduction"] == "sum"
    assert variants["paper, loss averaged"]["recipe"]["reduction"] == "mean"
    table = (tmp_path / "darcy_fno_ablation.md").read_text()
    assert all(f"| {name} |" in table for name in variants)


def test_the_gt_ablation_trains_each_recipe_and_a_second_run_resumes_from_its_state(tmp_path):
    pytest.importorskip("galerkin_transformer")
    command = [sys.executable, "benchmarks/darcy_gt_ablation.py", "--quick", "--state", str(tmp_path / "state")]
    first = subprocess.run(command + ["--out", str(tmp_path / "1")], cwd=ROOT, capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    variants = json.loads((tmp_path / "1" / "darcy_gt_ablation.json").read_text())["variants"]
    assert len(variants) == 6 and all(len(r["curve"]) == 2 for r in variants.values())
    assert all(0 < c["test"] < 10 for r in variants.values() for c in r["curve"])
    assert all(0 < r["attention dropout off"] < 10 for r in variants.values())
    assert variants["batches of 20"]["recipe"]["batch"] == 20 and variants["no H1 term"]["recipe"]["gamma"] == 0
    second = subprocess.run(command + ["--out", str(tmp_path / "2")], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("finished in an earlier run") == 6 and ": train " not in second.stdout
    assert json.loads((tmp_path / "2" / "darcy_gt_ablation.json").read_text())["variants"] == variants
    one = subprocess.run(command + ["--out", str(tmp_path / "3"), "--variants", "no-h1-term"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    assert list(json.loads((tmp_path / "3" / "darcy_gt_ablation.json").read_text())["variants"]) == ["no H1 term"]
    wrong = subprocess.run(command + ["--out", str(tmp_path / "4"), "--variants", "no-h2-term"], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert wrong.returncode != 0 and "no no-h2-term; use cao-s-recipe-gt-cao-paper" in wrong.stderr


def test_the_shapes_benchmark_trains_the_baselines_at_dds_count_each_on_its_authors_recipe(tmp_path):
    pytest.importorskip("galerkin_transformer")
    p = subprocess.run([sys.executable, "benchmarks/darcy_shapes.py", "--quick", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    variants = json.loads((tmp_path / "darcy_shapes.json").read_text())["variants"]
    fnos = {k: r for k, r in variants.items() if k.startswith("fno-paper")}
    assert len(fnos) == 3 and len(variants) == 6
    assert all(len(r["curve"]) == 2 and all(0 < c["test"] < 10 for c in r["curve"]) for r in variants.values())
    # the width is picked for the count nearest DD's 31,185 (the same on any grid: its generator's)
    assert all(abs(r["parameters"] - 31_185) < 0.1 * 31_185 for r in fnos.values())
    assert all(r["recipe"]["batch"] == (20 if k in fnos else 4) for k, r in variants.items())
    assert "fno-paper, 2 layers, width 15, 4 modes" in fnos
    table = (tmp_path / "darcy_shapes.md").read_text()
    assert all(f"| {name} |" in table for name in variants)


@pytest.mark.parametrize("recipe", ["COMMON", "CAO"])
def test_a_darcy_run_killed_mid_epoch_resumes_to_the_same_weights_and_curve(tmp_path, recipe):
    darcy = _darcy()
    TrainingState, recipe = darcy.TrainingState, getattr(darcy, recipe)
    whole, whole_curve = _tiny_run(None, recipe=recipe)
    state = TrainingState(tmp_path, {"epochs": 4})
    batches = -(-60 // recipe.batch)
    with pytest.raises(_Stop):
        _tiny_run(state, stop_at=2 * batches + 1, recipe=recipe)  # killed in the third epoch, two saved
    assert len(state.load("tiny")["curve"]) == 2
    # reported as still training, at the epoch it reached, never as a result of the budget
    import darcy_report
    progress = state.in_progress()
    assert list(progress) == ["tiny"] and progress["tiny"]["parameters"] == 25 * 25 + 25
    table = darcy_report.markdown({"test": 60, "epochs": 4, "models": {}, "in_progress": progress})
    assert "| tiny (training: epoch 2 of 4) |" in table
    resumed, curve = _tiny_run(state, recipe=recipe)
    # the same batches, optimizer moments, schedule, shuffles and dropout draws in the same order: equal to the bit
    assert torch.equal(resumed[0].weight, whole[0].weight) and torch.equal(resumed[0].bias, whole[0].bias)
    assert [c["test"] for c in curve] == [c["test"] for c in whole_curve]
    assert [c["train"] for c in curve] == [c["train"] for c in whole_curve]


def test_a_darcy_state_of_another_configuration_is_refused(tmp_path):
    TrainingState = _darcy().TrainingState
    _tiny_run(TrainingState(tmp_path, {"epochs": 4, "fields": "abc"}))
    with pytest.raises(SystemExit, match="another configuration.*fields"):
        TrainingState(tmp_path, {"epochs": 4, "fields": "abd"}).load("tiny")


def test_time_to_accuracy_without_a_trained_dd_times_the_others_and_a_zero_answer_plateaus_at_one():
    pytest.importorskip("petsc4py")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from darcy_time import time_to_accuracy
    torch.manual_seed(0)
    a = torch.where(torch.rand(3, 11, 11) > 0.5, 12.0, 3.0)

    class Zero(torch.nn.Module):
        def forward(self, a):
            return torch.zeros_like(a)
    rows = time_to_accuracy({"zero": Zero()}, a, log=lambda line: None)["rows"]
    assert set(rows) == {"CG + GAMG", "CG + hypre", "direct", "zero"}  # AS and RAS need dd's structure
    assert rows["zero"]["plateau"] == 1.0 and rows["zero"]["0.01"] is None
    assert rows["direct"]["1e-08"] is not None and rows["zero"]["batched"]["answer"] > 0

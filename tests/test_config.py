"""The configuration: five frozen sections named by one flat vocabulary, read back from any release."""
import dataclasses

import numpy as np
import pytest

from pddattn.assembly import assemble
from pddattn.config import FLAT, SECTIONS, TrainConfig
from pddattn.problems import make_problem


def test_every_section_field_has_exactly_one_flat_name():
    fields = {(section, f.name) for section, spec in SECTIONS.items() for f in dataclasses.fields(spec)}
    assert sorted(FLAT.values()) == sorted(fields) and len(set(FLAT.values())) == len(FLAT)


def test_flat_names_reach_their_sections_and_round_trip():
    cfg = TrainConfig.of(model="global", problem="poisson2d", grid="15x15", rank=3, steps=7, data="probe",
                         seed=5, data_sha256="ab")
    assert (cfg.model.kind, cfg.problem.family, cfg.problem.grid, cfg.model.rank) == ("global", "poisson2d", "15x15", 3)
    assert (cfg.optim.steps, cfg.data.source, cfg.run.seed, cfg.data.sha256) == (7, "probe", 5, "ab")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(steps=8).optim.steps == 8 and cfg.optim.steps == 7  # a new config; this one unchanged


def test_a_config_is_frozen_and_refuses_unknown_names():
    cfg = TrainConfig.of()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.steps = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model = None
    with pytest.raises(TypeError, match="unknown configuration field"):
        TrainConfig.of(stepz=3)


def test_old_flat_dicts_read_back():
    """A release-1 dict (coarse: false, keys since removed) reads as coarse_space none; unknown keys go."""
    old = {**TrainConfig.of(rank=5).to_dict(), "coarse": False, "coarse_space": None, "removed_long_ago": 1}
    cfg = TrainConfig.from_dict(old)
    assert cfg.model.coarse_space == "none" and cfg.model.rank == 5


def test_assembly_leaves_the_callers_problem_as_it_was(tmp_path):
    """The user's pairs ride on a copy of the problem: the one passed in is not changed."""
    problem = make_problem("laplace1d", (31,))
    rng = np.random.default_rng(0)
    u = rng.standard_normal((40, 31))
    f = np.asarray(problem.A @ u.T).T
    np.savez(tmp_path / "pairs.npz", f=f, u=u)
    cfg = TrainConfig.of(n=31, subdomains=4, data=str(tmp_path / "pairs.npz")).validate()
    built = assemble(cfg, problem)
    assert problem.pairs is None and built.problem.pairs is not None
    assert cfg.as_run(built.problem).data.sha256 == built.problem.pairs.sha256 and cfg.data.sha256 is None

"""Generated factors (family.py): one model for a family of operators, measured on held-out operators only."""
import numpy as np
import pytest
import torch

from pddattn.errors import ConfigurationError
from pddattn.family import FamilyDDAttention, fit, relative_errors, schwarz
from pddattn.generator import generated_coarse_block, sines
from pddattn.hierarchy import build_hierarchy
from pddattn.operators import DDAttention
from pddattn.problems import make_problem
from pddattn.problems.samplers import make_sampler
from tolerances import cond, rounding

GRID = (31, 31)
SPEC = {"kind": "boxes", "N": [4, 4], "delta": 2, "pou": "count", "coarse": "harmonic"}


def _problems(seeds, grid=GRID):
    return [make_problem("diffusion2d", grid, "darcy", seed=s) for s in seeds]


def _data(problems, count, seed):
    pairs = (make_sampler("solve", p, seed=seed).sample(count) for p in problems)
    return [(torch.as_tensor(f), torch.as_tensor(u)) for f, u in pairs]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FamilyDDAttention(build_hierarchy(_problems([1])[0], SPEC), r=4, width=8, depth=2)


def test_the_box_grids_hold_each_subdomain_in_its_index_order(model):
    d, grids = model.decomposition, model.grids
    for i in range(d.N):
        n_i = d.sizes[i]
        assert np.array_equal(grids.nodes[i].ravel()[grids.slots[i, :n_i]], d.subdomains[i])
        assert np.array_equal(np.sort(grids.nodes[i][grids.mask[i]]), d.subdomains[i])


def test_the_features_are_the_stencil_times_h_squared(model):
    p = _problems([7])[0]
    A = p.A.toarray()
    features = model.stencil(model.hierarchy.levels[0].plan.pattern.entries(p.A))
    nx = GRID[0]
    h2 = 1.0 / (GRID[0] + 1) ** 2
    for node in (0, 5, nx + 3, 17 * nx + 30, nx * GRID[1] - 1):
        want = [A[node, node + o] if 0 <= node + o < A.shape[0] and abs((node % nx) - ((node + o) % nx)) <= 1
                else 0.0 for o in (-nx, -1, 0, 1, nx)]
        assert np.abs(features[node] - h2 * np.array(want)).max() <= rounding(factor=4) * np.abs(want).max() * h2


def test_the_operator_is_the_formula_on_each_operators_values(model):
    """M(A)^-1 = sum_i R_i^T D_i^1/2 Q_i Q_i^T D_i^1/2 R_i + Phi A_0^-1 Phi^T + omega D^-1, written out densely,
    with Phi and A_0 those of a hierarchy built afresh on the held-out operator."""
    p = _problems([11])[0]
    op = model.values([p.A])[0]
    fresh = build_hierarchy(p, SPEC)
    d, phi = fresh.decomposition, fresh.decomposition.phi.toarray()
    with torch.no_grad():
        Q = model.factors(op).numpy()
        M = model.matvec(torch.eye(model.n, dtype=torch.float64), op).numpy()
    weights = np.sqrt(d.pou_weights())
    dense = phi @ np.linalg.solve(fresh.top.toarray(), phi.T)
    for i, nodes in enumerate(d.subdomains):
        B = weights[i, :len(nodes), None] * Q[i, :len(nodes)]
        dense[np.ix_(nodes, nodes)] += B @ B.T
    dense += np.diag(torch.nn.functional.softplus(model.jacobi).item() / p.A.diagonal())
    assert np.abs(M - dense).max() <= rounding(cond(fresh.top), 100) * np.abs(dense).max()
    assert np.abs(M - M.T).max() <= rounding(cond(fresh.top), 100) * np.abs(dense).max()  # SPSD: symmetric


def test_the_additive_reference_is_the_exact_dd_operator():
    """family.schwarz(additive) is DDAttention(init='exact') on the same operator: the classical bar."""
    p = _problems([3])[0]
    h = build_hierarchy(p, SPEC)
    m = FamilyDDAttention(h, r=2, width=4, depth=1)
    op = m.values([p.A])[0]
    exact = DDAttention(h.decomposition, r=1, init="exact", problem=p, symmetric=True)
    f = torch.randn(3, m.n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = schwarz(m, op)(f), exact(f)
    assert (a - b).abs().max() <= rounding(cond(p.A.toarray()), 10) * b.abs().max()


def test_training_on_some_operators_lowers_the_error_on_others():
    torch.manual_seed(0)
    train, held_out = _problems(range(1, 9)), _problems(range(1001, 1005))
    model = FamilyDDAttention(build_hierarchy(train[0], SPEC), r=4, width=8, depth=2)
    train_ops, test_ops = model.values([p.A for p in train]), model.values([p.A for p in held_out])
    test_data = _data(held_out, 8, 2)
    before = relative_errors(model, test_ops, test_data)
    fit(model, train_ops, _data(train, 16, 1), steps=80, lr=3e-3, batch=8)
    after = relative_errors(model, test_ops, test_data)
    assert after < 0.8 * before, (before, after)


def test_one_model_serves_other_grids_with_boxes_of_the_same_size():
    """The generator's parameters do not depend on n or N: weights trained at 31^2 serve a 63^2 model (boxes
    of the same 8 x 8 nodes) better than its untrained start, on held-out operators of the finer grid."""
    torch.manual_seed(0)
    train = _problems(range(1, 9))
    small = FamilyDDAttention(build_hierarchy(train[0], SPEC), r=4, width=8, depth=2)
    fit(small, small.values([p.A for p in train]), _data(train, 16, 1), steps=80, lr=3e-3, batch=8)
    big_spec = dict(SPEC, N=[8, 8])  # 63 = 2 x 31 + 1
    held_out = _problems(range(2001, 2003), (63, 63))
    big = FamilyDDAttention(build_hierarchy(held_out[0], big_spec), r=4, width=8, depth=2)
    assert big.num_parameters() == small.num_parameters()
    ops, data = big.values([p.A for p in held_out]), _data(held_out, 4, 3)
    untrained = relative_errors(big, ops, data)
    big.load_state_dict(small.state_dict())
    assert relative_errors(big, ops, data) < 0.9 * untrained  # measured 0.82


def test_generated_coarse_functions_enlarge_the_exact_coarse_space():
    """With c generated coarse functions per box, M(A)^-1 = local + Phi A_0^-1 Phi^T + omega D^-1 with
    Phi = [Phi_q1, D_i^1/2 Z_i] and A_0 = Phi^T A Phi, written out densely here; symmetric."""
    spec = dict(SPEC, coarse="q1")
    p = _problems([13])[0]
    torch.manual_seed(0)
    model = FamilyDDAttention(build_hierarchy(p, spec), r=3, width=8, depth=2, coarse_functions=2)
    op = model.values([p.A])[0]
    with torch.no_grad():
        QZ = model.factors(op).numpy()
        M = model.matvec(torch.eye(model.n, dtype=torch.float64), op).numpy()
    d = model.decomposition
    weights = np.sqrt(d.pou_weights())
    G = np.zeros((model.n, d.N * 2))
    dense = np.zeros((model.n, model.n))
    for i, nodes in enumerate(d.subdomains):
        B = weights[i, :len(nodes), None] * QZ[i, :len(nodes), :3]
        dense[np.ix_(nodes, nodes)] += B @ B.T
        G[nodes, 2 * i:2 * i + 2] = weights[i, :len(nodes), None] * QZ[i, :len(nodes), 3:]
    Phi = np.hstack([d.phi.toarray(), G])
    A0 = Phi.T @ p.A.toarray() @ Phi
    dense += Phi @ np.linalg.solve(A0, Phi.T)
    dense += np.diag(torch.nn.functional.softplus(model.jacobi).item() / p.A.diagonal())
    assert np.abs(M - dense).max() <= rounding(cond(A0), 100) * np.abs(dense).max()
    assert np.abs(M - M.T).max() <= rounding(cond(A0), 100) * np.abs(dense).max()


def test_the_enlarged_coarse_operator_in_box_sparsity_is_the_dense_product_with_its_gradient():
    """coarse_functions.BoxCoarse: A_0 = Phi^T A Phi, G^T x and G y without forming G (n x N c), equal to the
    dense products, and so are their gradients with respect to the generated functions."""
    spec = dict(SPEC, coarse="q1")
    p = _problems([14])[0]
    model = FamilyDDAttention(build_hierarchy(p, spec), r=3, width=8, depth=2, coarse_functions=3)
    op = model.values([p.A])[0]
    box, A = model.box_coarse, torch.as_tensor(p.A.toarray())
    Z = torch.randn(*model.index.shape, 3, dtype=torch.float64, requires_grad=True)

    def dense_phi(Z):
        G = torch.zeros(model.n, Z.shape[0] * 3, dtype=torch.float64)
        for i, nodes in enumerate(model.decomposition.subdomains):
            G[nodes, 3 * i:3 * i + 3] = (model.weight * Z)[i, :len(nodes)]
        return G, torch.cat([torch.as_tensor(model.decomposition.phi.toarray()), G], dim=1)
    G, Phi = dense_phi(Z)
    dense, sparse = Phi.T @ A @ Phi, box.coarse_operator(model.weight * Z, op.coarse_values)
    # either way a sum of at most n terms, each rounded once: n eps of the sum of the terms' magnitudes
    # (the same products of absolute values), twice; the gradients likewise
    Z_abs = Z.detach().abs().requires_grad_()
    Phi_abs = dense_phi(Z_abs)[1].abs()
    magnitude = Phi_abs.T @ A.abs() @ Phi_abs
    assert float((sparse - dense).detach().abs().max()) <= rounding(1.0, 2 * model.n) * float(magnitude.detach().max())
    probe = torch.randn_like(dense)
    grads = [torch.autograd.grad((A0 * probe).sum(), Z, retain_graph=True)[0] for A0 in (sparse, dense)]
    bound = torch.autograd.grad((magnitude * probe.abs()).sum(), Z_abs)[0].abs().max()
    assert float((grads[0] - grads[1]).abs().max()) <= rounding(1.0, 2 * model.n) * float(bound)
    W, G = (model.weight * Z).detach(), G.detach()
    x, y = torch.randn(model.n, 2, dtype=torch.float64), torch.randn(G.shape[1], 2, dtype=torch.float64)
    L = model.index.shape[1]  # a box's sum: at most L terms
    assert float((box.restrict(W, x) - G.T @ x).abs().max()) <= rounding(1.0, L) * float((G.abs().T @ x.abs()).max())
    assert float((box.prolong(W, y) - G @ y).abs().max()) <= rounding(1.0, L) * float((G.abs() @ y.abs()).max())


def test_a_generated_coarse_block_is_phi_q0_q0t_phit_and_follows_the_operators_scale():
    """--coarse-block generated: M(A)^-1 = local + Phi Q_0 Q_0^T Phi^T + omega D^-1 with Q_0 = G_0(X_0(A_0)),
    written out densely here; symmetric, and M(cA)^-1 = M(A)^-1 / c (features divided by A_0's diagonal)."""
    spec = dict(SPEC, coarse="q1")
    p = _problems([13])[0]
    torch.manual_seed(0)
    model = FamilyDDAttention(build_hierarchy(p, spec), r=3, width=8, depth=2, coarse_block="generated",
                              coarse_rank=5)
    with torch.no_grad():  # start away from Q_0 = 0 (the generator's last layer starts near zero)
        model.coarse_generator.net[-1].weight.normal_()
    op = model.values([p.A])[0]
    with torch.no_grad():
        Q = model.factors(op).numpy()
        Q0 = generated_coarse_block(model.coarse_generator, *op.coarse_features).numpy()
        M = model.matvec(torch.eye(model.n, dtype=torch.float64), op).numpy()
        M2 = model.matvec(torch.eye(model.n, dtype=torch.float64), model.values([2.5 * p.A])[0]).numpy()
    d = model.decomposition
    assert Q0.shape == (d.coarse_size, 5)
    weights = np.sqrt(d.pou_weights())
    dense = d.phi.toarray() @ Q0 @ Q0.T @ d.phi.toarray().T
    for i, nodes in enumerate(d.subdomains):
        B = weights[i, :len(nodes), None] * Q[i, :len(nodes)]
        dense[np.ix_(nodes, nodes)] += B @ B.T
    dense += np.diag(torch.nn.functional.softplus(model.jacobi).item() / p.A.diagonal())
    # sums of a few dozen products each: no solve, so rounding times a small factor
    assert np.abs(M - dense).max() <= rounding(1, 100) * np.abs(dense).max()
    assert np.abs(M - M.T).max() <= rounding(1, 100) * np.abs(dense).max()
    assert np.abs(2.5 * M2 - M).max() <= rounding(1, 100) * np.abs(M).max()


@pytest.mark.parametrize("kwargs, message", [({"coarse_functions": 2}, "without generated coarse functions"),
                                             ({"coarse_block": "learned"}, "use exact")])
def test_a_generated_coarse_block_it_cannot_build_is_one_line(kwargs, message):
    p = _problems([13])[0]
    hierarchy = build_hierarchy(p, dict(SPEC, coarse="q1"))
    with pytest.raises(ConfigurationError, match=message):
        FamilyDDAttention(hierarchy, r=3, width=8, depth=2, **{"coarse_block": "generated", **kwargs})
    with pytest.raises(ConfigurationError, match="q1 coarse space"):
        FamilyDDAttention(build_hierarchy(p, SPEC), r=3, width=8, depth=2, coarse_block="generated")


@pytest.mark.parametrize("grid, N", [((31, 31), [4, 4]), ((31, 23), [4, 3])])
def test_ritz_factors_are_a_i_inverse_on_the_generated_subspace(grid, N):
    """--local-factors ritz: Q_i Q_i^T = V_i (V_i^T A_i V_i)^-1 V_i^T with V_i = S + G(X_i) on box i, written
    out with A_i = R_i A R_i^T here (on a non-square grid too: the factor is sqrt(h_x h_y)); M(cA) = M(A)/c."""
    p = make_problem("diffusion2d", grid, "darcy", seed=21)
    torch.manual_seed(0)
    model = FamilyDDAttention(build_hierarchy(p, dict(SPEC, N=N, coarse="q1")), r=4, width=8, depth=2,
                              local="ritz")
    with torch.no_grad():
        model.generator.net[-1].weight.normal_()  # a subspace away from the sines it starts on
        op = model.values([p.A])[0]
        Q = model.factors(op).numpy()
        mask = op.features[:, 5:6]
        V = ((model.generator(op.features) + sines(op.features, 4)) * mask).flatten(2).transpose(1, 2).numpy()
        M = model.matvec(torch.eye(model.n, dtype=torch.float64), op).numpy()
        M2 = model.matvec(torch.eye(model.n, dtype=torch.float64), model.values([2.5 * p.A])[0]).numpy()
    d, A = model.decomposition, p.A.tocsr()
    worst = 0.0
    for i, nodes in enumerate(d.subdomains):
        A_i = A[nodes][:, nodes].toarray()
        V_i = V[i][model.grids.slots[i, :len(nodes)]]
        G = V_i.T @ A_i @ V_i
        want = V_i @ np.linalg.solve(G, V_i.T)
        got = Q[i, :len(nodes)] @ Q[i, :len(nodes)].T
        # one Cholesky of G (k x k) against numpy's solve: kappa(G) rounding, a factor 100
        assert np.abs(got - want).max() <= rounding(cond(G), 100) * np.abs(want).max()
        worst = max(worst, cond(G))
    phi = d.phi.toarray()
    kappa = max(worst, cond(phi.T @ A.toarray() @ phi))  # the coarse term's factorization too
    assert np.abs(2.5 * M2 - M).max() <= rounding(kappa, 100) * np.abs(M).max()


def test_an_untrained_ritz_model_starts_on_the_boxes_sine_modes():
    """The generator starts near zero, so V_i is the box's k lowest sine products: on a constant coefficient
    those are A_i's leading eigenvectors exactly, and Q_i Q_i^T is truncated Schwarz [A_i^-1]_k."""
    p = make_problem("poisson2d", (31, 31))
    model = FamilyDDAttention(build_hierarchy(p, dict(SPEC, coarse="q1")), r=4, width=8, depth=2, local="ritz")
    with torch.no_grad():
        model.generator.net[-1].weight.zero_()
        op = model.values([p.A])[0]
        Q = model.factors(op).numpy()
    d, A = model.decomposition, p.A.tocsr()
    for i, nodes in enumerate(d.subdomains):
        lam, U = np.linalg.eigh(A[nodes][:, nodes].toarray())
        truncated = U[:, :4] @ np.diag(1 / lam[:4]) @ U[:, :4].T
        got = Q[i, :len(nodes)] @ Q[i, :len(nodes)].T
        # the 4th and 5th modes of a square box tie ((1,2) and (2,1) are both in; (2,2) is next), and
        # an eigensolver's rounding: kappa(A_i) eps, a factor 1000
        assert np.abs(got - truncated).max() <= rounding(cond(A[nodes][:, nodes].toarray()), 1000) * \
            np.abs(truncated).max()


def test_the_condition_loss_lowers_kappa_of_the_preconditioned_operator():
    """--loss condition: Adam on spectrum.condition_loss(M(A) A) over the training operators; kappa, from
    the dense M(A) A of an operator here, falls."""
    problems = _problems([1, 2])
    torch.manual_seed(0)
    model = FamilyDDAttention(build_hierarchy(problems[0], dict(SPEC, coarse="q1")), r=4, width=8, depth=2,
                              local="ritz")
    ops = model.values([p.A for p in problems])

    def kappa():
        with torch.no_grad():
            M = model.matvec(torch.eye(model.n, dtype=torch.float64), ops[0]).numpy()
        lam = np.linalg.eigvals(M @ problems[0].A.toarray()).real
        return lam.max() / lam.min()
    before = kappa()
    fit(model, ops, _data(problems, 2, 1), steps=20, lr=1e-2, loss="condition")
    assert kappa() < 0.9 * before  # measured 77.3 -> 64.3


def test_a_float32_generator_computes_in_float32_and_answers_in_the_operators_float64():
    from tolerances import EPS32
    p = _problems([5])[0]
    h = build_hierarchy(p, SPEC)
    m32 = FamilyDDAttention(h, r=4, width=8, depth=2, generator_dtype=torch.float32)
    m64 = FamilyDDAttention(h, r=4, width=8, depth=2)
    m64.load_state_dict(m32.state_dict())  # the same (float32) weights, computed with in float64
    assert m32.generator.net[0].weight.dtype == torch.float32 and m32.jacobi.dtype == torch.float64
    op = m32.values([p.A])[0]
    with torch.no_grad():
        Q32, Q64 = m32.factors(op), m64.factors(op)
    assert Q32.dtype == torch.float64
    # three convolutions of at most 9 x 10 products per output, each rounding to a relative EPS32: factor 300;
    # above zero: the float32 arithmetic is really used
    difference = float((Q32 - Q64).abs().max() / Q64.abs().max())
    assert 0 < difference <= rounding(factor=300, eps=EPS32), difference
    f = torch.ones(2, m32.n, dtype=torch.float64)
    loss = m32(f, op).square().sum()
    loss.backward()
    assert m32.generator.net[0].weight.grad.dtype == torch.float32
    assert float(m32.generator.net[0].weight.grad.abs().sum()) > 0

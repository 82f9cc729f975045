"""vaekit's FusedAdam against torch.optim.Adam(fused=True): the same update bit for bit, interchangeable
state dicts, and a flagged step skipped."""

from __future__ import annotations

import pytest
import torch

from vaekit.train.adam import FusedAdam


def _params(seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(7, 3, generator=g).requires_grad_(), torch.randn(3, generator=g).requires_grad_(),
            torch.randn(2, 2, generator=g).requires_grad_()]


def _loss(ps: list[torch.Tensor], i: int) -> torch.Tensor:
    return (ps[0] ** 2).sum() * (1 + i) + ps[1].sin().sum() + (ps[2] @ ps[2]).trace()


def _run(opt, ps: list[torch.Tensor], steps: range, skip: set[int] = frozenset(), lr_growth: float = 0.1) -> None:
    for i in steps:
        opt.zero_grad(set_to_none=True)
        _loss(ps, i).backward()
        opt.found_inf = torch.tensor(float(i in skip))
        opt.param_groups[0]["lr"] = 1e-2 * (1 + lr_growth * i)
        opt.step()


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_same_update_as_torch_fused_adam(weight_decay: float) -> None:
    ours, ref = _params(), _params()
    a = FusedAdam(ours, lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay)
    b = torch.optim.Adam(ref, lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay, fused=True)
    _run(a, ours, range(25), skip={4, 5})
    _run(b, ref, range(25), skip={4, 5})
    for x, y in zip(ours, ref, strict=True):
        assert torch.equal(x, y)
    for p, q in zip(ours, ref, strict=True):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(a.state[p][key], b.state[q][key])
    assert float(a.state[ours[0]]["step"]) == 23.0  # two skipped steps counted out


def test_flagged_step_changes_nothing() -> None:
    ps = _params()
    opt = FusedAdam(ps, lr=0.1)
    _run(opt, ps, range(3))
    before = [p.detach().clone() for p in ps]
    moments = [opt.state[p]["exp_avg"].clone() for p in ps]
    _run(opt, ps, range(3, 4), skip={3})
    assert all(torch.equal(p, q) for p, q in zip(ps, before, strict=True))
    assert all(torch.equal(opt.state[p]["exp_avg"], m) for p, m in zip(ps, moments, strict=True))


@pytest.mark.parametrize("direction", ["torch->ours", "ours->torch"])
def test_state_dicts_interchange(direction: str) -> None:
    """A checkpoint written with one optimiser continues with the other exactly as without the switch."""
    first, second, ref = _params(), _params(), _params()
    make_torch = lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=0.05, fused=True)  # noqa: E731
    make_ours = lambda ps: FusedAdam(ps, lr=1e-2, weight_decay=0.05)  # noqa: E731
    make_a, make_b = (make_torch, make_ours) if direction == "torch->ours" else (make_ours, make_torch)
    a = make_a(first)
    _run(a, first, range(10))
    with torch.no_grad():
        for p, q in zip(second, first, strict=True):
            p.copy_(q)
    b = make_b(second)
    b.load_state_dict(a.state_dict())
    _run(b, second, range(10, 20))
    r = make_torch(ref)
    _run(r, ref, range(20))
    for x, y in zip(second, ref, strict=True):
        assert torch.equal(x, y)


def test_refuses_a_state_for_other_parameters() -> None:
    opt = FusedAdam(_params(), lr=1e-3)
    other = torch.optim.Adam([torch.zeros(2, requires_grad=True)], lr=1e-3, fused=True)
    with pytest.raises(ValueError, match="holds 1 parameters in 1 groups"):
        opt.load_state_dict(other.state_dict())


def test_empty_parameter_list_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty parameter list"):
        FusedAdam([], lr=1e-3)


def test_parameters_without_gradient_are_left_as_torch_leaves_them() -> None:
    """Steps where one parameter has no gradient (its state untouched, not even its step counter), between
    steps where all have one, match torch's fused Adam bit for bit."""
    ours, ref = _params(), _params()
    a, b = FusedAdam(ours, lr=1e-2), torch.optim.Adam(ref, lr=1e-2, fused=True)
    for opt, ps in ((a, ours), (b, ref)):
        for i in range(6):
            opt.zero_grad(set_to_none=True)
            loss = _loss(ps, i)
            if i in (2, 3):  # the last parameter sits these steps out
                loss = (ps[0] ** 2).sum() + ps[1].sin().sum()
            loss.backward()
            if i in (2, 3):
                assert ps[2].grad is None
            opt.found_inf = torch.tensor(float(i == 3)) if opt is a else None
            if opt is b and i == 3:  # the same skip for torch's: its step left out
                continue
            opt.step()
    for x, y in zip(ours, ref, strict=True):
        assert torch.equal(x, y)
    for p, q in zip(ours, ref, strict=True):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(a.state[p][key], b.state[q][key])
    assert [float(a.state[p]["step"]) for p in ours] == [5.0, 5.0, 4.0]


def test_a_loaded_state_replaces_the_one_steps_ran_on() -> None:
    """Load an earlier state into an optimiser that has stepped since (a rollback): the steps after it are
    those of a run continued from that state, not from the moments it replaced."""
    ps = _params()
    opt = FusedAdam(ps, lr=1e-2)
    _run(opt, ps, range(5))
    saved = {"state": {i: {k: v.clone() for k, v in s.items()} for i, s in opt.state_dict()["state"].items()},
             "param_groups": opt.state_dict()["param_groups"]}
    weights = [p.detach().clone() for p in ps]
    _run(opt, ps, range(5, 9))
    with torch.no_grad():
        for p, w in zip(ps, weights, strict=True):
            p.copy_(w)
    opt.load_state_dict(saved)
    _run(opt, ps, range(5, 12))
    ref = _params()
    r = torch.optim.Adam(ref, lr=1e-2, fused=True)
    _run(r, ref, range(12))
    for x, y in zip(ps, ref, strict=True):
        assert torch.equal(x, y)
    assert float(opt.state[ps[0]]["step"]) == 12.0
